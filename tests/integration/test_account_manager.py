"""The AccountManager and account activation with SIPApplication's real Engine:
accounts activate when enabled and the Engine runs, and deactivate when either
stops being true; contacts carry the Engine's ports."""

from __future__ import annotations

import pytest
from tests.support.application import loopback_storage, running_application

from sipsimple.account import Account, AccountManager
from sipsimple.application import engine_options
from sipsimple.configuration.settings import SIPSimpleSettings
from sipsimple.core import Engine
from sipsimple.notification import NotificationQueue

# No registration: these tests are about activation, not about a registrar.
QUIET = {"registration": {"enabled": "false"}}


def accounts(**enabled: bool) -> dict:
    return {
        f"{user}@example.test": {"enabled": "true" if on else "false", **QUIET}
        for user, on in enabled.items()
    }


@pytest.fixture
async def app():
    async with running_application(loopback_storage(accounts=accounts(alice=True, bob=False))):
        yield AccountManager()


async def test_enabled_accounts_activate_with_the_engine(app):
    alice, bob = app.get_account("alice@example.test"), app.get_account("bob@example.test")
    assert alice.active and not bob.active
    assert not app.get_account("bonjour@local").active  # disabled in the loopback settings
    with NotificationQueue(sender=bob) as queue:
        bob.enabled = True
        bob.save()
        await queue.wait_for("SIPAccountWillActivate", timeout=5)
        await queue.wait_for("SIPAccountDidActivate", timeout=5)
    assert bob.active


async def test_a_new_enabled_account_activates(app):
    dan = Account("dan@example.test")
    dan.registration.enabled = False
    dan.enabled = True
    with NotificationQueue() as queue:
        dan.save()
        added = await queue.wait_for("SIPAccountManagerDidAddAccount", timeout=5)
        assert added.data.account is dan
        activated = await queue.wait_for("SIPAccountDidActivate", timeout=5)
        assert activated.sender is dan
    assert dan.active


async def test_accounts_follow_the_engine(app):
    alice = app.get_account("alice@example.test")
    engine = Engine()
    with NotificationQueue(sender=alice) as queue:
        await engine.stop()
        await queue.wait_for("SIPAccountWillDeactivate", timeout=5)
        await queue.wait_for("SIPAccountDidDeactivate", timeout=5)
        assert not alice.active
        await engine.start(**engine_options(SIPSimpleSettings()))
        await queue.wait_for("SIPAccountDidActivate", timeout=5)
    assert alice.active


async def test_contacts_carry_the_engine_ports(app):
    alice = app.get_account("alice@example.test")
    engine = Engine()
    udp, tcp = alice.contact["udp"], alice.contact["tcp"]
    assert (udp.host, udp.port, udp.user) == ("127.0.0.1", engine.udp_port, alice.contact.username)
    assert "transport" not in udp.parameters
    assert (tcp.port, tcp.parameters["transport"]) == (engine.tcp_port, "tcp")
    with pytest.raises(KeyError, match="does not listen on tls"):
        alice.contact["tls"]
    bonjour = app.get_account("bonjour@local")
    assert bonjour.contact["udp"].port == engine.udp_port


async def test_deleting_an_active_account_deactivates_it_first(app):
    alice = app.get_account("alice@example.test")
    with NotificationQueue() as queue:
        await alice.delete()
        names = []
        while True:
            try:
                names.append((await queue.get(timeout=0)).name)
            except TimeoutError:
                break
    assert names.index("SIPAccountWillDeactivate") < names.index("SIPAccountDidDeactivate")
    assert names.index("SIPAccountDidDeactivate") < names.index("SIPAccountManagerDidRemoveAccount")
    assert not alice.active and not app.has_account("alice@example.test")
