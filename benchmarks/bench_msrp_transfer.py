"""MSRP over loopback: file-transfer throughput and chat latency with sipsimple.msrp.transport.

A 100 MB body goes from one MSRPTransport to another (both in this process, one
event loop, as two SDK endpoints on one machine would run) over TCP and over TLS,
with 64 KB, 256 KB and 1 MB chunks.  The peer is a plain asyncio copy of the same
bytes over the same kind of connection (a protocol writing 256 KB blocks with the
same write-buffer back-pressure, a sink counting them), measured in the same run:
the ratio says what MSRP framing, the session machine and the transport layer cost.
Each figure is the best of three runs: MB/s of wall-clock time, and the CPU seconds
the process spent (all threads: time.process_time), which a loaded machine disturbs
less.

``plain_file_copy`` is the peer of a disk-to-disk transfer (bench_msrp_streams uses
it): a file read in blocks by a worker thread (os.pread, one block read ahead),
written to the connection with the same back-pressure, and on the other side
written to a file by a worker thread (os.pwritev of the pieces received, one write
in flight, reading paused while a second block waits).

Chat: messages per second for 5000 small messages sent back to back, and the time
from send_message() to the receiver's event for 1000 messages sent one at a time
(median and 99th percentile).

Run it in a loopback-only namespace (scripts/bench.sh does).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import ssl
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sipsimple.msrp import MSRPURI, MessageDataReceived, MessageReceived
from sipsimple.msrp.transport import MSRPListener, MSRPTransport, connect

MB = 1024 * 1024
TOTAL = 100 * MB
BLOCK = 256 * 1024
RUNS = 3

Contexts = tuple[ssl.SSLContext, ssl.SSLContext] | None


class Figure(NamedTuple):
    """One measured transfer: MB/s (wall clock) and CPU seconds (all threads)."""

    rate: float
    cpu: float


def best_of(figures: list[Figure]) -> Figure:
    """The best rate and the least CPU time of several runs."""
    return Figure(max(f.rate for f in figures), min(f.cpu for f in figures))


async def best(run: Callable[[], Awaitable[Figure]], runs: int = RUNS) -> Figure:
    """best_of ``runs`` runs of ``run``."""
    return best_of([await run() for _ in range(runs)])


class _Clock:
    """Wall clock and process CPU time from its creation."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def figure(self, size: int) -> Figure:
        return Figure(
            size / (time.perf_counter() - self.wall) / 1e6, time.process_time() - self.cpu
        )


def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    with tempfile.TemporaryDirectory() as directory:
        cert_file, key_file = Path(directory, "cert.pem"), Path(directory, "key.pem")
        cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.load_cert_chain(cert_file, key_file)
        client = ssl.create_default_context(cafile=str(cert_file))
    return server, client


