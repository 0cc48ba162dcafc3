"""MSRP frames (RFC 4975 section 9, RFC 4976 headers): the model, the serializer and
an incremental sans-IO parser.

A frame (``MSRPData``) is a request (SEND, REPORT, AUTH, ...) or a response.  The
parser takes bytes split anywhere and returns events: ``FrameStarted`` once the
start line and headers are in, ``FrameData`` for each piece of body as it arrives
(so a 100 MB chunk never sits whole in memory), ``FrameEnded`` with the
continuation flag, and ``FrameError`` for malformed input.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from os import urandom
from typing import Any, NamedTuple

from sipsimple.msrp.errors import MSRPParseError
from sipsimple.msrp.uri import MSRPURI

__all__ = [
    "CONTINUATION_FLAGS",
    "REASONS",
    "ByteRange",
    "FileRegion",
    "FrameData",
    "FrameEnded",
    "FrameError",
    "FrameStarted",
    "MSRPData",
    "MSRPParser",
    "ParserEvent",
    "Status",
    "format_auth_params",
    "make_id",
    "parse_auth_params",
    "path_text",
]

CONTINUATION_FLAGS = "$+#"
"""``$`` ends a message, ``+`` says more chunks follow, ``#`` aborts the message."""

REASONS: dict[int, str] = {
    200: "OK",
    400: "Unintelligible",
    401: "Unauthorized",
    403: "Action Not Allowed",
    408: "Transaction Timeout",
    413: "Stop Sending Message",
    415: "MIME Not Understood",
    423: "Parameter Out Of Bounds",
    481: "Session Does Not Exist",
    501: "Unknown Method",
    506: "Session Already In Use",
}

# Each random byte picks one of 32 characters (256 is a multiple of 32: no bias).
_ID_TABLE = bytes(b"abcdefghijklmnopqrstuvwxyz012345"[i % 32] for i in range(256))


def make_id(length: int = 16) -> str:
    """A random ident (RFC 4975: 4 to 32 alphanumerics) for transaction and message ids.

    Five random bits a character; one id is made per chunk, so it has to be cheap.
    """
    if not 4 <= length <= 32:
        raise ValueError(f"an MSRP ident has 4 to 32 characters, not {length}")
    return urandom(length).translate(_ID_TABLE).decode("ascii")


def random_transaction_id() -> str:
    """A transaction id as long as an ident may be (32 characters, 160 random bits).

    A receiver finds where a body ends by searching it for ``-------`` and this id:
    the longer the id, the further each step of that search skips (a 100 MB body is
    searched in about 0.6 of the time a 16-character id takes)."""
    return make_id(32)


class ByteRange(NamedTuple):
    """``Byte-Range: start-end/total`` with 1-based inclusive positions; ``None`` is ``*``."""

    start: int
    end: int | None
    total: int | None

    @classmethod
    def parse(cls, text: str) -> ByteRange:
        match = _BYTE_RANGE_RE.fullmatch(text)
        if match is None:
            raise MSRPParseError(f"invalid Byte-Range {text!r}")
        start = int(match[1])
        end = None if match[2] == "*" else int(match[2])
        total = None if match[3] == "*" else int(match[3])
        if start < 1:
            raise MSRPParseError(f"Byte-Range {text!r} starts before byte 1")
        if end is not None and end < start - 1:
            raise MSRPParseError(f"Byte-Range {text!r} ends before it starts")
        if total is not None and (start > total + 1 or (end is not None and end > total)):
            raise MSRPParseError(f"Byte-Range {text!r} goes past the total size")
        return cls(start, end, total)

    def __str__(self) -> str:
        end = "*" if self.end is None else self.end
        total = "*" if self.total is None else self.total
        return f"{self.start}-{end}/{total}"


