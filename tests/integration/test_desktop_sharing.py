"""DesktopSharingStream without SIP: two streams over a real MSRP connection on
loopback, and a hand-written MSRP peer playing the SIP SIMPLE client SDK (Blink).

The test plays the Session (tests/support/msrp_streams.py), handing each stream the SDP
the other made.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.support.msrp_streams import (
    account,
    answer,
    initialize,
    msrp_settings,  # noqa: F401  (the fixture)
    sdp,
    session,
)

from sipsimple.core import SDPAttribute, SDPMediaStream
from sipsimple.msrp import FrameData, FrameEnded, FrameError, FrameStarted, MSRPData, MSRPParser
from sipsimple.notification import NotificationQueue
from sipsimple.streams.msrp import (
    ChatStream,
    DesktopSharingStream,
    ExternalVNCServerHandler,
    ExternalVNCViewerHandler,
    InternalVNCServerHandler,
    InternalVNCViewerHandler,
    MSRPStreamError,
    VNCConnectionError,
)

pytestmark = pytest.mark.usefixtures("msrp_settings")

RAW_URI = "msrp://127.0.0.1:9/blinkpeer;tcp"


def closed_port() -> int:
    """A loopback TCP port nobody listens on (bound, never listened, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.asynccontextmanager
async def started_pair(
    viewer_handler: Any,
    server_handler: Any | None = None,
    viewer_class: type[DesktopSharingStream] = DesktopSharingStream,
) -> AsyncIterator[tuple[DesktopSharingStream, DesktopSharingStream, NotificationQueue]]:
    """Alice's viewer stream (a ``viewer_class``) offers, Bob's stream answers (with
    ``server_handler`` put in place of the one new_from_sdp chose); both started, ended
    on the way out."""
    alice = viewer_class(account("alice"), viewer_handler)
    await initialize(alice, session("alice", "bob"), "outgoing")
    offer = sdp(alice.get_local_media(True))
    bob = DesktopSharingStream.new_from_sdp(account("bob"), offer, 0)
    assert bob is not None
    if server_handler is not None:
        bob.handler = server_handler
    await initialize(bob, session("bob", "alice"), "incoming")
    reply = answer(offer, bob.get_local_media(False))
    with NotificationQueue() as queue:
        bob.start(reply, offer, 0)
        alice.start(offer, reply, 0)
        await queue.wait_for("MediaStreamDidStart", lambda n: n.sender is alice, 10)
        await queue.wait_for("MediaStreamDidStart", lambda n: n.sender is bob, 10)
        try:
            yield alice, bob, queue
        finally:
            alice.end()
            bob.end()
            await queue.wait_for("MediaStreamDidEnd", lambda n: n.sender is alice, 10)
            await queue.wait_for("MediaStreamDidEnd", lambda n: n.sender is bob, 10)


async def collect(queue: NotificationQueue, handler: Any, size: int) -> bytes:
    received = bytearray()
    while len(received) < size:
        note = await queue.wait_for(
            "DesktopSharingStreamGotData", lambda n: n.sender is handler, 10
        )
        assert set(vars(note.data)) == {"timestamp", "data"}
        received += note.data.data
    return bytes(received)


# -- SDP ---------------------------------------------------------------------------------------


def offer_media(attributes: list[SDPAttribute], media: str = "application") -> SDPMediaStream:
    items = [SDPAttribute("path", RAW_URI), *attributes]
    return SDPMediaStream(media, 9, "TCP/MSRP", formats=["*"], attributes=items)


async def test_the_offer_says_rfb_and_the_role() -> None:
    stream = DesktopSharingStream(account("alice"), InternalVNCViewerHandler())
    await initialize(stream, session("alice", "bob"), "outgoing")
    media = stream.get_local_media(True)
    assert media.media == "application" and media.transport == "TCP/MSRP"
    assert media.formats == ["*"]
    assert media.attributes.getfirst("accept-types") == "application/x-rfb"
    assert media.attributes.getfirst("rfbsetup") == "active"
    assert media.attributes.getfirst("accept-wrapped-types") is None
    assert media.attributes.getfirst("max-size") is None
    assert media.attributes.getfirst("path").startswith("msrp://127.0.0.1:")
    stream.end()

    server = DesktopSharingStream(account("bob"), InternalVNCServerHandler())
    await initialize(server, session("bob", "alice"), "outgoing")
    assert server.get_local_media(True).attributes.getfirst("rfbsetup") == "passive"
    server.end()


@pytest.mark.parametrize(
    ("rfbsetup", "handler_type"),
    [
        ("active", InternalVNCServerHandler),
        ("passive", InternalVNCViewerHandler),
        (None, InternalVNCServerHandler),
    ],
)
def test_an_offer_gets_a_handler_of_the_other_role(
    rfbsetup: str | None, handler_type: type
) -> None:
    attributes = [
        SDPAttribute("accept-types", "application/x-rfb"),
        SDPAttribute("setup", "active"),
    ]
    if rfbsetup is not None:
        attributes.append(SDPAttribute("rfbsetup", rfbsetup))
    stream = DesktopSharingStream.new_from_sdp(account("bob"), sdp(offer_media(attributes)), 0)
    assert isinstance(stream, DesktopSharingStream)
    assert type(stream.handler) is handler_type
    assert stream.remote_role == "active"


@pytest.mark.parametrize(
    "attributes",
    [
        [SDPAttribute("accept-types", "text/plain")],
        [SDPAttribute("accept-types", "application/x-rfb"), SDPAttribute("rfbsetup", "both")],
    ],
)
def test_offers_that_are_not_desktop_sharing_are_left(attributes: list[SDPAttribute]) -> None:
    assert (
        DesktopSharingStream.new_from_sdp(account("bob"), sdp(offer_media(attributes)), 0) is None
    )
    rfb_as_message = offer_media([SDPAttribute("accept-types", "application/x-rfb")], "message")
    assert DesktopSharingStream.new_from_sdp(account("bob"), sdp(rfb_as_message), 0) is None
    rfb = sdp(offer_media([SDPAttribute("accept-types", "application/x-rfb")]))
    assert ChatStream.new_from_sdp(account("bob"), rfb, 0) is None


async def test_the_handler_is_replaced_only_by_one_of_the_same_role() -> None:
    stream = DesktopSharingStream(account("alice"), InternalVNCServerHandler())
    external = ExternalVNCServerHandler(("127.0.0.1", 5900))
    stream.handler = external
    assert stream.handler is external
    viewer = ExternalVNCViewerHandler(("127.0.0.1", 0))
    try:
        with pytest.raises(MSRPStreamError, match="passive handler with a active"):
            stream.handler = viewer
    finally:
        viewer.close()
    with pytest.raises(TypeError):
        stream.handler = None  # type: ignore[assignment]
    with pytest.raises(TypeError):
        DesktopSharingStream(account("alice"), object())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ExternalVNCServerHandler("127.0.0.1:5900")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ExternalVNCServerHandler(("127.0.0.1", 5900), connect_timeout=0)
    with pytest.raises(TypeError):
        InternalVNCViewerHandler().send("text is not RFB")  # type: ignore[arg-type]


def test_the_viewer_handler_listens_at_once() -> None:
    handler = ExternalVNCViewerHandler(("127.0.0.1", 0))
    try:
        host, port = handler.address
        assert host == "127.0.0.1" and port > 0
        import socket

        with socket.create_connection(handler.address, timeout=2):
            pass  # the backlog takes it before the stream runs
    finally:
        handler.close()
    import socket

    with pytest.raises(OSError), socket.create_connection(handler.address, timeout=2):
        pass


# -- data between two streams ------------------------------------------------------------------


async def test_internal_handlers_carry_bytes_both_ways_in_order() -> None:
    viewer, server = InternalVNCViewerHandler(), InternalVNCServerHandler()
    viewer.send(b"RFB 003.008\n")  # before the stream starts: it waits
    async with started_pair(viewer, server) as (alice, bob, queue):
        assert bob.handler is server
        assert await collect(queue, server, 12) == b"RFB 003.008\n"
        # Many writes, big and small, joined and split into SENDs on the way: same bytes,
        # same order.
        payload = os.urandom(700_000)
        pieces = [payload[i : i + 1 + i % 9000] for i in range(0, 300_000, 9000)]
        pieces.append(payload[sum(map(len, pieces)) :])
        expected = b"".join(pieces)
        for piece in pieces:
            server.send(piece)
        assert await collect(queue, viewer, len(expected)) == expected
        viewer.send(b"\x03\x00" + bytes(8))
        assert await collect(queue, server, 10) == b"\x03\x00" + bytes(8)
        assert alice.failure is None and bob.failure is None


async def test_sending_from_another_thread_keeps_the_order() -> None:
    viewer, server = InternalVNCViewerHandler(), InternalVNCServerHandler()
    async with started_pair(viewer, server) as (_alice, _bob, queue):
        chunks = [i.to_bytes(4, "big") * 50 for i in range(400)]

        def send_all() -> None:
            for chunk in chunks:
                viewer.send(chunk)

        await asyncio.to_thread(send_all)
        assert await collect(queue, server, 80_000) == b"".join(chunks)


async def test_a_stream_ends_while_its_handler_reads_nothing() -> None:
    """A full incoming queue holds the MSRP reader; end() lets it go at once."""

    class OneSlot(DesktopSharingStream):
        queue_size = 1

    viewer = ExternalVNCViewerHandler(("127.0.0.1", 0), connect_timeout=60)  # nobody comes
    server = InternalVNCServerHandler()
    async with started_pair(viewer, server, OneSlot) as (alice, _bob, _queue):
        server.send(os.urandom(1024 * 1024))
        async with asyncio.timeout(10):
            while not alice.incoming_queue.full():
                await asyncio.sleep(0.01)
        alice.close_timeout = 60  # a reader still held would keep end() that long
    assert viewer.closed


@pytest.mark.parametrize("rfbsetup", [None, "passive"])
async def test_an_answer_may_leave_out_its_role(rfbsetup: str | None) -> None:
    alice = DesktopSharingStream(account("alice"), InternalVNCViewerHandler())
    await initialize(alice, session("alice", "bob"), "outgoing")
    offer = sdp(alice.get_local_media(True))
    bob = DesktopSharingStream.new_from_sdp(account("bob"), offer, 0)
    assert bob is not None
    await initialize(bob, session("bob", "alice"), "incoming")
    local = bob.get_local_media(False)
    attributes = [a for a in local.attributes if a.name != "rfbsetup"]
    if rfbsetup is not None:
        attributes.append(SDPAttribute("rfbsetup", rfbsetup))
    local.attributes = attributes
    reply = answer(offer, local)
    with NotificationQueue() as queue:
        bob.start(reply, offer, 0)
        alice.start(offer, reply, 0)
        await queue.wait_for("MediaStreamDidStart", lambda n: n.sender is alice, 10)
        alice.end()
        bob.end()
        await queue.wait_for("MediaStreamDidEnd", lambda n: n.sender is alice, 10)
        await queue.wait_for("MediaStreamDidEnd", lambda n: n.sender is bob, 10)


async def test_an_answer_taking_our_role_fails_the_stream() -> None:
    alice = DesktopSharingStream(account("alice"), InternalVNCViewerHandler())
    await initialize(alice, session("alice", "bob"), "outgoing")
    offer = sdp(alice.get_local_media(True))
    bob = DesktopSharingStream(account("bob"), InternalVNCViewerHandler())
    bob._take_offer(offer.media[0])
    await initialize(bob, session("bob", "alice"), "incoming")
    reply = answer(offer, bob.get_local_media(False))
    with NotificationQueue() as queue:
        alice.start(offer, reply, 0)
        failed = await queue.wait_for("MediaStreamDidFail", lambda n: n.sender is alice, 10)
        assert failed.data.context == "start"
        assert "both ends want the RFB role active" in failed.data.reason
        alice.end()
        bob.end()
        await queue.wait_for("MediaStreamDidEnd", lambda n: n.sender is alice, 10)
        await queue.wait_for("MediaStreamDidEnd", lambda n: n.sender is bob, 10)


# -- failures ----------------------------------------------------------------------------------


async def test_a_server_handler_that_cannot_connect_fails_the_stream() -> None:
    port = closed_port()
    handler = ExternalVNCServerHandler(("127.0.0.1", port), connect_timeout=2)
    alice = DesktopSharingStream(account("alice"), InternalVNCViewerHandler())
    await initialize(alice, session("alice", "bob"), "outgoing")
    offer = sdp(alice.get_local_media(True))
    bob = DesktopSharingStream.new_from_sdp(account("bob"), offer, 0)
    assert bob is not None
    bob.handler = handler
    await initialize(bob, session("bob", "alice"), "incoming")
    reply = answer(offer, bob.get_local_media(False))
    with NotificationQueue() as queue:
        bob.start(reply, offer, 0)
        alice.start(offer, reply, 0)
        failed = await queue.wait_for("DesktopSharingHandlerDidFail", timeout=10)
        assert failed.sender is handler
        assert set(vars(failed.data)) == {"timestamp", "context", "failure", "reason"}
        assert failed.data.context == "connecting"
        assert isinstance(failed.data.failure, VNCConnectionError)
        assert f"127.0.0.1:{port}" in failed.data.reason
        stream_failed = await queue.wait_for("MediaStreamDidFail", lambda n: n.sender is bob, 5)
        assert stream_failed.data.context == "connecting"
        assert stream_failed.data.reason == failed.data.reason
        assert bob.failure == failed.data.reason
        bob.end()  # what the Session does with a stream that failed
        ended = await queue.wait_for("MediaStreamDidEnd", lambda n: n.sender is bob, 10)
        assert ended.data.error == failed.data.reason
        assert handler.closed and bob.state == "ended"
        alice.end()  # its peer went away without SIP telling it: an MSRP failure
        await queue.wait_for("MediaStreamDidEnd", lambda n: n.sender is alice, 10)


async def test_a_viewer_nobody_connects_to_fails_after_its_timeout() -> None:
    handler = ExternalVNCViewerHandler(("127.0.0.1", 0), connect_timeout=0.5)
    async with started_pair(handler) as (alice, _bob, queue):
        failed = await queue.wait_for("DesktopSharingHandlerDidFail", timeout=5)
        assert failed.sender is handler and failed.data.context == "connecting"
        assert "no VNC viewer connected" in failed.data.reason
        await queue.wait_for("MediaStreamDidFail", lambda n: n.sender is alice, 5)
    import socket

    with pytest.raises(OSError), socket.create_connection(handler.address, timeout=2):
        pass  # the listening socket is gone


async def test_a_viewer_that_hangs_up_fails_the_stream_with_reading() -> None:
    handler = ExternalVNCViewerHandler(("127.0.0.1", 0), connect_timeout=5)
    server = InternalVNCServerHandler()
    async with started_pair(handler, server) as (alice, _bob, queue):
        reader, writer = await asyncio.open_connection(*handler.address)
        server.send(b"RFB 003.008\n")
        assert await asyncio.wait_for(reader.readexactly(12), 5) == b"RFB 003.008\n"
        writer.write(b"RFB 003.008\n")
        assert await collect(queue, server, 12) == b"RFB 003.008\n"
        writer.close()
        failed = await queue.wait_for("DesktopSharingHandlerDidFail", timeout=5)
        assert failed.data.context == "reading"
        assert isinstance(failed.data.failure, VNCConnectionError)
        assert "viewer closed the connection" in failed.data.reason
        await queue.wait_for("MediaStreamDidFail", lambda n: n.sender is alice, 5)


# -- against a peer speaking like the SIP SIMPLE client SDK -------------------------------------


class RawPeer:
    """One MSRP connection written by hand; ``frame()`` parses what comes back."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.parser = MSRPParser()
        self.ready: list[MSRPData] = []
        self._body: list[bytes] = []

    async def frame(self, timeout: float = 5.0) -> MSRPData:
        async with asyncio.timeout(timeout):
            while not self.ready:
                data = await self.reader.read(65536)
                if not data:
                    raise EOFError("the stream closed the connection")
                for event in self.parser.feed(data):
                    if isinstance(event, FrameStarted):
                        self._body = []
                    elif isinstance(event, FrameData):
                        self._body.append(event.data)
                    elif isinstance(event, FrameEnded):
                        event.frame.data = b"".join(self._body)
                        self.ready.append(event.frame)
                    elif isinstance(event, FrameError):
                        raise AssertionError(f"the stream sent a bad frame: {event.error}")
        return self.ready.pop(0)

    def send(self, tid: str, to_path: str, headers: dict[str, str], body: bytes) -> None:
        lines = [f"MSRP {tid} SEND", f"To-Path: {to_path}", f"From-Path: {RAW_URI}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        head = "\r\n".join(lines).encode() + b"\r\n"
        if body:
            head += b"\r\n" + body + b"\r\n"
        self.writer.write(head + f"-------{tid}$\r\n".encode())


async def test_a_blink_like_server_peer() -> None:
    """The SDK's offer (a=setup:active, a=rfbsetup:passive: it is the VNC server) and its
    SENDs (one per read, Failure-Report: no) reach our viewer; ours reach it as
    application/x-rfb SENDs with Failure-Report: partial, each one chunk."""
    attributes = [
        SDPAttribute("accept-types", "application/x-rfb"),
        SDPAttribute("setup", "active"),
        SDPAttribute("rfbsetup", "passive"),
    ]
    offer = sdp(offer_media(attributes))
    stream = DesktopSharingStream.new_from_sdp(account("bob"), offer, 0)
    assert stream is not None and stream.handler.type == "active"
    viewer = stream.handler
    await initialize(stream, session("bob", "blink"), "incoming")
    reply = answer(offer, stream.get_local_media(False))
    assert reply.media[0].attributes.getfirst("rfbsetup") == "active"
    assert reply.media[0].attributes.getfirst("setup") == "passive"
    with NotificationQueue() as queue:
        stream.start(reply, offer, 0)
        local = stream.local_path[0]
        reader, writer = await asyncio.open_connection(local.host, local.port)
        peer = RawPeer(reader, writer)
        to_path = str(local)
        peer.send("t0", to_path, {"Message-ID": "m0", "Byte-Range": "1-0/0"}, b"")
        assert (await peer.frame()).code == 200
        await queue.wait_for("MediaStreamDidStart", timeout=5)
        sent = [b"RFB 003.008\n", b"\x01\x01", bytes(range(256)) * 40]
        for index, body in enumerate(sent, 1):
            headers = {
                "Message-ID": f"m{index}",
                "Byte-Range": f"1-{len(body)}/{len(body)}",
                "Failure-Report": "no",
                "Content-Type": "application/x-rfb",
            }
            peer.send(f"t{index}", to_path, headers, body)
        assert await collect(queue, viewer, sum(map(len, sent))) == b"".join(sent)

        reply_bytes = os.urandom(150_000)
        viewer.send(reply_bytes)
        got = bytearray()
        while len(got) < len(reply_bytes):
            frame = await peer.frame()
            assert frame.method == "SEND"
            assert frame.content_type == "application/x-rfb"
            assert frame.failure_report == "partial"
            assert frame.get_header("Success-Report") is None
            assert frame.byte_range is not None and frame.byte_range.start == 1
            assert frame.byte_range.total == len(frame.data)  # one chunk per message
            got += frame.data
        assert bytes(got) == reply_bytes
        writer.close()
        stream.end()
        await queue.wait_for("MediaStreamDidEnd", lambda n: n.sender is stream, 10)
