"""SIP messages: parsing, the header mapping, typed access, building and serializing."""

from __future__ import annotations

import pytest

from sipsimple.core import (
    MalformedSIPMessageError,
    SIPHeaders,
    SIPParseError,
    SIPRequest,
    SIPResponse,
    parse_message,
)
from sipsimple.core.sip.headers import (
    ContactHeader,
    CSeq,
    FromHeader,
    FrozenContentTypeHeader,
    FrozenEventHeader,
    FrozenHeader,
    ToHeader,
    ViaHeader,
)
from sipsimple.core.sip.uri import SIPURI, FrozenSIPURI

INVITE = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@example.com>\r\n"
    b'From: "Alice" <sip:alice@example.com>;tag=1928301774\r\n'
    b"Call-ID: a84b4c76e66710@192.0.2.1\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@192.0.2.1>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)


def with_headers(*lines: str, body: bytes = b"") -> bytes:
    start = [
        "OPTIONS sip:bob@example.com SIP/2.0",
        "Via: SIP/2.0/UDP h;branch=z9hG4bK1",
        "From: <sip:a@example.com>;tag=1",
        "To: <sip:bob@example.com>",
        "Call-ID: c1",
        "CSeq: 1 OPTIONS",
    ]
    return ("\r\n".join([*start, *lines]) + "\r\n\r\n").encode() + body


def test_parse_invite() -> None:
    m = parse_message(INVITE)
    assert isinstance(m, SIPRequest)
    assert (m.method, str(m.request_uri), m.version) == ("INVITE", "sip:bob@example.com", "SIP/2.0")
    assert (
        m.top_via.branch == "z9hG4bK776asdhds"
        and m.top_via.rport is True
        and m.top_via.port == 5060
    )
    assert m.from_header.tag == "1928301774" and m.to_header.tag is None  # type: ignore[union-attr]
    assert (m.call_id, m.cseq, m.max_forwards, m.content_length) == (
        "a84b4c76e66710@192.0.2.1",
        (314159, "INVITE"),
        70,
        4,
    )
    assert m.contact[0].uri == FrozenSIPURI("192.0.2.1", "alice")
    assert m.route == [] and m.record_route == [] and m.expires is None and m.allow == []
    assert m.content_type.content_type == "application/sdp"  # type: ignore[union-attr]
    assert m.body == b"v=0\n"


def test_parse_response() -> None:
    data = INVITE.replace(b"INVITE sip:bob@example.com SIP/2.0", b"SIP/2.0 180 Ringing").replace(
        b"Max-Forwards: 70\r\n", b""
    )
    m = parse_message(data)
    assert isinstance(m, SIPResponse) and (m.code, m.reason) == (180, "Ringing")
    assert m.max_forwards is None


def test_header_mapping_semantics() -> None:
    m = parse_message(
        with_headers(
            "v: SIP/2.0/TCP second;branch=z9hG4bK2, SIP/2.0/TCP third;branch=z9hG4bK3",
            "SUPPORTED: timer",
            "k: replaces, 100rel",
            "X-Custom:  raw ,value ",
            "x-custom: again",
        )
    )
    headers = m.headers
    assert headers.getall("via") == [
        "SIP/2.0/UDP h;branch=z9hG4bK1",
        "SIP/2.0/TCP second;branch=z9hG4bK2",
        "SIP/2.0/TCP third;branch=z9hG4bK3",
    ]
    assert [v.host for v in m.via] == ["h", "second", "third"]
    assert m.supported == ["timer", "replaces", "100rel"]
    assert headers.get("i") == "c1" and headers["CALL-ID"] == "c1" and "call-id" in headers
    assert headers.getall("X-Custom") == ["raw ,value", "again"]  # unknown: never split
    assert headers.get("Missing") is None and headers.get("Missing", "d") == "d"
    with pytest.raises(KeyError):
        headers["Missing"]
    assert list(headers)[:3] == ["Via", "From", "To"] and "X-Custom" in list(headers)
    assert ("Supported", "100rel") in headers.items()
    headers.set("X-Custom", "one")
    headers.add("x-custom", "zero", first=True)
    assert headers.getall("X-CUSTOM") == ["zero", "one"]
    del headers["x-custom"]
    assert "X-Custom" not in headers
    with pytest.raises(KeyError):
        del headers["x-custom"]
    with pytest.raises(ValueError, match="CR or LF"):
        headers.add("X-Evil", "a\r\nVia: b")
    with pytest.raises(ValueError, match="invalid header name"):
        headers.add("Bad Name", "x")
    with pytest.raises(TypeError):
        headers.add("X-Thing", object())


