"""ICE sessions talking over loopback, their SDP attributes, and the a=candidate grammar.

Run inside a private network namespace:
  unshare -n sh -c 'ip link set lo up; PYTHONPATH=src python -m pytest \\
      tests/integration/test_media_ice.py'
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time

import aioice
import pytest
from aioice import stun

from sipsimple.core.sdp import SDPAttribute, SDPConnection, SDPMediaStream, SDPSession
from sipsimple.media.ice import (
    ICE_STATES,
    MAX_QUEUED_DATAGRAMS,
    ICECandidate,
    ICEDescription,
    ICEError,
    ICENegotiationDidFail,
    ICENegotiationDidSucceed,
    ICENegotiationStateDidChange,
    ICEParseError,
    ICESession,
    ICEStateError,
    candidate_from_sdp,
    candidate_to_sdp,
    parse_remote_candidates,
)

pytestmark = pytest.mark.timeout(60)

LOOPBACK = ["127.0.0.1"]


class Recorder:
    """Collects a session's events and says when negotiation has ended."""

    def __init__(self) -> None:
        self.events: list[object] = []
        self.done = asyncio.Event()

    def __call__(self, event: object) -> None:
        self.events.append(event)
        if isinstance(event, ICENegotiationDidSucceed | ICENegotiationDidFail):
            self.done.set()

    @property
    def states(self) -> list[str]:
        return [e.state for e in self.events if isinstance(e, ICENegotiationStateDidChange)]

    @property
    def outcome(self) -> ICENegotiationDidSucceed | ICENegotiationDidFail:
        return next(
            e
            for e in self.events
            if isinstance(e, ICENegotiationDidSucceed | ICENegotiationDidFail)
        )


async def gathered(**options) -> tuple[ICESession, Recorder]:
    recorder = Recorder()
    options.setdefault("local_addresses", LOOPBACK)
    session = ICESession(recorder, **options)
    await session.gather()
    return session, recorder


def sdp_text(session: ICESession, lite: bool = False) -> str:
    """The description ``session`` would send, written out as a whole SDP body."""
    default = session.default_candidate()
    attributes = [SDPAttribute("rtpmap", "0 PCMU/8000"), *session.sdp_attributes()]
    if len(session.components) == 2:
        rtcp = session.default_candidate(2)
        attributes.insert(0, SDPAttribute("rtcp", f"{rtcp.port} IN IP4 {rtcp.address}"))
    else:
        attributes.insert(0, SDPAttribute("rtcp-mux"))
    media = SDPMediaStream("audio", default.port, "RTP/AVP", formats=["0"], attributes=attributes)
    sdp = SDPSession(
        default.address,
        connection=SDPConnection(default.address),
        attributes=[SDPAttribute("ice-lite")] if lite else [],
        media=[media],
    )
    return str(sdp)


def description(session: ICESession, lite: bool = False) -> ICEDescription:
    parsed = SDPSession.parse(sdp_text(session, lite))
    result = ICEDescription.from_sdp(parsed.media[0], parsed)
    assert result is not None
    return result


async def negotiate(offerer: ICESession, answerer: ICESession) -> None:
    offer, answer = description(offerer), description(answerer)
    await answerer.start(offer, controlling=False)
    await offerer.start(answer, controlling=True)


async def wait_done(*recorders: Recorder, timeout: float = 20) -> None:
    await asyncio.wait_for(asyncio.gather(*(r.done.wait() for r in recorders)), timeout)


async def closing(*sessions: ICESession) -> None:
    for session in sessions:
        await session.close()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the SDP grammar ---------------------------------------------------------------------


def test_middleware_documentation_candidates_parse():
    srflx = candidate_from_sdp(
        "S 1 UDP 31 80.101.96.20 55328 typ srflx raddr 192.168.1.6 rport 55328"
    )
    assert (srflx.foundation, srflx.component, srflx.transport, srflx.priority) == (
        "S",
        1,
        "UDP",
        31,
    )
    assert (srflx.host, srflx.port, srflx.type) == ("80.101.96.20", 55328, "srflx")
    assert (srflx.related_address, srflx.related_port) == ("192.168.1.6", 55328)
    host = candidate_from_sdp("H 2 UDP 22 10.37.129.2 55329 typ host")
    assert (host.component, host.type, host.related_address) == (2, "host", None)
    assert (
        candidate_to_sdp(srflx)
        == "S 1 UDP 31 80.101.96.20 55328 typ srflx raddr 192.168.1.6 rport 55328"
    )


