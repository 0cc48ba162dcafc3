"""The MSRP frame model, serializer and incremental parser."""

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipsimple.msrp import (
    MSRPURI,
    ByteRange,
    FrameData,
    FrameEnded,
    FrameError,
    FrameStarted,
    MSRPData,
    MSRPParseError,
    MSRPParser,
    Status,
    make_id,
)
from sipsimple.msrp.protocol import format_auth_params, parse_auth_params

DATA = Path(__file__).resolve().parent.parent / "data" / "msrp"
A = MSRPURI.parse("msrp://alice.example.com:7777/iau39soe2843z;tcp")
B = MSRPURI.parse("msrp://bob.example.com:8888/9di4eae923wzd;tcp")


def load(name: str) -> bytes:
    return (DATA / name).read_bytes().replace(b"\n", b"\r\n")


def collect(events):
    """Whole frames (with bodies joined) and errors from parser events."""
    frames, body = [], {}
    for event in events:
        if isinstance(event, FrameStarted):
            body[id(event.frame)] = []
        elif isinstance(event, FrameData):
            body[id(event.frame)].append(event.data)
        elif isinstance(event, FrameEnded):
            frame = event.frame
            frames.append(
                (
                    frame.transaction_id,
                    frame.method,
                    frame.code,
                    frame.comment,
                    dict(frame.headers),
                    b"".join(body.pop(id(frame))),
                    frame.contflag,
                )
            )
        else:
            frames.append(("error", event.error.transaction_id, event.error.fatal))
    return frames


def feed_split(data: bytes, cuts) -> list:
    parser = MSRPParser()
    events, last = [], 0
    for cut in sorted(cuts):
        events += parser.feed(data[last:cut])
        last = cut
    events += parser.feed(data[last:])
    return events


# -- RFC examples ----------------------------------------------------------------------


def test_rfc4975_send():
    raw = load("rfc4975_send.msrp")
    frame = MSRPData.parse(raw)
    assert (frame.transaction_id, frame.method) == ("a786hjs2", "SEND")
    assert frame.to_path == [MSRPURI.parse("msrp://biloxi.example.com:12763/kjhd37s2s20w2a;tcp")]
    assert frame.message_id == "87652491"
    assert frame.byte_range == ByteRange(1, 23, 23)
    assert frame.content_type == "text/plain"
    assert frame.data == b"Hey Bob, are you there?"
    assert frame.contflag == "$"
    assert frame.success_report == "no" and frame.failure_report == "yes"
    assert frame.encode() == raw


def test_rfc4975_response():
    raw = load("rfc4975_send_response.msrp")
    frame = MSRPData.parse(raw)
    assert (frame.method, frame.code, frame.comment) == (None, 200, "OK")
    assert frame.encode() == raw


def test_rfc4975_chunks_and_report():
    events = MSRPParser().feed(load("rfc4975_chunks.msrp") + load("rfc4975_report.msrp"))
    frames = collect(events)
    assert [f[6] for f in frames] == ["+", "$", "$"]
    assert frames[0][5] + frames[1][5] == (
        b"Hi, I'm Alice! This is a long message that comes in two chunks, bye Bob."
    )
    report = [e.frame for e in events if isinstance(e, FrameEnded)][-1]
    assert report.status == Status(200, "OK")
    assert report.byte_range == ByteRange(1, 72, 72)


def test_rfc4975_bodiless_send():
    frame = MSRPData.parse(load("rfc4975_bodiless_send.msrp"))
    assert frame.data == b"" and frame.content_type is None
    assert frame.byte_range == ByteRange(1, 0, 0)
    assert frame.encode() == load("rfc4975_bodiless_send.msrp")


