"""SDP session descriptions (RFC 8866): mutable and frozen objects, lenient parsing, strict writing.

Parsing accepts what real user agents send: LF-only or CR line ends, blanks around lines, a
missing s= or t=, fields in the wrong order, unknown line types and (as in the middleware
documentation's own chat example) an attribute value wrapped onto a second line. Writing always
gives CRLF lines in RFC 8866 order with a final CRLF. Lines the model has no field for (u=, e=,
p=, r=, z=, k=, unknown types, repeated single-valued fields) are kept in ``extra_lines`` so what
a peer sent survives a parse/write round trip.

Every class has a mutable and a frozen (immutable, hashable) variant that compare equal when
they hold the same description; ``.new()`` converts either way. Sessions negotiated by the core
are handed out frozen.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from typing import Any, ClassVar, Self

from sipsimple.core.sdp.parser import (
    ExtraLine,
    ParsedMedia,
    parse_bandwidth,
    parse_connection,
    parse_media_section,
    parse_session,
    single_line,
    split_attribute,
)

__all__ = [
    "DIRECTIONS",
    "STATIC_PAYLOAD_TYPES",
    "BaseSDPAttribute",
    "BaseSDPBandwidthInfo",
    "BaseSDPConnection",
    "BaseSDPMediaStream",
    "BaseSDPSession",
    "FrozenSDPAttribute",
    "FrozenSDPAttributeList",
    "FrozenSDPBandwidthInfo",
    "FrozenSDPBandwidthInfoList",
    "FrozenSDPConnection",
    "FrozenSDPMediaStream",
    "FrozenSDPSession",
    "MediaCodec",
    "SDPAttribute",
    "SDPAttributeList",
    "SDPBandwidthInfo",
    "SDPBandwidthInfoList",
    "SDPConnection",
    "SDPMediaStream",
    "SDPSession",
]

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


class MediaCodec:
    """An RTP encoding: name (compared case-insensitively), clock rate and channel count."""

    __slots__ = ("channels", "name", "rate")
    name: str
    rate: int
    channels: int

    def __init__(self, name: str, rate: int, channels: int = 1) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "rate", int(rate))
        object.__setattr__(self, "channels", int(channels))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("MediaCodec is immutable")

    def _key(self) -> tuple[str, int, int]:
        return (self.name.lower(), self.rate, self.channels)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MediaCodec):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"MediaCodec({self.name!r}, {self.rate!r}, {self.channels!r})"

    def __str__(self) -> str:
        suffix = f"/{self.channels}" if self.channels != 1 else ""
        return f"{self.name}/{self.rate}{suffix}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (MediaCodec, (self.name, self.rate, self.channels))


# RFC 3551 section 6, tables 4 and 5: the payload types whose encoding needs no rtpmap.
STATIC_PAYLOAD_TYPES: dict[int, MediaCodec] = {
    0: MediaCodec("PCMU", 8000),
    3: MediaCodec("GSM", 8000),
    4: MediaCodec("G723", 8000),
    5: MediaCodec("DVI4", 8000),
    6: MediaCodec("DVI4", 16000),
    7: MediaCodec("LPC", 8000),
    8: MediaCodec("PCMA", 8000),
    9: MediaCodec("G722", 8000),
    10: MediaCodec("L16", 44100, 2),
    11: MediaCodec("L16", 44100),
    12: MediaCodec("QCELP", 8000),
    13: MediaCodec("CN", 8000),
    14: MediaCodec("MPA", 90000),
    15: MediaCodec("G728", 8000),
    16: MediaCodec("DVI4", 11025),
    17: MediaCodec("DVI4", 22050),
    18: MediaCodec("G729", 8000),
    25: MediaCodec("CelB", 90000),
    26: MediaCodec("JPEG", 90000),
    28: MediaCodec("nv", 90000),
    31: MediaCodec("H261", 90000),
    32: MediaCodec("MPV", 90000),
    33: MediaCodec("MP2T", 90000),
    34: MediaCodec("H263", 90000),
}

_PAYLOAD_TYPE = re.compile(r"[0-9]{1,3}")
_RTPMAP = re.compile(r"(\S+)\s+([^/\s]+)/([0-9]{1,9})(?:/([0-9]{1,3}))?")


def _rebuild(cls: type, kwargs: dict[str, Any]) -> Any:
    return cls(**kwargs)


class _Model:
    """Equality by content across the mutable/frozen pair, repr, pickling."""

    __slots__ = ()
    _FIELDS: ClassVar[tuple[str, ...]]
    _FAMILY: ClassVar[type]

    def _key(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, self._FAMILY):
            return NotImplemented
        return self._key() == other._key()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._FIELDS)
        return f"{type(self).__name__}({args})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), {name: getattr(self, name) for name in self._FIELDS}))


class _Frozen:
    """Immutability and hashing for the frozen variants."""

    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; change a .new() mutable copy")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __hash__(self) -> int:
        return hash(self._key())  # type: ignore[attr-defined]

    def _init(self, **values: Any) -> None:
        for name, value in values.items():
            _set(self, name, value)


_set = object.__setattr__


# ---------------------------------------------------------------------------------------------
# Writing helpers: the writer refuses what it could not write as the same description.


def _text(value: str, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"SDP {what} must be a str, not {type(value).__name__}")
    if "\r" in value or "\n" in value:
        raise ValueError(f"SDP {what} contains a line break: {value!r}")
    return value


_BLANK = re.compile(r"\s")


def _token(value: str, what: str) -> str:
    _text(value, what)
    if not value or _BLANK.search(value):
        raise ValueError(f"SDP {what} must be a non-empty token without blanks, got {value!r}")
    return value


def _number(value: int, what: str, maximum: int | None = None) -> str:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"SDP {what} must be a non-negative integer, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"SDP {what} must be at most {maximum}, got {value!r}")
    return str(value)


def _extra(line: ExtraLine) -> str:
    kind, value = line
    if not (isinstance(kind, str) and len(kind) == 1 and kind.isascii() and kind.isalpha()):
        raise ValueError(f"SDP extra line type must be one ASCII letter, got {kind!r}")
    if kind in "abm":
        raise ValueError(f"SDP extra lines cannot be of type {kind!r}; use the model's fields")
    return f"{kind}={_text(value, kind + '= value')}"


def _part_classes(cls: type) -> tuple[Any, Any, Any]:
    """The connection, attribute and bandwidth classes matching a mutable or frozen ``cls``."""
    if issubclass(cls, _Frozen):
        return FrozenSDPConnection, FrozenSDPAttribute, FrozenSDPBandwidthInfo
    return SDPConnection, SDPAttribute, SDPBandwidthInfo


# ---------------------------------------------------------------------------------------------
# Attributes


class BaseSDPAttribute(_Model):
    """An a= line: ``name`` and ``value`` ("" for flag attributes such as a=sendrecv)."""

    __slots__ = ()
    _FIELDS = ("name", "value")
    name: str
    value: str

    @classmethod
    def parse(cls, text: str | bytes) -> Self:
        """Parse one a= line."""
        return cls(*split_attribute(single_line(text, "a")))

    def _key(self) -> tuple[Any, ...]:
        return (self.name, self.value)

    def __str__(self) -> str:
        name = _text(self.name, "attribute name")
        if ":" in name:
            raise ValueError(f"SDP attribute name contains ':': {name!r}")
        value = _text(self.value, "attribute value")
        return f"a={name}:{value}" if value else f"a={name}"


class SDPAttribute(BaseSDPAttribute):
    __slots__ = ("name", "value")

    def __init__(self, name: str, value: str = "") -> None:
        self.name = name
        self.value = value

    @classmethod
    def new(cls, attribute: BaseSDPAttribute) -> SDPAttribute:
        return cls(attribute.name, attribute.value)


class FrozenSDPAttribute(_Frozen, BaseSDPAttribute):
    __slots__ = ("name", "value")

    def __init__(self, name: str, value: str = "") -> None:
        _set(self, "name", name)
        _set(self, "value", value)

    @classmethod
    def new(cls, attribute: BaseSDPAttribute) -> FrozenSDPAttribute:
        if isinstance(attribute, FrozenSDPAttribute):
            return attribute
        return cls(attribute.name, attribute.value)


BaseSDPAttribute._FAMILY = BaseSDPAttribute


class _AttributeLookup:
    """Lookups by attribute name shared by the mutable and frozen attribute lists."""

    __slots__ = ()

    def getall(self, name: str) -> list[str]:
        """The values of every attribute called ``name``, in order."""
        return [attribute.value for attribute in self if attribute.name == name]  # type: ignore[attr-defined]

    def getfirst(self, name: str, default: str | None = None) -> str | None:
        """The value of the first attribute called ``name``, or ``default``."""
        for attribute in self:  # type: ignore[attr-defined]
            if attribute.name == name:
                return attribute.value
        return default

    def __contains__(self, item: object) -> bool:
        if isinstance(item, BaseSDPAttribute):
            return any(attribute == item for attribute in self)  # type: ignore[attr-defined]
        return any(attribute.name == item for attribute in self)  # type: ignore[attr-defined]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, list | tuple):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))  # type: ignore[arg-type, call-overload]


class SDPAttributeList(_AttributeLookup, list[BaseSDPAttribute]):
    """An ordered, mutable list of attributes; ``"name" in attributes`` tests by name."""

    __slots__ = ()
    __hash__ = None  # type: ignore[assignment]


class FrozenSDPAttributeList(_AttributeLookup, tuple[FrozenSDPAttribute, ...]):
    """An ordered, immutable list of frozen attributes."""

    __slots__ = ()
    __hash__ = tuple.__hash__

    def __new__(cls, attributes: Iterable[BaseSDPAttribute] = ()) -> Self:
        frozen = FrozenSDPAttribute
        return super().__new__(
            cls, [a if type(a) is frozen else frozen(a.name, a.value) for a in attributes]
        )


# ---------------------------------------------------------------------------------------------
# Bandwidth


class BaseSDPBandwidthInfo(_Model):
    """A b= line: ``modifier`` (AS, CT, TIAS, ...) and an integer ``value``."""

    __slots__ = ()
    _FIELDS = ("modifier", "value")
    modifier: str
    value: int

    @classmethod
    def parse(cls, text: str | bytes) -> Self:
        """Parse one b= line."""
        return cls(*parse_bandwidth(single_line(text, "b"), 1))

    def _key(self) -> tuple[Any, ...]:
        return (self.modifier, self.value)

    def __str__(self) -> str:
        modifier = _token(self.modifier, "bandwidth modifier")
        if ":" in modifier:
            raise ValueError(f"SDP bandwidth modifier contains ':': {modifier!r}")
        return f"b={modifier}:{_number(self.value, 'bandwidth value')}"


class SDPBandwidthInfo(BaseSDPBandwidthInfo):
    __slots__ = ("modifier", "value")

    def __init__(self, modifier: str, value: int) -> None:
        self.modifier = modifier
        self.value = value

    @classmethod
    def new(cls, info: BaseSDPBandwidthInfo) -> SDPBandwidthInfo:
        return cls(info.modifier, info.value)


class FrozenSDPBandwidthInfo(_Frozen, BaseSDPBandwidthInfo):
    __slots__ = ("modifier", "value")

    def __init__(self, modifier: str, value: int) -> None:
        _set(self, "modifier", modifier)
        _set(self, "value", value)

    @classmethod
    def new(cls, info: BaseSDPBandwidthInfo) -> FrozenSDPBandwidthInfo:
        if isinstance(info, FrozenSDPBandwidthInfo):
            return info
        return cls(info.modifier, info.value)


BaseSDPBandwidthInfo._FAMILY = BaseSDPBandwidthInfo


class _BandwidthLookup:
    __slots__ = ()

    def __contains__(self, item: object) -> bool:
        if isinstance(item, BaseSDPBandwidthInfo):
            return any(info == item for info in self)  # type: ignore[attr-defined]
        return any(info.modifier == item for info in self)  # type: ignore[attr-defined]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, list | tuple):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))  # type: ignore[arg-type, call-overload]


class SDPBandwidthInfoList(_BandwidthLookup, list[BaseSDPBandwidthInfo]):
    """An ordered, mutable list of b= lines; ``"AS" in infos`` tests by modifier."""

    __slots__ = ()
    __hash__ = None  # type: ignore[assignment]


class FrozenSDPBandwidthInfoList(_BandwidthLookup, tuple[FrozenSDPBandwidthInfo, ...]):
    __slots__ = ()
    __hash__ = tuple.__hash__

    def __new__(cls, infos: Iterable[BaseSDPBandwidthInfo] = ()) -> Self:
        frozen = FrozenSDPBandwidthInfo
        return super().__new__(
            cls, [i if type(i) is frozen else frozen(i.modifier, i.value) for i in infos]
        )


# ---------------------------------------------------------------------------------------------
# Connection


class BaseSDPConnection(_Model):
    """A c= line. A multicast TTL or address count stays part of ``address``."""

    __slots__ = ()
    _FIELDS = ("address", "net_type", "address_type")
    address: str
    net_type: str
    address_type: str

    @classmethod
    def parse(cls, text: str | bytes) -> Self:
        """Parse one c= line."""
        return cls(*parse_connection(single_line(text, "c"), 1))

    @property
    def is_null(self) -> bool:
        """True for 0.0.0.0 (or ::): RFC 2543 hold, meaning "send nothing here"."""
        return self.address in ("0.0.0.0", "::")

    def _key(self) -> tuple[Any, ...]:
        return (self.address, self.net_type, self.address_type)

    def __str__(self) -> str:
        net_type = _token(self.net_type, "connection network type")
        address_type = _token(self.address_type, "connection address type")
        return f"c={net_type} {address_type} {_token(self.address, 'connection address')}"


class SDPConnection(BaseSDPConnection):
    __slots__ = ("address", "address_type", "net_type")

    def __init__(self, address: str, net_type: str = "IN", address_type: str = "IP4") -> None:
        self.address = address
        self.net_type = net_type
        self.address_type = address_type

    @classmethod
    def new(cls, connection: BaseSDPConnection) -> SDPConnection:
        return cls(connection.address, connection.net_type, connection.address_type)


class FrozenSDPConnection(_Frozen, BaseSDPConnection):
    __slots__ = ("address", "address_type", "net_type")

    def __init__(self, address: str, net_type: str = "IN", address_type: str = "IP4") -> None:
        _set(self, "address", address)
        _set(self, "net_type", net_type)
        _set(self, "address_type", address_type)

    @classmethod
    def new(cls, connection: BaseSDPConnection) -> FrozenSDPConnection:
        if isinstance(connection, FrozenSDPConnection):
            return connection
        return cls(connection.address, connection.net_type, connection.address_type)


BaseSDPConnection._FAMILY = BaseSDPConnection


# ---------------------------------------------------------------------------------------------
# Media streams


class BaseSDPMediaStream(_Model):
    """An m= section: the m= line fields, then i=, c=, b=, a= and kept extra lines."""

    __slots__ = ()
    _FIELDS = (
        "media",
        "port",
        "transport",
        "port_count",
        "formats",
        "info",
        "connection",
        "attributes",
        "bandwidth_info",
        "extra_lines",
    )
    media: str
    port: int
    transport: str
    port_count: int
    formats: list[str] | tuple[str, ...]
    info: str | None
    connection: BaseSDPConnection | None
    attributes: SDPAttributeList | FrozenSDPAttributeList
    bandwidth_info: SDPBandwidthInfoList | FrozenSDPBandwidthInfoList
    extra_lines: list[ExtraLine] | tuple[ExtraLine, ...]

    @classmethod
    def parse(cls, text: str | bytes) -> Self:
        """Parse one media section on its own (its first line must be m=)."""
        return cls._build(parse_media_section(text))

    @classmethod
    def _build(cls, parsed: ParsedMedia) -> Self:
        connection_cls, attribute_cls, bandwidth_cls = _part_classes(cls)
        return cls(
            parsed.media,
            parsed.port,
            parsed.transport,
            parsed.port_count,
            parsed.formats,
            parsed.info,
            connection_cls(*parsed.connection) if parsed.connection is not None else None,
            [attribute_cls(name, value) for name, value in parsed.attributes],
            [bandwidth_cls(modifier, value) for modifier, value in parsed.bandwidth],
            extra_lines=parsed.extra_lines,
        )

    # --- helpers the streams and the negotiator use ---

    @property
    def direction(self) -> str:
        """The media-level direction attribute; "sendrecv" when there is none (RFC 3264 5.1)."""
        for attribute in self.attributes:
            if attribute.name in DIRECTIONS:
                return attribute.name
        return "sendrecv"

    @property
    def is_rtp(self) -> bool:
        """True for RTP profiles (RTP/AVP, RTP/SAVP, UDP/TLS/RTP/SAVPF, ...)."""
        return "RTP/" in self.transport.upper()

    @property
    def has_srtp(self) -> bool:
        return "SAVP" in self.transport.upper() or "crypto" in self.attributes

    @property
    def has_ice_attributes(self) -> bool:
        return "ice-ufrag" in self.attributes and "ice-pwd" in self.attributes

    @property
    def has_ice_candidates(self) -> bool:
        return "candidate" in self.attributes

    def rtpmap(self, fmt: str) -> MediaCodec | None:
        """The encoding of payload type ``fmt``: its a=rtpmap, else the RFC 3551 static table."""
        for value in self.attributes.getall("rtpmap"):
            match = _RTPMAP.match(value)
            if match is not None and match.group(1) == fmt:
                name, rate, channels = match.group(2, 3, 4)
                return MediaCodec(name, int(rate), int(channels) if channels else 1)
        if _PAYLOAD_TYPE.fullmatch(fmt) is not None:
            return STATIC_PAYLOAD_TYPES.get(int(fmt))
        return None

    def fmtp(self, fmt: str) -> str | None:
        """The format parameters (a=fmtp) given for payload type ``fmt``, if any."""
        prefix = fmt + " "
        for value in self.attributes.getall("fmtp"):
            if value.startswith(prefix):
                return value[len(prefix) :].strip()
        return None

    @property
    def codec_list(self) -> list[MediaCodec | None]:
        """The encoding of each format in order (None where unknown); empty if not RTP."""
        if not self.is_rtp:
            return []
        return [self.rtpmap(fmt) for fmt in self.formats]

    def _key(self) -> tuple[Any, ...]:
        return (
            self.media,
            self.port,
            self.transport,
            self.port_count,
            tuple(self.formats),
            self.info,
            self.connection._key() if self.connection is not None else None,
            tuple(a._key() for a in self.attributes),
            tuple(b._key() for b in self.bandwidth_info),
            tuple(tuple(line) for line in self.extra_lines),
        )

    def _lines(self) -> list[str]:
        port = _number(self.port, "media port", 65535)
        if self.port_count != 1:
            port += "/" + _number(self.port_count, "media port count")
        fields = [_token(self.media, "media type"), port, _token(self.transport, "transport")]
        fields.extend(_token(fmt, "media format") for fmt in self.formats)
        lines = ["m=" + " ".join(fields)]
        if self.info is not None:
            lines.append("i=" + _text(self.info, "media title"))
        if self.connection is not None:
            lines.append(str(self.connection))
        lines.extend(str(info) for info in self.bandwidth_info)
        lines.extend(_extra(line) for line in self.extra_lines)
        lines.extend(str(attribute) for attribute in self.attributes)
        return lines

    def __str__(self) -> str:
        return "\r\n".join(self._lines()) + "\r\n"


class SDPMediaStream(BaseSDPMediaStream):
    __slots__ = (
        "_attributes",
        "_bandwidth_info",
        "_formats",
        "connection",
        "extra_lines",
        "info",
        "media",
        "port",
        "port_count",
        "transport",
    )

    def __init__(
        self,
        media: str,
        port: int,
        transport: str,
        port_count: int = 1,
        formats: Iterable[str] | None = None,
        info: str | None = None,
        connection: BaseSDPConnection | None = None,
        attributes: Iterable[BaseSDPAttribute] | None = None,
        bandwidth_info: Iterable[BaseSDPBandwidthInfo] | None = None,
        *,
        extra_lines: Iterable[ExtraLine] | None = None,
    ) -> None:
        self.media = media
        self.port = port
        self.transport = transport
        self.port_count = port_count
        self.formats = formats if formats is not None else []
        self.info = info
        self.connection = connection
        self.attributes = attributes if attributes is not None else []
        self.bandwidth_info = bandwidth_info if bandwidth_info is not None else []
        self.extra_lines = list(extra_lines) if extra_lines is not None else []

    @classmethod
    def new(cls, media: BaseSDPMediaStream) -> SDPMediaStream:
        """A mutable deep copy."""
        return cls(
            media.media,
            media.port,
            media.transport,
            media.port_count,
            list(media.formats),
            media.info,
            SDPConnection.new(media.connection) if media.connection is not None else None,
            [SDPAttribute.new(a) for a in media.attributes],
            [SDPBandwidthInfo.new(b) for b in media.bandwidth_info],
            extra_lines=list(media.extra_lines),
        )

    @property  # type: ignore[override]
    def formats(self) -> list[str]:
        return self._formats

    @formats.setter
    def formats(self, formats: Iterable[str]) -> None:
        self._formats = list(formats)

    @property  # type: ignore[override]
    def attributes(self) -> SDPAttributeList:
        return self._attributes

    @attributes.setter
    def attributes(self, attributes: Iterable[BaseSDPAttribute]) -> None:
        if not isinstance(attributes, SDPAttributeList):
            attributes = SDPAttributeList(attributes)
        self._attributes = attributes

    @property  # type: ignore[override]
    def bandwidth_info(self) -> SDPBandwidthInfoList:
        return self._bandwidth_info

    @bandwidth_info.setter
    def bandwidth_info(self, infos: Iterable[BaseSDPBandwidthInfo]) -> None:
        if not isinstance(infos, SDPBandwidthInfoList):
            infos = SDPBandwidthInfoList(infos)
        self._bandwidth_info = infos

    @property  # type: ignore[override]
    def direction(self) -> str:
        return BaseSDPMediaStream.direction.fget(self)  # type: ignore[attr-defined, no-any-return]

    @direction.setter
    def direction(self, direction: str) -> None:
        """Replace any direction attribute with an explicit one (kept last)."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
        self.attributes = [a for a in self.attributes if a.name not in DIRECTIONS]
        self.attributes.append(SDPAttribute(direction, ""))