def test_candidate_extensions_and_ipv6():
    value = (
        "1a2b+/ 1 udp 2130706431 2001:db8::1 5000 typ relay raddr :: rport 9 "
        "generation 0 network-id 2"
    )
    candidate = candidate_from_sdp(value)
    assert (candidate.host, candidate.type, candidate.generation) == ("2001:db8::1", "relay", 0)
    assert candidate_to_sdp(candidate).startswith(
        "1a2b+/ 1 UDP 2130706431 2001:db8::1 5000 typ relay"
    )
    tcp = candidate_from_sdp("x 1 TCP 5 192.0.2.1 9 typ host tcptype active")
    assert tcp.tcptype == "active"


@pytest.mark.parametrize(
    "value, message",
    [
        ("1 1 UDP 5 192.0.2.1 9 typ", "needs"),
        ("f@o 1 UDP 5 192.0.2.1 9 typ host", "foundation"),
        ("f" * 33 + " 1 UDP 5 192.0.2.1 9 typ host", "foundation"),
        ("f 0 UDP 5 192.0.2.1 9 typ host", "component"),
        ("f 257 UDP 5 192.0.2.1 9 typ host", "component"),
        ("f 1 UDP 0 192.0.2.1 9 typ host", "priority"),
        ("f 1 UDP 4294967296 192.0.2.1 9 typ host", "priority"),
        ("f 1 UDP 5 192.0.2.1 65536 typ host", "port"),
        ("f 1 UDP 5 192.0.2.1 9 type host", "typ"),
        ("f 1 UDP 5 192.0.2.1 9 typ host raddr", "pairs"),
        ("f 1 UDP 5 192.0.2.1 9 typ srflx raddr 1.2.3.4 rport x", "rport"),
        ("f 1 UDP 5 <script> 9 typ host", "address"),
        ("f 1 UDP 5 192.0.2.1 9 typ host generation x", "generation"),
    ],
)
def test_invalid_candidates(value, message):
    with pytest.raises(ICEParseError, match=message):
        candidate_from_sdp(value)


def test_remote_candidates():
    assert parse_remote_candidates("1 192.0.2.3 45664 2 192.0.2.3 45665") == (
        (1, "192.0.2.3", 45664),
        (2, "192.0.2.3", 45665),
    )
    for bad in ("", "1 192.0.2.3", "0 192.0.2.3 1", "1 192.0.2.3 99999"):
        with pytest.raises(ICEParseError):
            parse_remote_candidates(bad)


def test_description_reads_media_and_session_levels():
    sdp = SDPSession.parse(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
        "a=ice-lite\r\na=ice-ufrag:2701ed80\r\na=ice-pwd:6f8f8281\r\n"
        "m=audio 5000 RTP/AVP 0\r\na=ice-options:trickle\r\n"
        "a=candidate:H 1 UDP 23 192.0.2.1 5000 typ host\r\n"
        "a=candidate:this line is broken\r\n"
        "a=remote-candidates:1 192.0.2.9 6000\r\n"
        "m=audio 5002 RTP/AVP 0\r\n"
    )
    first = ICEDescription.from_sdp(sdp.media[0], sdp)
    assert first is not None
    assert (first.ufrag, first.pwd, first.lite, first.options) == (
        "2701ed80",
        "6f8f8281",
        True,
        ("trickle",),
    )
    assert [c.host for c in first.candidates] == ["192.0.2.1"]
    assert first.remote_candidates == ((1, "192.0.2.9", 6000),)
    assert ICEDescription.from_sdp(sdp.media[1]) is None
    second = ICEDescription.from_sdp(sdp.media[1], sdp)
    assert second is not None and second.candidates == ()


# --- sessions ----------------------------------------------------------------------------


