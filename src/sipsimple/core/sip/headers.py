"""Typed SIP header values, each in a mutable and a Frozen form.

Every class has a ``name`` (the canonical header name), a ``body`` (the header value
as text, canonical for built headers, exactly as received for Frozen headers that were
parsed), ``str(header) == f"{name}: {body}"``, a ``parse(body)`` classmethod raising
SIPParseError that says what is wrong, and a ``new(header)`` classmethod converting
between the two forms (``FrozenFromHeader.new(from_header)``). Frozen headers are
immutable and hashable; their ``uri`` is a FrozenSIPURI (or an OpaqueURI for other
schemes) and their ``parameters`` a :class:`frozendict`. Header parameters are stored
as received: name -> value, ``None`` for a parameter without value, quoted values with
their quotes; properties such as ``tag`` or ``branch`` find them case-insensitively.

Parameters of a name-addr header (``<sip:a@b;lr>;tag=x``) are split right: the ones
inside the angle brackets belong to the URI, the ones after it to the header; in the
addr-spec form (``sip:a@b;tag=x``) every parameter belongs to the header (RFC 3261
section 20.10).

Frozen name-addr headers parsed from text check their URI at once but build the URI
object the first time ``uri`` is read. Frozen values parsed by the message layer are
shared between messages whose header text is the same (immutable, so safe to share).

This module also holds the tables the message layer works from: canonical names,
compact forms, which headers are comma-separated lists, and the parser of each typed
header (:data:`TYPED_HEADERS`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple, NoReturn

from sipsimple.core.errors import SIPParseError
from sipsimple.core.sip.grammar import (
    PARAMS,
    QSTRING,
    TOKEN,
    WS,
    Memo,
    check_text,
    fail,
    format_params,
    frozendict,
    get_param,
    is_token,
    params_dict,
    parse_params,
    quote_string,
    split_commas,
    unquote_string,
)
from sipsimple.core.sip.uri import (
    SIPURI,
    URI_PATTERN,
    BaseSIPURI,
    FrozenSIPURI,
    OpaqueURI,
    is_valid_uri,
    parse_uri,
)

__all__ = [
    "CANONICAL_NAMES",
    "COMPACT_FORMS",
    "LIST_HEADERS",
    "TYPED_HEADERS",
    "BaseHeader",
    "CSeq",
    "ContactHeader",
    "ContentTypeHeader",
    "EventHeader",
    "FromHeader",
    "FrozenContactHeader",
    "FrozenContentTypeHeader",
    "FrozenEventHeader",
    "FrozenFromHeader",
    "FrozenHeader",
    "FrozenReasonHeader",
    "FrozenRecordRouteHeader",
    "FrozenReferToHeader",
    "FrozenReplacesHeader",
    "FrozenRetryAfterHeader",
    "FrozenRouteHeader",
    "FrozenSubjectHeader",
    "FrozenSubscriptionStateHeader",
    "FrozenToHeader",
    "FrozenViaHeader",
    "FrozenWarningHeader",
    "Header",
    "ReasonHeader",
    "RecordRouteHeader",
    "ReferToHeader",
    "ReplacesHeader",
    "RetryAfterHeader",
    "RouteHeader",
    "SubjectHeader",
    "SubscriptionStateHeader",
    "ToHeader",
    "ViaHeader",
    "WarningHeader",
]

_set = object.__setattr__
_new = object.__new__
_EMPTY = frozendict()
_MAX_UINT32 = 2**32 - 1

URI = BaseSIPURI | OpaqueURI


def _params(text: str) -> frozendict:
    """Header parameters from text already validated against PARAMS by the caller's regex."""
    return params_dict(text)


def _uint(what: str, text: str, maximum: int = _MAX_UINT32) -> int:
    text = text.strip(" \t")
    if not text.isdigit() or not text.isascii():
        fail(what, text)
    value = int(text)
    if value > maximum:
        raise SIPParseError(f"invalid {what}: {text!r} is larger than {maximum}")
    return value


def _uint_param(what: str, value: str | None, maximum: int = _MAX_UINT32) -> int | None:
    return None if value is None else _uint(f"{what} parameter", value, maximum)


# -- the shared machinery ----------------------------------------------------------------


class BaseHeader:
    """What all typed headers share: name, body, str(), equality, parse() and new()."""

    __slots__ = ("_body",)

    name: ClassVar[str]
    _fields: ClassVar[tuple[str, ...]] = ()
    _family: ClassVar[str] = ""
    _frozen: ClassVar[bool] = False
    _mapping: ClassVar[Callable[..., Any]] = dict

    def _format(self) -> str:
        raise NotImplementedError

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, field) for field in self._fields)

    @property
    def body(self) -> str:
        """The header value, as text."""
        body = getattr(self, "_body", None)
        if body is None:
            body = self._format()
            if self._frozen:
                _set(self, "_body", body)
        return body

    def __str__(self) -> str:
        return f"{self.name}: {self.body}"

    def __repr__(self) -> str:
        args = ", ".join(repr(value) for value in self._values())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BaseHeader):
            return NotImplemented
        return self._family == other._family and self._values() == other._values()

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def new(cls, header: BaseHeader) -> Any:
        """A copy of ``header`` (mutable or Frozen) as an instance of this class."""
        if not isinstance(header, BaseHeader) or header._family != cls._family:
            raise TypeError(f"{cls.__name__}.new() needs a header of the same kind, not {header!r}")
        return cls(*header._values())

    @classmethod
    def parse(cls, text: str) -> Any:
        """Parse a header value (the text after ``Name:``)."""
        raise NotImplementedError

    @classmethod
    def _build(cls, values: tuple[Any, ...], body: str) -> Any:
        """An instance from parsed values: Frozen ones filled as drafts, mutable ones via
        __init__."""
        if not cls._frozen:
            return cls(*values)
        self = _new(cls._draft)
        for field, value in zip(cls._fields, values, strict=True):
            setattr(self, field, value)
        self._body = body
        self.__class__ = cls
        return self

    @staticmethod
    def _convert_uri(uri: Any) -> Any:
        return uri

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), self._values())


