"""Splitting multipart bodies (RFC 2046 section 5.1) into their parts.

``split_multipart(message.body, message.content_type.boundary)`` gives the body parts
in order, each with its own headers (a :class:`SIPHeaders`, e.g. Content-Type) and its
body as bytes, untouched: binary parts with NUL octets come out exactly as sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from sipsimple.core.errors import SIPParseError
from sipsimple.core.sip.headers import FrozenContentTypeHeader
from sipsimple.core.sip.message import SIPHeaders, _head_lines, _parse_header_lines

__all__ = ["BodyPart", "split_multipart"]


@dataclass(frozen=True, slots=True, eq=False)
class BodyPart:
    """One part of a multipart body: its headers and its body."""

    headers: SIPHeaders
    body: bytes

    @property
    def content_type(self) -> FrozenContentTypeHeader | None:
        values = self.headers.typed("content-type")
        return values[0] if values else None


def split_multipart(body: bytes, boundary: str) -> list[BodyPart]:
    """The parts of a multipart body delimited by ``boundary``; SIPParseError if malformed.

    The preamble before the first delimiter and the epilogue after the closing one are
    ignored, as is whitespace after a delimiter (transport padding).
    """
    if not boundary or len(boundary) > 70:
        raise SIPParseError(f"invalid multipart boundary: {boundary!r}")
    delimiter = b"\r\n--" + boundary.encode("utf-8")
    data = b"\r\n" + bytes(body)  # a delimiter may open the body without a CRLF before it
    position = data.find(delimiter)
    if position < 0:
        raise SIPParseError(f"multipart body has no boundary {boundary!r}")
    parts = []
    while True:
        position += len(delimiter)
        if data[position : position + 2] == b"--":
            return parts
        line_end = data.find(b"\r\n", position)
        if line_end < 0 or data[position:line_end].strip(b" \t"):
            raise SIPParseError(f"invalid multipart delimiter line after boundary {boundary!r}")
        following = data.find(delimiter, line_end)
        if following < 0:
            raise SIPParseError(
                f"multipart body does not end with the closing boundary {boundary!r}"
            )
        parts.append(_part(data[line_end + 2 : following]))
        position = following


def _part(data: bytes) -> BodyPart:
    if data.startswith(b"\r\n"):
        return BodyPart(SIPHeaders(), data[2:])
    end = data.find(b"\r\n\r\n")
    head, body = (data, b"") if end < 0 else (data[:end], data[end + 4 :])
    return BodyPart(_parse_header_lines(_head_lines(head)[0])[0], body)
