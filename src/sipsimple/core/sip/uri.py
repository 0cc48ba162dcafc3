"""SIP and SIPS URIs (RFC 3261 section 19.1) and the opaque URIs of other schemes.

- :class:`SIPURI` is mutable, :class:`FrozenSIPURI` is immutable and hashable; both
  derive from :class:`BaseSIPURI` and compare equal by the rules of RFC 3261 section
  19.1.4 (scheme, host, parameter and header names case-insensitive; user and password
  case-sensitive; %-escapes compared decoded; ``user``, ``ttl``, ``method``, ``maddr``
  and ``transport`` parameters must agree, other parameters only where both have them;
  URI headers always). ``SIPURI.new(uri)`` and ``FrozenSIPURI.new(uri)`` convert.
- Components are stored decoded: ``SIPURI.parse("sip:%61lice@h").user == "alice"``;
  ``str()`` escapes what the grammar needs escaped. IPv6 hosts are stored without
  brackets (``host == "::1"``) and written with them.
- Parameters are a dict of name -> value (``None`` for a parameter without a value),
  names kept as received; URI headers (``?a=b``) a dict of name -> value.
- A FrozenSIPURI parsed from text serializes back to exactly that text.
- Any other scheme (``tel:``, ``http:``, ...) is an :class:`OpaqueURI`: scheme plus the
  rest, kept as received. :func:`parse_uri` returns either kind (and, both being
  immutable, shares the object between equal texts); :func:`is_valid_uri` checks a
  text with one regex call, for headers that build their URI only when it is read.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

from sipsimple.core.errors import SIPParseError
from sipsimple.core.sip.grammar import Memo, check_text, escape, fail, frozendict, unescape

__all__ = [
    "SIPURI",
    "URI_PATTERN",
    "BaseSIPURI",
    "FrozenSIPURI",
    "OpaqueURI",
    "check_request_uri",
    "is_valid_uri",
    "parse_uri",
]

# A text matching _URI always parses: the port range and the shape of parameters and
# headers are in the pattern, so that a URI can be validated with one regex call now
# and turned into an object later (headers build theirs on first use). The userinfo
# is possessive: without an "@" after it, it is dropped at once instead of backtracking.
_SIP_PATTERN = r"""
    ([Ss][Ii][Pp][Ss]?):
    (?:([A-Za-z0-9\-_.!~*'()&=+$,;?/%]++)(?::([A-Za-z0-9\-_.!~*'()&=+$,%]*+))?@)?
    (?:\[([0-9A-Fa-f:.]++)\]|([A-Za-z0-9\-_.]++))
    (?::0*+((?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])))?
    ((?:;[A-Za-z0-9\-_.!~*'()\[\]/:&+$%]++(?:=[A-Za-z0-9\-_.!~*'()\[\]/:&+$%]*+)?)*+)
    (?:\?([^\s<>"&=]++=[^\s<>"&]*+(?:&[^\s<>"&=]++=[^\s<>"&]*+)*+))?