class Status(NamedTuple):
    """``Status: 000 code [comment]`` of a REPORT."""

    code: int
    comment: str | None = None

    @classmethod
    def parse(cls, text: str) -> Status:
        match = _STATUS_RE.fullmatch(text)
        if match is None:
            raise MSRPParseError(f"invalid Status {text!r}")
        return cls(int(match[1]), match[2])

    def __str__(self) -> str:
        return f"000 {self.code:03d}" + ("" if self.comment is None else f" {self.comment}")


_BYTE_RANGE_RE = re.compile(r"([0-9]{1,18})-([0-9]{1,18}|\*)/([0-9]{1,18}|\*)")
_STATUS_RE = re.compile(r"[0-9]{3} ([0-9]{3})(?: ([^\r\n]*))?")
_IDENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-+%=]{0,63}")
_AUTH_PARAM_RE = re.compile(r'\s*([A-Za-z0-9_\-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,"]+)\s*(?:,|$)')
_MEDIA_TYPE_RE = re.compile(r"[!#$%&'*+\-.^_`|~A-Za-z0-9]+/[!#$%&'*+\-.^_`|~A-Za-z0-9]+(?:\s*;.*)?")
_BAD_VALUE_RE = re.compile(r"[\r\n\0]")
_BAD_NAME_RE = re.compile(r"[: \r\n]")


def parse_auth_params(text: str) -> tuple[str, dict[str, str]]:
    """Split ``Digest realm="x", nonce="y"`` into its scheme and unquoted parameters."""
    scheme, _, rest = text.strip().partition(" ")
    if not scheme.isalpha():
        raise MSRPParseError(f"invalid authentication header {text!r}")
    params: dict[str, str] = {}
    position = 0
    rest = rest.strip()
    while position < len(rest):
        match = _AUTH_PARAM_RE.match(rest, position)
        if match is None or match.end() == position:
            raise MSRPParseError(f"invalid authentication parameters {rest!r}")
        value = match[2]
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[match[1].lower()] = value
        position = match.end()
    return scheme, params


_UNQUOTED_AUTH_PARAMS = frozenset({"algorithm", "qop", "nc", "stale"})


def format_auth_params(scheme: str, params: dict[str, str]) -> str:
    """The inverse of parse_auth_params (``qop``, ``nc``, ``algorithm`` stay unquoted)."""
    items = []
    for name, value in params.items():
        if name in _UNQUOTED_AUTH_PARAMS:
            items.append(f"{name}={value}")
        else:
            quoted = value.replace("\\", "\\\\").replace('"', '\\"')
            items.append(f'{name}="{quoted}"')
    return f"{scheme} " + ", ".join(items)


@lru_cache(maxsize=256)
def _parse_path_cached(text: str) -> tuple[MSRPURI, ...]:
    # Every frame of a session repeats the same paths: parse each text once.
    return tuple(MSRPURI.parse(item) for item in text.split())


def header_text(name: str, value: object) -> tuple[str, str]:
    """The canonical name and wire text of a header given as text or typed value.

    Raises ValueError for a name or value that would break the framing.
    """
    if isinstance(value, list | tuple) and not isinstance(value, ByteRange | Status):
        text = " ".join([str(item) for item in value])
    else:
        text = str(value)
    if not name or _BAD_NAME_RE.search(name) or _BAD_VALUE_RE.search(text):
        raise ValueError(f"invalid MSRP header {name!r}: {text!r}")
    return _CANONICAL.get(name.lower(), name), text


@lru_cache(maxsize=256)
def path_text(path: tuple[MSRPURI, ...]) -> str:
    """The wire text of a path header, checked once per path: the paths of a session
    are the same in every frame it sends."""
    return header_text("To-Path", path)[1]


@lru_cache(maxsize=256)
def _wire_order(name: str) -> tuple[bool, bool, bool, bool]:
    # To-Path, From-Path, the others as set, Content-* headers, Content-Type last.
    # Cached: the sort key of every header of every frame sent.
    return (
        name != "To-Path",
        name != "From-Path",
        name.startswith("Content-"),
        name == "Content-Type",
    )


