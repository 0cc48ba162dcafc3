"""SIP messages: parsing, building and serializing requests and responses (sans-IO).

Parsing
    :func:`parse_message` takes one complete message (a UDP datagram, or what the
    stream framer in :mod:`sipsimple.core.sip.framer` cut out of a TCP/TLS stream) and
    returns a :class:`SIPRequest` or :class:`SIPResponse`. The header section is split
    from the body once and decoded once (UTF-8; other bytes raise SIPParseError; bare
    LF line ends are accepted), folded lines are unfolded, and every header line is
    stored as raw text under its canonical key (compact forms expanded, names
    case-insensitive). What a message must have to be usable by the transaction layer
    is validated eagerly:

    - the start line: method, Request-URI (a valid URI without URI headers), version /
      version, code (100-699), reason;
    - Via (all values), From, To, Call-ID, CSeq (exactly one each), CSeq's method equal
      to the request method, Max-Forwards when present (0-255);
    - Content-Length when present: one value, no larger than the body received (a longer
      body is cut to it: the rest of a datagram is noise, RFC 3261 section 18.3).

    Validating Via, From and To takes one regex match each; their values are built from
    that match when first read (a message that is only routed or dropped never builds
    them). Any other header stays raw text until it is asked for; a malformed one
    raises SIPParseError then, and only then (``message.contact`` on ``Contact: ;;;``),
    so the rest of the message stays usable. URIs inside headers (and the Request-URI)
    are checked with the header but built on first use. Typed values are cached per
    message, and immutable ones are shared between messages with the same header text
    (see :class:`~sipsimple.core.sip.grammar.Memo`): SIP repeats Via, From, To,
    Call-ID and CSeq verbatim between a request and its responses.

    The common case, a header section with CRLF line ends, costs one search, one
    decode, one split and one pass over the lines; anything else (bare LFs, folding,
    odd spacing, unknown names) is handled on slower paths of the same functions.

    Errors are :class:`~sipsimple.core.errors.SIPParseError` whose text says what is
    wrong (``missing CSeq header``, ``invalid Via header: '...'``), fit for the Warning
    of a 400. When the start line and header lines could be read, the error is a
    :class:`MalformedSIPMessageError` carrying them, so that a 400 can be built with
    :meth:`MalformedSIPMessageError.make_response`. A message in another SIP version
    parses (``message.version``); answering it with 505 is the receiver's call.

Reading
    ``message.headers`` is a :class:`SIPHeaders`: a case-insensitive multimap of raw
    text values, in which ``Via: a, b`` and two ``Via`` lines are the same two values.
    Typed, cached accessors: ``via`` (list of FrozenViaHeader, ``top_via``),
    ``from_header``, ``to_header``, ``call_id``, ``cseq`` (CSeq(number, method)),
    ``max_forwards``, ``contact``, ``route``, ``record_route``, ``content_type``,
    ``content_length``, ``expires``, ``min_expires``, ``allow``, ``supported``,
    ``require``, ``proxy_require``, ``unsupported``, and for any header
    ``get_header(name)`` / ``get_headers(name)``. :meth:`SIPMessage.header_dict` gives
    the dict that notifications carry.

Building and sending
    ``SIPRequest(method, request_uri, headers=..., body=...)`` and
    ``SIPResponse(code, reason, headers=..., body=...)``; headers may be given as
    (name, value) pairs or a mapping, values as text or header objects (anything with a
    ``body``, e.g. ViaHeader, CSeq). ``bytes(message)`` serializes with canonical header
    names, headers grouped by name in order of first appearance (RFC 3261 section 7.3.1
    makes the order of different names insignificant) and Content-Length set from the
    body. :meth:`SIPRequest.make_response` copies Via, From, To, Call-ID and CSeq as
    RFC 3261 section 8.2.6.2 says. Messages compare equal when their start lines,
    header values (Content-Length aside) and bodies are equal.

    A parsed message that is already in that form (the usual case: canonical names,
    ``Name: value`` lines, Content-Length last) keeps the bytes it was parsed from, and
    ``bytes()`` gives them back as long as nothing changed: re-sending it (a proxy, a
    retransmission) costs nothing. Any change of the start line, the body, the headers
    object or its content makes ``bytes()`` serialize again. Other parsed messages
    keep their first serialization the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from typing import Any

from sipsimple.core.errors import SIPParseError
from sipsimple.core.sip.grammar import Memo, is_token, iter_pairs, split_commas
from sipsimple.core.sip.headers import (
    _CALL_ID_MEMO,
    _CSEQ_MEMO,
    _VIA_MEMO,
    CANONICAL_NAMES,
    COMPACT_FORMS,
    LIST_HEADERS,
    TYPED_HEADERS,
    CSeq,
    FrozenContactHeader,
    FrozenContentTypeHeader,
    FrozenFromHeader,
    FrozenHeader,
    FrozenRecordRouteHeader,
    FrozenRouteHeader,
    FrozenToHeader,
    FrozenViaHeader,
    _call_ids,
    _cseq,
    _parse_vias,
    _uint,
    name_addr_from_match,
    valid_name_addr,
    valid_vias,
    vias_from_match,
)
from sipsimple.core.sip.uri import (
    SIPURI,
    BaseSIPURI,
    FrozenSIPURI,
    OpaqueURI,
    check_request_uri,
    parse_uri,
)

__all__ = [
    "REASON_PHRASES",
    "MalformedSIPMessageError",
    "SIPHeaders",
    "SIPMessage",
    "SIPRequest",
    "SIPResponse",
    "parse_message",
]

REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    199: "Early Dialog Terminated",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    412: "Conditional Request Failed",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    580: "Precondition Failure",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}

_REQUEST_LINE = re.compile(r"([A-Za-z0-9\-.!%*_+`'~]+) ([^ ]+) ([Ss][Ii][Pp]/[0-9]+\.[0-9]+)")
_STATUS_LINE = re.compile(
    r"([Ss][Ii][Pp]/[0-9]+\.[0-9]+) ([1-6][0-9][0-9])(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?"
)
_START_MEMO = Memo()
_UINT_MEMO = Memo()
_REASON = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*")
# Header name as written -> key, in two tables: the canonical spellings (what a parsed
# line that serializes back to itself has: one lookup on the hot path), and every other
# known spelling (compact forms, lower and upper case, ...). Unknown names are checked
# and lowered every time (they are the rare case).
_CANONICAL_KEYS: dict[str, str] = {name: key for key, name in CANONICAL_NAMES.items()}
_KEYS: dict[str, str] = dict(_CANONICAL_KEYS)
for _key in CANONICAL_NAMES:
    _KEYS[_key] = _KEYS[_key.upper()] = _KEYS[_key.title()] = _key
for _letter, _key in COMPACT_FORMS.items():
    _KEYS[_letter] = _KEYS[_letter.upper()] = _key
del _key, _letter
# Values of the eager headers validated at parse but not built yet: the key's builder
# turns the regex match into the shared typed values when they are first read.
_FROM_MATCH: dict[str, Callable[[re.Match[str]], tuple[Any, ...]]] = {
    "via": vias_from_match,
    "from": partial(name_addr_from_match, FrozenFromHeader),
    "to": partial(name_addr_from_match, FrozenToHeader),
}


def _header_key(name: str) -> tuple[str, str]:
    """(key, display name) of a header name as written; raises SIPParseError if invalid."""
    key = _KEYS.get(name)
    if key is not None:
        return key, CANONICAL_NAMES[key]
    stripped = name.strip(" \t")
    if not is_token(stripped):
        raise SIPParseError(f"invalid header name: {name!r}")
    key = stripped.lower()
    key = COMPACT_FORMS.get(key, key)
    canonical = CANONICAL_NAMES.get(key)
    if canonical is not None:
        if len(_KEYS) < 4096 and name[:1] not in (" ", "\t"):
            _KEYS[name] = key
        return key, canonical
    return key, stripped


def _api_key(name: str) -> tuple[str, str]:
    try:
        return _header_key(name)
    except SIPParseError as e:
        raise ValueError(str(e)) from None


def _entry_text(entry: Any) -> str:
    return entry if type(entry) is str else entry.body


class SIPHeaders:
    """A case-insensitive, multi-valued mapping of header names to text values.

    Names may be given in any case or in compact form (``i`` is ``Call-ID``). For the
    comma-separated list headers (Via, Contact, Route, Allow, ...) each element is a
    value of its own: ``Via: a, b`` and two Via lines are equivalent. Values are stored
    as given: text, or header objects (anything with a ``body``) which are written out
    when the message is serialized.

    ``get(name)`` (first value or default), ``getall(name)``, ``headers[name]`` (first
    value, KeyError), ``set(name, value_or_values)``, ``add(name, value, first=False)``,
    ``del headers[name]``, ``name in headers``; iterating gives the names in order,
    ``items()`` the (name, value) pairs in order.
    """

    # _values: key -> raw entries (one per line, or per value given); _names: display
    # names of unknown keys; _cache: key -> tuple of typed values, or the regex match of
    # an eager header validated at parse and built on first read; _pristine: exactly
    # what the parser read (only text entries, never changed), so that the message may
    # send the bytes it was parsed from.
    __slots__ = ("_cache", "_names", "_pristine", "_values")

    def __init__(
        self, headers: SIPHeaders | Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None
    ) -> None:
        self._values: dict[str, list[Any]] = {}
        self._names: dict[str, str] = {}
        self._cache: dict[str, Any] = {}
        self._pristine = False
        if isinstance(headers, SIPHeaders):
            self._values = {key: list(entries) for key, entries in headers._values.items()}
            self._names = dict(headers._names)
        else:
            for name, value in iter_pairs(headers):
                self.add(name, value)

    def copy(self) -> SIPHeaders:
        return SIPHeaders(self)

    def _display(self, key: str) -> str:
        return CANONICAL_NAMES.get(key) or self._names[key]

    def _split(self, key: str, entries: list[Any]) -> list[str]:
        if key in LIST_HEADERS:
            return [value for entry in entries for value in split_commas(_entry_text(entry))]
        return [_entry_text(entry) for entry in entries]

    def getall(self, name: str) -> list[str]:
        """All values of a header, in order (list headers split at their commas)."""
        key = _api_key(name)[0]
        entries = self._values.get(key)
        return self._split(key, entries) if entries else []

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of a header, or ``default``."""
        values = self.getall(name)
        return values[0] if values else default

    def __getitem__(self, name: str) -> str:
        values = self.getall(name)
        if not values:
            raise KeyError(name)
        return values[0]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _api_key(name)[0] in self._values

    def set(self, name: str, value: Any) -> None:
        """Replace every value of a header; a list or tuple gives several values."""
        key, display = _api_key(name)
        values = (
            list(value)
            if isinstance(value, list | tuple) and not isinstance(value, CSeq)
            else [value]
        )
        checked = [self._checked(value) for value in values]
        self._pristine = False
        self._cache.pop(key, None)
        if not checked:
            self._values.pop(key, None)
            return
        self._values[key] = checked
        if key not in CANONICAL_NAMES:
            self._names[key] = display

    __setitem__ = set

    def add(self, name: str, value: Any, *, first: bool = False) -> None:
        """Add a value after the existing ones, or before them with ``first=True``."""
        key, display = _api_key(name)
        value = self._checked(value)
        self._pristine = False
        self._cache.pop(key, None)
        entries = self._values.setdefault(key, [])
        if first:
            entries.insert(0, value)
        else:
            entries.append(value)
        if key not in CANONICAL_NAMES:
            self._names.setdefault(key, display)

    @staticmethod
    def _checked(value: Any) -> Any:
        if isinstance(value, str):
            if "\r" in value or "\n" in value:
                raise ValueError(f"header values must not contain CR or LF: {value!r}")
            return value.strip(" \t")
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if not hasattr(value, "body"):
            raise TypeError(f"header values are text or header objects, not {type(value).__name__}")
        return value

    def __delitem__(self, name: str) -> None:
        key = _api_key(name)[0]
        if key not in self._values:
            raise KeyError(name)
        self._pristine = False
        del self._values[key]
        self._cache.pop(key, None)
        self._names.pop(key, None)

    def __iter__(self) -> Iterator[str]:
        return (self._display(key) for key in self._values)

    def __len__(self) -> int:
        return len(self._values)

    def items(self) -> list[tuple[str, str]]:
        """(name, value) for every value, in order; list headers split at their commas."""
        return [
            (self._display(key), value)
            for key, entries in self._values.items()
            for value in self._split(key, entries)
        ]

    def _comparable(self) -> dict[str, list[str]]:
        return {key: self._split(key, entries) for key, entries in self._values.items()}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SIPHeaders):
            return NotImplemented
        return self._comparable() == other._comparable()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SIPHeaders({self.items()!r})"

    def typed(self, name: str) -> list[Any]:
        """The typed values of a header (parsed on first use, then cached).

        Known headers give their typed values (FrozenViaHeader, CSeq, int, list items
        ...), unknown ones a FrozenHeader per line. Raises SIPParseError when the header
        is malformed, or repeated where only one is allowed.
        """
        key = _KEYS.get(name)
        if key is None:
            key = _api_key(name)[0]
        return list(self._typed(key))

    def _typed(self, key: str) -> tuple[Any, ...]:
        """:meth:`typed` for a key, as the cached (immutable, maybe shared) tuple."""
        cached = self._cache.get(key)
        if cached is not None:
            if type(cached) is tuple:
                return cached
            result = _FROM_MATCH[key](cached)
        else:
            entries = self._values.get(key)
            if not entries:
                return ()
            spec = TYPED_HEADERS.get(key)
            if spec is None:
                display = self._display(key)
                result = tuple(FrozenHeader(display, _entry_text(entry)) for entry in entries)
            else:
                is_list, parse = spec
                if len(entries) == 1:
                    entry = entries[0]
                    result = parse(entry if type(entry) is str else entry.body)
                    if type(result) is not tuple:
                        result = tuple(result)
                elif not is_list:
                    raise SIPParseError(f"multiple {self._display(key)} headers")
                else:
                    result = tuple(
                        value for entry in entries for value in parse(_entry_text(entry))
                    )
        self._cache[key] = result
        return result

    def _wire_lines(self) -> list[str]:
        """``Name: value\\r\\n`` for every entry, Content-Length left out."""
        lines = []
        names = self._names
        for key, entries in self._values.items():
            if key == "content-length":
                continue
            prefix = _PREFIXES.get(key) or f"{names[key]}: "
            for entry in entries:
                lines.append(
                    f"{prefix}{entry}\r\n" if type(entry) is str else f"{prefix}{entry.body}\r\n"
                )
        return lines


