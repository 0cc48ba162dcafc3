"""Accounts without the Engine: the AccountManager's bookkeeping (load, add, delete,
rename, default account, find_account), account attributes, ContactURI, Backoff.

The SIP thread is the test's own loop and the configuration lives in memory; the
Engine is not started, so no account activates.
"""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipsimple.account import Account, AccountManager, BonjourAccount, ContactURI
from sipsimple.account.registration import Backoff
from sipsimple.configuration import ConfigurationManager
from sipsimple.configuration.backend.memory import MemoryBackend
from sipsimple.configuration.settings import SIPSimpleSettings
from sipsimple.core import SIPURI, Credentials
from sipsimple.notification import NotificationQueue
from sipsimple.threading import SIPThread

STORED = {
    "SIPSimpleSettings": {"local_ip": "127.0.0.1", "default_account": "bob@example.test"},
    "Accounts": {
        "bonjour@local": {"enabled": "false"},
        "alice@example.test": {"enabled": "true", "auth": {"password": "secret"}},
        "bob@example.test": {"enabled": "false"},
        "carol@example.test": {"enabled": "true", "auth": {"username": "c", "password": "x"}},
    },
}


@pytest.fixture
async def configuration():
    thread = SIPThread()
    thread.start(asyncio.get_running_loop())
    ConfigurationManager().start(MemoryBackend(STORED))
    yield ConfigurationManager()
    await AccountManager().stop()
    ConfigurationManager().stop()
    thread.stop()


@pytest.fixture
async def manager(configuration):
    with NotificationQueue(sender=AccountManager()) as queue:
        await AccountManager().start()
        manager = AccountManager()
        manager.queue = queue
        yield manager


async def drain(queue) -> list:
    """Every notification collected so far."""
    found = []
    while True:
        try:
            found.append(await queue.get(timeout=0))
        except TimeoutError:
            return found


async def test_start_loads_every_account(manager):
    added = [n for n in await drain(manager.queue) if n.name == "SIPAccountManagerDidAddAccount"]
    ids = [str(n.data.account.id) for n in added]
    assert sorted(ids) == [
        "alice@example.test",
        "bob@example.test",
        "bonjour@local",
        "carol@example.test",
    ]
    assert isinstance(manager.get_account("bonjour@local"), BonjourAccount)
    alice = manager.get_account("alice@example.test")
    assert isinstance(alice, Account) and alice is Account("alice@example.test")
    assert manager.has_account("bob@example.test") and not manager.has_account("dan@example.test")
    with pytest.raises(KeyError):
        manager.get_account("dan@example.test")
    assert set(manager.get_accounts()) == set(manager.iter_accounts())
    assert len(manager.get_accounts()) == 4
    # Without the Engine nothing activates.
    assert not any(account.active for account in manager.get_accounts())


async def test_a_disabled_default_is_replaced_by_an_enabled_account(manager):
    # bob, the stored default, is disabled: the first enabled SIP account takes over.
    assert manager.default_account is manager.get_account("alice@example.test")
    assert SIPSimpleSettings().default_account == "alice@example.test"
    changed = await manager.queue.wait_for("SIPAccountManagerDidChangeDefaultAccount", timeout=1)
    assert changed.data.old_account is manager.get_account("bob@example.test")
    assert changed.data.account is manager.get_account("alice@example.test")


async def test_default_account_rules(manager):
    carol = manager.get_account("carol@example.test")
    with NotificationQueue("SIPAccountManagerDidChangeDefaultAccount") as queue:
        manager.default_account = carol
        changed = await queue.wait_for("SIPAccountManagerDidChangeDefaultAccount", timeout=1)
        assert changed.data.old_account is manager.get_account("alice@example.test")
        assert changed.data.account is carol
        assert SIPSimpleSettings().default_account == "carol@example.test"
        manager.default_account = carol  # no change, no notification
        with pytest.raises(ValueError, match="not enabled"):
            manager.default_account = manager.get_account("bob@example.test")
        with pytest.raises(ValueError, match="not an account"):
            manager.default_account = Account("dan@example.test")
        manager.default_account = None
        assert (
            await queue.wait_for("SIPAccountManagerDidChangeDefaultAccount", timeout=1)
        ).data.account is None
        assert SIPSimpleSettings().default_account is None
        assert await drain(queue) == []


async def test_a_new_account_is_added_when_saved_and_becomes_the_default_if_none(manager):
    manager.default_account = None
    await drain(manager.queue)
    dan = Account("dan@example.test")
    assert not manager.has_account("dan@example.test")  # not saved yet
    dan.enabled = True
    dan.save()
    assert manager.get_account("dan@example.test") is dan
    added = await manager.queue.wait_for("SIPAccountManagerDidAddAccount", timeout=1)
    assert added.data.account is dan
    changed = await manager.queue.wait_for("SIPAccountManagerDidChangeDefaultAccount", timeout=1)
    assert changed.data.account is dan and manager.default_account is dan
    assert "dan@example.test" in ConfigurationManager().get_names(["Accounts"])


