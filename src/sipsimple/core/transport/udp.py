"""A UDP socket of the transport: datagrams in and out, nothing else."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sipsimple.core.transport.address import TransportAddress
    from sipsimple.core.transport.manager import TransportManager

__all__ = ["UDPEndpoint"]

log = logging.getLogger("sipsimple.core.transport")


class UDPEndpoint(asyncio.DatagramProtocol):
    """One bound UDP socket; every datagram goes to the manager with this endpoint."""

    def __init__(self, manager: TransportManager) -> None:
        self._manager = manager
        self._transport: asyncio.DatagramTransport | None = None
        self.local: tuple[str, int] = ("", 0)
        self.sources: dict[tuple[Any, ...], TransportAddress] = {}
        """The TransportAddress of each recent peer (the manager's cache: one per datagram
        would be built and validated again and again)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self.local = transport.get_extra_info("sockname")[:2]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._manager._datagram_received(self, data, addr)

    def error_received(self, exc: Exception) -> None:
        # An ICMP error for an earlier datagram (port unreachable): UDP is unreliable,
        # the transaction layer's retransmissions and timeouts deal with it.
        log.debug("UDP %s: %s", self.local, exc)

    def send(self, data: bytes, host: str, port: int) -> None:
        assert self._transport is not None
        self._transport.sendto(data, (host, port))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
