"""SIPURI, FrozenSIPURI and OpaqueURI: parsing, serializing, RFC 3261 section 19.1.4 comparison."""

from __future__ import annotations

import pickle

import pytest

from sipsimple.core.errors import SIPParseError
from sipsimple.core.sip.uri import SIPURI, FrozenSIPURI, OpaqueURI, is_valid_uri, parse_uri


def test_parse_all_components() -> None:
    uri = SIPURI.parse(
        "sips:alice:secret@Example.COM:5061;transport=tcp;lr;maddr=239.255.255.1?subject=hi%20there&x=1"
    )
    assert uri.secure is True
    assert (uri.user, uri.password, uri.host, uri.port) == ("alice", "secret", "Example.COM", 5061)
    assert uri.parameters == {"transport": "tcp", "lr": None, "maddr": "239.255.255.1"}
    assert uri.headers == {"subject": "hi there", "x": "1"}
    assert uri.transport == "tcp"


def test_defaults_and_transport_property() -> None:
    uri = SIPURI("example.com")
    assert (uri.user, uri.password, uri.port, uri.secure) == (None, None, None, False)
    assert uri.transport == "udp" and str(uri) == "sip:example.com"
    uri.transport = "TLS"
    assert uri.parameters == {"transport": "TLS"} and uri.transport == "tls"
    uri.transport = "udp"
    assert uri.parameters == {}


def test_str_escapes_what_the_grammar_needs() -> None:
    uri = SIPURI(
        "example.com", user="I have spaces@home", password="p:w", parameters={"n me": "v;a%l"}
    )
    text = str(uri)
    assert text == "sip:I%20have%20spaces%40home:p%3Aw@example.com;n%20me=v%3Ba%25l"
    assert SIPURI.parse(text) == uri
    assert SIPURI.parse(text).user == "I have spaces@home"


def test_user_may_hold_the_characters_the_grammar_allows() -> None:
    uri = FrozenSIPURI.parse("sip:+1-555;phone-context=x?y@example.com")
    assert uri.user == "+1-555;phone-context=x?y"
    assert str(SIPURI.new(uri)) == "sip:+1-555;phone-context=x?y@example.com"


def test_non_utf8_escapes_survive_a_round_trip() -> None:
    uri = SIPURI.parse("sip:%ff%00@example.com")
    assert str(uri) == "sip:%FF%00@example.com"


def test_ipv6_hosts() -> None:
    uri = FrozenSIPURI.parse("sip:bob@[2001:DB8::1]:5060")
    assert uri.host == "2001:DB8::1" and uri.port == 5060
    assert str(SIPURI.new(uri)) == "sip:bob@[2001:DB8::1]:5060"
    assert SIPURI("[::1]").host == "::1"
    assert str(SIPURI("::1", port=5070)) == "sip:[::1]:5070"
    assert FrozenSIPURI("2001:db8:0:0::1") == FrozenSIPURI.parse("sip:[2001:db8::1]")


def test_frozen_is_immutable_hashable_and_keeps_its_text() -> None:
    text = "SIP:Alice@Example.com;Transport=TCP"
    uri = FrozenSIPURI.parse(text)
    assert str(uri) == text
    with pytest.raises(AttributeError):
        uri.host = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        uri.parameters["x"] = "y"
    assert hash(uri) == hash(FrozenSIPURI.parse("sip:Alice@example.com;transport=tcp"))
    assert {uri: 1}[FrozenSIPURI("EXAMPLE.com", "Alice", parameters={"transport": "tcp"})] == 1


def test_new_converts_both_ways() -> None:
    mutable = SIPURI("example.com", "bob", port=5062, parameters={"lr": None}, headers={"a": "b"})
    frozen = FrozenSIPURI.new(mutable)
    assert isinstance(frozen, FrozenSIPURI) and frozen == mutable
    again = SIPURI.new(frozen)
    again.parameters["x"] = "1"
    assert frozen.parameters == {"lr": None}
    assert pickle.loads(pickle.dumps(frozen)) == frozen
    with pytest.raises(TypeError):
        FrozenSIPURI.new("sip:x")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("a", "b"),
    [  # equivalent pairs from RFC 3261 section 19.1.4
        ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
        ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
        (
            "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
            "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
        ),
        (
            "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
            "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
        ),
    ],
)
def test_equivalent_uris(a: str, b: str) -> None:
    assert FrozenSIPURI.parse(a) == FrozenSIPURI.parse(b)
    assert SIPURI.parse(a) == FrozenSIPURI.parse(b)
    assert hash(FrozenSIPURI.parse(a)) == hash(FrozenSIPURI.parse(b))