def _parse_path(text: str) -> list[MSRPURI]:
    return list(_parse_path_cached(text)) or _raise(f"empty path {text!r}")


def _raise(message: str) -> Any:
    raise MSRPParseError(message)


def _parse_ident(text: str) -> str:
    if not _IDENT_RE.fullmatch(text):
        raise MSRPParseError(f"invalid identifier {text!r}")
    return text


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in allowed:
            raise MSRPParseError(f"{text!r} is not one of {', '.join(allowed)}")
        return text

    return parse


def _parse_int(text: str) -> int:
    if not text.isdigit() or len(text) > 18:
        raise MSRPParseError(f"invalid number {text!r}")
    return int(text)


def _parse_media_type(text: str) -> str:
    if not _MEDIA_TYPE_RE.fullmatch(text):
        raise MSRPParseError(f"invalid Content-Type {text!r}")
    return text


# Known headers: canonical name -> parser of the value.
_HEADER_PARSERS: dict[str, Callable[[str], Any]] = {
    "To-Path": _parse_path,
    "From-Path": _parse_path,
    "Message-ID": _parse_ident,
    "Success-Report": _choice("yes", "no"),
    "Failure-Report": _choice("yes", "no", "partial"),
    "Byte-Range": ByteRange.parse,
    "Status": Status.parse,
    "Content-Type": _parse_media_type,
    "Use-Path": _parse_path,
    "Expires": _parse_int,
    "Min-Expires": _parse_int,
    "Max-Expires": _parse_int,
    "WWW-Authenticate": parse_auth_params,
    "Authorization": parse_auth_params,
    "Authentication-Info": str,
}
_CANONICAL = {name.lower(): name for name in _HEADER_PARSERS}
_CANONICAL.update(
    {n.lower(): n for n in ("Content-ID", "Content-Description", "Content-Disposition")}
)