def test_changing_headers_drops_the_cached_typed_values() -> None:
    m = parse_message(INVITE)
    assert m.top_via.branch == "z9hG4bK776asdhds"
    m.headers.set("Via", ViaHeader("TCP", "other.example.com", parameters={"branch": "z9hG4bKnew"}))
    assert m.top_via.branch == "z9hG4bKnew" and m.top_via.transport == "TCP"
    m.headers.add("Via", "SIP/2.0/UDP first;branch=z9hG4bK0", first=True)
    assert [v.host for v in m.via] == ["first", "other.example.com"]


def test_unfolding_and_whitespace() -> None:
    m = parse_message(with_headers("Subject: first\r\n  second\r\n\tthird", "X-A:value"))
    assert m.headers.get("Subject") == "first  second\tthird"
    assert m.headers.get("X-A") == "value"


def test_eager_headers_are_validated_at_parse() -> None:
    cases = {
        "missing Via header": INVITE.replace(
            b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport\r\n", b""
        ),
        "missing Call-ID header": INVITE.replace(b"Call-ID: a84b4c76e66710@192.0.2.1\r\n", b""),
        "missing CSeq header": INVITE.replace(b"CSeq: 314159 INVITE\r\n", b""),
        "invalid Max-Forwards header": INVITE.replace(b"Max-Forwards: 70", b"Max-Forwards: 256"),
        "invalid Call-ID header": INVITE.replace(
            b"Call-ID: a84b4c76e66710@192.0.2.1", b"Call-ID: a b"
        ),
        "multiple To headers": INVITE.replace(b"To: Bob", b"To: <sip:x@y>\r\nTo: Bob"),
        "invalid From header": INVITE.replace(b"From: ", b"From: ;"),
        "invalid Via header": INVITE.replace(b"SIP/2.0/UDP 192.0.2.1:5060", b"SIP/2.0 192.0.2.1"),
    }
    for text, data in cases.items():
        with pytest.raises(MalformedSIPMessageError, match=text):
            parse_message(data)


def test_other_headers_fail_only_when_read() -> None:
    m = parse_message(
        with_headers("Contact: <sip:a@b>;;", "Expires: soon", "Content-Type: sdp", "Event: a b")
    )
    for reader in (
        lambda: m.contact,
        lambda: m.expires,
        lambda: m.content_type,
        lambda: m.get_header("Event"),
    ):
        with pytest.raises(SIPParseError, match="invalid"):
            reader()
    assert m.cseq == (1, "OPTIONS")  # everything else is usable
    shown = m.header_dict()
    assert shown["Contact"] == FrozenHeader("Contact", "<sip:a@b>;;")
    assert shown["Expires"] == FrozenHeader("Expires", "soon")


def test_framing_errors_of_a_datagram() -> None:
    with pytest.raises(SIPParseError, match="not valid UTF-8"):
        parse_message(INVITE.replace(b"Bob", b"B\xffb"))
    with pytest.raises(SIPParseError, match="no empty line"):
        parse_message(INVITE.split(b"\r\n\r\n")[0])
    with pytest.raises(SIPParseError, match="invalid header line"):
        parse_message(with_headers("no colon"))
    with pytest.raises(SIPParseError, match="invalid header name"):
        parse_message(with_headers("Bad Name: x"))
    with pytest.raises(SIPParseError, match="CR that does not end a line"):
        parse_message(with_headers("X-A: a\rb"))
    with pytest.raises(TypeError):
        parse_message("text")  # type: ignore[arg-type]


def test_body_handling() -> None:
    data = with_headers("Content-Length: 3", body=b"abcdef")
    assert parse_message(data).body == b"abc"  # the rest of a datagram is noise
    assert parse_message(with_headers(body=b"\x00\xffbinary")).body == b"\x00\xffbinary"
    assert parse_message(bytearray(b"\r\n\r\n" + data)).body == b"abc"  # leading CRLFs skipped


def test_bare_lf_line_endings_are_accepted() -> None:
    m = parse_message(INVITE.replace(b"\r\n", b"\n"))
    assert m.call_id == "a84b4c76e66710@192.0.2.1" and m.body == b"v=0\n"


