"""Datatypes: validation, and a lossless round trip of every one through a FileBackend."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipsimple.configuration import ConfigurationManager, Setting, SettingsObject
from sipsimple.configuration.backend.file import FileBackend
from sipsimple.configuration.datatypes import (
    AudioCodec,
    AudioCodecList,
    ContentType,
    ContentTypeList,
    Hostname,
    IPAddress,
    MSRPConnectionModel,
    MSRPRelayAddress,
    MSRPTransport,
    NameserverAddress,
    NameserverAddressList,
    NonNegativeInteger,
    Path,
    Port,
    PortRange,
    PositiveInteger,
    SampleRate,
    SIPAddress,
    SIPProxyAddress,
    SIPTransport,
    SIPTransportList,
    SRTPKeyNegotiation,
    STUNServerAddress,
    STUNServerAddressList,
    XCAPRoot,
    state_of,
)

SAMPLES = {
    "sip_address": (SIPAddress, SIPAddress("alice+x@sip.example.com")),
    "port": (Port, Port(65535)),
    "port_range": (PortRange, PortRange(50000, 50500)),
    "hostname": (Hostname, Hostname("xcap.example.co.uk")),
    "hostname_ip6": (Hostname, Hostname("2001:db8::7")),
    "ip4": (IPAddress, IPAddress("192.0.2.44")),
    "ip6": (IPAddress, IPAddress("::1")),
    "sip_transport": (SIPTransport, SIPTransport("tls")),
    "sip_transport_list": (SIPTransportList, SIPTransportList(["tls", "udp"])),
    "empty_transport_list": (SIPTransportList, SIPTransportList([])),
    "audio_codec": (AudioCodec, AudioCodec("G722")),
    "audio_codec_list": (AudioCodecList, AudioCodecList(["PCMA", "opus"])),
    "sample_rate": (SampleRate, SampleRate(16000)),
    "srtp": (SRTPKeyNegotiation, SRTPKeyNegotiation("sdes_mandatory")),
    "msrp_transport": (MSRPTransport, MSRPTransport("tcp")),
    "msrp_model": (MSRPConnectionModel, MSRPConnectionModel("acm")),
    "msrp_relay": (MSRPRelayAddress, MSRPRelayAddress("relay.example.com", 2855, "tcp")),
    "msrp_relay_srv": (MSRPRelayAddress, MSRPRelayAddress("example.com")),
    "proxy": (SIPProxyAddress, SIPProxyAddress("2001:db8::1", 5061, "tls")),
    "proxy_bare": (SIPProxyAddress, SIPProxyAddress("proxy.example.com")),
    "stun": (STUNServerAddress, STUNServerAddress("stun.example.com")),
    "stun_list": (
        STUNServerAddressList,
        STUNServerAddressList(["stun.example.com", "[::1]:3479"]),
    ),
    "nameserver": (NameserverAddress, NameserverAddress("127.0.0.1", 5353)),
    "nameserver_list": (NameserverAddressList, NameserverAddressList(["::1", "10.0.0.1:53"])),
    "xcap_root": (XCAPRoot, XCAPRoot("https://xcap.example.com:8443/xcap-root/")),
    "path": (Path, Path("~/some dir/with, comma")),
    "non_negative": (NonNegativeInteger, NonNegativeInteger(0)),
    "positive": (PositiveInteger, PositiveInteger(3600)),
    "content_type": (ContentType, ContentType("message/cpim")),
    "content_type_list": (ContentTypeList, ContentTypeList(["text/*", "*"])),
    "flag": (bool, False),
    "text": (str, 'quote " backslash \\ newline \n unicode é'),
    "integer": (int, -17),
    "real": (float, 0.1),
}


class EveryType(SettingsObject):
    __id__ = "EveryType"


for _name, (_type, _value) in SAMPLES.items():
    setattr(EveryType, _name, Setting(type=_type, default=None, nillable=True))


def test_every_datatype_round_trips_through_a_file(tmp_path):
    path = tmp_path / "config"
    manager = ConfigurationManager()
    manager.start(FileBackend(path))
    try:
        everything = EveryType()
        for name, (_, value) in SAMPLES.items():
            setattr(everything, name, value)
        everything.save()
        assert manager.flush(timeout=5)
    finally:
        manager.stop()
    manager.start(FileBackend(path))
    try:
        loaded = EveryType()
        for name, (kind, value) in SAMPLES.items():
            assert getattr(loaded, name) == value, name
            assert type(getattr(loaded, name)) is type(value), name
            assert isinstance(getattr(loaded, name), kind)
        assert loaded.get_modified() == {}
    finally:
        manager.stop()


DATATYPE_SAMPLES = [
    sample for sample in SAMPLES.values() if sample[0] not in (bool, str, int, float)
]


@pytest.mark.parametrize(("kind", "value"), DATATYPE_SAMPLES)
def test_constructors_accept_their_stored_form(kind, value):
    assert kind(state_of(value)) == value


INVALID = [
    (SIPAddress, "alice"),
    (SIPAddress, "@example.com"),
    (SIPAddress, "alice@bad domain"),
    (Port, 65536),
    (Port, -1),
    (Port, "http"),
    (PortRange, "5000"),
    (PortRange, "0-10"),
    (PortRange, "20-10"),
    (PortRange, (1, 2, 3)),
    (Hostname, ""),
    (Hostname, "-bad.example.com"),
    (Hostname, "a..b"),
    (Hostname, "999.1.1.1"),
    (Hostname, "x" * 64 + ".com"),
    (IPAddress, "example.com"),
    (IPAddress, "1.2.3.256"),
    (SIPTransport, "sctp"),
    (SIPTransportList, ["udp", "udp"]),
    (AudioCodecList, ["opus", "speex"]),
    (SampleRate, 22050),
    (SRTPKeyNegotiation, "zrtp"),
    (MSRPTransport, "udp"),
    (MSRPConnectionModel, "direct"),
    (MSRPRelayAddress, "relay.example.com;transport=udp"),
    (MSRPRelayAddress, "relay.example.com:0"),
    (SIPProxyAddress, "proxy.example.com;lr=1"),
    (SIPProxyAddress, "[::1"),
    (STUNServerAddress, "stun.example.com;transport=udp"),
    (NameserverAddress, "dns.example.com"),
    (XCAPRoot, "ftp://xcap.example.com/"),
    (XCAPRoot, "https://xcap.example.com/?q=1"),
    (XCAPRoot, "https://bad host/"),
    (Path, ""),
    (NonNegativeInteger, -1),
    (PositiveInteger, 0),
    (ContentType, "text"),
    (ContentType, "*/plain"),
    (ContentTypeList, ["text/plain", "nonsense"]),
]


@pytest.mark.parametrize(("kind", "value"), INVALID)
def test_invalid_input_raises_value_error(kind, value):
    with pytest.raises(ValueError):
        kind(value)


def test_messages_list_the_allowed_values():
    with pytest.raises(ValueError, match="expected one of: opportunistic, sdes_optional"):
        SRTPKeyNegotiation("nope")
    with pytest.raises(ValueError, match="8000, 16000, 32000, 44100, 48000"):
        SampleRate(1)


def test_sip_address_parts():
    address = SIPAddress("alice@example.com")
    assert (address.username, address.domain) == ("alice", "example.com")
    assert address == "alice@example.com"


def test_choices_match_case_insensitively_and_keep_canonical_case():
    assert AudioCodecList("OPUS, pcmu") == ["opus", "PCMU"]
    assert SIPTransport("TLS") == "tls"


def test_endpoint_forms():
    relay = MSRPRelayAddress("[2001:db8::2]:2856;transport=tcp")
    assert (relay.host, relay.port, relay.transport) == ("2001:db8::2", 2856, "tcp")
    assert relay.to_state() == "[2001:db8::2]:2856;transport=tcp"
    assert MSRPRelayAddress("::1").to_state() == "[::1];transport=tls"
    assert MSRPRelayAddress("relay.example.com:2855", transport="tls") == MSRPRelayAddress(
        "relay.example.com", 2855
    )
    with pytest.raises(ValueError):
        MSRPRelayAddress("relay.example.com:2855", port=2856)
    proxy = SIPProxyAddress("proxy.example.com")
    assert (proxy.port, proxy.transport) == (None, None)
    assert STUNServerAddress("stun.example.com").port == 3478
    assert NameserverAddress("127.0.0.1").port == 53
    with pytest.raises(AttributeError):
        proxy.port = 5060


def test_port_range_forms():
    assert PortRange("100-200") == PortRange(100, 200) == PortRange((100, 200))
    assert tuple(PortRange(100, 200)) == (100, 200)
    assert {PortRange(1, 2), PortRange(1, 2)} == {PortRange(1, 2)}


def test_path_normalized_expands_the_home_directory(monkeypatch):
    monkeypatch.setenv("HOME", "/home/tester")
    assert Path("~/a/../b").normalized == "/home/tester/b"


hosts = st.one_of(
    st.ip_addresses().map(str),
    st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9](\.[a-z]{2,5}){1,2}", fullmatch=True),
)


@settings(max_examples=60, deadline=None)
@given(
    host=hosts,
    port=st.one_of(st.none(), st.integers(1, 65535)),
    transport=st.sampled_from(["udp", "tcp", "tls", None]),
)
def test_proxy_address_round_trips(host, port, transport):
    address = SIPProxyAddress(host, port, transport)
    assert SIPProxyAddress(address.to_state()) == address


@settings(max_examples=60, deadline=None)
@given(first=st.integers(1, 65535), second=st.integers(1, 65535))
def test_port_range_round_trips(first, second):
    low, high = sorted((first, second))
    assert PortRange(PortRange(low, high).to_state()) == PortRange(low, high)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["udp", "tcp", "tls"]), unique=True))
def test_transport_list_round_trips(values):
    transports = SIPTransportList(values)
    assert SIPTransportList(transports.to_state()) == transports


def test_composite_values_survive_pickling():
    """A RemoteSDK child sends notification data (settings values included) by pickle."""
    import pickle

    from sipsimple.configuration import datatypes

    values = [
        datatypes.PortRange(50000, 50500),
        datatypes.SIPProxyAddress("127.0.0.1:5060;transport=tcp"),
        datatypes.STUNServerAddress("127.0.0.1:3478"),
        datatypes.NameserverAddress("127.0.0.1:53"),
        datatypes.MSRPRelayAddress("127.0.0.1:2855;transport=tls"),
    ]
    for value in values:
        assert pickle.loads(pickle.dumps(value)) == value
