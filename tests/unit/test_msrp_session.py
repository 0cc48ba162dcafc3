"""The sans-IO MSRP session machine: two sessions talking, and hand-made frames."""

import os
import random

import pytest

from sipsimple.msrp import (
    MSRPURI,
    ByteRange,
    FileRegion,
    FrameStarted,
    MessageAborted,
    MessageDataReceived,
    MessageDeliveryFailed,
    MessageReceived,
    MessageSent,
    MSRPData,
    MSRPParser,
    MSRPSession,
    OutgoingMessage,
    ProtocolError,
    ReportReceived,
    ResponseReceived,
    Status,
    TransactionTimedOut,
    make_id,
)
from sipsimple.msrp.session import content_type_matches

A = MSRPURI.parse("msrp://alice.example.com:7777/iau39soe2843z;tcp")
B = MSRPURI.parse("msrp://bob.example.com:8888/9di4eae923wzd;tcp")


def pair(a_options=None, b_options=None):
    a = MSRPSession(A, [B], active=True, **(a_options or {}))
    b = MSRPSession(B, [A], active=False, **(b_options or {}))
    return a, b


def pump(a, b, now=0.0):
    for _ in range(10000):
        data_a = a.data_to_send(now)
        if data_a:
            b.receive_data(data_a, now)
        data_b = b.data_to_send(now)
        if data_b:
            a.receive_data(data_b, now)
        if not data_a and not data_b:
            return
    raise AssertionError("sessions never went quiet")


def events(session):
    out = []
    while (event := session.next_event()) is not None:
        out.append(event)
    return out


def of(kind, event_list):
    return [e for e in event_list if isinstance(e, kind)]


def frames(data: bytes) -> list[MSRPData]:
    """Whole frames in ``data`` (bodies joined)."""
    return [MSRPData.parse(raw) for raw in _split(data)]


def _split(data: bytes):
    parser = MSRPParser()
    start = 0
    for event in parser.feed(data):
        if type(event).__name__ == "FrameEnded":
            end = data.index(b"-------" + event.frame.transaction_id.encode(), start)
            end = data.index(b"\r\n", end) + 2
            yield data[start:end]
            start = end


def chunks_of(body: bytes, size: int, message_id="msg1234", content_type="text/plain", **kw):
    message = OutgoingMessage(message_id, content_type, body, chunk_size=size, **kw)
    out = []
    while message.ready:
        out.append(message.next_chunk([B], [A], make_id))
    return out


# -- delivery -----------------------------------------------------------------------------


def test_chat_message_with_success_report():
    a, b = pair()
    message = a.send_message("Hello Bob ✓".encode(), "text/plain", success_report="yes")
    pump(a, b)
    received = of(MessageReceived, events(b))
    assert len(received) == 1
    assert received[0].data == "Hello Bob ✓".encode() and received[0].content_type == "text/plain"
    assert received[0].message_id == message.message_id
    sent = events(a)
    assert [type(e) for e in sent] == [MessageSent, ResponseReceived, ReportReceived]
    assert sent[1].code == 200 and sent[1].byte_range == ByteRange(1, 13, 13)
    assert sent[2].code == 200 and sent[2].byte_range == ByteRange(1, 13, 13)


def test_report_and_response_paths():
    a, b = pair()
    a.send_message(b"x", "text/plain", success_report="yes")
    b.receive_data(a.data_to_send(0), 0)
    response, report = frames(b.data_to_send(0))
    assert response.code == 200 and response.to_path == [A] and response.from_path == [B]
    assert report.method == "REPORT" and report.to_path == [A] and report.from_path == [B]
    assert report.status == Status(200, "OK") and report.byte_range == ByteRange(1, 1, 1)


def test_active_side_binds_the_connection_with_a_bodiless_send():
    a, b = pair()
    b.send_message(b"from bob", "text/plain")
    assert b.data_to_send(0) == b""  # the passive side waits for the first request
    (bind,) = frames(a.data_to_send(0))
    assert bind.method == "SEND" and bind.data == b"" and bind.content_type is None
    assert bind.byte_range == ByteRange(1, 0, 0)
    b.receive_data(bind.encode(), 0)
    assert events(b) == []  # not a message
    response, chunk = frames(b.data_to_send(0))
    assert response.code == 200 and chunk.data == b"from bob"
    assert a.data_to_send(0) == b""  # bound: no second bodiless SEND


