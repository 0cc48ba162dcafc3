"""An Account registering through SIPApplication's real Engine with a scripted registrar.

The registrar is a RemoteSDK child whose Engine answers REGISTER from a script
(tests.support.sip.serve), so each test picks what the registrar says: expiries,
failures, challenges. The account's outbound proxy points at it.
"""

from __future__ import annotations

import socket

import pytest
from tests.support.application import loopback_storage, running_application
from tests.support.remote import RemoteSDK
from tests.unit.test_lookup import LoopbackDNSServer

from sipsimple.account import AccountManager
from sipsimple.account.registration import AccountRegistrar
from sipsimple.configuration.settings import SIPSimpleSettings
from sipsimple.core import Registration
from sipsimple.notification import Notification, NotificationCenter, NotificationQueue
from sipsimple.util import Route

ALICE = "alice@example.test"
OK_2S = [(200, [("Contact", "{contact};expires=2")])]
OK_60S = [(200, [("Contact", "{contact};expires=60")])]


@pytest.fixture(scope="module")
def registrar():
    with RemoteSDK() as sdk:
        sdk.ports = sdk.call("tests.support.sip:start_engine", udp_port=0, tcp_port=0)
        yield sdk


async def serve(registrar, script):
    await registrar.async_call("tests.support.sip:serve", "REGISTER", script)


async def served(registrar):
    return await registrar.async_call("tests.support.sip:served", "REGISTER")


def storage(port, transport="udp", **account):
    values = {
        "enabled": "true",
        "sip": {"outbound_proxy": f"127.0.0.1:{port};transport={transport}"},
    }
    values.update(account)
    return loopback_storage(transports=[transport], accounts={ALICE: values})


class Timeline:
    """The names of every notification, in order (for checking sequences)."""

    def __init__(self):
        self.names: list[str] = []

    def __enter__(self):
        NotificationCenter().add_observer(self)
        return self

    def __exit__(self, *exc_info):
        NotificationCenter().discard_observer(self)

    def handle_notification(self, notification: Notification) -> None:
        self.names.append(notification.name)

    def order(self, *names: str) -> bool:
        """Whether the first occurrences of ``names`` come in this order."""
        positions = [self.names.index(name) for name in names]
        return positions == sorted(positions)


async def test_registers_refreshes_and_unregisters_at_stop(registrar):
    port = registrar.ports["udp"]
    await serve(registrar, OK_2S)
    with Timeline() as timeline, NotificationQueue() as queue:
        async with running_application(storage(port)):
            account = AccountManager().get_account(ALICE)
            await queue.wait_for("SIPAccountWillRegister", timeout=5)
            answer = await queue.wait_for("SIPAccountRegistrationGotAnswer", timeout=5)
            assert answer.sender is account
            assert (answer.data.code, answer.data.reason) == (200, "OK")
            assert isinstance(answer.data.registration, Registration)
            assert answer.data.registrar == Route("127.0.0.1", port, "udp")
            succeeded = await queue.wait_for("SIPAccountRegistrationDidSucceed", timeout=5)
            assert succeeded.data.expires == 2
            assert succeeded.data.registrar == Route("127.0.0.1", port, "udp")
            assert succeeded.data.contact_header.uri == account.contact["udp"]
            assert [c.uri for c in succeeded.data.contact_header_list] == [account.contact["udp"]]
            assert account.registered
            # The core refreshes the 2 s binding after 1 s: reported the same way.
            refresh = await queue.wait_for("SIPAccountRegistrationGotAnswer", timeout=4)
            assert refresh.data.registration is answer.data.registration
            await queue.wait_for("SIPAccountRegistrationDidSucceed", timeout=1)
        ended = await queue.wait_for("SIPAccountRegistrationDidEnd", timeout=1)
        assert ended.data.registration is answer.data.registration
    assert not account.registered
    assert timeline.order(
        "SIPApplicationWillStart",
        "SIPEngineDidStart",
        "SIPAccountManagerDidAddAccount",
        "SIPAccountDidActivate",
        "SIPAccountWillRegister",
        "SIPApplicationDidStart",
        "SIPApplicationWillEnd",
        "SIPAccountWillDeactivate",
        "SIPAccountRegistrationDidEnd",
        "SIPAccountDidDeactivate",
        "SIPEngineWillEnd",
        "SIPApplicationDidEnd",
    )
    requests = [entry["headers"] for entry in await served(registrar)]
    assert len(requests) == 3
    assert requests[0]["To"] == f"<sip:{ALICE}>"
    assert requests[0]["Expires"] == "3600"  # sip.register_interval
    assert requests[-1]["Expires"] == "0"


async def test_over_tcp(registrar):
    port = registrar.ports["tcp"]
    await serve(registrar, OK_60S)
    with NotificationQueue() as queue:
        async with running_application(storage(port, "tcp")):
            account = AccountManager().get_account(ALICE)
            succeeded = await queue.wait_for("SIPAccountRegistrationDidSucceed", timeout=5)
            assert succeeded.data.registrar == Route("127.0.0.1", port, "tcp")
            assert succeeded.data.contact_header.uri == account.contact["tcp"]
            assert account.contact["tcp"].parameters["transport"] == "tcp"


