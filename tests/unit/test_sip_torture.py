"""RFC 4475 (SIP torture tests) section 3 and RFC 5118 (IPv6 torture tests) section 4.

Each message is a file under tests/data/sip/ with the exact octets of the RFC (the
<hex>, <allOneLine> and <repeat> notations of RFC 4475 section 2 expanded). For every
message the test states the outcome the RFC asks of a parser, and what an element
above the parser does with it:

- valid messages parse, with the values checked below;
- syntactically invalid ones raise SIPParseError (a MalformedSIPMessageError from
  which the 400 can be built) with a text saying what is wrong;
- the "semantically invalid but parseable" ones parse, and the test checks that the
  parsed values give the layer above what it needs to answer as the RFC says.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sipsimple.core import (
    MalformedSIPMessageError,
    SIPParseError,
    SIPRequest,
    SIPResponse,
    parse_message,
)
from sipsimple.core.sip.framer import SIPStreamFramer
from sipsimple.core.sip.multipart import split_multipart
from sipsimple.core.sip.uri import FrozenSIPURI, OpaqueURI

DATA = Path(__file__).parent.parent / "data" / "sip"


def load(name: str) -> bytes:
    return (DATA / name).read_bytes()


def parse(name: str) -> SIPRequest | SIPResponse:
    return parse_message(load(name))


def roundtrip(message: SIPRequest | SIPResponse) -> None:
    again = parse_message(bytes(message))
    assert again == message


# -- 3.1.1 valid messages ----------------------------------------------------------------


def test_wsinv_short_tortuous_invite() -> None:  # 3.1.1.1
    m = parse("4475/wsinv.dat")
    assert isinstance(m, SIPRequest) and m.method == "INVITE"
    assert isinstance(m.request_uri, FrozenSIPURI)
    assert m.request_uri.user == "vivekg" and m.request_uri.host == "chair-dnrc.example.com"
    assert m.request_uri.parameters == {"unknownparam": None}
    assert m.to_header.tag == "1918181833n" and m.to_header.display_name is None  # type: ignore[union-attr]
    assert m.from_header.display_name == 'J Rosenberg \\"'  # type: ignore[union-attr]
    assert m.from_header.tag == "98asjd8"  # type: ignore[union-attr]
    assert m.max_forwards == 68
    assert m.cseq == (9, "INVITE")
    assert m.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert [(v.transport, v.host, v.branch) for v in m.via] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert m.headers.get("Subject") == ""
    assert m.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert m.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert m.content_type.content_type == "application/sdp"  # type: ignore[union-attr]
    (route,) = m.route
    assert route.uri.parameters == {"lr": None, "unknownwith": "value", "unknown-no-value": None}
    (contact,) = m.contact
    assert contact.display_name == 'Quoted string ""'
    assert contact.uri.user == "jdrosen" and contact.q == 0.33
    assert contact.parameters == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert len(m.body) == 150 and m.body.startswith(b"v=0\r\n")
    roundtrip(m)


def test_intmeth_wide_range_of_valid_characters() -> None:  # 3.1.1.2
    m = parse("4475/intmeth.dat")
    assert isinstance(m, SIPRequest)
    assert m.method == "!interesting-Method0123456789_*+`.%indeed'~"
    uri = m.request_uri
    assert isinstance(uri, FrozenSIPURI)
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert uri.host == "example.com"
    assert m.top_via.branch == "z9hG4bK-.!%66*_+`'~"
    assert m.to_header.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"  # type: ignore[union-attr]
    assert m.to_header.uri.user == uri.user  # type: ignore[union-attr]
    sender = m.from_header
    assert sender.display_name == "token1~` token2'+_ token3*%!.-"  # type: ignore[union-attr]
    assert sender.tag == "_token~1'+`*%!-."  # type: ignore[union-attr]
    assert sender.parameters["fromParam''~+*_!.-%"] == '"работающий"'  # type: ignore[union-attr]
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.cseq == (139122385, "!interesting-Method0123456789_*+`.%indeed'~")
    assert m.max_forwards == 255
    assert m.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"
    roundtrip(m)


def test_esc01_valid_use_of_escaping() -> None:  # 3.1.1.3
    m = parse("4475/esc01.dat")
    assert m.request_uri.user == "sips:user@example.com"  # type: ignore[union-attr]
    assert m.request_uri.host == "example.net"  # type: ignore[union-attr]
    assert m.to_header.uri.user == "user"  # type: ignore[union-attr]
    assert m.from_header.uri.user == "I have spaces"  # type: ignore[union-attr]
    assert m.call_id == "esc01.239409asdfakjkn23onasd0-3234"
    (contact,) = m.contact
    assert contact.uri.user == "caller"
    # the escapes are undone once: "name" is "value%41", not "valueA"
    assert contact.uri.parameters == {"lr": None, "name": "value%41"}
    assert contact.uri == FrozenSIPURI.parse("sip:caller@host5.example.net;lr;name=value%2541")
    assert m.content_type.content_type == "application/sdp"  # type: ignore[union-attr]
    roundtrip(m)


def test_escnull_escaped_nulls_in_uris() -> None:  # 3.1.1.4
    m = parse("4475/escnull.dat")
    assert m.to_header.uri.user == "null-\x00-null"  # type: ignore[union-attr]
    assert m.from_header.tag == "839923423"  # type: ignore[union-attr]
    users = [contact.uri.user for contact in m.contact]
    assert users == ["\x00", "\x00\x00"]  # two distinct contacts, not shortened
    assert m.content_length == 0
    roundtrip(m)


def test_esc02_percent_is_not_an_escape_everywhere() -> None:  # 3.1.1.5
    m = parse("4475/esc02.dat")
    assert m.method == "RE%47IST%45R"  # type: ignore[union-attr]
    assert m.to_header.display_name == "%Z%45"  # type: ignore[union-attr]
    assert m.top_via.branch == "z9hG4bK209%fzsnel234"
    assert m.cseq == (29344, "RE%47IST%45R")
    assert [c.uri.user for c in m.contact] == ["alias1", "alias3"]  # two values, not three
    assert m.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    roundtrip(m)


def test_lwsdisp_no_lws_between_display_name_and_angle() -> None:  # 3.1.1.6
    m = parse("4475/lwsdisp.dat")
    assert m.from_header.display_name == "caller"  # type: ignore[union-attr]
    assert m.from_header.tag == "323"  # type: ignore[union-attr]
    roundtrip(m)


def test_longreq_long_values_in_header_fields() -> None:  # 3.1.1.7
    m = parse("4475/longreq.dat")
    assert m.to_header.display_name == f"I have a user name of {'extreme' * 10} proportion"  # type: ignore[union-attr]
    assert m.to_header.uri.port == 6000  # type: ignore[union-attr]
    assert len(m.to_header.uri.parameters) == 3  # type: ignore[union-attr]
    assert m.from_header.tag == "12" + "982" * 50 + "424"  # type: ignore[union-attr]
    assert len(m.from_header.parameters) == 3  # type: ignore[union-attr]
    assert m.call_id == f"longreq.one{'really' * 20}longcallid"
    vias = m.via
    assert len(vias) == 34
    assert [v.host for v in vias[:33]] == [f"sip{n}.example.com" for n in range(33, 0, -1)]
    assert vias[33].received == "192.0.2.5" and vias[33].branch == f"very{'long' * 50}branchvalue"
    assert m.content_length == 150
    roundtrip(m)


def test_dblreq_extra_octets_after_the_body_are_ignored() -> None:  # 3.1.1.8
    m = parse("4475/dblreq.dat")
    assert m.method == "REGISTER" and m.body == b""  # type: ignore[union-attr]
    assert m.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"
    assert b"INVITE" not in bytes(m)


def test_semiuri_semicolon_in_the_user_part() -> None:  # 3.1.1.9
    m = parse("4475/semiuri.dat")
    assert m.request_uri.user == "user;par=u@example.net"  # type: ignore[union-attr]
    assert m.request_uri.host == "example.com"  # type: ignore[union-attr]
    assert m.request_uri.parameters == {}  # type: ignore[union-attr]
    assert m.headers.getall("Accept") == [
        "application/sdp",
        "application/pkcs7-mime",
        "multipart/mixed",
        "multipart/signed",
        "message/sip",
        "message/sipfrag",
    ]
    roundtrip(m)


def test_transports_all_via_transports() -> None:  # 3.1.1.10
    m = parse("4475/transports.dat")
    assert [v.transport for v in m.via] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert m.call_id == "transports.kijh4akdnaqjkwendsasfdj"
    roundtrip(m)


def test_mpart01_multipart_body_with_binary_part() -> None:  # 3.1.1.11
    m = parse("4475/mpart01.dat")
    assert len(m.body) == 553
    content_type = m.content_type
    assert content_type.content_type == "multipart/mixed"  # type: ignore[union-attr]
    assert content_type.boundary == "7a9cbec02ceef655"  # type: ignore[union-attr]
    text, binary = split_multipart(m.body, content_type.boundary)  # type: ignore[union-attr, arg-type]
    assert text.content_type.content_type == "text/plain"  # type: ignore[union-attr]
    assert text.body == b"Hello"
    assert binary.headers.get("Content-Transfer-Encoding") == "binary"
    assert len(binary.body) == 342 and binary.body.startswith(bytes.fromhex("3082015206092a86"))
    assert b"\x00" in binary.body
    assert m.top_via.rport is True and m.top_via.port == 5070
    assert m.headers.get("Identity", "").startswith("r5mwreLuyDRYBi")
    roundtrip(m)


def test_unreason_reason_phrase_with_utf8() -> None:  # 3.1.1.12
    m = parse("4475/unreason.dat")
    assert isinstance(m, SIPResponse) and m.code == 200
    assert m.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    assert m.to_header.tag == "2229"  # type: ignore[union-attr]
    roundtrip(m)


def test_noreason_empty_reason_phrase() -> None:  # 3.1.1.13
    m = parse("4475/noreason.dat")
    assert isinstance(m, SIPResponse) and (m.code, m.reason) == (100, "")
    assert m.to_header.tag == "902jndnke3"  # type: ignore[union-attr]
    roundtrip(m)


# -- 3.1.2 invalid messages: rejected, with the reason ------------------------------------

INVALID = {
    # 3.1.2.1 extraneous ";" and "," in Via (Contact's ";;;;" would fail only on access)
    "badinv01": "invalid Via header",
    # 3.1.2.2 over UDP a body shorter than Content-Length is a 400
    "clerr": "Content-Length 9999 is larger than the 154 bytes",
    # 3.1.2.3
    "ncl": "invalid Content-Length header",
    # 3.1.2.4 the CSeq error is the one that makes the request unusable
    "scalar02": "invalid CSeq header",
    # 3.1.2.5 a response with an overlarge CSeq is discarded
    "scalarlg": "invalid CSeq header",
    # 3.1.2.6
    "quotbal": "invalid To header",
    # 3.1.2.7
    "ltgtruri": "invalid Request-URI",
    # 3.1.2.8 LWS inside the Request-URI: the request line has four parts
    "lwsruri": "invalid request line",
    # 3.1.2.9 rejecting is acceptable per the RFC
    "lwsstart": "invalid request line",
    # 3.1.2.10 rejecting is acceptable per the RFC
    "trws": "invalid request line",
    # 3.1.2.11
    "escruri": "headers are not allowed in a Request-URI",
    # 3.1.2.14 "< sip:... >": rejecting is reasonable per the RFC
    "badaspec": "invalid To header",
    # 3.1.2.15 unquoted "Bell, Alexander"
    "baddn": "invalid From header",
    # 3.1.2.17 a 400 for any element
    "mismatch01": "CSeq method INVITE does not match request method OPTIONS",
    # 3.1.2.18 501 is preferred, 400 acceptable: the parser gives the 400
    "mismatch02": "CSeq method INVITE does not match request method NEWMETHOD",
    # 3.1.2.19 a response code over 699: dropped
    "bigcode": "invalid status line",
    # 3.3.1 missing required headers: 400
    "insuf": "missing From header",
    # 3.3.8 several To, From, Call-ID, CSeq, Max-Forwards: 400
    "multi01": "multiple From headers",
    # 3.3.9 several Content-Length values: 400
    "mcl01": "multiple Content-Length headers",
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_messages_are_rejected_saying_why(name: str) -> None:
    with pytest.raises(MalformedSIPMessageError) as info:
        parse(f"4475/{name}.dat")
    assert INVALID[name] in str(info.value)


def test_rejected_requests_can_be_answered_with_a_400() -> None:
    with pytest.raises(MalformedSIPMessageError) as info:
        parse("4475/escruri.dat")
    response = info.value.make_response(warning_agent="ua.example.com", to_tag="x1")
    assert response is not None and response.code == 400 and response.reason == "Bad Request"
    again = parse_message(bytes(response))
    assert again.call_id == "escruri.23940-asdfhj-aje3br-234q098w-fawerh2q-h4n5"
    assert again.top_via.branch == "z9hG4bKkdjuw"
    assert again.cseq == (149209342, "INVITE")
    assert again.to_header.tag == "x1"  # type: ignore[union-attr]
    assert again.get_header("Warning").code == 399
    assert "headers are not allowed" in again.get_header("Warning").text
    # the copied headers are copied as they came, even the one that was wrong
    with pytest.raises(MalformedSIPMessageError) as info:
        parse("4475/badaspec.dat")
    response = info.value.make_response()
    assert response is not None
    assert response.headers.get("To") == '"Watson, Thomas" < sip:t.watson@example.org >'
    # a response is never answered
    with pytest.raises(MalformedSIPMessageError) as info:
        parse("4475/bigcode.dat")
    assert info.value.make_response() is None


def test_baddate_non_gmt_date_is_kept_raw() -> None:  # 3.1.2.12
    # Date is not needed to process the request: the message is usable, the Date header
    # is kept as received for whoever wants to judge it.
    m = parse("4475/baddate.dat")
    assert m.headers.get("Date") == "Fri, 01 Jan 2010 16:00:00 EST"
    assert m.cseq == (1392934, "INVITE")


def test_regbadct_contact_needing_angle_brackets_fails_on_access() -> None:  # 3.1.2.13
    # The request is usable by the transaction layer; the registrar reading Contact
    # gets the error and answers 400, as the RFC finds reasonable.
    m = parse("4475/regbadct.dat")
    with pytest.raises(SIPParseError, match="invalid Contact header"):
        _ = m.contact
    assert m.header_dict()["Contact"].body == "sip:user@example.com?Route=%3Csip:sip.example.com%3E"


def test_badvers_other_sip_version_parses_for_a_505() -> None:  # 3.1.2.16
    m = parse("4475/badvers.dat")
    assert m.version == "SIP/7.0"  # the receiver answers 505 Version Not Supported
    assert m.top_via.protocol == "SIP/7.0"
    assert m.to_header.display_name == "T. Watson"  # type: ignore[union-attr]


def test_badinv01_contact_fails_only_when_read() -> None:
    # Same message with its Via fixed: the Contact ";;;;" only fails when read.
    data = load("4475/badinv01.dat").replace(b"192.0.2.15;;,;,,", b"192.0.2.15;branch=z9hG4bKx")
    m = parse_message(data)
    with pytest.raises(SIPParseError, match="invalid Contact header"):
        _ = m.contact


def test_clerr_over_a_stream_waits_for_the_body() -> None:
    framer = SIPStreamFramer()
    framer.receive_data(load("4475/clerr.dat"))
    assert framer.next_event() is None  # waiting for 9999 octets
    framer.receive_data(b"")
    with pytest.raises(SIPParseError, match="closed in the middle"):
        framer.next_event()


def test_ncl_over_a_stream_breaks_the_framing() -> None:
    framer = SIPStreamFramer()
    framer.receive_data(load("4475/ncl.dat"))
    with pytest.raises(SIPParseError, match="invalid Content-Length"):
        framer.next_event()


# -- 3.2 and 3.3: parseable messages the layers above act on ------------------------------


def test_badbranch_magic_cookie_without_identifier() -> None:  # 3.2.1
    # Parses; the transaction layer may reject it or fall back to RFC 2543 matching.
    m = parse("4475/badbranch.dat")
    assert m.top_via.branch == "z9hG4bK"


def test_unkscm_unknown_request_uri_scheme() -> None:  # 3.3.2: answered 416
    m = parse("4475/unkscm.dat")
    assert isinstance(m.request_uri, OpaqueURI)  # type: ignore[union-attr]
    assert m.request_uri.scheme == "nobodyKnowsThisScheme"  # type: ignore[union-attr]
    assert m.request_uri.rest == "totallyopaquecontent"  # type: ignore[union-attr]
    roundtrip(m)


def test_novelsc_known_but_atypical_scheme() -> None:  # 3.3.3: answered 416
    m = parse("4475/novelsc.dat")
    assert isinstance(m.request_uri, OpaqueURI)  # type: ignore[union-attr]
    assert str(m.request_uri) == "soap.beep://192.0.2.103:3002"  # type: ignore[union-attr]


def test_unksm2_unknown_schemes_in_header_fields() -> None:  # 3.3.4: a registrar sends 400
    m = parse("4475/unksm2.dat")
    assert isinstance(m.to_header.uri, OpaqueURI)  # type: ignore[union-attr]
    assert str(m.to_header.uri) == "isbn:2983792873"  # type: ignore[union-attr]
    assert str(m.from_header.uri) == "http://www.example.com"  # type: ignore[union-attr]
    assert str(m.contact[0].uri) == "name:John_Smith"
    roundtrip(m)


def test_bext01_require_and_proxy_require() -> None:  # 3.3.5: 420 with Unsupported
    m = parse("4475/bext01.dat")
    assert m.require == ["nothingSupportsThis", "nothingSupportsThisEither"]
    assert m.proxy_require == ["noProxiesSupportThis", "norDoAnyProxiesSupportThis"]


def test_invut_unknown_content_type() -> None:  # 3.3.6: 415 with Accept
    m = parse("4475/invut.dat")
    assert m.content_type.content_type == "application/unknownformat"  # type: ignore[union-attr]
    assert m.body == b'<audio>\r\n <pcmu port="443"/>\r\n</audio>\r\n'


def test_regaut01_unknown_authorization_scheme() -> None:  # 3.3.7: 401 with a challenge
    m = parse("4475/regaut01.dat")
    assert m.headers.get("Authorization") == "NoOneKnowsThisScheme opaque-data=here"
    assert m.content_length == 0


def test_bcast_broadcast_via_parses() -> None:  # 3.3.10: the UA does not respond to it
    m = parse("4475/bcast.dat")
    assert [v.host for v in m.via] == ["192.0.2.198", "255.255.255.255"]


def test_zeromf_max_forwards_zero() -> None:  # 3.3.11: a UAS processes it normally
    assert parse("4475/zeromf.dat").max_forwards == 0


def test_cparam01_parameter_after_addr_spec_belongs_to_the_header() -> None:  # 3.3.12
    (contact,) = parse("4475/cparam01.dat").contact
    assert contact.parameters == {"unknownparam": None}
    assert contact.uri.parameters == {}
    assert contact.uri.user == "+19725552222"


def test_cparam02_parameter_inside_angle_brackets_belongs_to_the_uri() -> None:  # 3.3.13
    (contact,) = parse("4475/cparam02.dat").contact
    assert contact.parameters == {}
    assert contact.uri.parameters == {"unknownparam": None}


def test_regescrt_escaped_header_in_contact_uri() -> None:  # 3.3.14
    m = parse("4475/regescrt.dat")
    (contact,) = m.contact
    assert contact.uri.headers == {"Route": "<sip:sip.example.com>"}
    assert m.content_length == 0
    roundtrip(m)


def test_sdp01_unacceptable_accept() -> None:  # 3.3.15: 406 Not Acceptable
    m = parse("4475/sdp01.dat")
    assert m.headers.getall("Accept") == ["text/nobodyKnowsThis"]
    assert m.content_type.content_type == "application/sdp"  # type: ignore[union-attr]


def test_inv2543_rfc2543_syntax_is_accepted() -> None:  # 3.4.1
    m = parse("4475/inv2543.dat")
    assert m.max_forwards is None and m.content_length is None
    assert m.top_via.branch is None and m.top_via.host == "iftgw.example.com"
    assert m.to_header.parameters == {"user": "phone"}  # addr-spec form: a header parameter
    assert m.from_header.uri.parameters == {"user": "phone"}  # type: ignore[union-attr]
    assert m.record_route[0].uri.parameters["maddr"] == "ss1.example.com"
    assert m.body.endswith(
        b"m=audio 49217 RTP/AVP 0\r\n"
    )  # no Content-Length: rest of the datagram


def test_every_4475_message_has_a_stated_outcome() -> None:
    files = {path.stem for path in (DATA / "4475").glob("*.dat")}
    assert len(files) == 49
    for name in files:
        if name in INVALID:
            continue
        parse(f"4475/{name}.dat")  # every other message parses


# -- RFC 5118 ----------------------------------------------------------------------------


def test_5118_valid_ipv6_reference() -> None:  # 4.1
    m = parse("5118/ipv6-good.dat")
    assert m.request_uri.host == "2001:db8::10"  # type: ignore[union-attr]
    assert m.top_via.host == "2001:db8::9:1"
    assert m.contact[0].uri.host == "2001:db8::1"
    assert b"sip:[2001:db8::10] SIP/2.0" in bytes(m)
    roundtrip(m)


def test_5118_ipv6_without_brackets_is_rejected() -> None:  # 4.2
    with pytest.raises(MalformedSIPMessageError, match="invalid Request-URI"):
        parse("5118/ipv6-bad.dat")


def test_5118_port_ambiguous() -> None:  # 4.3: 5070 is part of the address
    m = parse("5118/port-ambiguous.dat")
    assert m.request_uri.host == "2001:db8::10:5070"  # type: ignore[union-attr]
    assert m.request_uri.port is None  # type: ignore[union-attr]


def test_5118_port_unambiguous() -> None:  # 4.4
    m = parse("5118/port-unambiguous.dat")
    assert (m.request_uri.host, m.request_uri.port) == ("2001:db8::10", 5070)  # type: ignore[union-attr]


def test_5118_received_with_and_without_delimiters() -> None:  # 4.5
    with_delim = parse("5118/via-received-param-with-delim.dat")
    assert with_delim.top_via.received == "[2001:db8::9:255]"
    assert with_delim.top_via.branch == "z9hG4bKas3-111"
    no_delim = parse("5118/via-received-param-no-delim.dat")
    assert no_delim.top_via.received == "2001:db8::9:255"
    assert no_delim.top_via.branch == "z9hG4bKas3"


def test_5118_ipv6_in_sdp_has_a_wrong_content_length_in_the_rfc() -> None:  # 4.6
    # The RFC declares Content-Length 268 for a 251-octet body. Over UDP a shorter body
    # is a 400 (RFC 3261 section 18.3), which is what happens; with the length fixed
    # the message parses with its IPv6 values.
    data = load("5118/ipv6-in-sdp.dat")
    with pytest.raises(MalformedSIPMessageError, match="Content-Length 268"):
        parse_message(data)
    m = parse_message(data.replace(b"Content-Length: 268", b"Content-Length: 251"))
    assert m.request_uri.host == "2001:db8::10"  # type: ignore[union-attr]
    assert m.top_via.host == "2001:db8::20"
    assert b"c=IN IP6 2001:db8::20" in m.body


def test_5118_multiple_ip_addresses_in_headers() -> None:  # 4.7
    m = parse("5118/mult-ip-in-header.dat")
    assert [(v.transport, v.host, v.port) for v in m.via] == [
        ("UDP", "2001:db8::9:1", 6050),
        ("UDP", "192.0.2.1", None),
        ("TCP", "2001:db8::9:255", None),
    ]
    assert m.via[2].received == "192.0.2.200"
    roundtrip(m)


def test_5118_multiple_ip_addresses_in_sdp() -> None:  # 4.8
    m = parse("5118/mult-ip-in-sdp.dat")
    assert len(m.body) == 181  # the RFC's Content-Length is one line short: the rest is cut
    assert b"c=IN IP4 192.0.2.1" in m.body


def test_5118_ipv4_mapped_ipv6() -> None:  # 4.9
    m = parse("5118/ipv4-mapped-ipv6.dat")
    assert (m.top_via.host, m.top_via.port) == ("::ffff:192.0.2.10", 19823)
    assert m.via[1].host == "::ffff:192.0.2.2"
    assert m.contact[0].uri.host == "::ffff:192.0.2.2"
    assert m.contact[0].display_name == "T. desk phone"


def test_5118_ipv6_reference_with_three_colons() -> None:  # 4.10
    # The RFC 3261 ABNF bug: accepted (robustness, as the RFC allows), kept as received.
    buggy = parse("5118/ipv6-bug-abnf-3-colons.dat")
    assert buggy.request_uri.host == "2001:db8:::192.0.2.1"  # type: ignore[union-attr]
    correct = parse("5118/ipv6-correct-abnf-2-colons.dat")
    assert correct.request_uri.host == "2001:db8::192.0.2.1"  # type: ignore[union-attr]
    assert correct.to_header.uri == FrozenSIPURI("2001:db8:0::192.0.2.1", "user")  # type: ignore[union-attr]
