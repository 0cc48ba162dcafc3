"""Audio sessions between two SDK endpoints through Kamailio 5.6: codecs, SRTP, ICE
(host candidates on loopback, and server reflexive ones from coturn), hold, recording,
DTMF, the RTP timeout, refused offers and bad media input.

Alice is a whole SIPApplication on the test's loop; Bob a RemoteSDK child running the
same start order with the application's audio (tests/support/audio.py). Each party's
microphone is a tone (Alice 1000 Hz, Bob 1500 Hz: both inside G.711's band) and its
speaker is kept in memory: what one side hears must be the other side's tone, found
by FFT within TOLERANCE Hz and holding most of the energy. Run as root inside a
loopback-only network namespace:

    unshare -n sh -c 'ip link set lo up;
        PYTHONPATH=src python -m pytest tests/interop/test_audio_sessions.py -q'
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import wave
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
import pytest
from tests.interop.dnsmasq import Dnsmasq
from tests.interop.peers import Kamailio
from tests.interop.peers.coturn import Coturn
from tests.support.application import loopback_storage, running_application
from tests.support.audio import analyse, heard, install_device
from tests.support.remote import RemoteSDK
from tests.support.sessions import SessionLog

from sipsimple.account import AccountManager
from sipsimple.core import SIPURI, ToHeader
from sipsimple.core.sdp import effective_direction
from sipsimple.media.rtp import RTPPacket
from sipsimple.notification import NotificationQueue
from sipsimple.session import Session
from sipsimple.streams import AudioStream, AudioStreamError

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]

AUDIO = "tests.support.audio"
SESSIONS = "tests.support.sessions"
DOMAIN = "example.test"
ALICE_TONE, BOB_TONE = 1000.0, 1500.0
TOLERANCE = 5.0  # Hz
MIN_SHARE = 0.6  # of the energy heard, near the expected tone
LISTEN = 0.6  # seconds analysed, once the call has run for SETTLE seconds
SETTLE = 0.8


def account(proxy: Kamailio, user: str, **extra: Any) -> dict[str, Any]:
    host, port = proxy.address("udp")
    settings: dict[str, Any] = {
        "enabled": "true",
        "auth": {"password": f"{user}-secret"},
        "sip": {"outbound_proxy": f"{host}:{port};transport=udp"},
    }
    for group, values in extra.items():
        settings.setdefault(group, {}).update(values)
    return {f"{user}@{DOMAIN}": settings}


def media_settings(codec: str, srtp: bool, ice: str, stun: tuple[str, int] | None) -> dict:
    """An account's rtp and nat_traversal groups for one case of the matrix."""
    nat: dict[str, Any] = {"use_ice": "true" if ice != "off" else "false"}
    nat["stun_server_list"] = [f"{stun[0]}:{stun[1]}"] if ice == "stun" and stun else []
    return {
        "rtp": {
            "audio_codec_list": [codec],
            "encryption": {
                "enabled": "true" if srtp else "false",
                "key_negotiation": "sdes_mandatory",
            },
        },
        "nat_traversal": nat,
    }


@pytest.fixture(scope="module")
def proxy() -> Iterator[Kamailio]:
    with Kamailio(domain=DOMAIN) as kamailio:
        kamailio.add_user("alice", "alice-secret")
        kamailio.add_user("bob", "bob-secret")
        yield kamailio


@pytest.fixture(scope="module")
def coturn() -> Iterator[Coturn]:
    with Coturn() as server:
        yield server


