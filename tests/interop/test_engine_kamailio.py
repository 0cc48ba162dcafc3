"""The Engine's requests against Kamailio: REGISTER with digest over UDP, TCP and TLS,
refresh, removal, wrong passwords, 423, MESSAGE through the proxy, and UDP loss.

Run as root in a loopback-only network namespace:
    unshare -n sh -c 'ip link set lo up; PYTHONPATH=src /work/venv/bin/python -m pytest \
        tests/interop/test_engine_kamailio.py -q'
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from tests.interop.peers import Kamailio
from tests.support.remote import RemoteSDK
from tests.support.sip import LOOPBACK, local_engine, route_to

from sipsimple.core import Credentials, Message, Registration
from sipsimple.core.sip.headers import ContactHeader, FromHeader, ToHeader
from sipsimple.core.sip.uri import SIPURI
from sipsimple.core.transport import PacketLoss
from sipsimple.notification import NotificationQueue

pytestmark = pytest.mark.interop

DOMAIN = "example.test"


@pytest.fixture(scope="module")
def proxy() -> Iterator[Kamailio]:
    with Kamailio(domain=DOMAIN) as kamailio:
        kamailio.add_user("alice", "secret")
        kamailio.add_user("bob", "bobsecret")
        yield kamailio


def kamailio_with(define: str) -> Kamailio:
    kamailio = Kamailio(domain=DOMAIN)
    kamailio.defines = (*kamailio.defines, define)
    kamailio.add_user("alice", "secret")
    return kamailio


def engine_options(proxy: Kamailio, **options):
    return {
        "udp_port": 0,
        "tcp_port": 0,
        "tls_port": 0,
        "tls_verify_server": True,
        "tls_ca_file": proxy.ca_file,
        "T1": 0.1,
        **options,
    }


def alice_registration(password: str = "secret", duration: int = 60) -> Registration:
    return Registration(
        FromHeader(SIPURI(user="alice", host=DOMAIN)),
        credentials=Credentials("alice", password),
        duration=duration,
    )


def contact(engine, transport: str, user: str = "alice") -> ContactHeader:
    port = {"udp": engine.udp_port, "tcp": engine.tcp_port, "tls": engine.tls_port}[transport]
    return ContactHeader(
        SIPURI(user=user, host=LOOPBACK, port=port, parameters={"transport": transport})
    )


async def registered_contacts(proxy: Kamailio, user: str) -> list[str]:
    return await asyncio.to_thread(proxy.contacts, user)


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_register_with_digest_and_remove(proxy, transport):
    async with local_engine(**engine_options(proxy)) as engine:
        registration = alice_registration()
        with NotificationQueue(sender=registration) as queue:
            registration.register(
                contact(engine, transport), route_to(proxy.ports[transport], transport)
            )
            note = await queue.wait_for("SIPRegistrationDidSucceed", timeout=10)
            assert note.data.code == 200 and note.data.expires_in == 60
            assert registration.is_registered
            contacts = await registered_contacts(proxy, "alice")
            assert str(contact(engine, transport).uri) in contacts
            registration.end()
            assert (await queue.wait_for("SIPRegistrationDidEnd", timeout=10)).data.expired is False
        assert await registered_contacts(proxy, "alice") == []


async def test_tls_refuses_a_server_the_ca_does_not_vouch_for(proxy, tmp_path):
    from tests.interop.peers import make_certificates

    other_ca = make_certificates(tmp_path / "other").ca_cert
    async with local_engine(**engine_options(proxy, tls_ca_file=other_ca)) as engine:
        registration = alice_registration()
        with NotificationQueue(sender=registration) as queue:
            registration.register(contact(engine, "tls"), route_to(proxy.ports["tls"], "tls"))
            note = await queue.wait_for("SIPRegistrationDidFail", timeout=10)
    assert note.data.code == 503 and "certificate" in note.data.reason.lower()


async def test_a_wrong_password_fails_the_registration(proxy):
    async with local_engine(**engine_options(proxy)) as engine:
        registration = alice_registration(password="not-the-password")
        with NotificationQueue(sender=registration) as queue:
            registration.register(contact(engine, "udp"), route_to(proxy.ports["udp"]))
            note = await queue.wait_for("SIPRegistrationDidFail", timeout=10)
    assert note.data.code in (401, 403)
    assert not registration.is_registered


async def test_a_short_registration_is_refreshed():
    with kamailio_with("WITH_SHORT_EXPIRES") as proxy:
        async with local_engine(**engine_options(proxy)) as engine:
            registration = alice_registration(duration=2)
            with NotificationQueue(sender=registration) as queue:
                registration.register(contact(engine, "udp"), route_to(proxy.ports["udp"]))
                first = await queue.wait_for("SIPRegistrationDidSucceed", timeout=10)
                assert first.data.expires_in == 2
                for _ in range(2):  # refreshed every second, pre-authorized
                    await queue.wait_for("SIPRegistrationDidSucceed", timeout=5)
                assert await registered_contacts(proxy, "alice")
                registration.end()
                await queue.wait_for("SIPRegistrationDidEnd", timeout=10)


async def test_423_interval_too_brief_is_retried_with_min_expires():
    with kamailio_with("WITH_MIN_EXPIRES_423") as proxy:
        async with local_engine(**engine_options(proxy)) as engine:
            registration = alice_registration(duration=30)
            with NotificationQueue(sender=registration) as queue:
                registration.register(contact(engine, "udp"), route_to(proxy.ports["udp"]))
                note = await queue.wait_for("SIPRegistrationDidSucceed", timeout=10)
            assert note.data.expires_in == 120


async def test_a_message_through_the_proxy_to_a_registered_endpoint(proxy):
    with RemoteSDK() as bob:
        await bob.async_call("tests.support.sip:start_engine", udp_port=0, tcp_port=0)
        await bob.async_call(
            "tests.support.sip:register",
            "bob",
            f"sip:bob@{DOMAIN}",
            "bobsecret",
            proxy.ports["udp"],
        )
        await bob.async_wait_for("SIPRegistrationDidSucceed", timeout=10)
        async with local_engine(**engine_options(proxy)) as engine:
            assert engine.is_running
            message = Message(
                FromHeader(SIPURI(user="alice", host=DOMAIN)),
                ToHeader(SIPURI(user="bob", host=DOMAIN)),
                route_to(proxy.ports["tcp"], "tcp"),
                "text/plain",
                "hello through kamailio",
                credentials=Credentials("alice", "secret"),
            )
            with NotificationQueue(sender=message) as queue:
                message.send()
                assert (await queue.wait_for("SIPMessageDidSucceed", timeout=10)).data.code == 200
        got = await bob.async_wait_for("SIPEngineGotMessage", timeout=10)
        assert got.data["body"] == b"hello through kamailio"
        assert str(got.data["from_header"].uri) == f"sip:alice@{DOMAIN}"


async def test_register_and_message_through_20_percent_udp_loss(proxy):
    with RemoteSDK() as bob:
        await bob.async_call("tests.support.sip:start_engine", udp_port=0, tcp_port=None, T1=0.1)
        await bob.async_call("tests.support.sip:set_packet_loss", 0.2, 0.2, 3)
        await bob.async_call(
            "tests.support.sip:register",
            "bob",
            f"sip:bob@{DOMAIN}",
            "bobsecret",
            proxy.ports["udp"],
        )
        async with local_engine(**engine_options(proxy)) as engine:
            engine.transport.packet_loss = PacketLoss(send=0.2, receive=0.2, seed=5)
            registration = alice_registration()
            with NotificationQueue(sender=registration) as queue:
                registration.register(contact(engine, "udp"), route_to(proxy.ports["udp"]))
                await queue.wait_for("SIPRegistrationDidSucceed", timeout=20)
            await bob.async_wait_for("SIPRegistrationDidSucceed", timeout=20)
            sent = []
            with NotificationQueue() as queue:
                for index in range(5):
                    message = Message(
                        FromHeader(SIPURI(user="alice", host=DOMAIN)),
                        ToHeader(SIPURI(user="bob", host=DOMAIN)),
                        route_to(proxy.ports["udp"]),
                        "text/plain",
                        f"lossy {index}",
                        credentials=Credentials("alice", "secret"),
                    )
                    message.send()
                    sent.append(message)
                for message in sent:
                    note = await queue.wait_for(
                        "SIPMessageDidSucceed", lambda n, m=message: n.sender is m, timeout=20
                    )
                    assert note.data.code == 200
            bodies = set()
            for _ in sent:
                bodies.add(
                    (await bob.async_wait_for("SIPEngineGotMessage", timeout=20)).data["body"]
                )
            assert bodies == {f"lossy {index}".encode() for index in range(5)}