async def test_two_sessions_negotiate_and_exchange_datagrams():
    alice, alice_events = await gathered()
    bob, bob_events = await gathered()
    try:
        assert alice.local_username != bob.local_username
        assert all(c.address == "127.0.0.1" and c.type == "host" for c in alice.local_candidates)
        assert sorted(c.component for c in alice.local_candidates) == [1, 2]
        await negotiate(alice, bob)
        await wait_done(alice_events, bob_events)

        for recorder, session in ((alice_events, alice), (bob_events, bob)):
            assert recorder.states == [
                "GATHERING",
                "GATHERING_COMPLETE",
                "NEGOTIATING",
                "RUNNING",
            ]
            assert all(state in ICE_STATES for state in recorder.states)
            outcome = recorder.outcome
            assert isinstance(outcome, ICENegotiationDidSucceed)
            assert 0 < outcome.duration < 20
            assert [p.local_candidate.component for p in outcome.valid_pairs] == [1, 2]
            assert all(p.nominated and p.state == "SUCCEEDED" for p in outcome.valid_pairs)
            assert set(outcome.valid_pairs) <= set(outcome.valid_list)
            assert len(outcome.local_candidates) == 2 and len(outcome.remote_candidates) >= 2
            assert session.ice_active and session.selected_pairs == outcome.valid_pairs
            pair = outcome.selected_pair
            assert (pair.local_candidate.type, pair.remote_candidate.type) == ("host", "host")
            assert session.default_candidate() == pair.local_candidate

        alice_pair = alice_events.outcome.selected_pair
        bob_pair = bob_events.outcome.selected_pair
        assert alice_pair.remote_candidate.port == bob_pair.local_candidate.port
        assert bob_pair.remote_candidate.port == alice_pair.local_candidate.port

        for number in range(5):
            await alice.send(b"rtp from alice %d" % number)
            await bob.send(b"rtcp from bob %d" % number, component=2)
        received_by_bob = [await asyncio.wait_for(bob.recv(), 5) for _ in range(5)]
        received_by_alice = [await asyncio.wait_for(alice.recv(), 5) for _ in range(5)]
        assert [d[:2] for d in received_by_bob] == [(b"rtp from alice %d" % n, 1) for n in range(5)]
        assert [d[:2] for d in received_by_alice] == [
            (b"rtcp from bob %d" % n, 2) for n in range(5)
        ]
        alice_rtp = alice_pair.local_candidate
        bob_rtcp = bob_events.outcome.valid_pairs[1].local_candidate
        assert {d.address for d in received_by_bob} == {(alice_rtp.address, alice_rtp.port)}
        assert {d.address for d in received_by_alice} == {(bob_rtcp.address, bob_rtcp.port)}

        # A re-offer lists only the selected candidates; the controlling side names the peer's.
        alice_names = [a.name for a in alice.sdp_attributes()]
        assert alice_names.count("candidate") == 2 and "remote-candidates" in alice_names
        assert "remote-candidates" not in [a.name for a in bob.sdp_attributes()]
        again = description(alice)
        assert {(c.component, c.port) for c in again.candidates} == {
            (p.local_candidate.component, p.local_candidate.port) for p in alice.selected_pairs
        }
        assert {(c, port) for c, _, port in again.remote_candidates} == {
            (p.remote_candidate.component, p.remote_candidate.port) for p in alice.selected_pairs
        }
    finally:
        await closing(alice, bob)
    assert alice.state == bob.state == "CLOSED"
    with pytest.raises(ConnectionError):
        await alice.send(b"too late")


async def test_rtcp_mux_uses_one_component():
    alice, alice_events = await gathered(rtcp_mux=True)
    bob, bob_events = await gathered(rtcp_mux=True)
    try:
        assert [c.component for c in alice.local_candidates] == [1]
        assert "rtcp-mux" in sdp_text(alice)
        await negotiate(alice, bob)
        await wait_done(alice_events, bob_events)
        assert len(bob_events.outcome.valid_pairs) == 1
        await bob.send(b"muxed")
        assert (await asyncio.wait_for(alice.recv(), 5))[:2] == (b"muxed", 1)
    finally:
        await closing(alice, bob)


async def test_peer_without_rtcp_component_leaves_rtcp_out():
    alice, alice_events = await gathered()
    bob, bob_events = await gathered(rtcp_mux=True)
    try:
        await negotiate(alice, bob)
        await wait_done(alice_events, bob_events)
        assert isinstance(alice_events.outcome, ICENegotiationDidSucceed)
        assert [p.local_candidate.component for p in alice_events.outcome.valid_pairs] == [1]
    finally:
        await closing(alice, bob)