class StunNAT(asyncio.DatagramProtocol):
    """STUN between its clients and ``server`` through one outside port per client, as a
    NAT does: the server sees, and reports back, the outside address, so a client's
    server reflexive candidate differs from its host candidate (on loopback they would
    be equal, and left out of the SDP). Only the server's answers come back in."""

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self.requests = 0
        self._inside: asyncio.DatagramTransport | None = None
        self._outside: dict[tuple[str, int], asyncio.Task[asyncio.DatagramTransport]] = {}

    async def start(self) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self._inside, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=("127.0.0.1", 0)
        )
        return self._inside.get_extra_info("sockname")[:2]

    def datagram_received(self, data: bytes, client: tuple[str, int]) -> None:
        self.requests += 1
        if client not in self._outside:
            self._outside[client] = asyncio.ensure_future(self._open(client))
        self._outside[client].add_done_callback(lambda task: task.result().sendto(data))

    async def _open(self, client: tuple[str, int]) -> asyncio.DatagramTransport:
        nat = self

        class Outside(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, source: tuple[str, int]) -> None:
                if source == nat.server and nat._inside is not None:
                    nat._inside.sendto(data, client)

        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            Outside, local_addr=("127.0.0.1", 0), remote_addr=self.server
        )
        return transport

    def close(self) -> None:
        for task in self._outside.values():
            if task.done() and not task.cancelled():
                task.result().close()
        if self._inside is not None:
            self._inside.close()


@pytest.fixture(scope="module")
def bob(proxy) -> Iterator[RemoteSDK]:
    with RemoteSDK(call_timeout=20) as remote:
        remote.call(
            f"{AUDIO}:start_audio_endpoint",
            account(proxy, "bob"),
            {"rtp": {"timeout": "2"}},
            BOB_TONE,
        )
        remote.wait_for("SIPAccountRegistrationDidSucceed", timeout=10)
        yield remote
        remote.call(f"{AUDIO}:stop_audio_endpoint")


@pytest.fixture
async def alice(request, proxy, bob) -> AsyncIterator[Any]:
    """Alice's application; ``request.param`` (when parametrized indirectly) holds her
    account's extra settings."""
    extra = getattr(request, "param", None) or {}
    bob.clear()
    await bob.async_call(f"{SESSIONS}:answer_mode", "accept", "accept")
    storage = loopback_storage(
        accounts=account(proxy, "alice", **extra), settings={"rtp": {"timeout": "2"}}
    )
    with NotificationQueue(name="SIPAccountRegistrationDidSucceed") as registered:
        async with running_application(storage):
            await registered.wait_for("SIPAccountRegistrationDidSucceed", timeout=10)
            yield AccountManager().get_account(f"alice@{DOMAIN}")


async def call_bob(alice: Any) -> tuple[Session, AudioStream, SessionLog]:
    session = Session(alice)
    log = SessionLog(session)
    stream = AudioStream(alice)
    session.connect(ToHeader(SIPURI(user="bob", host=DOMAIN)), None, [stream])
    await log.wait("SIPSessionDidStart", timeout=15)
    return session, stream, log


async def hang_up(session: Session, log: SessionLog) -> None:
    session.end()
    await log.wait("SIPSessionDidEnd")


def assert_hears(analysis: dict[str, Any], tone: float, who: str) -> None:
    assert abs(analysis["frequency"] - tone) <= TOLERANCE, f"{who} heard {analysis}"
    assert analysis["share"][tone] >= MIN_SHARE, f"{who} heard {analysis}"


async def set_bob(bob: RemoteSDK, **changes: Any) -> None:
    await bob.async_call(f"{SESSIONS}:set_account", f"bob@{DOMAIN}", **changes)


async def bob_defaults(bob: RemoteSDK) -> None:
    await set_bob(
        bob,
        rtp__audio_codec_list=None,
        rtp__encryption__enabled=True,
        rtp__encryption__key_negotiation="opportunistic",
        nat_traversal__use_ice=False,
        nat_traversal__stun_server_list=[],
    )


# Every codec with and without SRTP, every ICE mode with and without SRTP, every codec
# with every ICE mode: 12 calls cover each pair of values (a covering array).
MATRIX = [
    (codec, ice, srtp)
    for codec, srtps in (
        ("opus", (False, True, False)),
        ("G722", (True, False, True)),
        ("PCMU", (False, True, False)),
        ("PCMA", (True, False, True)),
    )
    for ice, srtp in zip(("off", "host", "stun"), srtps, strict=True)
]
RATES = {"opus": 48000, "G722": 16000, "PCMU": 8000, "PCMA": 8000}