def test_rfc4976_auth_frames():
    auth = MSRPData.parse(load("rfc4976_auth.msrp"))
    assert auth.method == "AUTH"
    assert auth.to_path[0].user == "alice" and auth.to_path[0].session_id is None
    challenge = MSRPData.parse(load("rfc4976_auth_401.msrp"))
    assert challenge.get_header("WWW-Authenticate") == (
        "Digest",
        {
            "realm": "intra.example.com",
            "qop": "auth",
            "nonce": "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        },
    )
    ok = MSRPData.parse(load("rfc4976_auth_200.msrp"))
    assert ok.use_path == [MSRPURI.parse("msrps://relay.example.com:9000/hjdhfha;tcp")]
    assert ok.expires == 1800
    relayed = MSRPData.parse(load("rfc4976_relayed_send.msrp"))
    assert len(relayed.to_path) == 2 and relayed.data == b"Hi, how are you?"


# -- framing edge cases ------------------------------------------------------------------


def send(tid: str, body: bytes, flag: str = "$", **headers) -> MSRPData:
    frame = MSRPData(tid, method="SEND", data=body, contflag=flag)
    frame.set_header("To-Path", [B])
    frame.set_header("From-Path", [A])
    frame.set_header("Message-ID", "m1234")
    frame.set_header("Byte-Range", ByteRange(1, len(body), len(body)))
    for name, value in headers.items():
        frame.set_header(name.replace("_", "-"), value)
    frame.set_header("Content-Type", "application/octet-stream")
    return frame


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\r\n",
        b"-------abcd1235$\r\n",  # end-line of another transaction
        b"\r\n-------abcd123$\r\n",  # a prefix of this transaction id
        b"\r\n-------abcd12345$\r\n",  # a longer id
        b"x\r\n-------other$\r\n",
        b"\r\n-------abcd1234",  # only a prefix of the end-line
        b"\r\n\r\n\r\n",
        bytes(range(256)) * 4,
    ],
)
def test_bodies_that_look_like_end_lines(body):
    frame = send("abcd1234", body)
    raw = (
        frame.encode_start(with_body=True) + body + frame.encode_end()
    )  # encode() would refuse some
    parsed = MSRPData.parse(raw)
    assert parsed.data == body
    # and byte by byte
    assert collect(feed_split(raw, range(1, len(raw)))) == collect(MSRPParser().feed(raw))


def test_body_with_our_end_line_but_wrong_flag_is_body():
    raw = send("abcd1234", b"").encode_start(with_body=True) + (
        b"a\r\n-------abcd1234X\r\nb\r\n-------abcd1234+\r\n"
    )
    frame = MSRPData.parse(raw)
    assert frame.data == b"a\r\n-------abcd1234X\r\nb" and frame.contflag == "+"


def test_encode_refuses_a_body_containing_its_end_line():
    with pytest.raises(ValueError):
        send("abcd1234", b"x-------abcd1234$").encode()


def test_empty_body_directly_followed_by_end_line_is_accepted():
    start = send("abcd1234", b"").encode_start(with_body=True)
    frame = MSRPData.parse(start + b"-------abcd1234$\r\n")
    assert frame.data == b"" and frame.content_type == "application/octet-stream"


def test_header_order_on_the_wire():
    frame = MSRPData("abcd", method="SEND", data=b"x")
    frame.set_header("Content-Type", "text/plain")
    frame.set_header("Message-ID", "m1234")
    frame.set_header("From-Path", [A])
    frame.set_header("To-Path", [B])
    frame.set_header("Content-ID", "<x@y>")
    lines = frame.encode().split(b"\r\n")
    names = [line.split(b":")[0] for line in lines[1:6]]
    assert names == [b"To-Path", b"From-Path", b"Message-ID", b"Content-ID", b"Content-Type"]


def test_headers_are_case_insensitive_and_unknown_ones_kept():
    raw = (
        b"MSRP abcd SEND\r\nto-path: "
        + str(B).encode()
        + b"\r\nFROM-PATH: "
        + str(A).encode()
        + b"\r\nmessage-id: m1234\r\nX-Custom:  value with  spaces\r\n-------abcd$\r\n"
    )
    frame = MSRPData.parse(raw)
    assert frame.to_path == [B] and frame.message_id == "m1234"
    assert frame.get_header("x-custom") is None  # unknown names keep their spelling
    assert frame.headers["X-Custom"] == "value with  spaces"