def test_build_request_and_serialize() -> None:
    request = SIPRequest(
        "MESSAGE",
        SIPURI("example.com", "bob"),
        headers=[
            ("Via", ViaHeader("UDP", "192.0.2.1", 5060, {"branch": "z9hG4bKabc", "rport": None})),
            ("Max-Forwards", 70),
            ("From", FromHeader(SIPURI("example.com", "alice"), "Alice", {"tag": "t1"})),
            ("To", ToHeader(SIPURI("example.com", "bob"))),
            ("Call-ID", "cid@host"),
            ("CSeq", CSeq(1, "MESSAGE")),
            ("Content-Type", "text/plain"),
            ("Content-Length", "999"),
        ],
        body="héllo".encode(),
    )
    assert bytes(request) == (
        b"MESSAGE sip:bob@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport\r\n"
        b"Max-Forwards: 70\r\n"
        b'From: "Alice" <sip:alice@example.com>;tag=t1\r\n'
        b"To: <sip:bob@example.com>\r\n"
        b"Call-ID: cid@host\r\n"
        b"CSeq: 1 MESSAGE\r\n"
        b"Content-Type: text/plain\r\n"
        b"Content-Length: 6\r\n"
        b"\r\n" + "héllo".encode()
    )
    parsed = parse_message(bytes(request))
    assert parsed == request
    assert parsed.from_header == FromHeader(SIPURI("example.com", "alice"), "Alice", {"tag": "t1"})
    assert request.top_via.branch == "z9hG4bKabc"  # typed views of built messages work too
    with pytest.raises(ValueError, match="invalid method"):
        SIPRequest("BAD METHOD", "sip:x@y")
    with pytest.raises(TypeError):
        SIPRequest("X", "sip:x@y", body="text")  # type: ignore[arg-type]


def test_compact_and_unknown_names_are_written_canonically() -> None:
    m = parse_message(with_headers("k: timer", "x-Odd-NAME: 1", "l: 0"))
    text = bytes(m)
    assert b"\r\nSupported: timer\r\n" in text and b"\r\nx-Odd-NAME: 1\r\n" in text
    assert text.endswith(b"\r\nContent-Length: 0\r\n\r\n")


def test_make_response() -> None:
    request = parse_message(INVITE)
    assert isinstance(request, SIPRequest)
    response = request.make_response(
        200,
        to_tag="as83kd",
        headers=[("Contact", ContactHeader("sip:bob@192.0.2.2"))],
        body=b"v=0\r\n",
    )
    assert (response.code, response.reason) == (200, "OK")
    parsed = parse_message(bytes(response))
    assert parsed.to_header.tag == "as83kd"  # type: ignore[union-attr]
    assert parsed.top_via.branch == request.top_via.branch and parsed.cseq == request.cseq
    assert parsed.contact[0].uri.user == "bob" and parsed.body == b"v=0\r\n"
    assert SIPResponse(299).reason == "OK" and SIPResponse(477).reason == "Bad Request"
    tagged = parse_message(bytes(response))
    assert tagged.to_header.tag == "as83kd"  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        SIPResponse(700)
    with pytest.raises(ValueError):
        SIPResponse(200, "bad\r\nreason")


def test_header_dict_for_notifications() -> None:
    m = parse_message(
        with_headers(
            "Max-Forwards: 70",
            "Contact: <sip:a@192.0.2.1>;expires=60, <sip:a@192.0.2.2>",
            "Allow: INVITE, BYE",
            "Supported: timer",
            "Require: 100rel",
            "Expires: 60",
            "Event: presence;id=1",
            "Content-Type: application/pidf+xml",
            "User-Agent: test",
            "X-Twice: 1",
            "X-Twice: 2",
            "Content-Length: 0",
        )
    )
    shown = m.header_dict()
    assert shown["CSeq"] == (1, "OPTIONS") and shown["Call-ID"] == "c1"
    assert shown["Max-Forwards"] == 70 and shown["Expires"] == 60 and shown["Content-Length"] == 0
    assert [c.expires for c in shown["Contact"]] == [60, None]
    assert (
        shown["Allow"] == ["INVITE", "BYE"]
        and shown["Supported"] == ["timer"]
        and shown["Require"] == ["100rel"]
    )
    assert shown["Event"] == FrozenEventHeader("presence", {"id": "1"})
    assert isinstance(shown["Content-Type"], FrozenContentTypeHeader)
    assert shown["User-Agent"] == FrozenHeader("User-Agent", "test")
    assert shown["X-Twice"] == [FrozenHeader("X-Twice", "1"), FrozenHeader("X-Twice", "2")]
    assert [v.branch for v in shown["Via"]] == ["z9hG4bK1"]


