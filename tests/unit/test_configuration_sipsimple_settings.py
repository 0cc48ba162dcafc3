"""SIPSimpleSettings and the account settings: names, types and defaults the middleware uses."""

import pytest

from sipsimple import __version__
from sipsimple.account.settings import AccountSettings, BonjourAccountSettings
from sipsimple.configuration import ConfigurationManager, DefaultValue, DuplicateIDError
from sipsimple.configuration.backend.memory import MemoryBackend
from sipsimple.configuration.datatypes import (
    IPAddress,
    MSRPRelayAddress,
    NameserverAddress,
    PortRange,
    SIPAddress,
    SIPProxyAddress,
)
from sipsimple.configuration.settings import SIPSimpleSettings, default_local_ip


@pytest.fixture
def backend():
    return MemoryBackend()


@pytest.fixture
def manager(backend):
    configuration = ConfigurationManager()
    configuration.start(backend)
    yield configuration
    configuration.stop()


def test_global_defaults(manager):
    settings = SIPSimpleSettings()
    assert settings is SIPSimpleSettings()
    assert settings.default_account == "bonjour@local"
    assert settings.user_agent == f"sipsimple {__version__}"
    assert settings.audio.input_device == settings.audio.output_device == "system_default"
    assert settings.audio.alert_device == "system_default"
    assert settings.audio.muted is False and settings.audio.silent is False
    assert settings.audio.echo_canceller.enabled is True
    assert settings.rtp.port_range == PortRange(50000, 50500)
    assert settings.rtp.timeout == 30
    assert settings.rtp.audio_codec_list == ["opus", "G722", "PCMU", "PCMA"]
    assert settings.sip.invite_timeout == 90
    assert (settings.sip.udp_port, settings.sip.tcp_port, settings.sip.tls_port) == (0, 0, 0)
    assert settings.sip.transport_list == ["tls", "tcp", "udp"]
    assert settings.tls.ca_list is None and settings.tls.verify_server is False
    assert settings.file_transfer.directory.normalized.endswith("Downloads")
    assert settings.logs.trace_sip is False and settings.logs.trace_msrp is False
    assert settings.dns.nameservers is None
    assert settings.dns.fallback_nameservers == [
        NameserverAddress("8.8.8.8"),
        NameserverAddress("8.8.4.4"),
    ]
    assert settings.dns.probe_domain == "sip2sip.info"


def test_local_ip_defaults_to_the_outgoing_address_and_can_be_set(manager, backend):
    settings = SIPSimpleSettings()
    assert isinstance(settings.local_ip, IPAddress)
    assert settings.local_ip == default_local_ip()
    settings.local_ip = "127.0.0.1"
    settings.save()
    manager.stop()
    manager.start(backend)
    assert SIPSimpleSettings().local_ip == "127.0.0.1"
    SIPSimpleSettings().local_ip = DefaultValue
    assert SIPSimpleSettings().local_ip == default_local_ip()


def test_dns_settings_can_point_at_loopback(manager):
    settings = SIPSimpleSettings()
    settings.dns.nameservers = ["127.0.0.1:5353"]
    settings.dns.fallback_nameservers = []
    settings.dns.probe_domain = None
    assert settings.dns.nameservers[0].port == 5353
    settings.save()
    assert manager.get(["SIPSimpleSettings", "dns"]) == {
        "nameservers": ["127.0.0.1:5353"],
        "fallback_nameservers": [],
        "probe_domain": None,
    }


def test_tcp_and_tls_ports_must_differ(manager):
    settings = SIPSimpleSettings()
    settings.sip.tcp_port = 5060
    with pytest.raises(ValueError, match=r"SIPSimpleSettings\.sip\.tls_port"):
        settings.sip.tls_port = 5060


def test_account_settings(manager):
    account = AccountSettings("alice@example.com")
    assert account.id == "alice@example.com" and account.id.domain == "example.com"
    assert account.enabled is False and account.display_name is None
    assert account.auth.username is None and account.auth.password == ""
    assert account.sip.outbound_proxy is None and account.sip.always_use_my_proxy is False
    assert account.sip.register_interval == 3600
    assert account.sip.subscribe_interval == account.sip.publish_interval == 3600
    assert account.sip.tls_name is None
    assert account.registration.enabled is True
    assert account.rtp.audio_codec_list is None
    assert account.rtp.encryption.enabled is True
    assert account.rtp.encryption.key_negotiation == "opportunistic"
    assert account.nat_traversal.use_ice is False
    assert account.nat_traversal.stun_server_list is None
    assert account.nat_traversal.msrp_relay is None
    assert account.nat_traversal.use_msrp_relay_for_outbound is False
    assert account.message_summary.enabled is False
    assert account.message_summary.voicemail_uri is None
    assert (account.msrp.transport, account.msrp.connection_model) == ("tls", "relay")
    assert account.presence.enabled is False and account.dialog_event.enabled is False
    assert account.xcap.enabled is False and account.xcap.xcap_root is None
    assert account.xcap.xcap_diff is True


def test_account_values_persist_under_accounts(manager, backend):
    account = AccountSettings("bob@example.com")
    account.enabled = True
    account.sip.outbound_proxy = "proxy.example.com:5061;transport=tls"
    account.nat_traversal.msrp_relay = "relay.example.com"
    account.xcap.xcap_root = "https://xcap.example.com/xcap-root"
    account.save()
    manager.stop()
    manager.start(backend)
    assert manager.get_names("Accounts") == ["bob@example.com"]
    loaded = AccountSettings("bob@example.com")
    assert loaded.enabled is True
    assert loaded.sip.outbound_proxy == SIPProxyAddress("proxy.example.com", 5061, "tls")
    assert loaded.nat_traversal.msrp_relay == MSRPRelayAddress("relay.example.com")
    assert loaded.xcap.xcap_root == "https://xcap.example.com/xcap-root"


def test_bonjour_account_settings(manager):
    bonjour = BonjourAccountSettings()
    assert bonjour is BonjourAccountSettings()
    assert bonjour.id == "bonjour@local" and isinstance(bonjour.id, SIPAddress)
    assert bonjour.id.username == "bonjour"
    assert bonjour.enabled is True
    assert isinstance(bonjour.display_name, str) and bonjour.display_name
    assert bonjour.msrp.transport == "tcp"
    assert bonjour.sip.transport == "udp"
    assert bonjour.rtp.encryption.key_negotiation == "opportunistic"
    assert bonjour.nat_traversal.msrp_relay is None and bonjour.nat_traversal.use_ice is False
    assert bonjour.xcap.enabled is False
    with pytest.raises(TypeError):
        bonjour.delete()


def test_bonjour_runtime_groups_are_never_stored(manager):
    bonjour = BonjourAccountSettings()
    bonjour.nat_traversal.use_ice = True
    bonjour.msrp.transport = "tls"
    bonjour.save()
    assert manager.get(["Accounts", "bonjour@local"]) == {"msrp": {"transport": "tls"}}


def test_an_account_cannot_take_the_bonjour_id(manager):
    BonjourAccountSettings()
    with pytest.raises(DuplicateIDError):
        AccountSettings("bonjour@local")
