"""Where a message goes to or came from: transport, IP address, port (and the way in).

Hosts are IP literals in canonical text (``::1``, never ``[::1]`` or ``0:0::1``): name
resolution (RFC 3263) happens before the transport, which only moves bytes.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sipsimple.core.transport.stream import SIPConnection

__all__ = [
    "DEFAULT_PORTS",
    "RELIABLE_TRANSPORTS",
    "TRANSPORTS",
    "TransportAddress",
    "canonical_ip",
    "format_hostport",
]

TRANSPORTS = ("udp", "tcp", "tls")
RELIABLE_TRANSPORTS = frozenset(("tcp", "tls"))
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}


@functools.lru_cache(maxsize=1024)
def canonical_ip(host: str) -> str | None:
    """``host`` as a canonical IP literal (brackets removed), or None if it is a name."""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def format_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class TransportAddress:
    """A remote transport address: ``transport`` ("udp", "tcp" or "tls"), ``host``, ``port``.

    Addresses the transport hands out also say how the message travelled: ``local`` is
    our (host, port) of the socket or connection, and ``connection`` the TCP/TLS
    connection (None for UDP). Neither takes part in equality or hashing, so an address
    given to ``on_message`` compares equal to the same peer given by hand.
    """

    transport: str
    host: str
    port: int
    local: tuple[str, int] | None = field(default=None, compare=False)
    connection: SIPConnection | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, not {self.transport!r}")
        host = canonical_ip(self.host)
        if host is None:
            raise ValueError(
                f"host must be an IP address, not {self.host!r} (resolve names first, RFC 3263)"
            )
        if host != self.host:
            object.__setattr__(self, "host", host)
        if isinstance(self.port, bool) or not 0 < self.port < 65536:
            raise ValueError(f"port must be in 1..65535, not {self.port!r}")

    @property
    def is_reliable(self) -> bool:
        return self.transport in RELIABLE_TRANSPORTS

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.host

    def with_transport(self, transport: str) -> TransportAddress:
        """The same peer over another transport (the size rule's UDP to TCP switch)."""
        return replace(self, transport=transport, local=None, connection=None)

    def __str__(self) -> str:
        return f"{self.transport}:{format_hostport(self.host, self.port)}"