class FrozenSDPMediaStream(_Frozen, BaseSDPMediaStream):
    __slots__ = (
        "attributes",
        "bandwidth_info",
        "connection",
        "extra_lines",
        "formats",
        "info",
        "media",
        "port",
        "port_count",
        "transport",
    )

    def __init__(
        self,
        media: str,
        port: int,
        transport: str,
        port_count: int = 1,
        formats: Iterable[str] = (),
        info: str | None = None,
        connection: BaseSDPConnection | None = None,
        attributes: Iterable[BaseSDPAttribute] = (),
        bandwidth_info: Iterable[BaseSDPBandwidthInfo] = (),
        *,
        extra_lines: Iterable[ExtraLine] = (),
    ) -> None:
        self._init(
            media=media,
            port=port,
            transport=transport,
            port_count=port_count,
            formats=tuple(formats),
            info=info,
            connection=FrozenSDPConnection.new(connection) if connection is not None else None,
            attributes=FrozenSDPAttributeList(attributes),
            bandwidth_info=FrozenSDPBandwidthInfoList(bandwidth_info),
            extra_lines=tuple((kind, value) for kind, value in extra_lines),
        )

    @classmethod
    def new(cls, media: BaseSDPMediaStream) -> FrozenSDPMediaStream:
        if isinstance(media, FrozenSDPMediaStream):
            return media
        return cls(**{name: getattr(media, name) for name in cls._FIELDS})