def test_pieces_to_send_hand_out_fed_bodies_without_a_copy():
    a, b = pair({"chunk_size": 4096}, {"reassemble": False})
    blocks = [random.Random(n).randbytes(4096) for n in range(3)]
    message = a.send_message(None, "application/octet-stream", size=3 * 4096)
    for block in blocks:
        message.feed(block)
    message.finish()
    pieces = []
    while more := a.pieces_to_send(0):  # a chunk of each message per call
        pieces += more
    for block in blocks:
        assert any(piece is block for piece in pieces)
    b.receive_data(b"".join(pieces), 0)
    got = events(b)
    assert b"".join(e.data for e in of(MessageDataReceived, got)) == b"".join(blocks)
    assert of(MessageReceived, got)[0].size == 3 * 4096
    # the responses and the report the same way: data_to_send() is their join
    a2, b2 = pair()
    a2.send_message(b"hi", "text/plain", success_report="yes")
    b2.receive_data(a2.data_to_send(0), 0)
    response, report = frames(b"".join(b2.pieces_to_send(0)))
    assert response.code == 200 and report.method == "REPORT"
    assert report.status == Status(200, "OK") and report.byte_range == ByteRange(1, 2, 2)
    assert report.to_path == [A] and report.from_path == [B]
    assert b2.pieces_to_send(0) == [] and b2.data_to_send(0) == b""


def test_chunked_message_is_reassembled():
    body = bytes(random.Random(1).randrange(256) for _ in range(10000))
    a, b = pair({"chunk_size": 1000})
    a.send_message(body, "application/octet-stream")
    pump(a, b)
    assert [e.data for e in of(MessageReceived, events(b))] == [body]
    assert len(of(ResponseReceived, events(a))) == 10


def test_chat_message_is_not_stuck_behind_a_file():
    a, b = pair({"chunk_size": 1000}, {"reassemble": False})
    file = a.send_message(None, "application/octet-stream", size=20000)
    file.feed(b"f" * 20000)
    file.finish()
    b.receive_data(a.data_to_send(0), 0)  # the file starts first
    chat = a.send_message(b"hi", "text/plain")
    pump(a, b)
    received = [e.message_id for e in of(MessageReceived, events(b))]
    assert received == [chat.message_id, file.message_id]


def test_streamed_outgoing_message_with_unknown_size():
    a, b = pair({"chunk_size": 4}, {"reassemble": False})
    message = a.send_message(None, "application/octet-stream")
    assert message.wants_data
    message.feed(b"0123456")
    pump(a, b)
    got = events(b)
    assert [(e.offset, e.data, e.total) for e in of(MessageDataReceived, got)] == [
        (0, b"0123", None)
    ]
    message.feed(b"789")
    message.finish()
    pump(a, b)
    got = events(b)
    assert [(e.offset, e.data) for e in of(MessageDataReceived, got)] == [(4, b"4567"), (8, b"89")]
    (done,) = of(MessageReceived, got)
    assert done.size == 10 and done.data is None


def test_out_of_order_and_duplicate_chunks():
    body = b"".join(b"%04d" % i for i in range(250))
    chunks = chunks_of(body, 97, success_report="yes")
    order = chunks + chunks[3:6]
    random.Random(7).shuffle(order)
    order.append(chunks[0])  # a duplicate after completion
    _, b = pair()
    for chunk in order:
        b.receive_data(chunk.encode(), 0)
    received = of(MessageReceived, events(b))
    assert len(received) == 1 and received[0].data == body
    replies = frames(b.data_to_send(0))
    assert [f.code for f in replies if f.code is not None] == [200] * len(order)
    (report,) = [f for f in replies if f.method == "REPORT"]
    assert report.byte_range == ByteRange(1, 1000, 1000)


