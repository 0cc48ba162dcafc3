"""Two RTPTransports over loopback: plain, SRTP, ICE, latching and the packet filter.

Run inside a private network namespace:
  unshare -n sh -c 'ip link set lo up; PYTHONPATH=src python -m pytest \\
      tests/integration/test_rtp_transport.py'
"""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass, field

import pytest

from sipsimple.core.media import RTPTransport, RTPTransportError
from sipsimple.core.sdp import (
    SDPAttribute,
    SDPConnection,
    SDPMediaStream,
    SDPNegotiationError,
    SDPSession,
)
from sipsimple.media.rtcp import ReceiverReport, parse_rtcp, serialize_rtcp
from sipsimple.media.rtp import RTPPacket
from sipsimple.media.srtp import SUITES, CryptoAttribute, SRTPSession
from sipsimple.notification import NotificationQueue

pytestmark = pytest.mark.timeout(30)

LOCAL = "127.0.0.1"


@dataclass
class Receiver:
    """Collects what a transport hands over and wakes up whoever waits for it."""

    packets: list[RTPPacket] = field(default_factory=list)
    rtcp: list[bytes] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def rtp_received(self, packet: RTPPacket, now: float) -> None:
        self.packets.append(packet)
        self.changed.set()

    def rtcp_received(self, data: bytes, now: float) -> None:
        self.rtcp.append(data)
        self.changed.set()

    async def wait(self, rtp: int = 0, rtcp: int = 0, timeout: float = 3.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.packets) < rtp or len(self.rtcp) < rtcp:
                self.changed.clear()
                await self.changed.wait()


def media_line() -> SDPMediaStream:
    return SDPMediaStream(
        "audio", 0, "RTP/AVP", formats=["0"], attributes=[SDPAttribute("rtpmap", "0 PCMU/8000")]
    )


def session(media: SDPMediaStream) -> SDPSession:
    """A whole description around ``media``, written out and parsed as a peer would."""
    text = str(SDPSession(LOCAL, connection=SDPConnection(LOCAL), media=[media]))
    return SDPSession.parse(text)


def without(sdp: SDPSession, name: str, keep: str | None = None) -> SDPSession:
    """``sdp`` without the ``name`` attributes (but the one whose value starts with ``keep``)."""
    media = sdp.media[0]
    media.attributes = [
        a for a in media.attributes if a.name != name or (keep and a.value.startswith(keep))
    ]
    return session(media)


@dataclass
class Call:
    offerer: RTPTransport
    answerer: RTPTransport
    offer: SDPSession
    answer: SDPSession
    a: Receiver
    b: Receiver

    async def close(self) -> None:
        await self.offerer.stop()
        await self.answerer.stop()


async def initialized(**options) -> RTPTransport:
    options.setdefault("local_address", LOCAL)
    transport = RTPTransport(**options)
    with NotificationQueue(sender=transport) as queue:
        await transport.set_INIT()
        await queue.wait_for("RTPTransportDidInitialize", timeout=5)
        names = [n.name for n in queue._items]
    assert transport.state == "INIT"
    if transport.use_ice:  # the ICE session's gathering states come first
        assert names == ["RTPTransportICENegotiationStateDidChange"] * 2
    else:
        assert names == []
    return transport


async def connect(
    offerer: RTPTransport,
    answerer: RTPTransport,
    edit_offer=lambda sdp: sdp,
    edit_answer=lambda sdp: sdp,
) -> Call:
    """Offer/answer between two initialized transports; both ESTABLISHED on return."""
    offerer.set_LOCAL()
    media = media_line()
    offerer.update_local_media(media)
    offer = edit_offer(session(media))
    answerer.set_REMOTE(offer, 0)
    media = media_line()
    answerer.update_local_media(media)
    answer = edit_answer(session(media))
    await answerer.set_ESTABLISHED(answer, offer, 0)
    await offerer.set_ESTABLISHED(offer, answer, 0)
    a, b = Receiver(), Receiver()
    offerer.receiver, answerer.receiver = a, b
    return Call(offerer, answerer, offer, answer, a, b)


def rtp(seq: int, ssrc: int = 0x11111111, payload: bytes = b"\xff" * 160) -> bytes:
    return RTPPacket(0, seq & 0xFFFF, seq * 160, ssrc, payload).serialize()


def rtcp_report(ssrc: int) -> bytes:
    return serialize_rtcp([ReceiverReport(ssrc, ())])


