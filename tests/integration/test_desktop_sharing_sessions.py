"""Desktop sharing between two SDK endpoints: a real SIP session over TCP carrying a
DesktopSharingStream over MSRP (tests/support/msrp_sessions.py: Alice is this process,
Bob a RemoteSDK child answering every session).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from tests.support import msrp_sessions as ms

from sipsimple.streams.msrp import (
    DesktopSharingStream,
    ExternalVNCServerHandler,
    InternalVNCViewerHandler,
    VNCConnectionError,
)


def bob_send(data: bytes) -> None:
    """In Bob: send RFB bytes through the handler of his desktop-sharing stream."""
    (stream,) = ms.streams_of("in", "desktop-sharing")
    stream.handler.send(data)


async def bob_received(ends: ms.Endpoints, size: int) -> bytes:
    received = bytearray()
    while len(received) < size:
        note = await ends.bob_wait("DesktopSharingStreamGotData")
        assert note.sender_type == "InternalVNCServerHandler"
        received += note.data["data"]
    return bytes(received)


async def test_rfb_bytes_both_ways_in_a_session(tmp_path: Path) -> None:
    async with ms.endpoints(tmp_path) as ends:
        viewer = InternalVNCViewerHandler()
        stream = DesktopSharingStream(ends.account, viewer)
        session = await ends.call(stream)
        assert stream.state == "started" and stream.remote_path
        assert stream.remote_media.attributes.getfirst("rfbsetup") == "passive"

        viewer.send(b"RFB 003.008\n")
        assert await bob_received(ends, 12) == b"RFB 003.008\n"
        update = os.urandom(300_000)  # a framebuffer's worth: many SENDs
        await ends.bob.async_call(bob_send, update)
        received = bytearray()
        while len(received) < len(update):
            note = await ends.wait("DesktopSharingStreamGotData", lambda n: n.sender is viewer)
            received += note.data.data
        assert bytes(received) == update

        await ends.hang_up(session)
        ended = await ends.wait("MediaStreamDidEnd", lambda n: n.sender is stream)
        assert ended.data.error is None
        bob_ended = await ends.bob_wait("MediaStreamDidEnd")
        assert bob_ended.data["error"] is None


async def test_a_failing_handler_ends_the_stream_and_its_session(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with ms.endpoints(tmp_path) as ends:
        handler = ExternalVNCServerHandler(("127.0.0.1", port), connect_timeout=2)
        stream = DesktopSharingStream(ends.account, handler)
        session = await ends.call(stream)
        failed = await ends.wait("DesktopSharingHandlerDidFail", lambda n: n.sender is handler)
        assert failed.data.context == "connecting"
        assert isinstance(failed.data.failure, VNCConnectionError)
        assert f"127.0.0.1:{port}" in failed.data.reason
        stream_failed = await ends.wait("MediaStreamDidFail", lambda n: n.sender is stream)
        assert stream_failed.data.reason == failed.data.reason
        assert stream_failed.data.context == "connecting"
        # Its only stream gone, the session ends; the stream closes cleanly.
        await ends.wait("SIPSessionDidEnd", lambda n: n.sender is session, 10)
        ended = await ends.wait("MediaStreamDidEnd", lambda n: n.sender is stream)
        assert ended.data.error == failed.data.reason
        assert handler.closed and stream.state == "ended"
        await ends.bob_wait("SIPSessionDidEnd", timeout=10)
        bob_ended = await ends.bob_wait("MediaStreamDidEnd")
        assert bob_ended.sender_type == "DesktopSharingStream"