class _Frozen:
    """Mixin making a header class immutable and hashable.

    The parsers fill a new value as an instance of ``_draft``, a twin class with the same
    slots but without the __setattr__ guard, and then give it its Frozen class: plain
    slot stores, several times cheaper than calling a slot descriptor for each field.
    """

    __slots__ = ()
    _frozen = True
    _mapping = frozendict
    _draft: ClassVar[type]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        bases = tuple(base for base in cls.__bases__ if base is not _Frozen)
        cls._draft = type(f"{cls.__name__}Draft", bases, {"__slots__": ()})

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"{type(self).__name__} is immutable (cannot set {name})")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"{type(self).__name__} is immutable (cannot delete {name})")

    def __hash__(self) -> int:
        return hash((self._family, self._values()))  # type: ignore[attr-defined]

    @staticmethod
    def _convert_uri(uri: Any) -> Any:
        if isinstance(uri, str):
            return parse_uri(uri)
        if isinstance(uri, SIPURI):
            return FrozenSIPURI.new(uri)
        if uri is None or isinstance(uri, FrozenSIPURI | OpaqueURI):
            return uri
        raise TypeError(f"expected a SIPURI, FrozenSIPURI or OpaqueURI, not {type(uri).__name__}")


class _Mutable:
    """Mixin for the mutable form: URIs become SIPURI so they can be changed in place."""

    __slots__ = ()

    @staticmethod
    def _convert_uri(uri: Any) -> Any:
        if isinstance(uri, str):
            uri = parse_uri(uri)
        if isinstance(uri, FrozenSIPURI):
            return SIPURI.new(uri)
        if uri is None or isinstance(uri, SIPURI | OpaqueURI):
            return uri
        raise TypeError(f"expected a SIPURI, FrozenSIPURI or OpaqueURI, not {type(uri).__name__}")


def _param_property(
    name: str, doc: str, parse: Callable[[str | None], Any] | None = None
) -> property:
    if parse is None:

        def getter(self: Any) -> Any:
            params = self.parameters
            value = params.get(name)
            if value is None and params and name not in params:
                value = get_param(params, name)
            return value

    else:

        def getter(self: Any) -> Any:
            return parse(get_param(self.parameters, name))

    return property(getter, doc=doc)


def _param_setter(
    prop: property, name: str, format_: Callable[[Any], str | None] = lambda v: v
) -> property:
    """The read-write version of a parameter property, for the mutable form."""

    def setter(self: Any, value: Any) -> None:
        for key in [key for key in self.parameters if key.lower() == name]:
            del self.parameters[key]
        if value is not None and value is not False:
            self.parameters[name] = None if value is True else format_(value)

    return prop.setter(setter)


# -- Header (generic) --------------------------------------------------------------------

_HEADER_NAME = re.compile(TOKEN)


class _GenericHeader(BaseHeader):
    __slots__ = ("_name",)
    _fields = ("name", "body")
    _family = "Header"

    def __init__(self, name: str, body: str) -> None:
        if _HEADER_NAME.fullmatch(name) is None:
            raise ValueError(f"invalid header name: {name!r}")
        _set(self, "_name", name)
        _set(self, "_body", check_text("header body", str(body)))

    @property  # type: ignore[override]
    def name(self) -> str:
        """The header name as given."""
        return self._name

    @property
    def body(self) -> str:
        """The header value, as given."""
        return self._body  # type: ignore[no-any-return]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _GenericHeader):
            return NotImplemented
        return self._name.lower() == other._name.lower() and self._body == other._body

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def parse(cls, text: str) -> Any:
        """Parse a whole header line, ``Name: value``."""
        name, colon, body = text.partition(":")
        name = name.strip(" \t")
        if not colon or _HEADER_NAME.fullmatch(name) is None:
            fail("header line", text)
        return cls(name, body.strip(" \t"))


class Header(_Mutable, _GenericHeader):
    """Any header, as a name and a text value (unknown headers are kept this way)."""

    __slots__ = ()

    @_GenericHeader.name.setter  # type: ignore[attr-defined, untyped-decorator]
    def name(self, value: str) -> None:
        if _HEADER_NAME.fullmatch(value) is None:
            raise ValueError(f"invalid header name: {value!r}")
        self._name = value

    @_GenericHeader.body.setter  # type: ignore[attr-defined, untyped-decorator]
    def body(self, value: str) -> None:
        self._body = check_text("header body", value)


class FrozenHeader(_Frozen, _GenericHeader):
    """An immutable, hashable generic header."""

    __slots__ = ()

    def __hash__(self) -> int:
        return hash((self._name.lower(), self._body))


# -- name-addr headers: From, To, Contact, Route, Record-Route, Refer-To -----------------

_NAME_ADDR = re.compile(
    rf"""{WS}(?:
        (?:({QSTRING})|({TOKEN}(?:[ \t]++{TOKEN})*+))?{WS}<([^<>\s]*+)>
        |([^\s;,<>"?]++)
    )({PARAMS}){WS}""",
    re.X,
)


# The same with the URI inside the angle brackets checked in the same call: what the
# message layer validates From and To with (an addr-spec still needs is_valid_uri).
_NAME_ADDR_CHECKED = re.compile(
    rf"""{WS}(?:
        (?:({QSTRING})|({TOKEN}(?:[ \t]++{TOKEN})*+))?{WS}<((?:{URI_PATTERN}))>
        |([^\s;,<>"?]++)
    )({PARAMS}){WS}""",
    re.X,
)
_BARE = _NAME_ADDR_CHECKED.groups - 1


def valid_name_addr(cls: Any, text: str) -> tuple[Any] | re.Match[str]:
    """Validate a single name-addr / addr-spec line (From, To); raises SIPParseError.

    Like :func:`valid_vias`: the match, from which :func:`name_addr_from_match` builds
    the value when it is read; nothing memoized.
    """
    m = _NAME_ADDR_CHECKED.fullmatch(text)
    if m is None or (m[3] is None and not is_valid_uri(m[_BARE])):
        return tuple(_scan_name_addrs(cls, text, True))  # type: ignore[return-value]
    return m


