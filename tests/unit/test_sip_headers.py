"""Typed header classes: parse, body, new() between the forms, properties, errors."""

from __future__ import annotations

import pickle

import pytest

from sipsimple.core.errors import SIPParseError
from sipsimple.core.sip.grammar import frozendict, quote_string, split_commas, unquote_string
from sipsimple.core.sip.headers import (
    ContactHeader,
    ContentTypeHeader,
    CSeq,
    EventHeader,
    FromHeader,
    FrozenContactHeader,
    FrozenContentTypeHeader,
    FrozenEventHeader,
    FrozenFromHeader,
    FrozenHeader,
    FrozenReasonHeader,
    FrozenRecordRouteHeader,
    FrozenReferToHeader,
    FrozenReplacesHeader,
    FrozenRetryAfterHeader,
    FrozenRouteHeader,
    FrozenSubjectHeader,
    FrozenSubscriptionStateHeader,
    FrozenToHeader,
    FrozenViaHeader,
    FrozenWarningHeader,
    Header,
    ReasonHeader,
    RecordRouteHeader,
    ReferToHeader,
    ReplacesHeader,
    RetryAfterHeader,
    RouteHeader,
    SubjectHeader,
    SubscriptionStateHeader,
    ToHeader,
    ViaHeader,
    WarningHeader,
)
from sipsimple.core.sip.uri import SIPURI, FrozenSIPURI, OpaqueURI


def test_name_addr_with_display_name_and_params() -> None:
    header = FrozenFromHeader.parse(
        '"Alice \\"A\\" Smith" <sip:alice@example.com;transport=tcp>;tag=88sja8x;x'
    )
    assert header.display_name == 'Alice "A" Smith'
    assert header.uri == FrozenSIPURI("example.com", "alice", parameters={"transport": "tcp"})
    assert header.parameters == {"tag": "88sja8x", "x": None}
    assert header.tag == "88sja8x"
    assert (
        str(header)
        == 'From: "Alice \\"A\\" Smith" <sip:alice@example.com;transport=tcp>;tag=88sja8x;x'
    )


def test_addr_spec_parameters_belong_to_the_header() -> None:
    header = FrozenToHeader.parse("sip:bob@example.com;tag=1;user=phone")
    assert header.uri.parameters == {}
    assert header.parameters == {"tag": "1", "user": "phone"}
    assert header.display_name is None


def test_token_display_names_and_case_insensitive_parameters() -> None:
    header = FrozenToHeader.parse("Bob  Smith <sip:bob@example.com>;TAG=abc")
    assert header.display_name == "Bob  Smith" and header.tag == "abc"
    assert FrozenToHeader.parse("<sip:bob@example.com>").tag is None


def test_mutable_and_frozen_conversions() -> None:
    mutable = FromHeader(SIPURI("example.com", "alice"), "Alice", {"tag": "1"})
    frozen = FrozenFromHeader.new(mutable)
    assert isinstance(frozen.uri, FrozenSIPURI) and isinstance(frozen.parameters, frozendict)
    assert frozen == mutable and hash(frozen) == hash(FrozenFromHeader.new(frozen))
    back = FromHeader.new(frozen)
    assert isinstance(back.uri, SIPURI)
    back.tag = "2"
    back.uri.user = "bob"
    back.display_name = None
    assert back.body == "<sip:bob@example.com>;tag=2"
    assert frozen.tag == "1"
    back.tag = None
    assert back.parameters == {}
    with pytest.raises(AttributeError):
        frozen.display_name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        FrozenToHeader.new(frozen)
    assert pickle.loads(pickle.dumps(frozen)) == frozen


def test_headers_built_from_text_uris_and_frozen_uris() -> None:
    assert FrozenToHeader("sip:bob@example.com").uri == FrozenSIPURI("example.com", "bob")
    route = RouteHeader(FrozenSIPURI.parse("sip:proxy.example.com;lr"))
    assert isinstance(route.uri, SIPURI)
    route.uri = FrozenSIPURI.parse("sip:other.example.com;lr")
    assert isinstance(route.uri, SIPURI) and route.body == "<sip:other.example.com;lr>"
    assert str(RecordRouteHeader("sip:p.example.com;lr")) == "Record-Route: <sip:p.example.com;lr>"
    assert FrozenRouteHeader.parse("<sip:p;lr>") == FrozenRouteHeader.new(RouteHeader("sip:p;lr"))
    assert FrozenRecordRouteHeader.parse("<sip:p;lr>") != FrozenRouteHeader.parse("<sip:p;lr>")
    with pytest.raises(ValueError, match="CR or LF"):
        FromHeader("sip:a@b", "evil\r\nVia: x")


def test_display_names_are_quoted_when_written() -> None:
    header = ToHeader(SIPURI("example.com", "u"), 'A \\ "B" \x07')
    assert header.body == '"A \\\\ \\"B\\" \\\x07" <sip:u@example.com>'
    assert FrozenToHeader.parse(header.body).display_name == header.display_name
    assert quote_string("plain") == '"plain"'
    assert unquote_string('"a\\"b"') == 'a"b'


