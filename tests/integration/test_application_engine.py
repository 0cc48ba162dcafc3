"""SIPApplication with the real Engine: the start and stop order, the Engine started
from SIPSimpleSettings, TLS that cannot start, a fatal start failure, and settings
changed while running."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from tests.interop.peers.certs import make_certificates
from tests.support.application import (
    loopback_file_storage,
    loopback_storage,
    running_application,
)
from tests.unit.test_lookup import LoopbackDNSServer

from sipsimple.account import AccountManager
from sipsimple.application import ApplicationState, SIPApplication
from sipsimple.configuration.settings import SIPSimpleSettings
from sipsimple.core import Engine
from sipsimple.core.transport import TransportError, TransportFailure
from sipsimple.lookup import DNSManager
from sipsimple.notification import Any, Notification, NotificationCenter, NotificationQueue


class Timeline:
    def __init__(self):
        self.notifications: list[Notification] = []

    def __enter__(self):
        NotificationCenter().add_observer(self)
        return self

    def __exit__(self, *exc_info):
        NotificationCenter().discard_observer(self)

    def handle_notification(self, notification):
        if notification.name not in ("SIPEngineLog", "SIPEngineSIPTrace"):
            self.notifications.append(notification)

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.notifications]

    def order(self, *names: str) -> bool:
        positions = [self.names.index(name) for name in names]
        return positions == sorted(positions)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        port = udp.getsockname()[1]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        tcp.bind(("127.0.0.1", port))
    return port


SERVICE = {"enabled": "true", "registration": {"enabled": "false"}}


async def test_start_order_and_the_engine_options():
    port = free_port()
    storage = loopback_storage(
        accounts={"alice@example.test": SERVICE},
        settings={
            "user_agent": "accounts-test/1",
            "sip": {"udp_port": str(port), "tcp_port": "0"},
            "logs": {"trace_sip": "true"},
            "rtp": {"port_range": "41000-41100", "audio_codec_list": ["PCMA", "PCMU"]},
        },
    )
    with Timeline() as timeline:
        async with running_application(storage):
            engine = Engine()
            assert engine.is_running
            assert engine.udp_port == port and engine.tcp_port and engine.tls_port is None
            assert engine.transports == ["udp", "tcp"]
            assert {a.host for a in engine.transport.local_addresses} == {"127.0.0.1"}
            assert engine.user_agent == "accounts-test/1"
            assert engine.trace_sip is True
            assert engine.rtp_port_range == (41000, 41100)
            assert engine.codecs == ["PCMA", "PCMU"]
            assert DNSManager().system_nameservers == ["127.0.0.1:9"]
            assert AccountManager().get_account("alice@example.test").active
            started = len(timeline.names)
    assert not Engine().is_running
    assert timeline.order(
        "SIPApplicationWillStart",
        "SIPEngineWillStart",
        "SIPEngineDidStart",
        "SIPAccountManagerDidAddAccount",
        "SIPAccountWillActivate",
        "SIPAccountDidActivate",
        "SIPApplicationDidStart",
    )
    assert timeline.names.index("SIPApplicationDidStart") == started - 1
    stop = timeline.names[started:]
    assert stop[0] == "SIPApplicationWillEnd" and stop[-1] == "SIPApplicationDidEnd"
    assert stop.index("SIPAccountDidDeactivate") < stop.index("SIPEngineWillEnd")
    assert stop.index("SIPEngineDidEnd") < stop.index("SIPApplicationDidEnd")
    assert "SIPApplicationFailedToStartTLS" not in timeline.names


async def test_stop_flushes_the_configuration(tmp_path):
    storage = loopback_file_storage(tmp_path)
    async with running_application(storage):
        settings = SIPSimpleSettings()
        settings.user_agent = "saved-at-the-end"
        settings.save()
    stored = json.loads((tmp_path / "config").read_text())
    assert stored["SIPSimpleSettings"]["user_agent"] == "saved-at-the-end"
    assert stored["SIPSimpleSettings"]["instance_id"].startswith("urn:uuid:")


async def test_tls_that_cannot_start_is_reported_and_left_out(tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    storage = loopback_storage(
        transports=["udp", "tls"], settings={"tls": {"certificate": str(bad)}}
    )
    with Timeline() as timeline:
        async with running_application(storage):
            assert Engine().transports == ["udp"]
            assert Engine().tls_port is None
    failure = next(n for n in timeline.notifications if n.name == "SIPApplicationFailedToStartTLS")
    assert failure.sender is SIPApplication()
    assert isinstance(failure.data.error, TransportError)
    assert failure.data.error.failure is TransportFailure.TLS_CONFIGURATION
    assert timeline.order("SIPApplicationFailedToStartTLS", "SIPApplicationDidStart")


async def test_tls_starts_with_a_certificate_and_key_in_one_file(tmp_path):
    certificates = make_certificates(tmp_path / "certs")
    pair = certificates.server
    combined = tmp_path / "tls.pem"
    combined.write_bytes(pair.cert.read_bytes() + pair.key.read_bytes())
    storage = loopback_storage(
        transports=["tls", "udp"],
        settings={"tls": {"certificate": str(combined), "ca_list": str(certificates.ca_cert)}},
    )
    with Timeline() as timeline:
        async with running_application(storage):
            assert Engine().tls_port
            assert Engine().tls_cert_file == str(combined)
            assert Engine().tls_ca_file == str(certificates.ca_cert)
    assert "SIPApplicationFailedToStartTLS" not in timeline.names


async def test_a_fatal_start_failure_ends_the_application():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        storage = loopback_storage(transports=["udp"], settings={"sip": {"udp_port": str(port)}})
        app = SIPApplication()
        with Timeline() as timeline, NotificationQueue(sender=app) as queue:
            app.start(storage)
            await queue.wait_for("SIPApplicationDidEnd", timeout=10)
    assert app.state is ApplicationState.STOPPED and not app.running
    names = [n for n in timeline.names if n.startswith("SIPApplication")]
    assert names == ["SIPApplicationWillStart", "SIPApplicationWillEnd", "SIPApplicationDidEnd"]
    assert "SIPEngineDidFail" in timeline.names
    # Startable again once the cause is gone.
    async with running_application(loopback_storage()):
        assert Engine().is_running


async def test_settings_changed_while_running_apply_at_once():
    async with running_application(loopback_storage()):
        engine = Engine()
        settings = SIPSimpleSettings()
        old_port = engine.udp_port
        new_port = free_port()
        settings.user_agent = "changed/2"
        settings.logs.trace_sip = True
        settings.sip.udp_port = new_port
        settings.dns.nameservers = ["127.0.0.1:10"]
        settings.save()
        await until(lambda: engine.udp_port == new_port)
        assert engine.user_agent == "changed/2" and engine.trace_sip is True
        assert engine.udp_port == new_port != old_port
        assert DNSManager().system_nameservers == ["127.0.0.1:10"]
        settings.sip.transport_list = ["udp"]
        settings.save()
        await until(lambda: engine.tcp_port is None)
        assert engine.transports == ["udp"]


async def until(condition, timeout: float = 5.0) -> None:
    """Wait until ``condition()`` holds (the changes apply on the SIP thread, soon)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


