"""DesktopSharingStream: RFB (VNC) carried over MSRP (spec: IDesktopSharingHandler,
InternalVNCViewerHandler, InternalVNCServerHandler, ExternalVNCViewerHandler,
ExternalVNCServerHandler, DesktopSharingStream).

SDP (as the SIP SIMPLE client SDK and Blink send it)::

    m=application 2855 TCP/TLS/MSRP *
    a=accept-types:application/x-rfb
    a=rfbsetup:active

``a=rfbsetup`` is the RFB role: ``active`` for the viewer (the RFB client), ``passive``
for the server; a peer leaving it out is taken as ``active``. It is independent of
``a=setup`` (who opens the MSRP connection, see :mod:`sipsimple.streams.msrp.base`).
An incoming offer gets an internal handler of the complementary role, which the
application may replace by another of the same role before the stream starts.

The RFB bytes travel as SEND requests of type application/x-rfb with
``Success-Report: no`` and ``Failure-Report: partial`` (no 200 responses), each body
at most one MSRP chunk: the session interleaves the chunks of queued messages, so a
bigger body could reach the peer out of order. Bytes written by the handler in quick
succession are joined into one SEND.

Deviation from the spec: ``incoming_queue`` and ``outgoing_queue`` are
:class:`asyncio.Queue` objects (the spec's are eventlet queues), bounded to
``queue_size`` pieces of bytes and used on the SIP thread only. A full incoming queue
stops the reading of the MSRP connection; a full outgoing queue stops the handler's
writer, and the stream takes a piece only while less than ``send_window`` bytes it
handed to MSRP are still waiting to go out.

Notifications, all with ``timestamp``:

DesktopSharingHandlerDidFail (sender: the handler)
    ``context`` ("connecting", "reading" or "sending"), ``failure`` (the exception; the
    spec's twisted Failure), ``reason`` (text). The stream then fails with
    MediaStreamDidFail carrying the same ``context`` and ``reason``.
DesktopSharingStreamGotData (sender: an internal handler)
    ``data``: the RFB bytes that came from the peer.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, ClassVar

from sipsimple.core import SDPAttribute
from sipsimple.msrp import (
    DEFAULT_CHUNK_SIZE,
    MessageDataReceived,
    MessageDeliveryFailed,
    MessageSent,
    MSRPError,
)
from sipsimple.msrp.session import content_type_matches
from sipsimple.notification import NotificationCenter, NotificationData
from sipsimple.streams.msrp.base import MSRPStreamBase, MSRPStreamError
from sipsimple.threading import call_in_sip_thread, is_sip_thread

__all__ = [
    "DesktopSharingHandlerBase",
    "DesktopSharingStream",
    "ExternalVNCServerHandler",
    "ExternalVNCViewerHandler",
    "IDesktopSharingHandler",
    "InternalVNCServerHandler",
    "InternalVNCViewerHandler",
    "VNCConnectionError",
]

log = logging.getLogger(__name__)

RFB_CONTENT_TYPE = "application/x-rfb"
_ROLES = ("active", "passive")
_READ_SIZE = 64 * 1024


class VNCConnectionError(Exception):
    """The TCP connection with an external VNC viewer or server failed or closed."""


def _now() -> datetime:
    return datetime.now(UTC)


class IDesktopSharingHandler(ABC):
    """What consumes and produces the RFB data of a DesktopSharingStream (spec:
    IDesktopSharingHandler).

    ``type`` is "active" for a viewer, "passive" for a server. initialize(stream) is
    called on the SIP thread once the stream started: the handler then takes the
    peer's bytes from ``stream.incoming_queue`` and puts its own on
    ``stream.outgoing_queue``, and posts DesktopSharingHandlerDidFail (``context``,
    ``failure``, ``reason``) to make the stream fail. A handler may define
    ``close()``: the stream calls it once when it ends.
    """

    type: ClassVar[str]

    @abstractmethod
    def initialize(self, stream: DesktopSharingStream) -> None:
        """Start moving RFB data through the stream's queues."""