_PREFIXES = {key: f"{name}: " for key, name in CANONICAL_NAMES.items()}


# Whole header lines of the clean canonical form (``Name: value``, nothing to strip)
# -> (key, value): most lines repeat verbatim from message to message (Max-Forwards,
# Content-Type, Allow, To, CSeq, Contact, Route, ...), and one lookup of the line
# replaces splitting it, stripping the value and looking up the name. Long lines are
# not remembered: the memo stays small whatever arrives (at most 4096 lines of 256).
_LINES = Memo()
_LINE_LIMIT = 256


def _parse_header_lines(lines: list[str]) -> tuple[SIPHeaders, bool]:
    """SIPHeaders from ``Name: value`` lines (the hot loop of parsing), and whether the
    lines are what bytes() would write: canonical names, one space after the colon, no
    folding, repeated names on adjacent lines, Content-Length last (its value is for
    the caller to compare with the body).

    A clean line seen before is one lookup in ``_LINES``. A line starting with
    whitespace continues the one before (RFC 3261 section 7.3.1):
    its CRLF is dropped, its whitespace kept. Checking this here, only for lines whose
    name is not a canonical one, is cheaper than searching the whole text for folds first.
    """
    values: dict[str, list[Any]] = {}
    names: dict[str, str] = {}
    canonical_keys = _CANONICAL_KEYS
    seen = _LINES.get
    canonical = True
    last = None
    for line in lines:
        found = seen(line)
        if found is not None:
            key, stripped = found
            if key in values:
                if key is not last:
                    canonical = False
                values[key].append(stripped)
            else:
                values[key] = [stripped]
            last = key
            continue
        name, _, value = line.partition(": ")
        try:
            key = canonical_keys[name]
            if value.strip(" \t") is value and len(line) <= _LINE_LIMIT:  # clean: remembered
                if len(_LINES) >= _LINES.limit:
                    _LINES.clear()
                _LINES[line] = (key, value)
        except KeyError:
            if line[:1] in (" ", "\t"):
                if last is None:
                    raise SIPParseError(f"invalid header line: {line!r}") from None
                entries = values[last]
                entries[-1] = (entries[-1] + line).strip(" \t")
                canonical = False
                continue
            name, colon, value = line.partition(":")
            if not colon:
                raise SIPParseError(f"invalid header line: {line!r}") from None
            key, display = _header_key(name)
            if key not in CANONICAL_NAMES and key not in names:
                names[key] = display
            if display == name and value[:1] == " ":
                value = value[1:]
            else:
                canonical = False
        stripped = value.strip(" \t")
        if stripped is not value:
            canonical = False
        if key in values:
            if key is not last:  # not next to the lines it would be written with
                canonical = False
            values[key].append(stripped)
        else:
            values[key] = [stripped]
        last = key
    headers = SIPHeaders.__new__(SIPHeaders)
    headers._values = values
    headers._names = names
    headers._cache = {}
    headers._pristine = True
    return headers, canonical and last == "content-length"