@pytest.mark.parametrize(("codec", "ice", "srtp"), MATRIX)
async def test_tones_cross_both_ways(proxy, coturn, bob, codec, ice, srtp):
    stun = coturn.address
    nat = StunNAT(stun)
    media = media_settings(codec, srtp, ice, await nat.start())
    await bob_defaults(bob)
    await set_bob(
        bob,
        rtp__audio_codec_list=[codec],
        rtp__encryption__enabled=srtp,
        rtp__encryption__key_negotiation="sdes_mandatory",
        nat_traversal__use_ice=ice != "off",
        nat_traversal__stun_server_list=[f"{stun[0]}:{stun[1]}"] if ice == "stun" else [],
    )
    bob.clear()
    await bob.async_call(f"{SESSIONS}:answer_mode", "accept", "accept")
    storage = loopback_storage(
        accounts=account(proxy, "alice", **media), settings={"rtp": {"timeout": "2"}}
    )
    with NotificationQueue(name="SIPAccountRegistrationDidSucceed") as registered:
        async with running_application(storage):
            await registered.wait_for("SIPAccountRegistrationDidSucceed", timeout=10)
            alice = AccountManager().get_account(f"alice@{DOMAIN}")
            device = install_device(tone=ALICE_TONE)
            everything = SessionLog()
            session, stream, log = await call_bob(alice)
            everything.close()
            name = await bob.async_call(f"{SESSIONS}:latest_incoming")
            await asyncio.sleep(SETTLE + LISTEN)
            alice_heard = heard(device, LISTEN, (BOB_TONE,))
            bob_heard = await bob.async_call(f"{AUDIO}:listen", LISTEN, (ALICE_TONE,))
            info = await bob.async_call(f"{AUDIO}:stream_info", name)
            mine = {
                "codec": stream.codec,
                "sample_rate": stream.sample_rate,
                "srtp_active": stream.srtp_active,
                "ice_active": stream.ice_active,
                "local_rtp_candidate_type": stream.local_rtp_candidate_type,
            }
            sdp = session._invitation.sdp.active_local
            await hang_up(session, log)
    nat.close()
    assert_hears(alice_heard, BOB_TONE, "alice")
    assert_hears(bob_heard, ALICE_TONE, "bob")
    for side in (mine, info):
        assert side["codec"] == codec and side["sample_rate"] == RATES[codec], side
        assert side["srtp_active"] is srtp, side
        assert side["ice_active"] is (ice != "off"), side
        assert side["local_rtp_candidate_type"] == (None if ice == "off" else "host"), side
    offered = str(sdp)
    assert ("a=crypto:" in offered) is srtp
    assert ("a=ice-ufrag:" in offered) is (ice != "off")
    # ICE notifications: the RTPTransport's, proxied by the stream with the same data.
    ice_names = [n.name for n in everything.notifications if "ICENegotiation" in n.name]
    if ice == "off":
        assert ice_names == []
    else:
        assert "AudioStreamICENegotiationDidSucceed" in ice_names, ice_names
        for kind in ("StateDidChange", "DidSucceed"):
            ours = [
                n for n in everything.notifications if n.name == f"AudioStreamICENegotiation{kind}"
            ]
            core = [
                n for n in everything.notifications if n.name == f"RTPTransportICENegotiation{kind}"
            ]
            assert [n.data for n in ours] == [n.data for n in core] and ours
            assert all(n.sender is stream for n in ours)
    if ice == "stun":  # Alice's STUN server is coturn behind the NAT
        assert nat.requests > 0
        assert "typ srflx raddr 127.0.0.1" in offered, offered
    else:
        assert "typ srflx" not in offered and nat.requests == 0


async def next_of(log: SessionLog, name: str, originator: str) -> Any:
    """The next ``name`` notification of ``log`` whose originator is ``originator``."""
    while True:
        notification = await log.wait(name)
        if notification.data.originator == originator:
            return notification


def direction(sdp: Any) -> str:
    return effective_direction(sdp, 0)


async def bob_name(bob: RemoteSDK) -> str:
    return await bob.async_call(f"{SESSIONS}:latest_incoming")