def blocks() -> Iterator[bytes]:
    block = bytes(range(256)) * (BLOCK // 256)
    for _ in range(TOTAL // BLOCK):
        yield block


# -- the peers: plain asyncio copies ---------------------------------------------------------


class _Sink(asyncio.Protocol):
    def __init__(self, done: asyncio.Future[None]) -> None:
        self.count = 0
        self.done = done

    def data_received(self, data: bytes) -> None:
        self.count += len(data)
        if self.count >= TOTAL and not self.done.done():
            self.done.set_result(None)


class _Source(asyncio.Protocol):
    def __init__(self, high_water: int = 256 * 1024) -> None:
        self.room: asyncio.Future[None] | None = None
        self.high_water = high_water

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=self.high_water)

    def pause_writing(self) -> None:
        self.room = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.room is not None:
            self.room.set_result(None)
            self.room = None


async def plain_copy(contexts: Contexts) -> Figure:
    """The bytes of blocks() from one connection end to the other, counted."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    server_context, client_context = contexts or (None, None)
    server = await loop.create_server(lambda: _Sink(done), "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    transport, source = await loop.create_connection(
        _Source,
        "127.0.0.1",
        port,
        ssl=client_context,
        server_hostname="127.0.0.1" if client_context else None,
    )
    clock = _Clock()
    for block in blocks():
        transport.write(block)
        if source.room is not None:
            await source.room
    await done
    figure = clock.figure(TOTAL)
    transport.close()
    server.close()
    await server.wait_closed()
    return figure


class _FileSink(asyncio.Protocol):
    """Writes what arrives to ``fd`` in blocks of ``write_size`` by a worker thread."""

    def __init__(self, fd: int, size: int, write_size: int, done: asyncio.Future[None]) -> None:
        self.fd = fd
        self.size = size
        self.write_size = write_size
        self.done = done
        self.pieces: list[bytes] = []
        self.buffered = 0
        self.offset = 0  # where the buffered pieces go
        self.writing: asyncio.Future[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.pieces.append(data)
        self.buffered += len(data)
        if self.buffered >= self.write_size or self.offset + self.buffered >= self.size:
            if self.writing is None:
                self._write()
            else:
                self.transport.pause_reading()  # a second block waits for the first

    def _write(self) -> None:
        pieces, offset = self.pieces, self.offset
        self.pieces, self.offset, self.buffered = [], offset + self.buffered, 0
        self.writing = asyncio.ensure_future(asyncio.to_thread(os.pwritev, self.fd, pieces, offset))
        self.writing.add_done_callback(self._written)

    def _written(self, writing: asyncio.Future[int]) -> None:
        writing.result()
        self.writing = None
        if self.buffered >= self.write_size or self.offset + self.buffered >= self.size:
            if self.buffered:
                self._write()
            elif not self.done.done():
                self.done.set_result(None)
        self.transport.resume_reading()


async def plain_file_copy(
    contexts: Contexts,
    source: Path,
    target: Path,
    *,
    read_size: int,
    write_size: int,
    high_water: int,
) -> Figure:
    """``source`` copied to ``target`` over a loopback connection, disk to disk: the
    figure runs from connecting to the last byte written."""
    loop = asyncio.get_running_loop()
    size = source.stat().st_size
    done: asyncio.Future[None] = loop.create_future()
    server_context, client_context = contexts or (None, None)
    out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    server = await loop.create_server(
        lambda: _FileSink(out, size, write_size, done), "127.0.0.1", 0, ssl=server_context
    )
    port = server.sockets[0].getsockname()[1]
    clock = _Clock()
    transport, sender = await loop.create_connection(
        lambda: _Source(high_water),
        "127.0.0.1",
        port,
        ssl=client_context,
        server_hostname="127.0.0.1" if client_context else None,
    )
    fd = os.open(source, os.O_RDONLY)
    offset = 0
    reading = asyncio.ensure_future(asyncio.to_thread(os.pread, fd, read_size, offset))
    while block := await reading:
        offset += len(block)
        reading = asyncio.ensure_future(asyncio.to_thread(os.pread, fd, read_size, offset))
        transport.write(block)
        if sender.room is not None:
            await sender.room
    await done
    figure = clock.figure(size)
    os.close(fd)
    os.close(out)
    transport.close()
    server.close()
    await server.wait_closed()
    return figure


# -- MSRP ------------------------------------------------------------------------------------


async def msrp_pair(
    contexts: Contexts, chunk_size: int, reassemble: bool
) -> tuple[MSRPTransport, MSRPTransport, MSRPListener]:
    server_context, client_context = contexts or (None, None)
    listener = await MSRPListener.start("127.0.0.1", 0, ssl=server_context)
    b_uri = listener.new_uri()
    acceptor = listener.expect(b_uri)
    a_uri = MSRPURI("127.0.0.1", 9, session_id="benchalice", use_tls=contexts is not None)
    alice = await connect(a_uri, [b_uri], ssl=client_context, chunk_size=chunk_size)
    bob = await acceptor.accept([a_uri], reassemble=reassemble)
    return alice, bob, listener


async def drain(transport: MSRPTransport) -> None:
    async for _ in transport:
        pass


async def msrp_transfer(contexts: Contexts, chunk_size: int) -> Figure:
    """The bytes of blocks() as one message from one MSRPTransport to the other."""
    alice, bob, listener = await msrp_pair(contexts, chunk_size, reassemble=False)
    responses = asyncio.ensure_future(drain(alice))
    clock = _Clock()
    sending = asyncio.ensure_future(
        alice.send_stream(blocks(), "application/octet-stream", size=TOTAL)
    )
    received = 0
    async for event in bob:
        if type(event) is MessageDataReceived:
            received += len(event.data)
        elif type(event) is MessageReceived:
            break
    figure = clock.figure(TOTAL)
    await sending
    assert received == TOTAL, received
    await alice.close()
    await bob.close()
    await responses
    await listener.close()
    return figure


async def chat(contexts: Contexts) -> tuple[float, float, float]:
    alice, bob, listener = await msrp_pair(contexts, 2048, reassemble=True)
    responses = asyncio.ensure_future(drain(alice))
    text = b"Hello Bob, this is a chat message of an ordinary length."
    count = 5000
    start = time.perf_counter()
    for _ in range(count):
        alice.send_message(text, "text/plain")
    received = 0
    async for event in bob:
        if type(event) is MessageReceived:
            received += 1
            if received == count:
                break
    rate = count / (time.perf_counter() - start)
    delays = []
    for _ in range(1000):
        sent = time.perf_counter()
        alice.send_message(text, "text/plain")
        async for event in bob:
            if type(event) is MessageReceived:
                delays.append(time.perf_counter() - sent)
                break
    await alice.close()
    await bob.close()
    await responses
    await listener.close()
    delays.sort()
    return rate, statistics.median(delays) * 1e6, delays[int(len(delays) * 0.99)] * 1e6


async def run() -> None:
    contexts = tls_contexts()
    print(f"file transfer, {TOTAL // MB} MB memory to memory, best of {RUNS}")
    print(f"{'':6} {'':18} {'MB/s':>6} {'CPU s':>6} {'ours/plain':>11} {'CPU ratio':>10}")
    for name, context in (("tcp", None), ("tls", contexts)):
        plain = await best(lambda context=context: plain_copy(context))
        print(f"{name:6} {'plain copy':18} {plain.rate:>6.0f} {plain.cpu:>6.2f}")
        for chunk_size in (64 * 1024, 256 * 1024, 1024 * 1024):
            ours = await best(lambda c=context, k=chunk_size: msrp_transfer(c, k))
            label = f"MSRP {chunk_size // 1024}K chunks"
            print(
                f"{name:6} {label:18} {ours.rate:>6.0f} {ours.cpu:>6.2f}"
                f" {ours.rate / plain.rate:>11.2f} {ours.cpu / plain.cpu:>10.2f}"
            )
    print("chat (2 KB chunks, whole messages)")
    print(f"{'':6} {'msg/s':>8} {'median us':>10} {'p99 us':>8}")
    for name, context in (("tcp", None), ("tls", contexts)):
        rate, median, p99 = await chat(context)
        print(f"{name:6} {rate:>8.0f} {median:>10.0f} {p99:>8.0f}")


def main() -> None:
    asyncio.run(run())


if __name__ == "__main__":
    main()