def test_streaming_a_large_body_keeps_memory_bounded():
    body_size = 8 * 1024 * 1024
    frame = send("abcd1234", b"")
    frame.set_header("Byte-Range", ByteRange(1, body_size, body_size))
    parser = MSRPParser()
    events = parser.feed(frame.encode_start(with_body=True))
    assert [type(e) for e in events] == [FrameStarted]
    block = bytes(range(256)) * 256  # 64 KB
    received = 0
    for _ in range(body_size // len(block)):
        for event in parser.feed(block):
            assert isinstance(event, FrameData)
            received += len(event.data)
        assert parser.buffered < 64
        assert len(parser._buf) < 4 * len(block)
    events = parser.feed(frame.encode_end(with_body=True))
    assert isinstance(events[-1], FrameEnded)
    received += sum(len(e.data) for e in events if isinstance(e, FrameData))
    assert received == body_size


def test_leading_blank_lines_between_frames_are_skipped():
    raw = load("rfc4975_send_response.msrp")
    assert len(collect(MSRPParser().feed(b"\r\n\r\n" + raw + b"\r\n" + raw))) == 2


# -- errors and limits -------------------------------------------------------------------


def test_garbage_start_is_fatal_and_later_input_ignored():
    parser = MSRPParser()
    events = parser.feed(b"HELLO WORLD\r\n")
    assert len(events) == 1 and events[0].error.fatal and events[0].frame is None
    assert parser.feed(load("rfc4975_send.msrp")) == []


def test_garbage_is_noticed_without_waiting_for_a_line_end():
    events = MSRPParser().feed(b"\x16\x03\x01\x02\x00")  # a TLS ClientHello on a TCP port
    assert events[0].error.fatal


def test_start_line_with_known_tid_but_bad_method_is_recoverable():
    raw = b"MSRP abcd send\r\nTo-Path: " + str(B).encode() + b"\r\n-------abcd$\r\n"
    events = MSRPParser().feed(raw + load("rfc4975_send_response.msrp"))
    assert isinstance(events[0], FrameError)
    assert events[0].error.transaction_id == "abcd" and not events[0].error.fatal
    assert [type(e) for e in events[1:]] == [FrameStarted, FrameEnded]


def test_missing_to_path_gives_error_with_frame_and_stream_resyncs():
    raw = (
        b"MSRP abcd SEND\r\nFrom-Path: " + str(A).encode() + b"\r\nMessage-ID: m1\r\n"
        b"Content-Type: text/plain\r\n\r\nbody\r\n-------abcd$\r\n"
    )
    events = MSRPParser().feed(raw + load("rfc4975_send.msrp"))
    error = events[0]
    assert isinstance(error, FrameError) and error.error.code == 400
    assert error.frame.transaction_id == "abcd" and error.frame.from_path == [A]
    frames = collect(events[1:])
    assert frames[0][5] == b"Hey Bob, are you there?"


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b"Byte-Range: 5-1/10", "Byte-Range"),
        (b"Byte-Range: 1-20/10", "Byte-Range"),
        (b"Failure-Report: maybe", "Failure-Report"),
        (b"Expires: soon", "Expires"),
        (b"Message-ID: m1", "duplicate"),
        (b"Bad Header: x", "invalid header"),
        (b"NoColon", "invalid header"),
    ],
)
def test_bad_header_values(header, message):
    raw = (
        b"MSRP abcd SEND\r\nTo-Path: "
        + str(B).encode()
        + b"\r\nFrom-Path: "
        + str(A).encode()
        + b"\r\nMessage-ID: m1\r\n"
        + header
        + b"\r\n-------abcd$\r\n"
    )
    events = MSRPParser().feed(raw)
    assert len(events) == 1 and isinstance(events[0], FrameError)
    assert message in str(events[0].error) and not events[0].error.fatal
    with pytest.raises(MSRPParseError):
        MSRPData.parse(raw)


