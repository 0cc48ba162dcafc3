"""MSRP over loopback: file-transfer throughput and chat latency with sipsimple.msrp.transport.

A 100 MB body goes from one MSRPTransport to another (both in this process, one
event loop, as two SDK endpoints on one machine would run) over TCP and over TLS,
with 64 KB and 256 KB chunks.  The peer is a plain asyncio copy of the same bytes
over the same kind of connection (a protocol writing 256 KB blocks with the same
write-buffer back-pressure, a sink counting them), measured in the same run: the
ratio says what MSRP framing, the session machine and the transport layer cost.

Chat: messages per second for 5000 small messages sent back to back, and the time
from send_message() to the receiver's event for 1000 messages sent one at a time
(median and 99th percentile).

Run it in a loopback-only namespace (scripts/bench.sh does).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

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


# -- the peer: a plain asyncio copy ----------------------------------------------------------


class _Sink(asyncio.Protocol):
    def __init__(self, done: asyncio.Future[None]) -> None:
        self.count = 0
        self.done = done

    def data_received(self, data: bytes) -> None:
        self.count += len(data)
        if self.count >= TOTAL and not self.done.done():
            self.done.set_result(None)


class _Source(asyncio.Protocol):
    def __init__(self) -> None:
        self.room: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=256 * 1024)

    def pause_writing(self) -> None:
        self.room = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.room is not None:
            self.room.set_result(None)
            self.room = None


async def plain_copy(contexts: tuple[ssl.SSLContext, ssl.SSLContext] | None) -> float:
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
    start = time.perf_counter()
    for block in blocks():
        transport.write(block)
        if source.room is not None:
            await source.room
    await done
    elapsed = time.perf_counter() - start
    transport.close()
    server.close()
    await server.wait_closed()
    return TOTAL / elapsed / 1e6


# -- MSRP ------------------------------------------------------------------------------------


async def msrp_pair(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext] | None, chunk_size: int, reassemble: bool
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


async def msrp_transfer(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext] | None, chunk_size: int
) -> float:
    alice, bob, listener = await msrp_pair(contexts, chunk_size, reassemble=False)
    responses = asyncio.ensure_future(drain(alice))
    start = time.perf_counter()
    sending = asyncio.ensure_future(
        alice.send_stream(blocks(), "application/octet-stream", size=TOTAL)
    )
    received = 0
    async for event in bob:
        if type(event) is MessageDataReceived:
            received += len(event.data)
        elif type(event) is MessageReceived:
            break
    elapsed = time.perf_counter() - start
    await sending
    assert received == TOTAL, received
    await alice.close()
    await bob.close()
    await responses
    await listener.close()
    return TOTAL / elapsed / 1e6


async def chat(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext] | None,
) -> tuple[float, float, float]:
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
    print(f"file transfer, {TOTAL // MB} MB, best of {RUNS} (MB/s)")
    print(f"{'':6} {'chunk':>7} {'msrp':>8} {'plain':>8} {'msrp/plain':>11}")
    for name, context in (("tcp", None), ("tls", contexts)):
        plain = max([await plain_copy(context) for _ in range(RUNS)])
        for chunk_size in (64 * 1024, 256 * 1024):
            msrp = max([await msrp_transfer(context, chunk_size) for _ in range(RUNS)])
            print(
                f"{name:6} {chunk_size // 1024:>6}K {msrp:>8.0f} {plain:>8.0f}"
                f" {msrp / plain:>11.2f}"
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
