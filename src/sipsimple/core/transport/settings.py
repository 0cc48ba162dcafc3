"""What the transport is started with, and the records its hooks receive."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from sipsimple.core.transport.address import canonical_ip

__all__ = ["PacketLoss", "TraceRecord", "TransportSettings"]


def _positive(name: str, value: float | None, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if value is None or isinstance(value, bool) or not value > 0:
        raise ValueError(f"{name} must be a positive number, not {value!r}")


@dataclass(frozen=True)
class TransportSettings:
    """The Engine's transport options and the limits that keep bad peers bounded.

    Ports: 0 picks a free port, None turns the transport off. ``ip_address`` is one IP
    address, several (each transport listens on all of them with one port number), or
    None for every interface (0.0.0.0 and ::). Without ``tls_cert_file`` a TLS listener
    still runs (as PJSIP's did) but cannot complete a handshake; outgoing TLS works.

    Limits: ``max_datagram_size`` (larger datagrams are dropped), ``max_header_size`` and
    ``max_body_size`` per TCP/TLS message (a peer going past them is disconnected),
    ``max_connections`` (TCP and TLS together; more incoming ones are refused),
    ``max_pending_bytes`` queued for sending on one connection (a peer that does not
    read is disconnected). Timeouts in seconds: ``connect_timeout`` (TCP connect),
    ``tls_timeout`` (TLS handshake), ``idle_timeout`` (a connection without SIP
    messages for that long is closed; None keeps them), ``keepalive_interval`` (CRLFCRLF
    pings on the connections we opened; None sends none) and ``keepalive_timeout`` (no
    pong within it: the peer is dead, RFC 5626 section 4.4.1). ``path_mtu``: a request
    larger than ``path_mtu - 200`` bytes goes over TCP instead of UDP (RFC 3261 section
    18.1.1). ``add_rport``: put ``rport`` in the Via of our requests (RFC 3581).
    ``udp_receive_buffer``: the receive buffer (bytes) asked for on UDP sockets, so that
    a burst arriving while the loop is busy or descheduled waits in the kernel rather
    than being dropped (which costs the peer a retransmission); the kernel caps it at
    ``net.core.rmem_max``. None keeps the system default.
    """

    ip_address: str | tuple[str, ...] | None = None
    udp_port: int | None = 0
    tcp_port: int | None = 0
    tls_port: int | None = None
    tls_verify_server: bool = False
    tls_ca_file: str | Path | None = None
    tls_cert_file: str | Path | None = None
    tls_privkey_file: str | Path | None = None
    tls_timeout: float = 3.0
    connect_timeout: float = 5.0
    idle_timeout: float | None = 600.0
    keepalive_interval: float | None = None
    keepalive_timeout: float = 10.0
    path_mtu: int = 1500
    add_rport: bool = True
    udp_receive_buffer: int | None = 4 << 20
    max_datagram_size: int = 65535
    max_header_size: int = 65536
    max_body_size: int = 1 << 20
    max_connections: int = 1024
    max_pending_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        for name in ("udp_port", "tcp_port", "tls_port"):
            port = getattr(self, name)
            if port is not None and (isinstance(port, bool) or not 0 <= port < 65536):
                raise ValueError(f"{name} must be in 0..65535 or None, not {port!r}")
        for address in self.ip_addresses or ():
            if canonical_ip(address) is None:
                raise ValueError(f"ip_address must hold IP addresses, not {address!r}")
        for name in ("tls_timeout", "connect_timeout", "keepalive_timeout"):
            _positive(name, getattr(self, name))
        for name in ("idle_timeout", "keepalive_interval"):
            _positive(name, getattr(self, name), optional=True)
        if (self.tls_cert_file is None) != (self.tls_privkey_file is None):
            raise ValueError("tls_cert_file and tls_privkey_file go together")
        if not 576 <= self.path_mtu <= 65535:
            raise ValueError(f"path_mtu must be in 576..65535, not {self.path_mtu!r}")
        for name in (
            "max_datagram_size",
            "max_header_size",
            "max_body_size",
            "max_connections",
            "max_pending_bytes",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        buffer = self.udp_receive_buffer
        if buffer is not None and (
            isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1
        ):
            raise ValueError(
                f"udp_receive_buffer must be a positive integer or None, not {buffer!r}"
            )

    @property
    def ip_addresses(self) -> tuple[str, ...] | None:
        """``ip_address`` as a tuple of canonical addresses (None: every interface)."""
        if self.ip_address is None:
            return None
        addresses = (self.ip_address,) if isinstance(self.ip_address, str) else self.ip_address
        if not addresses:
            raise ValueError("ip_address must name at least one address, or be None")
        return tuple(canonical_ip(address) or address for address in addresses)

    @property
    def size_threshold(self) -> int:
        """Requests larger than this go over TCP (RFC 3261 section 18.1.1)."""
        return self.path_mtu - 200


@dataclass(frozen=True, slots=True)
class TraceRecord:
    """One datagram or stream chunk, sent or received (the Engine's SIPEngineSIPTrace)."""

    received: bool
    transport: str
    source_ip: str
    source_port: int
    destination_ip: str
    destination_port: int
    data: bytes


@dataclass
class PacketLoss:
    """Simulated UDP loss for tests: each datagram sent or received is dropped with the
    given probability, drawn from a random generator seeded with ``seed``."""

    send: float = 0.0
    receive: float = 0.0
    seed: int | None = None
    random: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("send", "receive"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} loss must be a probability in 0..1, not {value!r}")
        self.random = random.Random(self.seed)

    def drop_sent(self) -> bool:
        return self.send > 0.0 and self.random.random() < self.send

    def drop_received(self) -> bool:
        return self.receive > 0.0 and self.random.random() < self.receive