def test_header_count_limit():
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(10))
    raw = b"MSRP abcd SEND\r\n" + headers + b"\r\nbody\r\n-------abcd$\r\n"
    events = MSRPParser(max_headers=5).feed(raw + load("rfc4975_send_response.msrp"))
    assert "more than 5 headers" in str(events[0].error)
    assert [type(e) for e in events[1:]] == [FrameStarted, FrameEnded]


def test_header_size_limit():
    raw = b"MSRP abcd SEND\r\nX-Long: " + b"a" * 5000 + b"\r\n\r\nbody\r\n-------abcd$\r\n"
    parser = MSRPParser(max_header_size=1024)
    events = parser.feed(raw[:2000])
    assert "header size limit" in str(events[0].error) and not events[0].error.fatal
    assert parser.feed(raw[2000:] + load("rfc4975_send_response.msrp"))[-1].frame.code == 200


def test_overlong_start_line_is_fatal():
    events = MSRPParser(max_header_size=100).feed(b"MSRP " + b"a" * 200)
    assert events[0].error.fatal


def test_parse_rejects_partial_or_extra_input():
    raw = load("rfc4975_send.msrp")
    with pytest.raises(MSRPParseError):
        MSRPData.parse(raw[:-3])
    with pytest.raises(MSRPParseError):
        MSRPData.parse(raw + raw)


# -- small values ------------------------------------------------------------------------


def test_byte_range_and_status():
    assert str(ByteRange(1, None, None)) == "1-*/*"
    assert ByteRange.parse("3-*/10") == ByteRange(3, None, 10)
    assert ByteRange.parse("1-0/0") == ByteRange(1, 0, 0)
    for bad in ("0-1/1", "1-2", "a-b/c", "2-0/5", "12-12/10"):
        with pytest.raises(MSRPParseError):
            ByteRange.parse(bad)
    assert Status.parse("000 200 OK") == Status(200, "OK")
    assert str(Status(413)) == "000 413"
    with pytest.raises(MSRPParseError):
        Status.parse("200 OK")


def test_auth_params_round_trip():
    params = {"username": 'al"ice', "realm": "r", "nonce": "n", "qop": "auth", "nc": "00000001"}
    text = format_auth_params("Digest", params)
    assert 'username="al\\"ice"' in text and "qop=auth" in text
    assert parse_auth_params(text) == ("Digest", params)
    with pytest.raises(MSRPParseError):
        parse_auth_params('Digest realm="unterminated')


def test_make_id():
    ids = {make_id() for _ in range(100)}
    assert len(ids) == 100 and all(len(i) == 16 and i.isalnum() for i in ids)
    with pytest.raises(ValueError):
        make_id(3)


def test_frame_construction_errors():
    with pytest.raises(ValueError):
        MSRPData("abcd")
    with pytest.raises(ValueError):
        MSRPData("abcd", method="SEND", code=200)
    with pytest.raises(MSRPParseError):
        MSRPData("a b", method="SEND")
    frame = MSRPData("abcd", method="SEND")
    with pytest.raises(ValueError):
        frame.set_header("X-Evil", "a\r\nTo-Path: x")


# -- properties ------------------------------------------------------------------------

_idents = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=4, max_size=12)
_bodies = st.one_of(
    st.binary(max_size=300),
    st.lists(
        st.sampled_from([b"\r\n", b"-------", b"$", b"+", b"#", b"abc", b"-"]), max_size=30
    ).map(b"".join),
)


