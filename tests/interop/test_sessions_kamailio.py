"""Sessions through Kamailio 5.6: two SDK endpoints register their accounts (digest)
and call each other by address of record; the proxy asks the caller for credentials
(407) and record-routes, so every in-dialog request goes through it too.

Alice is a whole SIPApplication on the test's loop; Bob a RemoteSDK child running the
same start order (tests/support/sessions.py). Run as root inside a loopback-only
network namespace:

    unshare -n sh -c 'ip link set lo up;
        PYTHONPATH=src python -m pytest tests/interop/test_sessions_kamailio.py -q'
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from tests.interop.peers import Kamailio
from tests.support.application import loopback_storage, running_application
from tests.support.remote import RemoteSDK
from tests.support.sessions import DatagramStream, SessionLog

from sipsimple.account import AccountManager
from sipsimple.core import SIPURI, ToHeader
from sipsimple.notification import NotificationQueue
from sipsimple.session import Session

pytestmark = pytest.mark.interop

SESSIONS = "tests.support.sessions"
DOMAIN = "example.test"


def account(proxy: Kamailio, user: str, transport: str = "udp") -> dict[str, Any]:
    host, port = proxy.address(transport)
    return {
        f"{user}@{DOMAIN}": {
            "enabled": "true",
            "auth": {"password": f"{user}-secret"},
            "sip": {"outbound_proxy": f"{host}:{port};transport={transport}"},
        }
    }


@pytest.fixture(scope="module")
def proxy() -> Iterator[Kamailio]:
    with Kamailio(domain=DOMAIN) as kamailio:
        kamailio.add_user("alice", "alice-secret")
        kamailio.add_user("bob", "bob-secret")
        yield kamailio


@pytest.fixture(scope="module")
def bob(proxy) -> Iterator[RemoteSDK]:
    with RemoteSDK(call_timeout=20) as remote:
        remote.call(f"{SESSIONS}:start_endpoint", account(proxy, "bob"))
        remote.wait_for("SIPAccountRegistrationDidSucceed", timeout=10)
        yield remote
        remote.call(f"{SESSIONS}:stop_endpoint")


@pytest.fixture(params=["udp", "tcp"])
async def alice(request, proxy, bob) -> AsyncIterator[Any]:
    bob.clear()
    await bob.async_call(f"{SESSIONS}:answer_mode", None, None)
    storage = loopback_storage(accounts=account(proxy, "alice", request.param))
    with NotificationQueue(name="SIPAccountRegistrationDidSucceed") as registered:
        async with running_application(storage):
            await registered.wait_for("SIPAccountRegistrationDidSucceed", timeout=10)
            yield AccountManager().get_account(f"alice@{DOMAIN}")


def fields(notification: Any) -> dict[str, Any]:
    data = notification.data if isinstance(notification.data, dict) else vars(notification.data)
    return {k: v for k, v in data.items() if k != "timestamp"}


async def bob_act(bob: RemoteSDK, method: str, *args: Any) -> Any:
    name = await bob.async_call(f"{SESSIONS}:latest_incoming")
    return await bob.async_call(f"{SESSIONS}:act", name, method, *args)


async def bob_state(bob: RemoteSDK) -> dict[str, Any]:
    name = await bob.async_call(f"{SESSIONS}:latest_incoming")
    return await bob.async_call(f"{SESSIONS}:state", name)


async def until(condition, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(0.05)


async def test_a_session_through_the_proxy(alice, bob):
    await bob.async_call(f"{SESSIONS}:answer_mode", "ring+accept", "accept")
    session = Session(alice)
    log = SessionLog(session)
    stream = DatagramStream(alice)
    session.connect(ToHeader(SIPURI(user="bob", host=DOMAIN)), None, [stream])
    await log.wait("SIPSessionGotRingIndication", timeout=10)
    await log.wait("SIPSessionDidStart", timeout=10)
    assert session.transport == alice.sip.outbound_proxy.transport
    assert session.remote_identity.uri.user == "bob"
    await bob.async_wait_for("SIPSessionDidStart")
    assert (await bob_state(bob))["remote_identity"].startswith("From: <sip:alice@example.test>")

    async def media_flows() -> bool:
        info = await bob_state(bob)
        return b"hello" in info["streams"][0]["received"] and b"hello" in stream.received

    await until(media_flows)

    session.hold()
    held = await log.wait("SIPSessionDidChangeHoldState")
    assert fields(held) == {"originator": "local", "on_hold": True, "partial": False}
    bob_held = await bob.async_wait_for("SIPSessionDidChangeHoldState")
    assert fields(bob_held) == {"originator": "remote", "on_hold": True, "partial": False}
    session.unhold()
    unheld = await log.wait("SIPSessionDidChangeHoldState")
    assert unheld.data.on_hold is False

    added = DatagramStream(alice)
    session.add_stream(added)
    accepted = await log.wait("SIPSessionGotAcceptProposal")
    assert accepted.data.streams == [added]
    renegotiated = await log.wait("SIPSessionDidRenegotiateStreams")
    assert fields(renegotiated) == {"action": "add", "streams": [added]}
    await bob.async_wait_for("SIPSessionDidRenegotiateStreams")
    session.remove_stream(added)
    removed = await log.wait("SIPSessionDidRenegotiateStreams")
    assert fields(removed) == {"action": "remove", "streams": [added]}

    await bob_act(bob, "end")
    ended = await log.wait("SIPSessionDidEnd")
    assert fields(ended) == {"originator": "remote", "end_reason": "user_request"}
    bob_ended = await bob.async_wait_for("SIPSessionDidEnd")
    assert fields(bob_ended) == {"originator": "local", "end_reason": "user_request"}


async def test_bob_calls_alice_and_alice_rejects_busy(alice, bob):
    with NotificationQueue(name="SIPSessionNewIncoming") as incoming:
        await bob.async_call(
            f"{SESSIONS}:connect", "to-alice", f"bob@{DOMAIN}", f"sip:alice@{DOMAIN}", None
        )
        new = await incoming.wait_for("SIPSessionNewIncoming", timeout=10)
    session = new.sender
    assert session.account is alice and session.state == "incoming"
    log = SessionLog(session)
    session.reject(486)
    failed = await log.wait("SIPSessionDidFail")
    assert fields(failed) == {
        "originator": "local",
        "code": 486,
        "reason": "Busy Here",
        "failure_reason": "user_request",
    }
    bob_failed = await bob.async_wait_for("SIPSessionDidFail", timeout=10)
    assert (bob_failed.data["originator"], bob_failed.data["code"]) == ("remote", 486)