async def test_role_conflict_is_resolved():
    alice, alice_events = await gathered()
    bob, bob_events = await gathered()
    try:
        offer, answer = description(alice), description(bob)
        await bob.start(offer, controlling=True)
        await alice.start(answer, controlling=True)
        await wait_done(alice_events, bob_events)
        assert isinstance(alice_events.outcome, ICENegotiationDidSucceed)
        assert isinstance(bob_events.outcome, ICENegotiationDidSucceed)
        assert {alice.controlling, bob.controlling} == {True, False}
    finally:
        await closing(alice, bob)


async def test_lite_peer_makes_us_controlling():
    alice, alice_events = await gathered()
    bob, bob_events = await gathered()
    try:
        await bob.start(description(alice), controlling=False)
        await alice.start(description(bob, lite=True), controlling=False)
        assert alice.controlling is True
        await wait_done(alice_events, bob_events)
        assert isinstance(alice_events.outcome, ICENegotiationDidSucceed)
        assert isinstance(bob_events.outcome, ICENegotiationDidSucceed)
    finally:
        await closing(alice, bob)


async def test_unreachable_candidates_fail_within_the_timeout():
    alice, events = await gathered(timeout=1.5)
    try:
        port = free_udp_port()
        remote = ICEDescription(
            "bobs",
            "bobspasswordbobspassword",
            (aioice.Candidate("b", 1, "UDP", 2130706431, "127.0.0.1", port, "host"),),
        )
        started = time.monotonic()
        await alice.start(remote, controlling=True)
        await wait_done(events, timeout=10)
        elapsed = time.monotonic() - started
        outcome = events.outcome
        assert isinstance(outcome, ICENegotiationDidFail)
        assert "1.5 s" in outcome.reason
        assert 1.4 < outcome.duration < 5 and elapsed < 5
        assert events.states[-1] == "FAILED" and alice.state == "FAILED"
        assert not alice.ice_active and alice.selected_pairs == ()
        with pytest.raises(ConnectionError):
            await alice.send(b"nowhere")
    finally:
        await alice.close()


async def test_no_usable_remote_candidate_fails_at_once():
    alice, events = await gathered()
    try:
        remote = ICEDescription(
            "bobs",
            "bobspasswordbobspassword",
            (
                candidate_from_sdp("t 1 TCP 5 127.0.0.1 9 typ host tcptype passive"),
                candidate_from_sdp("n 1 UDP 5 bob.local 9 typ host"),
                candidate_from_sdp("c 3 UDP 5 127.0.0.1 9 typ host"),
            ),
        )
        await alice.start(remote, controlling=False)
        await wait_done(events, timeout=5)
        assert isinstance(events.outcome, ICENegotiationDidFail)
        assert events.outcome.reason == "no candidate pair could be formed"
    finally:
        await alice.close()


async def test_controlled_side_fails_when_never_nominated():
    bob, events = await gathered(timeout=1.0)
    alice = ICESession(local_addresses=LOOPBACK)
    await alice.gather()
    try:
        # Alice never starts: Bob's checks get no answer and nobody nominates.
        await bob.start(description(alice), controlling=False)
        await wait_done(events, timeout=10)
        assert isinstance(events.outcome, ICENegotiationDidFail)
        assert events.outcome.reason == "ICE negotiation did not complete within 1 s"
    finally:
        await closing(alice, bob)


async def test_peer_without_ice_gets_media_on_the_default_candidate():
    alice, events = await gathered()
    plain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    plain.bind(("127.0.0.1", 0))
    plain.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        rtp = alice.default_candidate()
        rtcp = alice.default_candidate(2)
        await alice.start_without_ice(
            plain.getsockname(), ("127.0.0.1", plain.getsockname()[1] + 1)
        )
        assert not alice.ice_active and alice.state == "GATHERING_COMPLETE"
        await alice.send(b"plain rtp")
        data, source = await asyncio.wait_for(loop.sock_recvfrom(plain, 100), 5)
        assert (data, source) == (b"plain rtp", (rtp.address, rtp.port))
        await loop.sock_sendto(plain, b"back", (rtp.address, rtp.port))
        await loop.sock_sendto(plain, b"rtcp back", (rtcp.address, rtcp.port))
        assert {await asyncio.wait_for(alice.recv(), 5) for _ in range(2)} == {
            (b"back", 1, plain.getsockname()),
            (b"rtcp back", 2, plain.getsockname()),
        }
        assert [type(e) for e in events.events] == [ICENegotiationStateDidChange] * 2
    finally:
        plain.close()
        await alice.close()


