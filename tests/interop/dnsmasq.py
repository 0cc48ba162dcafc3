"""A dnsmasq serving given records on a free loopback port, for interop tests.

    with Dnsmasq(["--host-record=sip.example.test,127.0.0.10"]) as server:
        server.nameserver  # "127.0.0.1:<port>", for DNSManager().system_nameservers

It answers only from its own records (no upstream, no /etc/hosts) and says NXDOMAIN
for any other name under the ``local_domains``. Records have TTL 0 unless ``local_ttl``
is given. A missing dnsmasq binary is an error, never a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import dns.exception
import dns.message
import dns.query


def free_port(*addresses: str) -> int:
    """A port free for both UDP and TCP on every given address (a small race remains)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((addresses[0], 0))
            port = probe.getsockname()[1]
        try:
            for address in addresses:
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    with socket.socket(socket.AF_INET, kind) as sock:
                        sock.bind((address, port))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no port free on {addresses}")


def dnsmasq_binary() -> str:
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    binary = shutil.which("dnsmasq", path=path)
    if binary is None:
        raise RuntimeError("dnsmasq is not installed (Debian package dnsmasq-base)")
    return binary


class Dnsmasq:
    """One dnsmasq process; start() waits until it answers, stop() ends it."""

    def __init__(
        self,
        records: Iterable[str],
        *,
        address: str = "127.0.0.1",
        port: int | None = None,
        local_domains: Iterable[str] = ("test",),
        local_ttl: int | None = None,
    ) -> None:
        self.address = address
        self.port = port or free_port(address)
        self.records = list(records)
        self.local_domains = list(local_domains)
        self.local_ttl = local_ttl
        self._process: subprocess.Popen[bytes] | None = None
        self._log_dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def nameserver(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def log(self) -> str:
        if self._log_dir is None:
            return ""
        return Path(self._log_dir.name, "dnsmasq.log").read_text(errors="replace")

    def start(self, timeout: float = 5.0) -> None:
        self._log_dir = tempfile.TemporaryDirectory(prefix="dnsmasq-")
        arguments = [
            dnsmasq_binary(),
            "--no-daemon",
            "--conf-file=/dev/null",
            f"--port={self.port}",
            f"--listen-address={self.address}",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--log-queries",
            "--log-facility=-",
            *(f"--local=/{domain}/" for domain in self.local_domains),
            *([f"--local-ttl={self.local_ttl}"] if self.local_ttl is not None else []),
            *self.records,
        ]
        with Path(self._log_dir.name, "dnsmasq.log").open("wb") as log:
            self._process = subprocess.Popen(arguments, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        probe = dns.message.make_query("dnsmasq-ready.invalid.", "A")
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"dnsmasq exited at start:\n{self.log}")
            try:
                dns.query.udp(probe, self.address, port=self.port, timeout=0.1)
                return
            except (dns.exception.Timeout, OSError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"dnsmasq did not answer within {timeout} s") from None

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._log_dir is not None:
            self._log_dir.cleanup()
            self._log_dir = None

    def __enter__(self) -> Dnsmasq:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
