"""Invitation between the in-process Engine and a RemoteSDK endpoint over loopback: calls,
ringing, answers, rejections, CANCEL, timeouts, re-INVITEs (hold, streams, glare), BYE
from either side, reliable provisional responses, session timers, and a raw peer that
never ACKs."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from tests.support import invitation as peer
from tests.support.invitation import offer
from tests.support.remote import RemoteSDK
from tests.support.sip import LOOPBACK, local_engine, set_packet_loss

from sipsimple.core import Invitation, InvitationStateError, SDPSession
from sipsimple.core.sip.headers import ContactHeader, FromHeader, ToHeader
from sipsimple.core.sip.message import SIPResponse, parse_message
from sipsimple.core.sip.uri import SIPURI
from sipsimple.notification import NotificationCenter, NotificationQueue

SUPPORT = "tests.support.invitation"
ANSWER = [(180, False, 0.0), (200, True, 0.05)]


@pytest.fixture(scope="module")
def remote():
    with RemoteSDK() as sdk:
        sdk.ports = sdk.call("tests.support.sip:start_engine", udp_port=0, tcp_port=0, T4=0.5)
        yield sdk


@pytest.fixture
def bob(remote):
    """The remote endpoint, its Invitation rules reset for each test."""
    remote.call(f"{SUPPORT}:reset")
    remote.clear()
    yield remote
    remote.call(f"{SUPPORT}:reset")


@pytest.fixture
def settings(monkeypatch):
    """Change the local Invitation settings for one test."""

    def change(**values):
        for name, value in values.items():
            monkeypatch.setattr(Invitation, name, value)

    return change


def bob_uri(bob, transport: str = "udp") -> SIPURI:
    parameters = {} if transport == "udp" else {"transport": transport}
    return SIPURI(user="bob", host=LOOPBACK, port=bob.ports[transport], parameters=parameters)


def call(engine, bob, sdp: str | None = None, transport: str = "udp", **kwargs) -> Invitation:
    invitation = Invitation()
    uri = bob_uri(bob, transport)
    port = engine.udp_port if transport == "udp" else engine.tcp_port
    invitation.send_invite(
        uri,
        FromHeader(SIPURI(user="alice", host=LOOPBACK)),
        ToHeader(uri),
        None,
        peer.contact(port, "alice", transport),
        SDPSession.parse(sdp or offer(("audio", 3000, "sendrecv"))),
        **kwargs,
    )
    return invitation


async def changed(queue, state, sub_state=None, timeout=5.0, **fields):
    """The next SIPInvitationChangedState to ``state`` (and ``sub_state``)."""

    def matches(notification):
        data = notification.data
        return (
            data.state == state
            and (sub_state is None or data.sub_state == sub_state)
            and all(getattr(data, k, None) == v for k, v in fields.items())
        )

    return (await queue.wait_for("SIPInvitationChangedState", matches, timeout)).data


async def processed(queue, method, originator, timeout=5.0):
    def matches(notification):
        data = notification.data
        return data.method == method and data.originator == originator

    note = await queue.wait_for("SIPInvitationDidProcessTransaction", matches, timeout)
    return note.data


async def remote_wait(bob, name, condition, timeout=5.0):
    return await asyncio.to_thread(bob.wait_for, name, condition, timeout)


def remote_state(state, sub_state=None, **fields):
    def matches(notification):
        data = notification.data
        return (
            data["state"] == state
            and (sub_state is None or data["sub_state"] == sub_state)
            and all(data.get(k) == v for k, v in fields.items())
        )

    return matches


def direction_of(sdp_text: str, index: int = 0) -> str:
    media = SDPSession.parse(sdp_text).media[index]
    return media.direction


# -- calls out ------------------------------------------------------------------------


async def test_a_call_rings_is_answered_and_ended_by_the_caller(bob):
    bob.call(f"{SUPPORT}:answer_calls", ANSWER, offer(("audio", 4000, "sendrecv")))
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        with NotificationQueue() as queue:
            invitation = call(engine, bob)
            assert (await changed(queue, "outgoing")).originator == "local"
            early = await changed(queue, "early")
            assert (early.code, early.originator) == (180, "remote")
            assert "Contact" in early.headers
            connecting = await changed(queue, "connecting")
            assert connecting.code == 200 and connecting.body
            update = (await queue.wait_for("SIPInvitationGotSDPUpdate", timeout=2)).data
            assert update.succeeded and update.remote_sdp.media[0].port == 4000
            connected = await changed(queue, "connected", "normal")
            assert connected.method == "ACK" and connected.originator == "local"
            done = await processed(queue, "INVITE", "local")
            assert (done.code, done.reason) == (200, "OK") and not hasattr(done, "ack_received")
            assert invitation.remote_user_agent.startswith("sipsimple")
            assert invitation.dialog_id.remote_tag is not None
            assert invitation.transport == "udp"
            assert invitation.sdp.active_remote.media[0].port == 4000
            assert invitation.remote_contact_header.uri.port == bob.ports["udp"]
            await remote_wait(bob, "SIPInvitationChangedState", remote_state("connected"))
            ack = await remote_wait(
                bob, "SIPInvitationDidProcessTransaction", lambda n: n.data["method"] == "INVITE"
            )
            assert ack.data["ack_received"] is True and ack.data["originator"] == "remote"
            invitation.end()
            assert (await changed(queue, "disconnecting")).method == "BYE"
            gone = await changed(queue, "disconnected")
            assert (gone.originator, gone.disconnect_reason, gone.code) == (
                "local",
                "user request",
                200,
            )
            assert (await processed(queue, "BYE", "local")).code == 200
            bye = await remote_wait(bob, "SIPInvitationChangedState", remote_state("disconnected"))
            assert bye.data["method"] == "BYE" and bye.data["originator"] == "remote"
            invitation.end()  # a no-op once ended
            with pytest.raises(InvitationStateError):
                invitation.send_reinvite()


async def test_the_callee_ends_the_call_over_tcp(bob):
    bob.call(f"{SUPPORT}:answer_calls", [(200, True, 0.0)], offer(("audio", 4000, "sendrecv")))
    async with local_engine(udp_port=0, tcp_port=0) as engine:
        with NotificationQueue() as queue:
            invitation = call(engine, bob, transport="tcp")
            await changed(queue, "connected")
            assert invitation.transport == "tcp"
            await remote_wait(bob, "SIPInvitationChangedState", remote_state("connected"))
            bob.call(f"{SUPPORT}:invoke", "in1", "end")
            gone = await changed(queue, "disconnected")
            assert (gone.originator, gone.method, gone.disconnect_reason) == (
                "remote",
                "BYE",
                "user request",
            )
            assert (await processed(queue, "BYE", "remote")).code == 200


@pytest.mark.parametrize("code", [486, 603])
async def test_a_rejected_call_is_disconnected_with_the_code(bob, code):
    bob.call(f"{SUPPORT}:answer_calls", [(code, False, 0.0)], offer(("audio", 4000, "sendrecv")))
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        with NotificationQueue() as queue:
            invitation = call(engine, bob)
            gone = await changed(queue, "disconnected")
            assert (gone.code, gone.originator, gone.prev_state) == (code, "remote", "outgoing")
            assert gone.disconnect_reason == gone.reason
            assert (await processed(queue, "INVITE", "local")).code == code
            assert invitation.sdp.active_local is None
        rejected = await remote_wait(
            bob, "SIPInvitationChangedState", remote_state("disconnected", originator="local")
        )
        assert rejected.data["code"] == code
        # T4 (0.5 s here) after the ACK the server transaction ends and says it came
        done = await remote_wait(
            bob, "SIPInvitationDidProcessTransaction", lambda n: n.data["code"] == code
        )
        assert done.data["ack_received"] is True


async def test_cancel_before_the_answer(bob):
    bob.call(f"{SUPPORT}:answer_calls", [(180, False, 0.0)], offer(("audio", 4000, "sendrecv")))
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        with NotificationQueue() as queue:
            invitation = call(engine, bob)
            await changed(queue, "early")
            invitation.end()
            assert (await changed(queue, "disconnecting")).method == "CANCEL"
            gone = await changed(queue, "disconnected")
            assert (gone.code, gone.originator, gone.disconnect_reason) == (
                487,
                "local",
                "user request",
            )
        cancelled = await remote_wait(
            bob, "SIPInvitationChangedState", remote_state("disconnected")
        )
        assert cancelled.data["method"] == "CANCEL" and cancelled.data["originator"] == "remote"
        assert cancelled.data["code"] == 487


async def test_no_answer_times_out_as_408_and_cancels(bob):
    bob.call(f"{SUPPORT}:answer_calls", [(180, False, 0.0)], offer(("audio", 4000, "sendrecv")))
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        with NotificationQueue() as queue:
            call(engine, bob, timeout=0.5)
            await changed(queue, "early")
            gone = await changed(queue, "disconnected")
            assert (gone.code, gone.originator, gone.disconnect_reason) == (
                408,
                "local",
                "timeout",
            )
        await remote_wait(
            bob, "SIPInvitationChangedState", remote_state("disconnected", method="CANCEL")
        )


async def test_a_call_to_nobody_fails_locally():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind((LOOPBACK, 0))
        port = silent.getsockname()[1]
        async with local_engine(udp_port=0, tcp_port=None, T1=0.02) as engine:
            with NotificationQueue() as queue:
                invitation = Invitation()
                uri = SIPURI(user="bob", host=LOOPBACK, port=port)
                invitation.send_invite(
                    uri,
                    FromHeader(SIPURI(user="alice", host=LOOPBACK)),
                    ToHeader(uri),
                    None,
                    peer.contact(engine.udp_port, "alice"),
                    SDPSession.parse(offer(("audio", 3000, "sendrecv"))),
                )
                gone = await changed(queue, "disconnected")
                assert (gone.code, gone.disconnect_reason) == (408, "timeout")


async def test_bad_arguments_and_states_are_refused_at_once():
    async with local_engine(udp_port=0, tcp_port=None):
        invitation = Invitation()
        uri = SIPURI(user="bob", host=LOOPBACK, port=5)
        good = (uri, FromHeader(uri), ToHeader(uri), None, ContactHeader(uri))
        sdp = SDPSession.parse(offer(("audio", 3000, "sendrecv")))
        with pytest.raises(TypeError):
            invitation.send_invite(*good, "v=0")
        with pytest.raises(TypeError):
            invitation.send_invite(uri, ToHeader(uri), ToHeader(uri), None, ContactHeader(uri), sdp)
        with pytest.raises(ValueError):
            invitation.send_invite(*good, sdp, timeout=0)
        with pytest.raises(InvitationStateError):
            invitation.send_response(200, sdp=sdp)
        with pytest.raises(InvitationStateError):
            invitation.send_reinvite()
        with pytest.raises(InvitationStateError):
            invitation.end()
        with pytest.raises(ValueError):
            invitation.send_response(99)


# -- calls in -------------------------------------------------------------------------


async def test_an_incoming_call_is_announced_answered_and_its_ack_reported(bob):
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        with NotificationQueue() as queue:
            target = f"sip:bob@{LOOPBACK}:{engine.udp_port}"
            bob.call(f"{SUPPORT}:call", "c1", target, offer(("audio", 4000, "sendrecv")))
            incoming = await changed(queue, "incoming")
            assert incoming.originator == "remote" and incoming.method == "INVITE"
            invitation = await _sender(queue, incoming)
            assert invitation.direction == "incoming"
            assert invitation.sdp.proposed_remote.media[0].port == 4000
            assert invitation.remote_identity.uri.user == "alice"
            assert invitation.local_identity.tag == invitation.dialog_id.local_tag
            with pytest.raises(ValueError):
                invitation.send_response(200)  # the offer needs an answer
            invitation.send_response(180)
            assert (await changed(queue, "early")).code == 180
            await remote_wait(bob, "SIPInvitationChangedState", remote_state("early"))
            invitation.send_response(200, sdp=SDPSession.parse(offer(("audio", 3000, "sendrecv"))))
            update = (await queue.wait_for("SIPInvitationGotSDPUpdate", timeout=2)).data
            assert update.succeeded and update.local_sdp.media[0].port == 3000
            assert (await changed(queue, "connecting")).code == 200
            connected = await changed(queue, "connected", "normal")
            assert connected.method == "ACK" and connected.originator == "remote"
            done = await processed(queue, "INVITE", "remote")
            assert done.ack_received is True and done.code == 200
            await remote_wait(bob, "SIPInvitationChangedState", remote_state("connected"))
            invitation.end()
            await changed(queue, "disconnected")


async def _sender(queue, data):
    """The Invitation whose notification carried ``data`` (taken from the queue's items)."""
    return _senders[id(data)]


_senders: dict[int, Invitation] = {}


@pytest.fixture(autouse=True)
def _remember_senders():
    """Keep the sender of every Invitation notification, by its data object."""

    def remember(notification):
        _senders[id(notification.data)] = notification.sender

    NotificationCenter().add_observer(remember, "SIPInvitationChangedState")
    yield
    NotificationCenter().discard_observer(remember, "SIPInvitationChangedState")
    _senders.clear()


async def test_a_caller_cancels_an_incoming_call(bob):
    async with local_engine(udp_port=0, tcp_port=None, T4=0.5) as engine:
        with NotificationQueue() as queue:
            target = f"sip:bob@{LOOPBACK}:{engine.udp_port}"
            bob.call(f"{SUPPORT}:call", "c1", target, offer(("audio", 4000, "sendrecv")))
            invitation = await _sender(queue, await changed(queue, "incoming"))
            invitation.send_response(180)
            await remote_wait(bob, "SIPInvitationChangedState", remote_state("early"))
            bob.call(f"{SUPPORT}:invoke", "c1", "end")
            gone = await changed(queue, "disconnected")
            assert (gone.originator, gone.method, gone.code) == ("remote", "CANCEL", 487)
            with pytest.raises(InvitationStateError):
                invitation.send_response(200, sdp=SDPSession.parse(offer(("audio", 1, "sendrecv"))))
            done = await processed(queue, "INVITE", "remote")
            assert (done.code, done.ack_received) == (487, True)
        remote_gone = await remote_wait(
            bob, "SIPInvitationChangedState", remote_state("disconnected")
        )
        assert remote_gone.data["code"] == 487


async def test_a_missing_ack_ends_the_call_with_bye():
    """A raw UAC that never ACKs our 2xx: timer L (64*T1) ends the call with BYE."""
    async with local_engine(udp_port=0, tcp_port=None, T1=0.05, T2=0.2) as engine:
        with (
            NotificationQueue() as queue,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw,
        ):
            raw.bind((LOOPBACK, 0))
            raw.setblocking(False)
            port = raw.getsockname()[1]
            sdp = offer(("audio", 4000, "sendrecv")).encode()
            invite = (
                f"INVITE sip:bob@{LOOPBACK}:{engine.udp_port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {LOOPBACK}:{port};branch=z9hG4bK-noack;rport\r\n"
                "Max-Forwards: 70\r\n"
                f"From: <sip:raw@{LOOPBACK}>;tag=raw1\r\n"
                f"To: <sip:bob@{LOOPBACK}>\r\n"
                "Call-ID: noack-1\r\n"
                "CSeq: 1 INVITE\r\n"
                f"Contact: <sip:raw@{LOOPBACK}:{port}>\r\n"
                "Content-Type: application/sdp\r\n"
                f"Content-Length: {len(sdp)}\r\n\r\n"
            ).encode() + sdp
            loop = asyncio.get_running_loop()
            await loop.sock_sendto(raw, invite, (LOOPBACK, engine.udp_port))
            invitation = await _sender(queue, await changed(queue, "incoming"))
            invitation.send_response(200, sdp=SDPSession.parse(offer(("audio", 3000, "sendrecv"))))
            received: list[bytes] = []
            deadline = time.monotonic() + 8
            bye = None
            while time.monotonic() < deadline and bye is None:
                try:
                    data = await asyncio.wait_for(loop.sock_recv(raw, 65535), 0.5)
                except TimeoutError:
                    continue
                received.append(data)
                if data.startswith(b"BYE "):
                    bye = parse_message(data)
            assert sum(d.startswith(b"SIP/2.0 200") for d in received) >= 3  # retransmitted
            assert bye is not None
            response = bye.make_response(200)
            await loop.sock_sendto(raw, bytes(response), (LOOPBACK, engine.udp_port))
            done = await processed(queue, "INVITE", "remote")
            assert done.ack_received is False
            gone = await changed(queue, "disconnected")
            assert (gone.disconnect_reason, gone.originator) == ("missing ACK", "local")
            assert isinstance(response, SIPResponse)


# -- re-INVITEs -----------------------------------------------------------------------


async def connected_call(engine, bob, queue, sdp=None):
    bob.call(f"{SUPPORT}:answer_calls", [(200, True, 0.0)], offer(("audio", 4000, "sendrecv")))
    invitation = call(engine, bob, sdp)
    await changed(queue, "connected")
    await queue.wait_for("SIPInvitationGotSDPUpdate", timeout=1)
    await processed(queue, "INVITE", "local")
    await remote_wait(bob, "SIPInvitationChangedState", remote_state("connected"))
    await remote_wait(bob, "SIPInvitationGotSDPUpdate", None)
    await remote_wait(bob, "SIPInvitationDidProcessTransaction", None)
    return invitation


async def test_hold_and_unhold_with_reinvites(bob):
    bob.call(f"{SUPPORT}:answer_proposals")
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        with NotificationQueue() as queue:
            invitation = await connected_call(engine, bob, queue)
            for direction, answered in (
                ("sendonly", "recvonly"),
                ("inactive", "inactive"),
                ("sendrecv", "sendrecv"),
            ):
                invitation.send_reinvite(sdp=SDPSession.parse(offer(("audio", 3000, direction))))
                sent = await changed(queue, "connected", "sent_proposal")
                assert sent.originator == "local" and sent.method == "INVITE"
                update = (await queue.wait_for("SIPInvitationGotSDPUpdate", timeout=5)).data
                assert update.succeeded
                assert update.local_sdp.media[0].direction == direction
                assert update.remote_sdp.media[0].direction == answered
                done = await changed(queue, "connected", "normal")
                assert (done.code, done.originator) == (200, "remote")
                assert (await processed(queue, "INVITE", "local")).code == 200
                seen = await remote_wait(
                    bob,
                    "SIPInvitationGotSDPUpdate",
                    lambda n: n.data["succeeded"],
                )
                assert seen.data["remote_sdp"] is not None
            versions = invitation.sdp.active_local.version - invitation.sdp.active_local.id
            assert versions == 3  # o= version went up once per change
            invitation.end()
            await changed(queue, "disconnected")


async def test_a_stream_is_added_and_removed_with_reinvites(bob):
    bob.call(f"{SUPPORT}:answer_proposals")
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        with NotificationQueue() as queue:
            invitation = await connected_call(engine, bob, queue)
            two = offer(("audio", 3000, "sendrecv"), ("message", 3010, "sendrecv"))
            invitation.send_reinvite(sdp=SDPSession.parse(two))
            update = (await queue.wait_for("SIPInvitationGotSDPUpdate", timeout=5)).data
            assert [m.port for m in update.remote_sdp.media] == [4000, 3012]
            await changed(queue, "connected", "normal", code=200)
            invitation.send_reinvite(sdp=SDPSession.parse(offer(("audio", 3000, "sendrecv"))))
            update = (await queue.wait_for("SIPInvitationGotSDPUpdate", timeout=5)).data
            # RFC 3264 section 8: the removed stream stays as a disabled m-line
            assert [m.port for m in update.local_sdp.media] == [3000, 0]
            assert [m.port for m in update.remote_sdp.media] == [4000, 0]
            await changed(queue, "connected", "normal", code=200)
            invitation.end()
            await changed(queue, "disconnected")


async def test_a_rejected_and_a_cancelled_proposal_leave_the_call_as_it_was(bob):
    bob.call(f"{SUPPORT}:answer_proposals", 488)
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        with NotificationQueue() as queue:
            invitation = await connected_call(engine, bob, queue)
            before = invitation.sdp.active_local
            invitation.send_reinvite(sdp=SDPSession.parse(offer(("audio", 3000, "sendonly"))))
            done = await changed(queue, "connected", "normal")
            assert done.code == 488
            assert invitation.sdp.active_local == before
            assert invitation.sdp.proposed_local is None
            invitation.end()
            await changed(queue, "disconnected")


async def test_a_remote_proposal_is_accepted_locally(bob):
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        with NotificationQueue() as queue:
            target = f"sip:bob@{LOOPBACK}:{engine.udp_port}"
            bob.call(f"{SUPPORT}:call", "c1", target, offer(("audio", 4000, "sendrecv")))
            invitation = await _sender(queue, await changed(queue, "incoming"))
            invitation.send_response(200, sdp=SDPSession.parse(offer(("audio", 3000, "sendrecv"))))
            await changed(queue, "connected")
            await queue.wait_for("SIPInvitationGotSDPUpdate", timeout=1)
            await remote_wait(bob, "SIPInvitationChangedState", remote_state("connected"))
            hold = offer(("audio", 4000, "sendonly"))
            bob.call(f"{SUPPORT}:invoke", "c1", "send_reinvite", sdp=hold)
            proposal = await changed(queue, "connected", "received_proposal")
            assert proposal.originator == "remote" and proposal.body
            assert invitation.sdp.proposed_remote.media[0].direction == "sendonly"
            invitation.send_response(200, sdp=SDPSession.parse(offer(("audio", 3000, "recvonly"))))
            update = (await queue.wait_for("SIPInvitationGotSDPUpdate", timeout=5)).data
            assert update.local_sdp.media[0].direction == "recvonly"
            back = await changed(queue, "connected", "normal")
            assert (back.code, back.originator) == (200, "local")
            done = await processed(queue, "INVITE", "remote")
            assert done.ack_received is True
            remote_done = await remote_wait(
                bob, "SIPInvitationChangedState", remote_state("connected", "normal", code=200)
            )
            assert remote_done.data["originator"] == "remote"
            invitation.end()
            await changed(queue, "disconnected")


async def test_glare_both_reinvites_eventually_succeed(bob):
    """Both sides send a re-INVITE at once: a 491, a back-off (RFC 3261 section 14.1: the
    owner of the Call-ID waits longer) and a retry; both proposals end accepted."""
    bob.call(f"{SUPPORT}:answer_proposals")
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        with NotificationQueue() as queue:

            def accept(notification):
                data = notification.data
                if data.state == "connected" and data.sub_state == "received_proposal":
                    remote_offer = notification.sender.sdp.proposed_remote
                    direction = {"sendonly": "recvonly"}.get(remote_offer.media[0].direction)
                    answer = offer(("audio", 3000, direction or "sendrecv"))
                    notification.sender.send_response(200, sdp=SDPSession.parse(answer))

            local_codes: list[int] = []

            def transaction(notification):
                local_codes.append(notification.data.code)

            NotificationCenter().add_observer(accept, "SIPInvitationChangedState")
            NotificationCenter().add_observer(transaction, "SIPInvitationDidProcessTransaction")
            try:
                invitation = await connected_call(engine, bob, queue)
                # Both re-INVITEs are lost once, so that their retransmissions cross.
                set_packet_loss(receive=1.0)
                bob.call("tests.support.sip:set_packet_loss", receive=1.0)
                hold = offer(("audio", 4000, "sendonly"))
                bob.call(f"{SUPPORT}:invoke", "in1", "send_reinvite", sdp=hold)
                invitation.send_reinvite(sdp=SDPSession.parse(offer(("audio", 3000, "sendonly"))))
                await asyncio.sleep(0.2)
                set_packet_loss()
                bob.call("tests.support.sip:set_packet_loss")
                # whichever side got the 491 backed off and retried; both end accepted
                done = await changed(queue, "connected", "normal", timeout=8, originator="remote")
                assert done.code == 200
                remote_done = await remote_wait(
                    bob,
                    "SIPInvitationChangedState",
                    remote_state("connected", "normal", code=200, originator="remote"),
                    timeout=8,
                )
                assert remote_done is not None
                codes = [
                    n.data["code"]
                    for n in bob.notifications
                    if n.name == "SIPInvitationDidProcessTransaction"
                ]
                assert 491 in codes + local_codes
                invitation.end()
                await changed(queue, "disconnected")
            finally:
                NotificationCenter().discard_observer(accept, "SIPInvitationChangedState")
                NotificationCenter().discard_observer(
                    transaction, "SIPInvitationDidProcessTransaction"
                )


async def test_bye_while_a_reinvite_is_pending(bob):
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        with NotificationQueue() as queue:
            invitation = await connected_call(engine, bob, queue)
            invitation.send_reinvite(sdp=SDPSession.parse(offer(("audio", 3000, "sendonly"))))
            await remote_wait(
                bob, "SIPInvitationChangedState", remote_state("connected", "received_proposal")
            )
            invitation.end()
            gone = await changed(queue, "disconnected")
            assert gone.disconnect_reason == "user request"
            remote_gone = await remote_wait(
                bob, "SIPInvitationChangedState", remote_state("disconnected")
            )
            assert remote_gone.data["method"] == "BYE"


# -- extensions -------------------------------------------------------------------------


async def test_reliable_provisional_responses_are_pracked(bob, settings):
    """The callee requires 100rel: its 180 and 183 (with the answer) are sent with RSeq,
    retransmitted until PRACKed, and the 2xx waits for the PRACK of the one with SDP."""
    bob.call(f"{SUPPORT}:configure", require_100rel=True)
    script = [(180, False, 0.0), (183, True, 0.0), (200, True, 0.1)]
    bob.call(f"{SUPPORT}:answer_calls", script, offer(("audio", 4000, "sendrecv")))
    sent: list[bytes] = []

    def trace(notification):
        if not notification.data.received:
            sent.append(notification.data.data)

    NotificationCenter().add_observer(trace, "SIPEngineSIPTrace")
    async with local_engine(udp_port=0, tcp_port=None, trace_sip=True) as engine:
        with NotificationQueue() as queue:
            call(engine, bob)
            ringing = await changed(queue, "early", code=180)
            assert "RSeq" in ringing.headers and "100rel" in ringing.headers["Require"]
            progress = await changed(queue, "early", code=183)
            assert progress.body
            assert (await processed(queue, "PRACK", "local")).code == 200
            assert (await processed(queue, "PRACK", "local")).code == 200
            await changed(queue, "connected")
    NotificationCenter().discard_observer(trace, "SIPEngineSIPTrace")
    pracks = [parse_message(data).headers["RAck"] for data in sent if data.startswith(b"PRACK")]
    assert len(pracks) == 2
    assert pracks[0].split()[1:] == ["1", "INVITE"]
    assert int(pracks[1].split()[0]) == int(pracks[0].split()[0]) + 1
    for _ in range(2):
        prack = await remote_wait(
            bob, "SIPInvitationDidProcessTransaction", lambda n: n.data["method"] == "PRACK"
        )
        assert prack.data["originator"] == "remote"


async def test_we_require_100rel_as_caller(bob, settings):
    settings(require_100rel=True)
    bob.call(f"{SUPPORT}:answer_calls", ANSWER, offer(("audio", 4000, "sendrecv")))
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        with NotificationQueue() as queue:
            invitation = call(engine, bob)
            assert "RSeq" in (await changed(queue, "early")).headers
            await processed(queue, "PRACK", "local")
            await changed(queue, "connected")
            invitation.end()
            await changed(queue, "disconnected")


async def test_session_timer_refreshes_with_update_and_expires_without(bob, settings):
    """We ask for a 6 s session (Min-SE 2, below RFC 4028's 90 for the test); the callee
    makes us the refresher, we refresh with UPDATE every 3 s. When our refreshes stop
    reaching it, the callee ends the session with BYE before it expires."""
    settings(session_expires=6, min_se=2)
    bob.call(f"{SUPPORT}:configure", min_se=2)
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        with NotificationQueue() as queue:
            bob.call(
                f"{SUPPORT}:answer_calls", [(200, True, 0.0)], offer(("audio", 4000, "sendrecv"))
            )
            invitation = call(engine, bob)
            connecting = await changed(queue, "connecting")
            assert connecting.headers["Session-Expires"].body == "6;refresher=uac"
            started = time.monotonic()
            for _ in range(2):
                refresh = await processed(queue, "UPDATE", "local", timeout=5)
                assert refresh.code == 200
            assert 5 < time.monotonic() - started < 8
            await remote_wait(
                bob,
                "SIPInvitationDidProcessTransaction",
                lambda n: n.data["method"] == "UPDATE" and n.data["originator"] == "remote",
            )
            bob.call("tests.support.sip:set_packet_loss", receive=1.0)
            try:
                expired = await remote_wait(
                    bob, "SIPInvitationChangedState", remote_state("disconnecting"), timeout=8
                )
                assert expired.data["originator"] == "local"
                gone = await changed(queue, "disconnected", timeout=8)
                assert (gone.originator, gone.method) == ("remote", "BYE")
            finally:
                bob.call("tests.support.sip:set_packet_loss")
            assert invitation.state == "disconnected"
        note = await remote_wait(bob, "SIPInvitationChangedState", remote_state("disconnected"))
        assert note.data["disconnect_reason"] == "session expired"


async def test_an_interval_below_our_min_se_gets_422_and_the_caller_retries(bob, settings):
    settings(min_se=4)
    bob.call(f"{SUPPORT}:configure", session_expires=3, min_se=2)
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        with NotificationQueue() as queue:
            target = f"sip:bob@{LOOPBACK}:{engine.udp_port}"
            bob.call(f"{SUPPORT}:call", "c1", target, offer(("audio", 4000, "sendrecv")))
            incoming = await changed(queue, "incoming")
            assert incoming.headers["Session-Expires"].body == "4"
            assert incoming.headers["Min-SE"].body == "4"
            invitation = await _sender(queue, incoming)
            invitation.send_response(200, sdp=SDPSession.parse(offer(("audio", 3000, "sendrecv"))))
            await changed(queue, "connected")
            invitation.end()
            await changed(queue, "disconnected")


async def test_methods_called_from_another_thread_run_on_the_sip_thread(bob):
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        with NotificationQueue() as queue:
            target = f"sip:bob@{LOOPBACK}:{engine.udp_port}"
            bob.call(f"{SUPPORT}:call", "c1", target, offer(("audio", 4000, "sendrecv")))
            invitation = await _sender(queue, await changed(queue, "incoming"))
            answer = SDPSession.parse(offer(("audio", 3000, "sendrecv")))
            await asyncio.to_thread(invitation.send_response, 180)
            await changed(queue, "early")
            await asyncio.to_thread(invitation.send_response, 200, sdp=answer)
            answer.media[0].port = 1  # the Invitation took a snapshot
            await changed(queue, "connected")
            assert invitation.sdp.active_local.media[0].port == 3000
            await asyncio.to_thread(invitation.end)
            await changed(queue, "disconnected")