"""
_OPAQUE_PATTERN = r"""([A-Za-z][A-Za-z0-9+\-.]*+):([^\s<>"]++)"""
_SIP_URI = re.compile(_SIP_PATTERN, re.X)
URI_PATTERN = rf"{_SIP_PATTERN}|(?![Ss][Ii][Pp][Ss]?:){_OPAQUE_PATTERN}"
"""Any URI parse_uri accepts, as a verbose (re.X) pattern: 8 groups of a SIP URI, 2 opaque."""
_URI = re.compile(URI_PATTERN, re.X)
_OPAQUE_URI = re.compile(_OPAQUE_PATTERN)
_HOST = re.compile(r"[A-Za-z0-9\-_.]+|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*")

# Characters that may appear unescaped in each component (RFC 3261 section 25.1,
# beyond the unreserved set that urllib never escapes).
_USER_SAFE = "!~*'()&=+$,;?/"
_PASSWORD_SAFE = "!~*'()&=+$,"
_PARAM_SAFE = "!~*'()[]/:&+$"
_HEADER_SAFE = "!~*'()[]/?:+$"
# Parameters that must agree whenever either URI has them (RFC 3261 section 19.1.4).
_SIGNIFICANT = ("user", "ttl", "method", "maddr", "transport")
_CASELESS_VALUES = frozenset(("user", "method", "maddr", "transport"))

_set = object.__setattr__
_EMPTY = frozendict()


def _parse_components(text: str) -> tuple[Any, ...]:
    """(secure, user, password, host, port, parameters, headers) of a sip:/sips: URI.

    The mappings are frozendicts; the mutable SIPURI copies them.
    """
    m = _SIP_URI.fullmatch(text)
    if m is None:
        fail("SIP URI", text)
    return _components(m.groups())


def _components(groups: tuple[Any, ...]) -> tuple[Any, ...]:
    scheme, user, password, host6, host, port, params, headers = groups[:8]
    if user:
        if "%" in user:
            user = unescape(user)
        if password is not None and "%" in password:
            password = unescape(password)
    else:
        user = password = None
    if host is None:
        host = host6
    if port is not None:
        port = int(port)
    parameters = _EMPTY
    if params:
        pairs = []
        for item in params[1:].split(";"):
            name, eq, value = item.partition("=")
            if "%" in item:
                name = unescape(name)
                value = unescape(value)
            pairs.append((name, value if eq else None))
        parameters = frozendict(pairs)
    hdrs = _EMPTY
    if headers:
        pairs = []
        for item in headers.split("&"):
            name, _, value = item.partition("=")
            pairs.append((unescape(name), unescape(value)))
        hdrs = frozendict(pairs)
    return len(scheme) == 4, user, password, host, port, parameters, hdrs


def _same_value(name: str, a: str | None, b: str | None) -> bool:
    """Whether two values of parameter ``name`` (lower case) are equal."""
    if name in _CASELESS_VALUES and a is not None and b is not None:
        return a.lower() == b.lower()
    return a == b


def _canonical_host(host: str) -> str:
    host = host.lower()
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host).compressed
        except ValueError:
            return host
    return host


class BaseSIPURI:
    """What SIPURI and FrozenSIPURI share: fields, serialization, RFC comparison."""

    __slots__ = ("headers", "host", "parameters", "password", "port", "secure", "user")

    host: str
    user: str | None
    password: str | None
    port: int | None
    secure: bool
    parameters: Mapping[str, str | None]
    headers: Mapping[str, str]

    def __init__(
        self,
        host: str,
        user: str | None = None,
        password: str | None = None,
        port: int | None = None,
        secure: bool = False,
        parameters: Mapping[str, str | None] | Iterable[tuple[str, str | None]] | None = None,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    ) -> None:
        if not isinstance(host, str) or not host:
            raise ValueError(f"host must be a non-empty string, not {host!r}")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if _HOST.fullmatch(host) is None:
            raise ValueError(f"invalid host: {host!r}")
        if port is not None and (isinstance(port, bool) or not 0 < int(port) < 65536):
            raise ValueError(f"port must be in 1..65535, not {port!r}")
        for what, value in (("user", user), ("password", password)):
            if value is not None:
                check_text(what, value)
        _set(self, "host", host)
        _set(self, "user", user)
        _set(self, "password", password)
        _set(self, "port", None if port is None else int(port))
        _set(self, "secure", bool(secure))
        _set(self, "parameters", self._mapping(parameters or {}))
        _set(self, "headers", self._mapping(headers or {}))

    _mapping: Any = dict

    @classmethod
    def new(cls, uri: BaseSIPURI) -> Any:
        """A copy of ``uri`` (of either kind) as an instance of this class."""
        if not isinstance(uri, BaseSIPURI):
            raise TypeError(f"expected a SIPURI or FrozenSIPURI, not {type(uri).__name__}")
        return cls(
            uri.host, uri.user, uri.password, uri.port, uri.secure, uri.parameters, uri.headers
        )

    @classmethod
    def parse(cls, text: str) -> Any:
        """Parse a sip: or sips: URI; raises SIPParseError saying what is wrong."""
        secure, user, password, host, port, parameters, headers = _parse_components(text)
        return cls(host, user, password, port, secure, parameters, headers)

    @property
    def transport(self) -> str:
        """The ``transport`` parameter, lower case; ``udp`` when there is none."""
        for name, value in self.parameters.items():
            if name.lower() == "transport" and value:
                return value.lower()
        return "udp"

    def _format(self) -> str:
        parts = ["sips:" if self.secure else "sip:"]
        if self.user is not None:
            parts.append(escape(self.user, _USER_SAFE))
            if self.password is not None:
                parts.append(":" + escape(self.password, _PASSWORD_SAFE))
            parts.append("@")
        parts.append(f"[{self.host}]" if ":" in self.host else self.host)
        if self.port is not None:
            parts.append(f":{self.port}")
        for name, value in self.parameters.items():
            parts.append(";" + escape(name, _PARAM_SAFE))
            if value is not None:
                parts.append("=" + escape(value, _PARAM_SAFE))
        if self.headers:
            parts.append("?")
            parts.append(
                "&".join(
                    f"{escape(name, _HEADER_SAFE)}={escape(value, _HEADER_SAFE)}"
                    for name, value in self.headers.items()
                )
            )
        return "".join(parts)

    def __str__(self) -> str:
        return self._format()

    def __repr__(self) -> str:
        return f'<{type(self).__name__} "{self}">'

    def _significant(self) -> tuple[Any, ...]:
        """The components that must be equal for two URIs to be equal (and their hash)."""
        params = {name.lower(): value for name, value in self.parameters.items()}
        significant = []
        for name in _SIGNIFICANT:
            value = params.get(name, False)
            if name in _CASELESS_VALUES and isinstance(value, str):
                value = value.lower()
            significant.append(value)
        return (
            self.secure,
            self.user,
            self.password,
            _canonical_host(self.host),
            self.port,
            tuple(significant),
            frozenset((name.lower(), value) for name, value in self.headers.items()),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BaseSIPURI):
            return NotImplemented
        if self._significant() != other._significant():
            return False
        # Both sides fold a parameter repeated in another case the same way (the last
        # one counts, as in _significant), so that a URI always equals itself.
        mine = {name.lower(): value for name, value in self.parameters.items()}
        theirs = {name.lower(): value for name, value in other.parameters.items()}
        for name, value in theirs.items():
            if name in mine and not _same_value(name, mine[name], value):
                return False
        return True

    def matches(self, address: str) -> bool:
        """Whether this URI matches the components given in ``address``.

        ``address`` is a URI or the user@host part of one; only what it states is
        compared (scheme if given, user, host, port if given, each parameter and header
        it lists), with the comparison rules of RFC 3261 section 19.1.4.
        """
        if ":" not in address.partition("@")[0] or not address.lower().startswith(
            ("sip:", "sips:")
        ):
            address = ("sips:" if self.secure else "sip:") + address
            scheme_given = False
        else:
            scheme_given = True
        try:
            secure, user, password, host, port, parameters, headers = _parse_components(address)
        except SIPParseError:
            return False
        mine = {name.lower(): value for name, value in self.parameters.items()}
        my_headers = {name.lower(): value for name, value in self.headers.items()}
        return (
            (not scheme_given or secure == self.secure)
            and (user is None or user == self.user)
            and (password is None or password == self.password)
            and _canonical_host(host) == _canonical_host(self.host)
            and (port is None or port == self.port)
            and all(
                name.lower() in mine and _same_value(name.lower(), mine[name.lower()], value)
                for name, value in parameters.items()
            )
            and all(my_headers.get(name.lower()) == value for name, value in headers.items())
        )


class SIPURI(BaseSIPURI):
    """A mutable SIP or SIPS URI."""

    __slots__ = ()
    __hash__ = None  # type: ignore[assignment]

    parameters: dict[str, str | None]
    headers: dict[str, str]

    @BaseSIPURI.transport.setter  # type: ignore[attr-defined, untyped-decorator]
    def transport(self, value: str) -> None:
        for name in [name for name in self.parameters if name.lower() == "transport"]:
            del self.parameters[name]
        if value.lower() != "udp":
            self.parameters["transport"] = value


class FrozenSIPURI(BaseSIPURI):
    """An immutable, hashable SIP or SIPS URI."""

    __slots__ = ("_hash", "_text")
    _mapping = frozendict

    parameters: frozendict
    headers: frozendict

    @classmethod
    def parse(cls, text: str) -> FrozenSIPURI:
        """Parse a sip: or sips: URI; str() of the result gives ``text`` back."""
        return cls._from_components(_parse_components(text), text)

    @classmethod
    def _from_components(cls, components: tuple[Any, ...], text: str) -> FrozenSIPURI:
        """Filled as a :class:`_Draft` (plain slot stores, no __setattr__ guard), then
        given its class: several times cheaper than a descriptor call per field."""
        self = _new(_Draft)
        (
            self.secure,
            self.user,
            self.password,
            self.host,
            self.port,
            self.parameters,
            self.headers,
        ) = components
        self._text = text
        self.__class__ = cls
        return self

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"FrozenSIPURI is immutable (cannot set {name})")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"FrozenSIPURI is immutable (cannot delete {name})")

    def __str__(self) -> str:
        try:
            return self._text
        except AttributeError:
            _set(self, "_text", self._format())
            return self._text

    def __hash__(self) -> int:
        try:
            return self._hash
        except AttributeError:
            _set(self, "_hash", hash(self._significant()))
            return self._hash

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenSIPURI.parse, (str(self),))