async def test_rejected_credentials_back_off_for_a_minute(registrar):
    challenge = ("WWW-Authenticate", 'Digest realm="example.test", nonce="n1", algorithm=MD5')
    await serve(registrar, [(401, [challenge])])
    with Timeline() as timeline, NotificationQueue() as queue:
        async with running_application(storage(registrar.ports["udp"])):
            account = AccountManager().get_account(ALICE)
            answer = await queue.wait_for("SIPAccountRegistrationGotAnswer", timeout=5)
            assert answer.data.code == 401
            failed = await queue.wait_for("SIPAccountRegistrationDidFail", timeout=5)
            assert failed.sender is account
            assert failed.data.code == 401 and "authentication failed" in failed.data.error
            assert isinstance(failed.data.timeout, float)
            assert 60 <= failed.data.timeout <= 120
            assert not account.registered
    # Never registered: nothing to remove at stop.
    assert "SIPAccountRegistrationDidEnd" not in timeline.names
    assert "SIPAccountRegistrationDidNotEnd" not in timeline.names
    # The credentials were tried once (with the challenge's nonce), not in a loop.
    requests = [entry["headers"] for entry in await served(registrar)]
    assert len(requests) == 2
    assert "Authorization" not in requests[0] and 'nonce="n1"' in requests[1]["Authorization"]


async def test_a_failure_is_retried_after_a_back_off(registrar):
    await serve(registrar, [(500, []), *OK_60S])
    with NotificationQueue() as queue:
        async with running_application(storage(registrar.ports["udp"])):
            await queue.wait_for("SIPAccountWillRegister", timeout=5)
            failed = await queue.wait_for("SIPAccountRegistrationDidFail", timeout=5)
            assert failed.data.code == 500 and failed.data.reason
            assert failed.data.error == f"500 {failed.data.reason}"
            assert 1 <= failed.data.timeout <= 2  # the first back-off
            # A failed round drops its Registration: the retry registers anew.
            await queue.wait_for("SIPAccountWillRegister", timeout=3)
            await queue.wait_for("SIPAccountRegistrationDidSucceed", timeout=5)


async def test_503_from_the_only_route_ends_the_round(registrar):
    await serve(registrar, [(503, [])])
    with NotificationQueue() as queue:
        async with running_application(storage(registrar.ports["udp"])):
            failed = await queue.wait_for("SIPAccountRegistrationDidFail", timeout=5)
            assert failed.data.code == 503
            assert failed.data.error.startswith("no more routes to try (last: 503")
            again = await queue.wait_for("SIPAccountRegistrationDidFail", timeout=4)
            assert again.data.timeout > 0


async def test_a_failed_refresh_starts_a_new_round(registrar):
    await serve(registrar, [*OK_2S, (500, []), *OK_60S])
    with NotificationQueue() as queue:
        async with running_application(storage(registrar.ports["udp"])):
            first = await queue.wait_for("SIPAccountRegistrationDidSucceed", timeout=5)
            assert first.data.expires == 2
            refresh = await queue.wait_for(
                "SIPAccountRegistrationGotAnswer", lambda n: n.data.code == 500, timeout=4
            )
            assert refresh.data.registrar == first.data.registrar
            await queue.wait_for("SIPAccountRegistrationWillRefresh", timeout=2)
            second = await queue.wait_for("SIPAccountRegistrationDidSucceed", timeout=5)
            assert second.data.expires == 60


async def test_changed_settings_register_again(registrar):
    await serve(registrar, OK_60S)
    with Timeline() as timeline, NotificationQueue() as queue:
        async with running_application(storage(registrar.ports["udp"])):
            account = AccountManager().get_account(ALICE)
            await queue.wait_for("SIPAccountRegistrationDidSucceed", timeout=5)
            account.sip.register_interval = 120
            account.auth.password = "new secret"
            account.save()
            await queue.wait_for("SIPAccountRegistrationDidEnd", timeout=5)
            await queue.wait_for("SIPAccountRegistrationDidSucceed", timeout=5)
            assert account.registered
            # An unrelated change does not.
            account.rtp.encryption.enabled = False
            account.save()
            account.reregister()
            await queue.wait_for("SIPAccountRegistrationDidEnd", timeout=5)
            await queue.wait_for("SIPAccountRegistrationDidSucceed", timeout=5)
    assert timeline.names.count("SIPAccountWillRegister") == 3
    assert (
        "SIPAccountWillDeactivate"
        not in timeline.names[: timeline.names.index("SIPApplicationWillEnd")]
    )
    expires = [entry["headers"]["Expires"] for entry in await served(registrar)]
    assert expires == ["3600", "0", "120", "0", "120", "0"]