class DesktopSharingHandlerBase(IDesktopSharingHandler):
    """The SDK's handlers: tasks on the SIP thread, ended by close(), and one
    DesktopSharingHandlerDidFail at most."""

    def __init__(self) -> None:
        self.stream: DesktopSharingStream | None = None
        self.closed = False
        self._failed = False
        self._tasks: set[asyncio.Task[Any]] = set()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.type}>"

    def initialize(self, stream: DesktopSharingStream) -> None:
        if self.stream is not None:
            raise MSRPStreamError(f"{self!r} already serves {self.stream!r}")
        if self.closed:
            raise MSRPStreamError(f"{self!r} is closed")
        self.stream = stream
        self._run(stream)

    @abstractmethod
    def _run(self, stream: DesktopSharingStream) -> None:
        """Start the tasks moving data between the stream's queues and the handler."""

    def close(self) -> None:
        """Stop moving data and release what the handler holds (idempotent)."""
        self.closed = True
        for task in list(self._tasks):
            task.cancel()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        if self.closed:
            coroutine.close()
            return
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _fail(self, context: str, error: BaseException) -> None:
        if self._failed or self.closed:
            return
        self._failed = True
        reason = str(error) or type(error).__name__
        log.info("%r failed while %s: %s", self, context, reason)
        NotificationCenter().post_notification(
            "DesktopSharingHandlerDidFail",
            sender=self,
            data=NotificationData(timestamp=_now(), context=context, failure=error, reason=reason),
        )


