"""SIP helpers for tests: an Engine on the test's own loop, functions to drive an
Engine in a :class:`~tests.support.remote.RemoteSDK` child, and raw SIP sockets.

In-process: ``async with local_engine(udp_port=0) as engine:`` adopts the running
test loop as the SIP thread and starts the Engine on it (stopping both at the end),
so the test can create core objects and ``await`` NotificationQueues directly.

In a child (``remote.call("tests.support.sip:start_engine", ...)``): the functions
below keep the objects they create in a module registry under a name the test
chooses, so later calls can refer to them (``register(...)`` then ``end("reg")``).

Raw: :class:`RawSIP` is a UDP or TCP socket on 127.0.0.1 that sends crafted bytes
and reads parsed responses (for the built-in answers: 400, 405, 481, 482...).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

from sipsimple.core import (
    Credentials,
    Engine,
    Message,
    Publication,
    Registration,
    Request,
)
from sipsimple.core.sip.headers import ContactHeader, FromHeader, RouteHeader, ToHeader
from sipsimple.core.sip.message import SIPResponse, parse_message
from sipsimple.core.sip.uri import SIPURI
from sipsimple.core.transport import PacketLoss
from sipsimple.threading import SIPThread

__all__ = [
    "RawSIP",
    "end",
    "local_engine",
    "publish",
    "register",
    "route_to",
    "send_message",
    "send_request",
    "serve",
    "served",
    "set_packet_loss",
    "start_engine",
    "stop_engine",
]

LOOPBACK = "127.0.0.1"
_objects: dict[str, Any] = {}


@contextlib.asynccontextmanager
async def local_engine(**options: Any) -> AsyncIterator[Engine]:
    """The Engine on the running loop (adopted as the SIP thread) for one test."""
    thread = SIPThread()
    thread.start(asyncio.get_running_loop())
    engine = Engine()
    try:
        options.setdefault("ip_address", LOOPBACK)
        await engine.start(**options)  # type: ignore[misc]
        yield engine
    finally:
        if engine.state == "started":
            await engine.stop()  # type: ignore[misc]
        thread.stop()


def route_to(port: int, transport: str = "udp", host: str = LOOPBACK) -> RouteHeader:
    return RouteHeader(SIPURI(host=host, port=port, parameters={"transport": transport}))


def address(user: str, domain: str) -> SIPURI:
    return SIPURI(user=user, host=domain)


# -- functions a test calls in a RemoteSDK child (they run on its SIP thread) ----------


async def start_engine(**options: Any) -> dict[str, int | None]:
    """Start the child's Engine; its ports."""
    engine = Engine()
    options.setdefault("ip_address", LOOPBACK)
    await engine.start(**options)  # type: ignore[misc]
    return {"udp": engine.udp_port, "tcp": engine.tcp_port, "tls": engine.tls_port}


async def stop_engine() -> None:
    await Engine().stop()  # type: ignore[misc]


def set_packet_loss(send: float = 0.0, receive: float = 0.0, seed: int | None = None) -> None:
    """Simulated UDP loss in the Engine's transport (None both to switch it off)."""
    transport = Engine().transport
    assert transport is not None
    transport.packet_loss = PacketLoss(send, receive, seed) if send or receive else None


def send_message(
    sender: str,
    recipient: str,
    body: str,
    route_port: int | None = None,
    transport: str = "udp",
    password: str | None = None,
    content_type: str = "text/plain",
) -> None:
    """Send a MESSAGE from user@domain ``sender`` to ``recipient`` (URI texts)."""
    from_uri = SIPURI.parse(sender)
    route = route_to(route_port, transport) if route_port is not None else None
    credentials = Credentials(from_uri.user, password) if password is not None else None
    Message(
        FromHeader(from_uri),
        ToHeader(SIPURI.parse(recipient)),
        route,
        content_type,
        body,
        credentials=credentials,
    ).send()


def send_request(method: str, uri: str, sender: str = "sip:bob@example.test") -> None:
    """Send a generic out-of-dialog Request of ``method`` to ``uri`` (an IP address)."""
    target = SIPURI.parse(uri)
    Request(method, target, FromHeader(SIPURI.parse(sender)), ToHeader(target), None).send()


def register(
    name: str,
    aor: str,
    password: str | None,
    route_port: int,
    transport: str = "udp",
    duration: int = 300,
) -> None:
    """Register the child's contact for ``aor`` through a proxy on 127.0.0.1."""
    engine = Engine()
    uri = SIPURI.parse(aor)
    credentials = Credentials(uri.user, password) if password is not None else None
    registration = Registration(FromHeader(uri), credentials=credentials, duration=duration)
    port = {"udp": engine.udp_port, "tcp": engine.tcp_port, "tls": engine.tls_port}[transport]
    contact = ContactHeader(
        SIPURI(user=uri.user, host=LOOPBACK, port=port, parameters={"transport": transport})
    )
    _objects[name] = registration
    registration.register(contact, route_to(route_port, transport))


def publish(
    name: str,
    aor: str,
    body: str | None,
    route_port: int,
    event: str = "presence",
    content_type: str = "application/pidf+xml",
    password: str | None = None,
    duration: int = 300,
) -> None:
    """Publish ``body`` (None: refresh) with the Publication named ``name``."""
    publication = _objects.get(name)
    if publication is None:
        uri = SIPURI.parse(aor)
        credentials = Credentials(uri.user, password) if password is not None else None
        publication = Publication(
            FromHeader(uri), event, content_type, credentials=credentials, duration=duration
        )
        _objects[name] = publication
    publication.publish(body, route_to(route_port))