class _Draft(BaseSIPURI):
    """FrozenSIPURI's layout without its immutability: what a new one is filled as."""

    __slots__ = ("_hash", "_text")


_new = object.__new__


class OpaqueURI:
    """A URI of a scheme other than sip/sips (``tel:``, ``http:``, ``urn:``...), kept as received.

    Equal to another OpaqueURI with the same scheme (case-insensitive) and the same rest.
    """

    __slots__ = ("rest", "scheme")

    scheme: str
    rest: str

    def __init__(self, scheme: str, rest: str) -> None:
        if _OPAQUE_URI.fullmatch(f"{scheme}:{rest}") is None:
            raise ValueError(f"invalid URI: {scheme}:{rest}")
        _set(self, "scheme", scheme)
        _set(self, "rest", rest)

    @classmethod
    def parse(cls, text: str) -> OpaqueURI:
        m = _OPAQUE_URI.fullmatch(text)
        if m is None:
            fail("URI", text)
        self = object.__new__(cls)
        _set(self, "scheme", m.group(1))
        _set(self, "rest", m.group(2))
        return self

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"OpaqueURI is immutable (cannot set {name})")

    def __str__(self) -> str:
        return f"{self.scheme}:{self.rest}"

    def __repr__(self) -> str:
        return f'<OpaqueURI "{self}">'

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OpaqueURI):
            return NotImplemented
        return self.scheme.lower() == other.scheme.lower() and self.rest == other.rest

    def __hash__(self) -> int:
        return hash((self.scheme.lower(), self.rest))

    def __reduce__(self) -> tuple[Any, ...]:
        return (OpaqueURI, (self.scheme, self.rest))