async def test_fallback_after_failure():
    alice, events = await gathered(timeout=0.5)
    plain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    plain.bind(("127.0.0.1", 0))
    plain.setblocking(False)
    try:
        remote = ICEDescription(
            "bobs",
            "bobspasswordbobspassword",
            (aioice.Candidate("b", 1, "UDP", 5, "127.0.0.1", free_udp_port(), "host"),),
        )
        await alice.start(remote, controlling=True)
        await wait_done(events, timeout=5)
        await alice.start_without_ice(plain.getsockname())
        await alice.send(b"after all")
        loop = asyncio.get_running_loop()
        data, _ = await asyncio.wait_for(loop.sock_recvfrom(plain, 100), 5)
        assert data == b"after all"
    finally:
        plain.close()
        await alice.close()


async def test_close_during_negotiation_reports_nothing_more():
    alice, events = await gathered()
    remote = ICEDescription(
        "bobs",
        "bobspasswordbobspassword",
        (aioice.Candidate("b", 1, "UDP", 5, "127.0.0.1", free_udp_port(), "host"),),
    )
    await alice.start(remote, controlling=True)
    await alice.close()
    await alice.close()
    await asyncio.sleep(0.2)
    assert events.states == ["GATHERING", "GATHERING_COMPLETE", "NEGOTIATING"]
    assert not events.done.is_set() and alice.state == "CLOSED"


async def test_host_sockets_within_a_port_range():
    low = free_udp_port()
    low -= low % 2
    alice, _ = await gathered(port_range=(low, low + 1))
    try:
        assert sorted(c.port for c in alice.local_candidates) == [low, low + 1]
        recorder = Recorder()
        crowded = ICESession(recorder, local_addresses=LOOPBACK, port_range=(low, low + 1))
        with pytest.raises(ICEError):
            await crowded.gather()
        await crowded.close()
    finally:
        await alice.close()


async def test_unread_datagrams_are_bounded_and_garbage_dropped():
    alice, _ = await gathered(rtcp_mux=True)
    plain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    plain.bind(("127.0.0.1", 0))
    try:
        await alice.start_without_ice(plain.getsockname())
        rtp = alice.default_candidate()
        plain.sendto(b"\x00\x01 not STUN at all", (rtp.address, rtp.port))
        for number in range(MAX_QUEUED_DATAGRAMS + 20):
            plain.sendto(b"\x80 %d" % number, (rtp.address, rtp.port))
        for _ in range(100):
            if alice.dropped == 21:
                break
            await asyncio.sleep(0.02)
        assert alice.dropped == 21
        first = await alice.recv()
        assert first.data == b"\x80 0"
    finally:
        plain.close()
        await alice.close()


async def test_state_and_argument_errors():
    with pytest.raises(ValueError, match="port_range"):
        ICESession(port_range=(5000, 4000))
    with pytest.raises(ValueError, match="IP addresses"):
        ICESession(local_addresses=["localhost"])
    with pytest.raises(ValueError, match="timeout"):
        ICESession(timeout=0)
    session = ICESession(local_addresses=LOOPBACK)
    with pytest.raises(ICEStateError, match="gathered"):
        session.sdp_attributes()
    remote = ICEDescription("bobs", "bobspasswordbobspassword")
    with pytest.raises(ICEStateError, match="GATHERING_COMPLETE"):
        await session.start(remote, controlling=True)
    await session.gather()
    try:
        with pytest.raises(ICEStateError):
            await session.gather()
        with pytest.raises(ValueError, match="component"):
            session.default_candidate(3)
        with pytest.raises(ValueError, match="IP address"):
            await session.start_without_ice(("example.com", 5000))
        await session.start(remote, controlling=True)
        with pytest.raises(ICEStateError, match="start_without_ice"):
            await session.start_without_ice(("127.0.0.1", 5000))
    finally:
        await session.close()