def test_generic_typed_access() -> None:
    m = parse_message(with_headers("X-Thing: a", "Min-Expires: 1800", "Unsupported: foo"))
    assert m.get_header("x-thing") == FrozenHeader("X-Thing", "a")
    assert m.get_headers("X-Thing") == [FrozenHeader("X-Thing", "a")]
    assert m.get_header("X-None") is None
    assert m.min_expires == 1800 and m.unsupported == ["foo"]


def test_semantic_equality_ignores_header_order_and_content_length() -> None:
    a = parse_message(with_headers("X-A: 1", "X-B: 2", "Content-Length: 0"))
    b = parse_message(with_headers("X-B: 2", "X-A: 1"))
    assert a == b
    c = parse_message(with_headers("X-B: 2", "X-A: 9"))
    assert a != c
    assert a != parse_message(INVITE)


def test_values_shared_between_messages_cannot_leak_changes() -> None:
    first, second = parse_message(INVITE), parse_message(INVITE)
    assert first.top_via is second.top_via  # the same text: one shared Frozen value
    first.via.append(first.top_via)
    first.headers.set("Via", "SIP/2.0/TCP elsewhere;branch=z9hG4bKx")
    assert len(second.via) == 1 and second.top_via.host == "192.0.2.1"
    assert second.contact[0].uri == first.contact[0].uri


def test_memo_is_bounded() -> None:
    from sipsimple.core.sip.grammar import Memo

    class Small(Memo):
        limit = 3

    memo = Small()
    for n in range(10):
        memo.remember(str(n), n)
        assert len(memo) <= 3
    assert memo["9"] == 9


def test_folded_start_line_is_rejected() -> None:
    data = INVITE.replace(b"SIP/2.0\r\nVia", b"SIP/2.0\r\n continued\r\nVia")
    with pytest.raises(SIPParseError, match="invalid header line"):
        parse_message(data)


def _rebuilt(message: SIPRequest | SIPResponse) -> bytes:
    """bytes() of a copy that shares nothing cached with ``message``."""
    headers = message.headers.copy()
    if isinstance(message, SIPRequest):
        copy: SIPRequest | SIPResponse = SIPRequest(
            message.method, message.request_uri, headers, message.body, message.version
        )
    else:
        copy = SIPResponse(message.code, message.reason, headers, message.body, message.version)
    return bytes(copy)


CANONICAL = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Via: SIP/2.0/TCP proxy.example.com;branch=z9hG4bKp1\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Alice" <sip:alice@example.com>;tag=1928301774\r\n'
    b"To: <sip:bob@example.com>\r\n"
    b"Call-ID: a84b4c76e66710@192.0.2.1\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"X-Custom: kept as written\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)


def test_an_unchanged_parsed_message_gives_back_the_bytes_it_was_parsed_from() -> None:
    m = parse_message(CANONICAL)
    assert bytes(m) is CANONICAL and _rebuilt(m) == CANONICAL
    response = parse_message(bytes(SIPResponse(486, headers=m.headers.copy())))
    assert bytes(response) == _rebuilt(response)
    # what is cut off or skipped is not sent again
    assert bytes(parse_message(b"\r\n" + CANONICAL + b"noise")) == CANONICAL


