"""Splitting outgoing messages into SEND chunks and reassembling incoming ones.

``OutgoingMessage`` is the chunk producer for one message: the session asks each
ready message for one chunk in turn, so a chat message is never stuck behind a
file.  ``IncomingMessage`` tracks which bytes of a message arrived (chunks may come
out of order or twice) and, when asked to, keeps them in memory.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterator

from sipsimple.msrp.errors import MSRPParseError
from sipsimple.msrp.protocol import (
    Body,
    ByteRange,
    FileRegion,
    MSRPData,
    body_bytes,
    header_text,
    make_id,
    path_text,
    random_transaction_id,
)
from sipsimple.msrp.uri import MSRPURI

__all__ = ["DEFAULT_CHUNK_SIZE", "ByteRanges", "IncomingMessage", "OutgoingMessage"]

DEFAULT_CHUNK_SIZE = 2048
"""Body bytes per SEND chunk: small enough that a chat message waits little behind a file chunk."""


class ByteRanges:
    """A set of 1-based inclusive byte positions, kept as merged intervals."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []

    def add(self, start: int, end: int) -> int:
        """Add ``start..end``; returns how many of its bytes were not in the set yet."""
        if end < start:
            return 0
        starts, ends = self._starts, self._ends
        low = bisect_left(ends, start - 1)
        high = low
        overlap = 0
        new_start, new_end = start, end
        while high < len(starts) and starts[high] <= end + 1:
            overlap += max(0, min(end, ends[high]) - max(start, starts[high]) + 1)
            new_start = min(new_start, starts[high])
            new_end = max(new_end, ends[high])
            high += 1
        starts[low:high] = [new_start]
        ends[low:high] = [new_end]
        return end - start + 1 - overlap

    def covers(self, start: int, end: int) -> bool:
        """Whether every position of ``start..end`` is in the set (true when empty)."""
        if end < start:
            return True
        index = bisect_left(self._ends, end)
        return index < len(self._starts) and self._starts[index] <= start

    @property
    def size(self) -> int:
        return sum(e - s + 1 for s, e in zip(self._starts, self._ends, strict=True))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(zip(self._starts, self._ends, strict=True))

    def __repr__(self) -> str:
        return f"ByteRanges({list(self)})"


class IncomingMessage:
    """One message being received, possibly over several chunks.

    ``total`` is the size announced by Byte-Range (None for ``*``) until a final
    chunk fixes it.  Bytes past it are an error (MSRPParseError with code 400); a
    message larger than ``max_size`` is refused with 413.  With ``keep_data`` the
    bytes are kept (in place, so out-of-order chunks land where they belong).
    """

    def __init__(
        self,
        message_id: str,
        content_type: str | None,
        total: int | None,
        *,
        keep_data: bool,
        max_size: int | None = None,
    ) -> None:
        self.message_id = message_id
        self.content_type = content_type
        self.total = total
        self.max_size = max_size
        self.received = ByteRanges()
        self.aborted = False
        self._buffer = bytearray() if keep_data else None
        self._check_size(total or 0)

    def _check_size(self, size: int) -> None:
        if self.max_size is not None and size > self.max_size:
            raise MSRPParseError(
                f"message {self.message_id} is larger than {self.max_size} bytes", code=413
            )

    def announce(self, byte_range: ByteRange) -> None:
        """Check a new chunk's Byte-Range against what the message announced so far."""
        if byte_range.total is not None:
            if self.total is not None and byte_range.total != self.total:
                raise MSRPParseError(
                    f"Byte-Range total {byte_range.total} differs from the earlier {self.total}"
                )
            self._check_size(byte_range.total)
            self.total = byte_range.total

    def write(self, position: int, data: bytes) -> None:
        """Store ``data`` at 1-based ``position``."""
        end = position + len(data) - 1
        if self.total is not None and end > self.total:
            raise MSRPParseError(
                f"chunk of message {self.message_id} goes past its total size {self.total}"
            )
        self._check_size(end)
        self.received.add(position, end)
        buffer = self._buffer
        if buffer is not None and data:
            if end > len(buffer):
                buffer.extend(bytes(end - len(buffer)))
            buffer[position - 1 : end] = data

    def finish(self, end: int) -> None:
        """A chunk ending at ``end`` carried the ``$`` flag: the message is ``end`` bytes."""
        if self.total is not None and end != self.total:
            raise MSRPParseError(
                f"message {self.message_id} ended at byte {end}, not at its total {self.total}"
            )
        self.total = end

    @property
    def complete(self) -> bool:
        return self.total is not None and not self.aborted and self.received.covers(1, self.total)

    @property
    def data(self) -> bytes | None:
        """The message body once complete, when it was kept."""
        if self._buffer is None or not self.complete:
            return None
        return bytes(self._buffer)