def test_out_of_order_chunks_streamed_with_unknown_total():
    chunks = chunks_of(b"abcdefghij", 3)
    for chunk in chunks:
        chunk.set_header(
            "Byte-Range", ByteRange(chunk.byte_range.start, chunk.byte_range.end, None)
        )
    _, b = pair(b_options={"reassemble": False})
    for chunk in reversed(chunks):
        b.receive_data(chunk.encode(), 0)
    got = events(b)
    assert sorted((e.offset, e.data) for e in of(MessageDataReceived, got)) == [
        (0, b"abc"),
        (3, b"def"),
        (6, b"ghi"),
        (9, b"j"),
    ]
    assert of(MessageReceived, got)[0].size == 10


def test_chunk_beyond_total_size_is_refused():
    _, b = pair()
    chunk = chunks_of(b"0123456789", 10)[0]
    chunk.set_header("Byte-Range", "1-*/5")
    b.receive_data(chunk.encode(), 0)
    (response,) = frames(b.data_to_send(0))
    assert response.code == 400 and response.transaction_id == chunk.transaction_id
    (aborted,) = of(MessageAborted, events(b))
    assert aborted.code == 400


def test_inconsistent_byte_range_header_is_answered_400():
    _, b = pair()
    raw = chunks_of(b"0123456789", 10)[0].encode().replace(b"1-10/10", b"1-10/5")
    b.receive_data(raw, 0)
    (response,) = frames(b.data_to_send(0))
    assert response.code == 400
    assert isinstance(events(b)[0], ProtocolError)


def test_body_shorter_than_its_byte_range_is_refused():
    _, b = pair()
    chunk = chunks_of(b"01234", 10)[0]
    chunk.set_header("Byte-Range", "1-9/9")
    b.receive_data(chunk.encode(), 0)
    assert frames(b.data_to_send(0))[0].code == 400


def test_too_large_message_gets_413_and_sender_stops():
    a, b = pair({"chunk_size": 100}, {"max_message_size": 150})
    a.send_message(b"x" * 1000, "text/plain")
    pump(a, b)
    assert of(MessageAborted, events(b))[0].code == 413
    got = events(a)
    (failed,) = of(MessageDeliveryFailed, got)
    assert failed.code == 413
    assert len(of(ResponseReceived, got)) == 1  # nothing sent after the 413
    assert of(MessageSent, got) == []


def test_wrong_to_path_is_answered_481():
    a = MSRPSession(A, [MSRPURI.parse("msrp://bob.example.com:8888/other;tcp")])
    b = MSRPSession(B, [A], active=False)
    a.send_message(b"hi", "text/plain")
    pump(a, b)
    assert of(MessageReceived, events(b)) == []
    assert of(MessageDeliveryFailed, events(a))[0].code == 481


@pytest.mark.parametrize("method", ["AUTH", "NICKNAME", "FOO"])
def test_other_methods_are_answered_501(method):
    _, b = pair()
    request = MSRPData("abcd", method=method, headers={"To-Path": str(B), "From-Path": str(A)})
    b.receive_data(request.encode(), 0)
    assert frames(b.data_to_send(0))[0].code == 501


def test_unacceptable_content_type_is_answered_415():
    a, b = pair(b_options={"accept_types": ["message/cpim", "text/*"]})
    a.send_message(b"<x/>", "application/xml")
    a.send_message(b"ok", "text/plain")
    pump(a, b)
    assert [e.content_type for e in of(MessageReceived, events(b))] == ["text/plain"]
    assert of(MessageDeliveryFailed, events(a))[0].code == 415


def test_content_type_matching():
    assert content_type_matches("Text/Plain; charset=utf-8", ["text/*"])
    assert content_type_matches("image/png", ["*"])
    assert not content_type_matches("image/png", ["text/plain", "message/cpim"])


def test_failure_report_partial_and_no():
    _, b = pair()
    (ok_partial,) = chunks_of(b"a", 10, failure_report="partial")
    (ok_no,) = chunks_of(b"b", 10, message_id="msg5678", failure_report="no")
    (bad_no,) = chunks_of(b"c", 10, message_id="msg9999", failure_report="no", content_type="x/y")
    b.accept_types = ["text/plain"]
    for chunk in (ok_partial, ok_no, bad_no):
        b.receive_data(chunk.encode(), 0)
    assert b.data_to_send(0) == b""  # no 200 for partial, nothing at all for no
    (bad_partial,) = chunks_of(
        b"d", 10, message_id="msg0000", failure_report="partial", content_type="x/y"
    )
    b.receive_data(bad_partial.encode(), 0)
    assert frames(b.data_to_send(0))[0].code == 415


