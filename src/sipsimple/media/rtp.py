"""RTP packets (RFC 3550 section 5) and the sender-side sequence/timestamp state.

Parsing is strict about structure (version, lengths, padding, header extension) and lenient
about content: anything the bytes cannot support raises RTPParseError, never another error.
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sipsimple.media.errors import RTPParseError

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "RTP_HEADER_SIZE",
    "RTPHeaderExtension",
    "RTPPacket",
    "RTPPacketizer",
]

RTP_HEADER_SIZE = 12
RTP_VERSION = 2
ONE_BYTE_PROFILE = 0xBEDE  # RFC 8285 section 4.2
TWO_BYTE_PROFILE = 0x1000  # RFC 8285 section 4.3: 0x100 followed by 4 "appbits"

_HEADER = struct.Struct("!BBHII")
_EXTENSION_HEADER = struct.Struct("!HH")
# Payload types whose marker-bit form equals an RTCP SR/RR/SDES/BYE/APP packet type
# (RFC 3550 A.1, RFC 5761 section 4): an RTP packet must not use them.
_RTCP_CONFLICT = range(72, 77)


@dataclass(slots=True, frozen=True)
class RTPHeaderExtension:
    """The header extension: a 16-bit profile value and data whose length is a multiple of 4.

    RFC 8285 elements (one-byte profile 0xBEDE, two-byte profile 0x100X) are read with
    elements() and written with from_elements(); any other profile is opaque data.
    """

    profile: int
    data: bytes = b""

    def elements(self) -> list[tuple[int, bytes]]:
        """The (id, value) elements of an RFC 8285 extension, in order."""
        data = self.data
        elements: list[tuple[int, bytes]] = []
        if self.profile == ONE_BYTE_PROFILE:
            i = 0
            while i < len(data):
                ident, length = data[i] >> 4, (data[i] & 0x0F) + 1
                if ident == 0:  # padding byte
                    i += 1
                    continue
                if ident == 15:  # reserved: stop processing (RFC 8285 section 4.2)
                    break
                if i + 1 + length > len(data):
                    raise RTPParseError(f"one-byte header extension element {ident} overruns")
                elements.append((ident, data[i + 1 : i + 1 + length]))
                i += 1 + length
        elif self.profile & 0xFFF0 == TWO_BYTE_PROFILE:
            i = 0
            while i < len(data):
                ident = data[i]
                if ident == 0:
                    i += 1
                    continue
                if i + 2 > len(data) or i + 2 + data[i + 1] > len(data):
                    raise RTPParseError(f"two-byte header extension element {ident} overruns")
                length = data[i + 1]
                elements.append((ident, data[i + 2 : i + 2 + length]))
                i += 2 + length
        else:
            raise RTPParseError(f"header extension profile {self.profile:#06x} is not RFC 8285")
        return elements

    @classmethod
    def from_elements(cls, elements: list[tuple[int, bytes]]) -> RTPHeaderExtension:
        """Builds an RFC 8285 extension, one-byte form when every element allows it."""
        one_byte = all(1 <= ident <= 14 and 1 <= len(value) <= 16 for ident, value in elements)
        out = bytearray()
        for ident, value in elements:
            if one_byte:
                out.append(ident << 4 | (len(value) - 1))
            elif 1 <= ident <= 255 and len(value) <= 255:
                out += bytes((ident, len(value)))
            else:
                raise ValueError(
                    f"header extension element id {ident} with {len(value)} bytes: "
                    "ids must be 1-255 and values at most 255 bytes"
                )
            out += value
        out += bytes(-len(out) % 4)
        return cls(ONE_BYTE_PROFILE if one_byte else TWO_BYTE_PROFILE, bytes(out))


@dataclass(slots=True)
class RTPPacket:
    """One RTP packet. ``padding`` is the number of padding octets (0: no padding)."""

    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension: RTPHeaderExtension | None = None
    padding: int = 0

    @classmethod
    def parse(cls, data: bytes) -> RTPPacket:
        """Parses one RTP packet; raises RTPParseError if the bytes are not one."""
        try:
            b0, b1, seq, timestamp, ssrc = _HEADER.unpack_from(data)
        except (struct.error, TypeError):
            raise RTPParseError(f"RTP packet of {len(data)} bytes is shorter than 12") from None
        payload_type = b1 & 0x7F
        if b0 == 0x80 and not 72 <= payload_type <= 76:
            # The usual packet: no CSRC, header extension or padding.
            return cls(payload_type, seq, timestamp, ssrc, bytes(data[12:]), b1 > 0x7F)
        if b0 >> 6 != RTP_VERSION:
            raise RTPParseError(f"RTP version is {b0 >> 6}, not 2")
        if payload_type in _RTCP_CONFLICT:
            raise RTPParseError(f"payload type {payload_type} collides with RTCP (RFC 5761)")
        end = len(data)
        offset = RTP_HEADER_SIZE
        csrc: tuple[int, ...] = ()
        if cc := b0 & 0x0F:
            offset += 4 * cc
            if offset > end:
                raise RTPParseError(f"RTP packet too short for its {cc} CSRC identifiers")
            csrc = struct.unpack_from(f"!{cc}I", data, RTP_HEADER_SIZE)
        extension = None
        if b0 & 0x10:
            if offset + 4 > end:
                raise RTPParseError("RTP packet too short for its header extension")
            profile, words = _EXTENSION_HEADER.unpack_from(data, offset)
            ext_end = offset + 4 + 4 * words
            if ext_end > end:
                raise RTPParseError(f"RTP header extension of {words} words overruns the packet")
            extension = RTPHeaderExtension(profile, bytes(data[offset + 4 : ext_end]))
            offset = ext_end
        padding = 0
        if b0 & 0x20:
            padding = data[-1] if end > offset else 0
            if padding == 0 or padding > end - offset:
                raise RTPParseError(f"RTP padding count {padding} does not fit the packet")
            end -= padding
        return cls(
            payload_type,
            seq,
            timestamp,
            ssrc,
            bytes(data[offset:end]),
            bool(b1 & 0x80),
            csrc,
            extension,
            padding,
        )

    def serialize(self) -> bytes:
        """The packet's bytes; raises ValueError for a field out of its range."""
        payload_type = self.payload_type
        if (
            not self.csrc
            and self.extension is None
            and not self.padding
            and (0 <= payload_type < 72 or 76 < payload_type <= 127)
        ):
            # The usual packet: no CSRC, header extension or padding.
            try:
                return (
                    _HEADER.pack(
                        0x80,
                        0x80 | payload_type if self.marker else payload_type,
                        self.sequence_number,
                        self.timestamp,
                        self.ssrc,
                    )
                    + self.payload
                )
            except struct.error as exc:
                raise ValueError(f"RTP header field out of range: {exc}") from None
        if not 0 <= self.payload_type <= 127 or self.payload_type in _RTCP_CONFLICT:
            raise ValueError(f"payload type {self.payload_type}: must be 0-127 but not 72-76")
        if len(self.csrc) > 15:
            raise ValueError(f"{len(self.csrc)} CSRC identifiers: at most 15 are allowed")
        if not 0 <= self.padding <= 255:
            raise ValueError(f"padding {self.padding}: must be 0-255 octets")
        b0 = 0x80 | len(self.csrc)
        if self.padding:
            b0 |= 0x20
        if self.extension is not None:
            b0 |= 0x10
        try:
            header = _HEADER.pack(
                b0,
                (0x80 if self.marker else 0) | self.payload_type,
                self.sequence_number,
                self.timestamp,
                self.ssrc,
            )
            parts = [header]
            if self.csrc:
                parts.append(struct.pack(f"!{len(self.csrc)}I", *self.csrc))
            if self.extension is not None:
                data = self.extension.data
                if len(data) % 4 or len(data) > 0x3FFFF:
                    raise ValueError(
                        f"header extension data of {len(data)} bytes: "
                        "must be a multiple of 4, at most 262140"
                    )
                parts.append(_EXTENSION_HEADER.pack(self.extension.profile, len(data) // 4))
                parts.append(data)
        except struct.error as exc:
            raise ValueError(f"RTP header field out of range: {exc}") from None
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes((self.padding,)))
        return b"".join(parts)


class RTPPacketizer:
    """Sender-side RTP state of one stream: SSRC, next sequence number, media timestamp.

    ``timestamp`` is the RTP timestamp of the next media frame; advance() moves it on by
    the frame's samples whether or not the frame was sent (silence, DTMF in its place), so
    the receiver sees the gap in time but no gap in sequence numbers.
    """

    def __init__(
        self,
        payload_type: int,
        ssrc: int | None = None,
        *,
        sequence_number: int | None = None,
        timestamp: int | None = None,
    ) -> None:
        # RFC 3550 5.1: the initial sequence number and timestamp SHOULD be random.
        self.payload_type = payload_type
        self.ssrc = secrets.randbits(32) if ssrc is None else ssrc
        self.sequence_number = secrets.randbits(16) if sequence_number is None else sequence_number
        self.timestamp = secrets.randbits(32) if timestamp is None else timestamp

    def next_packet(
        self,
        payload: bytes,
        *,
        marker: bool = False,
        payload_type: int | None = None,
        timestamp: int | None = None,
    ) -> RTPPacket:
        """The next packet (next sequence number), at the media timestamp unless given one."""
        packet = RTPPacket(
            self.payload_type if payload_type is None else payload_type,
            self.sequence_number,
            self.timestamp if timestamp is None else timestamp,
            self.ssrc,
            payload,
            marker,
        )
        self.sequence_number = (self.sequence_number + 1) & 0xFFFF
        return packet

    def next_header(
        self, marker: bool = False, payload_type: int | None = None, timestamp: int | None = None
    ) -> bytes:
        """The 12-byte header of the next packet (no CSRC, extension or padding): what
        next_packet() would serialize, without the packet object a sender need not make."""
        header = _HEADER.pack(
            0x80,
            (self.payload_type if payload_type is None else payload_type) | (0x80 if marker else 0),
            self.sequence_number,
            self.timestamp if timestamp is None else timestamp,
            self.ssrc,
        )
        self.sequence_number = (self.sequence_number + 1) & 0xFFFF
        return header

    def media_packet(
        self, payload: bytes | memoryview | np.ndarray, marker: bool, samples: int
    ) -> bytes:
        """The next packet of a media frame: next_header(marker) + ``payload`` (any
        contiguous bytes-like object, such as a row of uint8), then advance(samples)."""
        timestamp = self.timestamp
        data = b"".join(
            (
                _HEADER.pack(
                    0x80,
                    self.payload_type | (0x80 if marker else 0),
                    self.sequence_number,
                    timestamp,
                    self.ssrc,
                ),
                payload,
            )
        )
        self.sequence_number = (self.sequence_number + 1) & 0xFFFF
        self.timestamp = (timestamp + samples) & 0xFFFFFFFF
        return data

    def advance(self, samples: int) -> None:
        """Moves the media timestamp on by one frame of ``samples`` clock ticks."""
        self.timestamp = (self.timestamp + samples) & 0xFFFFFFFF
