"""A TCP or TLS connection: the stream framer, CRLF keep-alives, idle and pending limits."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from sipsimple.core.errors import SIPParseError
from sipsimple.core.sip.framer import InvalidMessage, KeepAlivePing, KeepAlivePong, SIPStreamFramer
from sipsimple.core.transport.address import TransportAddress
from sipsimple.core.transport.errors import TransportError, TransportFailure

if TYPE_CHECKING:
    from sipsimple.core.transport.manager import TransportManager

__all__ = ["SIPConnection"]

log = logging.getLogger("sipsimple.core.transport")

PING = b"\r\n\r\n"
PONG = b"\r\n"


class SIPConnection(asyncio.Protocol):
    """One connection, opened by us (``outbound``) or by the peer.

    Read-only for users: ``transport`` ("tcp" or "tls"), ``address`` (the peer, as a
    TransportAddress carrying ``local`` and this connection), ``local``, ``outbound``,
    ``server_name`` (the name its certificate was checked against), ``is_open`` and
    ``error`` (why it closed, None while open or after a clean close).
    """

    def __init__(
        self,
        manager: TransportManager,
        transport: str,
        *,
        outbound: bool,
        server_name: str | None = None,
    ) -> None:
        settings = manager.settings
        self._manager = manager
        self._loop = manager.loop
        self.transport = transport
        self.outbound = outbound
        self.server_name = server_name
        self.address: TransportAddress | None = None
        self.local: tuple[str, int] = ("", 0)
        self.error: TransportError | None = None
        self.last_activity = self._loop.time()
        self._stream: asyncio.Transport | None = None
        self._started = False
        self._closed = False
        self._framer = SIPStreamFramer(
            max_header_size=settings.max_header_size, max_body_size=settings.max_body_size
        )
        self._max_pending = settings.max_pending_bytes
        self._idle_timeout = settings.idle_timeout
        self._keepalive_interval = settings.keepalive_interval if outbound else None
        self._keepalive_timeout = settings.keepalive_timeout
        self._idle_timer: asyncio.TimerHandle | None = None
        self._ping_timer: asyncio.TimerHandle | None = None
        self._pong_timer: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        return f"<SIPConnection {self.address or self.transport} {state}>"

    @property
    def is_open(self) -> bool:
        return self._started and not self._closed

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._stream = transport
        if self.transport == "tls" and self.outbound:
            return  # the manager starts TLS on it, then calls start()
        self.start(transport)

    def start(self, transport: asyncio.Transport) -> None:
        """Begin serving on ``transport`` (for outbound TLS: the one start_tls returned)."""
        self._stream = transport
        peer = transport.get_extra_info("peername")
        self.local = transport.get_extra_info("sockname")[:2]
        self.address = TransportAddress(self.transport, peer[0], peer[1], self.local, self)
        self._started = True
        if not self._manager._connection_started(self):
            return
        if self._idle_timeout is not None:
            self._idle_timer = self._loop.call_later(self._idle_timeout, self._check_idle)
        if self._keepalive_interval is not None:
            self._ping_timer = self._loop.call_later(self._keepalive_interval, self._ping)

    def data_received(self, data: bytes) -> None:
        if self._closed or self.address is None:
            return
        manager = self._manager
        if manager.trace is not None:
            manager._trace_chunk(True, self.address, self.local, data)
        framer = self._framer
        framer.receive_data(data)
        while not self._closed:
            try:
                event = framer.next_event()
            except SIPParseError as e:
                manager._log_bad("closing %s: %s", self.address, e)
                manager.statistics.connections_closed_for_errors += 1
                self.close(TransportError(TransportFailure.CONNECTION_LOST, str(e), self.address))
                return
            if event is None:
                return
            if isinstance(event, KeepAlivePing):
                self.last_activity = self._loop.time()
                self._write(PONG)
            elif isinstance(event, KeepAlivePong):
                if self._pong_timer is not None:
                    self._pong_timer.cancel()
                    self._pong_timer = None
            elif isinstance(event, InvalidMessage):
                manager._reject(event.error, self.address)
            else:
                self.last_activity = self._loop.time()
                manager._message_received(event, self.address)

    def eof_received(self) -> bool:
        if self.is_open:
            self._framer.receive_data(b"")
            try:
                self._framer.next_event()
            except SIPParseError as e:
                self._manager._log_bad("%s closed the connection: %s", self.address, e)
        return False  # close our side as well

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closed:
            error = None
            if exc is not None:
                error = TransportError(TransportFailure.CONNECTION_LOST, str(exc), self.address)
            self._finish(error)

    # -- sending

    def write(self, data: bytes) -> None:
        """Queue ``data``; TransportError if closed or if the peer stopped reading."""
        if not self.is_open:
            raise self.error or TransportError(
                TransportFailure.CONNECTION_LOST, "connection closed", self.address
            )
        assert self._stream is not None
        pending = self._stream.get_write_buffer_size()
        if pending and pending + len(data) > self._max_pending:
            error = TransportError(
                TransportFailure.SEND_BUFFER_FULL,
                f"{pending} bytes not yet taken by the peer",
                self.address,
            )
            self.close(error)
            raise error
        self.last_activity = self._loop.time()
        self._write(data)

    def _write(self, data: bytes) -> None:
        assert self._stream is not None and self.address is not None
        self._stream.write(data)
        if self._manager.trace is not None:
            self._manager._trace_chunk(False, self.address, self.local, data)

    # -- closing and timers

    def close(self, error: TransportError | None = None) -> None:
        """Close now; with an error the connection is aborted (no flush) and reported."""
        if self._closed:
            return
        if self._stream is not None:
            if error is None:
                self._stream.close()
            else:
                self._stream.abort()
        self._finish(error)

    def _finish(self, error: TransportError | None) -> None:
        self._closed = True
        self.error = error
        for timer in (self._idle_timer, self._ping_timer, self._pong_timer):
            if timer is not None:
                timer.cancel()
        self._idle_timer = self._ping_timer = self._pong_timer = None
        if self._started:
            self._manager._connection_finished(self, error)

    def _check_idle(self) -> None:
        assert self._idle_timeout is not None
        deadline = self.last_activity + self._idle_timeout
        if self._loop.time() >= deadline:
            self._idle_timer = None
            log.debug("closing idle connection %s", self.address)
            self.close()
        else:
            self._idle_timer = self._loop.call_at(deadline, self._check_idle)

    def _ping(self) -> None:
        assert self._keepalive_interval is not None
        self._ping_timer = self._loop.call_later(self._keepalive_interval, self._ping)
        if self._pong_timer is None:
            self._pong_timer = self._loop.call_later(self._keepalive_timeout, self._pong_missed)
            self._write(PING)

    def _pong_missed(self) -> None:
        self._pong_timer = None
        log.info("no keep-alive pong from %s: closing", self.address)
        self.close(
            TransportError(
                TransportFailure.KEEPALIVE_TIMEOUT,
                f"no pong within {self._keepalive_timeout} s",
                self.address,
            )
        )