def test_transaction_timeout():
    a = MSRPSession(A, [B], chunk_size=2)
    a.send_message(b"abcd", "text/plain")
    a.data_to_send(10.0)
    assert a.get_timer() == 40.0
    a.handle_timer(39.9)
    assert events(a) == []
    a.handle_timer(40.0)
    got = events(a)
    assert [type(e) for e in got] == [TransactionTimedOut, MessageDeliveryFailed]
    assert got[1].code == 408
    assert a.data_to_send(41.0) == b""  # the rest of the message is not sent
    assert a.get_timer() is None


def test_a_file_region_chunk_is_timed_from_when_it_was_written(tmp_path):
    (tmp_path / "body").write_bytes(b"0123456789")
    a = MSRPSession(A, [B], chunk_size=8)
    with open(tmp_path / "body", "rb") as file:
        message = a.send_message(None, "x/y", size=10)
        region = FileRegion(file.fileno(), 0, 10)
        message.feed(region)
        message.finish()
        pieces = a.pieces_to_send(10.0)
        sent = [piece for piece in pieces if type(piece) is FileRegion]
        # the session's own part of the fed region, with the hook: the fed one is untouched
        assert len(sent) == 1 and sent[0] is not region and region.written is None
        assert (sent[0].offset, sent[0].count) == (0, 8)
        assert a.get_timer() == 40.0
        sent[0].written(35.0)  # a slow link: the chunk took 25 s to go out
        assert a.get_timer() == 65.0
        a.handle_timer(40.0)
        assert of(TransactionTimedOut, events(a)) == []
        a.handle_timer(65.0)
        assert [type(e) for e in events(a)] == [TransactionTimedOut, MessageDeliveryFailed]


def test_response_stops_the_timer_and_partial_has_no_timeout():
    a, b = pair()
    a.send_message(b"x", "text/plain")
    a.send_message(b"y", "text/plain", failure_report="partial")
    pump(a, b)
    assert a.get_timer() is not None  # the partial transaction is kept, silently
    a.handle_timer(100.0)
    assert of(TransactionTimedOut, events(a)) == []
    assert a.get_timer() is None


def test_received_abort_flag():
    chunks = chunks_of(b"0123456789", 4)
    _, b = pair()
    b.receive_data(chunks[0].encode(), 0)
    message = OutgoingMessage("msg1234", "text/plain", b"0123456789", chunk_size=4)
    message.next_chunk([B], [A], make_id)
    b.receive_data(message.abort_chunk([B], [A], make_id).encode(), 0)
    (aborted,) = of(MessageAborted, events(b))
    assert aborted.code is None and aborted.message_id == "msg1234"


def test_sender_abort_sends_hash_flag():
    a, b = pair({"chunk_size": 4})
    message = a.send_message(b"0123456789", "text/plain")
    b.receive_data(a.data_to_send(0), 0)
    a.abort_message(message.message_id)
    (abort,) = frames(a.data_to_send(0))
    assert abort.contflag == "#" and abort.byte_range.start == 5
    b.receive_data(abort.encode(), 0)
    assert of(MessageAborted, events(b))[0].code is None
    assert a.data_to_send(0) == b""


def test_reports_about_unknown_messages_are_ignored_and_failures_reported():
    a, b = pair()
    message = a.send_message(b"x", "text/plain")
    pump(a, b)
    events(a)
    for message_id, code in (("unknown1", 200), (message.message_id, 413)):
        report = MSRPData(make_id(), method="REPORT")
        report.set_header("To-Path", [A])
        report.set_header("From-Path", [B])
        report.set_header("Message-ID", message_id)
        report.set_header("Byte-Range", ByteRange(1, 1, 1))
        report.set_header("Status", Status(code, "Stop"))
        a.receive_data(report.encode(), 0)
    assert [(e.message_id, e.code) for e in events(a)] == [(message.message_id, 413)]
    assert a.data_to_send(0) == b""  # REPORTs are never answered