async def exchange(call: Call, count: int = 5, rtcp: bool = True) -> None:
    """Packets both ways; each side receives exactly what the other sent."""
    for seq in range(count):
        call.offerer.send_rtp(rtp(seq, 0xA))
        call.answerer.send_rtp(rtp(seq, 0xB))
    if rtcp:
        call.offerer.send_rtcp(rtcp_report(0xA))
        call.answerer.send_rtcp(rtcp_report(0xB))
    await call.a.wait(rtp=count, rtcp=int(rtcp))
    await call.b.wait(rtp=count, rtcp=int(rtcp))
    assert [p.sequence_number for p in call.b.packets[-count:]] == list(range(count))
    assert {p.ssrc for p in call.a.packets} == {0xB}
    assert call.a.packets[-1].payload == b"\xff" * 160
    if rtcp:
        assert parse_rtcp(call.a.rtcp[-1])[0].ssrc == 0xB
        assert parse_rtcp(call.b.rtcp[-1])[0].ssrc == 0xA


class RawPeer:
    """A bare UDP socket on loopback that plays a peer, or a stranger."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOCAL, 0))
        self.sock.setblocking(False)
        self.address = self.sock.getsockname()

    def send(self, data: bytes, transport: RTPTransport) -> None:
        self.sock.sendto(data, (transport.local_rtp_address, transport.local_rtp_port))

    async def receive(self, timeout: float = 2.0) -> bytes:
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(loop.sock_recv(self.sock, 2048), timeout)

    def close(self) -> None:
        self.sock.close()


async def settle() -> None:
    await asyncio.sleep(0.05)


# --- plain RTP -----------------------------------------------------------------------------


async def test_plain_exchange_both_ways_with_sdp_attributes():
    call = await connect(await initialized(), await initialized())
    try:
        offerer, answerer = call.offerer, call.answerer
        assert offerer.state == answerer.state == "ESTABLISHED"
        port = offerer.local_rtp_port
        assert port % 2 == 0 and 50000 <= port < 50500
        media = call.offer.media[0]
        assert (media.port, media.transport, media.connection.address) == (port, "RTP/AVP", LOCAL)
        assert media.attributes.getfirst("rtcp") == f"{port + 1} IN IP4 {LOCAL}"
        assert "rtcp-mux" in media.attributes and "crypto" not in media.attributes
        assert (answerer.remote_rtp_address, answerer.remote_rtp_port) == (LOCAL, port)
        assert answerer.remote_rtp_port_received is None  # nothing arrived yet
        assert offerer.rtcp_mux and answerer.rtcp_mux
        assert not offerer.srtp_active and not offerer.ice_active
        assert offerer.local_rtp_candidate_type is None
        await exchange(call)
        assert answerer.remote_rtp_port_received == port
        assert offerer.counters.rtp_sent == answerer.counters.rtp_received == 5
        assert offerer.counters.rtcp_sent == answerer.counters.rtcp_received == 1
        assert answerer.counters.garbage == answerer.counters.wrong_address == 0
    finally:
        await call.close()
    assert call.offerer.state == "ENDED"


async def test_rtcp_on_its_own_port_without_rtcp_mux():
    call = await connect(
        await initialized(), await initialized(), edit_offer=lambda sdp: without(sdp, "rtcp-mux")
    )
    try:
        assert not call.offerer.rtcp_mux and not call.answerer.rtcp_mux
        assert "rtcp-mux" not in call.answer.media[0].attributes
        await exchange(call)
    finally:
        await call.close()


async def test_rtcp_port_from_the_peers_rtcp_attribute():
    offerer, answerer = await initialized(), await initialized()
    elsewhere = RawPeer()

    def move_rtcp(sdp: SDPSession) -> SDPSession:
        media = without(sdp, "rtcp-mux").media[0]
        media.attributes = [a for a in media.attributes if a.name != "rtcp"]
        media.attributes.append(SDPAttribute("rtcp", f"{elsewhere.address[1]} IN IP4 {LOCAL}"))
        return session(media)

    call = await connect(offerer, answerer, edit_answer=move_rtcp)
    try:
        offerer.send_rtcp(rtcp_report(0xA))
        assert parse_rtcp(await elsewhere.receive())[0].ssrc == 0xA
    finally:
        elsewhere.close()
        await call.close()


# --- SRTP ----------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", list(SUITES))
async def test_srtp_with_each_suite(suite):
    offerer = await initialized(encryption="sdes_optional")
    answerer = await initialized(encryption="opportunistic")
    # Leave only the suite under test in the offer: the answerer has to take it.
    call = await connect(offerer, answerer, edit_offer=lambda sdp: only_suite(sdp, suite))
    try:
        assert offerer.srtp_active and answerer.srtp_active
        assert offerer.srtp_cipher == answerer.srtp_cipher == suite
        assert len(call.answer.media[0].attributes.getall("crypto")) == 1
        await exchange(call)
    finally:
        await call.close()


def only_suite(sdp: SDPSession, suite: str) -> SDPSession:
    media = sdp.media[0]
    media.attributes = [
        a for a in media.attributes if a.name != "crypto" or a.value.split()[1] == suite
    ]
    return session(media)


async def test_sdes_mandatory_offers_savp_and_keys_both_ways():
    offerer = await initialized(encryption="sdes_mandatory")
    call = await connect(offerer, await initialized(encryption="opportunistic"))
    try:
        assert call.offer.media[0].transport == call.answer.media[0].transport == "RTP/SAVP"
        assert len(call.offer.media[0].attributes.getall("crypto")) == len(SUITES)
        assert call.offerer.srtp_cipher == next(iter(SUITES))  # the strongest, offered first
        await exchange(call)
    finally:
        await call.close()


async def test_srtp_policies_meet_a_plain_peer():
    # Opportunistic SRTP falls back to plain RTP with a peer that ignores a=crypto.
    call = await connect(await initialized(encryption="opportunistic"), await initialized())
    try:
        assert "crypto" not in call.answer.media[0].attributes
        assert not call.offerer.srtp_active and not call.answerer.srtp_active
        await exchange(call)
    finally:
        await call.close()
    # A mandatory offer (RTP/SAVP) cannot be answered without SRTP.
    offerer = await initialized(encryption="sdes_mandatory")
    answerer = await initialized()
    offerer.set_LOCAL()
    media = media_line()
    offerer.update_local_media(media)
    with pytest.raises(SDPNegotiationError, match="SRTP"):
        answerer.set_REMOTE(session(media), 0)
    assert answerer.state == "INIT"
    await offerer.stop()
    await answerer.stop()


async def test_srtp_authentication_failures_and_replays_are_counted():
    offerer = await initialized(encryption="opportunistic")
    answerer = await initialized(encryption="opportunistic")
    call = await connect(offerer, answerer)
    stranger = RawPeer()
    try:
        await exchange(call, rtcp=False)
        # Bytes keyed with another key: the authentication tag does not match.
        size = SUITES[offerer.srtp_cipher].key_salt_length
        forged = SRTPSession(offerer.srtp_cipher, os.urandom(size), os.urandom(size))
        stranger.send(forged.protect(rtp(100, 0xA)), answerer)
        stranger.send(forged.protect_rtcp(rtcp_report(0xA)), answerer)
        # A packet protected with the offerer's real key, sent twice: the second is a replay.
        offered = CryptoAttribute.parse(call.offer.media[0].attributes.getfirst("crypto"))
        answered = CryptoAttribute.parse(call.answer.media[0].attributes.getfirst("crypto"))
        thief = SRTPSession(offerer.srtp_cipher, offered.key_salt, answered.key_salt)
        packet = thief.protect(rtp(200, 0xA))
        stranger.send(packet, answerer)
        stranger.send(packet, answerer)
        await settle()
        counters = answerer.counters
        assert counters.srtp_authentication_failures == 2
        assert counters.srtp_replays == 1
        assert counters.wrong_address == 1  # the authentic one came from elsewhere
        assert len(call.b.packets) == 5
    finally:
        stranger.close()
        await call.close()


# --- the address and SSRC filter -----------------------------------------------------------


async def test_latching_follows_the_peer_to_its_new_address():
    call = await connect(await initialized(), await initialized())
    offerer, answerer = call.offerer, call.answerer
    moved = RawPeer()
    try:
        await exchange(call, rtcp=False)
        # One packet from another address is a stray: dropped, the stream stays.
        moved.send(rtp(5, 0xA), answerer)
        await settle()
        offerer.send_rtp(rtp(6, 0xA))
        await call.b.wait(rtp=6)
        assert answerer.counters.wrong_address == 1
        assert answerer.remote_rtp_port_received == offerer.local_rtp_port
        # The same SSRC keeps coming from the new address: the third in a row moves the
        # stream there (the two before it are still refused).
        for seq in range(7, 10):
            moved.send(rtp(seq, 0xA), answerer)
        await call.b.wait(rtp=7)
        assert [p.sequence_number for p in call.b.packets[5:]] == [6, 9]
        assert answerer.counters.wrong_address == 3
        assert answerer.counters.latch_changes == 1
        assert answerer.remote_rtp_port_received == moved.address[1]
        answerer.send_rtp(rtp(1, 0xB))
        assert RTPPacket.parse(await moved.receive()).ssrc == 0xB
        # The old address now is the stranger.
        offerer.send_rtp(rtp(10, 0xA))
        await settle()
        assert answerer.counters.wrong_address == 4
    finally:
        moved.close()
        await call.close()


async def test_garbage_and_foreign_ssrcs_are_dropped_and_counted():
    transport = await initialized()
    transport.set_LOCAL()
    media = media_line()
    transport.update_local_media(media)
    peer = RawPeer()
    answer = media_line()
    answer.port = peer.address[1]
    answer.connection = SDPConnection(LOCAL)
    await transport.set_ESTABLISHED(session(media), session(answer), 0)
    receiver = Receiver()
    transport.receiver = receiver
    try:
        for data in (
            b"",
            b"\x80",
            b"\x00" + os.urandom(10),  # version 0 (random bytes could look like RTCP)
            b"\x00\x01\x00\x00" + os.urandom(16),  # STUN-like
            b"\x40" + os.urandom(40),  # RTP version 1
            b"\x8f\x00" + os.urandom(10),  # 15 CSRCs announced, none there
            b"\xa0\x00" + os.urandom(10) + b"\x00",  # padding count 0
        ):
            peer.send(data, transport)
        peer.sock.sendto(b"\x81\xc9\x00", (LOCAL, transport.local_rtp_port + 1))  # short RTCP
        peer.send(rtp(1, 0x1), transport)
        await receiver.wait(rtp=1)
        assert transport.counters.garbage == 8
        # Another SSRC from the same address: a stray packet is refused...
        peer.send(rtp(500, 0x2), transport)
        peer.send(rtp(2, 0x1), transport)
        await receiver.wait(rtp=2)
        assert transport.counters.wrong_ssrc == 1
        # ...a stream that keeps coming in sequence is believed (the peer restarted).
        for seq in range(600, 603):
            peer.send(rtp(seq, 0x3), transport)
        await receiver.wait(rtp=3)
        assert transport.counters.wrong_ssrc == 3
        assert [p.ssrc for p in receiver.packets] == [0x1, 0x1, 0x3]
        assert transport.counters.rtp_received == 3
    finally:
        peer.close()
        await transport.stop()


# --- ICE -----------------------------------------------------------------------------------


async def ice_call(encryption: str | None = None) -> tuple[Call, list, list]:
    offerer = await initialized(use_ice=True, encryption=encryption)
    answerer = await initialized(use_ice=True, encryption=encryption)
    with (
        NotificationQueue(sender=offerer) as offerer_queue,
        NotificationQueue(sender=answerer) as answerer_queue,
    ):
        call = await connect(offerer, answerer)
        outcomes = [
            await queue.wait_for("RTPTransportICENegotiationDidSucceed", timeout=10)
            for queue in (offerer_queue, answerer_queue)
        ]
        states = [
            [(n.data.prev_state, n.data.state) for n in list(queue._items)]
            for queue in (offerer_queue, answerer_queue)
        ]
    return call, outcomes, states


async def test_ice_on_loopback_host_candidates():
    call, outcomes, states = await ice_call()
    try:
        offerer, answerer = call.offerer, call.answerer
        media = call.offer.media[0]
        assert media.attributes.getfirst("ice-ufrag") and media.attributes.getall("candidate")
        assert media.port == offerer.local_rtp_port and media.connection.address == LOCAL
        for transport in (offerer, answerer):
            assert transport.ice_active
            assert transport.local_rtp_candidate_type == "host"
            assert transport.remote_rtp_candidate_type == "host"
        succeeded = outcomes[0].data
        assert succeeded.duration >= 0 and succeeded.valid_pairs
        assert {c.component for c in succeeded.local_candidates} == {1, 2}
        assert ("NEGOTIATING", "RUNNING") in states[0]
        await exchange(call)
        assert answerer.remote_rtp_port_received == offerer.local_rtp_port
    finally:
        await call.close()


async def test_srtp_over_ice():
    call, _, _ = await ice_call(encryption="sdes_optional")
    try:
        assert call.offerer.ice_active and call.offerer.srtp_active
        await exchange(call)
    finally:
        await call.close()


async def test_ice_with_a_peer_that_does_no_ice_uses_the_sdp_address():
    offerer = await initialized(use_ice=True)
    answerer = await initialized()
    with NotificationQueue(sender=offerer) as queue:
        call = await connect(offerer, answerer)
        try:
            assert not offerer.ice_active and offerer.local_rtp_candidate_type is None
            await exchange(call)
            assert all("ICE" not in n.name or "StateDidChange" in n.name for n in queue._items)
        finally:
            await call.close()


# --- life cycle ----------------------------------------------------------------------------


async def test_no_free_port_pair_fails_initialization():
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind((LOCAL, 0))
    port = holder.getsockname()[1]
    low = port - port % 2
    transport = RTPTransport(local_address=LOCAL, port_range=(low, low + 1))
    try:
        with NotificationQueue(sender=transport) as queue:
            await transport.set_INIT()
            notification = await queue.get(timeout=2)
        assert notification.name == "RTPTransportDidFail"
        assert str(low) in notification.data.reason
        assert transport.state == "INVALID"
    finally:
        holder.close()
        await transport.stop()


async def test_state_checks_and_bad_arguments():
    with pytest.raises(ValueError, match="encryption"):
        RTPTransport(encryption="zrtp")
    with pytest.raises(ValueError, match="port_range"):
        RTPTransport(port_range=(5000, 4000))
    with pytest.raises(ValueError, match="not an IP address"):
        RTPTransport(local_address="localhost")
    transport = RTPTransport(local_address=LOCAL)
    with pytest.raises(RTPTransportError, match="needs state INIT"):
        transport.set_LOCAL()
    await transport.set_INIT()
    with pytest.raises(RTPTransportError, match="needs state NULL"):
        transport.set_INIT()
    with pytest.raises(RTPTransportError, match="update_local_media"):
        transport.update_local_media(media_line())
    transport.send_rtp(rtp(1))  # nowhere to send yet: counted, not raised
    assert transport.counters.send_errors == 1
    await transport.stop()
    await transport.stop()
    assert transport.state == "ENDED"


async def test_a_later_exchange_moves_the_peer_and_keeps_our_keys():
    offerer = await initialized(encryption="opportunistic")
    call = await connect(offerer, await initialized(encryption="opportunistic"))
    elsewhere = RawPeer()
    try:
        await exchange(call, rtcp=False)
        # A re-offer describes what was agreed: the same key, one a=crypto line.
        media = media_line()
        offerer.update_local_media(media)
        assert (
            media.attributes.getall("crypto") == call.offer.media[0].attributes.getall("crypto")[:1]
        )
        # The answer to it moves the peer's media to another address (a transfer, say).
        answer = call.answer.media[0]
        answer.port = elsewhere.address[1]
        await offerer.set_ESTABLISHED(session(media), session(answer), 0)
        assert offerer.remote_rtp_port == elsewhere.address[1]
        assert offerer.remote_rtp_port_received is None  # nothing from there yet
        offerer.send_rtp(rtp(50, 0xA))
        offered = CryptoAttribute.parse(call.offer.media[0].attributes.getfirst("crypto"))
        answered = CryptoAttribute.parse(answer.attributes.getfirst("crypto"))
        listener = SRTPSession(offerer.srtp_cipher, answered.key_salt, offered.key_salt)
        assert RTPPacket.parse(listener.unprotect(await elsewhere.receive())).sequence_number == 50
    finally:
        elsewhere.close()
        await call.close()


async def test_without_ice_checks_the_stream_still_follows_the_peer():
    offerer = await initialized(use_ice=True)
    call = await connect(offerer, await initialized())
    moved = RawPeer()
    try:
        await exchange(call, rtcp=False)
        for seq in range(5, 8):
            moved.send(rtp(seq, 0xB), offerer)
        await call.a.wait(rtp=6)
        await settle()
        offerer.send_rtp(rtp(9, 0xA))
        assert RTPPacket.parse(await moved.receive()).sequence_number == 9
        assert offerer.counters.latch_changes == 1 and not offerer.ice_active
    finally:
        moved.close()
        await call.close()
