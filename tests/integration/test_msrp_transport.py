"""MSRP over real loopback connections: sipsimple.msrp.transport end to end.

Run inside a private network namespace:
``unshare -n sh -c 'ip link set lo up; PYTHONPATH=src python -m pytest
tests/integration/test_msrp_transport*.py -q'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import ipaddress
import socket
import ssl
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sipsimple.msrp import (
    MSRPURI,
    ByteRange,
    FileRegion,
    MessageDataReceived,
    MessageReceived,
    MessageSent,
    MSRPData,
    MSRPParser,
    ProtocolError,
    ReportReceived,
    ResponseReceived,
    make_id,
)
from sipsimple.msrp.protocol import FrameData, FrameEnded, FrameStarted, format_auth_params
from sipsimple.msrp.transport import (
    KERNEL_UNSENT_LIMIT,
    MSRPConnectionError,
    MSRPListener,
    MSRPRelayError,
    MSRPTransport,
    TransportClosed,
    answer_setup,
    connect,
    connect_relay,
    connects,
)

pytestmark = pytest.mark.timeout(30)

MB = 1024 * 1024


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1: (server context, client context)."""
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
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
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


@pytest.fixture(autouse=True)
async def clean_loop():
    """Fails a test after which the loop reported an exception or tasks were left."""
    loop = asyncio.get_running_loop()
    reported: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    yield
    await asyncio.sleep(0)  # let connection_lost callbacks run
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not leftover, f"tasks left running: {leftover}"
    assert not reported, f"the loop reported: {reported}"


A_URI = MSRPURI("127.0.0.1", 9, session_id="alicesession1", transport="tcp")


async def open_pair(
    tls_contexts=None, a_options=None, b_options=None, trace=None
) -> tuple[MSRPTransport, MSRPTransport, MSRPListener]:
    """Alice connects (active), Bob listens (passive)."""
    server, client = tls_contexts or (None, None)
    listener = await MSRPListener.start("127.0.0.1", 0, ssl=server, trace=trace)
    b_uri = listener.new_uri()
    acceptor = listener.expect(b_uri)
    a_uri = MSRPURI("127.0.0.1", 9, session_id="alicesession1", use_tls=server is not None)
    alice = await connect(a_uri, [b_uri], ssl=client, trace=trace, **(a_options or {}))
    bob = await acceptor.accept([a_uri], timeout=5, **(b_options or {}))
    return alice, bob, listener


async def close_all(*things) -> None:
    for thing in things:
        await thing.close()


async def next_of(transport: MSRPTransport, kind: type):
    async for event in transport:
        if isinstance(event, kind):
            return event
        if isinstance(event, TransportClosed):
            raise AssertionError(f"closed while waiting for {kind.__name__}: {event.error}")
    raise AssertionError("no more events")