@st.composite
def frames(draw):
    tid = draw(_idents)
    if draw(st.booleans()):
        code = draw(st.sampled_from([200, 400, 408, 413, 481]))
        frame = MSRPData(tid, code=code, comment=draw(st.sampled_from([None, "OK", "Ünïcode"])))
        frame.set_header("To-Path", [A])
        frame.set_header("From-Path", [B])
        return frame
    body = draw(_bodies)
    if (b"-------" + tid.encode()) in body:
        body = body.replace(b"-------", b"")
    frame = MSRPData(tid, method="SEND", data=body, contflag=draw(st.sampled_from("$+#")))
    frame.set_header("To-Path", [B, A])
    frame.set_header("From-Path", [A])
    frame.set_header("Message-ID", draw(_idents))
    frame.set_header("Byte-Range", ByteRange(1, len(body), len(body)))
    if body or draw(st.booleans()):
        frame.set_header("Content-Type", "text/plain")
    return frame


@settings(max_examples=150, deadline=None)
@given(st.lists(frames(), min_size=1, max_size=5), st.data())
def test_frames_are_identical_however_the_stream_is_split(frame_list, data):
    raw = b"".join(frame.encode() for frame in frame_list)
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=20))
    assert collect(feed_split(raw, cuts)) == collect(MSRPParser().feed(raw))


@settings(max_examples=150, deadline=None)
@given(frames())
def test_serialize_parse_round_trip(frame):
    parsed = MSRPData.parse(frame.encode())
    assert parsed == frame


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_only_give_documented_events(data):
    for event in MSRPParser(max_header_size=256, max_headers=8).feed(data):
        assert isinstance(event, FrameStarted | FrameData | FrameEnded | FrameError)


@settings(max_examples=300, deadline=None)
@given(st.lists(frames(), min_size=1, max_size=3), st.data())
def test_mutated_streams_only_give_documented_events(frame_list, data):
    raw = bytearray(b"".join(frame.encode() for frame in frame_list))
    for _ in range(data.draw(st.integers(1, 5))):
        position = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["flip", "delete", "insert"]))
        if action == "flip":
            raw[position] = data.draw(st.integers(0, 255))
        elif action == "delete":
            del raw[position]
        else:
            raw[position:position] = data.draw(st.sampled_from([b"\r\n", b":", b" ", b"\xff"]))
        if not raw:
            break
    parser = MSRPParser()
    events = parser.feed(bytes(raw))
    for event in events:
        assert isinstance(event, FrameStarted | FrameData | FrameEnded | FrameError)
        if isinstance(event, FrameStarted):
            event.frame.validate()  # a started frame is always a valid one
    try:
        MSRPData.parse(bytes(raw))
    except MSRPParseError:
        pass


# -- how bodies leave the parser -------------------------------------------------------


def _body_parser() -> tuple[MSRPParser, MSRPData]:
    frame = send("abcd1234", b"")
    frame.set_header("Byte-Range", ByteRange(1, None, None))
    parser = MSRPParser()
    assert [type(e) for e in parser.feed(frame.encode_start(with_body=True))] == [FrameStarted]
    return parser, frame


def test_a_read_that_is_all_body_is_passed_on_without_a_copy():
    parser, _ = _body_parser()
    block = bytes(range(256)) * 16
    events = parser.feed(block)
    assert len(events) == 1 and events[0].data is block and parser.buffered == 0


@pytest.mark.parametrize(
    ("tail", "held"),
    [
        (b"x", 0),
        (b"\r", 1),
        (b"\r\n", 2),
        (b"\r\n-------abcd", 13),
        (b"\r\n-------abcd1234", 17),
        (b"\r\n-------abcX", 0),  # cannot become the end-line any more
        (b"\r\n-------abcd1234\r", 1),
        (b"\r\n\r\n--", 4),
    ],
)
def test_only_a_possible_start_of_the_end_line_is_held_back(tail, held):
    parser, _ = _body_parser()
    events = parser.feed(b"body" + tail)
    assert parser.buffered == held
    assert b"".join(e.data for e in events) == (b"body" + tail)[: len(b"body" + tail) - held]


