"""SIP request/response round trips per second between two TransportManagers on loopback.

Both managers run in this process on one event loop: A sends an OPTIONS, B's callback
answers 200 through its manager, A's callback sees the response; one round trip at a
time (latency bound) and 32 in flight (throughput bound). Peer, measured in the same
run: a plain asyncio echo of the same bytes (DatagramProtocol for UDP, Protocol for
TCP) on the same loop, which parses nothing. The ratio (echo / SIP) is the price of the
transport plus parsing, Via stamping and serializing both messages.

Run it in a loopback-only network namespace (scripts/bench.sh does).
"""

from __future__ import annotations

import asyncio
import time
import uuid

from sipsimple.core.sip.message import SIPRequest, SIPResponse
from sipsimple.core.transport import TransportAddress, TransportManager, TransportSettings

DURATION = 1.5  # seconds per measurement
REPEATS = 3
WINDOWS = (1, 32)


def options(host: str, port: int, transport: str) -> SIPRequest:
    tag = uuid.uuid4().hex
    return SIPRequest(
        "OPTIONS",
        f"sip:bob@{host}:{port};transport={transport}",
        [
            ("Via", f"SIP/2.0/UDP placeholder;branch=z9hG4bK{tag}"),
            ("Max-Forwards", "70"),
            ("From", f"<sip:alice@example.test>;tag={tag[:8]}"),
            ("To", "<sip:bob@example.test>"),
            ("Call-ID", tag),
            ("CSeq", "1 OPTIONS"),
            ("Contact", f"<sip:alice@{host}:5060>"),
            ("Accept", "application/sdp"),
            ("User-Agent", "sipsimple-bench"),
        ],
    )


async def sip_round_trips(transport: str, window: int) -> float:
    """Round trips per second through two TransportManagers."""
    loop = asyncio.get_running_loop()
    done: asyncio.Queue[None] = asyncio.Queue()
    settings = TransportSettings(ip_address="127.0.0.1", tls_port=None)
    answering: set[asyncio.Task[TransportAddress]] = set()

    def on_b(message: SIPRequest | SIPResponse, source: TransportAddress, now: float) -> None:
        assert isinstance(message, SIPRequest)
        task = loop.create_task(b.send(message.make_response(200, to_tag="b"), source))
        answering.add(task)
        task.add_done_callback(answering.discard)

    a = TransportManager(settings, lambda message, source, now: done.put_nowait(None))
    b = TransportManager(settings, on_b)
    await a.start()
    await b.start()
    destination = TransportAddress(transport, "127.0.0.1", b.ports[transport])
    request = options("127.0.0.1", b.ports[transport], transport)
    try:
        for _ in range(window):
            await a.send(request, destination)
        count = 0
        start = time.perf_counter()
        while time.perf_counter() - start < DURATION:
            await done.get()
            count += 1
            await a.send(request, destination)
        elapsed = time.perf_counter() - start
        for _ in range(window - 1):
            await asyncio.wait_for(done.get(), 2)
    finally:
        await a.stop()
        await b.stop()
    return count / elapsed


class _UDPEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)  # type: ignore[attr-defined]


class _UDPClient(asyncio.DatagramProtocol):
    def __init__(self, done: asyncio.Queue[None]) -> None:
        self.done = done

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.done.put_nowait(None)


class _TCPEcho(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[attr-defined]


class _TCPClient(asyncio.Protocol):
    def __init__(self, done: asyncio.Queue[None], size: int) -> None:
        self.done = done
        self.size = size
        self.pending = 0

    def data_received(self, data: bytes) -> None:
        self.pending += len(data)
        while self.pending >= self.size:
            self.pending -= self.size
            self.done.put_nowait(None)


async def echo_round_trips(transport: str, window: int) -> float:
    """Round trips per second of a plain asyncio echo of the same request bytes."""
    loop = asyncio.get_running_loop()
    done: asyncio.Queue[None] = asyncio.Queue()
    data = bytes(options("127.0.0.1", 5060, transport))
    if transport == "udp":
        server, _ = await loop.create_datagram_endpoint(_UDPEcho, local_addr=("127.0.0.1", 0))
        port = server.get_extra_info("sockname")[1]
        client, _ = await loop.create_datagram_endpoint(
            lambda: _UDPClient(done), remote_addr=("127.0.0.1", port)
        )

        def send() -> None:
            client.sendto(data)  # type: ignore[attr-defined]

        closers = [server.close, client.close]
    else:
        tcp_server = await loop.create_server(_TCPEcho, "127.0.0.1", 0)
        port = tcp_server.sockets[0].getsockname()[1]
        stream, _ = await loop.create_connection(
            lambda: _TCPClient(done, len(data)), "127.0.0.1", port
        )

        def send() -> None:
            stream.write(data)

        closers = [stream.close, tcp_server.close]
    try:
        for _ in range(window):
            send()
        count = 0
        start = time.perf_counter()
        while time.perf_counter() - start < DURATION:
            await done.get()
            count += 1
            send()
        elapsed = time.perf_counter() - start
    finally:
        for close in closers:
            close()
    return count / elapsed


async def run() -> None:
    print(f"round trips per second, best of {REPEATS} runs of {DURATION} s each")
    print(f"{'transport':>9} {'in flight':>9} {'SIP':>10} {'echo':>10} {'echo/SIP':>9}")
    for transport in ("udp", "tcp"):
        for window in WINDOWS:
            sip = echo = 0.0
            for _ in range(REPEATS):
                sip = max(sip, await sip_round_trips(transport, window))
                echo = max(echo, await echo_round_trips(transport, window))
            print(f"{transport:>9} {window:>9} {sip:>10.0f} {echo:>10.0f} {echo / sip:>9.2f}")


def main() -> None:
    asyncio.run(run())


if __name__ == "__main__":
    main()