async def test_hold_changes_the_direction_stops_media_and_recording(alice, bob, tmp_path):
    device = install_device(tone=ALICE_TONE)
    session, stream, log = await call_bob(alice)
    name = await bob_name(bob)
    stream_log = SessionLog(stream)
    invitation = session._invitation
    recording = tmp_path / "call.wav"
    stream.start_recording(str(recording))
    started = await stream_log.wait("AudioStreamDidStartRecordingAudio")
    assert started.data.filename == str(recording) == stream.recording_filename
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await asyncio.sleep(SETTLE + LISTEN)
    assert_hears(heard(device, LISTEN, (BOB_TONE,)), BOB_TONE, "alice before hold")

    # Alice holds: she offers sendonly, Bob answers recvonly and sends nothing.
    session.hold()
    t1 = loop.time()
    change = await stream_log.wait("AudioStreamDidChangeHoldState")
    assert (change.data.originator, change.data.on_hold) == ("local", True)
    held = await log.wait("SIPSessionDidChangeHoldState")
    assert (held.data.originator, held.data.on_hold) == ("local", True)
    assert direction(invitation.sdp.active_local) == "sendonly"
    assert direction(invitation.sdp.active_remote) == "recvonly"
    assert stream.on_hold_by_local and not stream.on_hold_by_remote and stream not in stream.bridge
    info = await bob.async_call(f"{AUDIO}:stream_info", name)
    assert info["on_hold_by_remote"] and not info["in_bridge"]
    await asyncio.sleep(0.3)  # what was under way arrives
    received = stream.transport_counters.rtp_received
    await asyncio.sleep(0.8)
    assert stream.transport_counters.rtp_received == received  # Bob stopped sending
    assert heard(device, 0.6)["rms"] == 0  # nothing played
    bob_heard = await bob.async_call(f"{AUDIO}:listen", 0.6, (ALICE_TONE,))
    assert bob_heard["rms"] < 50, bob_heard  # Alice's microphone is not sent

    session.unhold()
    t2 = loop.time()
    unheld = await log.wait("SIPSessionDidChangeHoldState")
    assert unheld.data.on_hold is False
    change = await stream_log.wait("AudioStreamDidChangeHoldState")
    assert (change.data.originator, change.data.on_hold) == ("local", False)
    assert direction(invitation.sdp.active_local) == "sendrecv"
    await asyncio.sleep(SETTLE + LISTEN)
    assert stream.transport_counters.rtp_received > received
    assert_hears(heard(device, LISTEN, (BOB_TONE,)), BOB_TONE, "alice after unhold")
    bob_heard = await bob.async_call(f"{AUDIO}:listen", LISTEN, (ALICE_TONE,))
    assert_hears(bob_heard, ALICE_TONE, "bob after unhold")

    # Bob holds Alice; then Alice holds too, and offers inactive (RFC 3264 8.4).
    await bob.async_call(f"{SESSIONS}:act", name, "hold")
    t3 = loop.time()
    change = await stream_log.wait("AudioStreamDidChangeHoldState")
    assert (change.data.originator, change.data.on_hold) == ("remote", True)
    assert direction(invitation.sdp.active_remote) == "sendonly"
    assert direction(invitation.sdp.active_local) == "recvonly"
    assert stream.on_hold_by_remote and stream not in stream.bridge
    session.hold()
    await next_of(log, "SIPSessionDidChangeHoldState", "local")
    assert direction(invitation.sdp.active_local) == "inactive"
    session.unhold()
    await next_of(log, "SIPSessionDidChangeHoldState", "local")
    await bob.async_call(f"{SESSIONS}:act", name, "unhold")
    for on_hold in (True, False):
        change = await stream_log.wait("AudioStreamDidChangeHoldState")
        assert (change.data.originator, change.data.on_hold) == ("local", on_hold)
    change = await stream_log.wait("AudioStreamDidChangeHoldState")
    assert (change.data.originator, change.data.on_hold) == ("remote", False)
    t4 = loop.time()
    await asyncio.sleep(SETTLE)

    stream.stop_recording()
    t5 = loop.time()
    assert stream.recording_filename is None
    await stream_log.wait("AudioStreamWillStopRecordingAudio")
    stopped = await stream_log.wait("AudioStreamDidStopRecordingAudio")
    assert stopped.data.filename == str(recording)
    await hang_up(session, log)

    with wave.open(str(recording)) as wav:
        rate = wav.getframerate()
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    seconds = len(samples) / rate
    expected = (t1 - t0) + (t3 - t2) + (t5 - t4)  # the time off hold
    assert abs(seconds - expected) < 0.3, (seconds, expected, t5 - t0)
    both = analyse(samples, rate, (ALICE_TONE, BOB_TONE))["share"]
    assert both[ALICE_TONE] > 0.2 and both[BOB_TONE] > 0.2, both  # both parties


