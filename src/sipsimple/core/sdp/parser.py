"""Lenient SDP text parsing into plain values; model.py turns them into SDP objects.

Lines are placed where they belong even when they arrive in the wrong order; a line of a type
the model has no field for, or a second copy of a single-valued one, is kept as an extra line.
A line that is not "<type>=<value>" continues the attribute just before it (a wrapped value);
anywhere else it is an error.
"""

from __future__ import annotations

import re

from sipsimple.core.errors import SDPParseError

ExtraLine = tuple[str, str]


_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_DIGITS = re.compile(r"[0-9]{1,40}")
_PORT = re.compile(r"([0-9]{1,40})(?:/([0-9]{1,40}))?")
_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def split_lines(text: str | bytes) -> list[tuple[int, str, str]]:
    """(line number, type letter or "" if the line is not "x=...", value); no blank lines."""
    if isinstance(text, bytes | bytearray | memoryview):
        raw = bytes(text)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")  # old phones put Latin-1 in s= and i=
    elif not isinstance(text, str):
        raise TypeError(f"SDP text must be str or bytes, not {type(text).__name__}")
    lines = []
    for lineno, line in enumerate(_LINE_BREAK.split(text), 1):
        line = line.strip()
        if not line:
            continue
        if len(line) >= 2 and line[1] == "=" and line[0] in _LETTERS:
            lines.append((lineno, line[0], line[2:]))
        else:
            lines.append((lineno, "", line))
    return lines


def single_line(text: str | bytes, kind: str) -> str:
    lines = split_lines(text)
    if len(lines) != 1 or lines[0][1] != kind:
        raise SDPParseError(f"expected a single {kind}= line, got {text!r}")
    return lines[0][2]


def _int(token: str, what: str, lineno: int) -> int:
    if _DIGITS.fullmatch(token) is None:
        raise SDPParseError(f"line {lineno}: {what} must be a decimal number, got {token!r}")
    return int(token)


def split_attribute(value: str) -> tuple[str, str]:
    name, _, value = value.partition(":")
    return name.strip(), value.strip()


def parse_bandwidth(value: str, lineno: int) -> tuple[str, int]:
    modifier, colon, amount = value.partition(":")
    modifier = modifier.strip()
    if not colon or not modifier or any(ch.isspace() for ch in modifier):
        raise SDPParseError(f"line {lineno}: b= must be <modifier>:<bandwidth>, got {value!r}")
    return modifier, _int(amount.strip(), "bandwidth", lineno)


def parse_connection(value: str, lineno: int) -> tuple[str, str, str]:
    fields = value.split()
    if len(fields) != 3:
        raise SDPParseError(
            f"line {lineno}: c= must be <nettype> <addrtype> <address>, got {value!r}"
        )
    net_type, address_type, address = fields
    return address, net_type, address_type


def _parse_origin(value: str, lineno: int) -> tuple[str, int, int, str, str, str]:
    fields = value.split()
    if len(fields) < 6:
        raise SDPParseError(
            f"line {lineno}: o= needs <username> <sess-id> <sess-version> <nettype> <addrtype> "
            f"<address>, got {value!r}"
        )
    user = " ".join(fields[:-5])  # tolerate a user name with blanks in it
    session_id = _int(fields[-5], "o= session id", lineno)
    version = _int(fields[-4], "o= session version", lineno)
    return user, session_id, version, fields[-3], fields[-2], fields[-1]


def _parse_time(value: str, lineno: int) -> tuple[int, int]:
    fields = value.split()
    if len(fields) != 2:
        raise SDPParseError(f"line {lineno}: t= must be <start-time> <stop-time>, got {value!r}")
    return _int(fields[0], "start time", lineno), _int(fields[1], "stop time", lineno)


class ParsedMedia:
    __slots__ = (
        "attributes",
        "bandwidth",
        "connection",
        "extra_lines",
        "formats",
        "info",
        "media",
        "port",
        "port_count",
        "seen",
        "transport",
    )

    def __init__(self, value: str, lineno: int) -> None:
        fields = value.split()
        if len(fields) < 3:
            raise SDPParseError(
                f"line {lineno}: m= needs <media> <port> <proto> [<fmt> ...], got {value!r}"
            )
        port = _PORT.fullmatch(fields[1])
        if port is None:
            raise SDPParseError(
                f"line {lineno}: m= port must be <port>[/<count>], got {fields[1]!r}"
            )
        self.port = int(port.group(1))
        if self.port > 65535:
            raise SDPParseError(f"line {lineno}: m= port {self.port} is above 65535")
        self.port_count = int(port.group(2)) if port.group(2) is not None else 1
        self.media, self.transport, self.formats = fields[0], fields[2], fields[3:]
        self.info: str | None = None
        self.connection: tuple[str, str, str] | None = None
        self.attributes: list[tuple[str, str]] = []
        self.bandwidth: list[tuple[str, int]] = []
        self.extra_lines: list[ExtraLine] = []
        self.seen: set[str] = set()


