"""Desktop sharing of a real VNC server: TigerVNC's Xvnc on 127.0.0.1, reached through a
SIP session and MSRP between two SDK endpoints.

Bob (a RemoteSDK child, tests/support/msrp_sessions.py) answers with an
ExternalVNCServerHandler connected to Xvnc; Alice (this process) offers a
DesktopSharingStream with an ExternalVNCViewerHandler, and a minimal RFB 3.8 viewer
written here connects to it. Run inside a loopback-only network namespace:

    unshare -n sh -c 'ip link set lo up;
        PYTHONPATH=src python -m pytest tests/interop/test_desktop_sharing_vnc.py -q'
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.interop.peers import PeerProcess, free_port, is_listening
from tests.support import msrp_sessions as ms

from sipsimple.notification import NotificationCenter
from sipsimple.streams.msrp import (
    DesktopSharingStream,
    ExternalVNCServerHandler,
    ExternalVNCViewerHandler,
)

pytestmark = pytest.mark.interop

THIS = "tests.interop.test_desktop_sharing_vnc"
WIDTH, HEIGHT = 320, 240
DESKTOP_NAME = "sipsimple shared desktop"
_observers: list[Any] = []


class Xvnc(PeerProcess):
    """TigerVNC's X server with its built-in VNC server, without authentication."""

    name = "xvnc"

    def __init__(self, width: int, height: int, desktop: str) -> None:
        super().__init__(start_timeout=20)
        self.width, self.height, self.desktop = width, height, desktop
        self.port = free_port()
        self.display = next(
            n
            for n in range(200, 1000)
            if not Path(f"/tmp/.X{n}-lock").exists() and not Path(f"/tmp/.X11-unix/X{n}").exists()
        )

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def command(self) -> list[str]:
        return [
            "Xvnc",
            f":{self.display}",
            "-rfbport",
            str(self.port),
            "-interface",
            "127.0.0.1",
            "-localhost",
            "-SecurityTypes",
            "None",
            "-geometry",
            f"{self.width}x{self.height}",
            "-depth",
            "24",
            "-desktop",
            self.desktop,
        ]

    def is_ready(self) -> bool:
        return is_listening(self.port, "tcp")


@pytest.fixture
def xvnc() -> Iterator[Xvnc]:
    with Xvnc(WIDTH, HEIGHT, DESKTOP_NAME) as server:
        yield server


def answer_with_vnc_server(host: str, port: int) -> None:
    """In Bob: accept each incoming session, serving its desktop-sharing stream from the
    VNC server at host:port."""
    ms.auto_answer(False)

    def answer(notification: Any) -> None:
        streams = list(notification.data.streams)
        for stream in streams:
            if isinstance(stream, DesktopSharingStream):
                stream.handler = ExternalVNCServerHandler((host, port), connect_timeout=5)
        notification.sender.accept(streams)

    _observers.append(answer)
    NotificationCenter().add_observer(answer, name="SIPSessionNewIncoming")


async def rfb_view(address: tuple[str, int]) -> dict[str, Any]:
    """An RFB 3.8 viewer: handshake without security, ServerInit, one full
    FramebufferUpdateRequest; what the server said, its update's rectangles and pixels."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        async with asyncio.timeout(20):
            version = await reader.readexactly(12)
            writer.write(b"RFB 003.008\n")
            count = (await reader.readexactly(1))[0]
            security_types = list(await reader.readexactly(count))
            writer.write(b"\x01")  # None
            (security_result,) = struct.unpack("!I", await reader.readexactly(4))
            writer.write(b"\x01")  # ClientInit: shared
            width, height, pixel_format, name_length = struct.unpack(
                "!HH16sI", await reader.readexactly(24)
            )
            name = (await reader.readexactly(name_length)).decode()
            bytes_per_pixel = pixel_format[0] // 8
            writer.write(struct.pack("!BBHHHH", 3, 0, 0, 0, width, height))  # not incremental
            message_type = (await reader.readexactly(1))[0]
            _, rectangles = struct.unpack("!BH", await reader.readexactly(3))
            encodings, area, pixels = set(), 0, 0
            for _ in range(rectangles):
                _x, _y, w, h, encoding = struct.unpack("!HHHHi", await reader.readexactly(12))
                encodings.add(encoding)
                pixels += len(await reader.readexactly(w * h * bytes_per_pixel))
                area += w * h
    finally:
        writer.close()
    return {
        "version": version,
        "security_types": security_types,
        "security_result": security_result,
        "width": width,
        "height": height,
        "bits_per_pixel": pixel_format[0],
        "name": name,
        "message_type": message_type,
        "encodings": encodings,
        "area": area,
        "pixel_bytes": pixels,
    }


async def test_a_vnc_viewer_sees_xvnc_through_sip_and_msrp(tmp_path: Path, xvnc: Xvnc) -> None:
    async with ms.endpoints(tmp_path) as ends:
        await ends.bob.async_call(f"{THIS}:answer_with_vnc_server", *xvnc.address)
        viewer = ExternalVNCViewerHandler(("127.0.0.1", 0), connect_timeout=10)
        stream = DesktopSharingStream(ends.account, viewer)
        session = await ends.call(stream)
        assert stream.remote_media.attributes.getfirst("rfbsetup") == "passive"

        seen = await rfb_view(viewer.address)
        assert seen["version"] == b"RFB 003.008\n"
        assert 1 in seen["security_types"] and seen["security_result"] == 0
        assert (seen["width"], seen["height"]) == (WIDTH, HEIGHT)
        assert seen["name"] == DESKTOP_NAME
        assert seen["message_type"] == 0  # FramebufferUpdate
        assert seen["encodings"] == {0}  # Raw: the viewer asked for no other
        assert seen["area"] == WIDTH * HEIGHT
        assert seen["pixel_bytes"] == WIDTH * HEIGHT * seen["bits_per_pixel"] // 8
        assert "127.0.0.1" in xvnc.log_text(), xvnc.log_tail()

        # The viewer hung up: its handler fails with "reading" and the session ends.
        failed = await ends.wait("DesktopSharingHandlerDidFail", lambda n: n.sender is viewer)
        assert failed.data.context == "reading"
        await ends.wait("SIPSessionDidEnd", lambda n: n.sender is session, 10)
        ended = await ends.wait("MediaStreamDidEnd", lambda n: n.sender is stream)
        assert ended.data.error == failed.data.reason
        await ends.bob_wait("SIPSessionDidEnd", timeout=10)
        bob_ended = await ends.bob_wait("MediaStreamDidEnd")
        assert bob_ended.data["error"] is None
