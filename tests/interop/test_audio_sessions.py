"""Audio sessions between two SDK endpoints through Kamailio 5.6: codecs, SRTP, ICE
(host candidates on loopback, and server reflexive ones from coturn), hold, recording,
DTMF, RTP parameter changes, the RTP timeout and refused offers.

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
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from tests.interop.peers import Kamailio
from tests.interop.peers.coturn import Coturn
from tests.support.application import loopback_storage, running_application
from tests.support.audio import heard, install_device
from tests.support.remote import RemoteSDK
from tests.support.sessions import SessionLog

from sipsimple.account import AccountManager
from sipsimple.core import SIPURI, ToHeader
from sipsimple.notification import NotificationQueue
from sipsimple.session import Session
from sipsimple.streams import AudioStream

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
            session, stream, log = await call_bob(alice)
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
    if ice == "stun":  # Alice's STUN server is coturn behind the NAT
        assert nat.requests > 0
        assert "typ srflx raddr 127.0.0.1" in offered, offered
    else:
        assert "typ srflx" not in offered and nat.requests == 0