BaseSDPMediaStream._FAMILY = BaseSDPMediaStream


# ---------------------------------------------------------------------------------------------
# Sessions


def _new_session_id() -> int:
    # RFC 8866 5.2 only asks for uniqueness; a random number needs no clock (sans-IO core).
    return secrets.randbits(31) + 1


class BaseSDPSession(_Model):
    """A whole session description: the o= fields, s=, i=, c=, b=, t=, a= and the media list."""

    __slots__ = ()
    _FIELDS = (
        "address",
        "id",
        "version",
        "user",
        "net_type",
        "address_type",
        "name",
        "info",
        "connection",
        "start_time",
        "stop_time",
        "attributes",
        "bandwidth_info",
        "media",
        "extra_lines",
    )
    address: str
    id: int
    version: int
    user: str
    net_type: str
    address_type: str
    name: str
    info: str | None
    connection: BaseSDPConnection | None
    start_time: int
    stop_time: int
    attributes: SDPAttributeList | FrozenSDPAttributeList
    bandwidth_info: SDPBandwidthInfoList | FrozenSDPBandwidthInfoList
    media: list[BaseSDPMediaStream] | tuple[FrozenSDPMediaStream, ...]
    extra_lines: list[ExtraLine] | tuple[ExtraLine, ...]

    @classmethod
    def parse(cls, text: str | bytes) -> Self:
        """Parse a session description; raises SDPParseError saying which line is wrong."""
        session = parse_session(text)
        connection_cls, attribute_cls, bandwidth_cls = _part_classes(cls)
        media_cls = FrozenSDPMediaStream if issubclass(cls, _Frozen) else SDPMediaStream
        user, session_id, version, net_type, address_type, address = session.origin
        return cls(
            address,
            session_id,
            version,
            user,
            net_type,
            address_type,
            session.name,
            session.info,
            connection_cls(*session.connection) if session.connection is not None else None,
            session.time[0],
            session.time[1],
            [attribute_cls(name, value) for name, value in session.attributes],
            [bandwidth_cls(modifier, value) for modifier, value in session.bandwidth],
            [media_cls._build(media) for media in session.media],
            extra_lines=session.extra_lines,
        )

    @property
    def has_ice_attributes(self) -> bool:
        return "ice-ufrag" in self.attributes and "ice-pwd" in self.attributes

    def _key(self) -> tuple[Any, ...]:
        return (
            self.address,
            self.id,
            self.version,
            self.user,
            self.net_type,
            self.address_type,
            self.name,
            self.info,
            self.connection._key() if self.connection is not None else None,
            self.start_time,
            self.stop_time,
            tuple(a._key() for a in self.attributes),
            tuple(b._key() for b in self.bandwidth_info),
            tuple(m._key() for m in self.media),
            tuple(tuple(line) for line in self.extra_lines),
        )

    def __str__(self) -> str:
        user = _text(self.user, "origin user")
        if not user.strip() or user != user.strip():
            raise ValueError(f"SDP origin user must be non-empty without outer blanks: {user!r}")
        origin = " ".join(
            [
                user,
                _number(self.id, "session id"),
                _number(self.version, "session version"),
                _token(self.net_type, "origin network type"),
                _token(self.address_type, "origin address type"),
                _token(self.address, "origin address"),
            ]
        )
        name = _text(self.name, "session name")
        lines = ["v=0", "o=" + origin, "s=" + (name if name.strip() else " ")]
        if self.info is not None:
            lines.append("i=" + _text(self.info, "session information"))
        early = [line for line in self.extra_lines if line[0] in "uep"]
        late = [line for line in self.extra_lines if line[0] not in "uep"]
        lines.extend(_extra(line) for line in early)
        if self.connection is not None:
            lines.append(str(self.connection))
        lines.extend(str(info) for info in self.bandwidth_info)
        start = _number(self.start_time, "start time")
        lines.append(f"t={start} {_number(self.stop_time, 'stop time')}")
        lines.extend(_extra(line) for line in late)
        lines.extend(str(attribute) for attribute in self.attributes)
        for media in self.media:
            if not isinstance(media, BaseSDPMediaStream):
                raise TypeError(f"SDP session media must be media streams, not {media!r}")
            lines.extend(media._lines())
        return "\r\n".join(lines) + "\r\n"