class OutgoingMessage:
    """The chunk producer of one outgoing message.

    Give the whole body as ``data``, or stream it: leave ``data`` None, ``feed()``
    it (while ``wants_data``) and call ``finish()`` at its end; ``size`` is then
    the announced total (None sends ``*``).  ``start`` (1-based) resumes a body
    from the middle.  Each ``next_chunk()`` frames up to ``chunk_size`` bytes;
    ``abort_chunk()`` ends the message with the ``#`` flag.

    Fed data is kept as the pieces given: a chunk that is exactly one fed piece is
    sent without a copy, and no buffer is ever shifted.  A piece may be a
    FileRegion (a part of an open file): a chunk within one region is that region's
    part, sent by the connection from the file (see MSRPTransport.sends_file_regions);
    a chunk spanning several pieces reads its regions.
    """

    def __init__(
        self,
        message_id: str,
        content_type: str | None,
        data: bytes | None = None,
        *,
        size: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        success_report: str = "no",
        failure_report: str = "yes",
        headers: dict[str, str] | None = None,
        start: int = 1,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, not {chunk_size}")
        if success_report not in ("yes", "no"):
            raise ValueError(f"success_report must be 'yes' or 'no', not {success_report!r}")
        if failure_report not in ("yes", "no", "partial"):
            raise ValueError(
                f"failure_report must be 'yes', 'no' or 'partial', not {failure_report!r}"
            )
        if start < 1:
            raise ValueError(f"start is a 1-based byte position, not {start}")
        self.message_id = message_id
        self.content_type = content_type
        self.chunk_size = chunk_size
        self.success_report = success_report
        self.failure_report = failure_report
        self.headers = dict(headers or {})
        self.position = start
        self.chunks_sent = 0
        self.done = False
        self.aborted = False
        self.failed = False  # set by the session when a chunk got an error response
        # The fixed headers of every chunk, checked once here (canonical name -> text);
        # the report values were checked above.
        fixed: list[tuple[str, str]] = []
        if success_report != "no":
            fixed.append(("Success-Report", success_report))
        if failure_report != "yes":
            fixed.append(("Failure-Report", failure_report))
        fixed += [header_text(name, value) for name, value in self.headers.items()]
        if content_type is not None:
            fixed.append(header_text("Content-Type", content_type))
        self._message_id_text = header_text("Message-ID", message_id)[1]
        self._fixed = fixed
        self._own_byte_range = all(name != "Byte-Range" for name, _ in self._fixed)
        self._finished = data is not None
        self._pieces: deque[Body] = deque()
        self._head = 0  # bytes of the first piece already taken
        self._buffered = 0
        if data:
            self._pieces.append(bytes(data))
            self._buffered = len(data)
        if data is not None:
            size = start - 1 + len(data)
        self.size = size

    # -- feeding ---------------------------------------------------------------------

    def feed(self, data: bytes | FileRegion) -> None:
        if self._finished:
            raise ValueError("feed() after finish() or on a message given whole")
        if data:
            self._pieces.append(data if type(data) is FileRegion else bytes(data))
            self._buffered += len(data)

    def finish(self) -> None:
        self._finished = True

    @property
    def buffered(self) -> int:
        return self._buffered

    @property
    def wants_data(self) -> bool:
        """Whether a streamed message could use more data (two chunks are kept ready)."""
        return not self._finished and self.buffered < 2 * self.chunk_size

    @property
    def ready(self) -> bool:
        """Whether next_chunk() has a chunk to give."""
        if self.done:
            return False
        return self.buffered >= self.chunk_size or self._finished

    # -- chunks ----------------------------------------------------------------------

    def next_chunk(
        self,
        to_path: list[MSRPURI],
        from_path: list[MSRPURI],
        make_transaction_id: Callable[[], str],
    ) -> MSRPData:
        if not self.ready:
            raise ValueError(f"message {self.message_id} has no chunk ready")
        take = min(self.chunk_size, self._buffered)
        body = self._take(take)
        last = self._finished and self._buffered == 0
        if last and self.size is not None and self.position + take - 1 != self.size:
            raise ValueError(
                f"message {self.message_id} was announced as {self.size} bytes "
                f"but its data ends at byte {self.position + take - 1}"
            )
        return self._frame(to_path, from_path, make_transaction_id, body, "$" if last else "+")

    def _take(self, size: int) -> Body:
        pieces = self._pieces
        parts: list[bytes | memoryview | FileRegion] = []
        self._buffered -= size
        while size:
            piece = pieces[0]
            head = self._head
            left = len(piece) - head
            take = min(left, size)
            if not head and take == left:
                parts.append(piece)
            elif type(piece) is FileRegion:
                parts.append(piece.part(head, head + take))
            else:
                parts.append(memoryview(piece)[head : head + take])
            if take == left:
                pieces.popleft()
                self._head = 0
            else:
                self._head += take
            size -= take
        if len(parts) == 1 and type(parts[0]) is not memoryview:
            return parts[0]  # type: ignore[return-value]
        return b"".join(body_bytes(part) for part in parts)

    def abort_chunk(
        self,
        to_path: list[MSRPURI],
        from_path: list[MSRPURI],
        make_transaction_id: Callable[[], str],
    ) -> MSRPData:
        """An empty chunk with the ``#`` flag, telling the peer the message is abandoned."""
        if self.done:
            raise ValueError(f"message {self.message_id} is already complete")
        self.aborted = True
        return self._frame(to_path, from_path, make_transaction_id, b"", "#")

    def _frame(
        self,
        to_path: list[MSRPURI],
        from_path: list[MSRPURI],
        make_transaction_id: Callable[[], str],
        body: Body,
        contflag: str,
    ) -> MSRPData:
        end = self.position + len(body) - 1
        byte_range = ByteRange(self.position, end, self.size)
        headers = {
            "To-Path": path_text(tuple(to_path)),
            "From-Path": path_text(tuple(from_path)),
            "Message-ID": self._message_id_text,
            "Byte-Range": str(byte_range),
        }
        headers.update(self._fixed)
        text = None
        while True:
            transaction_id = make_transaction_id()
            # make_id() draws 80 random bits (random_transaction_id() 160) after the
            # body is fixed: the chance that the body holds its end-line is below
            # 2**-60, not worth a pass over the body.  Other generators may be
            # predictable, so their ids are checked.
            if make_transaction_id is random_transaction_id or make_transaction_id is make_id:
                break
            text = body_bytes(body) if text is None else text
            if ("-------" + transaction_id).encode() not in text:
                break
        frame = MSRPData(transaction_id, method="SEND", contflag=contflag)
        frame.headers = headers
        frame.data = body
        if self._own_byte_range:
            frame._cache["Byte-Range"] = byte_range  # spares the session parsing it back
        self.position = end + 1
        self.chunks_sent += 1
        if contflag != "+":
            self.done = True
            self._pieces.clear()
            self._head = 0
            self._buffered = 0
        return frame
