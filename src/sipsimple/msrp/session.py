"""The sans-IO machine of one MSRP session on a connection (RFC 4975 sections 5.3,
7 and 8; RFC 6135 connection binding).

Feed it what the connection received with ``receive_data(data, now)``, write what
``data_to_send(now)`` returns (or the pieces of ``pieces_to_send(now)``), call
``handle_timer(now)`` at ``get_timer()``, and read ``next_event()`` until it returns
None.  It checks paths (481), answers SENDs as their Failure-Report asks,
reassembles chunked messages (in any order, duplicates included), sends success
REPORTs, matches responses to its requests, times transactions out (408), and
interleaves the chunks of outgoing messages.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

from sipsimple.msrp.chunking import DEFAULT_CHUNK_SIZE, IncomingMessage, OutgoingMessage
from sipsimple.msrp.errors import MSRPParseError
from sipsimple.msrp.protocol import (
    REASONS,
    Body,
    ByteRange,
    FileRegion,
    FrameData,
    FrameEnded,
    FrameError,
    FrameStarted,
    MSRPData,
    MSRPParser,
    ParserEvent,
    Status,
    body_bytes,
    make_id,
    path_text,
    random_transaction_id,
)
from sipsimple.msrp.relay import RelayAuthentication, RelayEvent
from sipsimple.msrp.uri import MSRPURI

__all__ = [
    "MSRPSession",
    "MessageAborted",
    "MessageDataReceived",
    "MessageDeliveryFailed",
    "MessageReceived",
    "MessageSent",
    "ProtocolError",
    "ReportReceived",
    "ResponseReceived",
    "SessionEvent",
    "TransactionTimedOut",
    "content_type_matches",
]

DEFAULT_TRANSACTION_TIMEOUT = 30.0
"""Seconds to wait for the response to a SEND (RFC 4975 section 7.1.1)."""

_STATUS_OK = Status(200, "OK")
_REMEMBERED = 4096  # outgoing messages kept for their REPORTs, completed ids kept for duplicates


# -- events -----------------------------------------------------------------------------


@dataclass(slots=True)
class MessageReceived:
    """An incoming message is complete.  ``data`` is its body when the session
    reassembles messages, None when it streamed them as MessageDataReceived."""

    message_id: str
    content_type: str | None
    size: int
    data: bytes | None
    frame: MSRPData


@dataclass(slots=True)
class MessageDataReceived:
    """Body bytes of an incoming message at 0-based ``offset`` (streaming sessions)."""

    message_id: str
    content_type: str | None
    offset: int
    data: bytes
    total: int | None
    frame: MSRPData


@dataclass(slots=True)
class MessageAborted:
    """An incoming message will not complete: the sender ended it with ``#``
    (``code`` None) or the session refused it with ``code``."""

    message_id: str
    code: int | None
    comment: str | None
    frame: MSRPData


@dataclass(slots=True)
class MessageSent:
    """The last chunk of an outgoing message was handed out by data_to_send()."""

    message_id: str
    frame: MSRPData


@dataclass(slots=True)
class ResponseReceived:
    """The response to one of our SEND chunks (``byte_range`` is the chunk's)."""

    transaction_id: str
    message_id: str | None
    code: int
    comment: str | None
    byte_range: ByteRange | None
    frame: MSRPData


@dataclass(slots=True)
class TransactionTimedOut:
    transaction_id: str
    message_id: str | None


@dataclass(slots=True)
class MessageDeliveryFailed:
    """An outgoing message got an error response or timed out (code 408); the
    session sends no more of it."""

    message_id: str
    code: int
    comment: str | None
    frame: MSRPData | None


@dataclass(slots=True)
class ReportReceived:
    """A REPORT about one of our messages (success when ``code`` is 200)."""

    message_id: str
    code: int
    comment: str | None
    byte_range: ByteRange | None
    frame: MSRPData


@dataclass(slots=True)
class ProtocolError:
    """Malformed data from the peer; when ``error.fatal`` the connection must close."""

    error: MSRPParseError


SessionEvent = (
    MessageReceived
    | MessageDataReceived
    | MessageAborted
    | MessageSent
    | ResponseReceived
    | TransactionTimedOut
    | MessageDeliveryFailed
    | ReportReceived
    | ProtocolError
    | RelayEvent
)


def content_type_matches(content_type: str, patterns: Iterable[str]) -> bool:
    """Whether a MIME type matches one of ``patterns`` (``*``, ``type/*`` or exact)."""
    media = content_type.split(";", 1)[0].strip().lower()
    major = media.split("/", 1)[0]
    for pattern in patterns:
        pattern = pattern.strip().lower()
        if pattern in ("*", "*/*", media, f"{major}/*"):
            return True
    return False


@dataclass(slots=True)
class _Transaction:
    message_id: str | None
    byte_range: ByteRange | None
    deadline: float
    silent: bool  # Failure-Report partial: no 200 will come, so no timeout either


@dataclass(slots=True)
class _IncomingChunk:
    frame: MSRPData
    message: IncomingMessage | None  # None: bodiless SEND, or a request being skipped
    position: int
    skip: bool = False


class MSRPSession:
    """One MSRP session: ``local_uri`` is ours, ``remote_path`` the peer's a=path.

    ``use_path`` (from a relay's AUTH) goes in front of ``remote_path`` in the
    To-Path of our requests.  The ``active`` side (the one that opened the
    connection) sends first, a bodiless SEND if it has nothing else (RFC 4975
    section 5.4); the passive side sends no request before the peer's first one.
    With ``reassemble`` incoming messages are delivered whole in MessageReceived
    (and refused with 413 past ``max_message_size``), otherwise streamed as
    MessageDataReceived.  Incoming Content-Types must match ``accept_types`` (415).
    At most ``max_incomplete_messages`` incoming messages may be in progress at
    once; a chunk starting another one is refused with 413.
    A ``relay`` authentication keeps being refreshed on this connection.
    """

    def __init__(
        self,
        local_uri: MSRPURI,
        remote_path: list[MSRPURI],
        *,
        use_path: list[MSRPURI] | None = None,
        active: bool = True,
        reassemble: bool = True,
        accept_types: Iterable[str] = ("*",),
        max_message_size: int | None = 16 * 1024 * 1024,
        max_incomplete_messages: int = 64,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        transaction_timeout: float = DEFAULT_TRANSACTION_TIMEOUT,
        make_transaction_id: Callable[[], str] = random_transaction_id,
        make_message_id: Callable[[], str] = make_id,
        relay: RelayAuthentication | None = None,
        max_header_size: int = 16384,
        max_headers: int = 64,
    ) -> None:
        if not remote_path:
            raise ValueError("remote_path needs at least the peer's URI")
        self.local_uri = local_uri
        self.remote_path = list(remote_path)
        self.use_path = list(use_path or [])
        self.active = active
        self.reassemble = reassemble
        self.accept_types = list(accept_types)
        self.max_message_size = max_message_size
        self.max_incomplete_messages = max_incomplete_messages
        self.chunk_size = chunk_size
        self.transaction_timeout = transaction_timeout
        self.make_transaction_id = make_transaction_id
        self.make_message_id = make_message_id
        self.relay = relay
        self.closed = False
        self._parser = MSRPParser(max_header_size=max_header_size, max_headers=max_headers)
        self._bound = active
        self._sent_request = False
        self._control: list[Body] = []
        self._queue: deque[OutgoingMessage] = deque()
        self._outgoing: OrderedDict[str, OutgoingMessage] = OrderedDict()
        self._transactions: dict[str, _Transaction] = {}
        self._timers: list[tuple[float, str]] = []
        self._incoming: dict[str, IncomingMessage] = {}
        self._completed: OrderedDict[str, None] = OrderedDict()
        self._current: _IncomingChunk | None = None
        self._events: deque[SessionEvent] = deque()

    @property
    def to_path(self) -> list[MSRPURI]:
        """The To-Path of our requests."""
        return self.use_path + self.remote_path

    # -- outgoing messages ----------------------------------------------------------

    def send_message(
        self,
        data: bytes | None,
        content_type: str | None,
        *,
        message_id: str | None = None,
        size: int | None = None,
        success_report: str = "no",
        failure_report: str = "yes",
        headers: dict[str, str] | None = None,
        chunk_size: int | None = None,
        start: int = 1,
    ) -> OutgoingMessage:
        """Queue a message; give ``data`` whole, or None and feed the returned
        OutgoingMessage (see chunking.OutgoingMessage)."""
        message = OutgoingMessage(
            message_id or self.make_message_id(),
            content_type,
            data,
            size=size,
            chunk_size=chunk_size or self.chunk_size,
            success_report=success_report,
            failure_report=failure_report,
            headers=headers,
            start=start,
        )
        if message.message_id in self._outgoing:
            raise ValueError(f"message id {message.message_id} is already in use")
        self._queue.append(message)
        self._outgoing[message.message_id] = message
        while len(self._outgoing) > _REMEMBERED:
            self._outgoing.popitem(last=False)
        return message

    def abort_message(self, message_id: str) -> None:
        """Stop sending a message; a peer that got part of it is told with ``#``."""
        message = self._outgoing.get(message_id)
        if message is None or message.done or message.aborted:
            return
        if message in self._queue:
            self._queue.remove(message)
        if message.chunks_sent:
            chunk = message.abort_chunk(self.to_path, [self.local_uri], self.make_transaction_id)
            self._control.append(chunk.encode())
        else:
            message.aborted = True

    def data_to_send(self, now: float) -> bytes:
        """Responses and reports, then one chunk of each ready outgoing message."""
        return b"".join(body_bytes(piece) for piece in self.pieces_to_send(now))

    def pieces_to_send(self, now: float) -> list[Body]:
        """What data_to_send() joins, for a writer that writes each piece as it is:
        a chunk's body is the very object fed to its message, never copied (a
        FileRegion when one was fed, see OutgoingMessage)."""
        out = self._control
        self._control = []
        if self.relay is not None and (auth := self.relay.data_to_send()):
            out.append(auth)
        if self.closed or not self._bound:
            return out
        for _ in range(len(self._queue)):
            message = self._queue.popleft()
            if message.done or message.aborted:
                continue
            if not message.ready:
                self._queue.append(message)
                continue
            chunk = message.next_chunk(self.to_path, [self.local_uri], self.make_transaction_id)
            if type(chunk.data) is FileRegion:
                # A writer sending the file on its own may take long over a large chunk:
                # the wait for the response restarts once it says the chunk is out.
                chunk.data = chunk.data.part(0, len(chunk.data))
                chunk.data.written = partial(self._chunk_written, chunk.transaction_id)
            out += chunk._encode_parts(check_body=False)  # its id was picked to avoid the body
            self._start_transaction(chunk, message.message_id, message.failure_report, now)
            if message.done:
                self._events.append(MessageSent(message.message_id, chunk))
            else:
                self._queue.append(message)
        if self.active and not self._sent_request:
            frame = MSRPData(self.make_transaction_id(), method="SEND")
            frame.set_header("To-Path", self.to_path)
            frame.set_header("From-Path", [self.local_uri])
            frame.set_header("Message-ID", self.make_message_id())
            frame.set_header("Byte-Range", ByteRange(1, 0, 0))
            out.append(frame.encode())
            self._start_transaction(frame, None, "yes", now)
        return out

    def _start_transaction(
        self, frame: MSRPData, message_id: str | None, failure_report: str, now: float
    ) -> None:
        self._sent_request = True
        if failure_report == "no":
            return
        deadline = now + self.transaction_timeout
        tid = frame.transaction_id
        self._transactions[tid] = _Transaction(
            message_id, frame.byte_range, deadline, failure_report == "partial"
        )
        heapq.heappush(self._timers, (deadline, tid))

    def _chunk_written(self, transaction_id: str, now: float) -> None:
        transaction = self._transactions.get(transaction_id)
        if transaction is not None:
            transaction.deadline = now + self.transaction_timeout
            heapq.heappush(self._timers, (transaction.deadline, transaction_id))

    # -- timers ------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        timers = self._timers
        while timers and (
            timers[0][1] not in self._transactions
            or self._transactions[timers[0][1]].deadline != timers[0][0]
        ):
            heapq.heappop(timers)
        candidates = [timers[0][0]] if timers else []
        if self.relay is not None and (relay_timer := self.relay.get_timer()) is not None:
            candidates.append(relay_timer)
        return min(candidates) if candidates else None

    def handle_timer(self, now: float) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now:
            deadline, tid = heapq.heappop(timers)
            transaction = self._transactions.get(tid)
            if transaction is None or transaction.deadline != deadline:
                continue
            del self._transactions[tid]
            if transaction.silent:
                continue
            self._events.append(TransactionTimedOut(tid, transaction.message_id))
            self._fail_outgoing(transaction.message_id, 408, REASONS[408], None)
        if self.relay is not None:
            self.relay.handle_timer(now)
            self._pull_relay_events()

    def _fail_outgoing(
        self, message_id: str | None, code: int, comment: str | None, frame: MSRPData | None
    ) -> None:
        message = self._outgoing.get(message_id) if message_id is not None else None
        if message is None or message.failed:
            return
        message.failed = True
        if message in self._queue:
            self._queue.remove(message)
        self._events.append(MessageDeliveryFailed(message.message_id, code, comment, frame))

    # -- incoming data -------------------------------------------------------------------

    def next_event(self) -> SessionEvent | None:
        return self._events.popleft() if self._events else None

    def receive_data(self, data: bytes, now: float) -> None:
        if self.closed:
            return
        for event in self._parser.feed(data):
            self.handle_parser_event(event, now)

    def handle_parser_event(self, event: ParserEvent, now: float) -> None:
        """Take one event of a parser run by a connection that routes frames itself."""
        if isinstance(event, FrameData):
            self._chunk_data(event.data)
        elif isinstance(event, FrameStarted):
            frame = event.frame
            if frame.method is None:
                self._handle_response(frame, now)
            else:
                self._handle_request(frame)
        elif isinstance(event, FrameEnded):
            if event.frame.method is not None:
                self._chunk_end(event.frame)
        else:
            self._handle_error(event)

    def _handle_error(self, event: FrameError) -> None:
        self._current = None
        self._events.append(ProtocolError(event.error))
        if event.error.fatal:
            self.closed = True
            return
        frame = event.frame
        if frame is not None and frame.method is not None:
            try:
                self._respond(frame, event.error.code, str(event.error))
            except MSRPParseError:
                pass  # no usable From-Path or Failure-Report: nobody to answer

    def _respond(self, request: MSRPData, code: int, comment: str | None = None) -> None:
        if request.method == "REPORT" or request.failure_report == "no":
            return
        if code == 200 and request.failure_report == "partial":
            return
        from_path = request.from_path
        if not from_path:
            return
        # Formatted directly (what MSRPData.encode() gives): one per chunk received.
        tid = request.transaction_id
        comment = (comment or REASONS.get(code, "")).replace("\r", " ").replace("\n", " ")
        start = f"MSRP {tid} {code:03d} {comment}" if comment else f"MSRP {tid} {code:03d}"
        self._control.append(
            f"{start}\r\nTo-Path: {from_path[0]}\r\nFrom-Path: {self.local_uri}\r\n"
            f"-------{tid}$\r\n".encode()
        )

    def _handle_request(self, frame: MSRPData) -> None:
        self._current = _IncomingChunk(frame, None, 1, skip=True)
        if frame.to_path[0] != self.local_uri:
            self._respond(frame, 481)
            return
        self._bound = True
        if frame.method == "SEND":
            self._start_send(frame)
        elif frame.method == "REPORT":
            self._handle_report(frame)
        else:
            self._respond(frame, 501)

    def _handle_report(self, frame: MSRPData) -> None:
        message_id = frame.message_id
        status = frame.status
        if message_id not in self._outgoing or status is None:
            return  # RFC 4975 section 7.1.2: ignore reports about unknown messages
        self._events.append(
            ReportReceived(message_id, status.code, status.comment, frame.byte_range, frame)
        )

    def _start_send(self, frame: MSRPData) -> None:
        message_id = frame.message_id
        assert message_id is not None  # the parser checked it
        byte_range = frame.byte_range or ByteRange(1, None, None)
        content_type = frame.content_type
        current = self._current
        assert current is not None
        if message_id in self._completed:
            current.skip = False  # a duplicate of a delivered message: acknowledge, drop
            current.message = None
            current.position = byte_range.start
            self._completed.move_to_end(message_id)
            return
        if content_type is None:
            current.skip = False  # a bodiless SEND (keep-alive or connection binding)
            return
        if not content_type_matches(content_type, self.accept_types):
            self._refuse(frame, message_id, 415)
            return
        message = self._incoming.get(message_id)
        try:
            if message is None:
                if len(self._incoming) >= self.max_incomplete_messages:
                    raise MSRPParseError("too many incomplete messages", code=413)
                message = IncomingMessage(
                    message_id,
                    content_type,
                    byte_range.total,
                    keep_data=self.reassemble,
                    max_size=self.max_message_size if self.reassemble else None,
                )
                self._incoming[message_id] = message
            message.announce(byte_range)
        except MSRPParseError as error:
            self._refuse(frame, message_id, error.code, str(error))
            return
        current.message = message
        current.position = byte_range.start
        current.skip = False

    def _refuse(
        self, frame: MSRPData, message_id: str, code: int, comment: str | None = None
    ) -> None:
        self._respond(frame, code, comment)
        if self._current is not None:
            self._current.skip = True
        if self._incoming.pop(message_id, None) is not None or code in (413, 415):
            self._events.append(MessageAborted(message_id, code, comment, frame))

    def _chunk_data(self, data: bytes) -> None:
        current = self._current
        if current is None or current.skip:
            return
        frame = current.frame
        message = current.message
        if message is None:
            if frame.content_type is None and data:
                assert frame.message_id is not None
                self._refuse(frame, frame.message_id, 400, "body without a Content-Type")
            current.position += len(data)
            return
        byte_range = frame.byte_range
        end = current.position + len(data) - 1
        try:
            if byte_range is not None and byte_range.end is not None and end > byte_range.end:
                raise MSRPParseError(f"chunk body goes past its Byte-Range end {byte_range.end}")
            message.write(current.position, data)
        except MSRPParseError as error:
            self._refuse(frame, message.message_id, error.code, str(error))
            return
        if not self.reassemble:
            self._events.append(
                MessageDataReceived(
                    message.message_id,
                    message.content_type,
                    current.position - 1,
                    data,
                    message.total,
                    frame,
                )
            )
        current.position = end + 1

    def _chunk_end(self, frame: MSRPData) -> None:
        current = self._current
        self._current = None
        if current is None or current.skip:
            return
        message = current.message
        if message is None:
            self._respond(frame, 200)
            return
        end = current.position - 1
        byte_range = frame.byte_range
        try:
            if byte_range is not None and byte_range.end is not None and end != byte_range.end:
                raise MSRPParseError(f"chunk body ends at {end}, not at {byte_range.end}")
            if frame.contflag == "$":
                message.finish(end)
        except MSRPParseError as error:
            self._refuse(frame, message.message_id, error.code, str(error))
            return
        self._respond(frame, 200)
        if frame.contflag == "#":
            message.aborted = True
            del self._incoming[message.message_id]
            self._events.append(MessageAborted(message.message_id, None, None, frame))
            return
        if not message.complete:
            return
        assert message.total is not None
        del self._incoming[message.message_id]
        self._completed[message.message_id] = None
        while len(self._completed) > _REMEMBERED:
            self._completed.popitem(last=False)
        self._events.append(
            MessageReceived(
                message.message_id, message.content_type, message.total, message.data, frame
            )
        )
        if frame.success_report == "yes":
            self._report(frame, message.message_id, ByteRange(1, message.total, message.total))

    def _report(self, request: MSRPData, message_id: str, byte_range: ByteRange) -> None:
        # Formatted directly (what MSRPData.encode() gives): one per chat message.
        tid = self.make_transaction_id()
        self._control.append(
            f"MSRP {tid} REPORT\r\nTo-Path: {path_text(tuple(request.from_path))}\r\n"
            f"From-Path: {self.local_uri}\r\nMessage-ID: {message_id}\r\n"
            f"Byte-Range: {byte_range}\r\nStatus: {_STATUS_OK}\r\n-------{tid}$\r\n".encode()
        )

    def _handle_response(self, frame: MSRPData, now: float) -> None:
        self._current = None
        if self.relay is not None and self.relay.handle_response(frame, now):
            self._pull_relay_events()
            return
        transaction = self._transactions.pop(frame.transaction_id, None)
        if transaction is None:
            return  # a late response to a transaction that timed out, or garbage
        assert frame.code is not None
        self._events.append(
            ResponseReceived(
                frame.transaction_id,
                transaction.message_id,
                frame.code,
                frame.comment,
                transaction.byte_range,
                frame,
            )
        )
        if frame.code != 200:
            self._fail_outgoing(transaction.message_id, frame.code, frame.comment, frame)

    def _pull_relay_events(self) -> None:
        assert self.relay is not None
        while (event := self.relay.next_event()) is not None:
            self._events.append(event)
