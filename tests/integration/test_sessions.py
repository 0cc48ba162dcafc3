"""Sessions between two SDK endpoints on loopback, without a server.

Alice is this process: a whole SIPApplication on the test's loop. Bob is a RemoteSDK
child running the same start order (configuration, Engine, AccountManager,
SessionManager). Their media is DatagramStream (tests/support/sessions.py), a real UDP
stream written on IMediaStream, so every test also checks that data flows (or not, on
hold) between the two.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from tests.support.application import loopback_storage, running_application
from tests.support.remote import RemoteSDK
from tests.support.sessions import DatagramStream, SessionLog

from sipsimple.account import AccountManager
from sipsimple.core import SIPURI, FrozenFromHeader, FrozenToHeader, SDPMediaStream, ToHeader
from sipsimple.notification import NotificationCenter
from sipsimple.session import IllegalStateError, Session, SessionManager
from sipsimple.streams import IMediaStream
from sipsimple.util import Route

SESSIONS = "tests.support.sessions"
ACCOUNT = {"enabled": "true", "registration": {"enabled": "false"}}
ALICE = "alice@example.test"
BOB = "bob@example.test"


class ProbeStream(DatagramStream):
    """A stream type only this process knows: the child refuses its m-line."""

    type = "probe"

    def get_local_media(self, for_offer: bool) -> SDPMediaStream:
        media = super().get_local_media(for_offer)
        media.formats = ["x-sipsimple-probe"]
        return media

    @classmethod
    def new_from_sdp(cls, account: Any, remote_sdp: Any, stream_index: int) -> None:
        return None


class SlowEndingStream(DatagramStream):
    """Ends as a file transfer does: MediaStreamDidEnd comes a while after WillEnd."""

    type = "slow-ending"

    def end(self) -> None:
        if self._ended:
            return
        self._ended = True
        self._post("MediaStreamWillEnd")
        if self._transport is not None:
            self._transport.close()
        asyncio.get_running_loop().call_later(0.5, self._post, "MediaStreamDidEnd")

    @classmethod
    def new_from_sdp(cls, account: Any, remote_sdp: Any, stream_index: int) -> None:
        return None


@pytest.fixture(scope="module")
def bob() -> Iterator[tuple[RemoteSDK, dict[str, int]]]:
    with RemoteSDK(call_timeout=20) as remote:
        ports = remote.call(f"{SESSIONS}:start_endpoint", {BOB: ACCOUNT})
        yield remote, ports
        remote.call(f"{SESSIONS}:stop_endpoint")


@pytest.fixture
async def endpoints(bob) -> AsyncIterator[tuple[Any, RemoteSDK, dict[str, int]]]:
    remote, ports = bob
    remote.clear()
    await remote.async_call(f"{SESSIONS}:answer_mode", None, None)
    await remote.async_call(f"{SESSIONS}:set_stream_failures")
    storage = loopback_storage(accounts={ALICE: ACCOUNT}, settings={"sip": {"invite_timeout": "5"}})
    async with running_application(storage):
        yield AccountManager().get_account(ALICE), remote, ports
    # Bob's sessions are over (stopping Alice's application ended them): what he posted
    # about them is not left for the next test.
    await until(lambda: _bob_idle(remote))
    await asyncio.sleep(0.1)
    remote.clear()


async def _bob_idle(remote: RemoteSDK) -> bool:
    return await remote.async_call(f"{SESSIONS}:active_sessions") == 0


def bob_uri(ports: dict[str, int]) -> ToHeader:
    return ToHeader(SIPURI(user="bob", host="127.0.0.1", port=ports["udp"]))


def bob_route(ports: dict[str, int], transport: str = "udp") -> list[Route]:
    return [Route("127.0.0.1", ports[transport], transport)]


def fields(notification: Any) -> dict[str, Any]:
    data = notification.data if isinstance(notification.data, dict) else vars(notification.data)
    return {k: v for k, v in data.items() if k != "timestamp"}


async def remote_wait(remote: RemoteSDK, name: str, timeout: float = 5.0) -> Any:
    return await remote.async_wait_for(name, timeout=timeout)


async def call_bob(account, remote, ports, *, streams=1, mode="accept", proposals=None):
    """Alice calls Bob, Bob answers per ``mode``; Alice's session and log once started."""
    await remote.async_call(f"{SESSIONS}:answer_mode", mode, proposals)
    session = Session(account)
    log = SessionLog(session)
    session.connect(
        bob_uri(ports), bob_route(ports), [DatagramStream(account) for _ in range(streams)]
    )
    await log.wait("SIPSessionDidStart")
    await remote_wait(remote, "SIPSessionDidStart")
    return session, log


async def bob_state(remote: RemoteSDK) -> dict[str, Any]:
    name = await remote.async_call(f"{SESSIONS}:latest_incoming")
    return await remote.async_call(f"{SESSIONS}:state", name)