class MSRPData:
    """One MSRP request or response (``method`` is None for a response).

    ``headers`` maps header names (known ones in canonical spelling, others as
    received) to their text; the typed properties parse them.  ``data`` is the body
    when the frame was built locally or assembled whole; a streamed incoming frame
    carries its body in FrameData events instead.
    """

    __slots__ = (
        "_cache",
        "code",
        "comment",
        "contflag",
        "data",
        "headers",
        "method",
        "transaction_id",
    )

    def __init__(
        self,
        transaction_id: str,
        method: str | None = None,
        code: int | None = None,
        comment: str | None = None,
        headers: dict[str, str] | None = None,
        data: Body = b"",
        contflag: str = "$",
    ) -> None:
        if (method is None) == (code is None):
            raise ValueError("an MSRP frame has either a method (request) or a code (response)")
        _parse_ident(transaction_id)
        if contflag not in CONTINUATION_FLAGS:
            raise ValueError(f"continuation flag must be one of $+#, not {contflag!r}")
        self.transaction_id = transaction_id
        self.method = method
        self.code = code
        self.comment = comment
        self.headers: dict[str, str] = {}
        self.data = data
        self.contflag = contflag
        self._cache: dict[str, Any] = {}
        for name, value in (headers or {}).items():
            self.set_header(name, value)

    @classmethod
    def _trusted(
        cls,
        transaction_id: str,
        method: str | None,
        code: int | None,
        comment: str | None,
        headers: dict[str, str],
        data: bytes = b"",
        contflag: str = "$",
    ) -> MSRPData:
        """A frame from parts already checked (by the parser, or canonical headers built
        here): skips the per-header checks of __init__, which cost more than the
        framing of a small chunk."""
        frame = cls.__new__(cls)
        frame.transaction_id = transaction_id
        frame.method = method
        frame.code = code
        frame.comment = comment
        frame.headers = headers
        frame.data = data
        frame.contflag = contflag
        frame._cache = {}
        return frame

    # -- headers -------------------------------------------------------------------

    def set_header(self, name: str, value: object) -> None:
        """Set a header from its text or typed value (a path list, ByteRange, int ...)."""
        name, text = header_text(name, value)
        self.headers[name] = text
        self._cache.pop(name, None)

    def get_header(self, name: str) -> Any:
        """The typed value of a header (its text for unknown ones), None when absent."""
        return self._typed(_CANONICAL.get(name.lower(), name))

    def _typed(self, name: str) -> Any:
        # get_header() for a canonical name: the properties below skip the lookup.
        try:
            return self._cache[name]
        except KeyError:
            pass
        text = self.headers.get(name)
        if text is None:
            return None
        parser = _HEADER_PARSERS.get(name, str)
        try:
            value = parser(text)
        except MSRPParseError as error:
            raise MSRPParseError(f"{name}: {error}", transaction_id=self.transaction_id) from None
        self._cache[name] = value
        return value

    @property
    def to_path(self) -> list[MSRPURI]:
        return self._typed("To-Path") or []

    @property
    def from_path(self) -> list[MSRPURI]:
        return self._typed("From-Path") or []

    @property
    def use_path(self) -> list[MSRPURI] | None:
        return self._typed("Use-Path")

    @property
    def message_id(self) -> str | None:
        return self._typed("Message-ID")

    @property
    def byte_range(self) -> ByteRange | None:
        return self._typed("Byte-Range")

    @property
    def status(self) -> Status | None:
        return self._typed("Status")

    @property
    def content_type(self) -> str | None:
        return self._typed("Content-Type")

    @property
    def success_report(self) -> str:
        return self._typed("Success-Report") or "no"

    @property
    def failure_report(self) -> str:
        return self._typed("Failure-Report") or "yes"

    @property
    def expires(self) -> int | None:
        return self._typed("Expires")

    @property
    def size(self) -> int:
        return len(self.data)

    def validate(self) -> None:
        """Check the headers a frame needs and parse every known one.

        Raises MSRPParseError carrying this frame's transaction id.
        """
        for name in ("To-Path", "From-Path"):
            if name not in self.headers:
                raise MSRPParseError(f"missing {name} header", transaction_id=self.transaction_id)
        cache = self._cache
        for name in self.headers:
            if name in _HEADER_PARSERS and name not in cache:
                self._typed(name)
        if self.method in ("SEND", "REPORT") and "Message-ID" not in self.headers:
            raise MSRPParseError(
                f"{self.method} without a Message-ID header", transaction_id=self.transaction_id
            )
        if self.method == "REPORT" and "Status" not in self.headers:
            raise MSRPParseError(
                "REPORT without a Status header", transaction_id=self.transaction_id
            )

    # -- serialization --------------------------------------------------------------

    def encode_start(self, *, with_body: bool | None = None) -> bytes:
        """Start line and headers, followed by the blank line when a body follows.

        A request has a body section when it has data or a Content-Type (an empty
        body); ``with_body`` overrides that for bodies streamed separately.
        """
        if self.method is not None:
            lines = [f"MSRP {self.transaction_id} {self.method}"]
        else:
            lines = [f"MSRP {self.transaction_id} {self.code:03d}"]
            if self.comment:
                lines[0] += f" {self.comment}"
        headers = self.headers
        lines.extend(f"{name}: {headers[name]}" for name in sorted(headers, key=_wire_order))
        if with_body is None:
            with_body = self.method is not None and (bool(self.data) or "Content-Type" in headers)
        return ("\r\n".join(lines) + ("\r\n\r\n" if with_body else "\r\n")).encode()

    def encode_end(self, contflag: str | None = None, *, with_body: bool = True) -> bytes:
        flag = self.contflag if contflag is None else contflag
        prefix = "\r\n" if with_body else ""
        return f"{prefix}-------{self.transaction_id}{flag}\r\n".encode()

    def encode(self) -> bytes:
        """The whole frame (a FileRegion body is read).  Raises ValueError when the body
        contains the end-line."""
        start, body, end = self._encode_parts(check_body=True)
        return b"".join((start, body_bytes(body), end))

    def _encode_parts(self, *, check_body: bool) -> tuple[bytes, Body, bytes]:
        # Start, body and end, for a writer that writes the body as it is; ``check_body``
        # False when the transaction id was picked to avoid the body.
        with_body = self.method is not None and (bool(self.data) or "Content-Type" in self.headers)
        if (
            check_body
            and with_body
            and (b"-------" + self.transaction_id.encode()) in body_bytes(self.data)
        ):
            raise ValueError("the body contains this transaction's end-line: pick another id")
        return (
            self.encode_start(with_body=with_body),
            self.data if with_body else b"",
            self.encode_end(with_body=with_body),
        )

    @classmethod
    def parse(cls, data: bytes, **limits: int) -> MSRPData:
        """Parse exactly one whole frame (body included in ``data``)."""
        parser = MSRPParser(**limits)
        frame: MSRPData | None = None
        body: list[bytes] = []
        ended = False
        for event in parser.feed(data):
            if isinstance(event, FrameError):
                raise event.error
            if ended:
                raise MSRPParseError("more than one frame")
            if isinstance(event, FrameStarted):
                frame = event.frame
            elif isinstance(event, FrameData):
                body.append(event.data)
            else:
                ended = True
        if frame is None or not ended or parser.buffered:
            raise MSRPParseError("incomplete MSRP frame")
        frame.data = b"".join(body)
        return frame

    def __repr__(self) -> str:
        kind = self.method if self.method is not None else f"{self.code} {self.comment or ''}"
        return (
            f"<MSRPData {self.transaction_id} {kind.strip()} {self.headers}"
            f" len={len(self.data)}{self.contflag}>"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MSRPData):
            return NotImplemented
        return (
            self.transaction_id == other.transaction_id
            and self.method == other.method
            and self.code == other.code
            and self.comment == other.comment
            and self.headers == other.headers
            and self.data == other.data
            and self.contflag == other.contflag
        )

    __hash__ = None  # type: ignore[assignment]


