"""G.711 mu-law (PCMU) and A-law (PCMA) through lookup tables.

The tables are computed once, vectorized, from the ITU-T G.191 reference algorithm
(ulaw_compress/alaw_compress take the 16-bit sample's 14/13 most significant bits, with
one's complement for negative values), so encoding is one table lookup per sample.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sipsimple.media.codecs.base import AudioCodec, CodecInfo

__all__ = ["PCMA", "PCMU", "alaw_decode", "alaw_encode", "ulaw_decode", "ulaw_encode"]


def _magnitudes() -> tuple[np.ndarray, np.ndarray]:
    """Every int16 value in uint16 index order, and whether it is non-negative."""
    x = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)
    return x, x >= 0


def _bit_length(values: np.ndarray) -> np.ndarray:
    length = np.zeros_like(values)
    for bit in range(16):
        length += (values >> bit) > 0
    return length


def _ulaw_compress_table() -> np.ndarray:
    x, positive = _magnitudes()
    absno = np.where(positive, x >> 2, (~x) >> 2) + 33
    absno = np.minimum(absno, 0x1FFF)
    segno = 1 + _bit_length(absno >> 6)
    high = 8 - segno
    low = 15 - ((absno >> segno) & 0x0F)
    code = (high << 4) | low
    return np.where(positive, code | 0x80, code).astype(np.uint8)


def _ulaw_expand_table() -> np.ndarray:
    code = np.arange(256, dtype=np.int32)
    sign = np.where(code < 0x80, -1, 1)
    mantissa = ~code
    exponent = (mantissa >> 4) & 0x07
    step = 4 << (exponent + 1)
    magnitude = (0x80 << exponent) + step * (mantissa & 0x0F) + step // 2 - 4 * 33
    return (sign * magnitude).astype(np.int16)


def _alaw_compress_table() -> np.ndarray:
    x, positive = _magnitudes()
    ix = np.where(positive, x >> 4, (~x) >> 4)
    exponent = np.maximum(_bit_length(ix) - 4, 1)
    segmented = (exponent << 4) + (ix >> (exponent - 1)) - 16
    ix = np.where(ix > 15, segmented, ix)
    code = np.where(positive, ix | 0x80, ix)
    return (code ^ 0x55).astype(np.uint8)


def _alaw_expand_table() -> np.ndarray:
    code = np.arange(256, dtype=np.int32)
    ix = (code ^ 0x55) & 0x7F
    exponent = ix >> 4
    mantissa = ix & 0x0F
    mantissa = np.where(exponent > 0, mantissa + 16, mantissa)
    mantissa = (mantissa << 4) + 0x08
    mantissa = np.where(exponent > 1, mantissa << np.maximum(exponent - 1, 0), mantissa)
    return np.where(code > 127, mantissa, -mantissa).astype(np.int16)


# Lookups are table.take(codes): what table[codes] gives, twice as fast for a frame or a
# group of frames (no general indexing machinery).
_ULAW_ENCODE = _ulaw_compress_table()
_ULAW_DECODE = _ulaw_expand_table()
_ALAW_ENCODE = _alaw_compress_table()
_ALAW_DECODE = _alaw_expand_table()


def ulaw_encode(pcm: np.ndarray) -> bytes:
    return _ULAW_ENCODE.take(pcm.view(np.uint16)).tobytes()


def _ulaw_encode_many(pcm: np.ndarray) -> np.ndarray:
    return _ULAW_ENCODE.take(pcm.view(np.uint16))


def _alaw_encode_many(pcm: np.ndarray) -> np.ndarray:
    return _ALAW_ENCODE.take(pcm.view(np.uint16))


def ulaw_decode(data: bytes) -> np.ndarray:
    return _ULAW_DECODE.take(np.frombuffer(data, dtype=np.uint8))


def alaw_encode(pcm: np.ndarray) -> bytes:
    return _ALAW_ENCODE.take(pcm.view(np.uint16)).tobytes()


def alaw_decode(data: bytes) -> np.ndarray:
    return _ALAW_DECODE.take(np.frombuffer(data, dtype=np.uint8))


class _G711(AudioCodec):
    _expand: np.ndarray  # code -> sample

    @classmethod
    def decode_many(
        cls, codecs: Sequence[AudioCodec], payloads: Sequence[bytes] | np.ndarray
    ) -> np.ndarray:
        """decode() of one payload for each of ``codecs`` (all of one length, not empty) in
        one table lookup: row i of the result is payloads[i] decoded, which codecs[i] keeps
        for its concealment as decode() does.  ``payloads`` may be the rows of a uint8
        array."""
        if not isinstance(payloads, np.ndarray):
            payloads = np.frombuffer(b"".join(payloads), dtype=np.uint8).reshape(len(codecs), -1)
        pcm = cls._expand.take(payloads)
        for codec, row in zip(codecs, pcm, strict=True):
            codec._last = row
            codec._concealed = 0
        return pcm


class PCMU(_G711):
    """G.711 mu-law, static payload type 0."""

    encode_many = staticmethod(_ulaw_encode_many)
    _expand = _ULAW_DECODE

    def _encode(self, pcm: np.ndarray) -> bytes:
        return ulaw_encode(pcm)

    def _decode(self, payload: bytes) -> np.ndarray:
        return ulaw_decode(payload)


class PCMA(_G711):
    """G.711 A-law, static payload type 8."""

    encode_many = staticmethod(_alaw_encode_many)
    _expand = _ALAW_DECODE

    def _encode(self, pcm: np.ndarray) -> bytes:
        return alaw_encode(pcm)

    def _decode(self, payload: bytes) -> np.ndarray:
        return alaw_decode(payload)


PCMU_INFO = CodecInfo("PCMU", 0, 8000, 8000)
PCMA_INFO = CodecInfo("PCMA", 8, 8000, 8000)
