"""Audio codecs behind one interface, and the registry of those we offer.

We offer only codecs we can both encode and decode: Opus through the libopus in PyAV's
wheel (called directly, PyAV itself where the wheel has none), G.722 through PyAV, G.711
through our own tables.  (PyAV decodes Speex, GSM, G.729 and iLBC but cannot encode them.)
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache

from sipsimple.media.codecs._pyav import pyav_supports
from sipsimple.media.codecs.base import AudioCodec, CodecInfo
from sipsimple.media.codecs.g711 import PCMA, PCMA_INFO, PCMU, PCMU_INFO
from sipsimple.media.codecs.g722 import G722, G722_INFO
from sipsimple.media.codecs.opus import OPUS_INFO, Opus, OpusParameters
from sipsimple.media.errors import CodecError

__all__ = [
    "CODECS",
    "AudioCodec",
    "CodecInfo",
    "OpusParameters",
    "available_codecs",
    "codec_info",
    "create_codec",
]

# In order of preference.
CODECS: dict[str, CodecInfo] = {
    info.name: info for info in (OPUS_INFO, G722_INFO, PCMU_INFO, PCMA_INFO)
}
_PYAV_NAMES = {"opus": "libopus", "G722": "g722"}


@cache
def available_codecs() -> tuple[str, ...]:
    """Names of the codecs this installation can use, in order of preference."""
    return tuple(
        name for name in CODECS if name not in _PYAV_NAMES or pyav_supports(_PYAV_NAMES[name])
    )


def codec_info(name: str) -> CodecInfo:
    """The registry entry of ``name`` (case-insensitive, as in SDP); raises CodecError."""
    for info in CODECS.values():
        if info.name.lower() == name.lower():
            return info
    raise CodecError(f"unknown codec {name!r}; known: {', '.join(CODECS)}")


def create_codec(
    name: str, *, payload_type: int | None = None, ptime: int | None = None, fmtp: str = ""
) -> AudioCodec:
    """A new codec instance for one stream.

    payload_type is the negotiated one (dynamic types differ per call); ptime the
    negotiated packet duration in ms; fmtp the remote side's format parameters.
    """
    info = codec_info(name)
    if info.name not in available_codecs():
        raise CodecError(f"codec {info.name} is not available in this installation")
    if payload_type is not None:
        if not 0 <= payload_type <= 127:
            raise ValueError(f"payload type {payload_type}: must be 0-127")
        info = replace(info, payload_type=payload_type)
    if ptime is not None:
        if not 10 <= ptime <= 120 or ptime % 10:
            raise ValueError(f"ptime {ptime}: must be a multiple of 10 ms from 10 to 120")
        info = replace(info, ptime=ptime)
    if info.name == "opus":
        return Opus(info, fmtp)
    if info.name == "G722":
        return G722(info)
    return PCMU(info) if info.name == "PCMU" else PCMA(info)
