"""MSRP streams against peers that are not SDK streams: a chat peer without Message/CPIM,
and a hand-written MSRP peer on a raw socket sending malformed frames, a wrong
To-Path, more data than it announced, garbage, or never reading at all.

The streams run without SIP here (tests/support/msrp_streams.py): the test plays the
Session, handing them SDP made by the other side.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.support import msrp_sessions as ms
from tests.support.msrp_streams import (
    account,
    answer,
    initialize,
    msrp_settings,  # noqa: F401  (the fixture)
    sdp,
    session,
    start,
)

from sipsimple.core import SDPAttribute, SDPMediaStream
from sipsimple.msrp import FrameData, FrameEnded, FrameError, FrameStarted, MSRPData, MSRPParser
from sipsimple.notification import NotificationQueue
from sipsimple.streams.msrp import (
    ChatIdentity,
    ChatMessage,
    ChatStream,
    ChatStreamError,
    FileSelector,
    FileTransferStream,
)

pytestmark = pytest.mark.usefixtures("msrp_settings")

MB = 1024 * 1024
RAW_URI = "msrp://127.0.0.1:9/rawpeer;tcp"


class PlainChatStream(ChatStream):
    """A chat peer that takes plain text only (no CPIM, no is-composing)."""

    accept_types = ["text/plain"]
    accept_wrapped_types = None


async def test_chat_with_a_peer_without_cpim() -> None:
    alice = ChatStream(account("alice"))
    await initialize(alice, session("alice", "bob"), "outgoing")
    offer = sdp(alice.get_local_media(True))
    bob = PlainChatStream.new_from_sdp(account("bob"), offer, 0)
    assert bob is not None
    await initialize(bob, session("bob", "alice"), "incoming")
    reply = answer(offer, bob.get_local_media(False))
    with NotificationQueue() as queue:
        bob.start(reply, offer, 0)
        alice.start(offer, reply, 0)
        await queue.wait_for("MediaStreamDidStart", lambda n: n.sender is alice, 10)
        await queue.wait_for("MediaStreamDidStart", lambda n: n.sender is bob, 10)
        assert alice.cpim_enabled is False and bob.cpim_enabled is False
        message_id = alice.send_message("plain ✓")
        got = await queue.wait_for("ChatStreamGotMessage", lambda n: n.sender is bob, 5)
        message = got.data.message
        assert type(message) is ChatMessage
        assert message.body == "plain ✓" and message.content_type == "text/plain; charset=utf-8"
        assert message.sender == ChatIdentity("sip:alice@example.test", "Alice")
        assert message.recipients == [ChatIdentity("sip:bob@example.test", "Bob")]
        assert message.message_id == message_id
        await queue.wait_for(
            "ChatStreamDidDeliverMessage", lambda n: n.data.message_id == message_id
        )
        with pytest.raises(ChatStreamError, match="CPIM"):
            alice.send_message("hello", subject="a subject needs CPIM")
        with pytest.raises(ChatStreamError, match="text/html"):
            alice.send_message("<b>no</b>", "text/html")
        with pytest.raises(ChatStreamError, match="does not accept"):
            alice.send_composing_indication("active", 10)
        with pytest.raises(ValueError):
            alice.send_message("x", "not a type")
        alice.end()
        bob.end()
        await queue.wait_for("MediaStreamDidEnd", lambda n: n.sender is alice, 10)
        await queue.wait_for("MediaStreamDidEnd", lambda n: n.sender is bob, 10)


# -- a hand-written peer -----------------------------------------------------------------------


class RawPeer:
    """One connection speaking MSRP by hand; ``frames()`` parses what comes back."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = MSRPParser()
        self.ready: list[MSRPData] = []
        self._frame: MSRPData | None = None
        self._body: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def frame(self, timeout: float = 5.0) -> MSRPData:
        async with asyncio.timeout(timeout):
            while not self.ready:
                data = await self.reader.read(65536)
                if not data:
                    raise EOFError("the stream closed the connection")
                for event in self.parser.feed(data):
                    if isinstance(event, FrameStarted):
                        self._frame, self._body = event.frame, []
                    elif isinstance(event, FrameData):
                        self._body.append(event.data)
                    elif isinstance(event, FrameEnded):
                        event.frame.data = b"".join(self._body)
                        self.ready.append(event.frame)
                    elif isinstance(event, FrameError):
                        raise AssertionError(f"the stream sent a bad frame: {event.error}")
        return self.ready.pop(0)

    async def response(self, transaction_id: str) -> MSRPData:
        while True:
            frame = await self.frame()
            if frame.method is None and frame.transaction_id == transaction_id:
                return frame

    async def closed(self, timeout: float = 5.0) -> bool:
        async with asyncio.timeout(timeout):
            while await self.reader.read(65536):
                pass
        return True