async def test_dtmf_both_ways(alice, bob):
    session, stream, log = await call_bob(alice)
    name = await bob_name(bob)
    stream_log = SessionLog(stream)
    for digit in "5#":
        stream.send_dtmf(digit)
        got = await bob.async_wait_for("AudioStreamGotDTMF", timeout=5)
        assert got.data["digit"] == digit
    for digit in "*7":
        await bob.async_call(f"{AUDIO}:stream_call", name, "send_dtmf", digit)
        got = await stream_log.wait("AudioStreamGotDTMF")
        assert got.data.digit == digit
    with pytest.raises(ValueError):
        stream.send_dtmf("55")
    await hang_up(session, log)
    with pytest.raises(AudioStreamError):
        stream.send_dtmf("1")


async def test_a_peer_that_sends_no_media_times_out(alice, bob):
    session, stream, log = await call_bob(alice)
    name = await bob_name(bob)
    stream_log = SessionLog(stream)
    await asyncio.sleep(0.5)
    await bob.async_call(f"{AUDIO}:stop_sending", name)
    loop = asyncio.get_running_loop()
    silent_since = loop.time()
    timeout = await stream_log.wait("AudioStreamDidTimeout", timeout=6)
    assert timeout.data.timeout == 2  # SIPSimpleSettings.rtp.timeout
    assert loop.time() - silent_since >= 1.5
    assert session.state == "connected"  # the application decides
    await hang_up(session, log)


@pytest.mark.parametrize(
    ("alice", "bob_changes", "reason"),
    [
        (
            {"rtp": {"audio_codec_list": ["PCMU"]}},
            {"rtp__audio_codec_list": ["PCMA"]},
            "no codec in common",
        ),
        (
            {"rtp": {"encryption": {"key_negotiation": "sdes_mandatory"}}},
            {"rtp__encryption__enabled": False},
            "SRTP required by the caller, off at the callee",
        ),
        (
            {"rtp": {"encryption": {"enabled": "false"}}},
            {"rtp__encryption__key_negotiation": "sdes_mandatory"},
            "SRTP required by the callee, off at the caller",
        ),
    ],
    indirect=["alice"],
    ids=["codec", "srtp-caller", "srtp-callee"],
)
async def test_an_offer_that_cannot_be_met_gets_488(alice, bob, bob_changes, reason):
    await set_bob(bob, **bob_changes)
    try:
        session = Session(alice)
        log = SessionLog(session)
        session.connect(ToHeader(SIPURI(user="bob", host=DOMAIN)), None, [AudioStream(alice)])
        failed = await log.wait("SIPSessionDidFail", timeout=10)
    finally:
        await bob_defaults(bob)
    assert (failed.data.originator, failed.data.code) == ("remote", 488), reason
    with pytest.raises(TimeoutError):  # the SessionManager refused the offer itself
        await bob.async_wait_for("SIPSessionNewIncoming", timeout=0.3)