async def bob_act(remote: RemoteSDK, method: str, *args: Any) -> Any:
    name = await remote.async_call(f"{SESSIONS}:latest_incoming")
    return await remote.async_call(f"{SESSIONS}:act", name, method, *args)


async def until(condition, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(0.02)


# -- set-up and tear-down ------------------------------------------------------------------


async def test_connect_ring_accept_and_end_from_the_caller(endpoints):
    account, remote, ports = endpoints
    await remote.async_call(f"{SESSIONS}:answer_mode", "ring+accept")
    session = Session(account)
    log = SessionLog(session)
    stream = DatagramStream(account)
    session.connect(bob_uri(ports), bob_route(ports), [stream])
    assert session.state == "outgoing" and session.direction == "outgoing"
    assert session in SessionManager().sessions
    started = await log.wait("SIPSessionDidStart")
    assert started.data.streams == [stream] == session.streams
    assert log.names[:5] == [
        "SIPSessionNewOutgoing",
        "SIPSessionGotRingIndication",
        "SIPSessionGotProvisionalResponse",
        "SIPSessionWillStart",
        "SIPSessionDidProcessTransaction",
    ]
    assert fields(log.notifications[2]) == {"code": 180, "reason": "Ringing"}
    assert fields(log.notifications[4]) == {
        "originator": "local",
        "method": "INVITE",
        "code": 200,
        "reason": "OK",
    }
    assert session.state == "connected" and session.transport == "udp"
    assert session.start_time is not None and session.stop_time is None
    assert session.proposed_streams is None and not session.on_hold
    assert session.remote_user_agent.startswith("sipsimple")
    assert isinstance(session.local_identity, FrozenFromHeader)
    assert isinstance(session.remote_identity, FrozenToHeader)
    assert session.remote_identity.uri.user == "bob"

    incoming = await remote_wait(remote, "SIPSessionNewIncoming")
    assert len(incoming.data["streams"]) == 1
    bob_started = await remote_wait(remote, "SIPSessionDidStart")
    assert len(bob_started.data["streams"]) == 1
    bob_transaction = await remote.async_wait_for(
        "SIPSessionDidProcessTransaction", lambda n: n.data["method"] == "INVITE"
    )
    assert fields(bob_transaction) == {
        "originator": "remote",
        "method": "INVITE",
        "code": 200,
        "reason": "OK",
        "ack_received": True,
    }
    # The media flow: each side's "hello" reached the other.
    await until(lambda: _received(remote, b"hello"))
    assert stream.received == [b"hello"]
    info = await bob_state(remote)
    assert info["state"] == "connected" and info["direction"] == "incoming"
    assert info["remote_identity"].startswith("From: <sip:alice@example.test>")

    session.end()
    ended = await log.wait("SIPSessionDidEnd")
    assert fields(ended) == {"originator": "local", "end_reason": "user_request"}
    assert log.names[-3:] == [
        "SIPSessionWillEnd",
        "SIPSessionDidProcessTransaction",
        "SIPSessionDidEnd",
    ]
    assert session.state == "terminated" and session.stop_time is not None
    assert session not in SessionManager().sessions
    assert stream.calls[-2:] == ["deactivate", "end"]
    await remote_wait(remote, "SIPSessionWillEnd")
    bob_ended = await remote_wait(remote, "SIPSessionDidEnd")
    assert fields(bob_ended) == {"originator": "remote", "end_reason": "user_request"}
    assert (await bob_state(remote))["stop_time"]


async def test_a_bye_right_after_the_ack_ends_the_session_the_callee_started(endpoints):
    """The caller ends each session as soon as it starts: its BYE follows its ACK at
    once. The callee's streams start at once, so each of his sessions has started when
    the ACK came, and the BYE ends it (never SIPSessionDidFail)."""
    account, remote, ports = endpoints
    await remote.async_call(f"{SESSIONS}:answer_mode", "accept")
    seen_before = len(remote.notifications)
    rounds = 10
    for _ in range(rounds):
        session = Session(account)
        log = SessionLog(session)
        session.connect(bob_uri(ports), bob_route(ports), [DatagramStream(account)])
        await log.wait("SIPSessionDidStart")
        session.end()
        await log.wait("SIPSessionDidEnd")
    for _ in range(rounds):
        await remote_wait(remote, "SIPSessionDidEnd")
    names = [n.name for n in remote.notifications[seen_before:]]
    assert names.count("SIPSessionDidStart") == rounds
    assert "SIPSessionDidFail" not in names


async def _received(remote: RemoteSDK, data: bytes) -> bool:
    info = await bob_state(remote)
    return bool(info["streams"]) and data in info["streams"][0]["received"]


async def test_the_callee_ends_the_session(endpoints):
    account, remote, ports = endpoints
    _, log = await call_bob(account, remote, ports)
    await bob_act(remote, "end")
    await log.wait("SIPSessionWillEnd")
    ended = await log.wait("SIPSessionDidEnd")
    assert fields(ended) == {"originator": "remote", "end_reason": "user_request"}
    bye = [n for n in log.notifications if n.name == "SIPSessionDidProcessTransaction"][-1]
    assert fields(bye) == {"originator": "remote", "method": "BYE", "code": 200, "reason": "OK"}
    bob_ended = await remote_wait(remote, "SIPSessionDidEnd")
    assert fields(bob_ended) == {"originator": "local", "end_reason": "user_request"}


async def test_alice_accepts_an_incoming_session(endpoints):
    account, remote, _ = endpoints
    engine_port = _alice_port()
    manager_log = SessionLog()  # every sender: find the new session
    await remote.async_call(
        f"{SESSIONS}:connect",
        "out",
        BOB,
        f"sip:alice@127.0.0.1:{engine_port}",
        ("127.0.0.1", engine_port, "udp"),
        2,
    )
    new = await manager_log.wait("SIPSessionNewIncoming")
    manager_log.close()
    session = new.sender
    log = SessionLog(session)
    assert session.state == "incoming" and session.direction == "incoming"
    assert session.account is account
    assert len(new.data.streams) == 2 and session.proposed_streams == new.data.streams
    session.send_ring_indication()
    ring = await remote.async_wait_for("SIPSessionGotRingIndication")
    assert fields(ring) == {}
    with pytest.raises(ValueError, match="proposed streams"):
        session.accept([DatagramStream(account)])
    session.accept(new.data.streams[:1])
    assert session.state == "accepting"
    with pytest.raises(IllegalStateError, match="'incoming'"):
        session.accept(new.data.streams[:1])
    started = await log.wait("SIPSessionDidStart")
    assert started.data.streams == new.data.streams[:1]
    assert log.names == [
        "SIPSessionWillStart",
        "SIPSessionDidProcessTransaction",
        "SIPSessionDidStart",
    ]
    # Bob offered two streams, Alice took one: Bob's second m-line was refused.
    bob_started = await remote_wait(remote, "SIPSessionDidStart")
    assert len(bob_started.data["streams"]) == 1
    info = await remote.async_call(f"{SESSIONS}:state", "out")
    assert info["state"] == "connected" and len(info["streams"]) == 1
    session.end()
    await log.wait("SIPSessionDidEnd")
    await remote_wait(remote, "SIPSessionDidEnd")


def _alice_port() -> int:
    from sipsimple.core import Engine

    return Engine().udp_port


@pytest.mark.parametrize("code, reason", [(486, "Busy Here"), (603, "Decline")])
async def test_the_callee_rejects(endpoints, code, reason):
    account, remote, ports = endpoints
    await remote.async_call(f"{SESSIONS}:answer_mode", f"reject:{code}")
    session = Session(account)
    log = SessionLog(session)
    stream = DatagramStream(account)
    session.connect(bob_uri(ports), bob_route(ports), [stream])
    failed = await log.wait("SIPSessionDidFail")
    assert fields(failed) == {
        "originator": "remote",
        "code": code,
        "reason": reason,
        "failure_reason": reason,
    }
    assert "SIPSessionDidEnd" not in log.names and "SIPSessionWillStart" not in log.names
    assert session.state == "terminated" and stream.calls[-1] == "end"
    bob_failed = await remote_wait(remote, "SIPSessionDidFail")
    assert fields(bob_failed) == {
        "originator": "local",
        "code": code,
        "reason": reason,
        "failure_reason": "user_request",
    }
    if code == 486:  # it comes when the server transaction ends: T4 (5 s) after the ACK
        transaction = await remote.async_wait_for(
            "SIPSessionDidProcessTransaction", lambda n: n.data["code"] == code, timeout=10
        )
        assert fields(transaction) == {
            "originator": "remote",
            "method": "INVITE",
            "code": 486,
            "reason": "Busy Here",
            "ack_received": True,
        }


async def test_the_caller_cancels_before_the_answer(endpoints):
    account, remote, ports = endpoints
    await remote.async_call(f"{SESSIONS}:answer_mode", "ring")
    session = Session(account)
    log = SessionLog(session)
    await asyncio.to_thread(
        session.connect, bob_uri(ports), bob_route(ports), [DatagramStream(account)]
    )
    await log.wait("SIPSessionGotRingIndication")
    await asyncio.to_thread(session.end)
    failed = await log.wait("SIPSessionDidFail")
    assert fields(failed) == {
        "originator": "local",
        "code": 487,
        "reason": "Request Terminated",
        "failure_reason": "user_request",
    }
    bob_failed = await remote_wait(remote, "SIPSessionDidFail")
    assert fields(bob_failed) == {
        "originator": "remote",
        "code": 487,
        "reason": "Request Terminated",
        "failure_reason": "user_request",
    }
    assert (await bob_state(remote))["state"] == "terminated"


async def test_no_answer_ends_at_the_invite_timeout(endpoints):
    account, remote, ports = endpoints
    from sipsimple.configuration.settings import SIPSimpleSettings

    settings = SIPSimpleSettings()
    settings.sip.invite_timeout = 1
    await asyncio.to_thread(settings.save)
    await remote.async_call(f"{SESSIONS}:answer_mode", "ring")
    session = Session(account)
    log = SessionLog(session)
    loop = asyncio.get_running_loop()
    began = loop.time()
    session.connect(bob_uri(ports), bob_route(ports), [DatagramStream(account)])
    failed = await log.wait("SIPSessionDidFail", timeout=5)
    assert 0.9 < loop.time() - began < 3
    assert fields(failed) == {
        "originator": "local",
        "code": 408,
        "reason": "Request Timeout",
        "failure_reason": "timeout",
    }
    bob_failed = await remote_wait(remote, "SIPSessionDidFail")
    assert bob_failed.data["code"] == 487 and bob_failed.data["originator"] == "remote"


async def test_the_next_route_is_tried_after_a_transport_failure(endpoints):
    account, remote, ports = endpoints
    await remote.async_call(f"{SESSIONS}:answer_mode", "accept")
    closed = _closed_tcp_port()
    session = Session(account)
    log = SessionLog(session)
    routes = [Route("127.0.0.1", closed, "tcp"), *bob_route(ports)]
    session.connect(bob_uri(ports), routes, [DatagramStream(account)])
    await log.wait("SIPSessionDidStart")
    assert session.transport == "udp"
    attempts = [fields(n) for n in log.notifications if n.name == "SIPSessionDidProcessTransaction"]
    assert attempts[0]["code"] == 503 and attempts[-1]["code"] == 200
    session.end()
    await log.wait("SIPSessionDidEnd")


def _closed_tcp_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_routes_are_looked_up_when_not_given(endpoints):
    account, remote, ports = endpoints
    await remote.async_call(f"{SESSIONS}:answer_mode", "accept")
    session = Session(account)
    log = SessionLog(session)
    target = ToHeader(
        SIPURI(user="bob", host="127.0.0.1", port=ports["tcp"], parameters={"transport": "tcp"})
    )
    session.connect(target, None, [DatagramStream(account)])
    await log.wait("SIPSessionDidStart")
    assert session.transport == "tcp"
    session.end()
    await log.wait("SIPSessionDidEnd")


# -- media negotiation -------------------------------------------------------------------


async def test_an_m_line_no_stream_class_takes_is_refused(endpoints):
    account, remote, ports = endpoints
    await remote.async_call(f"{SESSIONS}:answer_mode", "accept")
    datagram, probe = DatagramStream(account), ProbeStream(account)
    session = Session(account)
    log = SessionLog(session)
    session.connect(bob_uri(ports), bob_route(ports), [probe, datagram])
    started = await log.wait("SIPSessionDidStart")
    assert started.data.streams == [datagram]
    assert probe.calls == ["initialize", "end"]
    incoming = await remote_wait(remote, "SIPSessionNewIncoming")
    assert len(incoming.data["streams"]) == 1
    session.end()
    await log.wait("SIPSessionDidEnd")


async def test_an_invite_without_acceptable_streams_gets_488(endpoints):
    account, remote, ports = endpoints
    session = Session(account)
    log = SessionLog(session)
    session.connect(bob_uri(ports), bob_route(ports), [ProbeStream(account)])
    failed = await log.wait("SIPSessionDidFail")
    assert fields(failed) == {
        "originator": "remote",
        "code": 488,
        "reason": "Not Acceptable Here",
        "failure_reason": "Not Acceptable Here",
    }
    with pytest.raises(TimeoutError):
        await remote.async_wait_for("SIPSessionNewIncoming", timeout=0.5)


async def test_a_stream_that_fails_to_initialize_fails_the_session(endpoints):
    account, _, ports = endpoints
    stream = DatagramStream(account, fail={"initialize"})
    session = Session(account)
    log = SessionLog(session)
    session.connect(bob_uri(ports), bob_route(ports), [stream])
    failed = await log.wait("SIPSessionDidFail")
    assert fields(failed) == {
        "originator": "local",
        "code": 0,
        "reason": None,
        "failure_reason": "media stream failed: failing at initialize, as told",
    }
    assert log.names == ["SIPSessionNewOutgoing", "SIPSessionDidFail"]
    assert stream.calls == ["initialize", "end"]


async def test_a_callee_stream_that_fails_to_start_fails_its_session(endpoints):
    account, remote, ports = endpoints
    await remote.async_call(f"{SESSIONS}:set_stream_failures", "start")
    await remote.async_call(f"{SESSIONS}:answer_mode", "accept")
    session = Session(account)
    log = SessionLog(session)
    session.connect(bob_uri(ports), bob_route(ports), [DatagramStream(account)])
    bob_failed = await remote_wait(remote, "SIPSessionDidFail")
    assert fields(bob_failed) == {
        "originator": "local",
        "code": 0,
        "reason": None,
        "failure_reason": "media stream failed: failing at start, as told",
    }
    # Bob's BYE ends Alice's session, started or not by then.
    await until(lambda: _is(session, "terminated"))
    assert {"SIPSessionDidEnd", "SIPSessionDidFail"} & set(log.names)


async def _is(session: Session, state: str) -> bool:
    return session.state == state


async def test_a_callee_stream_that_fails_to_initialize_answers_500(endpoints):
    account, remote, ports = endpoints
    await remote.async_call(f"{SESSIONS}:set_stream_failures", "initialize")
    await remote.async_call(f"{SESSIONS}:answer_mode", "accept")
    session = Session(account)
    log = SessionLog(session)
    session.connect(bob_uri(ports), bob_route(ports), [DatagramStream(account)])
    failed = await log.wait("SIPSessionDidFail")
    assert failed.data.code == 500 and failed.data.originator == "remote"
    bob_failed = await remote_wait(remote, "SIPSessionDidFail")
    assert fields(bob_failed) == {
        "originator": "local",
        "code": 500,
        "reason": "Internal Server Error",
        "failure_reason": "media stream failed: failing at initialize, as told",
    }


# -- hold ------------------------------------------------------------------------------------


async def test_hold_and_unhold_from_either_side(endpoints):
    account, remote, ports = endpoints
    session, log = await call_bob(account, remote, ports)
    stream = session.streams[0]
    session.hold()
    held = await log.wait("SIPSessionDidChangeHoldState")
    assert fields(held) == {"originator": "local", "on_hold": True, "partial": False}
    assert session.on_hold and stream.on_hold_by_local
    assert not stream.send(b"while on hold")
    bob_held = await remote_wait(remote, "SIPSessionDidChangeHoldState")
    assert fields(bob_held) == {"originator": "remote", "on_hold": True, "partial": False}
    info = await bob_state(remote)
    assert info["on_hold"] and info["streams"][0]["on_hold_by_remote"]

    await asyncio.to_thread(session.unhold)  # any thread may call the methods
    unheld = await log.wait("SIPSessionDidChangeHoldState")
    assert fields(unheld) == {"originator": "local", "on_hold": False, "partial": False}
    bob_unheld = await remote_wait(remote, "SIPSessionDidChangeHoldState")
    assert fields(bob_unheld) == {"originator": "remote", "on_hold": False, "partial": False}
    assert stream.send(b"back")
    await until(lambda: _received(remote, b"back"))

    await bob_act(remote, "hold")
    remote_hold = await log.wait("SIPSessionDidChangeHoldState")
    assert fields(remote_hold) == {"originator": "remote", "on_hold": True, "partial": False}
    assert stream.on_hold_by_remote and session.on_hold
    await bob_act(remote, "unhold")
    remote_unhold = await log.wait("SIPSessionDidChangeHoldState")
    assert fields(remote_unhold) == {"originator": "remote", "on_hold": False, "partial": False}
    session.end()
    await log.wait("SIPSessionDidEnd")


async def test_an_update_a_stream_refuses_gets_488(endpoints):
    account, remote, ports = endpoints
    await remote.async_call(f"{SESSIONS}:set_stream_failures", "update")
    session, log = await call_bob(account, remote, ports)
    session.hold()
    held = await log.wait("SIPSessionDidChangeHoldState")
    assert held.data.on_hold is True  # our side is on hold whatever the peer says
    transactions = [
        fields(n) for n in log.notifications if n.name == "SIPSessionDidProcessTransaction"
    ]
    assert transactions[-1] == {
        "originator": "local",
        "method": "INVITE",
        "code": 488,
        "reason": "Not Acceptable Here",
    }
    info = await bob_state(remote)
    assert "validate_update" in info["streams"][0]["calls"]
    assert not info["streams"][0]["on_hold_by_remote"] and info["state"] == "connected"
    session.end()
    await log.wait("SIPSessionDidEnd")


async def test_hold_before_the_session_starts_applies_once_it_does(endpoints):
    account, remote, ports = endpoints
    await remote.async_call(f"{SESSIONS}:answer_mode", "accept")
    session = Session(account)
    log = SessionLog(session)
    session.hold()  # any state: remembered
    session.connect(bob_uri(ports), bob_route(ports), [DatagramStream(account)])
    await log.wait("SIPSessionDidStart")
    held = await log.wait("SIPSessionDidChangeHoldState")
    assert fields(held) == {"originator": "local", "on_hold": True, "partial": False}
    session.end()
    await log.wait("SIPSessionDidEnd")


# -- adding and removing streams --------------------------------------------------------


async def test_add_a_stream_then_remove_it(endpoints):
    account, remote, ports = endpoints
    session, log = await call_bob(account, remote, ports, proposals="accept")
    first = session.streams[0]
    added = DatagramStream(account)
    session.add_stream(added)
    assert session.state == "sending_proposal" and session.proposed_streams == [added]
    with pytest.raises(IllegalStateError):
        session.add_stream(DatagramStream(account))
    proposal = await log.wait("SIPSessionGotProposal")
    assert fields(proposal) == {"originator": "local", "streams": [added]}
    accepted = await log.wait("SIPSessionGotAcceptProposal")
    assert fields(accepted) == {
        "originator": "local",
        "streams": [added],
        "proposed_streams": [added],
    }
    renegotiated = await log.wait("SIPSessionDidRenegotiateStreams")
    assert fields(renegotiated) == {"action": "add", "streams": [added]}
    assert session.streams == [first, added] and session.state == "connected"
    assert session.proposed_streams is None
    bob_proposal = await remote_wait(remote, "SIPSessionGotProposal")
    assert bob_proposal.data["originator"] == "remote"
    await remote_wait(remote, "SIPSessionGotAcceptProposal")
    bob_added = await remote_wait(remote, "SIPSessionDidRenegotiateStreams")
    assert bob_added.data["action"] == "add"
    await until(lambda: _has_streams(remote, 2))
    await until(lambda: _async(b"hello" in added.received))

    session.remove_stream(added)
    removed = await log.wait("SIPSessionDidRenegotiateStreams")
    assert fields(removed) == {"action": "remove", "streams": [added]}
    assert added.calls[-2:] == ["deactivate", "end"] and session.streams == [first]
    bob_removed = await remote_wait(remote, "SIPSessionDidRenegotiateStreams")
    assert bob_removed.data["action"] == "remove"
    await until(lambda: _has_streams(remote, 1))
    assert first.send(b"still here")
    await until(lambda: _received(remote, b"still here"))

    # Removing the last stream ends the session.
    session.remove_stream(first)
    ended = await log.wait("SIPSessionDidEnd")
    assert fields(ended) == {"originator": "local", "end_reason": "user_request"}
    await remote_wait(remote, "SIPSessionDidEnd")


async def _has_streams(remote: RemoteSDK, count: int) -> bool:
    return len((await bob_state(remote))["streams"]) == count


async def _async(value: bool) -> bool:
    return value


async def test_the_callee_adds_a_stream_alice_accepts_then_rejects(endpoints):
    account, remote, ports = endpoints
    session, log = await call_bob(account, remote, ports)
    await bob_act(remote, "add_stream")
    proposal = await log.wait("SIPSessionGotProposal")
    assert proposal.data.originator == "remote" and len(proposal.data.streams) == 1
    assert session.state == "received_proposal"
    assert session.proposed_streams == proposal.data.streams
    with pytest.raises(IllegalStateError):
        session.remove_stream(session.streams[0])
    session.accept_proposal(proposal.data.streams)
    accepted = await log.wait("SIPSessionGotAcceptProposal")
    assert fields(accepted) == {
        "originator": "remote",
        "streams": proposal.data.streams,
        "proposed_streams": proposal.data.streams,
    }
    renegotiated = await log.wait("SIPSessionDidRenegotiateStreams")
    assert fields(renegotiated) == {"action": "add", "streams": proposal.data.streams}
    assert len(session.streams) == 2
    bob_accepted = await remote_wait(remote, "SIPSessionGotAcceptProposal")
    assert bob_accepted.data["originator"] == "local"

    await bob_act(remote, "add_stream")
    second = await log.wait("SIPSessionGotProposal")
    session.reject_proposal(488)
    rejected = await log.wait("SIPSessionGotRejectProposal")
    assert fields(rejected) == {
        "originator": "remote",
        "code": 488,
        "reason": "Not Acceptable Here",
        "streams": second.data.streams,
    }
    assert session.state == "connected" and len(session.streams) == 2
    bob_rejected = await remote_wait(remote, "SIPSessionGotRejectProposal")
    assert {k: bob_rejected.data[k] for k in ("originator", "code")} == {
        "originator": "local",
        "code": 488,
    }
    # Bob takes away the stream he added.
    added = session.streams[1]
    await bob_act(remote, "remove_stream", 1)
    removed = await log.wait("SIPSessionDidRenegotiateStreams")
    assert fields(removed) == {"action": "remove", "streams": [added]}
    assert added.calls[-2:] == ["deactivate", "end"] and len(session.streams) == 1
    session.end()
    await log.wait("SIPSessionDidEnd")


async def test_both_propose_at_once_and_one_gives_way(endpoints):
    account, remote, ports = endpoints
    session, log = await call_bob(account, remote, ports, proposals="accept")
    session.glare_backoff = {"outgoing": (0.3, 0.6), "incoming": (0.0, 0.2)}
    mine = DatagramStream(account)
    await bob_act(remote, "add_stream")
    try:
        session.add_stream(mine)
    except IllegalStateError:  # Bob's proposal is here already: no race after all
        mine = None
    # Whoever's re-INVITE is out first (or, after a 491 each, sent again first) wins;
    # the other proposal is rejected with 491 to its application, never retried.
    gave_way = False
    while True:
        notification = await log.wait_any(
            "SIPSessionGotProposal", "SIPSessionGotAcceptProposal", "SIPSessionGotRejectProposal"
        )
        data = notification.data
        if notification.name == "SIPSessionGotProposal" and data.originator == "remote":
            session.accept_proposal(data.streams)
        elif notification.name == "SIPSessionGotRejectProposal":
            assert (data.originator, data.code, data.streams) == ("local", 491, [mine])
            gave_way = True
        elif notification.name == "SIPSessionGotAcceptProposal":
            break
    won = data.originator == "local"
    assert won == (mine is not None and not gave_way)
    if won:
        rejected = await remote.async_wait_for("SIPSessionGotRejectProposal", timeout=8)
        assert (rejected.data["originator"], rejected.data["code"]) == ("local", 491)
    await until(lambda: _has_streams(remote, 2), timeout=8)
    assert len(session.streams) == 2 and session.state == "connected"
    session.end()
    await log.wait("SIPSessionDidEnd")


async def test_cancel_a_proposal(endpoints):
    account, remote, ports = endpoints
    session, log = await call_bob(account, remote, ports)  # Bob leaves proposals pending
    added = DatagramStream(account)
    session.add_stream(added)
    await remote_wait(remote, "SIPSessionGotProposal")
    session.cancel_proposal()
    rejected = await log.wait("SIPSessionGotRejectProposal")
    assert fields(rejected) == {
        "originator": "local",
        "code": 487,
        "reason": "Request Terminated",
        "streams": [added],
    }
    assert session.state == "connected" and added.calls[-1] == "end"
    bob_rejected = await remote_wait(remote, "SIPSessionGotRejectProposal")
    assert {k: bob_rejected.data[k] for k in ("originator", "code")} == {
        "originator": "remote",
        "code": 487,
    }
    assert (await bob_state(remote))["state"] == "connected"
    session.end()
    await log.wait("SIPSessionDidEnd")


async def test_a_stream_that_breaks_leaves_the_session_and_the_last_one_ends_it(endpoints):
    account, remote, ports = endpoints
    session, log = await call_bob(account, remote, ports, streams=2)
    first, second = session.streams
    first.break_down("the peer went away")
    removed = await log.wait("SIPSessionDidRenegotiateStreams")
    assert fields(removed) == {"action": "remove", "streams": [first]}
    assert session.streams == [second] and first.calls[-2:] == ["deactivate", "end"]
    bob_removed = await remote_wait(remote, "SIPSessionDidRenegotiateStreams")
    assert bob_removed.data["action"] == "remove"
    second.break_down("that one too")
    ended = await log.wait("SIPSessionDidEnd")
    assert fields(ended) == {
        "originator": "local",
        "end_reason": "media stream failed: that one too",
    }
    await remote_wait(remote, "SIPSessionDidEnd")


async def test_a_proposal_whose_stream_fails_to_initialize(endpoints):
    account, remote, ports = endpoints
    session, log = await call_bob(account, remote, ports, proposals="accept")
    await remote.async_call(f"{SESSIONS}:set_stream_failures", "initialize")
    added = DatagramStream(account)
    session.add_stream(added)
    rejected = await log.wait("SIPSessionGotRejectProposal")
    assert {k: getattr(rejected.data, k) for k in ("originator", "code")} == {
        "originator": "local",
        "code": 488,
    }
    bob_failure = await remote_wait(remote, "SIPSessionHadProposalFailure")
    assert (
        bob_failure.data["failure_reason"] == "media stream failed: failing at initialize, as told"
    )
    mine = DatagramStream(account, fail={"initialize"})
    session.add_stream(mine)
    failure = await log.wait("SIPSessionHadProposalFailure")
    assert fields(failure) == {
        "failure_reason": "media stream failed: failing at initialize, as told",
        "streams": [mine],
    }
    assert session.state == "connected" and len(session.streams) == 1
    session.end()
    await log.wait("SIPSessionDidEnd")


async def test_the_session_ends_while_the_peer_decides_on_a_proposal(endpoints):
    account, remote, ports = endpoints
    session, log = await call_bob(account, remote, ports)
    session.add_stream(DatagramStream(account))
    await remote_wait(remote, "SIPSessionGotProposal")
    await bob_act(remote, "end")
    # Bob answers the pending re-INVITE 487 before his BYE (RFC 3261 section 15.1).
    rejected = await log.wait("SIPSessionGotRejectProposal")
    assert (rejected.data.originator, rejected.data.code) == ("local", 487)
    ended = await log.wait("SIPSessionDidEnd")
    assert fields(ended) == {"originator": "remote", "end_reason": "user_request"}
    bob_failure = await remote_wait(remote, "SIPSessionHadProposalFailure")
    assert bob_failure.data["failure_reason"] == "the session ended"


# -- accounts and the application -------------------------------------------------------------


async def test_disabling_the_account_ends_its_session(endpoints):
    account, remote, ports = endpoints
    _, log = await call_bob(account, remote, ports)
    account.enabled = False
    await asyncio.to_thread(account.save)
    ended = await log.wait("SIPSessionDidEnd")
    assert fields(ended) == {"originator": "local", "end_reason": "account deactivated"}
    bob_ended = await remote_wait(remote, "SIPSessionDidEnd")
    assert bob_ended.data["originator"] == "remote"


async def test_stopping_the_application_ends_the_sessions(bob):
    remote, ports = bob
    remote.clear()
    await remote.async_call(f"{SESSIONS}:answer_mode", "accept", None)
    await remote.async_call(f"{SESSIONS}:set_stream_failures")
    center = NotificationCenter()
    async with running_application(loopback_storage(accounts={ALICE: ACCOUNT})):
        account = AccountManager().get_account(ALICE)
        session, log = await call_bob(account, remote, ports)
        order = SessionLog()
    assert order.names.index("SIPSessionDidEnd") < order.names.index("SIPApplicationDidEnd")
    order.close()
    assert log.names[-1] == "SIPSessionDidEnd" and session.state == "terminated"
    assert center is NotificationCenter()
    await remote_wait(remote, "SIPSessionDidEnd")


async def test_stopping_the_application_waits_for_streams_still_ending(bob):
    remote, ports = bob
    remote.clear()
    await remote.async_call(f"{SESSIONS}:answer_mode", "accept", None)
    await remote.async_call(f"{SESSIONS}:set_stream_failures")
    async with running_application(loopback_storage(accounts={ALICE: ACCOUNT})):
        session = Session(AccountManager().get_account(ALICE))
        log = SessionLog(session)
        stream = SlowEndingStream(session.account)
        session.connect(bob_uri(ports), bob_route(ports), [stream])
        await log.wait("SIPSessionDidStart")
        await remote_wait(remote, "SIPSessionDidStart")
        order = SessionLog()
        await bob_act(remote, "end")
        await log.wait("SIPSessionDidEnd")
        assert "MediaStreamDidEnd" not in order.names
    # The application stopped while the stream was still ending: it waited for it.
    ended = [n for n in order.notifications if n.name == "MediaStreamDidEnd"]
    order.close()
    assert [n.sender for n in ended] == [stream]
    assert order.notifications.index(ended[0]) < order.names.index("SIPApplicationDidEnd")


# -- the API's checks -----------------------------------------------------------------------


async def test_methods_check_their_arguments_and_the_state(endpoints):
    account, _, ports = endpoints
    session = Session(account)
    stream = DatagramStream(account)
    with pytest.raises(TypeError, match="to_header"):
        session.connect("sip:bob@127.0.0.1", None, [stream])
    with pytest.raises(TypeError, match="routes"):
        session.connect(bob_uri(ports), Route("127.0.0.1"), [stream])
    with pytest.raises(ValueError, match="routes"):
        session.connect(bob_uri(ports), [], [stream])
    with pytest.raises(ValueError, match="must not be empty"):
        session.connect(bob_uri(ports), None, [])
    with pytest.raises(ValueError, match="twice"):
        session.connect(bob_uri(ports), None, [stream, stream])
    with pytest.raises(TypeError, match="IMediaStream"):
        session.connect(bob_uri(ports), None, ["audio"])
    for method, args in [
        ("accept", ([stream],)),
        ("reject", ()),
        ("send_ring_indication", ()),
        ("accept_proposal", ([stream],)),
        ("reject_proposal", ()),
        ("add_stream", (stream,)),
        ("remove_stream", (stream,)),
        ("cancel_proposal", ()),
        ("end", ()),
    ]:
        with pytest.raises(IllegalStateError, match=f"{method}\\(\\)"):
            getattr(session, method)(*args)
    with pytest.raises(ValueError, match=r"300\.\.699"):
        session.reject(200)
    with pytest.raises(TypeError, match="account"):
        Session(None)
    assert session.state is None and session.streams == [] and session.proposed_streams is None
    assert session.local_identity is None and session.remote_user_agent is None
    assert isinstance(stream, IMediaStream)