def name_addr_from_match(cls: Any, m: re.Match[str]) -> tuple[Any]:
    """The shared value of a line validated by :func:`valid_name_addr`, built and memoized."""
    text = m.string
    memo = cls._memo
    cached = memo.get(text)
    if type(cached) is not tuple:
        quoted, tokens, uri = m.group(1, 2, 3)
        value = _new(cls._draft)
        value._uri = m[_BARE] if uri is None else uri
        value.display_name = tokens if quoted is None else unquote_string(quoted)
        value.parameters = params_dict(m[_BARE + 1])
        value._body = text
        value.__class__ = cls
        cached = memo.remember(text, (value,))
    return cached  # type: ignore[no-any-return]


def _parse_name_addrs(cls: Any, text: str, single: bool) -> Sequence[Any]:
    """The name-addr / addr-spec values of one header line.

    The URI is checked here (one regex call) and built when ``uri`` is first read.
    Frozen results are memoized by text (see :class:`Memo`), as a tuple.
    """
    if cls._frozen:
        memo = cls._memo
        cached = memo.get(text)
        if type(cached) is not tuple:
            cached = memo.remember(text, tuple(_scan_name_addrs(cls, text, single)))
        return cached  # type: ignore[no-any-return]
    return _scan_name_addrs(cls, text, single)


def _scan_name_addrs(cls: Any, text: str, single: bool) -> list[Any]:
    values = []
    pos, end = 0, len(text)
    match = _NAME_ADDR.match
    frozen = cls._frozen
    while True:
        m = match(text, pos)
        if m is None:
            fail(f"{cls.name} header", text)
        quoted, tokens, uri, bare, params = m.groups()
        if uri is None:
            uri = bare
        if not is_valid_uri(uri):
            raise SIPParseError(f"invalid {cls.name} header: invalid URI {uri!r}")
        if quoted is not None:
            tokens = unquote_string(quoted)
        params = params_dict(params)
        pos = m.end()
        if frozen:
            value = _new(cls._draft)
            value._uri = uri
            value.display_name = tokens
            value.parameters = params
            if single:
                value._body = text
            value.__class__ = cls
        else:
            value = cls(uri, tokens, params)
        values.append(value)
        if pos == end:
            return values
        if single or text[pos] != ",":
            fail(f"{cls.name} header", text)
        pos += 1


def _parse_name_addr(cls: Any, text: str) -> Any:
    return _parse_name_addrs(cls, text, True)[0]


def _make_star(cls: Any) -> Any:
    if not cls._frozen:
        return cls(None)
    value = _new(cls._draft)
    value._uri = None
    value.display_name = None
    value.parameters = _EMPTY
    value._body = "*"
    value.__class__ = cls
    return value


class _NameAddrHeader(BaseHeader):
    __slots__ = ("_uri", "display_name", "parameters")
    _memo: ClassVar[Memo]
    _fields = ("uri", "display_name", "parameters")

    display_name: str | None
    parameters: Mapping[str, str | None]

    def __init__(
        self,
        uri: Any,
        display_name: str | None = None,
        parameters: Mapping[str, str | None] | Iterable[tuple[str, str | None]] | None = None,
    ) -> None:
        if display_name is not None:
            check_text("display name", display_name)
        _set(self, "_uri", self._convert_uri(uri))
        _set(self, "display_name", display_name)
        _set(self, "parameters", self._mapping(parameters or ()))

    @property
    def uri(self) -> Any:
        """The URI: a (Frozen)SIPURI, or an OpaqueURI for another scheme."""
        uri = self._uri
        if type(uri) is str:
            uri = parse_uri(uri)
            _s_uri(self, uri)
        return uri

    def _format(self) -> str:
        uri = str(self.uri)
        if self.display_name is not None:
            text = f"{quote_string(self.display_name)} <{uri}>"
        else:
            text = f"<{uri}>"
        return text + format_params(self.parameters)

    @classmethod
    def parse(cls, text: str) -> Any:
        return _parse_name_addr(cls, text)


_s_uri = _NameAddrHeader._uri.__set__  # type: ignore[attr-defined]


class _MutableNameAddr:
    """The settable ``uri`` of the mutable name-addr headers."""

    __slots__ = ()

    @_NameAddrHeader.uri.setter  # type: ignore[attr-defined, untyped-decorator]
    def uri(self, value: Any) -> None:
        self._uri = _Mutable._convert_uri(value)


class _TaggedHeader(_NameAddrHeader):
    __slots__ = ()
    tag = _param_property("tag", "The tag parameter, or None.")


class _MutableTagged:
    __slots__ = ()
    tag = _param_setter(_TaggedHeader.tag, "tag")


class FromHeader(_Mutable, _MutableNameAddr, _MutableTagged, _TaggedHeader):
    """The From header: uri, display_name, parameters; ``tag``."""

    __slots__ = ()
    name = "From"
    _family = "From"


class FrozenFromHeader(_Frozen, _TaggedHeader):
    __slots__ = ()
    _memo = Memo()
    name = "From"
    _family = "From"


class ToHeader(_Mutable, _MutableNameAddr, _MutableTagged, _TaggedHeader):
    """The To header: uri, display_name, parameters; ``tag``."""

    __slots__ = ()
    name = "To"
    _family = "To"


class FrozenToHeader(_Frozen, _TaggedHeader):
    __slots__ = ()
    _memo = Memo()
    name = "To"
    _family = "To"


