"""Bad input and explicit limits: 400s with a Warning, garbage dropped, memory bounded.

Run inside a loopback-only network namespace (see test_sip_transport.py).
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.integration.test_sip_transport import Peer, make_request, raw_udp, recv_datagram

from sipsimple.core.sip.message import parse_message
from sipsimple.core.transport import TransportAddress, TransportError, TransportFailure

# A request whose framing is sound but whose CSeq method is not the request's.
MISMATCHED = (
    b"OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKbad1;rport\r\n"
    b"From: <sip:alice@example.test>;tag=a1\r\n"
    b"To: <sip:bob@example.test>\r\n"
    b"Call-ID: bad1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Content-Length: 0\r\n\r\n"
)
NO_CALL_ID = MISMATCHED.replace(b"Call-ID: bad1\r\n", b"").replace(b"1 INVITE", b"1 OPTIONS")


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """What reached the event loop's exception handler: must stay empty."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    yield errors
    loop.set_exception_handler(None)


def check_warning(data: bytes, agent_port: int, text: str) -> None:
    response = parse_message(data)
    assert response.code == 400
    warning = response.get_header("Warning")
    assert warning is not None, data
    warning_code, agent, warning_text = warning.body.split(" ", 2)
    assert warning_code == "399" and agent == f"127.0.0.1:{agent_port}"
    assert text in warning_text


async def test_malformed_udp_request_gets_400_with_warning(loop_errors: list[Any]) -> None:
    async with Peer(ip_address="127.0.0.1", tls_port=None) as b:
        port = b.manager.ports["udp"]
        with raw_udp() as sock:
            sock.sendto(MISMATCHED, ("127.0.0.1", port))
            data = await recv_datagram(sock)  # rport: back to the source port
        check_warning(data, port, "CSeq method INVITE does not match request method OPTIONS")
        response = parse_message(data)
        assert response.top_via.received == "127.0.0.1" and response.call_id == "bad1"
        assert b.manager.statistics.malformed_answered == 1
        await b.nothing(0.1)
    assert loop_errors == []


async def test_malformed_tcp_request_gets_400_and_the_stream_goes_on() -> None:
    async with Peer(200, ip_address="127.0.0.1", tls_port=None) as b:
        port = b.manager.ports["tcp"]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        good = make_request(via="SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bKgood;rport")
        writer.write(MISMATCHED.replace(b"UDP", b"TCP") + bytes(good))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        check_warning(head, port, "CSeq method INVITE")
        got, _ = await b.receive()
        assert got.method == "OPTIONS"
        ok = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        assert ok.startswith(b"SIP/2.0 200 ")
        writer.close()


async def test_unanswerable_garbage_is_dropped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "sipsimple.core.transport")
    async with Peer(ip_address="127.0.0.1", tls_port=None) as b:
        port = b.manager.ports["udp"]
        with raw_udp() as sock:
            source = f"udp:127.0.0.1:{sock.getsockname()[1]}"
            for junk in (NO_CALL_ID, b"\x16\x03\x01\x00\xa5garbage", b"SIP/2.0 200 OK\r\n\r\n"):
                sock.sendto(junk, ("127.0.0.1", port))
            await b.nothing(0.2)
            with pytest.raises(TimeoutError):
                await recv_datagram(sock, 0.1)
        assert b.manager.statistics.malformed_dropped == 3
        assert caplog.text.count(source) == 3
        assert "missing Call-ID header" in caplog.text


async def test_oversized_datagram_is_dropped() -> None:
    async with Peer(200, ip_address="127.0.0.1", tls_port=None, max_datagram_size=2000) as b:
        with raw_udp() as sock:
            sock.sendto(
                bytes(make_request(body=b"z" * 2500)), ("127.0.0.1", b.manager.ports["udp"])
            )
            sock.sendto(
                bytes(make_request(body=b"z" * 1500)), ("127.0.0.1", b.manager.ports["udp"])
            )
            got, _ = await b.receive()
            assert len(got.body) == 1500
        assert b.manager.statistics.datagrams_dropped == 1


def garbage(rng: random.Random, count: int) -> list[bytes]:
    """Datagrams of every kind of wrong, each different."""
    good = bytes(make_request())
    result = []
    for i in range(count):
        kind = i % 5
        if kind == 0:
            result.append(rng.randbytes(rng.randrange(1, 1400)))
        elif kind == 1:
            result.append(good[: rng.randrange(1, len(good))])
        elif kind == 2:
            cut = rng.randrange(len(good))
            result.append(good[:cut] + rng.randbytes(40) + good[cut:])
        elif kind == 3:
            result.append(MISMATCHED.replace(b"bad1", f"{i}".encode()))
        else:
            result.append(b"OPTIONS sip:x SIP/2.0\r\n" + b"X-Junk: " + b"a" * rng.randrange(1300))
    return result