@pytest.fixture(autouse=True)
def _stopped():
    yield
    assert SIPApplication().state is ApplicationState.STOPPED


async def test_the_dns_manager_probes_the_configured_nameservers():
    records = {
        ("probe.test", "NAPTR"): (0, ['10 10 "S" "SIP+D2U" "" _sip._udp.probe.test.']),
        ("_sip._udp.probe.test", "SRV"): (0, ["10 0 5060 sip.probe.test."]),
    }
    server = await LoopbackDNSServer(records).start()
    storage = loopback_storage(
        nameservers=[server.nameserver], settings={"dns": {"probe_domain": "probe.test"}}
    )
    try:
        with NotificationQueue(sender=DNSManager()) as queue:
            async with running_application(storage):
                # DNSManager is a singleton: a first probe in this process initializes
                # it, a later one changes it.
                names = ("DNSResolverDidInitialize", "DNSNameserversDidChange")
                chosen = await queue.wait_for(Any, lambda n: n.name in names, timeout=5)
                assert chosen.data.nameservers == [server.nameserver]
                assert DNSManager().nameservers == [server.nameserver]
    finally:
        server.close()
    assert ("probe.test", "NAPTR") in server.queries
    # Started again without probing, the configured nameservers are used as they are.
    async with running_application(loopback_storage(nameservers=["127.0.0.1:11"])):
        assert DNSManager().nameservers is None
        assert DNSManager().system_nameservers == ["127.0.0.1:11"]
