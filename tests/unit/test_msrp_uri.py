"""MSRP URIs: parsing, printing and RFC 4975 section 6.1 comparison."""

import pytest

from sipsimple.msrp import DEFAULT_PORT, MSRPURI, MSRPParseError


@pytest.mark.parametrize(
    "text",
    [
        "msrp://atlanta.example.com:7654/jshA7weztas;tcp",
        "msrps://alice@intra.example.com;tcp",
        "msrps://[2001:db8::1]:2855/abc+d=e/f;tcp;rank=3;x",
        "msrp://10.0.0.1:1/s;tcp",
    ],
)
def test_round_trip(text):
    uri = MSRPURI.parse(text)
    assert str(uri) == text
    assert MSRPURI.parse(str(uri)) == uri


def test_fields():
    uri = MSRPURI.parse("msrps://alice@[::1]:9892/98cjs;tcp;foo=bar")
    assert (uri.scheme, uri.user, uri.host, uri.port, uri.session_id, uri.transport) == (
        "msrps",
        "alice",
        "::1",
        9892,
        "98cjs",
        "tcp",
    )
    assert uri.use_tls
    assert uri.parameters == {"foo": "bar"}


def test_default_port_is_used_to_connect_but_not_in_comparison():
    bare = MSRPURI.parse("msrp://relay.example.com;tcp")
    explicit = MSRPURI.parse(f"msrp://relay.example.com:{DEFAULT_PORT};tcp")
    assert bare.port is None
    assert bare.effective_port == DEFAULT_PORT
    assert bare != explicit  # RFC 4975 6.1: an explicit port never equals an absent one


def test_comparison_rules():
    base = MSRPURI.parse("msrp://Host.Example.COM:1234/SessionID;tcp")
    assert base == MSRPURI.parse("MSRP://host.example.com:1234/SessionID;TCP")
    assert base == MSRPURI.parse("msrp://user@host.example.com:1234/SessionID;tcp;extra=1")
    assert base != MSRPURI.parse("msrp://host.example.com:1234/sessionid;tcp")
    assert base != MSRPURI.parse("msrps://host.example.com:1234/SessionID;tcp")
    assert base != MSRPURI.parse("msrp://host.example.com:1235/SessionID;tcp")
    assert base != MSRPURI.parse("msrp://host.example.com:1234;tcp")
    assert base != MSRPURI.parse("msrp://host.example.com:1234/SessionID;sctp")
    assert hash(base) == hash(MSRPURI.parse("msrp://HOST.example.com:1234/SessionID;tcp"))


def test_ip_addresses_compare_as_addresses():
    assert MSRPURI.parse("msrp://[2001:DB8::1]:5/a;tcp") == MSRPURI.parse(
        "msrp://[2001:db8:0::1]:5/a;tcp"
    )


def test_percent_encoded_host_compares_decoded():
    assert MSRPURI.parse("msrp://ex%61mple.com:5/a;tcp") == MSRPURI.parse(
        "msrp://example.com:5/a;tcp"
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sip://example.com:5/a;tcp",
        "msrp://example.com:5/a",
        "msrp://example.com:99999/a;tcp",
        "msrp://example.com:5/a;",
        "msrp://[zz::1]:5/a;tcp",
        "msrp://exa mple.com:5/a;tcp",
        "msrp://example.com:5/a;tcp;bad param",
        "msrp:/example.com/a;tcp",
    ],
)
def test_invalid(text):
    with pytest.raises(MSRPParseError):
        MSRPURI.parse(text)


def test_constructed_uri():
    uri = MSRPURI("192.0.2.5", 2855, "s1", use_tls=True)
    assert str(uri) == "msrps://192.0.2.5:2855/s1;tcp"
    with pytest.raises(MSRPParseError):
        MSRPURI("bad host")