async def test_delete_removes_and_moves_the_default(manager):
    alice = manager.get_account("alice@example.test")
    assert manager.default_account is alice
    await drain(manager.queue)
    await alice.delete()
    assert not manager.has_account("alice@example.test")
    removed = await manager.queue.wait_for("SIPAccountManagerDidRemoveAccount", timeout=1)
    assert removed.data.account is alice
    changed = await manager.queue.wait_for("SIPAccountManagerDidChangeDefaultAccount", timeout=1)
    assert changed.data.old_account is alice
    assert manager.default_account is manager.get_account("carol@example.test")
    assert "alice@example.test" not in ConfigurationManager().get_names(["Accounts"])
    with pytest.raises(TypeError):
        manager.get_account("bonjour@local").delete()  # the Bonjour account stays


async def test_disabling_the_default_moves_it_and_enabling_fills_an_empty_one(manager):
    alice, carol = (
        manager.get_account("alice@example.test"),
        manager.get_account("carol@example.test"),
    )
    alice.enabled = False
    alice.save()
    assert manager.default_account is carol
    carol.enabled = False
    carol.save()
    assert manager.default_account is None
    alice.enabled = True
    alice.save()
    assert manager.default_account is alice


async def test_renaming_an_account_follows_its_new_id(manager):
    carol = manager.get_account("carol@example.test")
    manager.default_account = carol
    carol.id = "caroline@example.test"
    carol.save()
    assert manager.get_account("caroline@example.test") is carol
    assert not manager.has_account("carol@example.test")
    assert SIPSimpleSettings().default_account == "caroline@example.test"
    assert manager.default_account is carol


async def test_find_account_by_contact_user_then_by_id_user(manager):
    alice, bob = manager.get_account("alice@example.test"), manager.get_account("bob@example.test")
    assert manager.find_account(SIPURI(host="127.0.0.1", user=alice.contact.username)) is alice
    assert manager.find_account(SIPURI(host="example.test", user="alice")) is alice
    assert manager.find_account(SIPURI(host="example.test", user="bob")) is None  # disabled
    assert manager.find_account(SIPURI(host="127.0.0.1", user=bob.contact.username)) is None
    assert manager.find_account(SIPURI(host="example.test", user="nobody")) is None


async def test_account_attributes(manager):
    alice, carol = (
        manager.get_account("alice@example.test"),
        manager.get_account("carol@example.test"),
    )
    assert alice.id == "alice@example.test" and alice.id.username == "alice"
    assert alice.id.domain == "example.test"
    assert alice.uri == SIPURI(host="example.test", user="alice")
    assert alice.credentials == Credentials("alice", "secret")
    assert carol.credentials == Credentials("c", "x")  # auth.username wins
    assert not alice.registered and not alice.active
    contact = alice.contact
    assert isinstance(contact, ContactURI)
    assert len(contact.username) == 8 and contact.username.isalpha() and contact.username.islower()
    assert contact.domain == "127.0.0.1"
    assert alice.contact.username == contact.username  # stable
    assert carol.contact.username != contact.username
    SIPSimpleSettings().local_ip = "127.0.0.2"
    assert alice.contact.domain == "127.0.0.2"  # follows local_ip
    with pytest.raises(KeyError, match="Engine is not running"):
        contact["udp"]
    with pytest.raises(KeyError, match="unknown transport"):
        contact["sctp"]
    assert contact[0] == contact.username[0]  # still a str


async def test_bonjour_account_attributes(manager):
    bonjour = manager.get_account("bonjour@local")
    assert bonjour is BonjourAccount()
    assert bonjour.id == "bonjour@local"
    assert (bonjour.id.username, bonjour.id.domain) == ("bonjour", "local")
    assert bonjour.credentials == Credentials(bonjour.contact.username, "")
    assert bonjour.uri == SIPURI(host="127.0.0.1", user=bonjour.contact.username)
    assert bonjour.contact.domain == "127.0.0.1"
    assert not bonjour.registered


async def test_start_needs_the_configuration():
    with pytest.raises(RuntimeError, match="ConfigurationManager"):
        AccountManager().start()
    assert AccountManager().default_account is None


async def test_observers_are_removed_at_stop(manager):
    await manager.stop()
    before = len(manager.get_accounts())
    dan = Account("dan@example.test")
    dan.save()
    assert len(manager.get_accounts()) == before  # not watching any more


def test_backoff_doubles_up_to_the_cap_and_resets():
    backoff = Backoff(1.0, 10.0, rng=random.Random(5))
    delays = [backoff.next() for _ in range(6)]
    for delay, wait in zip(delays, [1, 2, 4, 8, 10, 10], strict=True):
        assert wait <= delay <= min(2 * wait, 10)
    backoff.reset()
    assert 1 <= backoff.next() <= 2
    with pytest.raises(ValueError):
        Backoff(0, 10)
    with pytest.raises(ValueError):
        Backoff(5, 1)


@settings(max_examples=100)
@given(st.floats(0.01, 100), st.floats(1, 10_000), st.integers(0, 2**32), st.integers(1, 40))
def test_backoff_stays_within_its_bounds(initial, factor, seed, count):
    maximum = initial * factor
    backoff = Backoff(initial, maximum, rng=random.Random(seed))
    for attempt in range(count):
        delay = backoff.next()
        assert min(initial * 2**attempt, maximum) <= delay <= maximum
