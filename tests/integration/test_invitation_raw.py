"""Invitation against a raw UDP socket that plays the peer message by message: the
cases a well-behaved endpoint does not produce on demand (a 2xx crossing our CANCEL, a
PRACK that never comes, a BYE nobody answers, a re-INVITE answered 481, a bad offer)."""

from __future__ import annotations

import asyncio
import socket

import pytest
from tests.support.invitation import contact, offer
from tests.support.sip import LOOPBACK, local_engine

from sipsimple.core import Invitation, SDPSession
from sipsimple.core.sip.headers import FromHeader, ToHeader
from sipsimple.core.sip.message import SIPRequest, SIPResponse, parse_message
from sipsimple.core.sip.uri import SIPURI
from sipsimple.notification import NotificationQueue

SDP = offer(("audio", 4000, "sendrecv")).encode()


class RawPeer:
    """A UDP socket on 127.0.0.1 driven from the test's loop."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind((LOOPBACK, 0))
        self.socket.setblocking(False)
        self.port = self.socket.getsockname()[1]
        self.loop = asyncio.get_running_loop()
        self.engine_address: tuple[str, int] | None = None

    def close(self) -> None:
        self.socket.close()

    async def receive(self, method: str | None = None, timeout: float = 5.0) -> SIPRequest:
        """The next request (of ``method``), skipping responses and other requests."""
        async with asyncio.timeout(timeout):
            while True:
                data, source = await self.loop.sock_recvfrom(self.socket, 65535)
                self.engine_address = source
                message = parse_message(data)
                if isinstance(message, SIPRequest) and method in (None, message.method):
                    return message

    async def response(self, timeout: float = 5.0) -> SIPResponse:
        async with asyncio.timeout(timeout):
            while True:
                data, _ = await self.loop.sock_recvfrom(self.socket, 65535)
                message = parse_message(data)
                if isinstance(message, SIPResponse):
                    return message

    async def send(self, message: SIPRequest | SIPResponse, to: tuple[str, int] | None = None):
        await self.loop.sock_sendto(self.socket, bytes(message), to or self.engine_address)

    def answer(
        self, request: SIPRequest, code: int, *, tag: str = "raw", body: bytes = b"", **headers
    ) -> SIPResponse:
        extra = [("Contact", f"<sip:raw@{LOOPBACK}:{self.port}>")]
        extra += [(name.replace("_", "-"), value) for name, value in headers.items()]
        if body:
            extra.append(("Content-Type", "application/sdp"))
        return request.make_response(code, to_tag=tag, headers=extra, body=body)


def place_call(engine, peer: RawPeer, **kwargs) -> Invitation:
    invitation = Invitation()
    uri = SIPURI(user="raw", host=LOOPBACK, port=peer.port)
    invitation.send_invite(
        uri,
        FromHeader(SIPURI(user="alice", host=LOOPBACK)),
        ToHeader(uri),
        None,
        contact(engine.udp_port, "alice"),
        SDPSession.parse(offer(("audio", 3000, "sendrecv"))),
        **kwargs,
    )
    return invitation


async def changed(queue, state, sub_state=None, timeout=5.0):
    def matches(notification):
        data = notification.data
        return data.state == state and (sub_state is None or data.sub_state == sub_state)

    return (await queue.wait_for("SIPInvitationChangedState", matches, timeout)).data


def request_to_engine(
    peer: RawPeer, engine, method: str, *, cseq: int, headers=(), body=b"", to_tag=None
) -> SIPRequest:
    lines = [
        ("Via", f"SIP/2.0/UDP {LOOPBACK}:{peer.port};branch=z9hG4bK-{method}-{cseq};rport"),
        ("From", f"<sip:raw@{LOOPBACK}>;tag=rawfrom"),
        ("To", f"<sip:alice@{LOOPBACK}>" + (f";tag={to_tag}" if to_tag else "")),
        ("Call-ID", "raw-call-1"),
        ("CSeq", f"{cseq} {method}"),
        ("Contact", f"<sip:raw@{LOOPBACK}:{peer.port}>"),
        ("Max-Forwards", "70"),
        *headers,
    ]
    if body:
        lines.append(("Content-Type", "application/sdp"))
    return SIPRequest(method, f"sip:alice@{LOOPBACK}:{engine.udp_port}", lines, body)


async def test_a_2xx_crossing_our_cancel_is_acked_then_ended_with_bye():
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        peer = RawPeer()
        try:
            with NotificationQueue() as queue:
                invitation = place_call(engine, peer)
                invite = await peer.receive("INVITE")
                await peer.send(peer.answer(invite, 180))
                await changed(queue, "early")
                invitation.end()
                cancel = await peer.receive("CANCEL")
                # the callee answered before it saw the CANCEL
                await peer.send(peer.answer(invite, 200, body=SDP))
                await peer.send(cancel.make_response(200))
                ack = await peer.receive("ACK")
                assert ack.cseq.number == invite.cseq.number
                bye = await peer.receive("BYE")
                assert bye.to_header.tag == "raw"
                await peer.send(bye.make_response(200))
                gone = await changed(queue, "disconnected")
                assert (gone.prev_state, gone.code, gone.disconnect_reason) == (
                    "disconnecting",
                    200,
                    "user request",
                )
        finally:
            peer.close()


async def test_a_second_2xx_from_another_fork_is_acked_and_ended():
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        peer = RawPeer()
        try:
            with NotificationQueue() as queue:
                invitation = place_call(engine, peer)
                invite = await peer.receive("INVITE")
                await peer.send(peer.answer(invite, 200, tag="fork1", body=SDP))
                await peer.receive("ACK")
                await changed(queue, "connected")
                await peer.send(peer.answer(invite, 200, tag="fork2", body=SDP))
                ack = await peer.receive("ACK")
                assert ack.to_header.tag == "fork2"
                bye = await peer.receive("BYE")
                assert bye.to_header.tag == "fork2"
                await peer.send(bye.make_response(200))
                await asyncio.sleep(0.1)
                assert invitation.state == "connected"
                assert invitation.dialog_id.remote_tag == "fork1"
                invitation.end()
                bye = await peer.receive("BYE")
                assert bye.to_header.tag == "fork1"
                await peer.send(bye.make_response(200))
                await changed(queue, "disconnected")
        finally:
            peer.close()


async def test_end_is_bounded_when_the_peer_never_answers_the_bye():
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        peer = RawPeer()
        try:
            with NotificationQueue() as queue:
                invitation = place_call(engine, peer)
                invite = await peer.receive("INVITE")
                await peer.send(peer.answer(invite, 200, body=SDP))
                await changed(queue, "connected")
                invitation.end(timeout=0.5)
                await peer.receive("BYE")
                gone = await changed(queue, "disconnected", timeout=2)
                assert (gone.code, gone.disconnect_reason) == (408, "user request")
        finally:
            peer.close()


async def test_a_reinvite_answered_481_ends_the_dialog():
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        peer = RawPeer()
        try:
            with NotificationQueue() as queue:
                invitation = place_call(engine, peer)
                invite = await peer.receive("INVITE")
                await peer.send(peer.answer(invite, 200, body=SDP))
                await changed(queue, "connected")
                invitation.send_reinvite(sdp=SDPSession.parse(offer(("audio", 3000, "sendonly"))))
                reinvite = await peer.receive("INVITE")
                assert reinvite.to_header.tag == "raw"
                await peer.send(reinvite.make_response(481))
                done = await changed(queue, "connected", "normal")
                assert done.code == 481
                bye = await peer.receive("BYE")
                await peer.send(bye.make_response(481))
                gone = await changed(queue, "disconnected")
                assert gone.disconnect_reason == "dialog gone"
        finally:
            peer.close()


async def test_our_reliable_180_without_a_prack_ends_in_504(monkeypatch):
    """RFC 3262 section 3: retransmitted for 64*T1, then the INVITE is rejected."""
    async with local_engine(udp_port=0, tcp_port=None, T1=0.02, T2=0.1) as engine:
        peer = RawPeer()
        try:
            with NotificationQueue() as queue:
                invite = request_to_engine(
                    peer, engine, "INVITE", cseq=1, headers=[("Require", "100rel")], body=SDP
                )
                await peer.send(invite, (LOOPBACK, engine.udp_port))
                incoming = await queue.wait_for("SIPInvitationChangedState", timeout=5)
                invitation = incoming.sender
                invitation.send_response(180)
                rseqs = set()
                response = await peer.response()
                while response.code < 200:
                    assert response.code in (100, 180)
                    if response.code == 180:
                        assert "100rel" in response.require
                        rseqs.add(response.headers["RSeq"])
                    response = await peer.response()
                assert response.code == 504 and len(rseqs) == 1
                gone = await changed(queue, "disconnected")
                assert (gone.code, gone.disconnect_reason) == (504, "missing PRACK")
        finally:
            peer.close()


async def test_an_offer_we_cannot_answer_gets_488_and_a_failed_sdp_update():
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        peer = RawPeer()
        try:
            with NotificationQueue() as queue:
                video = (
                    b"v=0\r\no=raw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
                    b"t=0 0\r\nm=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
                )
                invite = request_to_engine(peer, engine, "INVITE", cseq=1, body=video)
                await peer.send(invite, (LOOPBACK, engine.udp_port))
                invitation = (await queue.wait_for("SIPInvitationChangedState", timeout=5)).sender
                invitation.send_response(
                    200, sdp=SDPSession.parse(offer(("audio", 3000, "sendrecv")))
                )
                update = (await queue.wait_for("SIPInvitationGotSDPUpdate", timeout=5)).data
                assert not update.succeeded and update.error
                response = await peer.response()
                while response.code < 200:
                    response = await peer.response()
                assert response.code == 488 and "Warning" in response.headers
                gone = await changed(queue, "disconnected")
                assert gone.code == 488
        finally:
            peer.close()


async def test_a_bad_sdp_or_body_type_is_refused_before_any_invitation():
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        peer = RawPeer()
        try:
            with NotificationQueue("SIPInvitationChangedState") as queue:
                bad = request_to_engine(peer, engine, "INVITE", cseq=1, body=b"v=0\r\nnonsense\r\n")
                await peer.send(bad, (LOOPBACK, engine.udp_port))
                response = await peer.response()
                while response.code < 200:
                    response = await peer.response()
                assert response.code == 400
                other = request_to_engine(peer, engine, "INVITE", cseq=2, body=SDP)
                other.headers.set("Content-Type", "text/plain")
                await peer.send(other, (LOOPBACK, engine.udp_port))
                response = await peer.response()
                while response.code < 200:
                    response = await peer.response()
                assert response.code == 415 and response.headers["Accept"] == "application/sdp"
                with pytest.raises(TimeoutError):
                    await queue.get(0.2)  # no Invitation was announced
        finally:
            peer.close()


async def test_options_lists_the_invite_methods_and_extensions():
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        peer = RawPeer()
        try:
            options = request_to_engine(peer, engine, "OPTIONS", cseq=1)
            await peer.send(options, (LOOPBACK, engine.udp_port))
            response = await peer.response()
            assert response.code == 200
            assert {"INVITE", "ACK", "CANCEL", "BYE", "PRACK", "UPDATE"} <= set(response.allow)
            assert {"100rel", "replaces", "timer"} <= set(response.supported)
        finally:
            peer.close()


async def test_stopping_the_engine_disconnects_the_calls_left():
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        peer = RawPeer()
        try:
            with NotificationQueue() as queue:
                invitation = place_call(engine, peer)
                invite = await peer.receive("INVITE")
                await peer.send(peer.answer(invite, 200, body=SDP))
                assert (await changed(queue, "connected")).originator == "local"
                await engine.stop()
                gone = await changed(queue, "disconnected")
                assert (gone.originator, gone.disconnect_reason) == ("local", "engine stopped")
                assert invitation.state == "disconnected"
        finally:
            peer.close()


async def test_a_reinvite_that_times_out_is_reported_as_408_and_ends_the_call():
    async with local_engine(udp_port=0, tcp_port=None, T1=0.02, T2=0.1) as engine:
        peer = RawPeer()
        try:
            with NotificationQueue() as queue:
                invitation = place_call(engine, peer)
                invite = await peer.receive("INVITE")
                await peer.send(peer.answer(invite, 200, body=SDP))
                await changed(queue, "connected")
                invitation.send_reinvite(sdp=SDPSession.parse(offer(("audio", 3000, "sendonly"))))
                await peer.receive("INVITE")  # and never answered
                done = await changed(queue, "connected", "normal")
                assert (done.code, done.reason, done.originator) == (
                    408,
                    "Request Timeout",
                    "local",
                )
                assert invitation.sdp.active_local.media[0].direction == "sendrecv"
                bye = await peer.receive("BYE")
                await peer.send(bye.make_response(200))
                gone = await changed(queue, "disconnected")
                assert gone.disconnect_reason == "timeout"
        finally:
            peer.close()