def _crlf_lines(text: str) -> list[str] | None:
    """The lines of ``text`` if every line end in it is a CRLF, else None.

    A bare CR or LF is left inside a line by the split: two memchr scans of the joined
    lines find it, far cheaper than counting line ends.
    """
    lines = text.split("\r\n")
    joined = "".join(lines)
    return None if "\n" in joined or "\r" in joined else lines


def _head_lines(head: bytes) -> tuple[list[str], bool]:
    """The lines of a header section, and whether they all end in CRLF (else some in a
    bare LF); the section must be UTF-8 without stray CRs."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SIPParseError(f"header section is not valid UTF-8 (byte {e.start})") from None
    lines = _crlf_lines(text)
    if lines is not None:
        return lines, True
    if "\r" in text.replace("\r\n", ""):
        raise SIPParseError("header section contains a CR that does not end a line")
    return text.replace("\r\n", "\n").split("\n"), False


def _split_head(head: bytes) -> tuple[str, SIPHeaders, bool]:
    """(start line, headers, canonical) from the header section (without its final empty
    line); canonical as :func:`_parse_header_lines` says, for CRLF line ends only."""
    lines, crlf = _head_lines(head)
    start = lines[0]
    del lines[0]
    headers, canonical = _parse_header_lines(lines)
    return start, headers, canonical and crlf


class MalformedSIPMessageError(SIPParseError):
    """A message whose start line and header lines could be read, but that is invalid.

    ``headers`` holds the raw header lines and ``method`` the request method (None for a
    response or when the request line itself is the problem), so the receiver can answer
    a request with :meth:`make_response` (a 400 with the error in a Warning by default).
    """

    def __init__(self, text: str, headers: SIPHeaders, method: str | None) -> None:
        super().__init__(text)
        self.headers = headers
        self.method = method

    def make_response(
        self,
        code: int = 400,
        reason: str | None = None,
        *,
        warning_agent: str | None = None,
        to_tag: str | None = None,
    ) -> SIPResponse | None:
        """A response to the bad request, or None when it cannot or must not be answered.

        None for responses and ACKs (never answered) and when Via, From, To, Call-ID or
        CSeq is missing. With ``warning_agent`` (our host name) the error text goes into
        ``Warning: 399 <agent> "<text>"``.
        """
        if self.method is None or self.method == "ACK":
            return None
        headers = self.headers
        if not all(key in headers._values for key in ("via", "from", "to", "call-id", "cseq")):
            return None
        extra = []
        if warning_agent is not None:
            from sipsimple.core.sip.headers import WarningHeader

            extra.append(("Warning", WarningHeader(399, warning_agent, str(self)[:200])))
        return _response_for(headers, code, reason, to_tag=to_tag, headers=extra, body=b"")


def _response_for(
    request_headers: SIPHeaders,
    code: int,
    reason: str | None,
    *,
    to_tag: str | None,
    headers: SIPHeaders | Mapping[str, Any] | Iterable[tuple[str, Any]] | None,
    body: bytes,
) -> SIPResponse:
    copied = SIPHeaders()
    values = copied._values
    source = request_headers._values
    for key in ("via", "from", "to", "call-id", "cseq"):
        entries = source.get(key)
        if entries:
            values[key] = list(entries)
    if to_tag is not None and "to" in values:
        to = values["to"][0]
        try:
            has_tag = request_headers._typed("to")[0].tag is not None
        except SIPParseError:
            has_tag = True
        if not has_tag:
            values["to"] = [f"{_entry_text(to)};tag={to_tag}"]
    for name, value in iter_pairs(headers):
        copied.add(name, value)
    return SIPResponse(code, reason, copied, body)


def _shared(headers: SIPHeaders, key: str, memo: Memo) -> tuple[Any, ...]:
    """:meth:`SIPHeaders._typed` for a list header whose Frozen values are memoized by
    line text (Contact, Route): a single line seen before is one lookup, not a parse
    call chain; anything else is parsed by ``_typed``."""
    entries = headers._values.get(key)
    if entries is not None and len(entries) == 1 and type(entries[0]) is str:
        values = memo.get(entries[0])
        if values is not None:
            headers._cache[key] = values
            return values  # type: ignore[no-any-return]
    return headers._typed(key)


_CONTACT_MEMO = FrozenContactHeader._memo
_ROUTE_MEMO = FrozenRouteHeader._memo


class SIPMessage:
    """What requests and responses share: headers, body, version and typed accessors."""

    # _wire: (bytes, body, headers, start line) of a parsed message that serializes to
    # exactly the bytes it was parsed from (or of one serialized once): valid while the
    # body, the headers object and the start line are the ones recorded and the headers
    # are untouched, so that any change anywhere makes bytes() serialize again.
    __slots__ = ("_wire", "body", "headers", "version")

    headers: SIPHeaders
    body: bytes
    version: str

    def __init__(
        self,
        headers: SIPHeaders | Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
        body: bytes = b"",
        version: str = "SIP/2.0",
    ) -> None:
        if not isinstance(body, bytes | bytearray | memoryview):
            raise TypeError(f"body must be bytes, not {type(body).__name__}")
        self.headers = headers if isinstance(headers, SIPHeaders) else SIPHeaders(headers)
        self.body = bytes(body)
        self.version = version
        self._wire: tuple[bytes, bytes, SIPHeaders, str] | None = None

    def _start_line(self) -> str:
        raise NotImplementedError

    def __bytes__(self) -> bytes:
        start = self._start_line()
        headers, body = self.headers, self.body
        wire = self._wire
        if (
            wire is not None
            and wire[1] is body
            and wire[2] is headers
            and headers._pristine
            and wire[3] == start
        ):
            return wire[0]
        lines = headers._wire_lines()
        lines.append(f"Content-Length: {len(body)}\r\n\r\n")
        data = f"{start}\r\n{''.join(lines)}".encode() + body
        if headers._pristine:  # text entries only: nothing can change behind our back
            self._wire = (data, body, headers, start)
        return data

    def __eq__(self, other: object) -> bool:
        """Semantic equality: start line, header values (Content-Length aside) and body."""
        if not isinstance(other, SIPMessage):
            return NotImplemented
        if (
            type(self) is not type(other)
            or self._start() != other._start()
            or self.body != other.body
        ):
            return False
        mine, theirs = self.headers._comparable(), other.headers._comparable()
        mine.pop("content-length", None)
        theirs.pop("content-length", None)
        return mine == theirs

    __hash__ = None  # type: ignore[assignment]

    def _start(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def _single(self, key: str) -> Any:
        values = self.headers._cache.get(key)
        if type(values) is not tuple:
            values = self.headers._typed(key)
        return values[0] if values else None

    def _list(self, key: str) -> Any:
        values = self.headers._cache.get(key)
        if type(values) is not tuple:
            values = self.headers._typed(key)
        return list(values)

    # -- typed accessors -------------------------------------------------------------
    # The ones the transaction layer reads on every message inline _single / _list.

    @property
    def via(self) -> list[FrozenViaHeader]:
        """All Via values, topmost first."""
        values = self.headers._cache.get("via")
        if type(values) is not tuple:
            values = self.headers._typed("via")
        return list(values)

    @property
    def top_via(self) -> FrozenViaHeader:
        """The topmost Via value; SIPParseError if there is none."""
        values = self.headers._cache.get("via")
        if type(values) is not tuple:
            values = self.headers._typed("via")
            if not values:
                raise SIPParseError("missing Via header")
        return values[0]  # type: ignore[no-any-return]

    @property
    def from_header(self) -> FrozenFromHeader | None:
        values = self.headers._cache.get("from")
        if type(values) is not tuple:
            values = self.headers._typed("from")
        return values[0] if values else None

    @property
    def to_header(self) -> FrozenToHeader | None:
        values = self.headers._cache.get("to")
        if type(values) is not tuple:
            values = self.headers._typed("to")
        return values[0] if values else None

    @property
    def call_id(self) -> str | None:
        values = self.headers._cache.get("call-id")
        if type(values) is not tuple:
            values = self.headers._typed("call-id")
        return values[0] if values else None

    @property
    def cseq(self) -> CSeq | None:
        values = self.headers._cache.get("cseq")
        if type(values) is not tuple:
            values = self.headers._typed("cseq")
        return values[0] if values else None

    @property
    def max_forwards(self) -> int | None:
        values = self.headers._cache.get("max-forwards")
        if type(values) is not tuple:
            values = self.headers._typed("max-forwards")
        return values[0] if values else None

    @property
    def contact(self) -> list[FrozenContactHeader]:
        values = self.headers._cache.get("contact")
        if type(values) is not tuple:
            values = _shared(self.headers, "contact", _CONTACT_MEMO)
        return list(values)

    @property
    def route(self) -> list[FrozenRouteHeader]:
        values = self.headers._cache.get("route")
        if type(values) is not tuple:
            values = _shared(self.headers, "route", _ROUTE_MEMO)
        return list(values)

    @property
    def record_route(self) -> list[FrozenRecordRouteHeader]:
        return self._list("record-route")  # type: ignore[no-any-return]

    @property
    def content_type(self) -> FrozenContentTypeHeader | None:
        return self._single("content-type")  # type: ignore[no-any-return]

    @property
    def content_length(self) -> int | None:
        """The Content-Length header as received (None if absent); the body is cut to it."""
        return self._single("content-length")  # type: ignore[no-any-return]

    @property
    def expires(self) -> int | None:
        return self._single("expires")  # type: ignore[no-any-return]

    @property
    def min_expires(self) -> int | None:
        return self._single("min-expires")  # type: ignore[no-any-return]

    @property
    def allow(self) -> list[str]:
        return self._list("allow")  # type: ignore[no-any-return]

    @property
    def supported(self) -> list[str]:
        return self._list("supported")  # type: ignore[no-any-return]

    @property
    def require(self) -> list[str]:
        return self._list("require")  # type: ignore[no-any-return]

    @property
    def proxy_require(self) -> list[str]:
        return self._list("proxy-require")  # type: ignore[no-any-return]

    @property
    def unsupported(self) -> list[str]:
        return self._list("unsupported")  # type: ignore[no-any-return]

    def get_headers(self, name: str) -> list[Any]:
        """The typed values of any header (FrozenHeader for unknown ones), in order."""
        return self.headers.typed(name)

    def get_header(self, name: str) -> Any:
        """The first typed value of any header, or None."""
        values = self.headers.typed(name)
        return values[0] if values else None

    def header_dict(self) -> dict[str, Any]:
        """The headers as notifications carry them, keyed by canonical name.

        Via, Contact, Route, Record-Route, Warning, Reason: lists of Frozen headers;
        Allow, Supported, Require and the other token lists: lists of str; CSeq:
        (number, method); Call-ID: str; Content-Length, Expires, Min-Expires,
        Max-Forwards: int; other known headers: their Frozen header; unknown headers:
        a FrozenHeader (a list of them when repeated). A header that is malformed is
        given as FrozenHeader(s) of its raw text instead of failing the whole dict.
        """
        result: dict[str, Any] = {}
        headers = self.headers
        for key, entries in headers._values.items():
            display = headers._display(key)
            spec = TYPED_HEADERS.get(key)
            try:
                if spec is not None:
                    values = headers._typed(key)
                    result[display] = list(values) if spec[0] else values[0]
                    continue
                if key in LIST_HEADERS:
                    result[display] = headers._split(key, entries)
                    continue
            except SIPParseError:
                pass
            raw = [FrozenHeader(display, _entry_text(entry)) for entry in entries]
            result[display] = raw[0] if len(raw) == 1 else raw
        return result


class SIPRequest(SIPMessage):
    """A SIP request: method, request_uri (FrozenSIPURI or OpaqueURI), headers, body."""

    __slots__ = ("_request_uri", "method")

    method: str

    def __init__(
        self,
        method: str,
        request_uri: BaseSIPURI | OpaqueURI | str,
        headers: SIPHeaders | Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
        body: bytes = b"",
        version: str = "SIP/2.0",
    ) -> None:
        if not is_token(method):
            raise ValueError(f"invalid method: {method!r}")
        if isinstance(request_uri, str):
            request_uri = parse_uri(request_uri)
        elif isinstance(request_uri, SIPURI):
            request_uri = FrozenSIPURI.new(request_uri)
        elif not isinstance(request_uri, FrozenSIPURI | OpaqueURI):
            raise TypeError(f"request_uri must be a URI, not {type(request_uri).__name__}")
        super().__init__(headers, body, version)
        self.method = method
        self._request_uri: FrozenSIPURI | OpaqueURI | str = request_uri

    @property
    def request_uri(self) -> FrozenSIPURI | OpaqueURI:
        """The Request-URI (checked at parse, built on first use)."""
        uri = self._request_uri
        if type(uri) is str:
            uri = self._request_uri = parse_uri(uri)
        return uri  # type: ignore[return-value]

    @request_uri.setter
    def request_uri(self, uri: BaseSIPURI | OpaqueURI | str) -> None:
        if isinstance(uri, str):
            uri = parse_uri(uri)
        elif isinstance(uri, SIPURI):
            uri = FrozenSIPURI.new(uri)
        elif not isinstance(uri, FrozenSIPURI | OpaqueURI):
            raise TypeError(f"request_uri must be a URI, not {type(uri).__name__}")
        self._request_uri = uri

    def _start_line(self) -> str:
        return f"{self.method} {self._request_uri} {self.version}"

    def _start(self) -> tuple[Any, ...]:
        return (self.method, self.request_uri, self.version)

    def __repr__(self) -> str:
        return f"<SIPRequest {self.method} {self.request_uri}>"

    def make_response(
        self,
        code: int,
        reason: str | None = None,
        *,
        to_tag: str | None = None,
        headers: SIPHeaders | Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
        body: bytes = b"",
    ) -> SIPResponse:
        """A response with Via, From, To, Call-ID and CSeq copied from this request.

        ``to_tag`` is added to To unless the request's To already has a tag (RFC 3261
        section 8.2.6.2); ``headers`` are added after the copied ones.
        """
        return _response_for(self.headers, code, reason, to_tag=to_tag, headers=headers, body=body)


class SIPResponse(SIPMessage):
    """A SIP response: code, reason, headers, body."""

    __slots__ = ("code", "reason")

    code: int
    reason: str

    def __init__(
        self,
        code: int,
        reason: str | None = None,
        headers: SIPHeaders | Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
        body: bytes = b"",
        version: str = "SIP/2.0",
    ) -> None:
        if isinstance(code, bool) or not 100 <= code <= 699:
            raise ValueError(f"status code must be in 100..699, not {code!r}")
        if reason is None:
            reason = REASON_PHRASES.get(code) or REASON_PHRASES.get(code - code % 100, "")
        elif _REASON.fullmatch(reason) is None:
            raise ValueError(f"invalid reason phrase: {reason!r}")
        super().__init__(headers, body, version)
        self.code = code
        self.reason = reason

    def _start_line(self) -> str:
        return f"{self.version} {self.code} {self.reason}"

    def _start(self) -> tuple[Any, ...]:
        return (self.code, self.reason, self.version)

    def __repr__(self) -> str:
        return f"<SIPResponse {self.code} {self.reason}>"


def _start_line(start: str) -> tuple[Any, ...]:
    """(method, Request-URI text, version, canonical) or (None, code, reason, version,
    canonical); the caller memoizes it (start lines repeat: every "SIP/2.0 200 OK",
    every request to the same target). Canonical: bytes() writes the line back as it is.
    """
    if start[:4].upper() == "SIP/":
        m = _STATUS_LINE.fullmatch(start)
        if m is None:
            raise SIPParseError(f"invalid status line: {start!r}")
        version, code, reason = m.groups()
        version, reason = version.upper(), reason or ""
        parsed = (None, int(code), reason, version, start == f"{version} {code} {reason}")
    else:
        m = _REQUEST_LINE.fullmatch(start)
        if m is None:
            raise SIPParseError(f"invalid request line: {start!r}")
        method, uri_text, version = m.groups()
        try:
            check_request_uri(uri_text)
        except SIPParseError as e:
            raise SIPParseError(f"invalid Request-URI: {e}") from None
        parsed = (method, uri_text, version.upper(), version.isupper())
    return parsed


_new = object.__new__


def _build(
    start: str, headers: SIPHeaders, body: bytes, wire: bytes | None
) -> SIPRequest | SIPResponse:
    """The message for a start line and headers, with the eager checks done.

    ``wire`` is the message as received when its header lines are canonical (see
    :func:`_parse_header_lines`): bytes() gives it back if the start line is too.
    """
    message: SIPRequest | SIPResponse
    method = None
    try:
        parsed = _START_MEMO.get(start)
        new_start = parsed is None
        if new_start:
            parsed = _start_line(start)
        method = parsed[0]
        if method is None:
            message = _new(SIPResponse)
            message.code = parsed[1]
            message.reason = parsed[2]
            message.version = parsed[3]
        else:
            message = _new(SIPRequest)
            message.method = method
            message._request_uri = parsed[1]
            message.version = parsed[2]
        message.headers = headers
        message.body = body
        message._wire = (wire, body, headers, start) if wire is not None and parsed[-1] else None
        _validate(headers, method)
        if new_start:
            _START_MEMO.remember(start, parsed)
    except SIPParseError as e:
        raise MalformedSIPMessageError(str(e), headers, method or _method_of(start)) from None
    return message


def _numbers(text: str, what: str) -> tuple[int]:
    """A non-negative integer header value (up to 2**32-1) as its typed values, memoized:
    they repeat (callers look in the memo first)."""
    return _UINT_MEMO.remember(text, (_uint(what, text),))  # type: ignore[no-any-return]


def _single_entry(values: dict[str, list[Any]], key: str, display: str) -> str:
    entries = values.get(key)
    if entries is None:
        raise SIPParseError(f"missing {display} header")
    if len(entries) > 1:
        raise SIPParseError(f"multiple {display} headers")
    return entries[0]  # type: ignore[no-any-return]


def _validate(headers: SIPHeaders, method: str | None) -> None:
    """Check what the transaction layer needs; raise on what it cannot use.

    Values already seen come from the memos (looked up here, before any call); Via,
    From and To seen for the first time are only matched (one regex call each) and
    built when first read. What was new goes into the memos only once the whole
    message proved valid: a flood of malformed messages leaves nothing behind.
    """
    values = headers._values
    cache = headers._cache
    learned = []
    entries = values.get("via")
    if entries is None:
        raise SIPParseError("missing Via header")
    if len(entries) == 1:
        text = entries[0]
        found = _VIA_MEMO.get(text)
        if found is None:
            found = valid_vias(text)
            learned.append((_VIA_MEMO, text, found))
        cache["via"] = found
    else:
        cache["via"] = tuple(via for entry in entries for via in _parse_vias(entry))
    entries = values.get("from")
    if entries is None or len(entries) > 1:
        _single_entry(values, "from", "From")
    text = entries[0]  # type: ignore[index]
    found = _FROM_MEMO.get(text)
    if found is None:
        found = valid_name_addr(FrozenFromHeader, text)
        learned.append((_FROM_MEMO, text, found))
    cache["from"] = found
    entries = values.get("to")
    if entries is None or len(entries) > 1:
        _single_entry(values, "to", "To")
    text = entries[0]  # type: ignore[index]
    found = _TO_MEMO.get(text)
    if found is None:
        found = valid_name_addr(FrozenToHeader, text)
        learned.append((_TO_MEMO, text, found))
    cache["to"] = found
    entries = values.get("call-id")
    if entries is None or len(entries) > 1:
        _single_entry(values, "call-id", "Call-ID")
    text = entries[0]  # type: ignore[index]
    found = _CALL_ID_MEMO.get(text)
    if found is None:
        found = _call_ids(text)
        learned.append((_CALL_ID_MEMO, text, found))
    cache["call-id"] = found
    entries = values.get("cseq")
    if entries is None or len(entries) > 1:
        _single_entry(values, "cseq", "CSeq")
    text = entries[0]  # type: ignore[index]
    cseq = _CSEQ_MEMO.get(text)
    if cseq is None:
        cseq = _cseq(text)
        learned.append((_CSEQ_MEMO, text, cseq))
    cache["cseq"] = (cseq,)
    entries = values.get("max-forwards")
    if entries is not None:
        if len(entries) > 1:
            raise SIPParseError("multiple Max-Forwards headers")
        text = entries[0]
        found = _UINT_MEMO.get(text) or _numbers(text, "Max-Forwards header")
        if found[0] > 255:
            raise SIPParseError(f"invalid Max-Forwards header: {found[0]} is larger than 255")
        cache["max-forwards"] = found
    if method is not None and cseq.method != method:
        raise SIPParseError(f"CSeq method {cseq.method} does not match request method {method}")
    for memo, text, value in learned:  # Memo.remember, without a call per value
        if len(memo) >= memo.limit:
            memo.clear()
        memo[text] = value


_FROM_MEMO = FrozenFromHeader._memo
_TO_MEMO = FrozenToHeader._memo


def parse_message(data: bytes) -> SIPRequest | SIPResponse:
    """Parse one complete SIP message (a datagram); raises SIPParseError.

    CRLFs before the start line are skipped. With a Content-Length the body is cut to
    it (a body shorter than it is an error); without one the body is the rest of
    ``data``, as for UDP.
    """
    if type(data) is not bytes:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"parse_message() needs bytes, not {type(data).__name__}")
        data = bytes(data)
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")
    # The usual case costs one search, one decode and one split: a header section with
    # CRLF line ends only. Anything else (bare LFs, stray CRs, bytes that are not UTF-8,
    # perhaps because a bare-LF head ends before the CRLFCRLF) takes the general path.
    end = data.find(b"\r\n\r\n")
    lines = None
    if end >= 0:
        try:
            text = data[:end].decode()
        except UnicodeDecodeError:
            pass
        else:
            lines = _crlf_lines(text)
    if lines is not None:
        body = data[end + 4 :]
        start = lines[0]
        del lines[0]
        headers, canonical = _parse_header_lines(lines)
    else:
        lf = data.find(b"\n\n", 0, len(data) if end < 0 else end)
        if lf >= 0:
            head, body = data[:lf], data[lf + 2 :]
        elif end >= 0:
            head, body = data[:end], data[end + 4 :]
        else:
            raise SIPParseError("incomplete message: no empty line after the header section")
        start, headers, _ = _split_head(head)
        canonical = False  # what bytes() writes differs at least in the line ends
    lengths = headers._values.get("content-length")
    if lengths is not None:
        text = lengths[0]
        found = _UINT_MEMO.get(text)
        if found is None or len(lengths) > 1:
            try:
                if len(lengths) > 1:
                    raise SIPParseError("multiple Content-Length headers")
                found = _numbers(text, "Content-Length header")
            except SIPParseError as e:
                raise MalformedSIPMessageError(str(e), headers, _method_of(start)) from None
        headers._cache["content-length"] = found
        length = found[0]
        if length > len(body):
            raise MalformedSIPMessageError(
                f"Content-Length {length} is larger than the {len(body)} bytes of body received",
                headers,
                _method_of(start),
            )
        if length < len(body):
            body = body[:length]
            data = data[: end + 4 + length]
        if canonical and (text[0] != "0" or text == "0"):  # as bytes() writes it
            return _build(start, headers, body, data)
    return _build(start, headers, body, None)


def _method_of(start: str) -> str | None:
    m = _REQUEST_LINE.fullmatch(start)
    return m.group(1) if m is not None else None
