"""Sessions against SIPp playing the far end of edge cases (scenarios in
tests/interop/scenarios/): 183 with SDP, a re-INVITE without SDP, a BYE while our
re-INVITE is pending, 491 (glare) to a re-INVITE, and an INVITE without SDP (a late
offer) answered with a real audio stream.

Alice is a whole SIPApplication on the test's loop, with the test stream of
tests/support/sessions.py. Run as root inside a loopback-only network namespace:

    unshare -n sh -c 'ip link set lo up;
        PYTHONPATH=src python -m pytest tests/interop/test_sessions_sipp.py -q'
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.interop.peers import Sipp
from tests.support.application import loopback_storage, running_application
from tests.support.sessions import DatagramStream, SessionLog

from sipsimple.account import AccountManager
from sipsimple.core import SIPURI, Engine, ToHeader
from sipsimple.notification import NotificationQueue
from sipsimple.session import Session
from sipsimple.util import Route

pytestmark = pytest.mark.interop

SCENARIOS = Path(__file__).parent / "scenarios"
ALICE = "alice@example.test"
ACCOUNT = {"enabled": "true", "registration": {"enabled": "false"}}


@pytest.fixture
async def alice() -> AsyncIterator[object]:
    async with running_application(loopback_storage(accounts={ALICE: ACCOUNT})):
        yield AccountManager().get_account(ALICE)


def fields(notification) -> dict:
    return {k: v for k, v in vars(notification.data).items() if k != "timestamp"}


async def call(account, sipp: Sipp, **backoff) -> tuple[Session, SessionLog, DatagramStream]:
    host, port = sipp.address
    session = Session(account)
    session.glare_backoff = backoff or Session.glare_backoff
    log = SessionLog(session)
    stream = DatagramStream(account)
    session.connect(
        ToHeader(SIPURI(user="service", host=host, port=port)),
        [Route(host, port, "udp")],
        [stream],
    )
    return session, log, stream


def sipp_for(scenario: str, timeout: float = 15) -> Sipp:
    """SIPp playing ``scenario``; its SDP names its media port as [app_port] (SIPp's own
    [media_port] keyword is only for audio and video lines)."""
    sipp = Sipp(SCENARIOS / scenario, calls=1, timeout=timeout)
    sipp.keys["app_port"] = str(sipp.media_port)
    return sipp


async def finished(sipp: Sipp) -> None:
    result = await asyncio.to_thread(sipp.wait, 15)
    assert result.ok, result.describe()


async def test_183_with_sdp_then_200(alice):
    with sipp_for("sipp-uas-183-sdp.xml", 15) as sipp:
        session, log, stream = await call(alice, sipp)
        progress = await log.wait("SIPSessionGotProvisionalResponse")
        assert fields(progress) == {"code": 183, "reason": "Session Progress"}
        await log.wait("SIPSessionDidStart")
        assert "SIPSessionGotRingIndication" not in log.names
        assert stream.remote == ("127.0.0.1", sipp.media_port)
        assert session.remote_user_agent is None or "sipp" not in session.remote_user_agent
        session.end()
        ended = await log.wait("SIPSessionDidEnd")
        assert fields(ended) == {"originator": "local", "end_reason": "user_request"}
        await finished(sipp)


async def test_a_reinvite_without_sdp_gets_our_offer_and_the_ack_answers_it(alice):
    with sipp_for("sipp-uas-reinvite-without-sdp.xml", 15) as sipp:
        session, log, stream = await call(alice, sipp)
        await log.wait("SIPSessionDidStart")
        held = await log.wait("SIPSessionDidChangeHoldState")
        assert fields(held) == {"originator": "remote", "on_hold": True, "partial": False}
        assert stream.on_hold_by_remote and session.on_hold
        assert stream.calls[-1] == "update"
        transaction = [n for n in log.notifications if n.name == "SIPSessionDidProcessTransaction"]
        assert fields(transaction[-1]) == {
            "originator": "remote",
            "method": "INVITE",
            "code": 200,
            "reason": "OK",
            "ack_received": True,
        }
        ended = await log.wait("SIPSessionDidEnd")
        assert fields(ended) == {"originator": "remote", "end_reason": "user_request"}
        await finished(sipp)


async def test_a_bye_while_our_reinvite_is_pending(alice):
    with sipp_for("sipp-uas-bye-during-reinvite.xml", 15) as sipp:
        session, log, _ = await call(alice, sipp)
        await log.wait("SIPSessionDidStart")
        added = DatagramStream(alice)
        session.add_stream(added)
        failure = await log.wait("SIPSessionHadProposalFailure")
        assert fields(failure) == {"failure_reason": "the session ended", "streams": [added]}
        ended = await log.wait("SIPSessionDidEnd")
        assert fields(ended) == {"originator": "remote", "end_reason": "user_request"}
        assert log.names[-3:] == [
            "SIPSessionHadProposalFailure",
            "SIPSessionWillEnd",
            "SIPSessionDidEnd",
        ]
        assert added.calls[-1] == "end" and session.state == "terminated"
        await finished(sipp)


async def test_491_to_a_reinvite_is_retried_with_a_fresh_offer(alice):
    with sipp_for("sipp-uas-491-glare.xml", 20) as sipp:
        session, log, stream = await call(alice, sipp, outgoing=(0.3, 0.5), incoming=(0.0, 0.2))
        await log.wait("SIPSessionDidStart")
        loop = asyncio.get_running_loop()
        began = loop.time()
        session.hold()
        held = await log.wait("SIPSessionDidChangeHoldState", timeout=8)
        assert loop.time() - began >= 0.3  # the caller's back-off
        assert fields(held) == {"originator": "local", "on_hold": True, "partial": False}
        codes = [
            n.data.code
            for n in log.notifications
            if n.name == "SIPSessionDidProcessTransaction" and n.data.method == "INVITE"
        ]
        assert codes == [200, 491, 200]
        assert stream.on_hold_by_local and not stream.on_hold_by_remote
        session.end()
        await log.wait("SIPSessionDidEnd")
        await finished(sipp)


async def test_an_invite_without_sdp_gets_our_offer_and_the_ack_answers_it(alice):
    """A late offer (RFC 3261 section 13.2.1), as some PBXs and gateways send: SIPp's
    INVITE has no SDP.  The session proposes an audio stream; accepting it puts our offer
    in the 200 OK (SIPp checks it offers PCMU), SIPp answers in the ACK, and our audio
    goes to the port of its answer until its BYE ends the session."""
    target = ("127.0.0.1", Engine().udp_port)
    with (
        NotificationQueue(name="SIPSessionNewIncoming") as incoming,
        Sipp(SCENARIOS / "uac-late-offer.xml", target, service="alice", timeout=15) as sipp,
    ):
        session = (await incoming.wait_for("SIPSessionNewIncoming", timeout=10)).sender
        log = SessionLog(session)
        assert [stream.type for stream in session.proposed_streams] == ["audio"]
        session.accept(session.proposed_streams)
        await log.wait("SIPSessionDidStart")
        stream = session.streams[0]
        assert stream.codec == "PCMU"  # the one codec of SIPp's answer
        assert stream.remote_rtp_address_sdp == "127.0.0.1"
        assert stream.remote_rtp_port_sdp == sipp.media_port
        await asyncio.sleep(0.4)
        assert stream.transport_counters.rtp_sent >= 10
        ended = await log.wait("SIPSessionDidEnd")
        assert ended.data.originator == "remote"
        await finished(sipp)


async def test_a_late_offer_whose_ack_carries_no_answer_ends_with_bye(alice):
    """SIPp's ACK answers nothing: the session cannot start its stream and ends the call
    with a BYE (which SIPp waits for)."""
    target = ("127.0.0.1", Engine().udp_port)
    scenario = SCENARIOS / "uac-late-offer-no-answer.xml"
    with (
        NotificationQueue(name="SIPSessionNewIncoming") as incoming,
        Sipp(scenario, target, service="alice", timeout=15) as sipp,
    ):
        session = (await incoming.wait_for("SIPSessionNewIncoming", timeout=10)).sender
        log = SessionLog(session)
        session.accept(session.proposed_streams)
        failed = await log.wait("SIPSessionDidFail")
        assert "SIPSessionDidStart" not in log.names
        assert failed.data.originator == "local", fields(failed)
        await finished(sipp)