def _q(value: str | None) -> float | None:
    if value is None:
        return None
    if re.fullmatch(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?", value) is None:
        fail("q parameter", value)
    return float(value)


class _ContactHeader(_NameAddrHeader):
    __slots__ = ()
    q = _param_property("q", "The q parameter as a float in 0..1, or None.", _q)
    expires = _param_property(
        "expires", "The expires parameter in seconds, or None.", lambda v: _uint_param("expires", v)
    )

    @property
    def is_wildcard(self) -> bool:
        """Whether this is the ``Contact: *`` of a REGISTER removing all bindings."""
        return self._uri is None

    def _format(self) -> str:
        if self._uri is None:
            return "*"
        return super()._format()

    @classmethod
    def parse(cls, text: str) -> Any:
        if text.strip(" \t") == "*":
            return _make_star(cls)
        return _parse_name_addr(cls, text)


class ContactHeader(_Mutable, _MutableNameAddr, _ContactHeader):
    """A Contact header value: uri, display_name, parameters; ``q``, ``expires``.

    ``ContactHeader(None)`` is the ``*`` wildcard.
    """

    __slots__ = ()
    name = "Contact"
    _family = "Contact"
    q = _param_setter(_ContactHeader.q, "q", lambda v: f"{v:.3f}".rstrip("0").rstrip("."))
    expires = _param_setter(_ContactHeader.expires, "expires", str)


class FrozenContactHeader(_Frozen, _ContactHeader):
    __slots__ = ()
    _memo = Memo()
    name = "Contact"
    _family = "Contact"


def _parse_contacts(text: str) -> Sequence[FrozenContactHeader]:
    cached = FrozenContactHeader._memo.get(text)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    if text.strip(" \t") == "*":
        return FrozenContactHeader._memo.remember(text, (_make_star(FrozenContactHeader),))  # type: ignore[no-any-return]
    return _parse_name_addrs(FrozenContactHeader, text, False)


def _parse_routes(text: str) -> Sequence[FrozenRouteHeader]:
    return _parse_name_addrs(FrozenRouteHeader, text, False)


def _parse_record_routes(text: str) -> Sequence[FrozenRecordRouteHeader]:
    return _parse_name_addrs(FrozenRecordRouteHeader, text, False)


class RouteHeader(_Mutable, _MutableNameAddr, _NameAddrHeader):
    """A Route header value: uri, display_name, parameters."""

    __slots__ = ()
    name = "Route"
    _family = "Route"


class FrozenRouteHeader(_Frozen, _NameAddrHeader):
    __slots__ = ()
    _memo = Memo()
    name = "Route"
    _family = "Route"


class RecordRouteHeader(_Mutable, _MutableNameAddr, _NameAddrHeader):
    """A Record-Route header value: uri, display_name, parameters."""

    __slots__ = ()
    name = "Record-Route"
    _family = "Record-Route"


class FrozenRecordRouteHeader(_Frozen, _NameAddrHeader):
    __slots__ = ()
    _memo = Memo()
    name = "Record-Route"
    _family = "Record-Route"


class ReferToHeader(_Mutable, _MutableNameAddr, _NameAddrHeader):
    """The Refer-To header (RFC 3515): uri, display_name, parameters."""

    __slots__ = ()
    name = "Refer-To"
    _family = "Refer-To"


class FrozenReferToHeader(_Frozen, _NameAddrHeader):
    __slots__ = ()
    _memo = Memo()
    name = "Refer-To"
    _family = "Refer-To"


# -- Via ---------------------------------------------------------------------------------

_VIA = re.compile(
    rf"""{WS}({TOKEN}){WS}/{WS}({TOKEN}){WS}/{WS}({TOKEN})[ \t]++
    (?:\[([0-9A-Fa-f:.]++)\]|([A-Za-z0-9\-_.]++))
    (?:{WS}:{WS}([0-9]{{1,5}}))?
    ({PARAMS}){WS}""",
    re.X,
)


class _ViaHeader(BaseHeader):
    __slots__ = ("host", "parameters", "port", "protocol", "transport")
    _fields = ("transport", "host", "port", "parameters", "protocol")

    transport: str
    host: str
    port: int | None
    parameters: Mapping[str, str | None]
    protocol: str

    def __init__(
        self,
        transport: str,
        host: str,
        port: int | None = None,
        parameters: Mapping[str, str | None] | Iterable[tuple[str, str | None]] | None = None,
        protocol: str = "SIP/2.0",
    ) -> None:
        if not is_token(transport):
            raise ValueError(f"invalid transport: {transport!r}")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not host or re.fullmatch(r"[A-Za-z0-9\-_.]+|[0-9A-Fa-f:.]+", host) is None:
            raise ValueError(f"invalid host: {host!r}")
        if port is not None and not 0 < int(port) < 65536:
            raise ValueError(f"port must be in 1..65535, not {port!r}")
        _set(self, "transport", transport.upper())
        _set(self, "host", host)
        _set(self, "port", None if port is None else int(port))
        _set(self, "parameters", self._mapping(parameters or ()))
        _set(self, "protocol", protocol)

    branch = _param_property("branch", "The branch parameter, or None.")
    received = _param_property("received", "The received parameter, or None.")
    maddr = _param_property("maddr", "The maddr parameter, or None.")
    ttl = _param_property(
        "ttl", "The ttl parameter as an int, or None.", lambda v: _uint_param("ttl", v, 255)
    )

    @property
    def rport(self) -> int | bool | None:
        """None without an rport parameter, True for a bare ``;rport``, else the port number."""
        for name, value in self.parameters.items():
            if name.lower() == "rport":
                return True if value is None else _uint("rport parameter", value, 65535)
        return None

    def _format(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if self.port is None else f":{self.port}"
        return f"{self.protocol}/{self.transport} {host}{port}{format_params(self.parameters)}"

    @classmethod
    def parse(cls, text: str) -> Any:
        values = _parse_vias(text, cls)
        if len(values) != 1:
            fail("Via header", text)
        return values[0]


_VIA_MEMO = Memo()


def _parse_vias(text: str, cls: Any = None) -> Sequence[Any]:
    """The Via values of one header line; Frozen ones memoized by text (as a tuple)."""
    if cls is None:
        cached = _VIA_MEMO.get(text)
        if type(cached) is not tuple:
            cached = _VIA_MEMO.remember(text, tuple(_scan_vias(text, FrozenViaHeader)))
        return cached  # type: ignore[no-any-return]
    return _scan_vias(text, cls)


def valid_vias(text: str) -> tuple[FrozenViaHeader, ...] | re.Match[str]:
    """Validate a Via line; raises SIPParseError.

    A line with one value is only matched: :func:`vias_from_match` builds the value
    from the match when it is read. A list is parsed at once. Nothing is memoized here:
    the message layer memoizes what it validated once the whole message proved valid.
    """
    m = _VIA.fullmatch(text)
    if m is None or (m[6] is not None and not 0 < int(m[6]) < 65536):
        return tuple(_scan_vias(text, FrozenViaHeader))
    return m


def vias_from_match(m: re.Match[str]) -> tuple[FrozenViaHeader, ...]:
    """The shared value of a line validated by :func:`valid_vias`, built and memoized."""
    text = m.string
    cached = _VIA_MEMO.get(text)
    if type(cached) is not tuple:
        cached = _VIA_MEMO.remember(text, (_via_from_match(FrozenViaHeader, m),))
    return cached  # type: ignore[no-any-return]


def _via_from_match(cls: Any, m: re.Match[str]) -> Any:
    name, version, transport, host6, host, port, params = m.groups()
    if port is not None:
        port = int(port)
        if not 0 < port < 65536:
            fail("Via header", m.string)
    protocol = "SIP/2.0" if name == "SIP" and version == "2.0" else f"{name}/{version}"
    if not cls._frozen:
        return cls(transport, host or host6, port, dict(params_dict(params)), protocol)
    via = _new(cls._draft)
    via.transport = transport.upper()
    via.host = host or host6
    via.port = port
    via.parameters = params_dict(params)
    via.protocol = protocol
    via.__class__ = cls
    return via


def _scan_vias(text: str, cls: Any) -> list[Any]:
    values = []
    pos, end = 0, len(text)
    while True:
        m = _VIA.match(text, pos)
        if m is None:
            fail("Via header", text)
        values.append(_via_from_match(cls, m))
        pos = m.end()
        if pos == end:
            return values
        if text[pos] != ",":
            fail("Via header", text)
        pos += 1


class ViaHeader(_Mutable, _ViaHeader):
    """A Via header value: transport, host, port, parameters (and protocol, "SIP/2.0")."""

    __slots__ = ()
    name = "Via"
    _family = "Via"
    branch = _param_setter(_ViaHeader.branch, "branch")
    received = _param_setter(_ViaHeader.received, "received")
    maddr = _param_setter(_ViaHeader.maddr, "maddr")
    ttl = _param_setter(_ViaHeader.ttl, "ttl", str)
    rport = _param_setter(_ViaHeader.rport, "rport", str)


class FrozenViaHeader(_Frozen, _ViaHeader):
    __slots__ = ()
    name = "Via"
    _family = "Via"


# -- Content-Type ------------------------------------------------------------------------

_CONTENT_TYPE = re.compile(rf"{WS}({TOKEN}){WS}/{WS}({TOKEN})({PARAMS}){WS}")


def _unquoted(value: str | None) -> str | None:
    if value is not None and value.startswith('"'):
        return unquote_string(value)
    return value


class _ContentTypeHeader(BaseHeader):
    __slots__ = ("content_type", "parameters")
    _fields = ("content_type", "parameters")

    content_type: str
    parameters: Mapping[str, str | None]

    def __init__(
        self,
        content_type: str,
        parameters: Mapping[str, str | None] | Iterable[tuple[str, str | None]] | None = None,
    ) -> None:
        kind, slash, subtype = content_type.partition("/")
        if not slash or not is_token(kind) or not is_token(subtype):
            raise ValueError(f"invalid content type: {content_type!r}")
        _set(self, "content_type", content_type.lower())
        _set(self, "parameters", self._mapping(parameters or ()))

    @property
    def type(self) -> str:
        """The media type, e.g. ``application``."""
        return self.content_type.partition("/")[0]

    @property
    def subtype(self) -> str:
        """The media subtype, e.g. ``sdp``."""
        return self.content_type.partition("/")[2]

    @property
    def charset(self) -> str | None:
        """The charset parameter, unquoted, or None."""
        return _unquoted(get_param(self.parameters, "charset"))

    @property
    def boundary(self) -> str | None:
        """The boundary parameter of a multipart type, unquoted, or None."""
        return _unquoted(get_param(self.parameters, "boundary"))

    def _format(self) -> str:
        return self.content_type + format_params(self.parameters)

    @classmethod
    def parse(cls, text: str) -> Any:
        m = _CONTENT_TYPE.fullmatch(text)
        if m is None:
            fail("Content-Type header", text)
        kind, subtype, params = m.groups()
        return cls._build((f"{kind}/{subtype}".lower(), _params(params)), text.strip(" \t"))


class ContentTypeHeader(_Mutable, _ContentTypeHeader):
    """The Content-Type header: content_type ("type/subtype"), parameters; charset, boundary."""

    __slots__ = ()
    name = "Content-Type"
    _family = "Content-Type"


class FrozenContentTypeHeader(_Frozen, _ContentTypeHeader):
    __slots__ = ()
    name = "Content-Type"
    _family = "Content-Type"


# -- Warning -----------------------------------------------------------------------------

_WARNING = re.compile(rf"{WS}([0-9]{{3}}) ([^\s\"]+) ({QSTRING}){WS}")


class _WarningHeader(BaseHeader):
    __slots__ = ("agent", "code", "text")
    _fields = ("code", "agent", "text")

    code: int
    agent: str
    text: str

    def __init__(self, code: int, agent: str, text: str) -> None:
        if not 0 <= int(code) <= 999:
            raise ValueError(f"warning code must have 3 digits, not {code!r}")
        if not agent or any(c in agent for c in ' \t"\r\n'):
            raise ValueError(f"invalid warning agent: {agent!r}")
        _set(self, "code", int(code))
        _set(self, "agent", agent)
        _set(self, "text", check_text("warning text", text))

    def _format(self) -> str:
        return f"{self.code:03d} {self.agent} {quote_string(self.text)}"

    @classmethod
    def parse(cls, text: str) -> Any:
        values = _parse_warnings(text, cls)
        if len(values) != 1:
            fail("Warning header", text)
        return values[0]


def _parse_warnings(text: str, cls: Any = None) -> tuple[Any, ...]:
    cls = cls or FrozenWarningHeader
    values = []
    for item in split_commas(text):
        m = _WARNING.fullmatch(item)
        if m is None:
            fail("Warning header", text)
        code, agent, quoted = m.groups()
        values.append(cls._build((int(code), agent, unquote_string(quoted)), item))
    return tuple(values)


class WarningHeader(_Mutable, _WarningHeader):
    """A Warning header value: code (3 digits), agent, text."""

    __slots__ = ()
    name = "Warning"
    _family = "Warning"


class FrozenWarningHeader(_Frozen, _WarningHeader):
    __slots__ = ()
    name = "Warning"
    _family = "Warning"


# -- token-with-parameters headers: Event, Subscription-State, Reason ---------------------

_TOKEN_PARAMS = re.compile(rf"{WS}({TOKEN})({PARAMS}){WS}")


class _TokenParamsHeader(BaseHeader):
    """A header made of one token and parameters; the token field is named by subclasses."""

    __slots__ = ("parameters", "value")

    value: str
    parameters: Mapping[str, str | None]
    _what: ClassVar[str] = "value"

    def __init__(
        self,
        value: str,
        parameters: Mapping[str, str | None] | Iterable[tuple[str, str | None]] | None = None,
    ) -> None:
        if not is_token(value):
            raise ValueError(f"invalid {self._what}: {value!r}")
        _set(self, "value", value)
        _set(self, "parameters", self._mapping(parameters or ()))

    def _values(self) -> tuple[Any, ...]:
        return (self.value, self.parameters)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.value!r}, {self.parameters!r})"

    def _format(self) -> str:
        return self.value + format_params(self.parameters)

    @classmethod
    def _build(cls, values: tuple[Any, ...], body: str) -> Any:
        if not cls._frozen:
            return cls(*values)
        self = _new(cls._draft)
        self.value, self.parameters = values
        self._body = body
        self.__class__ = cls
        return self

    @classmethod
    def parse(cls, text: str) -> Any:
        m = _TOKEN_PARAMS.fullmatch(text)
        if m is None:
            fail(f"{cls.name} header", text)
        return cls._build((m.group(1), _params(m.group(2))), text.strip(" \t"))