def blocks(count: int, size: int) -> Iterator[bytes]:
    """Deterministic, varied blocks made on the fly (nothing big stays in memory)."""
    for index in range(count):
        yield hashlib.sha256(index.to_bytes(8, "big")).digest() * (size // 32)


def pattern_sha1(count: int, size: int) -> str:
    digest = hashlib.sha1()
    for block in blocks(count, size):
        digest.update(block)
    return digest.hexdigest()


# -- a=setup ---------------------------------------------------------------------------------


def test_setup_resolution():
    assert answer_setup(None) == "passive"  # an RFC 4975 offerer connects
    assert answer_setup("actpass") == "active"
    assert answer_setup("actpass", prefer="passive") == "passive"
    assert answer_setup("passive") == "active"
    assert connects(None, None, offerer=True) and not connects(None, None, offerer=False)
    assert connects("actpass", "passive", offerer=True)
    assert connects("actpass", "active", offerer=False)
    assert not connects("actpass", "active", offerer=True)
    for offer in (None, "active", "passive", "actpass"):
        answer = answer_setup(offer)
        assert connects(offer, answer, offerer=True) != connects(offer, answer, offerer=False)
    with pytest.raises(ValueError):
        connects("active", "active", offerer=True)
    with pytest.raises(ValueError):
        connects("actpass", "actpass", offerer=True)
    with pytest.raises(ValueError):
        answer_setup("holdconn")


# -- chat ------------------------------------------------------------------------------------


@pytest.mark.parametrize("use_tls", [False, True], ids=["tcp", "tls"])
async def test_chat_both_ways(use_tls, tls):
    traced: list[tuple[str, tuple, tuple, bytes]] = []
    alice, bob, listener = await open_pair(
        tls if use_tls else None, trace=lambda *args: traced.append(args)
    )
    texts = [f"message {i} \N{SNOWMAN}".encode() for i in range(5)]
    for text in texts:
        alice.send_message(text, "text/plain")
    received = [(await next_of(bob, MessageReceived)).data for _ in texts]
    assert received == texts
    bob.send_message(b"and back", "text/plain", success_report="yes")
    seen = []
    async for event in alice:
        seen.append(event)
        if isinstance(event, MessageReceived):
            break
    assert (seen[-1].data, seen[-1].content_type) == (b"and back", "text/plain")
    # Alice's sends were all acknowledged with 200, and the bodiless SEND binding the connection
    responses = [e for e in seen if isinstance(e, ResponseReceived)]
    assert len(responses) == len(texts) + 1 and {r.code for r in responses} == {200}
    assert isinstance(bob.local_address, tuple) and bob.remote_address == alice.local_address
    # both ends traced, in plaintext even over TLS: what one wrote, the other read
    for writer, reader in ((alice, bob), (bob, alice)):
        sent = b"".join(
            d for way, lo, _, d in traced if way == "outgoing" and lo == writer.local_address
        )
        read = b"".join(
            d for way, lo, _, d in traced if way == "incoming" and lo == reader.local_address
        )
        assert read and sent.startswith(read)  # the last response may still be on its way
    outgoing = b"".join(d for way, lo, _, d in traced if lo == alice.local_address)
    assert "message 4 \N{SNOWMAN}".encode() in outgoing
    await close_all(alice, bob, listener)
    assert alice.closed and bob.closed
    with pytest.raises(Exception, match="closed"):
        alice.send_message(b"late", "text/plain")


async def test_events_end_with_transport_closed():
    alice, bob, listener = await open_pair()
    await alice.close()
    events = [event async for event in bob]
    assert isinstance(events[-1], TransportClosed)
    assert isinstance(events[-1].error, MSRPConnectionError)
    await bob.close()
    events = [event async for event in alice]
    assert isinstance(events[-1], TransportClosed) and events[-1].error is None
    await listener.close()


async def test_connection_refused_is_a_clear_error():
    listener = await MSRPListener.start()
    uri = listener.new_uri()
    await listener.close()
    with pytest.raises(MSRPConnectionError, match="cannot connect"):
        await connect(A_URI, [uri], timeout=5)


async def test_accept_times_out_and_unexpected_tls_is_refused(tls):
    listener = await MSRPListener.start()
    acceptor = listener.expect(listener.new_uri())
    with pytest.raises(MSRPConnectionError, match="no connection"):
        await acceptor.accept([A_URI], timeout=0.05)
    with pytest.raises(ValueError):
        listener.expect(MSRPURI("127.0.0.1", listener.port, session_id="x1234", use_tls=True))
    with pytest.raises(ValueError, match="advertise"):
        listener.new_uri(host="0.0.0.0")  # what a wildcard listener would advertise
    await listener.close()


# -- file transfer -----------------------------------------------------------------------------


async def transfer(
    sender: MSRPTransport, receiver: MSRPTransport, count: int, size: int
) -> tuple[str, list]:
    """Streams ``count`` blocks; returns the receiver's SHA-1 and its non-data events."""
    send = asyncio.ensure_future(
        sender.send_stream(blocks(count, size), "application/octet-stream", size=count * size)
    )
    digest = hashlib.sha1()
    others = []
    async for event in receiver:
        if isinstance(event, MessageDataReceived):
            digest.update(event.data)
        else:
            others.append(event)
            if isinstance(event, MessageReceived | TransportClosed):
                break
    await send
    return digest.hexdigest(), others


async def test_20_mb_file_arrives_intact_in_bounded_memory():
    bound = 4 * MB  # the payload is 20 MB
    alice, bob, listener = await open_pair(
        a_options={"chunk_size": 64 * 1024}, b_options={"reassemble": False}
    )
    drain = asyncio.ensure_future(consume(alice))
    tracemalloc.start()
    try:
        digest, others = await transfer(alice, bob, 80, 256 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest == pattern_sha1(80, 256 * 1024)
    assert isinstance(others[-1], MessageReceived) and others[-1].size == 20 * MB
    assert peak < bound, f"peak {peak / MB:.1f} MB"
    await close_all(alice, bob, listener)
    await drain


async def test_reads_grow_and_each_is_kept_as_it_came():
    # A file arrives in reads that grow past asyncio's 256 KB while they come full;
    # every read is an object of its own, which the events keep without a copy: all
    # of them held to the end still make up the body (a reused read buffer would not).
    alice, bob, listener = await open_pair(
        a_options={"chunk_size": MB}, b_options={"reassemble": False, "max_queued_bytes": 2 * MB}
    )
    drain = asyncio.ensure_future(consume(alice))
    send = asyncio.ensure_future(
        alice.send_stream(blocks(32, 256 * 1024), "application/octet-stream", size=8 * MB)
    )
    pieces = []
    async for event in bob:
        if isinstance(event, MessageDataReceived):
            pieces.append(event.data)
        elif isinstance(event, MessageReceived):
            break
    await send
    assert all(type(piece) is bytes for piece in pieces)
    assert hashlib.sha1(b"".join(pieces)).hexdigest() == pattern_sha1(32, 256 * 1024)
    assert bob._conn.transport.max_size == MB  # 64 KB, 256 KB, then the cap
    assert max(len(piece) for piece in pieces) > 256 * 1024
    await close_all(alice, bob, listener)
    await drain


async def test_file_over_tls(tls):
    alice, bob, listener = await open_pair(
        tls, a_options={"chunk_size": 32 * 1024}, b_options={"reassemble": False}
    )
    drain = asyncio.ensure_future(consume(alice))
    digest, others = await transfer(alice, bob, 16, 128 * 1024)
    assert digest == pattern_sha1(16, 128 * 1024)
    assert isinstance(others[-1], MessageReceived)
    await close_all(alice, bob, listener)
    await drain


async def consume(transport: MSRPTransport) -> list:
    return [event async for event in transport]


async def receive_file_and_chat(
    alice: MSRPTransport, bob: MSRPTransport, text: bytes, after: int, digest=None
) -> tuple[list[bytes], int | None, int | None]:
    """Bob's events until the file's message is complete; alice sends ``text`` once
    ``after`` bytes of the file are in.  Returns the chat's pieces, and how much of the
    file was in when the chat was sent and when it was complete."""
    received = 0
    chat: list[bytes] = []
    chat_sent_at = chat_arrived_at = None
    async for event in bob:
        if isinstance(event, MessageDataReceived) and event.content_type == "text/plain":
            chat.append(event.data)
        elif isinstance(event, MessageDataReceived):
            assert event.offset == received
            if digest is not None:
                digest.update(event.data)
            received += len(event.data)
            if chat_sent_at is None and received >= after:
                alice.send_message(text, "text/plain")
                chat_sent_at = received
        elif isinstance(event, MessageReceived):
            if event.content_type != "text/plain":
                break
            chat_arrived_at = received
    return chat, chat_sent_at, chat_arrived_at


async def test_chat_overtakes_a_large_transfer():
    total_blocks, size = 96, 256 * 1024  # 24 MB
    alice, bob, listener = await open_pair(
        a_options={"chunk_size": 64 * 1024}, b_options={"reassemble": False}
    )
    drain = asyncio.ensure_future(consume(alice))
    send = asyncio.ensure_future(
        alice.send_stream(
            blocks(total_blocks, size), "application/octet-stream", size=total_blocks * size
        )
    )
    chat, chat_sent_at, chat_arrived_at = await receive_file_and_chat(
        alice, bob, b"are you still there?", 2 * MB
    )
    assert b"".join(chat) == b"are you still there?"
    await send
    total = total_blocks * size
    assert chat_sent_at is not None and chat_arrived_at is not None
    # it came through while three quarters of the file were still on their way
    assert chat_arrived_at < total // 4 + chat_sent_at, (chat_sent_at, chat_arrived_at)
    await close_all(alice, bob, listener)
    await drain


def file_regions(fd: int, count: int, size: int) -> Iterator[FileRegion]:
    for index in range(count):
        yield FileRegion(fd, index * size, size)


@pytest.mark.parametrize("use_tls", [False, True], ids=["tcp", "tls"])
async def test_a_file_sent_as_regions(use_tls, tls, tmp_path):
    count, size = 24, 256 * 1024  # 6 MB, one region per chunk
    path = tmp_path / "source.bin"
    with open(path, "wb") as file:
        for block in blocks(count, size):
            file.write(block)
    alice, bob, listener = await open_pair(
        tls if use_tls else None, a_options={"chunk_size": size}, b_options={"reassemble": False}
    )
    assert alice.sends_file_regions is not use_tls  # TLS reads them (loop.sendfile cannot)
    drain = asyncio.ensure_future(consume(alice))
    digest = hashlib.sha1()
    with open(path, "rb") as file:
        send = asyncio.ensure_future(
            alice.send_stream(
                file_regions(file.fileno(), count, size),
                "application/octet-stream",
                size=count * size,
            )
        )
        chat, chat_sent_at, chat_arrived_at = await receive_file_and_chat(
            alice, bob, b"still there?", 1 * MB, digest
        )
        message = await send
    assert chat == [b"still there?"]
    assert digest.hexdigest() == pattern_sha1(count, size) and message.done
    assert chat_arrived_at is not None
    if not use_tls:  # sendfile: the chat waits for the chunks on their way, not for the file
        assert chat_arrived_at <= chat_sent_at + 4 * size, (chat_sent_at, chat_arrived_at)
    await close_all(alice, bob, listener)
    await drain


# -- flow control and failures -------------------------------------------------------------------


class Deaf(asyncio.Protocol):
    """A peer that accepts the connection and never reads from it."""

    def connection_made(self, transport):
        transport.pause_reading()
        self.transport = transport


@contextlib.asynccontextmanager
async def deaf_peer() -> AsyncIterator[MSRPURI]:
    """The URI of a listener whose peers never read (closed, with them, at the end)."""
    peers: list[Deaf] = []

    def factory() -> Deaf:
        peers.append(Deaf())
        return peers[-1]

    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    try:
        yield MSRPURI("127.0.0.1", server.sockets[0].getsockname()[1], session_id="deafsession")
    finally:
        server.close()
        for peer in peers:
            peer.transport.abort()
        await server.wait_closed()


async def until_stalled(count: Callable[[], int]) -> None:
    """Waits until ``count()`` (what a sender pulled) stops growing."""
    previous = -1
    while count() != previous:
        previous = count()
        await asyncio.sleep(0.2)


def write_source(path: Path, size: int) -> None:
    with open(path, "wb") as file:
        for block in blocks(64, size // 64):
            file.write(block)


async def closed_while_sending(alice: MSRPTransport, send: asyncio.Future[object]) -> None:
    """Closes ``alice`` under a send that cannot finish: it fails, the events end."""
    await alice.close(timeout=0.1)
    with pytest.raises(MSRPConnectionError):
        await send
    events = [event async for event in alice]
    assert isinstance(events[-1], TransportClosed)


async def test_a_peer_that_stops_reading_pauses_the_sender():
    pulled = 0

    def source() -> Iterator[bytes]:
        nonlocal pulled
        for block in blocks(400, 256 * 1024):  # 100 MB if nobody stopped us
            pulled += 1
            yield block

    async with deaf_peer() as uri:
        alice = await connect(A_URI, [uri], chunk_size=64 * 1024)
        tracemalloc.start()
        try:
            send = asyncio.ensure_future(alice.send_stream(source(), "application/octet-stream"))
            await until_stalled(lambda: pulled)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert not send.done()
        assert pulled < 200, f"{pulled} blocks pulled: only kernel buffers should hold any"
        assert peak < 4 * MB, f"peak {peak / MB:.1f} MB"
        await closed_while_sending(alice, send)


async def test_file_regions_to_a_peer_that_stops_reading(tmp_path):
    size = 1 * MB
    write_source(tmp_path / "source.bin", size)
    pulled = 0
    async with deaf_peer() as uri:
        alice = await connect(A_URI, [uri], chunk_size=size, kernel_unsent_limit=None)
        assert alice.sends_file_regions
        with open(tmp_path / "source.bin", "rb") as file:

            def source() -> Iterator[FileRegion]:
                nonlocal pulled
                for _ in range(1000):  # 1 GB if nobody stopped us: the same MB again and again
                    pulled += 1
                    yield FileRegion(file.fileno(), 0, size)

            send = asyncio.ensure_future(alice.send_stream(source(), "application/octet-stream"))
            await until_stalled(lambda: pulled)
            assert not send.done()
            assert pulled < 100, f"{pulled} MB pulled: only kernel buffers should hold any"
            await closed_while_sending(alice, send)  # cuts the region being sent


async def test_a_peer_gone_in_the_middle_of_a_file_region(tmp_path):
    size = 4 * MB
    path = tmp_path / "source.bin"
    write_source(path, size)
    alice, bob, listener = await open_pair(
        a_options={"chunk_size": size}, b_options={"reassemble": False}
    )
    with open(path, "rb") as file:
        send = asyncio.ensure_future(
            alice.send_stream(
                file_regions(file.fileno(), 16, size), "application/octet-stream", size=16 * size
            )
        )
        received = 0
        async for event in bob:
            if isinstance(event, MessageDataReceived):
                received += len(event.data)
                if received > size + size // 2:
                    break
        await bob.close(timeout=0)  # gone, without a word, in the middle of a chunk
        with pytest.raises(MSRPConnectionError):
            await send
    events = [event async for event in alice]
    assert isinstance(events[-1], TransportClosed) and events[-1].error is not None
    await listener.close()


@pytest.mark.skipif(not hasattr(socket, "TCP_NOTSENT_LOWAT"), reason="no TCP_NOTSENT_LOWAT")
async def test_the_kernel_unsent_limit_can_be_lifted():
    def limit(transport: MSRPTransport) -> int:
        sock = transport._conn.transport.get_extra_info("socket")
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT)

    alice, bob, listener = await open_pair(b_options={"kernel_unsent_limit": None})
    assert limit(alice) == KERNEL_UNSENT_LIMIT
    assert limit(bob) in (0, 2**32 - 1)  # the system's default: no limit
    await close_all(alice, bob, listener)
    with pytest.raises(ValueError):
        await connect(A_URI, [MSRPURI("127.0.0.1", 9, session_id="x")], kernel_unsent_limit=0)


async def test_a_connection_dropped_mid_transfer_ends_cleanly():
    alice, bob, listener = await open_pair(
        a_options={"chunk_size": 64 * 1024}, b_options={"reassemble": False}
    )
    send = asyncio.ensure_future(
        alice.send_stream(blocks(400, 256 * 1024), "application/octet-stream")
    )
    received = 0
    async for event in bob:
        if isinstance(event, MessageDataReceived):
            received += len(event.data)
            if received > 4 * MB:
                break
    await bob.close(timeout=0)  # gone, without a word, in the middle of a chunk
    with pytest.raises(MSRPConnectionError):
        await send
    events = [event async for event in alice]
    assert isinstance(events[-1], TransportClosed)
    assert isinstance(events[-1].error, MSRPConnectionError)
    assert not any(isinstance(e, TransportClosed) for e in events[:-1])
    await close_all(alice, listener)


# -- raw peers: wrong paths and malformed frames ------------------------------------------------


class RawPeer:
    """A hand-driven client: writes bytes, reads frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.parser = MSRPParser()
        self.frames: list[MSRPData] = []

    @classmethod
    async def open(cls, port: int) -> RawPeer:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def response(self) -> MSRPData:
        while True:
            for frame in self.frames:
                if frame.code is not None:
                    self.frames.remove(frame)
                    return frame
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("closed")
            for event in self.parser.feed(data):
                if isinstance(event, FrameStarted):
                    self.frames.append(event.frame)

    async def closed_by_peer(self) -> bool:
        while data := await self.reader.read(65536):
            self.parser.feed(data)
        return True

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def send_frame(to_uri: MSRPURI, body: bytes = b"hi", tid: str = "tid00001", **headers) -> bytes:
    frame = MSRPData(tid, method="SEND", data=body)
    frame.set_header("To-Path", [to_uri])
    frame.set_header("From-Path", [A_URI])
    frame.set_header("Message-ID", headers.pop("message_id", "msg" + tid))
    frame.set_header("Byte-Range", ByteRange(1, len(body), len(body)))
    for name, value in headers.items():
        frame.set_header(name.replace("_", "-"), value)
    if body:
        frame.set_header("Content-Type", "text/plain")
    return frame.encode()


async def raw_pair() -> tuple[RawPeer, MSRPTransport, MSRPListener, MSRPURI]:
    listener = await MSRPListener.start()
    b_uri = listener.new_uri()
    acceptor = listener.expect(b_uri)
    peer = await RawPeer.open(listener.port)
    peer.writer.write(send_frame(b_uri, b"", tid="bind0001"))  # binds: a bodiless SEND
    bob = await acceptor.accept([A_URI], timeout=5)
    assert (await peer.response()).code == 200
    return peer, bob, listener, b_uri


async def test_unknown_session_gets_481_and_the_connection_closes():
    listener = await MSRPListener.start()
    listener.expect(listener.new_uri())
    peer = await RawPeer.open(listener.port)
    wrong = MSRPURI("127.0.0.1", listener.port, session_id="nosuchsession")
    peer.writer.write(send_frame(wrong))
    response = await peer.response()
    assert (response.code, response.transaction_id) == (481, "tid00001")
    assert await peer.closed_by_peer()
    await peer.close()
    await listener.close()


async def test_wrong_to_path_on_a_bound_connection_gets_481():
    peer, bob, listener, b_uri = await raw_pair()
    other = MSRPURI("127.0.0.1", listener.port, session_id="someoneelse")
    peer.writer.write(send_frame(other, b"misrouted", tid="tid00002"))
    assert (await peer.response()).code == 481
    peer.writer.write(send_frame(b_uri, b"fine", tid="tid00003"))
    assert (await peer.response()).code == 200
    assert (await next_of(bob, MessageReceived)).data == b"fine"
    await peer.close()
    await close_all(bob, listener)


async def test_a_second_connection_for_a_bound_session_gets_506():
    peer, bob, listener, b_uri = await raw_pair()
    intruder = await RawPeer.open(listener.port)
    intruder.writer.write(send_frame(b_uri))
    assert (await intruder.response()).code == 506
    await close_all(peer, intruder, bob, listener)


async def test_malformed_frame_gets_400_and_the_session_goes_on():
    peer, bob, listener, b_uri = await raw_pair()
    bad = send_frame(b_uri, b"x", tid="tid00002").replace(b"Byte-Range: 1-1/1", b"Byte-Range: 9")
    peer.writer.write(bad + send_frame(b_uri, b"still here", tid="tid00003"))
    first = await peer.response()
    assert (first.code, first.transaction_id) == (400, "tid00002")
    assert (await peer.response()).code == 200
    error = await next_of(bob, ProtocolError)
    assert not error.error.fatal
    assert (await next_of(bob, MessageReceived)).data == b"still here"
    await peer.close()
    await close_all(bob, listener)


async def test_garbage_closes_the_connection_without_raising():
    peer, bob, listener, _ = await raw_pair()
    peer.writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    events = [event async for event in bob]
    assert isinstance(events[0], ProtocolError) and events[0].error.fatal
    assert isinstance(events[-1], TransportClosed) and "framing" in str(events[-1].error)
    assert await peer.closed_by_peer()
    await peer.close()
    # garbage before any session is named: the listener just hangs up
    stranger = await RawPeer.open(listener.port)
    stranger.writer.write(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    assert await stranger.closed_by_peer()
    await stranger.close()
    await close_all(bob, listener)


async def test_a_connection_may_come_before_accept():
    listener = await MSRPListener.start()
    b_uri = listener.new_uri()
    acceptor = listener.expect(b_uri)
    peer = await RawPeer.open(listener.port)
    peer.writer.write(send_frame(b_uri, b"early bird"))
    await asyncio.sleep(0.05)  # the frame is in before anyone accepts
    bob = await acceptor.accept([A_URI], timeout=5)
    assert (await next_of(bob, MessageReceived)).data == b"early bird"
    assert (await peer.response()).code == 200
    await peer.close()
    await close_all(bob, listener)


async def test_idle_connections_and_closing_the_listener():
    listener = await MSRPListener.start(bind_timeout=0.1)
    idle = await RawPeer.open(listener.port)
    assert await idle.closed_by_peer()  # named no session in time
    await idle.close()
    acceptor = listener.expect(listener.new_uri())
    waiting = asyncio.ensure_future(acceptor.accept([A_URI], timeout=5))
    await asyncio.sleep(0)
    await listener.close()
    with pytest.raises(MSRPConnectionError, match="stopped expecting"):
        await waiting


async def test_a_failing_trace_hook_does_not_break_the_connection(caplog):
    def trace(*_):
        raise RuntimeError("broken hook")

    alice, bob, listener = await open_pair(trace=trace)
    alice.send_message(b"still works", "text/plain")
    assert (await next_of(bob, MessageReceived)).data == b"still works"
    assert "trace hook failed" in caplog.text
    await close_all(alice, bob, listener)


async def test_sent_events_and_send_stream_of_an_async_source():
    alice, bob, listener = await open_pair(b_options={"reassemble": True})

    async def source() -> AsyncIterator[bytes]:
        for block in blocks(4, 1024):
            await asyncio.sleep(0)
            yield block

    message = await alice.send_stream(source(), "application/octet-stream", size=4096)
    received = await next_of(bob, MessageReceived)
    assert received.data == b"".join(blocks(4, 1024))
    assert (await next_of(alice, MessageSent)).message_id == message.message_id
    with pytest.raises(TypeError):
        await alice.send_stream(b"whole body", "text/plain")
    await close_all(alice, bob, listener)


async def test_events_of_an_unread_transport_pause_reading():
    alice, bob, listener = await open_pair(
        a_options={"chunk_size": 64 * 1024},
        b_options={"reassemble": False, "max_queued_bytes": 512 * 1024},
    )
    tracemalloc.start()
    try:
        send = asyncio.ensure_future(
            alice.send_stream(blocks(200, 256 * 1024), "application/octet-stream")
        )
        await asyncio.sleep(0.5)  # Bob reads no events meanwhile
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not send.done()  # Alice is held back through TCP
    assert peak < 4 * MB, f"peak {peak / MB:.1f} MB"
    send.cancel()
    await alice.close(timeout=0.1)
    await close_all(bob, listener)


# -- relays (RFC 4976) -----------------------------------------------------------------------


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def digest(username: str, password: str):
    """An ``authorize`` callback: RFC 2617 digest with qop=auth."""
    calls = []

    def authorize(challenge: dict[str, str], method: str, uri: str) -> str:
        calls.append(challenge)
        nc, cnonce = f"{len(calls):08x}", "0a4f113b"
        ha1 = md5(f"{username}:{challenge['realm']}:{password}")
        response = md5(f"{ha1}:{challenge['nonce']}:{nc}:{cnonce}:auth:{md5(f'{method}:{uri}')}")
        return format_auth_params(
            "Digest",
            {
                "username": username,
                "realm": challenge["realm"],
                "nonce": challenge["nonce"],
                "uri": uri,
                "qop": "auth",
                "nc": nc,
                "cnonce": cnonce,
                "response": response,
            },
        )

    authorize.calls = calls  # type: ignore[attr-defined]
    return authorize


class FakeRelay:
    """Just enough of an RFC 4976 relay over TLS on 127.0.0.1: a digest AUTH handing
    out a Use-Path, then forwarding requests by To-Path and responses back to where
    their request came from."""

    REALM, NONCE = "relay.test", "4f3c2b1a"

    def __init__(self, password: str) -> None:
        self.password = password
        self.clients: dict[MSRPURI, RelayLink] = {}
        self.own: set[MSRPURI] = set()
        self.pending: dict[str, RelayLink] = {}
        self.links: list[RelayLink] = []

    async def start(self, server_context: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: RelayLink(self), "127.0.0.1", 0, ssl=server_context
        )
        self.uri = MSRPURI("127.0.0.1", self.server.sockets[0].getsockname()[1], use_tls=True)

    async def close(self) -> None:
        self.server.close()
        for link in self.links:
            link.transport.abort()
        await self.server.wait_closed()

    def handle(self, link: RelayLink, frame: MSRPData) -> None:
        if frame.method == "AUTH":
            link.write(self.auth_response(frame))
        elif frame.method is None:
            origin = self.pending.pop(frame.transaction_id, None)
            if origin is not None:
                origin.write(frame.encode())
        else:
            to_path = frame.to_path
            hops = 0
            while hops < len(to_path) and to_path[hops] in self.own:
                hops += 1
            forwarded = MSRPData(
                frame.transaction_id, method=frame.method, data=frame.data, contflag=frame.contflag
            )
            for name, value in frame.headers.items():
                forwarded.set_header(name, value)
            forwarded.set_header("To-Path", to_path[hops:])
            forwarded.set_header("From-Path", [*reversed(to_path[:hops]), *frame.from_path])
            self.pending[frame.transaction_id] = link
            self.clients[to_path[hops]].write(forwarded.encode())

    def auth_response(self, request: MSRPData) -> bytes:
        credentials = request.get_header("Authorization")
        client = request.from_path[0]
        if credentials is None or not self.valid(credentials[1]):
            response = MSRPData(request.transaction_id, code=401, comment="Unauthorized")
            response.set_header(
                "WWW-Authenticate",
                format_auth_params(
                    "Digest", {"realm": self.REALM, "nonce": self.NONCE, "qop": "auth"}
                ),
            )
        else:
            use = MSRPURI("127.0.0.1", self.uri.port, session_id=make_id(), use_tls=True)
            self.own.add(use)
            response = MSRPData(request.transaction_id, code=200, comment="OK")
            response.set_header("Use-Path", [use])
            response.set_header("Expires", 600)
        response.set_header("To-Path", [client])
        response.set_header("From-Path", [self.uri])
        return response.encode()

    def valid(self, params: dict[str, str]) -> bool:
        ha1 = md5(f"{params['username']}:{self.REALM}:{self.password}")
        ha2 = md5(f"AUTH:{params['uri']}")
        expected = md5(f"{ha1}:{params['nonce']}:{params['nc']}:{params['cnonce']}:auth:{ha2}")
        return params["nonce"] == self.NONCE and params["response"] == expected


class RelayLink(asyncio.Protocol):
    def __init__(self, relay: FakeRelay) -> None:
        self.relay = relay
        self.parser = MSRPParser()
        self.bodies: dict[int, list[bytes]] = {}

    def connection_made(self, transport):
        self.transport = transport
        self.relay.links.append(self)

    def data_received(self, data: bytes) -> None:
        for event in self.parser.feed(data):
            if isinstance(event, FrameStarted):
                self.bodies[id(event.frame)] = []
            elif isinstance(event, FrameData):
                self.bodies[id(event.frame)].append(event.data)
            elif isinstance(event, FrameEnded):
                frame = event.frame
                frame.data = b"".join(self.bodies.pop(id(frame)))
                if frame.method == "AUTH":
                    self.relay.clients[frame.from_path[0]] = self
                self.relay.handle(self, frame)

    def write(self, data: bytes) -> None:
        self.transport.write(data)


async def test_a_session_through_a_relay(tls):
    server, client = tls
    relay = FakeRelay("secret")
    await relay.start(server)
    a_local = MSRPURI("127.0.0.1", 9, session_id="alicerelayed", use_tls=True)
    b_local = MSRPURI("127.0.0.1", 9, session_id="bobrelayed", use_tls=True)
    alice_authorize, bob_authorize = digest("alice", "secret"), digest("bob", "secret")
    alice_relay = await connect_relay(relay.uri, a_local, alice_authorize, ssl=client)
    bob_relay = await connect_relay(relay.uri, b_local, bob_authorize, ssl=client)
    assert len(alice_authorize.calls) == 1  # one 401, answered once
    assert alice_relay.path[-1] == a_local and alice_relay.path[0] in relay.own
    # Alice binds first: what reaches Bob before his session starts is kept for it
    alice = alice_relay.start_session(bob_relay.path, active=True)
    alice.send_message(b"through the relay", "text/plain")
    await asyncio.sleep(0.05)
    bob = bob_relay.start_session(alice_relay.path, active=False)
    assert (await next_of(bob, MessageReceived)).data == b"through the relay"
    bob.send_message(b"and back", "text/plain", success_report="yes")
    assert (await next_of(alice, MessageReceived)).data == b"and back"
    assert (await next_of(bob, ReportReceived)).code == 200  # Alice's REPORT found its way
    await close_all(alice, bob)
    await relay.close()


async def test_a_relay_refusing_us_is_a_clear_error(tls):
    server, client = tls
    relay = FakeRelay("secret")
    await relay.start(server)
    local = MSRPURI("127.0.0.1", 9, session_id="mallory1", use_tls=True)
    with pytest.raises(MSRPRelayError) as error:
        await connect_relay(relay.uri, local, digest("mallory", "guess"), ssl=client)
    assert error.value.code == 401
    with pytest.raises(ValueError):
        await connect_relay(MSRPURI("127.0.0.1", relay.uri.port), local, digest("a", "b"))
    await relay.close()
    with pytest.raises(MSRPConnectionError):
        await connect_relay(relay.uri, local, digest("a", "b"), ssl=client, timeout=5)
