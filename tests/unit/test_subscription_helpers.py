"""The pure helpers of the subscription usages: sipfrag status lines, request checks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipsimple.core.referral import _sipfrag, parse_sipfrag
from sipsimple.core.sip.headers import FrozenEventHeader
from sipsimple.core.sip.message import SIPRequest
from sipsimple.core.subscription import _accepts, _event_matches, check_request


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"SIP/2.0 100 Trying\r\n", (100, "Trying")),
        (b"SIP/2.0 486 Busy Here\r\nVia: x\r\n", (486, "Busy Here")),
        (b"  SIP/2.0 200\r\n", (200, "")),
        (b"SIP/2.0 99 Low\r\n", None),
        (b"SIP/1.0 200 OK\r\n", None),
        (b"INVITE sip:a@b SIP/2.0\r\n", None),
        (b"", None),
    ],
)
def test_parse_sipfrag(body, status):
    assert parse_sipfrag(body) == status


@given(st.binary(max_size=200))
@settings(max_examples=200)
def test_parse_sipfrag_takes_any_bytes(body):
    status = parse_sipfrag(body)
    assert status is None or 100 <= status[0] <= 699


@given(st.integers(100, 699), st.text(st.characters(blacklist_characters="\r\n"), max_size=40))
@settings(max_examples=100)
def test_a_status_line_made_is_read_back(code, reason):
    assert parse_sipfrag(_sipfrag(code, reason)) == (code, reason.strip())


def test_a_status_line_gets_the_standard_reason_and_refuses_bad_input():
    assert _sipfrag(180, None) == b"SIP/2.0 180 Ringing\r\n"
    with pytest.raises(ValueError):
        _sipfrag(99, None)
    with pytest.raises(ValueError):
        _sipfrag(200, "OK\r\nVia: injected")


def test_content_types_are_matched_without_parameters():
    accepted = ["message/sipfrag;version=2.0", "application/pidf+xml"]
    assert _accepts(accepted, "message/sipfrag")
    assert _accepts(accepted, "Application/PIDF+XML; charset=utf-8")
    assert not _accepts(accepted, "text/plain")


def test_event_headers_name_a_subscription_by_package_and_id():
    refer = FrozenEventHeader.parse("refer;id=7")
    assert _event_matches(refer, "refer", "7")
    assert not _event_matches(refer, "refer", "8")
    assert _event_matches(FrozenEventHeader.parse("refer"), "refer", "7")
    assert _event_matches(refer, "refer", None)
    assert not _event_matches(refer, "presence", None)
    assert not _event_matches(None, "presence", None)


def request(*headers: tuple[str, str]) -> SIPRequest:
    base = [
        ("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1"),
        ("From", "<sip:a@127.0.0.1>;tag=1"),
        ("To", "<sip:b@127.0.0.1>;tag=2"),
        ("Call-ID", "c"),
        ("CSeq", "1 NOTIFY"),
    ]
    return SIPRequest("NOTIFY", "sip:b@127.0.0.1", [*base, *headers])


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (("Subscription-State", "active;expires=60"), None),
        (("Subscription-State", "terminated;retry-after=x"), "Bad Subscription-State header"),
        (("Subscription-State", "active;;"), "Bad Subscription-State header"),
        (("Contact", "<sip:@>"), "Bad Contact header"),
        (("Event", "presence;"), "Bad Event header"),
        (("Content-Type", "nothing"), "Bad Content-Type header"),
    ],
)
def test_check_request_names_the_bad_header(header, problem):
    assert check_request(request(header), "Subscription-State") == problem
