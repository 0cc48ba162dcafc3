"""What Invitation notifications carry of a message: headers made on first read."""

from __future__ import annotations

import pickle

import pytest

from sipsimple.core.invitation.messages import MessageHeaders, message_fields
from sipsimple.core.invitation.sdp import BadBody, sdp_of, unchanged
from sipsimple.core.sdp import FrozenSDPSession
from sipsimple.core.sip.message import parse_message

INVITE = (
    b"INVITE sip:bob@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\n"
    b"From: <sip:alice@127.0.0.1>;tag=a\r\nTo: <sip:bob@127.0.0.1>\r\n"
    b"Call-ID: c1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:5070>\r\n"
    b"Subject: hello\r\nSupported: timer, 100rel\r\n"
)
SDP = (
    b"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0\r\n"
)


def message(body: bytes = b"", content_type: str = "application/sdp"):
    head = INVITE
    if body:
        head += f"Content-Type: {content_type}\r\n".encode()
    return parse_message(head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)


def test_message_fields_of_a_request():
    fields = message_fields(message())
    assert fields["method"] == "INVITE" and fields["body"] == b""
    headers = fields["headers"]
    assert isinstance(headers, MessageHeaders)
    assert headers["Subject"].body == "hello"
    assert headers["Supported"] == ["timer", "100rel"]
    assert "Contact" in headers and headers.get("Reason") is None
    assert dict(headers) == message().header_dict()


def test_headers_pickle_as_a_plain_dict():
    headers = MessageHeaders(message())
    copy = pickle.loads(pickle.dumps(headers))
    assert type(copy) is dict and copy == dict(headers)


def test_sdp_bodies():
    assert sdp_of(message()) is None
    assert sdp_of(message(SDP)).media[0].port == 4000
    with pytest.raises(BadBody) as refused:
        sdp_of(message(b"hello", "text/plain"))
    assert refused.value.code == 415 and refused.value.headers == [("Accept", "application/sdp")]
    with pytest.raises(BadBody) as refused:
        sdp_of(message(b"v=0\r\nnonsense\r\n"))
    assert refused.value.code == 400


def test_an_unchanged_offer_is_a_refresh():
    active = FrozenSDPSession.parse(SDP)
    assert unchanged(FrozenSDPSession.parse(SDP), active)
    assert not unchanged(FrozenSDPSession.parse(SDP.replace(b" 1 2 ", b" 1 3 ")), active)
    assert not unchanged(active, None)