def send_frame(
    transaction_id: str,
    to_path: str,
    headers: dict[str, str],
    body: bytes | None = None,
    from_path: str = RAW_URI,
) -> bytes:
    lines = [f"MSRP {transaction_id} SEND", f"To-Path: {to_path}", f"From-Path: {from_path}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    head = "\r\n".join(lines).encode()
    if body is None:
        return head + f"\r\n-------{transaction_id}$\r\n".encode()
    return head + b"\r\n\r\n" + body + f"\r\n-------{transaction_id}$\r\n".encode()


def raw_offer(attributes: list[SDPAttribute], direction: str | None = None) -> SDPMediaStream:
    items = [
        SDPAttribute("path", RAW_URI),
        SDPAttribute("accept-types", "text/plain"),
        SDPAttribute("setup", "active"),
        *attributes,
    ]
    if direction is not None:
        items.append(SDPAttribute(direction))
    return SDPMediaStream("message", 9, "TCP/MSRP", formats=["*"], attributes=items)


@contextlib.asynccontextmanager
async def passive(stream: object, offer: object) -> AsyncIterator[RawPeer]:
    """Start ``stream`` (which answered ``offer`` passive) and connect a RawPeer to it."""
    reply = answer(offer, stream.get_local_media(False))  # type: ignore[attr-defined]
    stream.start(reply, offer, 0)  # type: ignore[attr-defined]
    local = stream.local_path[0]  # type: ignore[attr-defined]
    reader, writer = await asyncio.open_connection(local.host, local.port)
    try:
        yield RawPeer(reader, writer)
    finally:
        writer.close()


async def test_malformed_frames_a_wrong_to_path_and_garbage() -> None:
    offer = sdp(raw_offer([]))
    stream = ChatStream.new_from_sdp(account("bob"), offer, 0)
    assert stream is not None
    await initialize(stream, session("bob", "raw"), "incoming")
    assert stream.local_role == "passive"
    with NotificationQueue() as queue:
        async with passive(stream, offer) as peer:
            to_path = str(stream.local_path[0])
            bind = {"Message-ID": "m0", "Byte-Range": "1-0/0"}
            peer.send(send_frame("t0", to_path, bind))
            assert (await peer.response("t0")).code == 200
            await queue.wait_for("MediaStreamDidStart", timeout=5)

            # A header line that is not one: 400, logged, the stream goes on.
            peer.send(
                b"MSRP t1 SEND\r\nTo-Path: "
                + to_path.encode()
                + b"\r\nFrom-Path: "
                + RAW_URI.encode()
                + b"\r\nMessage-ID: m1\r\nthis is not a header\r\n"
                b"Content-Type: text/plain\r\n\r\nhi\r\n-------t1$\r\n"
            )
            assert (await peer.response("t1")).code == 400
            logged = await queue.wait_for("MSRPLibraryLog", timeout=5)
            assert "malformed" in logged.data.message and logged.sender is None

            # Another session's URI: 481.
            other = to_path.replace(stream.local_path[0].session_id, "somebodyelse")
            headers = {"Message-ID": "m2", "Byte-Range": "1-2/2", "Content-Type": "text/plain"}
            peer.send(send_frame("t2", other, headers, b"hi"))
            assert (await peer.response("t2")).code == 481

            # A chunk longer than its Byte-Range: 400.
            headers = {"Message-ID": "m3", "Byte-Range": "1-5/5", "Content-Type": "text/plain"}
            peer.send(send_frame("t3", to_path, headers, b"much longer than five"))
            assert (await peer.response("t3")).code == 400

            # Still alive: a good message arrives.
            headers = {"Message-ID": "m4", "Byte-Range": "1-10/10", "Content-Type": "text/plain"}
            peer.send(send_frame("t4", to_path, headers, b"still here"))
            assert (await peer.response("t4")).code == 200
            got = await queue.wait_for("ChatStreamGotMessage", timeout=5)
            assert got.data.message.body == "still here"
            assert got.data.message.sender == ChatIdentity("sip:raw@example.test", "Raw")

            # Garbage loses the framing: the connection closes and the stream fails.
            peer.send(b"GARBAGE THAT IS NOT MSRP\r\n\r\n")
            failed = await queue.wait_for("MediaStreamDidFail", timeout=5)
            assert failed.data.context == "reading" and "framing" in failed.data.reason
            assert await peer.closed()
        stream.end()
        ended = await queue.wait_for("MediaStreamDidEnd", timeout=5)
        assert ended.data.error == failed.data.reason


async def test_a_chunk_beyond_the_announced_file_size(msrp_settings: Path) -> None:  # noqa: F811
    selector = FileSelector("ten bytes.bin", "application/octet-stream", 10, None)
    offer = sdp(raw_offer([SDPAttribute("file-selector", selector.sdp_repr)], "sendonly"))
    stream = FileTransferStream.new_from_sdp(account("bob"), offer, 0)
    assert stream is not None and stream.file_selector == selector
    await initialize(stream, session("bob", "raw"), "incoming")
    with NotificationQueue(sender=stream) as queue:
        async with passive(stream, offer) as peer:
            to_path = str(stream.local_path[0])
            headers = {
                "Message-ID": "f1",
                "Byte-Range": "1-20/20",
                "Content-Type": "application/octet-stream",
            }
            peer.send(send_frame("t1", to_path, headers, b"x" * 20))
            finished = await queue.wait_for("FileTransferStreamDidFinish", timeout=5)
            assert finished.data.error is True
            assert "announced size of 10 bytes" in finished.data.reason
            assert await peer.closed()
        stream.end()
        await queue.wait_for("MediaStreamDidEnd", timeout=5)
    # What arrived is kept as a partial file, clearly marked, and nothing else.
    assert ms.listing(msrp_settings) == ["ten bytes.bin.part", "ten bytes.bin.part.json"]


async def test_a_peer_that_stops_reading(tmp_path: Path) -> None:
    source = tmp_path / "for a sleeping peer.bin"
    ms.make_file(source, 32 * MB)
    stream = FileTransferStream(
        account("alice"), FileSelector.for_file(str(source), compute_hash=False)
    )
    await initialize(stream, session("alice", "raw"), "outgoing")
    offer = sdp(stream.get_local_media(True))
    accepted: asyncio.Future[asyncio.StreamWriter] = asyncio.get_running_loop().create_future()

    async def never_read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set_result(writer)

    server = await asyncio.start_server(never_read, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    media = SDPMediaStream(
        "message",
        port,
        "TCP/MSRP",
        formats=["*"],
        attributes=[
            SDPAttribute("path", f"msrp://127.0.0.1:{port}/sink;tcp"),
            SDPAttribute("accept-types", "*"),
            SDPAttribute("setup", "passive"),
            SDPAttribute("recvonly"),
        ],
    )
    try:
        before = ms.max_rss()
        with NotificationQueue(sender=stream) as queue:
            await start(stream, offer, sdp(media))
            writer = await asyncio.wait_for(accepted, 5)
            await asyncio.sleep(1.0)  # the sender fills the connection and waits
            assert stream.transferred_bytes == 0 and not stream.finished
            assert ms.max_rss() - before < 16 * MB
            started = asyncio.get_running_loop().time()
            stream.end()
            await queue.wait_for("MediaStreamDidEnd", timeout=10)
            assert asyncio.get_running_loop().time() - started < 5
            finished = await queue.wait_for("FileTransferStreamDidFinish", timeout=1)
            assert finished.data.error is True and "interrupted" in finished.data.reason
        writer.close()
    finally:
        server.close()
        await server.wait_closed()


def response(frame: MSRPData, code: int, comment: str) -> bytes:
    return (
        f"MSRP {frame.transaction_id} {code} {comment}\r\n"
        f"To-Path: {frame.from_path[0]}\r\nFrom-Path: {RAW_URI}\r\n"
        f"-------{frame.transaction_id}$\r\n"
    ).encode()


async def test_chat_delivery_failures() -> None:
    offer = sdp(raw_offer([]))
    stream = ChatStream.new_from_sdp(account("bob"), offer, 0)
    assert stream is not None
    stream.report_timeout = 0.5
    await initialize(stream, session("bob", "raw"), "incoming")
    with NotificationQueue(sender=stream) as queue:
        async with passive(stream, offer) as peer:
            to_path = str(stream.local_path[0])
            peer.send(send_frame("t0", to_path, {"Message-ID": "m0", "Byte-Range": "1-0/0"}))
            assert (await peer.response("t0")).code == 200
            await queue.wait_for("MediaStreamDidStart", timeout=5)

            refused = stream.send_message("refused with a response")
            frame = await peer.frame()
            assert frame.method == "SEND" and frame.message_id == refused
            assert frame.success_report == "yes" and frame.failure_report == "partial"
            peer.send(response(frame, 415, "Unsupported Media Type"))
            failed = await queue.wait_for("ChatStreamDidNotDeliverMessage", timeout=5)
            assert failed.data.message_id == refused and failed.data.code == 415
            assert failed.data.reason == "Unsupported Media Type"
            assert isinstance(failed.data.chunk, MSRPData) and failed.data.chunk.code == 415

            reported = stream.send_message("refused with a report")
            frame = await peer.frame()
            peer.send(
                (
                    f"MSRP r1 REPORT\r\nTo-Path: {frame.from_path[0]}\r\nFrom-Path: {RAW_URI}\r\n"
                    f"Message-ID: {reported}\r\nByte-Range: 1-{len(frame.data)}/"
                    f"{len(frame.data)}\r\nStatus: 000 413 Too Large\r\n-------r1$\r\n"
                ).encode()
            )
            failed = await queue.wait_for("ChatStreamDidNotDeliverMessage", timeout=5)
            assert failed.data.message_id == reported and failed.data.code == 413
            assert failed.data.chunk.method == "REPORT"

            ignored = stream.send_message("never reported")
            await peer.frame()
            failed = await queue.wait_for("ChatStreamDidNotDeliverMessage", timeout=5)
            assert failed.data.message_id == ignored and failed.data.code == 408
            assert failed.data.chunk is None
            await queue.wait_for("ChatStreamDidSendMessage", timeout=1)
        stream.end()
        await queue.wait_for("MediaStreamDidEnd", timeout=5)


async def test_a_receiver_refusing_the_file(tmp_path: Path) -> None:
    source = tmp_path / "unwanted.bin"
    ms.make_file(source, 300_000)
    stream = FileTransferStream(
        account("alice"), FileSelector.for_file(str(source), compute_hash=False)
    )
    await initialize(stream, session("alice", "raw"), "outgoing")
    offer = sdp(stream.get_local_media(True))
    peers: asyncio.Queue[RawPeer] = asyncio.Queue()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await peers.put(RawPeer(reader, writer))

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    media = SDPMediaStream(
        "message",
        port,
        "TCP/MSRP",
        formats=["*"],
        attributes=[
            SDPAttribute("path", f"msrp://127.0.0.1:{port}/refuser;tcp"),
            SDPAttribute("accept-types", "*"),
            SDPAttribute("setup", "passive"),
            SDPAttribute("recvonly"),
        ],
    )
    try:
        with NotificationQueue(sender=stream) as queue:
            await start(stream, offer, sdp(media))
            peer = await asyncio.wait_for(peers.get(), 5)
            frame = await peer.frame()
            if frame.content_type is None:  # the bodiless SEND that binds the connection
                peer.send(response(frame, 200, "OK"))
                frame = await peer.frame()
            assert frame.method == "SEND" and frame.byte_range.total == 300_000
            assert (
                frame.failure_report == "yes" and frame.content_type == "application/octet-stream"
            )
            peer.send(response(frame, 413, "Stop Sending Message"))
            failed = await queue.wait_for("FileTransferStreamDidNotDeliverChunk", timeout=5)
            assert failed.data.code == 413 and failed.data.chunk.code == 413
            assert failed.data.message_id == frame.message_id
            finished = await queue.wait_for("FileTransferStreamDidFinish", timeout=5)
            assert finished.data.error is True and "413" in finished.data.reason
            stream.end()
            await queue.wait_for("MediaStreamDidEnd", timeout=5)
            peer.writer.close()
    finally:
        server.close()
        await server.wait_closed()
