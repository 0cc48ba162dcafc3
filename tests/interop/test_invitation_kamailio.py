"""Invitation through Kamailio (registrar and record-routing proxy, digest auth): the
in-process Engine and a RemoteSDK endpoint both registered, a call between them whose
ACK and BYE follow the route set, and a call Kamailio forks to two contacts that both
answer (the extra dialog is acknowledged and ended with BYE).

Run as root in a loopback-only network namespace:
    unshare -n sh -c "ip link set lo up; PYTHONPATH=src python -m pytest \\
        tests/interop/test_invitation_kamailio.py -q"
"""

from __future__ import annotations

import asyncio

import pytest
from tests.interop.peers import LOOPBACK, Kamailio
from tests.support import invitation as peer
from tests.support.invitation import offer
from tests.support.remote import RemoteSDK
from tests.support.sip import local_engine, route_to

from sipsimple.core import Credentials, Invitation, Registration, SDPSession
from sipsimple.core.sip.headers import ContactHeader, FromHeader, ToHeader
from sipsimple.core.sip.message import parse_message
from sipsimple.core.sip.uri import SIPURI
from sipsimple.notification import NotificationCenter, NotificationQueue

pytestmark = pytest.mark.interop

SUPPORT = "tests.support.invitation"


@pytest.fixture(scope="module")
def proxy():
    with Kamailio(domain="example.test", auth=True) as kamailio:
        kamailio.add_user("alice", "alice-secret")
        kamailio.add_user("bob", "bob-secret")
        yield kamailio


@pytest.fixture(scope="module")
def bob(proxy):
    """A RemoteSDK registered as bob; it takes a forked INVITE's copies as separate calls
    (no merged-request check)."""
    with RemoteSDK() as sdk:
        sdk.ports = sdk.call(
            "tests.support.sip:start_engine", udp_port=0, tcp_port=None, detect_sip_loops=False
        )
        sdk.call(
            "tests.support.sip:register", "reg", proxy.aor("bob"), "bob-secret", proxy.ports["udp"]
        )
        sdk.wait_for("SIPRegistrationDidSucceed", timeout=10)
        yield sdk


@pytest.fixture
def remote(bob):
    bob.call(f"{SUPPORT}:reset")
    bob.clear()
    yield bob
    bob.call(f"{SUPPORT}:reset")


async def register_alice(engine, proxy) -> Registration:
    uri = SIPURI(user="alice", host=proxy.domain)
    registration = Registration(FromHeader(uri), Credentials("alice", "alice-secret"))
    with NotificationQueue(sender=registration) as queue:
        contact = ContactHeader(SIPURI(user="alice", host=LOOPBACK, port=engine.udp_port))
        registration.register(contact, route_to(proxy.ports["udp"]))
        note = await queue.wait_for("SIPRegistrationDidSucceed", timeout=10)
    assert note.data.code == 200
    return registration


def call_bob(engine, proxy) -> Invitation:
    invitation = Invitation()
    uri = SIPURI(user="bob", host=proxy.domain)
    invitation.send_invite(
        uri,
        FromHeader(SIPURI(user="alice", host=proxy.domain)),
        ToHeader(uri),
        route_to(proxy.ports["udp"]),
        peer.contact(engine.udp_port, "alice"),
        SDPSession.parse(offer(("audio", 3000, "sendrecv"))),
        Credentials("alice", "alice-secret"),
    )
    return invitation


async def changed(queue, state, timeout=10.0, **fields):
    def matches(notification):
        data = notification.data
        return data.state == state and all(getattr(data, k, None) == v for k, v in fields.items())

    return (await queue.wait_for("SIPInvitationChangedState", matches, timeout)).data