def test_contact_properties_and_wildcard() -> None:
    contact = FrozenContactHeader.parse(
        '<sip:alice@192.0.2.1:5060>;q=0.7;expires=3600;+sip.instance="<urn:uuid:1>"'
    )
    assert contact.q == 0.7 and contact.expires == 3600
    assert contact.parameters["+sip.instance"] == '"<urn:uuid:1>"'
    star = FrozenContactHeader.parse(" * ")
    assert star.is_wildcard and star.uri is None and star.body == "*"
    assert ContactHeader(None).body == "*"
    mutable = ContactHeader("sip:a@b")
    mutable.q = 1.0
    mutable.expires = 60
    assert mutable.body == "<sip:a@b>;q=1;expires=60"
    mutable.q = 0.125
    assert mutable.parameters["q"] == "0.125"
    with pytest.raises(SIPParseError, match="q parameter"):
        _ = FrozenContactHeader.parse("<sip:a@b>;q=2").q
    with pytest.raises(SIPParseError, match="expires"):
        _ = FrozenContactHeader.parse("<sip:a@b>;expires=280297596632815").expires


def test_refer_to_with_embedded_replaces() -> None:
    refer_to = FrozenReferToHeader.parse(
        "<sip:bob@example.com?Replaces=12345%40192.168.1.1%3Bto-tag%3D1%3Bfrom-tag%3D2>"
    )
    replaces = FrozenReplacesHeader.parse(refer_to.uri.headers["Replaces"])
    assert (replaces.call_id, replaces.to_tag, replaces.from_tag) == ("12345@192.168.1.1", "1", "2")
    assert ReferToHeader("sip:bob@example.com").body == "<sip:bob@example.com>"
    assert isinstance(FrozenReferToHeader.parse("<tel:+15551234>").uri, OpaqueURI)


def test_via() -> None:
    via = FrozenViaHeader.parse(
        "SIP/2.0/udp [2001:db8::1]:5060;branch=z9hG4bK1;received=192.0.2.1"
        ";rport=5061;ttl=5;maddr=224.0.0.1"
    )
    assert (via.protocol, via.transport, via.host, via.port) == (
        "SIP/2.0",
        "UDP",
        "2001:db8::1",
        5060,
    )
    assert (via.branch, via.received, via.rport, via.ttl, via.maddr) == (
        "z9hG4bK1",
        "192.0.2.1",
        5061,
        5,
        "224.0.0.1",
    )
    assert FrozenViaHeader.parse("SIP/2.0/TCP h;rport").rport is True
    assert FrozenViaHeader.parse("SIP/2.0/TCP h").rport is None
    built = ViaHeader("tls", "::1", 5061, {"branch": "z9hG4bKa"})
    built.rport = True
    built.received = "::1"
    assert built.body == "SIP/2.0/TLS [::1]:5061;branch=z9hG4bKa;rport;received=::1"
    built.rport = 4000
    assert built.rport == 4000
    assert FrozenViaHeader.new(built) == FrozenViaHeader.parse(built.body)
    with pytest.raises(SIPParseError, match="invalid Via header"):
        FrozenViaHeader.parse("SIP/2.0/UDP host, SIP/2.0/UDP other")
    with pytest.raises(SIPParseError, match="ttl"):
        _ = FrozenViaHeader.parse("SIP/2.0/UDP h;ttl=256").ttl
    with pytest.raises(ValueError, match="port"):
        ViaHeader("UDP", "h", 0)


def test_content_type() -> None:
    header = FrozenContentTypeHeader.parse(
        'Multipart/Mixed ; boundary="simple boundary";charset=utf-8'
    )
    assert (header.type, header.subtype, header.content_type) == (
        "multipart",
        "mixed",
        "multipart/mixed",
    )
    assert header.boundary == "simple boundary" and header.charset == "utf-8"
    built = ContentTypeHeader("text/plain", {"charset": "utf-8"})
    assert str(built) == "Content-Type: text/plain;charset=utf-8"
    assert FrozenContentTypeHeader.new(built) == FrozenContentTypeHeader.parse(
        "text/plain;charset=utf-8"
    )
    with pytest.raises(SIPParseError, match="invalid Content-Type header"):
        FrozenContentTypeHeader.parse("text")
    with pytest.raises(ValueError, match="content type"):
        ContentTypeHeader("text/")


def test_warning() -> None:
    warning = FrozenWarningHeader.parse('307 isi.edu "Session parameter \\"foo\\" not understood"')
    assert (warning.code, warning.agent, warning.text) == (
        307,
        "isi.edu",
        'Session parameter "foo" not understood',
    )
    assert WarningHeader(399, "ua.example.com", 'a "b"').body == '399 ua.example.com "a \\"b\\""'
    with pytest.raises(SIPParseError, match="invalid Warning header"):
        FrozenWarningHeader.parse('1812 overture "In Progress"')


