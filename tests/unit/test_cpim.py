"""Message/CPIM (RFC 3862) payloads."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipsimple.payloads.cpim import (
    CPIMHeader,
    CPIMIdentity,
    CPIMNamespace,
    CPIMParseError,
    CPIMPayload,
)

RFC_EXAMPLE = (
    b"From: MR SANDERS <im:piglet@100akerwood.com>\r\n"
    b"To: Depressed Donkey <im:eeyore@100akerwood.com>\r\n"
    b"DateTime: 2000-12-13T13:40:00-08:00\r\n"
    b"Subject: the weather will be fine today\r\n"
    b"Subject:;lang=fr beau temps prevu pour aujourd'hui\r\n"
    b"NS: MyFeatures <mid:MessageFeatures@id.foo.com>\r\n"
    b"Require: MyFeatures.VitalMessageOption\r\n"
    b"MyFeatures.VitalMessageOption: Confirmation-requested\r\n"
    b"MyFeatures.WackyMessageOption: Use-silly-font\r\n"
    b"\r\n"
    b"Content-type: text/xml; charset=utf-8\r\n"
    b"Content-ID: <1234567890@foo.com>\r\n"
    b"\r\n"
    b"<body>\r\n"
    b"Here is the text of my message.\r\n"
    b"</body>\r\n"
)


def test_rfc3862_example():
    payload = CPIMPayload.decode(RFC_EXAMPLE)
    assert payload.sender == CPIMIdentity("im:piglet@100akerwood.com", "MR SANDERS")
    assert payload.recipients == [CPIMIdentity("im:eeyore@100akerwood.com", "Depressed Donkey")]
    assert payload.timestamp == datetime(2000, 12, 13, 21, 40, tzinfo=UTC)
    assert payload.subject == "the weather will be fine today"
    assert payload.subject_translations == {"fr": "beau temps prevu pour aujourd'hui"}
    assert payload.required == ["MyFeatures.VitalMessageOption"]
    features = CPIMNamespace("mid:MessageFeatures@id.foo.com", "MyFeatures")
    assert payload.additional_headers == [
        CPIMHeader("VitalMessageOption", "Confirmation-requested", features),
        CPIMHeader("WackyMessageOption", "Use-silly-font", features),
    ]
    assert payload.content_type == "text/xml" and payload.charset == "utf-8"
    assert payload.content_headers == [("Content-ID", "<1234567890@foo.com>")]
    assert payload.content == b"<body>\r\nHere is the text of my message.\r\n</body>\r\n"
    assert CPIMPayload.decode(payload.encode()) == payload


def test_chat_message_round_trip_with_unicode():
    payload = CPIMPayload(
        "Grüße, 世界! 👋\r\nline two",
        "text/plain",
        sender=CPIMIdentity("sip:alice@example.com", 'Alice "Ali" Ünal'),
        recipients=[CPIMIdentity("sip:bob@example.com")],
        courtesy_recipients=[CPIMIdentity("sip:carol@example.com", "Carol")],
        timestamp=datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=timezone(timedelta(hours=2))),
        subject="Ünïcode subject",
        additional_headers=[CPIMHeader("Private", "yes", CPIMNamespace("urn:x-test:", "t"))],
    )
    encoded = payload.encode()
    assert b'From: "Alice \\"Ali\\" \xc3\x9cnal" <sip:alice@example.com>' in encoded
    assert b"Content-Type: text/plain; charset=utf-8" in encoded
    decoded = CPIMPayload.decode(encoded)
    assert decoded.text == payload.content
    assert decoded.sender == payload.sender and decoded.recipients == payload.recipients
    assert decoded.courtesy_recipients == payload.courtesy_recipients
    assert decoded.timestamp == payload.timestamp and decoded.subject == payload.subject
    assert decoded.additional_headers == payload.additional_headers


def test_binary_content_has_no_charset():
    payload = CPIMPayload(b"\x89PNG\r\n\x1a\n\x00", "image/png")
    decoded = CPIMPayload.decode(payload.encode())
    assert decoded.content == b"\x89PNG\r\n\x1a\n\x00" and decoded.charset is None
    assert decoded.content_type == "image/png"


def test_identity_forms():
    assert CPIMIdentity.parse("<sip:a@b>") == CPIMIdentity("sip:a@b")
    assert CPIMIdentity.parse('"Tab\\there \\u00e9" <sip:a@b>').display_name == "Tab\there é"
    assert str(CPIMIdentity("sip:a@b", "x\ny")) == '"x\\ny" <sip:a@b>'
    for bad in ("sip:a@b", '"open <sip:a@b>', "<>", '"bad \\q" <sip:a@b>'):
        with pytest.raises(CPIMParseError):
            CPIMIdentity.parse(bad)


def test_lf_only_line_ends_are_accepted():
    payload = CPIMPayload.decode(b"From: <sip:a@b>\n\nContent-Type: text/plain\n\nhi")
    assert payload.sender == CPIMIdentity("sip:a@b") and payload.content == b"hi"


@pytest.mark.parametrize(
    "data",
    [
        b"From: <sip:a@b>\r\n",  # no blank line
        b"From: <sip:a@b>\r\n\r\nContent-Type: text/plain",  # no blank line after content headers
        b"From <sip:a@b>\r\n\r\nContent-Type: text/plain\r\n\r\n",
        b"X.Header: value\r\n\r\nContent-Type: text/plain\r\n\r\n",  # undeclared prefix
        b"DateTime: yesterday\r\n\r\nContent-Type: text/plain\r\n\r\n",
        b"DateTime: 2000-12-13T13:40:00\r\n\r\nContent-Type: text/plain\r\n\r\n",
        b"NS: nourl\r\n\r\nContent-Type: text/plain\r\n\r\n",
        b"From: <sip:a@b>\r\n\r\nContent-ID: <x>\r\n\r\nbody",  # no Content-Type
        b"From: \xff\r\n\r\nContent-Type: text/plain\r\n\r\n",
    ],
)
def test_invalid(data):
    with pytest.raises(CPIMParseError):
        CPIMPayload.decode(data)


def test_encode_argument_errors():
    with pytest.raises(ValueError):
        CPIMPayload("x", "text/plain", subject="two\r\nlines").encode()
    with pytest.raises(ValueError):
        CPIMPayload("x", "text/plain", timestamp=datetime(2024, 1, 1)).encode()
    with pytest.raises(ValueError):
        CPIMPayload(
            "x",
            "text/plain",
            additional_headers=[CPIMHeader("H", "v", CPIMNamespace("urn:no-prefix"))],
        ).encode()


def test_text_with_wrong_charset():
    with pytest.raises(CPIMParseError):
        _ = CPIMPayload(b"\xff", "text/plain", charset="utf-8").text


@settings(max_examples=150, deadline=None)
@given(
    st.text(),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=30),
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=30),
)
def test_round_trip_any_unicode(content, name, subject):
    payload = CPIMPayload(
        content, "text/plain", sender=CPIMIdentity("sip:x@y", name or None), subject=subject
    )
    decoded = CPIMPayload.decode(payload.encode())
    assert decoded.text == content and decoded.sender == payload.sender
    assert decoded.subject == subject


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_the_parse_error(data):
    try:
        CPIMPayload.decode(data)
    except CPIMParseError:
        pass