def test_malformed_request_is_answered_400_and_fatal_garbage_closes():
    _, b = pair()
    raw = (
        b"MSRP abcd SEND\r\nTo-Path: "
        + str(B).encode()
        + b"\r\nFrom-Path: "
        + str(A).encode()
        + b"\r\nByte-Range: 1-1/1\r\nContent-Type: text/plain\r\n\r\n"
        b"x\r\n-------abcd$\r\n"
    )  # no Message-ID
    b.receive_data(raw, 0)
    (response,) = frames(b.data_to_send(0))
    assert response.code == 400 and response.transaction_id == "abcd"
    (error,) = events(b)
    assert isinstance(error, ProtocolError) and not error.error.fatal
    b.receive_data(b"\x00\x01garbage\r\n", 0)
    assert events(b)[0].error.fatal and b.closed
    b.receive_data(chunks_of(b"x", 5)[0].encode(), 0)
    assert events(b) == []


def test_late_response_is_ignored():
    a = MSRPSession(A, [B])
    response = MSRPData("zzzz", code=200, headers={"To-Path": str(A), "From-Path": str(B)})
    a.receive_data(response.encode(), 0)
    assert events(a) == []


def test_use_path_goes_in_front_of_the_remote_path():
    relay = MSRPURI.parse("msrps://relay.example.com:9000/hjdhfha;tcp")
    a = MSRPSession(A, [B], use_path=[relay])
    a.send_message(b"x", "text/plain")
    (chunk,) = frames(a.data_to_send(0))
    assert chunk.to_path == [relay, B] and chunk.from_path == [A]


def test_send_message_argument_errors():
    a = MSRPSession(A, [B])
    a.send_message(b"x", "text/plain", message_id="fixed1")
    with pytest.raises(ValueError):
        a.send_message(b"x", "text/plain", message_id="fixed1")
    with pytest.raises(ValueError):
        a.send_message(b"x", "text/plain", success_report="maybe")
    with pytest.raises(ValueError):
        MSRPSession(A, [])


def test_incomplete_messages_are_bounded():
    _, b = pair(b_options={"max_incomplete_messages": 2})
    for number in range(3):
        first = chunks_of(b"0123456789", 5, message_id=f"msg{number:04d}")[0]
        b.receive_data(first.encode(), 0)
    codes = [f.code for f in frames(b.data_to_send(0))]
    assert codes == [200, 200, 413]


@pytest.mark.parametrize(
    ("body", "code", "comment"),
    [(b"hello", 200, "OK"), (b"", 415, "MIME Not Understood")],
)
def test_responses_are_what_the_frame_model_would_write(body, code, comment):
    a, b = pair(b_options={"accept_types": ["text/*"]})
    b.receive_data(a.data_to_send(0.0), 0.0)  # bind with the bodiless SEND
    b.data_to_send(0.0)
    content_type = "text/plain" if code == 200 else "image/png"
    chunk = chunks_of(body or b"x", 100, content_type=content_type)[0]
    b.receive_data(chunk.encode(), 0.0)
    expected = MSRPData(chunk.transaction_id, code=code, comment=comment)
    expected.set_header("To-Path", [A])
    expected.set_header("From-Path", [B])
    assert b.data_to_send(0.0) == expected.encode()


def test_chunks_carry_the_longest_transaction_ids_and_their_bodies_are_not_searched(tmp_path):
    # 32 characters: a receiver's search for the end-line skips further.  The id is
    # random, so the body is not searched for it either: a file region is not read
    # (its file is closed here, and reading it would fail).
    path = tmp_path / "data.bin"
    path.write_bytes(bytes(4096))
    with open(path, "rb") as file:
        fd = os.dup(file.fileno())
    os.close(fd)
    a, _ = pair()
    message = a.send_message(None, "application/octet-stream", size=4096)
    message.feed(FileRegion(fd, 0, 4096))
    message.finish()
    pieces = a.pieces_to_send(0.0)
    frames = MSRPParser().feed(b"".join(p for p in pieces if type(p) is bytes))
    tids = {event.frame.transaction_id for event in frames if isinstance(event, FrameStarted)}
    assert tids and all(len(tid) == 32 for tid in tids)
    assert any(type(piece) is FileRegion for piece in pieces)
