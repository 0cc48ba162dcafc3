"""RFC 3261 section 25 grammar pieces shared by the URI, header and message parsers.

Everything here works on text that has already been unfolded (RFC 3261 section 7.3.1:
a CRLF followed by whitespace is removed before any header value is looked at), so the
linear whitespace of the grammar is just ``[ \\t]*``.

The patterns are precompiled module constants; the helpers are small functions on the
hot path of parsing, written to do nothing when there is nothing to do (no ``%`` means
no unescaping, no backslash means no unquoting).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NoReturn
from urllib.parse import quote, unquote

from sipsimple.core.errors import SIPParseError

__all__ = [
    "PARAMS",
    "PARAM_ITEM",
    "PVALUE",
    "QSTRING",
    "TOKEN",
    "WS",
    "escape",
    "format_params",
    "frozendict",
    "get_param",
    "is_token",
    "params_dict",
    "parse_params",
    "quote_string",
    "split_commas",
    "unescape",
    "unquote_string",
]

# Possessive quantifiers (Python 3.11) wherever backtracking cannot help: they make the
# patterns fail fast on garbage and run markedly faster on the hot path.
WS = r"[ \t]*+"
TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]++"
# qdtext excludes control characters other than HTAB; quoted-pair may escape any
# ASCII character but CR and LF (RFC 3261 section 25.1).
QSTRING = r'"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*+"'
# gen-value is token / host / quoted-string; accepting anything but separators keeps
# IPv6 references (with or without brackets, RFC 5118 section 4.5) and the odd
# extension value readable without letting a separator slip into a value.
PVALUE = rf'(?:[^\s;,="<>\\]++|{QSTRING})'
PARAMS = rf"(?:{WS};{WS}{TOKEN}(?:{WS}={WS}{PVALUE})?)*+"
PARAM_ITEM = re.compile(rf"{WS};{WS}({TOKEN})(?:{WS}={WS}({PVALUE}))?")

_TOKEN_RE = re.compile(TOKEN)
_QUOTED_PAIR = re.compile(r"\\(.)", re.S)
_NEEDS_QUOTED_PAIR = re.compile(r'[\\"\x00-\x08\x0b\x0c\x0e-\x1f\x7f]')
_COMMA_ITEM = re.compile(rf'(?:[^,"<]|{QSTRING}|<[^>]*>)+')


def is_token(text: str) -> bool:
    """Whether ``text`` is a non-empty RFC 3261 token."""
    return _TOKEN_RE.fullmatch(text) is not None


def fail(what: str, text: str) -> NoReturn:
    """Raise the parse error every parser here raises: what was invalid, and the text."""
    raise SIPParseError(f"invalid {what}: {text!r}")


def unescape(text: str) -> str:
    """Undo %-escaping once (RFC 3986 never unescapes recursively).

    Bytes that are not UTF-8 come back as surrogates, so that escaping the result gives
    the original octets back; a ``%`` not followed by two hex digits is kept as it is.
    """
    if "%" not in text:
        return text
    return unquote(text, errors="surrogateescape")


def escape(text: str, safe: str) -> str:
    """%-escape every character of ``text`` outside the unreserved set and ``safe``."""
    return quote(text, safe=safe, errors="surrogateescape")


def unquote_string(text: str) -> str:
    """The content of a quoted-string (quotes included in ``text``), quoted-pairs undone."""
    inner = text[1:-1]
    if "\\" not in inner:
        return inner
    return _QUOTED_PAIR.sub(r"\1", inner)


def quote_string(text: str) -> str:
    """``text`` as a quoted-string, using quoted-pairs where qdtext does not allow a character.

    CR and LF cannot be carried by a quoted-string; callers reject them up front.
    """
    if _NEEDS_QUOTED_PAIR.search(text) is not None:
        text = _NEEDS_QUOTED_PAIR.sub(lambda m: "\\" + m.group(), text)
    return f'"{text}"'


def split_commas(text: str) -> list[str]:
    """Split a header value at the commas that separate list elements.

    Commas inside quoted strings and inside ``<...>`` do not separate. Empty elements
    are dropped, as RFC 7230 section 7 recommends for list headers.
    """
    if "," not in text:
        stripped = text.strip(" \t")
        return [stripped] if stripped else []
    items = (item.strip(" \t") for item in _COMMA_ITEM.findall(text))
    return [item for item in items if item]


def parse_params(text: str) -> list[tuple[str, str | None]]:
    """The ``;name[=value]`` pairs of a string already validated against :data:`PARAMS`."""
    if '"' in text:
        return [(name, value or None) for name, value in PARAM_ITEM.findall(text)]
    pairs = []
    for item in text.split(";")[1:]:
        name, eq, value = item.partition("=")
        pairs.append((name.strip(" \t"), value.strip(" \t") if eq else None))
    return pairs


def params_dict(text: str) -> frozendict:
    """:func:`parse_params` as a frozendict, with a fast path for the plain ``;a=b;c`` case."""
    if not text:
        return EMPTY
    if '"' in text or " " in text or "\t" in text:
        return frozendict(parse_params(text))
    params = {}
    for item in text[1:].split(";"):
        name, eq, value = item.partition("=")
        params[name] = value if eq else None
    return frozendict(params)


def format_params(params: Mapping[str, str | None]) -> str:
    """Serialize header parameters; values are written as they are stored (quotes kept)."""
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def get_param(params: Mapping[str, str | None], name: str) -> str | None:
    """A parameter value by case-insensitive name (``name`` must be lower case)."""
    value = params.get(name)
    if value is not None or not params or name in params:
        return value
    for key, value in params.items():
        if key.lower() == name:
            return value
    return None


def check_text(what: str, text: str) -> str:
    """Reject CR and LF in a value that will be written into a header (header injection)."""
    if "\r" in text or "\n" in text:
        raise ValueError(f"{what} must not contain CR or LF: {text!r}")
    return text


class frozendict(dict[str, Any]):
    """An immutable, hashable dict: the parameters of Frozen URIs and headers."""

    __slots__ = ("_hash",)

    def _immutable(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("frozendict is immutable")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _immutable  # type: ignore[assignment]
    __ior__ = _immutable  # type: ignore[assignment]

    def __hash__(self) -> int:  # type: ignore[override]
        try:
            return self._hash
        except AttributeError:
            self._hash = hash(frozenset(self.items()))
            return self._hash

    def __repr__(self) -> str:
        return f"frozendict({dict.__repr__(self)})"

    def __reduce__(self) -> tuple[type[frozendict], tuple[dict[str, Any]]]:
        return (frozendict, (dict(self),))


EMPTY = frozendict()


class Memo(dict[str, Any]):
    """A bounded memo of immutable parse results, keyed by the raw text parsed.

    SIP repeats header values verbatim: responses copy the request's Via, From, To,
    Call-ID and CSeq, and requests in a dialog repeat From, To, Call-ID, Route and
    Contact. The Frozen values parsed from them are immutable, so they are shared
    instead of parsed again. When full, the memo is emptied (no eviction bookkeeping
    on the hot path; a flood of distinct values costs one dict insert each).
    """

    __slots__ = ()
    limit = 4096

    def remember(self, key: str, value: Any) -> Any:
        if len(self) >= self.limit:
            self.clear()
        self[key] = value
        return value


def iter_pairs(
    value: Mapping[str, Any] | Iterable[tuple[str, Any]] | None,
) -> Iterator[tuple[str, Any]]:
    """Pairs from a mapping or an iterable of pairs (constructor arguments)."""
    if value is None:
        return iter(())
    if isinstance(value, Mapping):
        return iter(value.items())
    return iter(value)