def end(name: str) -> None:
    """end() the object registered under ``name``."""
    _objects[name].end()


def attribute(name: str, attribute: str) -> Any:
    return getattr(_objects[name], attribute)


_served: dict[str, list[dict[str, Any]]] = {}
_scripts: dict[str, list[tuple[int, list[tuple[str, str]]]]] = {}


def serve(method: str, script: list[tuple[int, list[tuple[str, str]]]]) -> None:
    """Answer incoming ``method`` requests from a script of (code, headers), in turn.

    The last entry answers every request after it; a new script for a method replaces
    the old one and forgets what was served. ``{contact}`` in a header value is
    replaced by the request's first Contact value. What was received is kept for
    :func:`served`.
    """
    from sipsimple.notification import NotificationCenter

    Engine().add_incoming_request(method)
    _scripts[method] = list(script)
    _served[method] = []
    NotificationCenter().add_observer(_answer, "SIPIncomingRequestGotRequest")


def _answer(notification: Any) -> None:
    from sipsimple.core.sip.headers import Header

    data = notification.data
    script = _scripts.get(data.method)
    if not script:
        return
    headers = {name: _text(value) for name, value in data.headers.items()}
    _served[data.method].append({"headers": headers, "body": data.body})
    code, extra = script.pop(0) if len(script) > 1 else script[0]
    contact = headers.get("Contact", "").split(",")[0]
    notification.sender.answer(
        code, extra_headers=[Header(n, v.replace("{contact}", contact)) for n, v in extra]
    )


def served(method: str) -> list[dict[str, Any]]:
    """The requests :func:`serve` answered: {"headers": {name: text}, "body": bytes}."""
    return _served.get(method, [])


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_text(item) for item in value)
    if hasattr(value, "body"):
        return str(value.body)
    return str(value)


# -- raw sockets -----------------------------------------------------------------------


class RawSIP:
    """A UDP or TCP socket on 127.0.0.1 for crafted requests; see the module docstring."""

    def __init__(self, transport: str = "udp", destination: tuple[str, int] | None = None) -> None:
        self.transport = transport
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        self.socket = socket.socket(socket.AF_INET, kind)
        self.socket.bind((LOOPBACK, 0))
        self.port = self.socket.getsockname()[1]
        self.destination = destination
        self._buffer = b""
        if transport != "udp":
            assert destination is not None
            self.socket.connect(destination)

    def close(self) -> None:
        self.socket.close()

    def __enter__(self) -> RawSIP:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        *,
        uri: str = "sip:service@127.0.0.1",
        branch: str | None = None,
        call_id: str | None = None,
        from_tag: str = "raw-from",
        to_tag: str | None = None,
        cseq: int = 1,
        headers: tuple[tuple[str, str], ...] = (),
        body: bytes = b"",
        version: str = "SIP/2.0",
        cseq_method: str | None = None,
    ) -> bytes:
        """The bytes of a request from this socket (Via sent-by is our address); a new
        branch and Call-ID each time unless given."""
        branch = branch or f"z9hG4bK-raw-{time.monotonic_ns()}"
        call_id = call_id or f"raw-{time.monotonic_ns()}"
        lines = [
            f"{method} {uri} {version}",
            f"Via: SIP/2.0/{self.transport.upper()} {LOOPBACK}:{self.port};branch={branch};rport",
            "Max-Forwards: 70",
            f"From: <sip:raw@127.0.0.1>;tag={from_tag}",
            "To: <sip:service@127.0.0.1>" + (f";tag={to_tag}" if to_tag else ""),
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} {cseq_method or method}",
            *(f"{name}: {value}" for name, value in headers),
            f"Content-Length: {len(body)}",
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def send(self, data: bytes) -> None:
        if self.transport == "udp":
            assert self.destination is not None
            self.socket.sendto(data, self.destination)
        else:
            self.socket.sendall(data)

    def receive(self, timeout: float = 5.0) -> SIPResponse:
        """The next response (100 Trying included); TimeoutError when none comes."""
        self.socket.settimeout(timeout)
        if self.transport == "udp":
            data, _ = self.socket.recvfrom(65535)
            message = parse_message(data)
        else:
            message = self._read_stream(timeout)
        assert isinstance(message, SIPResponse), message
        return message

    def _read_stream(self, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end >= 0:
                head = self._buffer[:end].decode()
                length = 0
                for line in head.split("\r\n"):
                    if line.lower().startswith(("content-length:", "l:")):
                        length = int(line.split(":", 1)[1])
                total = end + 4 + length
                if len(self._buffer) >= total:
                    data, self._buffer = self._buffer[:total], self._buffer[total:]
                    return parse_message(data)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no response")
            self.socket.settimeout(left)
            chunk = self.socket.recv(65535)
            if not chunk:
                raise ConnectionError("closed")
            self._buffer += chunk

    def exchange(self, data: bytes, timeout: float = 5.0) -> SIPResponse:
        """Send a request and return its final response (skipping 1xx)."""
        self.send(data)
        while True:
            response = self.receive(timeout)
            if response.code >= 200:
                return response
