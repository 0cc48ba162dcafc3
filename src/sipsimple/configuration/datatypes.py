"""Datatypes of configuration settings.

Each datatype converts losslessly to and from the text form that the configuration
backends store: ``T(value.to_state()) == value`` for the composite types and
``T(str(value)) == value`` for the str and int based ones. A datatype's constructor
accepts a value in its natural form as well as its stored text form, so assigning
either to a setting works (``settings.rtp.port_range = "50000-50500"``). Invalid
input raises ValueError with a message naming what is allowed.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit

__all__ = [
    "AudioCodec",
    "AudioCodecList",
    "ContentType",
    "ContentTypeList",
    "Hostname",
    "IPAddress",
    "List",
    "MSRPConnectionModel",
    "MSRPRelayAddress",
    "MSRPTransport",
    "NameserverAddress",
    "NameserverAddressList",
    "NonNegativeInteger",
    "Path",
    "Port",
    "PortRange",
    "PositiveInteger",
    "SIPAddress",
    "SIPProxyAddress",
    "SIPTransport",
    "SIPTransportList",
    "SRTPKeyNegotiation",
    "STUNServerAddress",
    "STUNServerAddressList",
    "SampleRate",
    "XCAPRoot",
    "state_of",
]


def state_of(value: Any) -> str | list[str]:
    """The stored text form of a datatype value (bools as 'true' / 'false')."""
    if isinstance(value, bool):
        return "true" if value else "false"
    to_state = getattr(value, "to_state", None)
    if to_state is not None:
        return to_state()
    return str(value)


def _require_str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected {what} as a string, got {value!r}")
    return value


def _to_int(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip(), 10)
        except ValueError:
            pass
    raise ValueError(f"expected an integer, got {value!r}")


# Scalars


class NonNegativeInteger(int):
    def __new__(cls, value: object) -> Self:
        number = _to_int(value)
        if number < 0:
            raise ValueError(f"expected a non-negative integer, got {number}")
        return super().__new__(cls, number)


class PositiveInteger(int):
    def __new__(cls, value: object) -> Self:
        number = _to_int(value)
        if number <= 0:
            raise ValueError(f"expected a positive integer, got {number}")
        return super().__new__(cls, number)


class Port(int):
    """A port number; 0 means "any free port" where a port is bound."""

    def __new__(cls, value: object) -> Self:
        number = _to_int(value)
        if not 0 <= number <= 65535:
            raise ValueError(f"illegal port {number}, expected 0 to 65535")
        return super().__new__(cls, number)


class SampleRate(int):
    valid_values: ClassVar[tuple[int, ...]] = (8000, 16000, 32000, 44100, 48000)

    def __new__(cls, value: object) -> Self:
        number = _to_int(value)
        if number not in cls.valid_values:
            allowed = ", ".join(map(str, cls.valid_values))
            raise ValueError(f"illegal sample rate {number}, expected one of: {allowed}")
        return super().__new__(cls, number)


class _Choice(str):
    """A string out of a fixed set; matched case-insensitively, kept in canonical case."""

    available_values: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = "value"

    def __new__(cls, value: object) -> Self:
        text = _require_str(value, cls.description)
        for candidate in cls.available_values:
            if candidate.lower() == text.strip().lower():
                return super().__new__(cls, candidate)
        allowed = ", ".join(cls.available_values)
        raise ValueError(f"illegal {cls.description} {text!r}, expected one of: {allowed}")


class SIPTransport(_Choice):
    available_values = ("udp", "tcp", "tls")
    description = "SIP transport"


class MSRPTransport(_Choice):
    available_values = ("tls", "tcp")
    description = "MSRP transport"


class MSRPConnectionModel(_Choice):
    """How MSRP traverses NAT: through a relay (RFC 4976) or with ACM (RFC 6135)."""

    available_values = ("relay", "acm")
    description = "MSRP connection model"


class SRTPKeyNegotiation(_Choice):
    """SDES key exchange (RFC 4568) for SRTP.

    opportunistic: offer RTP/AVP with crypto attributes, so peers without SRTP still
    connect; sdes_optional: offer RTP/SAVP but accept a plain RTP answer;
    sdes_mandatory: only SRTP.
    """

    available_values = ("opportunistic", "sdes_optional", "sdes_mandatory")
    description = "SRTP key negotiation"


class AudioCodec(_Choice):
    """An audio codec the media layer can both encode and decode."""

    available_values = ("opus", "G722", "PCMU", "PCMA")
    description = "audio codec"


_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_CONTENT_TYPE_RE = re.compile(rf"(?:{_TOKEN})/(?:{_TOKEN})")


class ContentType(str):
    """A MIME type such as 'text/plain' or 'text/*', or '*' for anything."""

    def __new__(cls, value: object) -> Self:
        text = _require_str(value, "a content type").strip()
        if text != "*" and (not _CONTENT_TYPE_RE.fullmatch(text) or text.startswith("*/")):
            raise ValueError(f"illegal content type {text!r}, expected type/subtype or '*'")
        return super().__new__(cls, text)


class IPAddress(str):
    """An IPv4 or IPv6 address in its canonical text form."""

    def __new__(cls, value: object) -> Self:
        if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return super().__new__(cls, str(value))
        text = _require_str(value, "an IP address").strip()
        try:
            address = ipaddress.ip_address(text.removeprefix("[").removesuffix("]"))
        except ValueError:
            raise ValueError(f"illegal IP address {text!r}") from None
        return super().__new__(cls, str(address))

    @property
    def version(self) -> int:
        return ipaddress.ip_address(self).version


_LABEL_RE = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


class Hostname(str):
    """A DNS name or an IP address (IPv6 without brackets)."""

    def __new__(cls, value: object) -> Self:
        text = _require_str(value, "a hostname").strip()
        bare = text.removeprefix("[").removesuffix("]")
        try:
            return super().__new__(cls, str(ipaddress.ip_address(bare)))
        except ValueError:
            pass
        labels = text.removesuffix(".").split(".")
        if (
            not text
            or len(text) > 253
            or not all(_LABEL_RE.fullmatch(label) for label in labels)
            or all(label.isdigit() for label in labels)
        ):
            raise ValueError(f"illegal hostname or IP address {text!r}")
        return super().__new__(cls, text)


class SIPAddress(str):
    """A SIP address of record, 'user@domain'."""

    def __new__(cls, value: object) -> Self:
        text = _require_str(value, "a SIP address").strip()
        username, at, domain = text.rpartition("@")
        if not at or not username:
            raise ValueError(f"illegal SIP address {text!r}, expected user@domain")
        try:
            Hostname(domain)
        except ValueError:
            raise ValueError(f"illegal SIP address {text!r}: bad domain {domain!r}") from None
        return super().__new__(cls, text)

    @property
    def username(self) -> str:
        return self.rpartition("@")[0]

    @property
    def domain(self) -> str:
        return self.rpartition("@")[2]


class XCAPRoot(str):
    """An http(s) URL without query or fragment (RFC 4825 XCAP root)."""

    def __new__(cls, value: object) -> Self:
        text = _require_str(value, "an XCAP root").strip()
        uri = urlsplit(text)
        if uri.scheme not in ("http", "https"):
            raise ValueError(f"illegal XCAP root {text!r}: the scheme must be http or https")
        if uri.query or uri.fragment:
            raise ValueError(f"illegal XCAP root {text!r}: no query or fragment allowed")
        try:
            Hostname(uri.hostname or "")
            port = uri.port
        except ValueError as error:
            raise ValueError(f"illegal XCAP root {text!r}: {error}") from None
        if port == 0:
            raise ValueError(f"illegal XCAP root {text!r}: port 0")
        return super().__new__(cls, text)


class Path(str):
    """A filesystem path, normalized; '~' is kept and expanded by `normalized`."""

    def __new__(cls, value: object) -> Self:
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        text = _require_str(value, "a path")
        if not text:
            raise ValueError("illegal path: empty")
        return super().__new__(cls, os.path.normpath(text))

    @property
    def normalized(self) -> str:
        return os.path.expanduser(self)


# Composite values


class _Frozen:
    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _fields(self) -> tuple[object, ...]:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._fields() == other._fields()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self._fields()))

    def __str__(self) -> str:
        return str(self.to_state())

    def __reduce__(self) -> tuple[object, ...]:
        # Rebuilt from its text: the default would set the slots, which are immutable.
        return (type(self), (self.to_state(),))

    def to_state(self) -> str:
        raise NotImplementedError


class PortRange(_Frozen):
    """An inclusive range of non-zero ports: PortRange(50000, 50500), PortRange('50000-50500')."""

    __slots__ = ("end", "start")
    start: Port
    end: Port

    def __init__(self, start: int | str | Iterable[int | str] | PortRange, end: int | None = None):
        if end is None:
            if isinstance(start, PortRange):
                start, end = start.start, start.end
            elif isinstance(start, str):
                parts = start.split("-")
                if len(parts) != 2:
                    raise ValueError(f"illegal port range {start!r}, expected start-end")
                start, end = parts
            elif isinstance(start, Iterable):
                bounds = list(start)
                if len(bounds) != 2:
                    raise ValueError(f"illegal port range {bounds!r}, expected (start, end)")
                start, end = bounds
            else:
                raise ValueError(f"illegal port range {start!r}, expected start-end")
        first, last = Port(start), Port(end)
        if first == 0 or last == 0:
            raise ValueError(f"illegal port range {first}-{last}: ports must be 1 to 65535")
        if first > last:
            raise ValueError(f"illegal port range {first}-{last}: start is larger than end")
        object.__setattr__(self, "start", first)
        object.__setattr__(self, "end", last)

    def _fields(self) -> tuple[object, ...]:
        return (self.start, self.end)

    def __iter__(self) -> Iterator[int]:
        return iter((self.start, self.end))

    def __repr__(self) -> str:
        return f"PortRange({self.start}, {self.end})"

    def to_state(self) -> str:
        return f"{self.start}-{self.end}"


def _parse_endpoint(text: str, what: str) -> tuple[str, str | None, dict[str, str]]:
    """Split 'host[:port][;name=value]...' (IPv6 hosts in brackets, or bare without port)."""
    main, *params = text.strip().split(";")
    parameters: dict[str, str] = {}
    for param in params:
        name, equals, value = param.partition("=")
        if not equals or not name.strip():
            raise ValueError(f"illegal {what} {text!r}: bad parameter {param!r}")
        parameters[name.strip().lower()] = value.strip()
    port: str | None = None
    if main.startswith("["):
        host, bracket, rest = main[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"illegal {what} {text!r}")
        port = rest[1:] if rest else None
    elif main.count(":") == 1:
        host, port = main.split(":")
    else:
        host = main
    return host, port, parameters


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class _Endpoint(_Frozen):
    """host[:port] where the host may be given together with the port as one string."""

    __slots__ = ("host", "port")
    host: str
    port: Port | None

    default_port: ClassVar[int | None] = None
    host_type: ClassVar[type[str]] = Hostname
    description: ClassVar[str] = "address"

    def __init__(self, host: str | Self, port: int | str | None = None) -> None:
        if isinstance(host, type(self)):
            host, parsed_port = host.host, host.port
            parameters: dict[str, str] = {}
        else:
            host, parsed_port, parameters = self._split(host)
        self._set_address(host, parsed_port, port)
        if parameters:
            raise ValueError(f"illegal {self.description} {host!r}: unexpected parameters")

    def _split(self, host: object) -> tuple[str, str | None, dict[str, str]]:
        text = _require_str(host, f"a {self.description}")
        try:
            ipaddress.ip_address(text.strip())
        except ValueError:
            return _parse_endpoint(text, self.description)
        return text, None, {}

    def _set_address(self, host: str, parsed_port: object, port: object) -> None:
        if parsed_port is not None and port is not None and Port(parsed_port) != Port(port):
            raise ValueError(f"illegal {self.description} {host!r}: two different ports")
        chosen = parsed_port if parsed_port is not None else port
        if chosen is None:
            chosen = self.default_port
        try:
            object.__setattr__(self, "host", self.host_type(host))
            object.__setattr__(self, "port", None if chosen is None else Port(chosen))
        except ValueError as error:
            raise ValueError(f"illegal {self.description}: {error}") from None
        if self.port == 0:
            raise ValueError(f"illegal {self.description} {host!r}: port 0")

    def _fields(self) -> tuple[object, ...]:
        return (self.host, self.port)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_state()!r})"

    def to_state(self) -> str:
        host = _format_host(self.host)
        return host if self.port is None else f"{host}:{self.port}"


class _TransportEndpoint(_Endpoint):
    """host[:port][;transport=...]."""

    __slots__ = ("transport",)
    transport: str | None

    transport_type: ClassVar[type[_Choice]] = SIPTransport
    default_transport: ClassVar[str | None] = None

    def __init__(
        self, host: str | Self, port: int | str | None = None, transport: str | None = None
    ) -> None:
        if isinstance(host, type(self)):
            host, parsed_port, parsed_transport = host.host, host.port, host.transport
        else:
            host, parsed_port, parameters = self._split(host)
            parsed_transport = parameters.pop("transport", None)
            if parameters:
                names = ", ".join(parameters)
                raise ValueError(f"illegal {self.description} {host!r}: unknown {names}")
        self._set_address(host, parsed_port, port)
        if (
            parsed_transport is not None
            and transport is not None
            and self.transport_type(parsed_transport) != self.transport_type(transport)
        ):
            raise ValueError(f"illegal {self.description} {host!r}: two transports")
        chosen = parsed_transport if parsed_transport is not None else transport
        if chosen is None:
            chosen = self.default_transport
        object.__setattr__(
            self, "transport", None if chosen is None else self.transport_type(chosen)
        )

    def _fields(self) -> tuple[object, ...]:
        return (self.host, self.port, self.transport)

    def to_state(self) -> str:
        address = super().to_state()
        return address if self.transport is None else f"{address};transport={self.transport}"


class SIPProxyAddress(_TransportEndpoint):
    """An outbound proxy: 'host[:port][;transport=udp|tcp|tls]'.

    A missing port or transport is left to RFC 3263 DNS lookups (NAPTR / SRV).
    """

    __slots__ = ()
    description = "SIP proxy address"


class MSRPRelayAddress(_TransportEndpoint):
    """An MSRP relay: 'host[:port][;transport=tls|tcp]'; no port means an SRV lookup."""

    __slots__ = ()
    description = "MSRP relay address"
    transport_type = MSRPTransport
    default_transport = "tls"


class STUNServerAddress(_Endpoint):
    """A STUN server: 'host[:port]', port 3478 by default."""

    __slots__ = ()
    description = "STUN server address"
    default_port = 3478


class NameserverAddress(_Endpoint):
    """A DNS server: 'ip[:port]', port 53 by default."""

    __slots__ = ()
    description = "nameserver address"
    default_port = 53
    host_type = IPAddress


# Lists


class List(tuple):
    """An immutable list of `item_type` values, stored as a list of strings.

    Accepts any iterable, or a comma separated string ('tls, tcp').
    """

    item_type: ClassVar[type] = str
    unique: ClassVar[bool] = False

    def __new__(cls, values: Iterable[Any] | str = ()) -> Self:
        if isinstance(values, str):
            values = [item.strip() for item in values.split(",") if item.strip()]
        elif not isinstance(values, Iterable):
            raise ValueError(f"expected a list for {cls.__name__}, got {values!r}")
        items = [
            item if isinstance(item, cls.item_type) else cls.item_type(item) for item in values
        ]
        if cls.unique:
            seen = set()
            for item in items:
                if item in seen:
                    raise ValueError(f"duplicate value {str(item)!r} in {cls.__name__}")
                seen.add(item)
        return super().__new__(cls, items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, list | tuple):
            return tuple(self) == tuple(other)
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    __hash__ = tuple.__hash__

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self)!r})"

    def __str__(self) -> str:
        return ", ".join(str(item) for item in self)

    def to_state(self) -> list[str]:
        states = [state_of(item) for item in self]
        if not all(isinstance(state, str) for state in states):
            raise TypeError(f"{type(self).__name__} items must have a text form")
        return states  # type: ignore[return-value]


class ContentTypeList(List):
    item_type = ContentType


class SIPTransportList(List):
    item_type = SIPTransport
    unique = True
    available_values = SIPTransport.available_values


class AudioCodecList(List):
    item_type = AudioCodec
    unique = True
    available_values = AudioCodec.available_values


class STUNServerAddressList(List):
    item_type = STUNServerAddress


class NameserverAddressList(List):
    item_type = NameserverAddress
