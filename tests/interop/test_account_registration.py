"""Account registration against Kamailio 5.6 (digest authentication) on 127.0.0.1.

The whole SDK runs (SIPApplication on the test's loop, loopback settings). Run as root
inside a loopback-only network namespace, from the worktree root:

    unshare -n sh -c 'ip link set lo up;
        PYTHONPATH=src python -m pytest tests/interop/test_account_*.py -q'
"""

from __future__ import annotations

import asyncio

import pytest
from tests.interop.dnsmasq import Dnsmasq, free_port
from tests.interop.peers import Kamailio, wait_for
from tests.support.application import loopback_storage, running_application

from sipsimple.account import AccountManager
from sipsimple.account.registration import AccountRegistrar
from sipsimple.notification import NotificationQueue
from sipsimple.util import Route

pytestmark = pytest.mark.interop

ALICE = "alice@example.test"
PASSWORD = "wonderland"


@pytest.fixture(scope="module")
def proxy():
    with Kamailio(domain="example.test", auth=True) as kamailio:
        kamailio.add_user("alice", PASSWORD)
        yield kamailio


def alice(proxy_address: str | None, password: str = PASSWORD, **settings) -> dict:
    values = {"enabled": "true", "auth": {"password": password}, **settings}
    if proxy_address is not None:
        values["sip"] = {"outbound_proxy": proxy_address}
    return {ALICE: values}


def outbound(kamailio: Kamailio, transport: str = "udp") -> str:
    host, port = kamailio.address(transport)
    return f"{host}:{port};transport={transport}"


async def contacts_become(proxy: Kamailio, expected: int, timeout: float = 5.0) -> list[str]:
    """Alice's contacts in Kamailio's location table once there are ``expected``."""
    found: list[str] = []

    def check() -> bool:
        found[:] = proxy.contacts("alice")
        return len(found) == expected

    assert await asyncio.to_thread(wait_for, check, timeout), (found, proxy.log_tail())
    return found


async def test_registers_with_digest_and_unregisters_at_stop(proxy):
    storage = loopback_storage(accounts=alice(outbound(proxy)))
    with NotificationQueue() as queue:
        async with running_application(storage):
            account = AccountManager().get_account(ALICE)
            succeeded = await queue.wait_for("SIPAccountRegistrationDidSucceed", timeout=10)
            assert succeeded.sender is account and account.registered
            assert succeeded.data.registrar == Route("127.0.0.1", proxy.ports["udp"], "udp")
            assert succeeded.data.expires == 3600  # Kamailio's max_expires
            (contact,) = await contacts_become(proxy, 1)
            assert contact == str(account.contact["udp"])
        await queue.wait_for("SIPAccountRegistrationDidEnd", timeout=1)
    await contacts_become(proxy, 0)


async def test_a_wrong_password_fails_with_the_code_and_a_retry_timeout(proxy):
    storage = loopback_storage(accounts=alice(outbound(proxy), password="not it"))
    with NotificationQueue() as queue:
        async with running_application(storage):
            answer = await queue.wait_for("SIPAccountRegistrationGotAnswer", timeout=10)
            assert answer.data.code == 401
            failed = await queue.wait_for("SIPAccountRegistrationDidFail", timeout=5)
            assert failed.data.code == 401
            assert "authentication failed" in failed.data.error
            assert 60 <= failed.data.timeout <= 120
            assert not AccountManager().get_account(ALICE).registered
    assert proxy.contacts("alice") == []


async def test_a_registrar_that_comes_up_later_is_registered_with_after_backing_off():
    later = Kamailio(domain="example.test", auth=True)
    later.add_user("alice", PASSWORD)
    storage = loopback_storage(transports=["tcp"], accounts=alice(outbound(later, "tcp")))
    try:
        with NotificationQueue() as queue:
            async with running_application(storage):
                first = await queue.wait_for("SIPAccountRegistrationDidFail", timeout=10)
                assert first.data.code == 503  # connection refused
                assert 1 <= first.data.timeout <= 2
                second = await queue.wait_for("SIPAccountRegistrationDidFail", timeout=5)
                assert 2 <= second.data.timeout <= 4
                await asyncio.to_thread(later.start)
                succeeded = await queue.wait_for("SIPAccountRegistrationDidSucceed", timeout=15)
                assert succeeded.data.registrar == Route("127.0.0.1", later.ports["tcp"], "tcp")
            await queue.wait_for("SIPAccountRegistrationDidEnd", timeout=1)
    finally:
        later.stop()


async def test_fails_over_from_a_dead_srv_target(proxy, monkeypatch):
    monkeypatch.setattr(AccountRegistrar, "attempt_timeout", 1.0)
    dead = free_port("127.0.0.1")
    records = [
        f"--srv-host=_sip._udp.example.test,sip1.example.test,{dead},10,0",
        f"--srv-host=_sip._udp.example.test,sip2.example.test,{proxy.ports['udp']},20,0",
        "--host-record=sip1.example.test,127.0.0.1",
        "--host-record=sip2.example.test,127.0.0.1",
    ]
    with Dnsmasq(records) as dns:
        storage = loopback_storage(
            transports=["udp"], nameservers=[dns.nameserver], accounts=alice(None)
        )
        with NotificationQueue() as queue:
            async with running_application(storage):
                first = await queue.wait_for("SIPAccountRegistrationGotAnswer", timeout=10)
                assert first.data.code == 408
                assert first.data.registrar == Route("127.0.0.1", dead, "udp")
                second = await queue.wait_for("SIPAccountRegistrationGotAnswer", timeout=10)
                assert second.data.code == 200
                succeeded = await queue.wait_for("SIPAccountRegistrationDidSucceed", timeout=1)
                assert succeeded.data.registrar == Route("127.0.0.1", proxy.ports["udp"], "udp")
                await contacts_become(proxy, 1)
    await contacts_become(proxy, 0)


async def test_changed_settings_register_again(proxy):
    storage = loopback_storage(accounts=alice(outbound(proxy)))
    with NotificationQueue() as queue:
        async with running_application(storage):
            account = AccountManager().get_account(ALICE)
            await queue.wait_for("SIPAccountRegistrationDidSucceed", timeout=10)
            account.sip.register_interval = 600
            account.save()
            await queue.wait_for("SIPAccountRegistrationDidEnd", timeout=5)
            succeeded = await queue.wait_for("SIPAccountRegistrationDidSucceed", timeout=10)
            assert succeeded.data.expires == 600
            (contact,) = await contacts_become(proxy, 1)
            assert contact == str(account.contact["udp"])
    await contacts_become(proxy, 0)


async def test_disabling_the_account_unregisters(proxy):
    storage = loopback_storage(accounts=alice(outbound(proxy)))
    with NotificationQueue() as queue:
        async with running_application(storage):
            account = AccountManager().get_account(ALICE)
            await queue.wait_for("SIPAccountRegistrationDidSucceed", timeout=10)
            await contacts_become(proxy, 1)
            account.enabled = False
            account.save()
            await queue.wait_for("SIPAccountWillDeactivate", timeout=5)
            ended = await queue.wait_for("SIPAccountRegistrationDidEnd", timeout=5)
            assert ended.sender is account
            await queue.wait_for("SIPAccountDidDeactivate", timeout=5)
            await contacts_become(proxy, 0)
            assert not account.registered and not account.active
