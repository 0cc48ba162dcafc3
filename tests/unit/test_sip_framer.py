"""The stream framer: Content-Length framing, keep-alives, limits, invalid messages."""

from __future__ import annotations

import pytest

from sipsimple.core import SIPParseError, SIPRequest, SIPResponse
from sipsimple.core.sip.framer import InvalidMessage, KeepAlivePing, KeepAlivePong, SIPStreamFramer


def message(call_id: str, body: bytes = b"", method: str = "MESSAGE") -> bytes:
    head = (
        f"{method} sip:bob@example.com SIP/2.0\r\n"
        "Via: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK1\r\n"
        "From: <sip:a@example.com>;tag=1\r\n"
        "To: <sip:bob@example.com>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 MESSAGE\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def drain(framer: SIPStreamFramer) -> list[object]:
    events = []
    while (event := framer.next_event()) is not None:
        events.append(event)
    return events


def test_several_messages_in_one_read() -> None:
    framer = SIPStreamFramer()
    framer.receive_data(message("a", b"hello") + message("b") + message("c", b"\r\n\r\n"))
    events = drain(framer)
    assert [e.call_id for e in events] == ["a", "b", "c"]  # type: ignore[attr-defined]
    assert [e.body for e in events] == [b"hello", b"", b"\r\n\r\n"]  # type: ignore[attr-defined]


def test_one_message_over_many_reads() -> None:
    data = message("split", b"x" * 100)
    framer = SIPStreamFramer()
    events = []
    for i in range(len(data)):
        framer.receive_data(data[i : i + 1])
        events += drain(framer)
    assert len(events) == 1 and isinstance(events[0], SIPRequest) and events[0].body == b"x" * 100


def test_messages_give_back_the_bytes_they_came_in() -> None:
    canonical, compact = message("a", b"hi"), message("b").replace(b"Call-ID:", b"i:")
    lf = message("c").replace(b"\r\n", b"\n")
    framer = SIPStreamFramer()
    framer.receive_data(canonical + compact + lf + message("d").replace(b"\r\n\r\n", b"\n\r\n"))
    first, second, third, fourth = drain(framer)
    assert bytes(first) == canonical  # type: ignore[call-overload]
    assert bytes(second) == compact.replace(b"i:", b"Call-ID:")  # type: ignore[call-overload]
    assert bytes(third) == message("c")  # type: ignore[call-overload]
    assert bytes(fourth) == message("d")  # type: ignore[call-overload]


def test_keepalives_between_messages() -> None:
    framer = SIPStreamFramer()
    framer.receive_data(b"\r\n\r\n" + message("a") + b"\r\n" + message("b") + b"\r\n\r\n\r\n")
    events = drain(framer)
    assert [type(e) for e in events] == [
        KeepAlivePing,
        SIPRequest,
        KeepAlivePong,
        SIPRequest,
        KeepAlivePing,
        KeepAlivePong,
    ]


def test_a_ping_split_after_three_octets_is_still_a_ping() -> None:
    framer = SIPStreamFramer()
    framer.receive_data(b"\r\n\r")
    assert framer.next_event() is None
    framer.receive_data(b"\n")
    assert isinstance(framer.next_event(), KeepAlivePing)
    assert framer.next_event() is None


def test_a_lone_crlf_is_a_pong_at_once() -> None:
    framer = SIPStreamFramer()
    framer.receive_data(b"\r\n")
    assert isinstance(framer.next_event(), KeepAlivePong)


def test_invalid_message_with_sound_framing_lets_the_stream_go_on() -> None:
    bad = message("bad", b"abc").replace(b"CSeq: 1 MESSAGE", b"CSeq: x")
    framer = SIPStreamFramer()
    framer.receive_data(bad + message("good"))
    first, second = drain(framer)
    assert isinstance(first, InvalidMessage) and "invalid CSeq header" in str(first.error)
    assert first.data == bad
    response = first.error.make_response()
    assert isinstance(response, SIPResponse) and response.code == 400
    assert second.call_id == "good"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (message("a").replace(b"Content-Length: 0\r\n", b""), "missing Content-Length"),
        (
            message("a").replace(b"Content-Length: 0", b"Content-Length: -1"),
            "invalid Content-Length",
        ),
        (
            message("a").replace(b"Content-Length: 0", b"Content-Length: 0\r\nl: 0"),
            "multiple Content-Length",
        ),
        (message("a").replace(b"To:", b"To\xff:"), "not valid UTF-8"),
        (b"\rgarbage", "stray CR"),
    ],
)
def test_framing_errors_are_fatal(data: bytes, error: str) -> None:
    framer = SIPStreamFramer()
    framer.receive_data(data)
    with pytest.raises(SIPParseError, match=error):
        framer.next_event()
    framer.receive_data(message("b"))
    with pytest.raises(SIPParseError, match=error):  # the stream is unusable from then on
        framer.next_event()


def test_limits() -> None:
    framer = SIPStreamFramer(max_header_size=100)
    framer.receive_data(b"INVITE sip:x SIP/2.0\r\n" + b"X-Pad: " + b"a" * 200)
    with pytest.raises(SIPParseError, match="header section larger than 100 bytes"):
        framer.next_event()
    framer = SIPStreamFramer(max_body_size=10)
    framer.receive_data(message("a", b"b" * 11))
    with pytest.raises(SIPParseError, match="body of 11 bytes larger than 10 bytes"):
        framer.next_event()
    with pytest.raises(ValueError):
        SIPStreamFramer(max_header_size=0)


def test_end_of_stream() -> None:
    framer = SIPStreamFramer()
    framer.receive_data(message("a"))
    framer.receive_data(b"")
    assert isinstance(framer.next_event(), SIPRequest)
    assert framer.next_event() is None
    framer = SIPStreamFramer()
    framer.receive_data(message("a")[:30])
    framer.receive_data(b"")
    with pytest.raises(SIPParseError, match="closed in the middle of a message"):
        framer.next_event()


def test_bare_lf_framing() -> None:
    framer = SIPStreamFramer()
    framer.receive_data(message("lf", b"body").replace(b"\r\n", b"\n"))
    (event,) = drain(framer)
    assert event.call_id == "lf" and event.body == b"body"  # type: ignore[attr-defined]
