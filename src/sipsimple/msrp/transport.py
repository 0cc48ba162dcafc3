"""MSRP sessions over asyncio TCP and TLS connections (RFC 4975, relays RFC 4976,
connection setup RFC 6135).

This module only moves bytes and fires timers; the protocol is the sans-IO
:class:`~sipsimple.msrp.session.MSRPSession`.  There are three ways to get an
:class:`MSRPTransport` (one session on one connection), matching who opens the
connection:

- the active side connects to the first URI of the peer's path::

      transport = await connect(local_uri, remote_path, ssl=context)

- the passive side listens, hands out a URI per session, and waits for the peer's
  connection, which it recognises by the session-id of the first request's To-Path
  (RFC 4975 section 5.4; a connection for no expected session gets 481)::

      listener = await MSRPListener.start("127.0.0.1", 0, ssl=server_context)
      local_uri = listener.new_uri()
      acceptor = listener.expect(local_uri)       # before the URI goes into SDP
      ...                                         # offer/answer
      transport = await acceptor.accept(remote_path, timeout=30)

- through a relay (RFC 4976): connect and authenticate first, put ``relay.path``
  in the SDP, then start the session on that connection::

      relay = await connect_relay(relay_uri, local_uri, authorize, ssl=context)
      ...                                         # offer/answer with relay.path
      transport = relay.start_session(remote_path, active=True)

Who is active comes from a=setup (:func:`answer_setup`, :func:`connects`).

Use the transport with ``send_message()`` (a whole body), ``await send_stream()``
(a body from an iterable, read only as fast as the peer takes it), and ``async for
event in transport`` (the session's events, then :class:`TransportClosed`).  Memory
stays bounded both ways: a sender waits while the connection's write buffer is
above ``write_buffer_size`` (and the kernel keeps at most ``kernel_unsent_limit``
bytes unsent, KERNEL_UNSENT_LIMIT unless a connection that carries only a file lifts
the limit with None), and reading stops while more than ``max_queued_bytes`` of
received data wait in the event queue.  A FileRegion body goes out with os.sendfile
on a plain TCP connection (``sends_file_regions``).  Keyword arguments not listed go
to MSRPSession (``chunk_size``, ``reassemble``, ``accept_types``,
``max_message_size``, ``transaction_timeout`` ...).

A ``trace`` hook, ``trace(direction, local_address, remote_address, data)`` with
direction ``"incoming"`` or ``"outgoing"``, sees every byte read or written (the
stream layer turns it into MSRPTransportTrace).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl as _ssl
from collections import deque
from collections.abc import AsyncIterable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sipsimple.msrp.chunking import OutgoingMessage
from sipsimple.msrp.errors import MSRPError, MSRPStateError
from sipsimple.msrp.protocol import (
    REASONS,
    Body,
    FileRegion,
    FrameData,
    FrameEnded,
    FrameError,
    FrameStarted,
    MSRPData,
    MSRPParser,
    ParserEvent,
    body_bytes,
    make_id,
)
from sipsimple.msrp.relay import (
    Authorize,
    RelayAuthenticated,
    RelayAuthentication,
    RelayAuthenticationFailed,
)
from sipsimple.msrp.session import (
    MessageDataReceived,
    MessageReceived,
    MSRPSession,
    ProtocolError,
    SessionEvent,
)
from sipsimple.msrp.uri import MSRPURI

__all__ = [
    "DEFAULT_MAX_QUEUED_BYTES",
    "DEFAULT_WRITE_BUFFER_SIZE",
    "KERNEL_UNSENT_LIMIT",
    "MSRPAcceptor",
    "MSRPConnectionError",
    "MSRPListener",
    "MSRPRelayConnection",
    "MSRPRelayError",
    "MSRPTransport",
    "MSRPTransportError",
    "TraceHook",
    "TransportClosed",
    "TransportEvent",
    "answer_setup",
    "connect",
    "connect_relay",
    "connects",
]

_log = logging.getLogger(__name__)

Address = tuple[Any, ...]
TraceHook = Callable[[str, Address | None, Address | None, bytes], None]
"""``trace(direction, local_address, remote_address, data)``; direction is
``"incoming"`` or ``"outgoing"``."""

DEFAULT_WRITE_BUFFER_SIZE = 256 * 1024
"""Bytes the connection may hold unsent before senders wait (its high-water mark)."""

KERNEL_UNSENT_LIMIT = 128 * 1024
"""Bytes the kernel may hold not yet sent on a connection (TCP_NOTSENT_LOWAT, on the
systems that have it): what a message queued now may find ahead of it there."""

DEFAULT_MAX_QUEUED_BYTES = 1024 * 1024
"""Received body bytes that may wait in the event queue before reading pauses."""

_SHORT_PIECE = 16 * 1024  # pieces shorter than this are joined before they are written
_READ_SIZE = 64 * 1024  # the read buffer of a connection at first ...
_MAX_READ_SIZE = 1024 * 1024  # ... grown up to this while reads fill it (a file arrives)
_MAX_QUEUED_EVENTS = 4096  # events waiting before reading pauses, whatever their size
_MAX_STASHED_EVENTS = 256  # parser events held for a session not started yet ...
_MAX_STASHED_BYTES = 256 * 1024  # ... and the body bytes among them


# -- errors and events --------------------------------------------------------------------


class MSRPTransportError(MSRPError):
    """A connection-level failure."""


class MSRPConnectionError(MSRPTransportError):
    """Connecting, accepting or keeping the connection failed (the message says which)."""


class MSRPRelayError(MSRPTransportError):
    """The relay refused the AUTH (``code`` and ``comment`` of its last answer)."""

    def __init__(self, code: int, comment: str | None) -> None:
        super().__init__(f"relay authentication failed: {code} {comment or ''}".rstrip())
        self.code = code
        self.comment = comment


@dataclass(slots=True)
class TransportClosed:
    """The connection is gone: the last event of a transport.  ``error`` is None
    when close() ended it."""

    error: MSRPConnectionError | None


TransportEvent = SessionEvent | TransportClosed


# -- a=setup (RFC 6135, with the RFC 4145 defaults) ----------------------------------------

_SETUP_VALUES = ("active", "passive", "actpass")


def answer_setup(offer: str | None, *, prefer: str = "active") -> str:
    """The a=setup value of an answer to an offer carrying ``offer`` (None: absent).

    An offer without a=setup is an RFC 4975 offer whose sender connects, so the
    answer is ``passive``; ``actpass`` lets the answerer pick ``prefer``.
    """
    if prefer not in ("active", "passive"):
        raise ValueError(f"prefer must be 'active' or 'passive', not {prefer!r}")
    offer = "active" if offer is None else offer
    if offer not in _SETUP_VALUES:
        raise ValueError(f"a=setup must be one of {', '.join(_SETUP_VALUES)}, not {offer!r}")
    return {"active": "passive", "passive": "active"}.get(offer, prefer)


def connects(offer: str | None, answer: str | None, *, offerer: bool) -> bool:
    """Whether this side opens the connection, given both a=setup values (None:
    absent, meaning ``active`` in an offer and ``passive`` in an answer)."""
    offer = "active" if offer is None else offer
    answer = "passive" if answer is None else answer
    if offer not in _SETUP_VALUES:
        raise ValueError(f"a=setup must be one of {', '.join(_SETUP_VALUES)}, not {offer!r}")
    if answer not in ("active", "passive"):
        raise ValueError(f"an answer's a=setup must be active or passive, not {answer!r}")
    if offer != "actpass" and offer == answer:
        raise ValueError(f"offer and answer are both {offer}: nobody would connect")
    answerer_connects = answer == "active"
    return answerer_connects != offerer


# -- the connection -------------------------------------------------------------------------


class _Owner:
    """What a connection reports to: unbound (listener), relay AUTH, or a session."""

    def _connected(self) -> None:
        pass

    def _received(self, events: list[ParserEvent]) -> None:
        raise NotImplementedError

    def _writable(self) -> None:
        pass

    def _lost(self, error: Exception | None) -> None:
        pass


def _limit_unsent(transport: asyncio.Transport, limit: int | None) -> None:
    # The kernel would queue megabytes of a file (its send buffer grows with the
    # connection's speed); a message sent after them would wait for all of them.
    # TCP_NOTSENT_LOWAT bounds only what is not sent yet, not what is in flight.
    # None (0 to the kernel) restores the system's default, no limit.
    sock = transport.get_extra_info("socket")
    option = getattr(socket, "TCP_NOTSENT_LOWAT", None)
    if sock is None or option is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, option, limit or 0)
    except OSError:
        pass  # not supported here: only the latency behind a transfer suffers


class _Connection(asyncio.Protocol):
    """The asyncio side of one connection: parses what arrives for its ``owner``,
    writes, traces, and keeps the flow-control state.  The owner changes as the
    connection gets bound to a session.

    Its reads grow (up to ``max_read_size``) while they come full: a file arrives in
    reads of up to 1 MB, each one pass through the parser, the session and the
    stream, instead of asyncio's reads of 256 KB.  Each read is a new bytes object
    that the socket fills (the transport's recv size is raised), which the parser,
    the events and the file writer then keep without copying it: a buffer of our
    own would cost a copy of every byte out of it."""

    def __init__(
        self,
        owner: _Owner | None,
        *,
        trace: TraceHook | None,
        max_header_size: int,
        max_headers: int,
    ) -> None:
        self.owner = owner
        self.trace = trace
        self.parser = MSRPParser(max_header_size=max_header_size, max_headers=max_headers)
        self.transport: asyncio.Transport | None = None
        self.local_address: Address | None = None
        self.remote_address: Address | None = None
        self.write_paused = False
        self.reading_paused = False
        self.sendfile = False  # whether FileRegion bodies go out with os.sendfile
        self._file_send: asyncio.Task[None] | None = None
        self._behind_file: list[Body] = []  # pieces written while a region is sent
        self._held: list[Body] = []  # ... then written with the next pieces
        self._closing = False
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._read_size = 0  # the transport's recv size; 0: it has none we can set
        self.max_read_size = _MAX_READ_SIZE  # its owner's queue bound may lower it

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.local_address = transport.get_extra_info("sockname")
        self.remote_address = transport.get_extra_info("peername")
        _limit_unsent(transport, KERNEL_UNSENT_LIMIT)
        if type(getattr(transport, "max_size", None)) is int:
            # The size asyncio's socket transports pass to recv() (their default
            # is 256 KB); other transports (TLS) read in sizes of their own.
            self._read_size = transport.max_size = _READ_SIZE  # type: ignore[attr-defined]
        self.sendfile = (
            hasattr(os, "sendfile")
            and self.trace is None
            and transport.get_extra_info("sslcontext") is None
            and transport.get_extra_info("socket") is not None
        )
        if self.owner is not None:
            self.owner._connected()

    def data_received(self, data: bytes) -> None:
        if len(data) == self._read_size < self.max_read_size:
            self._read_size = min(4 * self._read_size, self.max_read_size)
            self.transport.max_size = self._read_size  # type: ignore[union-attr]
        if self.trace is not None:
            self._trace("incoming", data)
        events = self.parser.feed(data)
        if events and self.owner is not None:
            self.owner._received(events)

    def eof_received(self) -> bool:
        return False  # MSRP has no half-closed state: the peer is done

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.owner is not None:
            self.owner._writable()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._stop_file_send()
        if not self.lost.done():
            self.lost.set_result(None)
        if self.owner is not None:
            self.owner._lost(exc)

    # for the owners

    @property
    def closing(self) -> bool:
        """Whether writing is over: closed by us, or asyncio saw the socket fail
        (connection_lost then comes in a later loop iteration)."""
        return self._closing or (self.transport is not None and self.transport.is_closing())

    def write(self, data: bytes | memoryview) -> None:
        if self.closing or self.transport is None:
            return
        if self.trace is not None:
            self._trace("outgoing", data)
        self.transport.write(data)

    @property
    def sending_file(self) -> bool:
        """Whether a FileRegion is being sent: what is written meanwhile waits."""
        return self._file_send is not None

    def write_pieces(self, pieces: list[Body]) -> None:
        """Write what MSRPSession.pieces_to_send() gave: short pieces joined (many small
        frames in one send), long ones (chunk bodies) as they are, through a
        memoryview: what the socket does not take at once is then copied once into
        the transport's buffer (a bytes object would be sliced first, a second copy).
        A FileRegion goes out with os.sendfile (loop.sendfile: the kernel copies from
        the file to the socket as the socket drains); the pieces after it wait."""
        if self._file_send is not None:
            self._behind_file += pieces
            return
        if self._held:
            pieces = self._held + pieces
            self._held = []
        if self.trace is not None:
            self.write(b"".join(body_bytes(piece) for piece in pieces))  # whole frames
            return
        short: list[bytes] = []
        for index, piece in enumerate(pieces):
            if type(piece) is FileRegion:
                if self.sendfile and not self.closing and piece.count:
                    if short:
                        self.write(b"".join(short))
                    task = asyncio.get_running_loop().create_task(self._send_region(piece))
                    self._file_send = task
                    self._behind_file = pieces[index + 1 :]
                    return
                piece = piece.read()
            if len(piece) < _SHORT_PIECE:
                short.append(piece)
                continue
            if short:
                self.write(b"".join(short))
                short = []
            self.write(memoryview(piece))
        if short:
            self.write(b"".join(short))

    async def _send_region(self, region: FileRegion) -> None:
        transport = self.transport
        assert transport is not None
        sent = 0
        failure: str | None = None
        try:
            with open(region.fd, "rb", buffering=0, closefd=False) as file:
                # fallback: a loop without native sendfile reads the file in a worker
                sent = await asyncio.get_running_loop().sendfile(
                    transport, file, region.offset, region.count
                )
        except (OSError, RuntimeError) as error:
            failure = str(error)  # the connection broke (or was closed meanwhile)
        if self.reading_paused and not self.closing:
            transport.pause_reading()  # loop.sendfile resumes what it paused
        self._file_send = None
        if sent != region.count:
            self._behind_file = []
            if not self.closing:
                if failure is None:
                    _log.error("%r ended after %d bytes: the file shrank", region, sent)
                else:
                    _log.info("MSRP sendfile failed: %s", failure)
                self.abort()  # the chunk is cut: framing is lost
            return
        if region.written is not None:
            region.written(asyncio.get_running_loop().time())
        # What came behind the region (its end-line) goes out with what the owner
        # writes now (the next chunk's header): one send for both.
        self._held, self._behind_file = self._behind_file, []
        if not self.write_paused and self.owner is not None:
            self.owner._writable()
        if self._held and self._file_send is None:
            self.write_pieces([])

    def _stop_file_send(self) -> None:
        if self._file_send is not None:
            self._file_send.cancel()
            self._file_send = None
            self._behind_file = []
            self._held = []

    def _trace(self, direction: str, data: bytes) -> None:
        assert self.trace is not None
        try:
            self.trace(direction, self.local_address, self.remote_address, data)
        except Exception:  # a broken trace hook must not break the connection
            _log.exception("MSRP trace hook failed")

    def pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None and not self.closing:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and self.transport is not None and not self.closing:
            self.reading_paused = False
            self.transport.resume_reading()

    def set_write_buffer_size(self, size: int) -> None:
        if self.transport is not None:
            self.transport.set_write_buffer_limits(high=size, low=size // 4)

    def close(self) -> None:
        """Close after what is written has gone out (a file region being sent is cut)."""
        if not self.closing and self.transport is not None:
            self._closing = True
            self._stop_file_send()
            self.transport.close()

    def abort(self) -> None:
        self._closing = True
        self._stop_file_send()
        if self.transport is not None:
            self.transport.abort()
        elif not self.lost.done():
            self.lost.set_result(None)  # never connected: nothing will report the loss

    @property
    def unsent(self) -> int:
        return 0 if self.transport is None else self.transport.get_write_buffer_size()


class _Stash:
    """Parser events that arrive before their session exists; reading pauses while
    there are too many of them."""

    def __init__(self, connection: _Connection) -> None:
        self.events: list[ParserEvent] = []
        self._conn = connection
        self._bytes = 0

    def add(self, event: ParserEvent) -> None:
        self.events.append(event)
        if type(event) is FrameData:
            self._bytes += len(event.data)
        if len(self.events) >= _MAX_STASHED_EVENTS or self._bytes >= _MAX_STASHED_BYTES:
            self._conn.pause_reading()


class _Timer:
    """One loop.call_at handle following a sans-IO machine's next deadline."""

    def __init__(self, callback: Callable[[], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._callback = callback
        self._handle: asyncio.TimerHandle | None = None
        self._when: float | None = None

    def set(self, when: float | None) -> None:
        if when == self._when:
            return
        if self._handle is not None:
            self._handle.cancel()
        self._when = when
        self._handle = None if when is None else self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._when = None
        self._callback()

    def cancel(self) -> None:
        self.set(None)


def _answer(request: MSRPData, code: int) -> bytes | None:
    # A response from a connection with no session: to unknown or refused requests.
    if request.method == "REPORT" or request.failure_report == "no":
        return None
    to_path, from_path = request.to_path, request.from_path
    if not to_path or not from_path:
        return None
    response = MSRPData(request.transaction_id, code=code, comment=REASONS[code])
    response.set_header("To-Path", from_path[:1])
    response.set_header("From-Path", to_path[:1])
    return response.encode()


# -- the transport ---------------------------------------------------------------------------


class MSRPTransport(_Owner):
    """One MSRP session (``session``) carried by one connection.

    Get one from :func:`connect`, :meth:`MSRPAcceptor.accept` or
    :meth:`MSRPRelayConnection.start_session`.  Events are read with ``async for``
    by one consumer at a time.
    """

    def __init__(
        self,
        session: MSRPSession,
        connection: _Connection,
        *,
        write_buffer_size: int = DEFAULT_WRITE_BUFFER_SIZE,
        max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES,
        kernel_unsent_limit: int | None = KERNEL_UNSENT_LIMIT,
    ) -> None:
        if write_buffer_size < 1 or max_queued_bytes < 1:
            raise ValueError("write_buffer_size and max_queued_bytes must be positive")
        if kernel_unsent_limit is not None and kernel_unsent_limit < 1:
            raise ValueError("kernel_unsent_limit must be positive or None (no limit)")
        self.session = session
        self._conn = connection
        self._loop = asyncio.get_running_loop()
        self._write_buffer_size = write_buffer_size
        self._max_queued_bytes = max_queued_bytes
        self._kernel_unsent_limit = kernel_unsent_limit
        self._timer = _Timer(self._on_timer)
        self._events: deque[TransportEvent] = deque()
        self._queued_bytes = 0
        self._waiter: asyncio.Future[None] | None = None
        self._room: list[asyncio.Future[None]] = []
        self._closing = False
        self._close_error: MSRPConnectionError | None = None
        self._finished = False
        self._ended = False
        connection.owner = self
        # A read goes past the queue's bound by at most half of it before reading pauses.
        connection.max_read_size = min(_MAX_READ_SIZE, max(_READ_SIZE, max_queued_bytes // 2))
        if connection.transport is not None:
            self._connected()

    @property
    def local_address(self) -> Address | None:
        return self._conn.local_address

    @property
    def remote_address(self) -> Address | None:
        return self._conn.remote_address

    @property
    def closed(self) -> bool:
        """Whether close() was called or the connection is gone."""
        return self._closing or self._ended

    @property
    def sends_file_regions(self) -> bool:
        """Whether FileRegion pieces fed to a message go out with os.sendfile (a plain
        TCP connection without a trace hook); elsewhere they would be read on the
        event loop, so feed bytes read in a worker instead."""
        return self._conn.sendfile

    # -- sending ----------------------------------------------------------------------

    def send_message(
        self, data: bytes, content_type: str | None, **options: Any
    ) -> OutgoingMessage:
        """Queue a whole message (see MSRPSession.send_message for ``options``)."""
        self._check_open()
        message = self.session.send_message(data, content_type, **options)
        self._after_io()
        return message

    async def send_stream(
        self,
        source: AsyncIterable[bytes] | Iterable[bytes],
        content_type: str | None,
        *,
        size: int | None = None,
        **options: Any,
    ) -> OutgoingMessage:
        """Send a message whose body comes from ``source``, taking each piece only
        when the connection has room for it.

        Returns when the whole body was handed to the session (its delivery is told
        by events), or early when the message failed or was aborted (see
        ``message.failed``/``aborted``).  Cancelling it aborts the message.  Raises
        MSRPConnectionError when the connection closes first.
        """
        if isinstance(source, bytes | bytearray | memoryview):
            raise TypeError("send_stream() takes an iterable of pieces: use send_message()")
        self._check_open()
        message = self.session.send_message(None, content_type, size=size, **options)
        try:
            if isinstance(source, AsyncIterable):
                async for piece in source:
                    if not await self._feed(message, piece):
                        return message
            else:
                for piece in source:
                    if not await self._feed(message, piece):
                        return message
            message.finish()
            self._after_io()
        except BaseException:
            if not self._ended:
                self.session.abort_message(message.message_id)
                self._after_io()
            raise
        return message

    async def _feed(self, message: OutgoingMessage, piece: bytes) -> bool:
        while not message.wants_data:
            if message.failed or message.aborted:
                return False
            self._check_alive()
            room = self._loop.create_future()
            self._room.append(room)
            await room
        if message.failed or message.aborted:
            return False
        self._check_alive()
        message.feed(piece)
        self._after_io()
        return True

    def abort_message(self, message_id: str) -> None:
        """Stop sending a message (the peer is told with ``#`` if it got part of it)."""
        self.session.abort_message(message_id)
        self._after_io()

    def _check_open(self) -> None:
        if self.closed:
            raise MSRPStateError("the MSRP transport is closed")

    def _check_alive(self) -> None:
        if self._ended or self._closing or self._conn.closing:
            raise MSRPConnectionError(str(self._close_error or "the MSRP transport was closed"))

    # -- events -----------------------------------------------------------------------

    def __aiter__(self) -> MSRPTransport:
        return self

    async def __anext__(self) -> TransportEvent:
        events = self._events
        while not events:
            if self._finished:
                raise StopAsyncIteration
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        event = events.popleft()
        kind = type(event)
        if kind is MessageDataReceived or kind is MessageReceived:
            self._queued_bytes -= len(event.data or b"")  # type: ignore[union-attr]
            if self._conn.reading_paused and self._has_room(half=True):
                self._conn.resume_reading()
        elif kind is TransportClosed:
            self._finished = True
        return event

    def _has_room(self, *, half: bool = False) -> bool:
        divisor = 2 if half else 1
        return (
            self._queued_bytes <= self._max_queued_bytes // divisor
            and len(self._events) <= _MAX_QUEUED_EVENTS // divisor
        )

    # -- closing ----------------------------------------------------------------------

    async def close(self, *, timeout: float = 1.0) -> None:
        """Close the connection, giving what is already written ``timeout`` seconds
        to go out (a peer that stopped reading gets it cut)."""
        conn = self._conn
        if not self._closing and not self._ended:
            self._closing = True
            self._timer.cancel()
            self._wake_senders()
            conn.close()
        if not conn.lost.done():
            await asyncio.wait([conn.lost], timeout=timeout)
        if not conn.lost.done():
            conn.abort()
            await conn.lost

    def _shutdown(self, error: MSRPConnectionError) -> None:
        # A failure found here (fatal framing error): close and tell why.
        if self._closing or self._ended:
            return
        self._close_error = error
        self._closing = True
        self._timer.cancel()
        self._wake_senders()
        self._conn.close()

    # -- the connection's reports ------------------------------------------------------

    def _connected(self) -> None:
        self._conn.set_write_buffer_size(self._write_buffer_size)
        if self._kernel_unsent_limit != KERNEL_UNSENT_LIMIT and self._conn.transport is not None:
            _limit_unsent(self._conn.transport, self._kernel_unsent_limit)
        self._after_io()

    def _received(self, events: list[ParserEvent]) -> None:
        handle = self.session.handle_parser_event
        now = self._loop.time()
        for event in events:
            handle(event, now)
        self._after_io()

    def _writable(self) -> None:
        self._after_io()

    def _lost(self, error: Exception | None) -> None:
        self._ended = True
        self._timer.cancel()
        self.session.closed = True
        if self._closing:
            final = self._close_error
        elif error is None:
            final = MSRPConnectionError(f"the peer {self.remote_address} closed the connection")
        else:
            final = MSRPConnectionError(f"connection to {self.remote_address} lost: {error}")
        self._close_error = final or MSRPConnectionError("the MSRP transport was closed")
        self._collect()
        self._events.append(TransportClosed(final))
        self._wake_reader()
        self._wake_senders()

    # -- driving the session ------------------------------------------------------------

    def _after_io(self) -> None:
        if self._ended:
            return
        self._pump()
        self._collect()
        self._timer.set(None if self._closing else self.session.get_timer())

    def _pump(self) -> None:
        conn = self._conn
        if conn.write_paused or conn.sending_file or self._closing or conn.transport is None:
            return
        session = self.session
        now = self._loop.time()
        while not conn.write_paused and not conn.sending_file and not conn.closing:
            pieces = session.pieces_to_send(now)
            if not pieces:
                break
            conn.write_pieces(pieces)
        if self._room:
            self._wake_senders()

    def _collect(self) -> None:
        session = self.session
        events = self._events
        added = 0
        fatal = None
        while (event := session.next_event()) is not None:
            events.append(event)
            added += 1
            kind = type(event)
            if kind is MessageDataReceived or kind is MessageReceived:
                self._queued_bytes += len(event.data or b"")  # type: ignore[union-attr]
            elif kind is ProtocolError and event.error.fatal:  # type: ignore[union-attr]
                fatal = event.error  # type: ignore[union-attr]
        if not added:
            return
        self._wake_reader()
        if not self._has_room():
            self._conn.pause_reading()
        if fatal is not None:
            self._shutdown(MSRPConnectionError(f"MSRP framing lost: {fatal}"))

    def _on_timer(self) -> None:
        if self._ended or self._closing:
            return
        self.session.handle_timer(self._loop.time())
        self._after_io()

    def _wake_reader(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _wake_senders(self) -> None:
        room, self._room = self._room, []
        for future in room:
            if not future.done():
                future.set_result(None)


# -- the active side ----------------------------------------------------------------------------

_TRANSPORT_OPTIONS = ("write_buffer_size", "max_queued_bytes", "kernel_unsent_limit")


def _split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    transport = {name: options.pop(name) for name in _TRANSPORT_OPTIONS if name in options}
    return transport, options


def _client_context(uri: MSRPURI, context: _ssl.SSLContext | None) -> _ssl.SSLContext | None:
    if not uri.use_tls:
        if context is not None:
            raise ValueError(f"an SSL context was given for {uri}, which is not msrps")
        return None
    return context if context is not None else _ssl.create_default_context()


async def _open(
    factory: Callable[[], _Connection],
    uri: MSRPURI,
    context: _ssl.SSLContext | None,
    server_hostname: str | None,
    local_address: Address | None,
    timeout: float,
) -> None:
    loop = asyncio.get_running_loop()
    hostname = None
    if context is not None:
        hostname = server_hostname or uri.host
    try:
        async with asyncio.timeout(timeout):
            await loop.create_connection(
                factory,
                uri.host,
                uri.effective_port,
                ssl=context,
                server_hostname=hostname,
                local_addr=local_address,
            )
    except TimeoutError:
        raise MSRPConnectionError(f"connecting to {uri} timed out after {timeout} s") from None
    except (OSError, _ssl.SSLError) as error:
        raise MSRPConnectionError(f"cannot connect to {uri}: {error}") from error


async def connect(
    local_uri: MSRPURI,
    remote_path: list[MSRPURI],
    *,
    ssl: _ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    local_address: Address | None = None,
    timeout: float = 10.0,
    trace: TraceHook | None = None,
    max_header_size: int = 16384,
    max_headers: int = 64,
    **options: Any,
) -> MSRPTransport:
    """Open the connection to ``remote_path[0]`` as the active side (TLS when it is
    an ``msrps`` URI; ``ssl`` defaults to a verifying client context) and start the
    session, which binds it with a first request.  Other keyword arguments:
    ``write_buffer_size``, ``max_queued_bytes``, ``kernel_unsent_limit`` and MSRPSession's.
    """
    if not remote_path:
        raise ValueError("remote_path needs at least the peer's URI")
    context = _client_context(remote_path[0], ssl)
    transport_options, session_options = _split_options(options)
    session = MSRPSession(local_uri, remote_path, active=True, **session_options)
    connection = _Connection(
        None, trace=trace, max_header_size=max_header_size, max_headers=max_headers
    )
    transport = MSRPTransport(session, connection, **transport_options)
    await _open(
        lambda: connection, remote_path[0], context, server_hostname, local_address, timeout
    )
    return transport


# -- the passive side --------------------------------------------------------------------------


class _Unbound(_Owner):
    """A listener's new connection until its first request names a session."""

    def __init__(self, listener: MSRPListener, connection: _Connection) -> None:
        self._listener = listener
        self._conn = connection
        self._deadline: asyncio.TimerHandle | None = None

    def _connected(self) -> None:
        self._listener._unbound.add(self)
        self._deadline = asyncio.get_running_loop().call_later(
            self._listener.bind_timeout, self._conn.close
        )

    def _received(self, events: list[ParserEvent]) -> None:
        first = events[0]
        if isinstance(first, FrameStarted) and first.frame.method is not None:
            self._forget()
            self._listener._route(self._conn, first.frame, events)
            return
        request = first.frame if isinstance(first, FrameError) else None
        if request is not None and request.method is not None and (reply := _answer(request, 400)):
            self._conn.write(reply)
        self._forget()
        self._conn.close()

    def _lost(self, error: Exception | None) -> None:
        self._forget()

    def _forget(self) -> None:
        self._listener._unbound.discard(self)
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._conn.owner = None


class _Parked(_Owner):
    """A connection for an expected session whose accept() has not come yet."""

    def __init__(self, acceptor: MSRPAcceptor, connection: _Connection) -> None:
        self._acceptor = acceptor
        self._conn = connection
        self.stash = _Stash(connection)

    def _received(self, events: list[ParserEvent]) -> None:
        for event in events:
            self.stash.add(event)

    def _lost(self, error: Exception | None) -> None:
        self._acceptor._parked_lost()


class MSRPAcceptor:
    """The wait for the peer's connection to one local URI of a listener."""

    def __init__(self, listener: MSRPListener, local_uri: MSRPURI) -> None:
        self.local_uri = local_uri
        self._listener = listener
        self._parked: _Parked | None = None
        self._waiter: asyncio.Future[_Connection] | None = None
        self._done = False

    async def accept(
        self,
        remote_path: list[MSRPURI],
        *,
        timeout: float = 30.0,
        **options: Any,
    ) -> MSRPTransport:
        """Wait for the peer's connection (it may have come already) and start the
        session on it as the passive side.  Other keyword arguments:
        ``write_buffer_size``, ``max_queued_bytes``, ``kernel_unsent_limit`` and MSRPSession's.
        """
        if self._done or self._waiter is not None:
            raise MSRPStateError(f"accept() for {self.local_uri} was already called")
        if not remote_path:
            raise ValueError("remote_path needs at least the peer's URI")
        transport_options, session_options = _split_options(options)
        session = MSRPSession(self.local_uri, remote_path, active=False, **session_options)
        if self._parked is None:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(timeout):
                    await self._waiter
            except TimeoutError:
                self.cancel()
                raise MSRPConnectionError(
                    f"no connection for {self.local_uri} within {timeout} s"
                ) from None
            except BaseException:
                self.cancel()
                raise
        parked = self._parked
        if parked is None or parked._conn.closing:
            self.cancel()
            raise MSRPConnectionError(f"the connection for {self.local_uri} closed before accept")
        self._done = True
        self._listener._expected.pop(self.local_uri.session_id, None)
        connection = parked._conn
        transport = MSRPTransport(session, connection, **transport_options)
        self._listener._bound_to(self.local_uri.session_id, connection)
        if parked.stash.events:
            transport._received(parked.stash.events)
        connection.resume_reading()
        return transport

    def cancel(self) -> None:
        """Stop expecting the connection (closing it if it came); a pending accept()
        raises MSRPConnectionError."""
        if self._done:
            return
        self._done = True
        self._listener._expected.pop(self.local_uri.session_id, None)
        if self._parked is not None:
            self._parked._conn.close()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(
                MSRPConnectionError(f"stopped expecting a connection for {self.local_uri}")
            )

    def _arrived(self, connection: _Connection, events: list[ParserEvent]) -> bool:
        if self._parked is not None or self._done:
            return False
        self._parked = _Parked(self, connection)
        connection.owner = self._parked
        self._parked._received(events)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(connection)
        return True

    def _parked_lost(self) -> None:
        self._parked = None
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(
                MSRPConnectionError(f"the connection for {self.local_uri} closed before accept")
            )


class MSRPListener:
    """A listening socket for the passive side of any number of sessions."""

    def __init__(
        self,
        server: asyncio.Server,
        *,
        ssl: _ssl.SSLContext | None,
        bind_timeout: float,
    ) -> None:
        self._server = server
        self.ssl = ssl
        self.bind_timeout = bind_timeout
        self.host, self.port = server.sockets[0].getsockname()[:2]
        self._expected: dict[str | None, MSRPAcceptor] = {}
        self._bound: dict[str | None, _Connection] = {}
        self._unbound: set[_Unbound] = set()

    @classmethod
    async def start(
        cls,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ssl: _ssl.SSLContext | None = None,
        bind_timeout: float = 30.0,
        trace: TraceHook | None = None,
        max_header_size: int = 16384,
        max_headers: int = 64,
    ) -> MSRPListener:
        """Listen on ``host``:``port`` (0: any free port), over TLS with a server
        ``ssl`` context.  A connection that names no session within
        ``bind_timeout`` seconds is closed."""
        listener: MSRPListener | None = None

        def factory() -> _Connection:
            connection = _Connection(
                None, trace=trace, max_header_size=max_header_size, max_headers=max_headers
            )
            assert listener is not None
            connection.owner = _Unbound(listener, connection)
            return connection

        loop = asyncio.get_running_loop()
        try:
            server = await loop.create_server(factory, host, port, ssl=ssl)
        except OSError as error:
            raise MSRPConnectionError(f"cannot listen on {host}:{port}: {error}") from error
        listener = cls(server, ssl=ssl, bind_timeout=bind_timeout)
        return listener

    def new_uri(self, *, session_id: str | None = None, host: str | None = None) -> MSRPURI:
        """A local URI on this listener for one session (``host`` overrides the
        listening address; a wildcard listener needs it)."""
        host = host or self.host
        if host in ("0.0.0.0", "::"):
            raise ValueError(f"the listener is on {host}: give the address to advertise")
        return MSRPURI(
            host=host,
            port=self.port,
            session_id=session_id or make_id(20),
            transport="tcp",
            use_tls=self.ssl is not None,
        )

    def expect(self, local_uri: MSRPURI) -> MSRPAcceptor:
        """Start expecting the connection to ``local_uri``; do it before the URI
        goes out, since the peer may connect as soon as it sees it."""
        if local_uri.use_tls != (self.ssl is not None):
            kind = "TLS" if self.ssl is not None else "TCP"
            raise ValueError(f"{local_uri} does not match this {kind} listener")
        key = local_uri.session_id
        if key is None:
            raise ValueError(f"{local_uri} has no session-id to recognise its connection by")
        if key in self._expected or key in self._bound:
            raise ValueError(f"a session with session-id {key} is already expected")
        acceptor = MSRPAcceptor(self, local_uri)
        self._expected[key] = acceptor
        return acceptor

    def _route(self, connection: _Connection, request: MSRPData, events: list[ParserEvent]) -> None:
        key = request.to_path[0].session_id
        acceptor = self._expected.get(key)
        if acceptor is not None and acceptor._arrived(connection, events):
            return
        code = 506 if acceptor is not None or key in self._bound else 481
        if (reply := _answer(request, code)) is not None:
            connection.write(reply)
        connection.close()

    def _bound_to(self, key: str | None, connection: _Connection) -> None:
        self._bound[key] = connection
        connection.lost.add_done_callback(lambda _: self._bound.pop(key, None))

    async def close(self) -> None:
        """Stop listening; connections not bound to a session are closed, expected
        sessions fail.  Bound transports live on."""
        self._server.close()
        for acceptor in list(self._expected.values()):
            acceptor.cancel()
        for unbound in list(self._unbound):
            unbound._conn.close()
        await self._server.wait_closed()


# -- relays ------------------------------------------------------------------------------------


class _RelayAuth(_Owner):
    """A relay connection before its session: runs AUTH, holds what else arrives."""

    def __init__(self, auth: RelayAuthentication, connection: _Connection) -> None:
        self.auth = auth
        self._conn = connection
        self._loop = asyncio.get_running_loop()
        self._timer = _Timer(self._on_timer)
        self.result: asyncio.Future[list[MSRPURI]] = self._loop.create_future()
        self.stash = _Stash(connection)
        self._response: MSRPData | None = None

    def _connected(self) -> None:
        self.auth.start(self._loop.time())
        self._drive()

    def _received(self, events: list[ParserEvent]) -> None:
        now = self._loop.time()
        for event in events:
            if isinstance(event, FrameStarted) and self.auth.handle_response(event.frame, now):
                self._response = event.frame
            elif not (isinstance(event, FrameEnded) and event.frame is self._response):
                self.stash.add(event)
        self._drive()

    def _on_timer(self) -> None:
        self.auth.handle_timer(self._loop.time())
        self._drive()

    def _drive(self) -> None:
        if data := self.auth.data_to_send():
            self._conn.write(data)
        while (event := self.auth.next_event()) is not None:
            if self.result.done():
                continue
            if isinstance(event, RelayAuthenticated):
                self.result.set_result(event.use_path)
            elif isinstance(event, RelayAuthenticationFailed):
                self.result.set_exception(MSRPRelayError(event.code, event.comment))
        self._timer.set(self.auth.get_timer())

    def _lost(self, error: Exception | None) -> None:
        self._timer.cancel()
        if not self.result.done():
            why = "closed the connection" if error is None else f"connection lost: {error}"
            self.result.set_exception(MSRPConnectionError(f"relay {self.auth.relay_uri} {why}"))

    def stop(self) -> None:
        self._timer.cancel()


class MSRPRelayConnection:
    """An authenticated connection to our relay, waiting for its session.

    ``path`` (the relay's Use-Path, then our URI) is what goes in the SDP.
    """

    def __init__(self, relay_uri: MSRPURI, local_uri: MSRPURI, phase: _RelayAuth) -> None:
        self.relay_uri = relay_uri
        self.local_uri = local_uri
        self.use_path: list[MSRPURI] = list(phase.auth.use_path or [])
        self._phase = phase
        self._started = False

    @property
    def path(self) -> list[MSRPURI]:
        return [*self.use_path, self.local_uri]

    def start_session(
        self, remote_path: list[MSRPURI], *, active: bool, **options: Any
    ) -> MSRPTransport:
        """Start the session with the peer at ``remote_path`` on this connection
        (``active``: we send the first request).  The relay authentication goes on
        being refreshed by the session.  Other keyword arguments:
        ``write_buffer_size``, ``max_queued_bytes``, ``kernel_unsent_limit`` and MSRPSession's.
        """
        if self._started:
            raise MSRPStateError("start_session() was already called on this relay connection")
        connection = self._phase._conn
        if connection.closing:
            raise MSRPConnectionError(f"the connection to relay {self.relay_uri} is closed")
        self._started = True
        self._phase.stop()
        transport_options, session_options = _split_options(options)
        session = MSRPSession(
            self.local_uri,
            remote_path,
            use_path=self.use_path,
            relay=self._phase.auth,
            active=active,
            **session_options,
        )
        transport = MSRPTransport(session, connection, **transport_options)
        if self._phase.stash.events:
            transport._received(self._phase.stash.events)
        connection.resume_reading()
        return transport

    async def close(self) -> None:
        """Close the connection (when no session was started on it)."""
        if self._started:
            raise MSRPStateError("close the transport of the session instead")
        self._phase.stop()
        connection = self._phase._conn
        connection.close()
        await connection.lost


async def connect_relay(
    relay_uri: MSRPURI,
    local_uri: MSRPURI,
    authorize: Authorize,
    *,
    ssl: _ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    host: str | None = None,
    port: int | None = None,
    expires: int | None = None,
    timeout: float = 30.0,
    trace: TraceHook | None = None,
    max_header_size: int = 16384,
    max_headers: int = 64,
) -> MSRPRelayConnection:
    """Connect to the relay over TLS (``relay_uri`` must be msrps; ``host``/``port``
    override where to reach it, e.g. after an SRV lookup) and authenticate with
    AUTH, answering its digest challenge through ``authorize``.

    Raises MSRPRelayError when the relay refuses, MSRPConnectionError when it
    cannot be reached or does not answer within ``timeout``.
    """
    if not relay_uri.use_tls:
        raise ValueError(f"relays are reached over TLS (msrps), not {relay_uri}")
    context = _client_context(relay_uri, ssl)
    connection = _Connection(
        None, trace=trace, max_header_size=max_header_size, max_headers=max_headers
    )
    phase = _RelayAuth(
        RelayAuthentication(relay_uri, local_uri, authorize, expires=expires), connection
    )
    connection.owner = phase
    target = MSRPURI(host or relay_uri.host, port or relay_uri.effective_port, use_tls=True)
    await _open(
        lambda: connection,
        target,
        context,
        server_hostname or relay_uri.host,
        None,
        timeout,
    )
    try:
        async with asyncio.timeout(timeout):
            await phase.result
    except BaseException as error:
        phase.stop()
        connection.abort()
        if isinstance(error, TimeoutError):
            raise MSRPConnectionError(
                f"relay {relay_uri} did not authenticate us within {timeout} s"
            ) from None
        raise
    return MSRPRelayConnection(relay_uri, local_uri, phase)