class SDPSession(BaseSDPSession):
    __slots__ = (
        "_attributes",
        "_bandwidth_info",
        "_media",
        "address",
        "address_type",
        "connection",
        "extra_lines",
        "id",
        "info",
        "name",
        "net_type",
        "start_time",
        "stop_time",
        "user",
        "version",
    )

    def __init__(
        self,
        address: str,
        id: int | None = None,
        version: int | None = None,
        user: str = "-",
        net_type: str = "IN",
        address_type: str = "IP4",
        name: str = "-",
        info: str | None = None,
        connection: BaseSDPConnection | None = None,
        start_time: int = 0,
        stop_time: int = 0,
        attributes: Iterable[BaseSDPAttribute] | None = None,
        bandwidth_info: Iterable[BaseSDPBandwidthInfo] | None = None,
        media: Iterable[BaseSDPMediaStream] | None = None,
        *,
        extra_lines: Iterable[ExtraLine] | None = None,
    ) -> None:
        self.address = address
        self.id = id if id is not None else _new_session_id()
        self.version = version if version is not None else self.id
        self.user = user
        self.net_type = net_type
        self.address_type = address_type
        self.name = name
        self.info = info
        self.connection = connection
        self.start_time = start_time
        self.stop_time = stop_time
        self.attributes = attributes if attributes is not None else []
        self.bandwidth_info = bandwidth_info if bandwidth_info is not None else []
        self.media = media if media is not None else []
        self.extra_lines = list(extra_lines) if extra_lines is not None else []

    @classmethod
    def new(cls, session: BaseSDPSession) -> SDPSession:
        """A mutable deep copy."""
        return cls(
            session.address,
            session.id,
            session.version,
            session.user,
            session.net_type,
            session.address_type,
            session.name,
            session.info,
            SDPConnection.new(session.connection) if session.connection is not None else None,
            session.start_time,
            session.stop_time,
            [SDPAttribute.new(a) for a in session.attributes],
            [SDPBandwidthInfo.new(b) for b in session.bandwidth_info],
            [SDPMediaStream.new(m) for m in session.media],
            extra_lines=list(session.extra_lines),
        )

    @property  # type: ignore[override]
    def attributes(self) -> SDPAttributeList:
        return self._attributes

    @attributes.setter
    def attributes(self, attributes: Iterable[BaseSDPAttribute]) -> None:
        if not isinstance(attributes, SDPAttributeList):
            attributes = SDPAttributeList(attributes)
        self._attributes = attributes

    @property  # type: ignore[override]
    def bandwidth_info(self) -> SDPBandwidthInfoList:
        return self._bandwidth_info

    @bandwidth_info.setter
    def bandwidth_info(self, infos: Iterable[BaseSDPBandwidthInfo]) -> None:
        if not isinstance(infos, SDPBandwidthInfoList):
            infos = SDPBandwidthInfoList(infos)
        self._bandwidth_info = infos

    @property  # type: ignore[override]
    def media(self) -> list[BaseSDPMediaStream]:
        return self._media

    @media.setter
    def media(self, media: Iterable[BaseSDPMediaStream]) -> None:
        self._media = media if isinstance(media, list) else list(media)