@pytest.mark.parametrize(
    ("a", "b"),
    [  # non-equivalent pairs from RFC 3261 section 19.1.4, and the parameter rules
        ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
        ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
        ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
        ("sip:a@b", "sips:a@b"),
        ("sip:a@b", "sip:a@b;maddr=10.0.0.1"),
        ("sip:a@b", "sip:a@b;user=phone"),
        ("sip:a:x@b", "sip:a:y@b"),
    ],
)
def test_non_equivalent_uris(a: str, b: str) -> None:
    assert FrozenSIPURI.parse(a) != FrozenSIPURI.parse(b)


def test_a_parameter_repeated_in_another_case_still_equals_itself() -> None:
    uri = FrozenSIPURI.parse("sip:0.0.0.0;t;T=")  # found by the round-trip property
    assert uri == uri and uri == FrozenSIPURI.parse("sip:0.0.0.0;t;T=")
    assert SIPURI.parse("sip:h;X=1;x=2") == FrozenSIPURI.parse("sip:h;x=2")


def test_matches_compares_only_what_the_pattern_gives() -> None:
    uri = FrozenSIPURI.parse("sip:alice@example.com:5070;transport=tcp;lr")
    assert uri.matches("alice@example.com")
    assert uri.matches("sip:alice@EXAMPLE.com:5070")
    assert uri.matches("alice@example.com;transport=TCP")
    assert not uri.matches("sips:alice@example.com")
    assert not uri.matches("bob@example.com")
    assert not uri.matches("alice@example.com:5060")
    assert not uri.matches("alice@example.com;maddr=1.2.3.4")
    assert not uri.matches("not a uri")


@pytest.mark.parametrize(
    "text",
    [
        "sip:",
        "sip:@example.com",
        "sip:alice@",
        "sip:alice@exa mple.com",
        "sip:alice@example.com:0",
        "sip:alice@example.com:65536",
        "sip:alice@example.com;;lr",
        "sip:alice@example.com;=x",
        "sip:alice@example.com?noequals",
        "sip:alice@[::1",
        "sip:2001:db8::10",
        "<sip:alice@example.com>",
    ],
)
def test_invalid_sip_uris(text: str) -> None:
    with pytest.raises(SIPParseError, match="invalid"):
        SIPURI.parse(text)
    assert not is_valid_uri(text)


def test_constructor_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="host"):
        SIPURI("")
    with pytest.raises(ValueError, match="host"):
        SIPURI("a b")
    with pytest.raises(ValueError, match="port"):
        SIPURI("example.com", port=70000)
    with pytest.raises(ValueError, match="CR or LF"):
        SIPURI("example.com", user="a\r\nVia: x")


def test_opaque_uris() -> None:
    tel = parse_uri("tel:+1-201-555-0123;phone-context=example.com")
    assert isinstance(tel, OpaqueURI)
    assert (tel.scheme, tel.rest) == ("tel", "+1-201-555-0123;phone-context=example.com")
    assert str(tel) == "tel:+1-201-555-0123;phone-context=example.com"
    assert tel == OpaqueURI("TEL", "+1-201-555-0123;phone-context=example.com")
    assert hash(tel) == hash(OpaqueURI("TEL", "+1-201-555-0123;phone-context=example.com"))
    assert tel != parse_uri("tel:+1-201-555-0124")
    assert isinstance(parse_uri("sips:a@b"), FrozenSIPURI)
    assert isinstance(parse_uri("sipx:a@b"), OpaqueURI)
    with pytest.raises(AttributeError):
        tel.rest = "x"  # type: ignore[misc]
    with pytest.raises(SIPParseError):
        parse_uri("no scheme")
    assert pickle.loads(pickle.dumps(tel)) == tel