def test_event_and_subscription_state() -> None:
    event = FrozenEventHeader.parse("presence.winfo;id=12")
    assert (event.event, event.id) == ("presence.winfo", "12")
    built = EventHeader("dialog")
    built.id = "x"
    built.event = "refer"
    assert built.body == "refer;id=x"
    state = FrozenSubscriptionStateHeader.parse(
        "terminated;reason=timeout;retry-after=30;expires=0"
    )
    assert (state.state, state.reason, state.retry_after, state.expires) == (
        "terminated",
        "timeout",
        30,
        0,
    )
    built_state = SubscriptionStateHeader("active", {"expires": "600"})
    built_state.expires = 300
    assert str(built_state) == "Subscription-State: active;expires=300"
    assert FrozenSubscriptionStateHeader.new(built_state).expires == 300
    with pytest.raises(ValueError, match="invalid event"):
        EventHeader("bad event")


def test_reason() -> None:
    reason = FrozenReasonHeader.parse('Q.850;cause=16;text="Terminated"')
    assert (reason.protocol, reason.cause, reason.text) == ("Q.850", 16, "Terminated")
    built = ReasonHeader("SIP")
    built.cause = 200
    built.text = 'Call completed "elsewhere"'
    assert built.body == 'SIP;cause=200;text="Call completed \\"elsewhere\\""'
    assert FrozenReasonHeader.parse(built.body).text == 'Call completed "elsewhere"'


def test_subject_replaces_retry_after() -> None:
    assert FrozenSubjectHeader.parse("  Need more boxes  ").subject == "Need more boxes"
    assert SubjectHeader("").body == ""
    replaces = FrozenReplacesHeader.parse(
        "98732@sip.example.com;from-tag=r33th4x0r;to-tag=ff87ff;early-only"
    )
    assert (replaces.call_id, replaces.from_tag, replaces.to_tag, replaces.early_only) == (
        "98732@sip.example.com",
        "r33th4x0r",
        "ff87ff",
        True,
    )
    assert (
        ReplacesHeader.new(replaces).body
        == "98732@sip.example.com;from-tag=r33th4x0r;to-tag=ff87ff;early-only"
    )
    with pytest.raises(SIPParseError, match="to-tag are required"):
        FrozenReplacesHeader.parse("abc;from-tag=1")
    retry = FrozenRetryAfterHeader.parse("18000 (Unavailable \\(meeting\\)) ;duration=3600")
    assert (retry.seconds, retry.comment, retry.duration) == (18000, "Unavailable (meeting)", 3600)
    assert RetryAfterHeader(120, "I'm (busy)").body == "120 (I'm \\(busy\\))"
    with pytest.raises(SIPParseError):
        FrozenRetryAfterHeader.parse("949302838503028349304023988")


def test_cseq() -> None:
    cseq = CSeq.parse(" 0009 \t INVITE ")
    assert cseq == (9, "INVITE") and cseq.number == 9 and str(cseq) == "9 INVITE" == cseq.body
    for bad in ("INVITE", "1", "-1 INVITE", "4294967296 INVITE", "1 IN VITE"):
        with pytest.raises(SIPParseError, match="CSeq"):
            CSeq.parse(bad)


def test_generic_header() -> None:
    header = Header("X-Custom", "  value ")
    assert (header.name, header.body) == ("X-Custom", "  value ")
    frozen = FrozenHeader.new(header)
    assert frozen == Header("x-custom", "  value ") and hash(frozen) == hash(
        FrozenHeader("X-CUSTOM", "  value ")
    )
    assert str(FrozenHeader.parse("X-Other :  a, b ")) == "X-Other: a, b"
    header.body = "new"
    header.name = "X-New"
    assert str(header) == "X-New: new"
    with pytest.raises(ValueError, match="header name"):
        Header("Bad Name", "x")
    with pytest.raises(ValueError, match="CR or LF"):
        Header("X", "a\r\nb")
    with pytest.raises(SIPParseError):
        FrozenHeader.parse("no colon here")
    with pytest.raises(AttributeError):
        frozen.body = "x"  # type: ignore[misc]


def test_split_commas_respects_quotes_and_brackets() -> None:
    assert split_commas('"a, b" <sip:x>, <sip:y;p=",">, ,z') == [
        '"a, b" <sip:x>',
        '<sip:y;p=",">',
        "z",
    ]
    assert split_commas("  ") == []


@pytest.mark.parametrize(
    ("cls", "text", "what"),
    [
        (FrozenFromHeader, '"unterminated <sip:a@b>', "From"),
        (FrozenFromHeader, "Bell, Alexander <sip:a@b>", "From"),
        (FrozenToHeader, "< sip:a@b >", "To"),
        (FrozenToHeader, "<sip:a@b>;;tag=1", "To"),
        (FrozenToHeader, "<sip:a@>", "To"),
        (FrozenContactHeader, "sip:a@b?x=y", "Contact"),
        (FrozenSubscriptionStateHeader, "active;;", "Subscription-State"),
        (FrozenEventHeader, "", "Event"),
    ],
)
def test_invalid_values_say_which_header(cls: type, text: str, what: str) -> None:
    with pytest.raises(SIPParseError, match=f"invalid {what} header"):
        cls.parse(text)  # type: ignore[attr-defined]