class FrozenSDPSession(_Frozen, BaseSDPSession):
    __slots__ = (
        "_text",
        "address",
        "address_type",
        "attributes",
        "bandwidth_info",
        "connection",
        "extra_lines",
        "id",
        "info",
        "media",
        "name",
        "net_type",
        "start_time",
        "stop_time",
        "user",
        "version",
    )

    def __init__(
        self,
        address: str,
        id: int | None = None,
        version: int | None = None,
        user: str = "-",
        net_type: str = "IN",
        address_type: str = "IP4",
        name: str = "-",
        info: str | None = None,
        connection: BaseSDPConnection | None = None,
        start_time: int = 0,
        stop_time: int = 0,
        attributes: Iterable[BaseSDPAttribute] = (),
        bandwidth_info: Iterable[BaseSDPBandwidthInfo] = (),
        media: Iterable[BaseSDPMediaStream] = (),
        *,
        extra_lines: Iterable[ExtraLine] = (),
    ) -> None:
        session_id = id if id is not None else _new_session_id()
        self._init(
            address=address,
            id=session_id,
            version=version if version is not None else session_id,
            user=user,
            net_type=net_type,
            address_type=address_type,
            name=name,
            info=info,
            connection=FrozenSDPConnection.new(connection) if connection is not None else None,
            start_time=start_time,
            stop_time=stop_time,
            attributes=FrozenSDPAttributeList(attributes),
            bandwidth_info=FrozenSDPBandwidthInfoList(bandwidth_info),
            media=tuple(FrozenSDPMediaStream.new(m) for m in media),
            extra_lines=tuple((kind, value) for kind, value in extra_lines),
        )
        _set(self, "_text", None)

    @classmethod
    def new(cls, session: BaseSDPSession) -> FrozenSDPSession:
        if isinstance(session, FrozenSDPSession):
            return session
        return cls(**{name: getattr(session, name) for name in cls._FIELDS})

    def __str__(self) -> str:
        """Written once: a negotiated description is checked and then sent as the same text."""
        text: str | None = self._text
        if text is None:
            text = BaseSDPSession.__str__(self)
            _set(self, "_text", text)
        return text


BaseSDPSession._FAMILY = BaseSDPSession
