"""Cutting SIP messages out of a TCP or TLS byte stream (RFC 3261 section 18.3), sans-IO.

The transport feeds whatever it read to :meth:`SIPStreamFramer.receive_data` and then
calls :meth:`SIPStreamFramer.next_event` until it returns None. Events:

- a :class:`~sipsimple.core.sip.message.SIPRequest` or ``SIPResponse``;
- :class:`KeepAlivePing`: a CRLFCRLF between messages (RFC 5626 section 4.4.1); the
  transport answers it with a single CRLF;
- :class:`KeepAlivePong`: a lone CRLF between messages, the answer to our own ping;
- :class:`InvalidMessage`: a message whose framing was sound (its header section and
  Content-Length could be read, so the stream stays in step) but whose content is not;
  ``error`` is a MalformedSIPMessageError that can build the 400 to send back.

Several messages in one read and one message over many reads come out the same. What
breaks the framing raises SIPParseError from ``next_event`` and every call after it:
a header section larger than ``max_header_size``, a body larger than ``max_body_size``,
a missing or unreadable Content-Length (mandatory on streams), a header section that is
not UTF-8 or has lines without a colon, or the end of the stream inside a message
(``receive_data(b"")`` says the peer closed). The transport then closes the connection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sipsimple.core.errors import SIPParseError
from sipsimple.core.sip.message import (
    MalformedSIPMessageError,
    SIPHeaders,
    SIPRequest,
    SIPResponse,
    _build,
    _split_head,
)

__all__ = ["InvalidMessage", "KeepAlivePing", "KeepAlivePong", "SIPStreamFramer"]

_END_OF_HEAD = re.compile(rb"\r?\n\r?\n")


@dataclass(frozen=True, slots=True)
class KeepAlivePing:
    """A CRLFCRLF keep-alive: answer it with a single CRLF (RFC 5626 section 4.4.1)."""


@dataclass(frozen=True, slots=True)
class KeepAlivePong:
    """A single CRLF: the answer to a keep-alive ping we sent."""


@dataclass(frozen=True, slots=True)
class InvalidMessage:
    """A well-framed but invalid message; the stream goes on after it."""

    error: MalformedSIPMessageError
    data: bytes


Event = SIPRequest | SIPResponse | KeepAlivePing | KeepAlivePong | InvalidMessage


class SIPStreamFramer:
    """Splits a byte stream into SIP messages and keep-alives, with size limits."""

    def __init__(self, *, max_header_size: int = 65536, max_body_size: int = 1 << 20) -> None:
        if max_header_size < 1 or max_body_size < 0:
            raise ValueError("max_header_size must be positive and max_body_size not negative")
        self.max_header_size = max_header_size
        self.max_body_size = max_body_size
        self._buffer = bytearray()
        self._search_from = 0
        self._pending: tuple[str, SIPHeaders, int, int, bool] | None = None
        self._error: SIPParseError | None = None
        self._eof = False

    def receive_data(self, data: bytes) -> None:
        """Add bytes read from the stream; ``b""`` means the peer closed it."""
        if not data:
            self._eof = True
        else:
            self._buffer += data

    def _fail(self, text: str) -> SIPParseError:
        self._error = SIPParseError(text)
        return self._error

    def next_event(self) -> Event | None:
        """The next complete event, or None until more data arrives."""
        if self._error is not None:
            raise self._error
        buffer = self._buffer
        if self._pending is None:
            if buffer[:1] in (b"\r", b"\n"):
                keepalive = self._keepalive()
                if keepalive is not None or buffer[:1] in (b"\r", b"\n"):
                    return keepalive
            if not buffer:
                return None
            m = _END_OF_HEAD.search(buffer, self._search_from)
            if m is None:
                if len(buffer) > self.max_header_size:
                    raise self._fail(f"header section larger than {self.max_header_size} bytes")
                if self._eof:
                    raise self._fail("connection closed in the middle of a message")
                self._search_from = max(0, len(buffer) - 3)
                return None
            self._search_from = 0
            if m.start() > self.max_header_size:
                raise self._fail(f"header section larger than {self.max_header_size} bytes")
            self._pending = self._read_head(
                bytes(buffer[: m.start()]), m.end(), m.end() - m.start() == 4
            )
        start, headers, body_start, length, canonical = self._pending
        end = body_start + length
        if len(buffer) < end:
            if self._eof:
                raise self._fail("connection closed in the middle of a message")
            return None
        data = bytes(buffer[:end])
        body = data[body_start:]
        del buffer[:end]
        self._pending = None
        try:
            return _build(start, headers, body, data if canonical else None)
        except MalformedSIPMessageError as e:
            return InvalidMessage(e, data)

    def _keepalive(self) -> KeepAlivePing | KeepAlivePong | None:
        buffer = self._buffer
        if buffer[:4] == b"\r\n\r\n":
            del buffer[:4]
            return KeepAlivePing()
        if buffer[:2] == b"\r\n":
            if buffer[2:3] == b"\r" and len(buffer) == 3 and not self._eof:
                return None  # could still become a CRLFCRLF ping
            del buffer[:2]
            return KeepAlivePong()
        if buffer[:1] == b"\r" and len(buffer) == 1 and not self._eof:
            return None
        if buffer[:1] == b"\n":  # a bare LF between messages: ignored (RFC 3261 section 7.5)
            del buffer[:1]
            return self._keepalive() if buffer else None
        raise self._fail("stray CR between messages")

    def _read_head(
        self, head: bytes, body_start: int, crlf_end: bool
    ) -> tuple[str, SIPHeaders, int, int, bool]:
        try:
            start, headers, canonical = _split_head(head)
        except SIPParseError as e:
            raise self._fail(str(e)) from None
        lengths = headers._values.get("content-length")
        if not lengths:
            raise self._fail("missing Content-Length header (required on stream transports)")
        if len(lengths) > 1:
            raise self._fail("multiple Content-Length headers")
        try:
            length = headers.typed("content-length")[0]
        except SIPParseError as e:
            raise self._fail(str(e)) from None
        if length > self.max_body_size:
            raise self._fail(f"body of {length} bytes larger than {self.max_body_size} bytes")
        text = lengths[0]
        canonical = canonical and crlf_end and (text[0] != "0" or text == "0")
        return start, headers, body_start, length, canonical