def test_repeated_header_lines_parse_like_new_ones_and_the_cache_is_bounded():
    parser = MSRPParser()
    raw = b"".join(send(f"t{i:04d}", b"x", message_id=f"m{i:04d}").encode() for i in range(600))
    frames = collect(parser.feed(raw))
    assert [f[4]["Message-ID"] for f in frames] == [f"m{i:04d}" for i in range(600)]
    assert all(f[4]["To-Path"] == str(B) for f in frames)
    assert len(parser._lines) <= 256
    # a line that was fine once is still checked against the frame it is in
    again = send("t9999", b"x").encode().replace(b"Message-ID: m1234", b"Message-ID: m0599")
    duplicate = again.replace(b"\r\n\r\n", b"\r\nMessage-ID: m0599\r\n\r\n", 1)
    events = parser.feed(duplicate)
    assert isinstance(events[0], FrameError) and "duplicate" in str(events[0].error)


def test_make_id_alphabet_and_lengths():
    for length in (4, 16, 32):
        ident = make_id(length)
        assert len(ident) == length and set(ident) <= set("abcdefghijklmnopqrstuvwxyz012345")


def test_typed_values_from_cached_lines_are_not_shared_between_frames():
    parser = MSRPParser()
    raw = send("t0001", b"x").encode() + send("t0002", b"y").encode()
    first, second = (e.frame for e in parser.feed(raw) if isinstance(e, FrameStarted))
    assert first.to_path == second.to_path == [B]
    first.to_path.append(A)
    assert second.to_path == [B]
    assert first.content_type == second.content_type == "application/octet-stream"


def test_a_bad_value_on_a_cached_line_is_reported_every_time():
    bad = send("t0001", b"x").encode().replace(b"\r\n\r\n", b"\r\nFailure-Report: maybe\r\n\r\n", 1)
    parser = MSRPParser()
    for tid in ("t0001", "t0002"):
        events = parser.feed(bad.replace(b"t0001", tid.encode()))
        assert isinstance(events[0], FrameError) and "Failure-Report" in str(events[0].error)
        assert events[0].error.transaction_id == tid


def test_a_chunk_ends_at_its_end_line_not_where_its_byte_range_says():
    # RFC 4975 section 7.1: a sender may interrupt a chunk (to let another message
    # through); its end-line then comes before the Byte-Range end.  The body ends at
    # the first end-line, and the end is told as soon as the end-line is in, with
    # nothing after it: a parser that trusted the Byte-Range (and waited for the
    # bytes it announces) would hold the frames behind it until more data came.
    body = bytes(range(256)) * 400  # 102400 bytes
    first = send("abcd1234", body[:40000], "+")
    first.set_header("Byte-Range", ByteRange(1, len(body), len(body)))
    wire = first.encode()
    chat = send("chat0001", b"hello")
    rest = send("efgh5678", body[40000:])
    rest.set_header("Byte-Range", ByteRange(40001, len(body), len(body)))
    parser = MSRPParser()
    events = []
    for start in range(0, len(wire), 4096):  # the interrupted chunk in reads
        events += parser.feed(wire[start : start + 4096])
    assert isinstance(events[-1], FrameEnded) and events[-1].frame.contflag == "+"
    events += parser.feed(chat.encode() + rest.encode())
    frames = collect(events)
    assert [(f[0], f[5], f[6]) for f in frames] == [
        ("abcd1234", body[:40000], "+"),
        ("chat0001", b"hello", "$"),
        ("efgh5678", body[40000:], "$"),
    ]


def test_a_chunk_whose_end_line_is_past_its_byte_range_end_is_still_framed_by_it():
    body = bytes(range(256)) * 64
    frame = send("abcd1234", body)
    frame.set_header("Byte-Range", ByteRange(1, 1000, len(body)))  # says 1000 bytes
    wire = frame.encode() + send("next0001", b"after").encode()
    for cut in (0, 999, 1000, 1001, 1010, len(body), len(wire) - 3):
        frames = collect(feed_split(wire, [cut]))
        assert [(f[0], f[5]) for f in frames] == [("abcd1234", body), ("next0001", b"after")]
