"""Chunk producers and incoming-message bookkeeping."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipsimple.msrp import (
    MSRPURI,
    ByteRange,
    ByteRanges,
    FileRegion,
    IncomingMessage,
    MSRPData,
    MSRPParseError,
    OutgoingMessage,
)

A = MSRPURI.parse("msrp://a.example:1/a;tcp")
B = MSRPURI.parse("msrp://b.example:2/b;tcp")


def counter():
    state = {"n": 0}

    def make():
        state["n"] += 1
        return f"tid{state['n']:04d}"

    return make


def test_in_memory_message_chunks():
    message = OutgoingMessage("msg1", "text/plain", b"0123456789", chunk_size=4)
    make = counter()
    chunks = []
    while message.ready:
        chunks.append(message.next_chunk([B], [A], make))
    assert [(c.byte_range, c.contflag, c.data) for c in chunks] == [
        (ByteRange(1, 4, 10), "+", b"0123"),
        (ByteRange(5, 8, 10), "+", b"4567"),
        (ByteRange(9, 10, 10), "$", b"89"),
    ]
    assert message.done and message.chunks_sent == 3
    assert [c.transaction_id for c in chunks] == ["tid0001", "tid0002", "tid0003"]
    assert chunks[0].to_path == [B] and chunks[0].message_id == "msg1"


def test_empty_message_is_one_empty_chunk():
    message = OutgoingMessage("msg1", "text/plain", b"")
    chunk = message.next_chunk([B], [A], counter())
    assert chunk.byte_range == ByteRange(1, 0, 0) and chunk.contflag == "$" and message.done
    assert b"Content-Type: text/plain\r\n\r\n\r\n-------" in chunk.encode()


def test_report_headers_and_resume():
    message = OutgoingMessage(
        "msg1", "text/plain", b"abc", success_report="yes", failure_report="partial", start=11
    )
    chunk = message.next_chunk([B], [A], counter())
    assert chunk.success_report == "yes" and chunk.failure_report == "partial"
    assert chunk.byte_range == ByteRange(11, 13, 13)


def test_transaction_id_never_appears_in_the_body():
    ids = iter(["aaaa", "bbbb"])
    message = OutgoingMessage("msg1", "text/plain", b"x-------aaaa$")
    assert message.next_chunk([B], [A], lambda: next(ids)).transaction_id == "bbbb"


def test_streamed_message_with_unknown_size():
    message = OutgoingMessage("msg1", None, size=None, chunk_size=3)
    assert message.wants_data and not message.ready
    message.feed(b"abcdefg")
    assert not message.wants_data and message.ready
    make = counter()
    first = message.next_chunk([B], [A], make)
    assert first.byte_range == ByteRange(1, 3, None) and first.contflag == "+"
    message.next_chunk([B], [A], make)
    assert not message.ready  # one byte left, more may come
    message.finish()
    last = message.next_chunk([B], [A], make)
    assert (last.byte_range, last.contflag, last.data) == (ByteRange(7, 7, None), "$", b"g")
    with pytest.raises(ValueError):
        message.next_chunk([B], [A], make)


def test_streamed_size_mismatch_and_misuse():
    message = OutgoingMessage("msg1", "x/y", size=5)
    message.feed(b"abc")
    message.finish()
    with pytest.raises(ValueError):
        message.next_chunk([B], [A], counter())
    with pytest.raises(ValueError):
        message.feed(b"more")
    with pytest.raises(ValueError):
        OutgoingMessage("m", "x/y", b"", chunk_size=0)


def test_abort_chunk():
    message = OutgoingMessage("msg1", "text/plain", b"0123456789", chunk_size=4)
    make = counter()
    message.next_chunk([B], [A], make)
    abort = message.abort_chunk([B], [A], make)
    assert abort.contflag == "#" and abort.byte_range == ByteRange(5, 4, 10) and message.done


def test_byte_ranges():
    ranges = ByteRanges()
    assert ranges.add(5, 9) == 5
    assert ranges.add(1, 2) == 2
    assert ranges.add(3, 4) == 2  # fills the gap: one interval now
    assert list(ranges) == [(1, 9)]
    assert ranges.add(2, 12) == 3
    assert ranges.covers(1, 12) and not ranges.covers(1, 13)
    assert ranges.add(20, 19) == 0 and ranges.size == 12


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 60), st.integers(0, 15)), max_size=20))
def test_byte_ranges_match_a_set(intervals):
    ranges, reference = ByteRanges(), set()
    for start, length in intervals:
        end = start + length - 1
        new = set(range(start, end + 1)) - reference
        assert ranges.add(start, end) == len(new)
        reference |= new
    assert ranges.size == len(reference)
    for start in range(1, 70):
        for end in range(start, min(start + 10, 80)):
            assert ranges.covers(start, end) == (set(range(start, end + 1)) <= reference)


def test_incoming_message():
    message = IncomingMessage("m1", "text/plain", None, keep_data=True)
    message.write(6, b"world")
    assert not message.complete
    message.write(1, b"hello")
    message.finish(10)
    assert message.complete and message.data == b"helloworld"
    with pytest.raises(MSRPParseError):
        message.write(9, b"xyz")  # past the total the final chunk fixed


def test_incoming_message_limits():
    with pytest.raises(MSRPParseError) as error:
        IncomingMessage("m1", "text/plain", 1000, keep_data=True, max_size=100)
    assert error.value.code == 413
    message = IncomingMessage("m1", "text/plain", None, keep_data=True, max_size=100)
    with pytest.raises(MSRPParseError) as error:
        message.write(90, b"x" * 20)
    assert error.value.code == 413
    message = IncomingMessage("m1", "text/plain", 10, keep_data=False)
    with pytest.raises(MSRPParseError) as error:
        message.announce(ByteRange(1, 5, 11))
    assert error.value.code == 400
    with pytest.raises(MSRPParseError):
        message.finish(9)


# -- fed pieces -------------------------------------------------------------------------


def test_a_chunk_that_is_one_fed_piece_is_not_copied():
    message = OutgoingMessage("msg1", "x/y", size=8, chunk_size=4)
    first, second = b"abcd", b"efgh"
    message.feed(first)
    message.feed(second)
    message.finish()
    make = counter()
    assert message.next_chunk([B], [A], make).data is first
    assert message.next_chunk([B], [A], make).data is second
    assert message.done and message.buffered == 0


def test_extra_headers_are_checked_once_and_keep_their_place():
    with pytest.raises(ValueError):
        OutgoingMessage("msg1", "text/plain", b"x", headers={"X-Bad": "a\r\nb"})
    with pytest.raises(ValueError):
        OutgoingMessage("msg1", "text/plain\r\nX: y", b"x")
    message = OutgoingMessage("msg1", "text/plain", b"x", headers={"content-disposition": "inline"})
    raw = message.next_chunk([B], [A], counter()).encode()
    names = [line.split(b":")[0] for line in raw.split(b"\r\n")[1:7]]
    assert names == [
        b"To-Path",
        b"From-Path",
        b"Message-ID",
        b"Byte-Range",
        b"Content-Disposition",
        b"Content-Type",
    ]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.binary(min_size=0, max_size=40), max_size=12),
    st.integers(1, 50),
    st.data(),
)
def test_chunks_of_fed_pieces_rebuild_the_data(pieces, chunk_size, data):
    whole = b"".join(pieces)
    message = OutgoingMessage("msg1", "x/y", size=len(whole), chunk_size=chunk_size)
    make = counter()
    chunks = []
    fed = 0
    for piece in pieces:
        message.feed(piece)
        fed += len(piece)
        assert message.buffered == fed - sum(len(c.data) for c in chunks)
        while message.ready and data.draw(st.booleans()):
            chunks.append(message.next_chunk([B], [A], make))
    message.finish()
    while message.ready:
        chunks.append(message.next_chunk([B], [A], make))
    assert b"".join(c.data for c in chunks) == whole
    position = 1
    for chunk in chunks:
        assert chunk.byte_range == ByteRange(position, position + len(chunk.data) - 1, len(whole))
        assert len(chunk.data) <= chunk_size
        position += len(chunk.data)
    assert [c.contflag for c in chunks] == ["+"] * (len(chunks) - 1) + ["$"]


# -- file regions ------------------------------------------------------------------------


@pytest.fixture
def data_file(tmp_path):
    data = bytes(range(256)) * 40  # 10240 bytes
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    with open(path, "rb") as file:
        yield file.fileno(), data


def test_a_chunk_within_a_file_region_is_a_region(data_file):
    fd, data = data_file
    message = OutgoingMessage("msg1", "x/y", size=7000, chunk_size=4096, start=1001)
    region = FileRegion(fd, 1000, 6000)
    message.feed(region)
    message.finish()
    make = counter()
    first = message.next_chunk([B], [A], make)
    second = message.next_chunk([B], [A], make)
    assert type(first.data) is FileRegion and type(second.data) is FileRegion
    assert (first.data.offset, first.data.count) == (1000, 4096)
    assert (second.data.offset, second.data.count) == (5096, 1904)
    assert first.byte_range == ByteRange(1001, 5096, 7000) and second.contflag == "$"
    # data_to_send()/encode() read it: the same bytes as a frame built from them
    assert first.encode() == _same_frame(first, data[1000:5096]).encode()


def test_a_chunk_spanning_a_region_and_bytes_reads_the_region(data_file):
    fd, data = data_file
    message = OutgoingMessage("msg1", "x/y", size=3000, chunk_size=2500)
    message.feed(b"x" * 1000)
    message.feed(FileRegion(fd, 0, 2000))
    message.finish()
    make = counter()
    chunks = [message.next_chunk([B], [A], make), message.next_chunk([B], [A], make)]
    assert chunks[0].data == b"x" * 1000 + data[:1500]
    assert type(chunks[1].data) is FileRegion and chunks[1].data.read() == data[1500:2000]


def test_a_predictable_transaction_id_is_checked_against_the_file(tmp_path):
    ids = iter(["aaaa", "bbbb"])
    data = b"\r\n-------aaaa$\r\n" + b"z" * 100
    (tmp_path / "body").write_bytes(data)
    with open(tmp_path / "body", "rb") as file:
        message = OutgoingMessage("msg1", "x/y", size=len(data), chunk_size=4096)
        message.feed(FileRegion(file.fileno(), 0, len(data)))
        message.finish()
        assert message.next_chunk([B], [A], lambda: next(ids)).transaction_id == "bbbb"


def test_file_region_bounds(data_file):
    fd, data = data_file
    assert FileRegion(fd, 10000, 240).read() == data[10000:]
    with pytest.raises(OSError):
        FileRegion(fd, 10000, 241).read()
    with pytest.raises(ValueError):
        FileRegion(fd, -1, 10)


def _same_frame(chunk, body):
    frame = MSRPData(chunk.transaction_id, method="SEND", contflag=chunk.contflag, data=body)
    frame.headers = dict(chunk.headers)
    return frame