async def test_a_call_through_the_proxy_follows_the_record_route(proxy, remote):
    remote.call(
        f"{SUPPORT}:answer_calls",
        [(180, False, 0.0), (200, True, 0.1)],
        offer(("audio", 4000, "sendrecv")),
    )
    sent = []

    def trace(notification):
        data = notification.data
        if not data.received:
            sent.append((data.destination_port, parse_message(data.data)))

    NotificationCenter().add_observer(trace, "SIPEngineSIPTrace")
    try:
        async with local_engine(udp_port=0, tcp_port=None, trace_sip=True) as engine:
            registration = await register_alice(engine, proxy)
            assert any(f":{engine.udp_port}" in c for c in proxy.contacts("alice"))
            with NotificationQueue() as queue:
                invitation = call_bob(engine, proxy)
                assert (await changed(queue, "early")).code == 180
                connecting = await changed(queue, "connecting")
                assert connecting.headers["Record-Route"]
                await changed(queue, "connected")
                await asyncio.to_thread(
                    remote.wait_for,
                    "SIPInvitationChangedState",
                    lambda n: n.data["state"] == "connected",
                    10,
                )
                invitation.end()
                gone = await changed(queue, "disconnected")
                assert gone.code == 200
            registration.end()
            await asyncio.sleep(0.3)
    finally:
        NotificationCenter().discard_observer(trace, "SIPEngineSIPTrace")
    proxy_port = proxy.ports["udp"]
    invites = [m for port, m in sent if getattr(m, "method", None) == "INVITE"]
    assert len(invites) == 2 and "Proxy-Authorization" in invites[1].headers  # 407, then
    for method in ("ACK", "BYE"):
        # the last ACK: the first acknowledged the 407
        *_, (port, request) = [(p, m) for p, m in sent if getattr(m, "method", None) == method]
        assert port == proxy_port, f"the {method} went to {port}, not the proxy"
        route = request.route[0].uri
        assert (route.host, route.port) == (LOOPBACK, proxy_port)
        assert request.request_uri.port == remote.ports["udp"]  # the remote target
    remote_gone = await asyncio.to_thread(
        remote.wait_for, "SIPInvitationChangedState", lambda n: n.data["state"] == "disconnected"
    )
    assert remote_gone.data["method"] == "BYE"


async def test_the_callee_ends_through_the_proxy(proxy, remote):
    remote.call(f"{SUPPORT}:answer_calls", [(200, True, 0.0)], offer(("audio", 4000, "sendrecv")))
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        registration = await register_alice(engine, proxy)
        with NotificationQueue() as queue:
            call_bob(engine, proxy)
            await changed(queue, "connected")
            await asyncio.to_thread(
                remote.wait_for,
                "SIPInvitationChangedState",
                lambda n: n.data["state"] == "connected",
                10,
            )
            remote.call(f"{SUPPORT}:invoke", "in1", "end")
            gone = await changed(queue, "disconnected")
            assert (gone.originator, gone.method) == ("remote", "BYE")
        registration.end()
        await asyncio.sleep(0.3)


async def test_a_forked_call_answered_twice_keeps_one_dialog(proxy, remote):
    """Kamailio forks the INVITE to bob's two contacts; both answer 200. The first 2xx
    makes the call, the other dialog is ACKed and ended with BYE at once."""
    proxy.add_contact("bob", f"sip:bob-fork@{LOOPBACK}:{remote.ports['udp']}")
    try:
        remote.call(
            f"{SUPPORT}:answer_calls", [(200, True, 0.0)], offer(("audio", 4000, "sendrecv"))
        )
        async with local_engine(udp_port=0, tcp_port=None) as engine:
            registration = await register_alice(engine, proxy)
            with NotificationQueue() as queue:
                invitation = call_bob(engine, proxy)
                await changed(queue, "connected")
                ended = await asyncio.to_thread(
                    remote.wait_for,
                    "SIPInvitationChangedState",
                    lambda n: n.data["state"] == "disconnected",
                    10,
                )
                assert ended.data["method"] == "BYE"
                names = remote.call(f"{SUPPORT}:names")
                states = sorted(remote.call(f"{SUPPORT}:info", name)["state"] for name in names)
                assert states == ["connected", "disconnected"]
                assert invitation.state == "connected"
                invitation.end()
                await changed(queue, "disconnected")
            registration.end()
            await asyncio.sleep(0.3)
    finally:
        proxy.rpc(
            "ul.rm_contact", "location", "bob", f"sip:bob-fork@{LOOPBACK}:{remote.ports['udp']}"
        )
