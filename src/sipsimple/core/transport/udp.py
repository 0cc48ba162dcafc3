"""A UDP socket of the transport: datagrams in and out, nothing else.

The socket is read straight from the loop's selector, up to ``READ_BATCH`` datagrams
per readiness event: a busy endpoint then pays for one select() and one loop turn per
batch, not per datagram (asyncio's datagram transport reads one per turn). The batch
is small enough that timers and other sockets on the loop are not held back for long.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sipsimple.core.transport.address import TransportAddress
    from sipsimple.core.transport.manager import TransportManager

__all__ = ["READ_BATCH", "UDPEndpoint"]

log = logging.getLogger("sipsimple.core.transport")

READ_BATCH = 16
"""Datagrams read at most per readiness event of the socket."""

_RECEIVE_SIZE = 65536  # more than any UDP payload: nothing is cut short
_SEND_BACKLOG = 1024  # datagrams held while the socket's send buffer is full


class UDPEndpoint:
    """One bound UDP socket; every datagram goes to the manager with this endpoint."""

    def __init__(
        self, manager: TransportManager, sock: socket.socket, loop: asyncio.AbstractEventLoop
    ) -> None:
        sock.setblocking(False)
        self._manager = manager
        self._sock: socket.socket | None = sock
        self._fd = sock.fileno()
        self._loop = loop
        self._backlog: deque[tuple[bytes, tuple[str, int]]] = deque()
        self.local: tuple[str, int] = sock.getsockname()[:2]
        self.sources: dict[tuple[Any, ...], TransportAddress] = {}
        """The TransportAddress of each recent peer (the manager's cache: one per datagram
        would be built and validated again and again)."""
        loop.add_reader(self._fd, self._read_ready)

    @property
    def socket(self) -> socket.socket | None:
        """The bound socket (None once closed)."""
        return self._sock

    def _read_ready(self) -> None:
        sock = self._sock
        if sock is None:
            return
        received = self._manager._datagram_received
        for _ in range(READ_BATCH):
            try:
                data, addr = sock.recvfrom(_RECEIVE_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self.error_received(e)
                continue
            received(self, data, addr)
            if self._sock is None:
                return  # closed by what the datagram caused

    def error_received(self, exc: Exception) -> None:
        # An ICMP error for an earlier datagram (port unreachable): UDP is unreliable,
        # the transaction layer's retransmissions and timeouts deal with it.
        log.debug("UDP %s: %s", self.local, exc)

    def send(self, data: bytes, host: str, port: int) -> None:
        sock = self._sock
        if sock is None:
            return
        if self._backlog:
            self._hold(data, (host, port))
            return
        try:
            sock.sendto(data, (host, port))
        except (BlockingIOError, InterruptedError):
            self._hold(data, (host, port))
            self._loop.add_writer(self._fd, self._write_ready)
        except OSError as e:
            self.error_received(e)

    def _hold(self, data: bytes, address: tuple[str, int]) -> None:
        if len(self._backlog) < _SEND_BACKLOG:
            self._backlog.append((data, address))
        else:
            log.debug("UDP %s: send buffer full, dropped a datagram to %s", self.local, address)

    def _write_ready(self) -> None:
        sock = self._sock
        backlog = self._backlog
        while sock is not None and backlog:
            data, address = backlog[0]
            try:
                sock.sendto(data, address)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self.error_received(e)
            backlog.popleft()
        if sock is not None:
            self._loop.remove_writer(self._fd)

    def close(self) -> None:
        sock = self._sock
        if sock is None:
            return
        self._sock = None
        self._backlog.clear()
        self._loop.remove_reader(self._fd)
        self._loop.remove_writer(self._fd)
        sock.close()
