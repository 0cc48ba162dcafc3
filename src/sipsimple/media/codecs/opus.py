"""Opus through PyAV's libopus (RFC 7587): mono, 48 kHz, 20 ms frames by default.

The remote side's fmtp tells our encoder what it wants to receive: maxplaybackrate limits
the coded bandwidth, maxaveragebitrate caps the bit rate, cbr, useinbandfec and minptime
are honoured; stereo is accepted but we always send mono (RFC 7587 allows it).  Our own
decoder cannot use in-band FEC through PyAV, so the fmtp we offer says useinbandfec=0.

Loss concealment is libopus's own PLC: a packet reduced to its TOC byte carries a frame
of length zero, which the decoder treats as lost (RFC 6716 3.2.1).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from sipsimple.media.codecs._pyav import PyAVDecoder, PyAVEncoder
from sipsimple.media.codecs.base import AudioCodec, CodecInfo

__all__ = ["OPUS_INFO", "Opus", "OpusParameters"]

OPUS_INFO = CodecInfo(
    "opus", 111, 48000, 48000, channels=2, ptime=20,
    fmtp="maxplaybackrate=48000;stereo=0;useinbandfec=0",
)  # fmt: skip

DEFAULT_BITRATE = 32000
_FRAME_DURATIONS = (10, 20, 40, 60)  # milliseconds; what frame_duration accepts for voice
# Opus bandwidths (RFC 7587 table 1) and FFmpeg's matching "cutoff" values in Hz.
_PARAMETER_RANGES = {
    "maxplaybackrate": (8000, 48000),
    "sprop_maxcapturerate": (8000, 48000),
    "maxaveragebitrate": (6000, 510000),
    "minptime": (3, 120),
    "stereo": (0, 1),
    "sprop_stereo": (0, 1),
    "cbr": (0, 1),
    "useinbandfec": (0, 1),
    "usedtx": (0, 1),
}
_CUTOFFS = ((8000, 4000), (12000, 6000), (16000, 8000), (24000, 12000), (48000, 20000))


@dataclass(frozen=True, slots=True)
class OpusParameters:
    """The RFC 7587 fmtp parameters; parse() ignores unknown or malformed values."""

    maxplaybackrate: int = 48000
    sprop_maxcapturerate: int = 48000
    maxaveragebitrate: int | None = None
    stereo: bool = False
    sprop_stereo: bool = False
    cbr: bool = False
    useinbandfec: bool = False
    usedtx: bool = False
    minptime: int | None = None

    @classmethod
    def parse(cls, fmtp: str) -> OpusParameters:
        values: dict[str, object] = {}
        for item in fmtp.split(";"):
            key, _, value = item.partition("=")
            name = key.strip().lower().replace("-", "_")
            try:
                number = int(value.strip())
            except ValueError:
                continue
            bounds = _PARAMETER_RANGES.get(name)
            if bounds is not None and bounds[0] <= number <= bounds[1]:
                values[name] = bool(number) if bounds == (0, 1) else number
        return cls(**values)  # type: ignore[arg-type]

    def __str__(self) -> str:
        items = [f"maxplaybackrate={self.maxplaybackrate}"]
        if self.sprop_maxcapturerate != 48000:
            items.append(f"sprop-maxcapturerate={self.sprop_maxcapturerate}")
        if self.maxaveragebitrate is not None:
            items.append(f"maxaveragebitrate={self.maxaveragebitrate}")
        items.append(f"stereo={int(self.stereo)}")
        if self.sprop_stereo:
            items.append("sprop-stereo=1")
        if self.cbr:
            items.append("cbr=1")
        items.append(f"useinbandfec={int(self.useinbandfec)}")
        if self.usedtx:
            items.append("usedtx=1")
        if self.minptime is not None:
            items.append(f"minptime={self.minptime}")
        return ";".join(items)


class Opus(AudioCodec):
    """Opus encoder configured by the remote fmtp, and a libopus decoder with PLC."""

    def __init__(self, info: CodecInfo = OPUS_INFO, remote_fmtp: str = "") -> None:
        self.parameters = OpusParameters.parse(remote_fmtp)
        ptime = max(info.ptime, self.parameters.minptime or 0)
        ptime = next((d for d in _FRAME_DURATIONS if d >= ptime), _FRAME_DURATIONS[-1])
        super().__init__(replace(info, ptime=ptime))
        bit_rate = min(DEFAULT_BITRATE, self.parameters.maxaveragebitrate or DEFAULT_BITRATE)
        cutoff = next(c for rate, c in _CUTOFFS if self.parameters.maxplaybackrate <= rate)
        options = {
            "application": "voip",
            "frame_duration": str(ptime),
            "vbr": "off" if self.parameters.cbr else "on",
            "cutoff": str(cutoff),
        }
        if self.parameters.useinbandfec:
            options |= {"fec": "1", "packet_loss": "10"}
        self._encoder = PyAVEncoder("libopus", info.sample_rate, options, bit_rate)
        self._decoder = PyAVDecoder("libopus", info.sample_rate)
        self._toc: int | None = None

    def _encode(self, pcm: np.ndarray) -> bytes:
        if len(pcm) != self.info.samples_per_frame:
            raise ValueError(
                f"Opus encodes frames of {self.info.samples_per_frame} samples "
                f"({self.info.ptime} ms), got {len(pcm)}"
            )
        return self._encoder.encode(pcm)

    def _decode(self, payload: bytes) -> np.ndarray:
        pcm = self._decoder.decode(payload)
        self._toc = payload[0]
        return pcm

    def conceal(self) -> np.ndarray:
        if self._toc is None:
            return super().conceal()
        # Code 0 (one frame) with no frame data: the decoder runs its packet loss concealment
        # for one frame of the configuration (and so the duration) last received.
        return self._decoder.decode(bytes((self._toc & 0xFC,)))
