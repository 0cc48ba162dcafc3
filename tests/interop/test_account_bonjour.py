"""Two SDK processes find each other with the Bonjour account (mDNS via zeroconf).

This process runs a SIPApplication with the Bonjour account enabled; a RemoteSDK
child runs the same start order (configuration, Engine, AccountManager) by hand,
its SIP thread being taken already. Both have local_ip 127.0.0.1, which keeps mDNS
on the loopback interface. Run inside a loopback-only network namespace:

    unshare -n sh -c 'ip link set lo up;
        PYTHONPATH=src python -m pytest tests/interop/test_account_*.py -q'
"""

from __future__ import annotations

import pytest
from tests.interop.dnsmasq import free_port
from tests.support.application import loopback_configuration, loopback_storage, running_application
from tests.support.remote import RemoteSDK

from sipsimple.account import AccountManager, BonjourAccount, BonjourServiceDescription
from sipsimple.account.bonjour import service_type
from sipsimple.application import engine_options
from sipsimple.configuration import ConfigurationManager
from sipsimple.configuration.backend.memory import MemoryBackend
from sipsimple.configuration.settings import SIPSimpleSettings
from sipsimple.core import Engine, FrozenSIPURI
from sipsimple.notification import NotificationQueue

pytestmark = pytest.mark.interop

# -- what the child runs (on its SIP thread) ---------------------------------------------


async def start_peer(display_name: str) -> dict[str, str]:
    """The application's start order in the child; the Bonjour account's contacts."""
    accounts = {"bonjour@local": {"enabled": "true", "display_name": display_name}}
    configuration = loopback_configuration(bonjour=True, accounts=accounts)
    ConfigurationManager().start(MemoryBackend(configuration))
    await Engine().start(**engine_options(SIPSimpleSettings()))
    await AccountManager().start()
    contact = BonjourAccount().contact
    return {"udp": str(contact["udp"]), "tcp": str(contact["tcp"])}


def rename_peer(display_name: str) -> None:
    account = BonjourAccount()
    account.display_name = display_name
    account.save()


async def stop_peer() -> None:
    await AccountManager().stop()
    await Engine().stop()
    ConfigurationManager().stop()


# -- the test ----------------------------------------------------------------------------


def is_peer(contact: str):
    return lambda notification: str(notification.data.uri) == contact


async def test_two_processes_discover_each_other():
    accounts = {"bonjour@local": {"enabled": "true", "display_name": "Alice"}}
    with RemoteSDK(call_timeout=20) as bob, NotificationQueue() as queue:
        peer = await bob.async_call(start_peer, "Bob")
        async with running_application(loopback_storage(bonjour=True, accounts=accounts)):
            account = AccountManager().get_account("bonjour@local")
            assert account is BonjourAccount() and account.active
            for transport in ("udp", "tcp"):
                await queue.wait_for(
                    "BonjourAccountWillRegister", lambda n, t=transport: n.data.transport == t, 5
                )
                registered = await queue.wait_for(
                    "BonjourAccountRegistrationDidSucceed",
                    lambda n, t=transport: n.data.transport == t,
                    timeout=10,
                )
                assert registered.sender is account
                assert registered.data.name == str(account.contact[transport])
            # We find Bob (once per transport), never ourselves.
            for transport in ("udp", "tcp"):
                added = await queue.wait_for(
                    "BonjourAccountDidAddNeighbour", is_peer(peer[transport]), timeout=10
                )
                assert added.sender is account
                assert added.data.display_name == "Bob"
                assert isinstance(added.data.uri, FrozenSIPURI)
                assert added.data.host
                description = added.data.service_description
                assert isinstance(description, BonjourServiceDescription)
                assert description.type == service_type(transport)
                assert description.name == f"{peer[transport]}.{service_type(transport)}"
                assert description.domain == "local."
                assert account.neighbours[description] == added.data.uri
            own = {str(account.contact["udp"]), str(account.contact["tcp"])}
            assert not own & {str(uri) for uri in account.neighbours.values()}
            # Bob finds us.
            found = await bob.async_wait_for(
                "BonjourAccountDidAddNeighbour",
                lambda n: str(n.data["uri"]).startswith(f"sip:{account.contact.username}@"),
                timeout=10,
            )
            assert found.data["display_name"] == "Alice"
            # Bob changes his name: an update.
            await bob.async_call(rename_peer, "Robert")
            updated = await queue.wait_for(
                "BonjourAccountDidUpdateNeighbour", is_peer(peer["udp"]), timeout=10
            )
            assert updated.data.display_name == "Robert"
            # Bob leaves: both his services go.
            await bob.async_call(stop_peer)
            removed = set()
            while len(removed) < 2:
                note = await queue.wait_for("BonjourAccountDidRemoveNeighbour", timeout=10)
                removed.add(note.data.service_description)
            assert {d.type for d in removed} == {service_type("udp"), service_type("tcp")}
            assert account.neighbours == {}
        ended = {
            (await queue.wait_for("BonjourAccountRegistrationDidEnd", timeout=5)).data.transport
            for _ in range(2)
        }
        assert ended == {"udp", "tcp"}
        assert not account.active


async def test_enabling_republishing_and_disabling():
    with NotificationQueue() as queue:
        async with running_application(loopback_storage(bonjour=False, transports=["udp"])):
            account = AccountManager().get_account("bonjour@local")
            assert not account.active
            account.enabled = True
            account.save()
            await queue.wait_for("SIPAccountDidActivate", timeout=5)
            await queue.wait_for("BonjourAccountWillInitateDiscovery", timeout=5)
            await queue.wait_for("BonjourAccountRegistrationDidSucceed", timeout=10)
            # A new SIP port: the contact is withdrawn and published again.
            settings = SIPSimpleSettings()
            settings.sip.udp_port = free_port("127.0.0.1")
            settings.save()
            await queue.wait_for("BonjourAccountRegistrationDidEnd", timeout=5)
            again = await queue.wait_for("BonjourAccountRegistrationDidSucceed", timeout=10)
            assert again.data.name == str(account.contact["udp"])
            assert account.contact["udp"].port == settings.sip.udp_port
            account.enabled = False
            account.save()
            await queue.wait_for("SIPAccountDidDeactivate", timeout=10)
            await queue.wait_for("BonjourAccountRegistrationDidEnd", timeout=1)
