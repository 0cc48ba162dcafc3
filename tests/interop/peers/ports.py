"""Free ports on 127.0.0.1 for the peers, and a look at what is listening.

Ports are found by binding to port 0 and are remembered per process, so two
peers started by the same test run never get the same number even before
either has bound it.  Listening is read from /proc/net (which shows the
caller's network namespace), so checking a peer never sends it anything.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOOPBACK = "127.0.0.1"

# Ranges for media and relays are taken below Linux's ephemeral range
# (32768-60999), so the kernel never hands one of their ports to a connect().
_RANGE_FLOOR = 20000
_RANGE_CEILING = 32000

_handed_out: set[int] = set()


def _bindable(port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port free on 127.0.0.1 for both UDP and TCP (SIP uses one number for both)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port = sock.getsockname()[1]
        if port not in _handed_out and _bindable(port, socket.SOCK_DGRAM):
            _handed_out.add(port)
            return port
    raise RuntimeError("no free port on 127.0.0.1 after 200 tries")


def free_port_range(count: int) -> tuple[int, int]:
    """`count` consecutive ports free for UDP and TCP: (first, last), for RTP or relays."""
    if count < 1:
        raise ValueError(f"count must be at least 1, not {count}")
    for _ in range(200):
        first = random.randrange(_RANGE_FLOOR, _RANGE_CEILING - count)
        span = range(first, first + count)
        if any(port in _handed_out for port in span):
            continue
        if all(
            _bindable(port, socket.SOCK_DGRAM) and _bindable(port, socket.SOCK_STREAM)
            for port in span
        ):
            _handed_out.update(span)
            return first, first + count - 1
    raise RuntimeError(f"no {count} consecutive free ports on 127.0.0.1 after 200 tries")


_TCP_LISTEN = "0A"
_UDP_UNCONNECTED = "07"


def is_listening(port: int, transport: str, host: str = LOOPBACK) -> bool:
    """Whether a socket of this network namespace is bound (UDP) or listening (TCP) on host:port.

    A wildcard bind (0.0.0.0) counts too, as it receives what is sent to `host`.
    """
    if transport not in ("udp", "tcp"):
        raise ValueError(f"transport must be 'udp' or 'tcp', not {transport!r}")
    wanted_state = _TCP_LISTEN if transport == "tcp" else _UDP_UNCONNECTED
    addresses = {_hex_address(host, port), _hex_address("0.0.0.0", port)}
    table = Path("/proc/net") / transport
    for line in table.read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] in addresses and fields[3] == wanted_state:
            return True
    return False


def _hex_address(host: str, port: int) -> str:
    packed = socket.inet_aton(host)
    return f"{int.from_bytes(packed, 'little'):08X}:{port:04X}"