class FileRegion:
    """``count`` bytes of the file open as ``fd`` from 0-based ``offset``: a chunk body
    that a plain TCP connection hands to the kernel with os.sendfile, so the bytes
    never pass through Python.  Whatever cannot send it so reads it (``read()``).

    The file must stay open until the frame carrying it has been written.  A writer
    that sends it on its own calls ``written(now)`` (when set) once the last byte is
    out: the session then starts waiting for the chunk's response.
    """

    __slots__ = ("count", "fd", "offset", "written")

    def __init__(self, fd: int, offset: int, count: int) -> None:
        if offset < 0 or count < 0:
            raise ValueError(f"a file region needs offset and count >= 0, not {offset}, {count}")
        self.fd = fd
        self.offset = offset
        self.count = count
        self.written: Callable[[float], None] | None = None

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return f"FileRegion(fd={self.fd}, offset={self.offset}, count={self.count})"

    def part(self, start: int, stop: int) -> FileRegion:
        """The bytes ``start:stop`` of this region (0 <= start <= stop <= count)."""
        return FileRegion(self.fd, self.offset + start, stop - start)

    def read(self) -> bytes:
        """The region's bytes (blocking); OSError when the file is shorter."""
        data = os.pread(self.fd, self.count, self.offset)
        while len(data) < self.count:
            more = os.pread(self.fd, self.count - len(data), self.offset + len(data))
            if not more:
                raise OSError(f"{self!r} goes past the end of the file")
            data += more
        return data


Body = bytes | FileRegion


def body_bytes(body: Body | memoryview) -> bytes | memoryview:
    """A body as bytes: a FileRegion is read."""
    return body.read() if type(body) is FileRegion else body


# -- parser events ----------------------------------------------------------------------


@dataclass(slots=True)
class FrameStarted:
    """Start line and headers of a frame, validated; its body (if any) follows."""

    frame: MSRPData