def _alias(field: str, mutable: bool) -> property:
    def getter(self: Any) -> str:
        return self.value  # type: ignore[no-any-return]

    def setter(self: Any, value: str) -> None:
        if not is_token(value):
            raise ValueError(f"invalid {field}: {value!r}")
        self.value = value

    return property(getter, setter if mutable else None, doc=f"The {field} token.")


class _EventHeader(_TokenParamsHeader):
    __slots__ = ()
    _what = "event"
    id = _param_property("id", "The id parameter, or None.")


class EventHeader(_Mutable, _EventHeader):
    """The Event header (RFC 6665): event, parameters; ``id``."""

    __slots__ = ()
    name = "Event"
    _family = "Event"
    event = _alias("event", mutable=True)
    id = _param_setter(_EventHeader.id, "id")


class FrozenEventHeader(_Frozen, _EventHeader):
    __slots__ = ()
    name = "Event"
    _family = "Event"
    event = _alias("event", mutable=False)


class _SubscriptionStateHeader(_TokenParamsHeader):
    __slots__ = ()
    _what = "subscription state"
    reason = _param_property("reason", "The reason parameter, or None.")
    expires = _param_property(
        "expires", "The expires parameter in seconds, or None.", lambda v: _uint_param("expires", v)
    )
    retry_after = _param_property(
        "retry-after",
        "The retry-after parameter in seconds, or None.",
        lambda v: _uint_param("retry-after", v),
    )


