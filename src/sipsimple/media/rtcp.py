"""RTCP packets (RFC 3550 section 6.4-6.7): SR, RR, SDES, BYE, APP, and compound packets.

parse_rtcp() reads a compound packet into a list of packet objects; packet types it does
not know (RTPFB, PSFB, XR, ...) come back as UnknownRTCPPacket so nothing is lost.  Text
(SDES items, BYE reason) is UTF-8; undecodable bytes survive as surrogate escapes so that
parse and serialize round-trip.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

from sipsimple.media.errors import RTCPParseError

__all__ = [
    "RTCP_APP",
    "RTCP_BYE",
    "RTCP_RR",
    "RTCP_SDES",
    "RTCP_SR",
    "App",
    "Bye",
    "RTCPPacket",
    "ReceiverReport",
    "ReportBlock",
    "SDESChunk",
    "SDESItemType",
    "SenderReport",
    "SourceDescription",
    "UnknownRTCPPacket",
    "is_rtcp",
    "parse_rtcp",
    "serialize_rtcp",
]

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_APP = 204

_COMMON = struct.Struct("!BBH")
_SR_INFO = struct.Struct("!IQIII")
_BLOCK = struct.Struct("!IIIIII")
_MAX_BLOCKS = 31


class SDESItemType:
    """SDES item types (RFC 3550 section 6.5)."""

    END = 0
    CNAME = 1
    NAME = 2
    EMAIL = 3
    PHONE = 4
    LOC = 5
    TOOL = 6
    NOTE = 7
    PRIV = 8


def _encode_text(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _decode_text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _header(packet_type: int, count: int, body_length: int) -> bytes:
    if body_length % 4:
        raise ValueError(f"RTCP body of {body_length} bytes is not a multiple of 4")
    words = body_length // 4
    if words > 0xFFFF:
        raise ValueError(f"RTCP packet of {body_length + 4} bytes is too long")
    return _COMMON.pack(0x80 | count, packet_type, words)


@dataclass(slots=True, frozen=True)
class ReportBlock:
    """A reception report block (RFC 3550 6.4.1) about the source ``ssrc``.

    fraction_lost is the 8-bit fixed-point fraction (lost/expected * 256); packets_lost is
    the signed 24-bit cumulative count; jitter is in RTP timestamp units; lsr and dlsr are
    the middle 32 bits of the NTP time of the last SR and the delay since, in 1/65536 s.
    """

    ssrc: int
    fraction_lost: int = 0
    packets_lost: int = 0
    highest_sequence: int = 0
    jitter: int = 0
    lsr: int = 0
    dlsr: int = 0

    @classmethod
    def parse(cls, data: bytes, offset: int) -> ReportBlock:
        ssrc, lost_word, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, offset)
        lost = lost_word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 0x1000000
        return cls(ssrc, lost_word >> 24, lost, highest, jitter, lsr, dlsr)

    def serialize(self) -> bytes:
        if not 0 <= self.fraction_lost <= 255:
            raise ValueError(f"fraction_lost {self.fraction_lost}: must be 0-255")
        if not -0x800000 <= self.packets_lost <= 0x7FFFFF:
            raise ValueError(f"packets_lost {self.packets_lost}: must fit 24 signed bits")
        lost_word = self.fraction_lost << 24 | (self.packets_lost & 0xFFFFFF)
        try:
            return _BLOCK.pack(
                self.ssrc, lost_word, self.highest_sequence, self.jitter, self.lsr, self.dlsr
            )
        except struct.error as exc:
            raise ValueError(f"report block field out of range: {exc}") from None


def _parse_blocks(body: bytes, offset: int, count: int) -> tuple[ReportBlock, ...]:
    if offset + 24 * count > len(body):
        raise RTCPParseError(f"{count} report blocks do not fit the packet")
    return tuple(ReportBlock.parse(body, offset + 24 * i) for i in range(count))


def _check_blocks(reports: tuple[ReportBlock, ...]) -> None:
    if len(reports) > _MAX_BLOCKS:
        raise ValueError(f"{len(reports)} report blocks: at most 31 fit one packet")


@dataclass(slots=True, frozen=True)
class SenderReport:
    """SR (RFC 3550 6.4.1). ntp_timestamp is the full 64-bit NTP timestamp."""

    packet_type: ClassVar[int] = RTCP_SR
    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""

    @classmethod
    def parse(cls, count: int, body: bytes) -> SenderReport:
        if len(body) < 24:
            raise RTCPParseError(f"SR body of {len(body)} bytes is shorter than 24")
        ssrc, ntp, rtp_ts, packets, octets = _SR_INFO.unpack_from(body)
        reports = _parse_blocks(body, 24, count)
        return cls(ssrc, ntp, rtp_ts, packets, octets, reports, body[24 + 24 * count :])

    def serialize(self) -> bytes:
        _check_blocks(self.reports)
        try:
            info = _SR_INFO.pack(
                self.ssrc, self.ntp_timestamp, self.rtp_timestamp, self.packet_count,
                self.octet_count,
            )  # fmt: skip
        except struct.error as exc:
            raise ValueError(f"SR field out of range: {exc}") from None
        body = info + b"".join(r.serialize() for r in self.reports) + self.extension
        return _header(RTCP_SR, len(self.reports), len(body)) + body


@dataclass(slots=True, frozen=True)
class ReceiverReport:
    """RR (RFC 3550 6.4.2)."""

    packet_type: ClassVar[int] = RTCP_RR
    ssrc: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""

    @classmethod
    def parse(cls, count: int, body: bytes) -> ReceiverReport:
        if len(body) < 4:
            raise RTCPParseError("RR body is shorter than 4 bytes")
        (ssrc,) = struct.unpack_from("!I", body)
        return cls(ssrc, _parse_blocks(body, 4, count), body[4 + 24 * count :])

    def serialize(self) -> bytes:
        _check_blocks(self.reports)
        try:
            head = struct.pack("!I", self.ssrc)
        except struct.error as exc:
            raise ValueError(f"RR ssrc out of range: {exc}") from None
        body = head + b"".join(r.serialize() for r in self.reports) + self.extension
        return _header(RTCP_RR, len(self.reports), len(body)) + body


@dataclass(slots=True, frozen=True)
class SDESChunk:
    """The items (type, text) describing one source; see SDESItemType.

    For PRIV items the text holds the prefix length octet, prefix and value as they are.
    """

    ssrc: int
    items: tuple[tuple[int, str], ...] = ()

    def get(self, item_type: int) -> str | None:
        return next((text for kind, text in self.items if kind == item_type), None)


@dataclass(slots=True, frozen=True)
class SourceDescription:
    """SDES (RFC 3550 6.5)."""

    packet_type: ClassVar[int] = RTCP_SDES
    chunks: tuple[SDESChunk, ...] = ()

    @classmethod
    def parse(cls, count: int, body: bytes) -> SourceDescription:
        chunks = []
        offset = 0
        for _ in range(count):
            if offset + 4 > len(body):
                raise RTCPParseError(f"SDES declares {count} chunks but has room for fewer")
            (ssrc,) = struct.unpack_from("!I", body, offset)
            offset += 4
            items = []
            while True:
                if offset >= len(body):
                    raise RTCPParseError("SDES chunk is not terminated by a null item")
                kind = body[offset]
                if kind == SDESItemType.END:
                    offset = (offset + 4) & ~3  # null octets up to the next 32-bit boundary
                    break
                if offset + 2 > len(body) or offset + 2 + body[offset + 1] > len(body):
                    raise RTCPParseError(f"SDES item of type {kind} overruns the packet")
                length = body[offset + 1]
                items.append((kind, _decode_text(body[offset + 2 : offset + 2 + length])))
                offset += 2 + length
            chunks.append(SDESChunk(ssrc, tuple(items)))
        return cls(tuple(chunks))

    def serialize(self) -> bytes:
        if len(self.chunks) > 31:
            raise ValueError(f"{len(self.chunks)} SDES chunks: at most 31 fit one packet")
        body = bytearray()
        for chunk in self.chunks:
            try:
                body += struct.pack("!I", chunk.ssrc)
            except struct.error as exc:
                raise ValueError(f"SDES ssrc out of range: {exc}") from None
            for kind, text in chunk.items:
                data = _encode_text(text)
                if not 1 <= kind <= 255 or len(data) > 255:
                    raise ValueError(
                        f"SDES item type {kind} with {len(data)} bytes: "
                        "type must be 1-255, text at most 255 bytes"
                    )
                body += bytes((kind, len(data))) + data
            body += bytes(4 - len(body) % 4)  # the null item and padding to 32 bits
        return _header(RTCP_SDES, len(self.chunks), len(body)) + bytes(body)


@dataclass(slots=True, frozen=True)
class Bye:
    """BYE (RFC 3550 6.6)."""

    packet_type: ClassVar[int] = RTCP_BYE
    sources: tuple[int, ...] = ()
    reason: str | None = None

    @classmethod
    def parse(cls, count: int, body: bytes) -> Bye:
        if 4 * count > len(body):
            raise RTCPParseError(f"BYE declares {count} sources but has room for fewer")
        sources = struct.unpack_from(f"!{count}I", body)
        reason = None
        offset = 4 * count
        if offset < len(body):
            length = body[offset]
            if offset + 1 + length > len(body):
                raise RTCPParseError("BYE reason overruns the packet")
            reason = _decode_text(body[offset + 1 : offset + 1 + length])
        return cls(sources, reason)

    def serialize(self) -> bytes:
        if len(self.sources) > 31:
            raise ValueError(f"{len(self.sources)} BYE sources: at most 31 fit one packet")
        try:
            body = struct.pack(f"!{len(self.sources)}I", *self.sources)
        except struct.error as exc:
            raise ValueError(f"BYE source out of range: {exc}") from None
        if self.reason is not None:
            data = _encode_text(self.reason)
            if len(data) > 255:
                raise ValueError(f"BYE reason of {len(data)} bytes: at most 255")
            body += bytes((len(data),)) + data
            body += bytes(-len(body) % 4)
        return _header(RTCP_BYE, len(self.sources), len(body)) + body


@dataclass(slots=True, frozen=True)
class App:
    """APP (RFC 3550 6.7): a 4-character name, a 5-bit subtype and opaque data."""

    packet_type: ClassVar[int] = RTCP_APP
    ssrc: int
    name: str
    data: bytes = b""
    subtype: int = 0

    @classmethod
    def parse(cls, count: int, body: bytes) -> App:
        if len(body) < 8:
            raise RTCPParseError(f"APP body of {len(body)} bytes is shorter than 8")
        (ssrc,) = struct.unpack_from("!I", body)
        return cls(ssrc, body[4:8].decode("latin-1"), body[8:], count)

    def serialize(self) -> bytes:
        name = self.name.encode("latin-1", "replace")
        if len(name) != 4:
            raise ValueError(f"APP name {self.name!r}: must be 4 characters")
        if not 0 <= self.subtype <= 31:
            raise ValueError(f"APP subtype {self.subtype}: must be 0-31")
        try:
            body = struct.pack("!I", self.ssrc) + name + self.data
        except struct.error as exc:
            raise ValueError(f"APP ssrc out of range: {exc}") from None
        return _header(RTCP_APP, self.subtype, len(body)) + body


@dataclass(slots=True, frozen=True)
class UnknownRTCPPacket:
    """A packet of a type this module does not interpret, kept as it came."""

    packet_type: int
    count: int = 0
    body: bytes = b""

    def serialize(self) -> bytes:
        if not 0 <= self.count <= 31 or not 0 <= self.packet_type <= 255:
            raise ValueError(f"RTCP count {self.count} / type {self.packet_type} out of range")
        return _header(self.packet_type, self.count, len(self.body)) + self.body


RTCPPacket = SenderReport | ReceiverReport | SourceDescription | Bye | App | UnknownRTCPPacket

_PARSERS = {
    RTCP_SR: SenderReport.parse,
    RTCP_RR: ReceiverReport.parse,
    RTCP_SDES: SourceDescription.parse,
    RTCP_BYE: Bye.parse,
    RTCP_APP: App.parse,
}


def is_rtcp(data: bytes) -> bool:
    """Whether a datagram on a multiplexed port is RTCP (RFC 5761 section 4: type 192-223)."""
    return len(data) >= 2 and 192 <= data[1] <= 223


def parse_rtcp(data: bytes) -> list[RTCPPacket]:
    """Parses a compound RTCP packet (RFC 3550 6.1, A.2); raises RTCPParseError.

    Reduced-size RTCP (RFC 5506) is accepted: the first packet need not be SR or RR.
    """
    data = bytes(data)
    if len(data) < 4:
        raise RTCPParseError(f"RTCP packet of {len(data)} bytes is shorter than 4")
    packets: list[RTCPPacket] = []
    offset = 0
    while offset < len(data):
        if offset + 4 > len(data):
            raise RTCPParseError(f"{len(data) - offset} stray bytes after the last RTCP packet")
        b0, packet_type, words = _COMMON.unpack_from(data, offset)
        if b0 >> 6 != 2:
            raise RTCPParseError(f"RTCP version is {b0 >> 6}, not 2")
        end = offset + 4 + 4 * words
        if end > len(data):
            raise RTCPParseError(f"RTCP packet of type {packet_type} overruns the datagram")
        body = data[offset + 4 : end]
        if b0 & 0x20:
            padding = body[-1] if body else 0
            if padding == 0 or padding > len(body):
                raise RTCPParseError(f"RTCP padding count {padding} does not fit the packet")
            body = body[:-padding]
        count = b0 & 0x1F
        parser = _PARSERS.get(packet_type)
        try:
            if parser is None:
                packets.append(UnknownRTCPPacket(packet_type, count, body))
            else:
                packets.append(parser(count, body))
        except struct.error as exc:
            raise RTCPParseError(f"RTCP packet of type {packet_type} is truncated: {exc}") from None
        offset = end
    return packets


def serialize_rtcp(packets: list[RTCPPacket] | tuple[RTCPPacket, ...]) -> bytes:
    """The bytes of a compound packet made of ``packets`` in order."""
    return b"".join(packet.serialize() for packet in packets)