@dataclass(slots=True)
class FrameData:
    """A piece of the body of the frame being received."""

    frame: MSRPData
    data: bytes


@dataclass(slots=True)
class FrameEnded:
    """The end-line of the frame; ``frame.contflag`` is set to its flag."""

    frame: MSRPData


@dataclass(slots=True)
class FrameError:
    """Malformed input.  ``frame`` is the partly parsed frame when its start line was
    read (so a request can still be answered); ``error.fatal`` means framing is lost
    and the parser discards everything after it."""

    error: MSRPParseError
    frame: MSRPData | None = None


ParserEvent = FrameStarted | FrameData | FrameEnded | FrameError

_START_RE = re.compile(rb"MSRP ([A-Za-z0-9][A-Za-z0-9.\-+%=]{0,63}) ")
_REST_RE = re.compile(rb"(?:([A-Z]+)|([0-9]{3})(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?)")
_START_LINE_RE = re.compile(_START_RE.pattern + _REST_RE.pattern)
_HEADER_LINE_RE = re.compile(r"([A-Za-z][!#$%&'*+\-.^_`|~A-Za-z0-9]*):[ \t]*([^\0\r\n]*?)[ \t]*")
_LINE_CACHE_SIZE = 256

_START, _HEADERS, _BODY, _SKIP, _DEAD = range(5)