class SubscriptionStateHeader(_Mutable, _SubscriptionStateHeader):
    """The Subscription-State header: state, parameters; reason, expires, retry_after."""

    __slots__ = ()
    name = "Subscription-State"
    _family = "Subscription-State"
    state = _alias("state", mutable=True)
    reason = _param_setter(_SubscriptionStateHeader.reason, "reason")
    expires = _param_setter(_SubscriptionStateHeader.expires, "expires", str)
    retry_after = _param_setter(_SubscriptionStateHeader.retry_after, "retry-after", str)


class FrozenSubscriptionStateHeader(_Frozen, _SubscriptionStateHeader):
    __slots__ = ()
    name = "Subscription-State"
    _family = "Subscription-State"
    state = _alias("state", mutable=False)


class _ReasonHeader(_TokenParamsHeader):
    __slots__ = ()
    _what = "protocol"
    cause = _param_property(
        "cause", "The cause parameter as an int, or None.", lambda v: _uint_param("cause", v)
    )
    text = _param_property("text", "The text parameter, unquoted, or None.", _unquoted)


class ReasonHeader(_Mutable, _ReasonHeader):
    """A Reason header value (RFC 3326): protocol, parameters; cause, text."""

    __slots__ = ()
    name = "Reason"
    _family = "Reason"
    protocol = _alias("protocol", mutable=True)
    cause = _param_setter(_ReasonHeader.cause, "cause", str)
    text = _param_setter(_ReasonHeader.text, "text", quote_string)


class FrozenReasonHeader(_Frozen, _ReasonHeader):
    __slots__ = ()
    name = "Reason"
    _family = "Reason"
    protocol = _alias("protocol", mutable=False)


def _parse_reasons(text: str) -> tuple[FrozenReasonHeader, ...]:
    return tuple(FrozenReasonHeader.parse(item) for item in split_commas(text))


# -- Subject -----------------------------------------------------------------------------


class _SubjectHeader(BaseHeader):
    __slots__ = ("subject",)
    _fields = ("subject",)

    subject: str

    def __init__(self, subject: str) -> None:
        _set(self, "subject", check_text("subject", subject))

    def _format(self) -> str:
        return self.subject

    @classmethod
    def parse(cls, text: str) -> Any:
        text = text.strip(" \t")
        return cls._build((text,), text)


class SubjectHeader(_Mutable, _SubjectHeader):
    """The Subject header: subject (free text, may be empty)."""

    __slots__ = ()
    name = "Subject"
    _family = "Subject"


class FrozenSubjectHeader(_Frozen, _SubjectHeader):
    __slots__ = ()
    name = "Subject"
    _family = "Subject"


# -- Replaces ----------------------------------------------------------------------------

