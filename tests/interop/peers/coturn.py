"""coturn 4.6 as a STUN/TURN server on 127.0.0.1, and a minimal STUN binding client."""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Mapping

from .certs import Certificates
from .ports import LOOPBACK, free_port, free_port_range
from .process import PeerProcess

MAGIC_COOKIE = 0x2112A442
_BINDING_REQUEST = 0x0001
_BINDING_SUCCESS = 0x0101
_XOR_MAPPED_ADDRESS = 0x0020


class Coturn(PeerProcess):
    """turnserver with long-term credentials (`users`, realm `realm`) and loopback relays.

    STUN and TURN listen on UDP and TCP `port`; with `certificates`, TURN over
    TLS listens on `tls_port`.  Relay addresses come from `relay_ports`.
    """

    name = "coturn"

    def __init__(
        self,
        *,
        users: Mapping[str, str] | None = None,
        realm: str = "example.test",
        certificates: Certificates | None = None,
        relay_port_count: int = 40,
        start_timeout: float = 10.0,
    ) -> None:
        super().__init__(start_timeout=start_timeout)
        self.users = dict(users if users is not None else {"turnuser": "turnpass"})
        self.realm = realm
        self.certificates = certificates
        self.port = free_port()
        self.tls_port = free_port() if certificates else None
        self.relay_ports = free_port_range(relay_port_count)

    @property
    def address(self) -> tuple[str, int]:
        return LOOPBACK, self.port

    def command(self) -> list[str]:
        low, high = self.relay_ports
        args = [
            "turnserver",
            "-n",  # no configuration file: nothing from /etc
            f"--listening-ip={LOOPBACK}",
            f"--relay-ip={LOOPBACK}",
            f"--listening-port={self.port}",
            f"--min-port={low}",
            f"--max-port={high}",
            "--allow-loopback-peers",
            "--lt-cred-mech",
            f"--realm={self.realm}",
            *(f"--user={user}:{password}" for user, password in self.users.items()),
            f"--userdb={self.directory / 'turndb'}",
            f"--pidfile={self.directory / 'turnserver.pid'}",
            f"--log-file={self.log_path}",
            "--simple-log",
            "--no-stdout-log",
            "--no-cli",
            "--no-rfc5780",
            "--no-dtls",
            "--relay-threads=1",
            "--fingerprint",
        ]
        if self.certificates is None:
            args.append("--no-tls")
        else:
            args += [
                f"--tls-listening-port={self.tls_port}",
                f"--cert={self.certificates.server.cert}",
                f"--pkey={self.certificates.server.key}",
            ]
        return args

    def is_ready(self) -> bool:
        try:
            stun_binding(self.address, timeout=0.3)
        except (OSError, StunError):
            return False
        return True


class StunError(RuntimeError):
    """A STUN answer that is not a binding success with an XOR-MAPPED-ADDRESS."""


def stun_binding(
    server: tuple[str, int], timeout: float = 1.0
) -> tuple[tuple[str, int], tuple[str, int]]:
    """Send one RFC 5389 Binding request over UDP: (address the server saw, our address)."""
    transaction_id = os.urandom(12)
    request = struct.pack("!HHI", _BINDING_REQUEST, 0, MAGIC_COOKIE) + transaction_id
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.settimeout(timeout)
        sock.sendto(request, server)
        answer = sock.recv(2048)
        local = sock.getsockname()
    return parse_binding_success(answer, transaction_id), local


def parse_binding_success(answer: bytes, transaction_id: bytes) -> tuple[str, int]:
    """The XOR-MAPPED-ADDRESS of a Binding success response to `transaction_id`."""
    if len(answer) < 20:
        raise StunError(f"STUN answer too short ({len(answer)} bytes)")
    kind, length, cookie = struct.unpack("!HHI", answer[:8])
    if kind != _BINDING_SUCCESS or cookie != MAGIC_COOKIE or answer[8:20] != transaction_id:
        raise StunError(f"not a Binding success for our request (type 0x{kind:04x})")
    offset, end = 20, min(20 + length, len(answer))
    while offset + 4 <= end:
        attribute, size = struct.unpack("!HH", answer[offset : offset + 4])
        value = answer[offset + 4 : offset + 4 + size]
        if attribute == _XOR_MAPPED_ADDRESS and size == 8 and value[1] == 0x01:
            port = struct.unpack("!H", value[2:4])[0] ^ (MAGIC_COOKIE >> 16)
            address = struct.unpack("!I", value[4:8])[0] ^ MAGIC_COOKIE
            return socket.inet_ntoa(struct.pack("!I", address)), port
        offset += 4 + (size + 3) // 4 * 4
    raise StunError("Binding success without an IPv4 XOR-MAPPED-ADDRESS")