class MSRPParser:
    """Incremental MSRP parser: ``feed(bytes)`` returns the events the bytes complete.

    Limits: ``max_header_size`` bytes for the start line and headers together,
    ``max_headers`` header lines.  A frame breaking them, or with a malformed header,
    gives a FrameError (not fatal: its body is skipped up to its end-line); a
    malformed or overlong start line is fatal.

    The unparsed input is kept as ``bytes`` and body pieces are slices of it: a read
    that is all body comes out as the very object that was fed, and only a possible
    beginning of the end-line is held back for the next read.  Header lines seen
    before (the paths, Message-ID and Content-Type repeat in every chunk) are looked
    up instead of parsed again.
    """

    def __init__(self, *, max_header_size: int = 16384, max_headers: int = 64) -> None:
        self.max_header_size = max_header_size
        self.max_headers = max_headers
        self._buf = b""
        self._pos = 0
        self._state = _START
        self._frame: MSRPData | None = None
        self._frame_start = 0
        self._marker = b""
        self._search_from = 0
        self._at_body_start = False
        self._lines: dict[bytes, tuple[str, str]] = {}

    @property
    def buffered(self) -> int:
        """Bytes received but not yet turned into events."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> list[ParserEvent]:
        if self._state == _DEAD:
            return []
        if type(data) is not bytes:
            data = bytes(data)
        pos = self._pos
        self._buf = data if pos >= len(self._buf) else self._buf[pos:] + data
        self._pos = 0
        self._search_from -= pos
        self._frame_start -= pos
        events: list[ParserEvent] = []
        while True:
            state = self._state
            if state == _START:
                progressed = self._parse_start(events)
            elif state == _HEADERS:
                progressed = self._parse_headers(events)
            elif state == _DEAD:
                break
            else:
                progressed = self._parse_body(events)
            if not progressed:
                break
        return events

    def _fail(self, events: list[ParserEvent], message: str, tid: str | None = None) -> bool:
        frame = self._frame
        if frame is not None:
            tid = frame.transaction_id
        fatal = tid is None
        events.append(FrameError(MSRPParseError(message, transaction_id=tid, fatal=fatal), frame))
        if fatal:
            self._state = _DEAD
            self._buf = b""
            self._pos = 0
            return False
        self._state = _SKIP
        self._search_from = self._pos
        self._at_body_start = True
        return True

    def _parse_start(self, events: list[ParserEvent]) -> bool:
        buf = self._buf
        pos = self._pos
        while buf.startswith(b"\r\n", pos):
            pos += 2
        self._pos = pos
        end = buf.find(b"\r\n", pos, pos + self.max_header_size)
        if end < 0:
            if len(buf) - pos >= self.max_header_size:
                return self._fail(events, "start line longer than the header size limit")
            if len(buf) - pos >= 5 and not buf.startswith(b"MSRP ", pos):
                return self._fail(events, "data that does not start with 'MSRP '")
            return False
        line = _START_LINE_RE.fullmatch(buf, pos, end)
        match = line or _START_RE.match(buf, pos, end)
        if match is None:
            return self._fail(events, f"invalid start line {buf[pos:end][:80]!r}")
        tid = match[1].decode()
        self._frame_start = pos
        self._pos = end  # the CRLF: the header block search starts on it
        self._marker = b"\r\n-------" + match[1]
        self._frame = None
        if line is None:
            return self._fail(events, f"invalid start line {buf[pos:end][:80]!r}", tid)
        _, method, code, comment = line.groups()
        try:
            self._frame = MSRPData._trusted(
                tid,
                method.decode() if method else None,
                int(code) if code else None,
                comment.decode() if comment is not None else None,
                {},
            )
        except UnicodeDecodeError:
            return self._fail(events, "start line comment is not UTF-8", tid)
        self._state = _HEADERS
        return True

    def _parse_headers(self, events: list[ParserEvent]) -> bool:
        # The header block ends at the blank line (a body follows) or at the end-line
        # (no body); it is parsed once it is all in, so the outcome never depends on
        # how the input was split.
        buf = self._buf
        frame = self._frame
        assert frame is not None
        marker = self._marker
        start = self._pos  # the start line's CRLF: a frame may have no header
        limit = self._frame_start + self.max_header_size
        blank = buf.find(b"\r\n\r\n", start, limit)
        end_line = buf.find(marker, start, limit if blank < 0 else blank)
        if end_line >= 0:
            block_end = end_line
            flag_at = end_line + len(marker)
            if len(buf) < flag_at + 3:
                return False
            bodiless = _is_end(buf, flag_at)
        elif blank >= 0:
            block_end = blank
            bodiless = False
        else:
            if len(buf) >= limit:
                return self._fail(events, "headers longer than the header size limit")
            return False
        self._pos = block_end
        if block_end > start:
            lines = buf[start + 2 : block_end]
            if lines.count(b"\r\n") >= self.max_headers:
                return self._fail(events, f"more than {self.max_headers} headers")
            headers = frame.headers
            typed = frame._cache
            known = self._lines
            for line in lines.split(b"\r\n"):
                header = known.get(line)
                if header is None:
                    try:
                        text = line.decode()
                    except UnicodeDecodeError:
                        return self._fail(events, "header line is not UTF-8")
                    match = _HEADER_LINE_RE.fullmatch(text)
                    if match is None:
                        return self._fail(events, f"invalid header line {text[:80]!r}")
                    name, value = match.groups()
                    header = _known_header(_CANONICAL.get(name.lower(), name), value)
                    if header[0] != "Byte-Range":  # the one that changes with every chunk
                        if len(known) >= _LINE_CACHE_SIZE:
                            known.clear()
                        known[line] = header
                canonical, value, parsed = header
                if canonical in headers:
                    return self._fail(events, f"duplicate {canonical} header")
                headers[canonical] = value
                if parsed is not None:
                    typed[canonical] = list(parsed) if type(parsed) is tuple else parsed
        if end_line >= 0 and not bodiless:
            return self._fail(events, "invalid header line: a broken end-line")
        if bodiless:
            self._pos = block_end + len(marker) + 3
            return self._start_frame(events, frame, body=False, contflag=chr(buf[flag_at]))
        self._pos = block_end + 4
        return self._start_frame(events, frame, body=True)

    def _start_frame(
        self, events: list[ParserEvent], frame: MSRPData, *, body: bool, contflag: str = "$"
    ) -> bool:
        try:
            frame.validate()
        except MSRPParseError as error:
            events.append(FrameError(error, frame))
            if not body:
                self._state = _START
                self._frame = None
                return True
            self._state = _SKIP
            self._search_from = self._pos
            self._at_body_start = True
            return True
        events.append(FrameStarted(frame))
        if not body:
            frame.contflag = contflag
            events.append(FrameEnded(frame))
            self._state = _START
            self._frame = None
            return True
        self._state = _BODY
        self._search_from = self._pos
        self._at_body_start = True
        return True

    def _parse_body(self, events: list[ParserEvent]) -> bool:
        buf = self._buf
        marker = self._marker
        target = self._frame if self._state == _BODY else None  # None: skipping a bad frame
        pos = self._pos
        if self._at_body_start:
            # Lenient: an empty body whose end-line follows the blank line directly.
            line = marker[2:]
            head = buf[pos : pos + len(line) + 3]
            if len(head) < len(line) + 3 and _could_be_end_line(head, line):
                return False
            if head.startswith(line) and _is_end(buf, pos + len(line)):
                return self._end_frame(events, target, pos, pos + len(line))
            self._at_body_start = False
        search = self._search_from
        while True:
            index = buf.find(marker, search)
            if index < 0:
                keep = _marker_prefix_start(buf, marker, max(pos, len(buf) - len(marker) + 1))
                if keep > pos:
                    if target is not None:
                        events.append(FrameData(target, buf[pos:keep]))
                    self._pos = keep
                self._search_from = self._pos
                return False
            after = index + len(marker)
            if len(buf) < after + 3 and _could_be_end_line(buf[index + 2 :], marker[2:]):
                if index > pos:
                    if target is not None:
                        events.append(FrameData(target, buf[pos:index]))
                    self._pos = index
                self._search_from = index
                return False
            if _is_end(buf, after):
                return self._end_frame(events, target, index, after)
            search = index + 1

    def _end_frame(
        self, events: list[ParserEvent], frame: MSRPData | None, index: int, after: int
    ) -> bool:
        buf = self._buf
        if frame is not None:
            if index > self._pos:
                events.append(FrameData(frame, buf[self._pos : index]))
            frame.contflag = chr(buf[after])
            events.append(FrameEnded(frame))
        self._pos = after + 3
        self._state = _START
        self._frame = None
        return True


_SHAREABLE = frozenset(
    {"Message-ID", "Success-Report", "Failure-Report", "Content-Type", "Status", "Expires"}
)
_PATHS = frozenset({"To-Path", "From-Path", "Use-Path"})


def _known_header(name: str, value: str) -> tuple[str, str, Any]:
    # A header line as the parser caches it: with its typed value when that value
    # can be shared between frames (a path as a tuple, copied into each frame).
    parsed = None
    try:
        if name in _PATHS:
            parsed = _parse_path_cached(value) or None
        elif name in _SHAREABLE:
            parsed = _HEADER_PARSERS[name](value)
    except MSRPParseError:
        pass  # validate() reports it, with the frame's transaction id
    return name, value, parsed


def _marker_prefix_start(buf: bytes, marker: bytes, start: int) -> int:
    # Where the tail of ``buf`` (from ``start`` on) begins to be a prefix of
    # ``marker``: the bytes before it are body for sure.  The marker starts with CR.
    index = buf.find(b"\r", start)
    while index >= 0 and not marker.startswith(buf[index:]):
        index = buf.find(b"\r", index + 1)
    return len(buf) if index < 0 else index


def _could_be_end_line(head: bytes, line: bytes) -> bool:
    # Whether ``head`` is the beginning of ``line`` + continuation flag + CRLF.
    if not line.startswith(head[: len(line)]):
        return False
    tail = head[len(line) :]
    return not tail or (tail[0] in b"$+#" and b"\r\n".startswith(tail[1:]))


def _is_end(buf: bytes, at: int) -> bool:
    return len(buf) >= at + 3 and buf[at] in b"$+#" and buf[at + 1 : at + 3] == b"\r\n"