_CALL_ID = re.compile(
    r"""[A-Za-z0-9\-.!%*_+`'~()<>:\\"/\[\]?{}]+(?:@[A-Za-z0-9\-.!%*_+`'~()<>:\\"/\[\]?{}]+)?"""
)
_REPLACES = re.compile(rf"{WS}([^\s;]+)({PARAMS}){WS}")


class _ReplacesHeader(BaseHeader):
    __slots__ = ("call_id", "early_only", "from_tag", "parameters", "to_tag")
    _fields = ("call_id", "from_tag", "to_tag", "early_only", "parameters")

    call_id: str
    from_tag: str
    to_tag: str
    early_only: bool
    parameters: Mapping[str, str | None]

    def __init__(
        self,
        call_id: str,
        from_tag: str,
        to_tag: str,
        early_only: bool = False,
        parameters: Mapping[str, str | None] | Iterable[tuple[str, str | None]] | None = None,
    ) -> None:
        if _CALL_ID.fullmatch(call_id) is None:
            raise ValueError(f"invalid Call-ID: {call_id!r}")
        _set(self, "call_id", call_id)
        _set(self, "from_tag", from_tag)
        _set(self, "to_tag", to_tag)
        _set(self, "early_only", bool(early_only))
        _set(self, "parameters", self._mapping(parameters or ()))

    def _format(self) -> str:
        early = ";early-only" if self.early_only else ""
        params = format_params(self.parameters)
        return f"{self.call_id};from-tag={self.from_tag};to-tag={self.to_tag}{early}{params}"

    @classmethod
    def parse(cls, text: str) -> Any:
        m = _REPLACES.fullmatch(text)
        if m is None or _CALL_ID.fullmatch(m.group(1)) is None:
            fail("Replaces header", text)
        from_tag = to_tag = None
        early_only = False
        others: list[tuple[str, str | None]] = []
        for name, value in parse_params(m.group(2)):
            lname = name.lower()
            if lname == "from-tag" and value is not None:
                from_tag = value
            elif lname == "to-tag" and value is not None:
                to_tag = value
            elif lname == "early-only" and value is None:
                early_only = True
            else:
                others.append((name, value))
        if from_tag is None or to_tag is None:
            raise SIPParseError(
                f"invalid Replaces header: from-tag and to-tag are required: {text!r}"
            )
        mapping = cls._mapping(others) if others else (_EMPTY if cls._frozen else {})
        return cls._build((m.group(1), from_tag, to_tag, early_only, mapping), text.strip(" \t"))


class ReplacesHeader(_Mutable, _ReplacesHeader):
    """The Replaces header (RFC 3891): call_id, from_tag, to_tag, early_only."""

    __slots__ = ()
    name = "Replaces"
    _family = "Replaces"


class FrozenReplacesHeader(_Frozen, _ReplacesHeader):
    __slots__ = ()
    name = "Replaces"
    _family = "Replaces"


# -- Retry-After -------------------------------------------------------------------------

_RETRY_AFTER = re.compile(rf"{WS}([0-9]+)(?:{WS}(\((?:[^()\\]|\\.)*\)))?({PARAMS}){WS}")


class _RetryAfterHeader(BaseHeader):
    __slots__ = ("comment", "parameters", "seconds")
    _fields = ("seconds", "comment", "parameters")

    seconds: int
    comment: str | None
    parameters: Mapping[str, str | None]

    def __init__(
        self,
        seconds: int,
        comment: str | None = None,
        parameters: Mapping[str, str | None] | Iterable[tuple[str, str | None]] | None = None,
    ) -> None:
        if not 0 <= int(seconds) <= _MAX_UINT32:
            raise ValueError(f"seconds must be in 0..2**32-1, not {seconds!r}")
        if comment is not None:
            check_text("comment", comment)
        _set(self, "seconds", int(seconds))
        _set(self, "comment", comment)
        _set(self, "parameters", self._mapping(parameters or ()))

    duration = _param_property(
        "duration",
        "The duration parameter in seconds, or None.",
        lambda v: _uint_param("duration", v),
    )

    def _format(self) -> str:
        comment = (
            "" if self.comment is None else " (" + re.sub(r"([()\\])", r"\\\1", self.comment) + ")"
        )
        return f"{self.seconds}{comment}{format_params(self.parameters)}"

    @classmethod
    def parse(cls, text: str) -> Any:
        m = _RETRY_AFTER.fullmatch(text)
        if m is None:
            fail("Retry-After header", text)
        seconds, comment, params = m.groups()
        if comment is not None:
            comment = re.sub(r"\\(.)", r"\1", comment[1:-1])
        values = (_uint("Retry-After header", seconds), comment, _params(params))
        return cls._build(values, text.strip(" \t"))


class RetryAfterHeader(_Mutable, _RetryAfterHeader):
    """The Retry-After header: seconds, comment, parameters; duration."""

    __slots__ = ()
    name = "Retry-After"
    _family = "Retry-After"
    duration = _param_setter(_RetryAfterHeader.duration, "duration", str)


class FrozenRetryAfterHeader(_Frozen, _RetryAfterHeader):
    __slots__ = ()
    name = "Retry-After"
    _family = "Retry-After"


# -- CSeq and the scalar headers ---------------------------------------------------------

_CSEQ = re.compile(rf"{WS}([0-9]+)[ \t]+({TOKEN}){WS}")
_tuple_new = tuple.__new__
_CSEQ_MEMO = Memo()


class CSeq(NamedTuple):
    """The CSeq header: (number, method); a tuple, so it compares and unpacks as one."""

    number: int
    method: str

    @property
    def body(self) -> str:
        return f"{self.number} {self.method}"

    def __str__(self) -> str:
        return self.body

    @classmethod
    def parse(cls, text: str) -> CSeq:
        cached = _CSEQ_MEMO.get(text)
        if cached is None:
            cached = _CSEQ_MEMO.remember(text, _cseq(text))
        return cached  # type: ignore[no-any-return]