async def test_bad_media_input_is_counted_and_dropped(alice, bob):
    """Garbage, RTP from a stranger, RTP of a foreign SSRC from the peer's own socket, and
    SRTP packets that fail authentication: each is counted, none stops the call."""
    device = install_device(tone=ALICE_TONE)
    session, stream, log = await call_bob(alice)
    name = await bob_name(bob)
    assert stream.srtp_active  # opportunistic SRTP on both sides
    await asyncio.sleep(SETTLE)
    target = (stream.local_rtp_address, stream.local_rtp_port)
    before = dataclasses.replace(stream.transport_counters)
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.1", 0))
    with stranger:
        for size in (0, 1, 11, 40, 1400):  # not RTP: too short, or version 0
            stranger.sendto(bytes(size), target)
        for index in range(20):  # well-formed RTP, but not SRTP-authenticated
            packet = RTPPacket(0, index, 160 * index, 0xBADC0DE, b"\x7f" * 160)
            stranger.sendto(packet.serialize() + bytes(10), target)
        # Bob's own socket, Bob's SRTP keys, another SSRC: authenticated, from the right
        # address, and still not Bob's stream until it persists.
        await bob.async_call(f"{AUDIO}:send_stray_rtp", name, 2)
        await asyncio.sleep(SETTLE + LISTEN)
    after = stream.transport_counters
    assert after.garbage - before.garbage == 5
    assert after.srtp_authentication_failures - before.srtp_authentication_failures == 20
    assert after.wrong_ssrc - before.wrong_ssrc == 2
    assert_hears(heard(device, LISTEN, (BOB_TONE,)), BOB_TONE, "alice after the attack")
    assert session.state == "connected" and stream.state == "ESTABLISHED"
    await hang_up(session, log)


@pytest.mark.parametrize(
    "alice", [{"rtp": {"encryption": {"enabled": "false"}}}], indirect=True, ids=["plain-rtp"]
)
async def test_rtp_from_a_stranger_is_not_followed(alice, bob):
    device = install_device(tone=ALICE_TONE)
    session, stream, log = await call_bob(alice)
    assert not stream.srtp_active
    await asyncio.sleep(SETTLE)
    peer = (stream.remote_rtp_address_received, stream.remote_rtp_port_received)
    target = (stream.local_rtp_address, stream.local_rtp_port)
    before = dataclasses.replace(stream.transport_counters)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        stranger.bind(("127.0.0.1", 0))
        for index in range(10):  # a silent stream from elsewhere
            packet = RTPPacket(0, index, 160 * index, 0xBADC0DE, b"\xff" * 160)
            stranger.sendto(packet.serialize(), target)
            await asyncio.sleep(0.02)
        await asyncio.sleep(SETTLE + LISTEN)
    after = stream.transport_counters
    assert after.wrong_address - before.wrong_address == 10
    assert (stream.remote_rtp_address_received, stream.remote_rtp_port_received) == peer
    assert_hears(heard(device, LISTEN, (BOB_TONE,)), BOB_TONE, "alice")
    await hang_up(session, log)


async def test_stun_servers_found_with_dns(proxy, coturn, bob):
    """Without a stun_server_list the account's domain is asked for _stun._udp SRV
    records (here: dnsmasq pointing at the NAT in front of coturn)."""
    nat = StunNAT(coturn.address)
    _, port = await nat.start()
    records = [
        "--host-record=stun.example.test,127.0.0.1",
        f"--srv-host=_stun._udp.example.test,stun.example.test,{port}",
    ]
    await bob_defaults(bob)
    await set_bob(bob, nat_traversal__use_ice=True)
    bob.clear()
    await bob.async_call(f"{SESSIONS}:answer_mode", "accept", "accept")
    try:
        with Dnsmasq(records, local_domains=["example.test"]) as dns:
            storage = loopback_storage(
                accounts=account(proxy, "alice", nat_traversal={"use_ice": "true"}),
                nameservers=[dns.nameserver],
            )
            with NotificationQueue(name="SIPAccountRegistrationDidSucceed") as registered:
                async with running_application(storage):
                    await registered.wait_for("SIPAccountRegistrationDidSucceed", timeout=10)
                    alice = AccountManager().get_account(f"alice@{DOMAIN}")
                    assert alice.nat_traversal.stun_server_list is None
                    session, stream, log = await call_bob(alice)
                    offered = str(session._invitation.sdp.active_local)
                    assert stream.ice_active
                    await hang_up(session, log)
    finally:
        nat.close()
        await bob_defaults(bob)
    assert nat.requests > 0
    assert "typ srflx raddr 127.0.0.1" in offered, offered