async def test_gathering_on_an_address_we_do_not_have_fails():
    recorder = Recorder()
    session = ICESession(recorder, local_addresses=["192.0.2.77"])
    try:
        with pytest.raises(ICEError, match="no local ICE candidate"):
            await session.gather()
        assert recorder.states == ["GATHERING", "FAILED"]
    finally:
        await session.close()


async def test_a_raising_handler_does_not_break_the_session():
    def handler(event: object) -> None:
        raise RuntimeError("observer bug")

    alice = ICESession(handler, local_addresses=LOOPBACK)
    bob, bob_events = await gathered()
    try:
        await alice.gather()
        await negotiate(alice, bob)
        await wait_done(bob_events)
        for _ in range(50):
            if alice.ice_active:
                break
            await asyncio.sleep(0.05)
        assert alice.ice_active
    finally:
        await closing(alice, bob)


# --- STUN and TURN through coturn --------------------------------------------------------


@pytest.fixture
def coturn():
    """coturn on 127.0.0.1 with one long-term credential; yields its (host, port)."""
    program = shutil.which("turnserver")
    assert program is not None, "coturn (turnserver) is not installed"
    port = free_udp_port()
    process = subprocess.Popen(
        [
            program,
            "-n",
            "--no-cli",
            "--no-tls",
            "--no-dtls",
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            f"--listening-port={port}",
            "--min-port=49152",
            "--max-port=49352",
            "--allow-loopback-peers",
            "--lt-cred-mech",
            "--user=alice:secret",
            "--realm=sipsimple.test",
            "--log-file=stdout",
            "--simple-log",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_stun(("127.0.0.1", port))
        yield ("127.0.0.1", port)
    finally:
        process.terminate()
        process.wait(10)


def wait_for_stun(address: tuple[str, int]) -> None:
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            sock.sendto(bytes(request), address)
            try:
                sock.recvfrom(1500)
                return
            except (TimeoutError, ConnectionRefusedError):
                time.sleep(0.1)
    raise AssertionError("coturn did not answer STUN within 10 s")


@pytest.mark.interop
async def test_stun_server_reflexive_candidate_equal_to_its_base_is_not_advertised(coturn):
    alice, _ = await gathered(stun_server=coturn)
    try:
        # Without a NAT the mapped address is the host address: RFC 8445 5.1.3 drops it.
        assert [c.type for c in alice.local_candidates] == ["host", "host"]
        assert "srflx" not in sdp_text(alice)
    finally:
        await alice.close()


@pytest.mark.interop
async def test_media_through_a_turn_relay(coturn):
    # Alice's only host address is IPv6 and Bob's IPv4: her relayed IPv4 candidate is the
    # only one that pairs with his, so every check and datagram goes through coturn.
    alice, alice_events = await gathered(
        local_addresses=["::1"], turn_server=coturn, turn_username="alice", turn_password="secret"
    )
    bob, bob_events = await gathered()
    try:
        relays = [c for c in alice.local_candidates if c.type == "relay"]
        assert [c.component for c in relays] == [1, 2]
        assert all(c.address == "127.0.0.1" and c.related_address == "127.0.0.1" for c in relays)
        assert alice.default_candidate().type == "relay"
        await negotiate(alice, bob)
        await wait_done(alice_events, bob_events)
        assert isinstance(alice_events.outcome, ICENegotiationDidSucceed), alice_events.outcome
        pair = alice_events.outcome.selected_pair
        assert (pair.local_candidate.type, pair.remote_candidate.type) == ("relay", "host")
        assert bob_events.outcome.selected_pair.remote_candidate.type == "relay"
        relay = pair.local_candidate
        await alice.send(b"relayed")
        assert await asyncio.wait_for(bob.recv(), 5) == (
            b"relayed",
            1,
            (relay.address, relay.port),
        )
        await bob.send(b"relayed back", component=2)
        bob_rtcp = bob_events.outcome.valid_pairs[1].local_candidate
        assert await asyncio.wait_for(alice.recv(), 5) == (
            b"relayed back",
            2,
            (bob_rtcp.address, bob_rtcp.port),
        )
    finally:
        await closing(alice, bob)


def test_ice_candidate_text():
    candidate = ICECandidate(2, "srflx", "192.0.2.1", 5000, 100, "f", "UDP", "10.0.0.1", 5000)
    assert str(candidate) == "(RTCP) 192.0.2.1:5000 raddr=10.0.0.1 priority=100 type=srflx"