def is_valid_uri(text: str) -> bool:
    """Whether :func:`parse_uri` would accept ``text`` (one regex call, nothing built)."""
    return _URI.fullmatch(text) is not None


_REQUEST_URI_MEMO = Memo()
_URI_MEMO = Memo()


def check_request_uri(text: str) -> None:
    """Raise SIPParseError unless ``text`` is a URI fit for a Request-URI (no URI headers)."""
    if text in _REQUEST_URI_MEMO:
        return
    m = _URI.fullmatch(text)
    if m is None:
        scheme = text[:5].lower()
        what = "SIP URI" if scheme.startswith("sip:") or scheme == "sips:" else "URI"
        fail(what, text)
    if m.group(8) is not None:
        raise SIPParseError(f"headers are not allowed in a Request-URI: {text!r}")
    _REQUEST_URI_MEMO.remember(text, True)


def parse_uri(text: str) -> FrozenSIPURI | OpaqueURI:
    """A FrozenSIPURI for sip:/sips:, an OpaqueURI for any other scheme (memoized by text)."""
    cached = _URI_MEMO.get(text)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    m = _URI.fullmatch(text)
    if m is None:
        scheme = text[:5].lower()
        what = "SIP URI" if scheme.startswith("sip:") or scheme == "sips:" else "URI"
        fail(what, text)
    groups = m.groups()
    if groups[0] is None:
        uri = _new(OpaqueURI)
        _set(uri, "scheme", groups[8])
        _set(uri, "rest", groups[9])
    else:
        uri = FrozenSIPURI._from_components(_components(groups), text)
    return _URI_MEMO.remember(text, uri)  # type: ignore[no-any-return]