@pytest.mark.parametrize(
    "data",
    [
        CANONICAL.replace(b"Via: SIP/2.0/UDP", b"v: SIP/2.0/UDP"),  # compact form
        CANONICAL.replace(b"X-Custom: kept", b"X-Custom:  kept"),  # two spaces
        CANONICAL.replace(b"X-Custom: kept", b"X-Custom : kept"),
        CANONICAL.replace(b"Max-Forwards: 70", b"max-forwards: 70"),
        CANONICAL.replace(b"as written", b"as\r\n written"),  # folded
        CANONICAL.replace(b"X-Custom", b"Via: SIP/2.0/UDP x;branch=z9hG4bK3\r\nX-Custom"),  # apart
        CANONICAL.replace(b"Content-Length: 4", b"Content-Length: 04"),
        CANONICAL.replace(b"Content-Length: 4\r\n", b"").replace(b"\r\n\r\n", b"\r\nL: 4\r\n\r\n"),
        CANONICAL.replace(b"X-Custom: kept as written\r\n", b"").replace(
            b"Content-Length: 4\r\n", b"Content-Length: 4\r\nX-Custom: kept as written\r\n"
        ),  # Content-Length not last
        CANONICAL.replace(b"Content-Length: 4\r\n", b""),  # no Content-Length
        CANONICAL.replace(b"SIP/2.0\r\nVia", b"sip/2.0\r\nVia"),
        CANONICAL.replace(b"\r\n", b"\n"),  # bare LF line ends
    ],
)
def test_a_message_not_in_canonical_form_is_serialized(data: bytes) -> None:
    m = parse_message(data)
    assert bytes(m) != data and bytes(m) == _rebuilt(m) and bytes(m) is bytes(m)


def test_a_status_line_without_reason_is_serialized() -> None:
    data = bytes(SIPResponse(200, headers=parse_message(CANONICAL).headers.copy()))
    m = parse_message(data.replace(b"SIP/2.0 200 OK", b"SIP/2.0 200"))
    assert m.reason == "" and bytes(m).startswith(b"SIP/2.0 200 \r\n")


MUTATIONS = {
    "headers.set": lambda m: m.headers.set("Max-Forwards", "69"),
    "headers[]=": lambda m: m.headers.__setitem__("X-Custom", "changed"),
    "headers.add": lambda m: m.headers.add("Via", "SIP/2.0/UDP p;branch=z9hG4bK0", first=True),
    "headers.add last": lambda m: m.headers.add("X-Other", "1"),
    "del headers[]": lambda m: m.headers.__delitem__("X-Custom"),
    "headers =": lambda m: setattr(m, "headers", SIPHeaders([*m.headers.items(), ("X-A", "1")])),
    "body": lambda m: setattr(m, "body", b"v=1\r\n"),
    "version": lambda m: setattr(m, "version", "SIP/3.0"),
    "request_uri": lambda m: setattr(m, "request_uri", "sip:carol@example.com"),
    "method": lambda m: setattr(m, "method", "OPTIONS"),
    "code": lambda m: setattr(m, "code", 299),
    "reason": lambda m: setattr(m, "reason", "Fine"),
}


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_any_change_makes_the_message_serialize_again(mutation: str) -> None:
    data = CANONICAL
    if mutation in ("code", "reason"):
        data = bytes(
            SIPResponse(200, headers=parse_message(CANONICAL).headers.copy(), body=b"v=0\n")
        )
    m = parse_message(data)
    assert bytes(m) is data
    if isinstance(m, SIPRequest):
        assert m.request_uri.user == "bob"  # building the Request-URI object is no change
    assert m.top_via.branch and bytes(m) is data  # nor is building typed values
    MUTATIONS[mutation](m)
    assert bytes(m) != data and bytes(m) == _rebuilt(m)


def test_typed_values_handed_out_are_copies() -> None:
    m = parse_message(CANONICAL)
    m.via.append(m.top_via)
    m.contact.append(None)  # type: ignore[arg-type]
    assert len(m.via) == 2 and m.contact == [] and m.get_headers("via") == m.via


def test_lines_seen_before_parse_as_new_ones() -> None:
    """Clean lines are remembered whole; a repeat must give the same values and the same
    canonical-form verdict as a line never seen."""
    route = "Route: <sip:p1.example.com;lr>"
    first = with_headers(route, "Max-Forwards: 70", "Content-Length: 0")
    assert bytes(parse_message(first)) == first  # canonical: every line remembered
    again = parse_message(first)
    assert again == parse_message(first) and bytes(again) == first
    # both Route lines are remembered ones, but apart: not canonical any more
    apart = with_headers(route, "Max-Forwards: 70", route, "Content-Length: 0")
    m = parse_message(apart)
    assert [str(r.uri) for r in m.route] == ["sip:p1.example.com;lr"] * 2
    assert bytes(m) != apart and bytes(m) == _rebuilt(m)
    # a line that needs stripping is never taken for its clean twin's verdict
    spaced = with_headers(route + " ", "Max-Forwards: 70", "Content-Length: 0")
    m = parse_message(spaced)
    assert m.headers.getall("Route") == ["<sip:p1.example.com;lr>"] and bytes(m) == first
