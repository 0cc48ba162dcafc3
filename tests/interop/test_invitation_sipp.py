"""Invitation against SIPp: its built-in uac and uas, and the scenarios in
tests/interop/scenarios/ (rejection, CANCEL both ways, lost packets, re-INVITEs with and
without SDP, 491, early media, BYE while a re-INVITE is pending, 100rel both ways,
UPDATE, session expiry), plus the transport's packet loss hook at 20%.

Run as root in a loopback-only network namespace:
    unshare -n sh -c "ip link set lo up; PYTHONPATH=src python -m pytest \\
        tests/interop/test_invitation_sipp.py -q"
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.interop.peers import LOOPBACK, Sipp
from tests.support.invitation import contact, offer
from tests.support.sip import local_engine

from sipsimple.core import Invitation, SDPSession
from sipsimple.core.sip.headers import FromHeader, ToHeader
from sipsimple.core.sip.uri import SIPURI
from sipsimple.core.transport import PacketLoss
from sipsimple.notification import NotificationCenter, NotificationQueue

pytestmark = pytest.mark.interop

SCENARIOS = Path(__file__).with_name("scenarios")
ANSWER = offer(("audio", 3000, "sendrecv"))


def scenario(name: str) -> Path:
    return SCENARIOS / f"{name}.xml"


class Answerer:
    """Answers every incoming INVITE on the local Engine: ``script`` is a list of codes
    (2xx with our SDP); re-INVITEs are accepted (hold answered recvonly) unless
    ``proposals`` is False; ``wait_prack`` holds the 2xx until the 1xx is PRACKed."""

    def __init__(self, script=(200,), proposals=True, wait_prack=False):
        self.script = script
        self.proposals = proposals
        self.wait_prack = wait_prack
        self.invitations: list[Invitation] = []
        NotificationCenter().add_observer(self, "SIPInvitationChangedState")
        NotificationCenter().add_observer(self, "SIPInvitationDidProcessTransaction")

    def close(self):
        NotificationCenter().discard_observer(self, "SIPInvitationChangedState")
        NotificationCenter().discard_observer(self, "SIPInvitationDidProcessTransaction")

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def handle_notification(self, notification):
        invitation, data = notification.sender, notification.data
        if notification.name == "SIPInvitationDidProcessTransaction":
            if data.method == "PRACK" and self.wait_prack:
                self._finish(invitation)
            return
        if data.state == "incoming":
            self.invitations.append(invitation)
            codes = list(self.script)
            for code in codes if not self.wait_prack else codes[:-1]:
                self._respond(invitation, code)
        elif data.state == "connected" and self.proposals:
            if data.sub_state == "received_proposal":
                direction = invitation.sdp.proposed_remote.media[0].direction
                answer = {"sendonly": "recvonly", "inactive": "inactive"}.get(direction)
                invitation.send_response(
                    200, sdp=SDPSession.parse(offer(("audio", 3000, answer or "sendrecv")))
                )
            elif data.sub_state == "received_proposal_request":
                invitation.send_response(200, sdp=SDPSession.parse(ANSWER))

    def _finish(self, invitation):
        if invitation.state in ("incoming", "early"):
            self._respond(invitation, self.script[-1])

    @staticmethod
    def _respond(invitation, code):
        if 200 <= code < 300:
            invitation.send_response(code, sdp=SDPSession.parse(ANSWER))
        else:
            invitation.send_response(code)


def place_call(engine, sipp: Sipp, **kwargs) -> Invitation:
    invitation = Invitation()
    uri = SIPURI(user=sipp.service, host=LOOPBACK, port=sipp.port)
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


async def changed(queue, state, sub_state=None, timeout=10.0, **fields):
    def matches(notification):
        data = notification.data
        return (
            data.state == state
            and (sub_state is None or data.sub_state == sub_state)
            and all(getattr(data, k, None) == v for k, v in fields.items())
        )

    return (await queue.wait_for("SIPInvitationChangedState", matches, timeout)).data


async def run(sipp: Sipp):
    """Run SIPp (placing calls) to its end while the Engine serves on this loop."""
    return await asyncio.to_thread(sipp.run)


async def finish(sipp: Sipp):
    return await asyncio.to_thread(sipp.finish)


# -- the built-in scenarios -----------------------------------------------------------


async def test_the_engine_answers_sipps_builtin_uac():
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        with Answerer((180, 200)) as answerer, NotificationQueue() as queue:
            result = await run(
                Sipp("uac", (LOOPBACK, engine.udp_port), calls=10, rate=20, timeout=20)
            )
            assert result.ok and result.successful == 10, result.describe()
            assert len(answerer.invitations) == 10
            for _ in range(10):
                gone = await changed(queue, "disconnected", method="BYE")
                assert gone.originator == "remote"


async def test_the_engine_calls_sipps_builtin_uas():
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        with Sipp("uas") as uas, NotificationQueue() as queue:
            invitation = place_call(engine, uas)
            assert (await changed(queue, "early")).code == 180
            await changed(queue, "connected")
            invitation.end()
            assert (await changed(queue, "disconnected")).code == 200
            result = await finish(uas)
        assert result.ok and result.successful == 1, result.describe()


async def test_the_transports_packet_loss_at_20_percent_and_invites_still_complete():
    """20% of the datagrams the Engine sends and receives are dropped while it sets up
    calls: retransmissions (ours and SIPp's) carry every INVITE/200/ACK through. (The
    teardown runs without loss: SIPp forgets a call 4 s after its BYE, so a lossy BYE
    could end in our 408 instead.)"""
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        with Sipp("uas", timeout=60) as uas, NotificationQueue() as queue:
            loss = PacketLoss(0.2, 0.2, seed=20)
            for _ in range(8):
                engine.transport.packet_loss = loss
                invitation = place_call(engine, uas)
                await changed(queue, "connected", timeout=30)
                engine.transport.packet_loss = None
                invitation.end()
                gone = await changed(queue, "disconnected", timeout=30)
                assert gone.code == 200, gone
            result = await finish(uas)
        assert result.successful == 8 and result.failed == 0, result.describe()


# -- scenarios: the Engine answers SIPp's calls ----------------------------------------


async def test_sipp_cancels_a_ringing_call():
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        with Answerer((180,)), NotificationQueue() as queue:
            result = await run(Sipp(scenario("uac-cancel"), (LOOPBACK, engine.udp_port)))
            assert result.ok, result.describe()
            gone = await changed(queue, "disconnected")
            assert (gone.method, gone.code, gone.originator) == ("CANCEL", 487, "remote")


async def test_sipp_loses_packets_and_retransmissions_recover():
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        with Answerer((200,)):
            sipp = Sipp(scenario("uac-lossy"), (LOOPBACK, engine.udp_port), calls=10, rate=10)
            result = await run(sipp)
        assert result.ok and result.successful == 10, result.describe()


async def test_a_reinvite_from_sipp_puts_the_call_on_hold():
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        with Answerer((200,)), NotificationQueue() as queue:
            result = await run(Sipp(scenario("uac-reinvite"), (LOOPBACK, engine.udp_port)))
            assert result.ok, result.describe()
            proposal = await changed(queue, "connected", "received_proposal")
            assert proposal.originator == "remote"
            update = await queue.wait_for(
                "SIPInvitationGotSDPUpdate",
                lambda n: n.data.remote_sdp.media[0].direction == "sendonly",
                timeout=5,
            )
            assert update.data.local_sdp.media[0].direction == "recvonly"


async def test_a_reinvite_without_sdp_is_a_proposal_request():
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        with Answerer((200,)), NotificationQueue() as queue:
            result = await run(Sipp(scenario("uac-reinvite-nosdp"), (LOOPBACK, engine.udp_port)))
            assert result.ok, result.describe()
            request = await changed(queue, "connected", "received_proposal_request")
            assert request.originator == "remote" and not request.body
            # our offer went in the 200, SIPp's answer came in the ACK
            updates = 0
            while updates < 2:
                note = await queue.wait_for("SIPInvitationGotSDPUpdate", timeout=5)
                assert note.data.succeeded
                updates += 1
            await changed(queue, "disconnected")


async def test_bye_while_the_reinvite_from_sipp_is_pending():
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        with Answerer((200,), proposals=False), NotificationQueue() as queue:
            result = await run(Sipp(scenario("uac-bye-pending"), (LOOPBACK, engine.udp_port)))
            assert result.ok, result.describe()
            await changed(queue, "connected", "received_proposal")
            gone = await changed(queue, "disconnected")
            assert (gone.method, gone.prev_sub_state) == ("BYE", "received_proposal")


async def test_sipp_pracks_our_reliable_180_and_updates_the_session():
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        with Answerer((180, 200), wait_prack=True), NotificationQueue() as queue:
            result = await run(Sipp(scenario("uac-prack-update"), (LOOPBACK, engine.udp_port)))
            assert result.ok, result.describe()
            ringing = await changed(queue, "early", code=180)
            assert ringing.originator == "local"
            prack = await queue.wait_for(
                "SIPInvitationDidProcessTransaction", lambda n: n.data.method == "PRACK", 5
            )
            assert (prack.data.originator, prack.data.code) == ("remote", 200)
            update = await queue.wait_for(
                "SIPInvitationDidProcessTransaction", lambda n: n.data.method == "UPDATE", 5
            )
            assert update.data.code == 200
            held = await queue.wait_for(
                "SIPInvitationGotSDPUpdate",
                lambda n: n.data.remote_sdp.media[0].direction == "sendonly",
                timeout=5,
            )
            assert held.data.local_sdp.media[0].direction == "recvonly"


async def test_the_engine_ends_a_session_sipp_never_refreshes(monkeypatch):
    monkeypatch.setattr(Invitation, "min_se", 2)
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        with Answerer((200,)), NotificationQueue() as queue:
            result = await run(Sipp(scenario("uac-session-timer"), (LOOPBACK, engine.udp_port)))
            assert result.ok, result.describe()
            gone = await changed(queue, "disconnected")
            assert (gone.disconnect_reason, gone.originator) == ("session expired", "local")


# -- scenarios: the Engine calls SIPp ------------------------------------------------------


async def test_sipp_rejects_our_call_with_486():
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        with Sipp(scenario("uas-486")) as uas, NotificationQueue() as queue:
            place_call(engine, uas)
            gone = await changed(queue, "disconnected")
            assert (gone.code, gone.originator) == (486, "remote")
            result = await finish(uas)
        assert result.ok and result.successful == 1, result.describe()


async def test_we_cancel_a_call_sipp_lets_ring():
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        with Sipp(scenario("uas-ring-cancel")) as uas, NotificationQueue() as queue:
            invitation = place_call(engine, uas)
            await changed(queue, "early")
            invitation.end()
            gone = await changed(queue, "disconnected")
            assert (gone.code, gone.disconnect_reason) == (487, "user request")
            result = await finish(uas)
        assert result.ok and result.successful == 1, result.describe()


async def test_early_media_from_a_183_with_sdp():
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        with Sipp(scenario("uas-183")) as uas, NotificationQueue() as queue:
            invitation = place_call(engine, uas)
            update = await queue.wait_for("SIPInvitationGotSDPUpdate", timeout=5)
            assert update.data.succeeded
            early = await changed(queue, "early")
            assert (early.code, bool(early.body)) == (183, True)
            assert invitation.sdp.active_remote.media[0].port == uas.media_port
            await changed(queue, "connected")
            invitation.end()
            await changed(queue, "disconnected")
            result = await finish(uas)
        assert result.ok, result.describe()


async def test_a_491_is_retried_after_the_back_off():
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        with Sipp(scenario("uas-491")) as uas, NotificationQueue() as queue:
            invitation = place_call(engine, uas)
            await changed(queue, "connected")
            invitation.send_reinvite(sdp=SDPSession.parse(offer(("audio", 3000, "sendonly"))))
            codes = []
            while len(codes) < 3:
                note = await queue.wait_for(
                    "SIPInvitationDidProcessTransaction",
                    lambda n: n.data.method == "INVITE",
                    timeout=8,
                )
                codes.append(note.data.code)
            assert codes == [200, 491, 200]  # the call, the glare, the retry
            done = await changed(queue, "connected", "normal", code=200, originator="remote")
            assert done.prev_sub_state == "sent_proposal"
            assert invitation.sdp.active_local.media[0].direction == "sendonly"
            invitation.end()
            await changed(queue, "disconnected")
            result = await finish(uas)
        assert result.ok, result.describe()


async def test_we_prack_sipps_reliable_180():
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        with Sipp(scenario("uas-100rel")) as uas, NotificationQueue() as queue:
            invitation = place_call(engine, uas)
            prack = await queue.wait_for(
                "SIPInvitationDidProcessTransaction", lambda n: n.data.method == "PRACK", 5
            )
            assert (prack.data.originator, prack.data.code) == ("local", 200)
            await changed(queue, "connected")
            invitation.end()
            await changed(queue, "disconnected")
            result = await finish(uas)
        assert result.ok, result.describe()