async def test_disabling_the_account_or_its_registration_unregisters(registrar):
    await serve(registrar, OK_60S)
    with NotificationQueue() as queue:
        async with running_application(storage(registrar.ports["udp"])):
            account = AccountManager().get_account(ALICE)
            await queue.wait_for("SIPAccountRegistrationDidSucceed", timeout=5)
            account.registration.enabled = False
            account.save()
            await queue.wait_for("SIPAccountRegistrationDidEnd", timeout=5)
            assert account.active and not account.registered
            account.registration.enabled = True
            account.save()
            await queue.wait_for("SIPAccountRegistrationDidSucceed", timeout=5)
            account.enabled = False
            account.save()
            await queue.wait_for("SIPAccountWillDeactivate", timeout=5)
            await queue.wait_for("SIPAccountRegistrationDidEnd", timeout=5)
            await queue.wait_for("SIPAccountDidDeactivate", timeout=5)
            assert not account.active and not account.registered
            changed = await queue.wait_for(
                "SIPAccountManagerDidChangeDefaultAccount",
                lambda n: n.data.account is None,
                timeout=1,
            )
            assert changed.data.old_account is account
    assert [entry["headers"]["Expires"] for entry in await served(registrar)][-1] == "0"


async def test_a_lookup_failure_is_reported_and_retried():
    # No outbound proxy: the domain is looked up, and it has no records at all.
    server = await LoopbackDNSServer({}).start()
    storage = loopback_storage(
        nameservers=[server.nameserver], accounts={ALICE: {"enabled": "true"}}
    )
    try:
        with NotificationQueue() as queue:
            async with running_application(storage):
                failed = await queue.wait_for("SIPAccountRegistrationDidFail", timeout=10)
                assert failed.data.error.startswith("DNS lookup failed: no SIP proxy found")
                assert not hasattr(failed.data, "code")
                assert 1 <= failed.data.timeout <= 2
                again = await queue.wait_for("SIPAccountRegistrationDidFail", timeout=5)
                assert 2 <= again.data.timeout <= 4  # doubled
    finally:
        server.close()
    assert ("example.test", "NAPTR") in server.queries
    assert ("_sip._udp.example.test", "SRV") in server.queries


async def test_fails_over_to_the_next_route(registrar, monkeypatch):
    monkeypatch.setattr(AccountRegistrar, "attempt_timeout", 1.0)
    await serve(registrar, OK_60S)
    dead = free_udp_port()
    records = {
        ("_sip._udp.example.test", "SRV"): (
            0,
            [
                f"10 0 {dead} sip1.example.test.",
                f"20 0 {registrar.ports['udp']} sip2.example.test.",
            ],
        ),
        ("sip1.example.test", "A"): (0, ["127.0.0.1"]),
        ("sip2.example.test", "A"): (0, ["127.0.0.1"]),
    }
    server = await LoopbackDNSServer(records).start()
    storage = loopback_storage(
        transports=["udp"], nameservers=[server.nameserver], accounts={ALICE: {"enabled": "true"}}
    )
    try:
        with NotificationQueue() as queue:
            async with running_application(storage):
                first = await queue.wait_for("SIPAccountRegistrationGotAnswer", timeout=5)
                assert first.data.code == 408
                assert first.data.registrar == Route("127.0.0.1", dead, "udp")
                second = await queue.wait_for("SIPAccountRegistrationGotAnswer", timeout=5)
                assert second.data.code == 200
                assert second.data.registration is first.data.registration
                succeeded = await queue.wait_for("SIPAccountRegistrationDidSucceed", timeout=1)
                assert succeeded.data.registrar == Route("127.0.0.1", registrar.ports["udp"], "udp")
    finally:
        server.close()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_stop_is_bounded_when_the_registrar_is_gone(monkeypatch):
    monkeypatch.setattr(AccountRegistrar, "end_timeout", 1.0)
    with RemoteSDK() as gone:
        ports = gone.call("tests.support.sip:start_engine", udp_port=0, tcp_port=None)
        await serve(gone, OK_60S)
        queue = NotificationQueue()
        app = running_application(storage(ports["udp"]))
        await app.__aenter__()
        try:
            await queue.wait_for("SIPAccountRegistrationDidSucceed", timeout=5)
        finally:
            gone.stop()  # the registrar disappears; the un-REGISTER gets no answer
            await app.__aexit__(None, None, None)
    not_ended = await queue.wait_for("SIPAccountRegistrationDidNotEnd", timeout=1)
    assert not_ended.data.code == 408
    assert isinstance(not_ended.data.registration, Registration)
    await queue.wait_for("SIPApplicationDidEnd", timeout=1)
    queue.close()


async def test_a_new_sip_port_registers_the_new_contact(registrar):
    await serve(registrar, OK_60S)
    with NotificationQueue() as queue:
        async with running_application(storage(registrar.ports["udp"])):
            account = AccountManager().get_account(ALICE)
            first = await queue.wait_for("SIPAccountRegistrationDidSucceed", timeout=5)
            settings = SIPSimpleSettings()
            settings.sip.udp_port = free_udp_port()
            settings.save()
            await queue.wait_for("SIPAccountRegistrationDidEnd", timeout=5)
            second = await queue.wait_for("SIPAccountRegistrationDidSucceed", timeout=5)
            assert second.data.contact_header.uri.port == settings.sip.udp_port
            assert first.data.contact_header.uri.port != settings.sip.udp_port
            assert second.data.contact_header.uri == account.contact["udp"]