async def test_garbage_flood_keeps_memory_bounded(loop_errors: list[Any]) -> None:
    """5,000 bad datagrams: none escapes, and traced memory grows by less than 256 KiB
    (peak under 1 MiB above the start, the size of a few receive buffers)."""
    datagrams = garbage(random.Random(4), 5_000)
    async with Peer(ip_address="127.0.0.1", tls_port=None) as b:
        target = ("127.0.0.1", b.manager.ports["udp"])
        with raw_udp() as sock:
            tracemalloc.start()
            try:
                before, _ = tracemalloc.get_traced_memory()
                tracemalloc.reset_peak()
                for datagram in datagrams:
                    sock.sendto(datagram, target)
                    await asyncio.sleep(0)  # the loop reads one datagram per turn
                await asyncio.sleep(0.2)
                after, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        stats = b.manager.statistics
        handled = stats.malformed_dropped + stats.malformed_answered + stats.datagrams_dropped
        assert handled > 4500, stats
        assert stats.messages_received == 0
        assert after - before < 256 * 1024, (before, after)
        assert peak - before < 1024 * 1024, (before, peak)
    assert loop_errors == []


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    data = b""
    try:
        while chunk := await reader.read(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


async def test_endless_header_closes_the_connection_and_memory_stays_bounded() -> None:
    """A TCP peer sending a header that never ends is cut off past max_header_size
    (16 KiB here); traced memory stays under 1 MiB above the start meanwhile."""
    async with Peer(ip_address="127.0.0.1", tls_port=None, max_header_size=16384) as b:
        reader, writer = await asyncio.open_connection("127.0.0.1", b.manager.ports["tcp"])
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            writer.write(b"OPTIONS sip:x SIP/2.0\r\nX-Endless: ")
            sent = 0
            with pytest.raises(ConnectionError):
                while sent < 64 * 1024 * 1024:  # bounded: the server must give up long before
                    writer.write(b"a" * 4096)
                    sent += 4096
                    await writer.drain()
                    if reader.at_eof():
                        raise ConnectionResetError("closed by the server")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            writer.close()
        assert sent < 8 * 1024 * 1024
        assert peak - before < 1024 * 1024
        assert b.manager.statistics.connections_closed_for_errors == 1
        assert b.manager.connections == []


async def test_too_large_body_closes_the_connection() -> None:
    async with Peer(ip_address="127.0.0.1", tls_port=None, max_body_size=1000) as b:
        reader, writer = await asyncio.open_connection("127.0.0.1", b.manager.ports["tcp"])
        writer.write(bytes(make_request(body=b"b" * 5000))[:300])
        assert await asyncio.wait_for(read_until_closed(reader), 3) == b""
        assert b.manager.statistics.connections_closed_for_errors == 1
        writer.close()


async def test_connection_limit() -> None:
    async with Peer(ip_address="127.0.0.1", tls_port=None, max_connections=2) as b:
        port = b.manager.ports["tcp"]
        streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        assert await asyncio.wait_for(read_until_closed(streams[2][0]), 3) == b""
        assert b.manager.statistics.connections_refused == 1
        assert len(b.manager.connections) == 2
        for _, writer in streams:
            writer.close()
    async with (
        Peer(ip_address="127.0.0.1", tls_port=None, max_connections=1) as a,
        Peer() as b,
        Peer() as c,
    ):
        await a.manager.send(make_request(), b.address("tcp"))
        assert a.manager.connections == [b.address("tcp")]
        with pytest.raises(TransportError) as info:
            await a.manager.send(make_request(), c.address("tcp"))
        assert info.value.failure is TransportFailure.CONNECTION_LIMIT


async def test_peer_that_stops_reading_is_disconnected() -> None:
    with socket.socket() as deaf:
        deaf.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        deaf.bind(("127.0.0.1", 0))
        deaf.listen(1)
        destination = TransportAddress("tcp", "127.0.0.1", deaf.getsockname()[1])
        async with Peer(ip_address="127.0.0.1", tls_port=None, max_pending_bytes=65536) as a:
            chunk = b"x" * 32768
            with pytest.raises(TransportError) as info:
                for _ in range(2000):  # bounded; the kernel buffers take a few MiB at most
                    await a.manager.send(chunk, destination)
                    await asyncio.sleep(0)
            assert info.value.failure is TransportFailure.SEND_BUFFER_FULL
            assert a.manager.connections == []
            assert a.events[-1][0] == "disconnected" and a.events[-1][2] is info.value


async def test_broken_response_is_dropped() -> None:
    async with Peer(ip_address="127.0.0.1", tls_port=None) as a:
        port = a.manager.ports["udp"]
        with raw_udp() as sock:
            ours = make_request(via=f"SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKr")
            broken = bytes(ours.make_response(200)).replace(b"CSeq: 1 OPTIONS", b"CSeq: x")
            sock.sendto(broken, ("127.0.0.1", port))
            await a.nothing(0.2)
        assert a.manager.statistics.malformed_dropped == 1