class _InternalHandler(DesktopSharingHandlerBase):
    """An RFB endpoint inside the application: send() feeds the stream, and every
    piece from the peer is posted as DesktopSharingStreamGotData."""

    def __init__(self) -> None:
        super().__init__()
        self._pending: deque[bytes] = deque()
        self._wakeup: asyncio.Event | None = None

    def send(self, data: bytes | bytearray | memoryview) -> None:
        """Send RFB bytes to the peer; callable from any thread, in order. Bytes sent
        before the stream started wait for it."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"data must be bytes, not {type(data).__name__}")
        if self.closed:
            raise MSRPStreamError(f"{self!r} is closed")
        piece = bytes(data)
        if not piece:
            return
        if is_sip_thread():
            self._queue_piece(piece)
        else:
            call_in_sip_thread(self._queue_piece, piece)

    def _queue_piece(self, piece: bytes) -> None:
        if self.closed:
            return
        self._pending.append(piece)
        if self._wakeup is not None:
            self._wakeup.set()

    def _run(self, stream: DesktopSharingStream) -> None:
        self._wakeup = asyncio.Event()
        if self._pending:
            self._wakeup.set()
        self._spawn(self._forward(stream.outgoing_queue))
        self._spawn(self._deliver(stream.incoming_queue))

    async def _forward(self, queue: asyncio.Queue[bytes]) -> None:
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                await queue.put(self._pending.popleft())

    async def _deliver(self, queue: asyncio.Queue[bytes]) -> None:
        center = NotificationCenter()
        while True:
            data = await queue.get()
            center.post_notification(
                "DesktopSharingStreamGotData",
                sender=self,
                data=NotificationData(timestamp=_now(), data=data),
            )


class InternalVNCViewerHandler(_InternalHandler):
    """A VNC viewer implemented by the application (spec: InternalVNCViewerHandler)."""

    type = "active"


class InternalVNCServerHandler(_InternalHandler):
    """A VNC server implemented by the application (spec: InternalVNCServerHandler)."""

    type = "passive"


class _ExternalHandler(DesktopSharingHandlerBase):
    """Relays the stream's RFB bytes to and from a TCP connection with a VNC program."""

    peer_name: ClassVar[str]

    def __init__(self, connect_timeout: float) -> None:
        if isinstance(connect_timeout, bool) or not isinstance(connect_timeout, int | float):
            raise TypeError(f"connect_timeout must be a number, not {connect_timeout!r}")
        if connect_timeout <= 0:
            raise ValueError(f"connect_timeout must be positive, not {connect_timeout}")
        super().__init__()
        self.connect_timeout = float(connect_timeout)
        self._writer: asyncio.StreamWriter | None = None

    @abstractmethod
    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The connection with the VNC program."""

    def _run(self, stream: DesktopSharingStream) -> None:
        self._spawn(self._relay(stream))

    async def _relay(self, stream: DesktopSharingStream) -> None:
        try:
            reader, self._writer = await self._open()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._fail("connecting", error)
            return
        self._spawn(self._to_program(stream.incoming_queue, self._writer))
        self._spawn(self._from_program(reader, stream.outgoing_queue))

    async def _to_program(self, queue: asyncio.Queue[bytes], writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                writer.write(await queue.get())
                await writer.drain()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._fail("sending", error)

    async def _from_program(
        self, reader: asyncio.StreamReader, queue: asyncio.Queue[bytes]
    ) -> None:
        try:
            while data := await reader.read(_READ_SIZE):
                await queue.put(data)
            raise VNCConnectionError(f"the VNC {self.peer_name} closed the connection")
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._fail("reading", error)

    def close(self) -> None:
        super().close()
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _check_address(address: Any) -> tuple[str, int]:
    if (
        not isinstance(address, tuple)
        or len(address) != 2
        or not isinstance(address[0], str)
        or isinstance(address[1], bool)
        or not isinstance(address[1], int)
    ):
        raise TypeError(f"address must be a (host, port) tuple, not {address!r}")
    if not 0 <= address[1] <= 65535:
        raise ValueError(f"invalid port {address[1]}")
    return address[0], address[1]


class ExternalVNCViewerHandler(_ExternalHandler):
    """Listens on ``address`` for one external VNC viewer, which must connect within
    ``connect_timeout`` seconds of the stream starting (spec:
    ExternalVNCViewerHandler). ``address`` is where it listens, port included, as
    soon as it is constructed."""

    type = "active"
    peer_name = "viewer"

    def __init__(
        self, address: tuple[str, int] = ("localhost", 0), connect_timeout: float = 3
    ) -> None:
        host, port = _check_address(address)
        super().__init__(connect_timeout)
        family, kind, proto, _, where = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        listener = socket.socket(family, kind, proto)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(where)
            listener.listen(1)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self._listener: socket.socket | None = listener
        self._accepting = False
        self.address: tuple[str, int] = listener.getsockname()[:2]

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        listener = self._listener
        assert listener is not None
        self._accepting = True
        try:
            async with asyncio.timeout(self.connect_timeout):
                connection, _ = await asyncio.get_running_loop().sock_accept(listener)
        except TimeoutError:
            raise VNCConnectionError(
                f"no VNC viewer connected to {self.address[0]}:{self.address[1]}"
                f" within {self.connect_timeout:g} s"
            ) from None
        finally:
            self._accepting = False
            self._close_listener()
        return await asyncio.open_connection(sock=connection)

    def _close_listener(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def close(self) -> None:
        super().close()
        if not self._accepting:  # else the cancelled accept closes it, once unregistered
            self._close_listener()


class ExternalVNCServerHandler(_ExternalHandler):
    """Connects to the external VNC server listening on ``address`` when the stream
    starts, giving up after ``connect_timeout`` seconds (spec:
    ExternalVNCServerHandler)."""

    type = "passive"
    peer_name = "server"

    def __init__(self, address: tuple[str, int], connect_timeout: float = 3) -> None:
        self.address = _check_address(address)
        super().__init__(connect_timeout)

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host, port = self.address
        try:
            async with asyncio.timeout(self.connect_timeout):
                return await asyncio.open_connection(host, port)
        except TimeoutError:
            raise VNCConnectionError(
                f"connecting to the VNC server at {host}:{port} timed out"
                f" after {self.connect_timeout:g} s"
            ) from None
        except OSError as error:
            raise VNCConnectionError(
                f"cannot connect to the VNC server at {host}:{port}: {error.strerror or error}"
            ) from error


class DesktopSharingStream(MSRPStreamBase):
    """Desktop sharing: RFB over MSRP (spec: DesktopSharingStream); see the module
    docstring. ``handler`` (an IDesktopSharingHandler) is the RFB end on this side; it
    may be replaced before the stream starts, by one of the same ``type``.
    """

    type = "desktop-sharing"
    priority = 1
    media_type = "application"
    accept_types: ClassVar[list[str]] = [RFB_CONTENT_TYPE]
    accept_wrapped_types: ClassVar[list[str] | None] = None
    use_msrp_session = False
    chunk_size: ClassVar[int] = 64 * 1024
    relay_chunk_size: ClassVar[int] = DEFAULT_CHUNK_SIZE
    queue_size: ClassVar[int] = 64
    send_window: ClassVar[int] = 1024 * 1024

    def __init__(self, account: Any, handler: IDesktopSharingHandler) -> None:
        super().__init__(account, "sendrecv")
        self._handler: IDesktopSharingHandler | None = None
        self.handler = handler
        self.incoming_queue: asyncio.Queue[bytes] = asyncio.Queue(self.queue_size)
        self.outgoing_queue: asyncio.Queue[bytes] = asyncio.Queue(self.queue_size)
        self._piece_size = self.chunk_size
        self._in_flight: dict[str, int] = {}
        self._in_flight_bytes = 0
        self._room = asyncio.Event()
        self._observing: IDesktopSharingHandler | None = None

    @property
    def handler(self) -> IDesktopSharingHandler:
        assert self._handler is not None
        return self._handler

    @handler.setter
    def handler(self, handler: IDesktopSharingHandler) -> None:
        role = getattr(handler, "type", None)
        if role not in _ROLES or not callable(getattr(handler, "initialize", None)):
            raise TypeError(f"handler must be an IDesktopSharingHandler, not {handler!r}")
        if self._handler is not None:
            if self.state not in (None, "initializing", "initialized"):
                raise MSRPStreamError(
                    f"cannot replace the handler of a stream in state {self.state}"
                )
            if role != self._handler.type:
                raise MSRPStreamError(
                    f"cannot replace a {self._handler.type} handler with a {role} one"
                )
        self._handler = handler

    @classmethod
    def new_from_sdp(
        cls, account: Any, remote_sdp: Any, stream_index: int
    ) -> DesktopSharingStream | None:
        media = remote_sdp.media[stream_index]
        if not cls._acceptable_offer(account, media, cls.media_type):
            return None
        accepted = media.attributes.getfirst("accept-types", "").split()
        if not content_type_matches(RFB_CONTENT_TYPE, accepted):
            return None
        remote_role = media.attributes.getfirst("rfbsetup", "active")
        if remote_role == "active":
            handler: IDesktopSharingHandler = InternalVNCServerHandler()
        elif remote_role == "passive":
            handler = InternalVNCViewerHandler()
        else:
            return None
        stream = cls(account, handler)
        stream._take_offer(media)
        return stream

    # -- SDP ----------------------------------------------------------------------------

    def _media_attributes(self, for_offer: bool) -> list[SDPAttribute]:
        return [SDPAttribute("rfbsetup", self.handler.type)]

    def _check_remote_media(self, media: Any) -> None:
        remote_role = media.attributes.getfirst("rfbsetup")
        if remote_role is None:
            return  # a peer that does not say takes the other role
        if remote_role not in _ROLES:
            raise MSRPStreamError(f"the peer's a=rfbsetup is invalid: {remote_role!r}")
        if remote_role == self.handler.type:
            raise MSRPStreamError(f"both ends want the RFB role {remote_role}")

    def _session_options(self) -> dict[str, Any]:
        options = super()._session_options()
        if self._relay is not None or len(self.remote_path) > 1:
            options["chunk_size"] = self.relay_chunk_size  # relays take small frames only
        self._piece_size = options["chunk_size"]
        return options

    # -- running ------------------------------------------------------------------------

    def _NH_MediaStreamDidStart(self, notification: Any) -> None:
        handler = self.handler
        self._observing = handler
        NotificationCenter().add_observer(self, sender=handler)
        self._room.set()
        self._spawn(self._send())
        try:
            handler.initialize(self)
        except Exception as error:
            log.exception("%r failed to initialize %r", self, handler)
            self._fail(f"the desktop sharing handler failed: {error}", "start")

    def _NH_MediaStreamWillEnd(self, notification: Any) -> None:
        queue = self.incoming_queue  # unblock a reader waiting for room: nobody will read
        while not queue.empty():
            queue.get_nowait()

    def _NH_DesktopSharingHandlerDidFail(self, notification: Any) -> None:
        data = notification.data
        reason = getattr(data, "reason", None) or "the desktop sharing handler failed"
        self._fail(reason, getattr(data, "context", None) or "reading")

    async def _send(self) -> None:
        queue = self.outgoing_queue
        while True:
            pieces = [await queue.get()]
            size = len(pieces[0])
            while size < self._piece_size and not queue.empty():
                piece = queue.get_nowait()
                pieces.append(piece)
                size += len(piece)
            data = b"".join(pieces) if len(pieces) > 1 else pieces[0]
            for offset in range(0, len(data), self._piece_size):
                await self._room.wait()
                body = data[offset : offset + self._piece_size]
                if self.msrp is None or self.msrp.closed:
                    return
                try:
                    message = self.msrp.send_message(
                        body, RFB_CONTENT_TYPE, success_report="no", failure_report="partial"
                    )
                except MSRPError:
                    return  # closed: the reader tells why
                self._in_flight[message.message_id] = len(body)
                self._in_flight_bytes += len(body)
                if self._in_flight_bytes >= self.send_window:
                    self._room.clear()

    def _handle_delivery(self, event: Any) -> None:
        if isinstance(event, MessageSent):
            self._in_flight_bytes -= self._in_flight.pop(event.message_id, 0)
            if self._in_flight_bytes < self.send_window:
                self._room.set()
        elif isinstance(event, MessageDeliveryFailed):
            self._fail(
                f"the peer refused RFB data: {event.code} {event.comment or ''}".rstrip(), "sending"
            )

    def _handle_SEND(self, event: Any) -> Any:
        if isinstance(event, MessageDataReceived) and event.data and self.state == "started":
            return self.incoming_queue.put(event.data)
        return None

    async def _cleanup(self) -> None:
        if self._observing is not None:
            NotificationCenter().discard_observer(self, sender=self._observing)
            self._observing = None
        close = getattr(self.handler, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                log.exception("%r failed to close %r", self, self.handler)