class ParsedSession:
    __slots__ = (
        "attributes",
        "bandwidth",
        "connection",
        "continued",
        "extra_lines",
        "fragment",
        "info",
        "media",
        "name",
        "origin",
        "seen",
        "time",
    )

    def __init__(self, fragment: bool = False) -> None:
        # A lone media section has no session fields: v=, o=, s=, t= in it are kept as extras.
        self.fragment = fragment
        self.origin: tuple[str, int, int, str, str, str] | None = None
        self.name = ""
        self.info: str | None = None
        self.connection: tuple[str, str, str] | None = None
        self.time = (0, 0)
        self.attributes: list[tuple[str, str]] = []
        self.bandwidth: list[tuple[str, int]] = []
        self.media: list[ParsedMedia] = []
        self.extra_lines: list[ExtraLine] = []
        self.seen: set[str] = set()
        # The attribute list whose last entry a wrapped (non "x=") line continues, if any.
        self.continued: list[tuple[str, str]] | None = None


def feed(session: ParsedSession, lineno: int, kind: str, value: str) -> None:
    """Place one line; lines arriving in the wrong section or twice are kept as extra lines."""
    if not kind:
        target = session.continued
        if not target:
            raise SDPParseError(f"line {lineno}: expected <type>=<value>, got {value!r}")
        name, previous = target[-1]
        target[-1] = (name, f"{previous} {value}" if previous else value)
        return
    media = session.media[-1] if session.media else None
    if kind == "a":
        target = media.attributes if media is not None else session.attributes
        target.append(split_attribute(value))
        session.continued = target
        return
    session.continued = None
    if kind == "m":
        session.media.append(ParsedMedia(value, lineno))
    elif kind == "b":
        (media or session).bandwidth.append(parse_bandwidth(value, lineno))
    elif media is not None and kind in "ic" and kind not in media.seen:
        media.seen.add(kind)
        if kind == "i":
            media.info = value
        else:
            media.connection = parse_connection(value, lineno)
    elif kind in ("v", "o", "s", "t") or (media is None and kind in "ic"):
        if kind in session.seen or session.fragment:
            (media or session).extra_lines.append((kind, value))
        else:
            _session_field(session, lineno, kind, value)
    else:
        (media or session).extra_lines.append((kind, value))


def _session_field(session: ParsedSession, lineno: int, kind: str, value: str) -> None:
    if kind == "v":
        if value.strip() != "0":
            raise SDPParseError(f"line {lineno}: unsupported SDP version {value!r}, expected 0")
    elif kind == "o":
        session.origin = _parse_origin(value, lineno)
    elif kind == "s":
        session.name = value
    elif kind == "i":
        session.info = value
    elif kind == "c":
        session.connection = parse_connection(value, lineno)
    else:
        session.time = _parse_time(value, lineno)
    session.seen.add(kind)


def parse_session(text: str | bytes) -> ParsedSession:
    """A whole session description; it must have v= and o= lines."""
    session = ParsedSession()
    for lineno, kind, value in split_lines(text):
        feed(session, lineno, kind, value)
    if "v" not in session.seen:
        raise SDPParseError("missing v= line: not a session description")
    if session.origin is None:
        raise SDPParseError("missing o= line")
    # The writer puts u=, e=, p= before c= and every other kept line after t=.
    session.extra_lines.sort(key=lambda line: line[0] not in "uep")
    return session


def parse_media_section(text: str | bytes) -> ParsedMedia:
    """A lone media section, as the middleware documentation shows some."""
    lines = split_lines(text)
    if not lines or lines[0][1] != "m":
        raise SDPParseError("a media section must start with an m= line")
    session = ParsedSession(fragment=True)
    for lineno, kind, value in lines:
        if kind == "m" and session.media:
            raise SDPParseError(f"line {lineno}: a second m= line in a single media section")
        feed(session, lineno, kind, value)
    return session.media[0]