def _cseq(text: str) -> CSeq:
    """:meth:`CSeq.parse` without the memo."""
    m = _CSEQ.fullmatch(text)
    if m is None:
        fail("CSeq header", text)
    number, method = m.groups()
    if len(number) > 9 and int(number) > _MAX_UINT32:
        raise SIPParseError(f"invalid CSeq header: {number!r} is larger than {_MAX_UINT32}")
    return _tuple_new(CSeq, (int(number), method))  # type: ignore[no-any-return]


_CALL_ID_MEMO = Memo()


def _parse_call_ids(text: str) -> tuple[str]:
    """The Call-ID of a header line, as the typed values tuple (memoized: it repeats)."""
    cached = _CALL_ID_MEMO.get(text)
    if cached is None:
        cached = _CALL_ID_MEMO.remember(text, _call_ids(text))
    return cached  # type: ignore[no-any-return]


def _call_ids(text: str) -> tuple[str]:
    """:func:`_parse_call_ids` without the memo."""
    call_id = text.strip(" \t")
    if _CALL_ID.fullmatch(call_id) is None:
        fail("Call-ID header", call_id)
    return (call_id,)


def _parse_tokens(what: str) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        items = split_commas(text)
        for item in items:
            if not is_token(item):
                fail(f"{what} header", text)
        return tuple(items)

    return parse


def _parse_int(what: str, maximum: int = _MAX_UINT32) -> Callable[[str], int]:
    return lambda text: _uint(f"{what} header", text, maximum)


# -- the tables the message layer uses ---------------------------------------------------

CANONICAL_NAMES: dict[str, str] = {
    name.lower(): name
    for name in (
        "Accept",
        "Accept-Contact",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Allow-Events",
        "Authentication-Info",
        "Authorization",
        "Call-ID",
        "Call-Info",
        "Contact",
        "Content-Disposition",
        "Content-Encoding",
        "Content-Language",
        "Content-Length",
        "Content-Type",
        "CSeq",
        "Date",
        "Error-Info",
        "Event",
        "Expires",
        "From",
        "History-Info",
        "Identity",
        "Identity-Info",
        "In-Reply-To",
        "Max-Forwards",
        "MIME-Version",
        "Min-Expires",
        "Min-SE",
        "Organization",
        "P-Asserted-Identity",
        "P-Preferred-Identity",
        "Path",
        "Priority",
        "Privacy",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Require",
        "RAck",
        "Reason",
        "Record-Route",
        "Refer-To",
        "Referred-By",
        "Reject-Contact",
        "Replaces",
        "Reply-To",
        "Request-Disposition",
        "Require",
        "Retry-After",
        "Route",
        "RSeq",
        "Server",
        "Service-Route",
        "Session-Expires",
        "SIP-ETag",
        "SIP-If-Match",
        "Subject",
        "Subscription-State",
        "Supported",
        "Timestamp",
        "To",
        "Unsupported",
        "User-Agent",
        "Via",
        "Warning",
        "WWW-Authenticate",
    )
}

COMPACT_FORMS: dict[str, str] = {
    "a": "accept-contact",
    "b": "referred-by",
    "c": "content-type",
    "d": "request-disposition",
    "e": "content-encoding",
    "f": "from",
    "i": "call-id",
    "j": "reject-contact",
    "k": "supported",
    "l": "content-length",
    "m": "contact",
    "n": "identity-info",
    "o": "event",
    "r": "refer-to",
    "s": "subject",
    "t": "to",
    "u": "allow-events",
    "v": "via",
    "x": "session-expires",
    "y": "identity",
}

LIST_HEADERS: frozenset[str] = frozenset(
    (
        "accept",
        "accept-contact",
        "accept-encoding",
        "accept-language",
        "alert-info",
        "allow",
        "allow-events",
        "call-info",
        "contact",
        "content-encoding",
        "content-language",
        "error-info",
        "history-info",
        "in-reply-to",
        "p-asserted-identity",
        "p-preferred-identity",
        "path",
        "proxy-require",
        "reason",
        "record-route",
        "reject-contact",
        "require",
        "route",
        "service-route",
        "supported",
        "unsupported",
        "via",
        "warning",
    )
)
"""Headers whose value is a comma-separated list: repeating them equals joining them."""


def _one(parse: Callable[[str], Any]) -> Callable[[str], tuple[Any]]:
    return lambda text: (parse(text),)


TYPED_HEADERS: dict[str, tuple[bool, Callable[[str], Sequence[Any]]]] = {
    "via": (True, _parse_vias),
    "contact": (True, _parse_contacts),
    "route": (True, _parse_routes),
    "record-route": (True, _parse_record_routes),
    "warning": (True, _parse_warnings),
    "reason": (True, _parse_reasons),
    "allow": (True, _parse_tokens("Allow")),
    "supported": (True, _parse_tokens("Supported")),
    "require": (True, _parse_tokens("Require")),
    "proxy-require": (True, _parse_tokens("Proxy-Require")),
    "unsupported": (True, _parse_tokens("Unsupported")),
    "allow-events": (True, _parse_tokens("Allow-Events")),
    "from": (False, _one(FrozenFromHeader.parse)),
    "to": (False, _one(FrozenToHeader.parse)),
    "refer-to": (False, _one(FrozenReferToHeader.parse)),
    "content-type": (False, _one(FrozenContentTypeHeader.parse)),
    "event": (False, _one(FrozenEventHeader.parse)),
    "subscription-state": (False, _one(FrozenSubscriptionStateHeader.parse)),
    "subject": (False, _one(FrozenSubjectHeader.parse)),
    "replaces": (False, _one(FrozenReplacesHeader.parse)),
    "retry-after": (False, _one(FrozenRetryAfterHeader.parse)),
    "cseq": (False, _one(CSeq.parse)),
    "call-id": (False, _parse_call_ids),
    "max-forwards": (False, _one(_parse_int("Max-Forwards", 255))),
    "content-length": (False, _one(_parse_int("Content-Length"))),
    "expires": (False, _one(_parse_int("Expires"))),
    "min-expires": (False, _one(_parse_int("Min-Expires"))),
}
"""key -> (is_list, parser): the parser turns one header line into a tuple of typed values.

Keys of list headers may appear any number of times; the others at most once.
"""
