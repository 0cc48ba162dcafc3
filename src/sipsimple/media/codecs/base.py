"""The codec interface and what every codec shares: description, input checks, concealment."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import ClassVar

import numpy as np

from sipsimple.media.errors import CodecError

__all__ = ["AudioCodec", "CodecInfo"]

FADE_FRAMES = 4  # repeat-and-fade reaches silence after this many concealed frames


@dataclass(frozen=True, slots=True)
class CodecInfo:
    """How a codec appears in SDP and what PCM it takes.

    clock_rate is the RTP timestamp rate (rtpmap); sample_rate is the rate of the PCM that
    encode() takes and decode() returns (G.722: 8000 vs 16000, RFC 3551 4.5.2).  channels
    is the rtpmap channel count (opus/48000/2, RFC 7587); the PCM is always mono.
    payload_type is the static type, or the dynamic one we offer by default.
    """

    name: str
    payload_type: int
    clock_rate: int
    sample_rate: int
    channels: int = 1
    ptime: int = 20
    fmtp: str = ""

    @property
    def rtpmap(self) -> str:
        channels = f"/{self.channels}" if self.channels != 1 else ""
        return f"{self.name}/{self.clock_rate}{channels}"

    @property
    def samples_per_frame(self) -> int:
        """PCM samples in one packet of ``ptime`` milliseconds."""
        return self.sample_rate * self.ptime // 1000

    @property
    def timestamp_increment(self) -> int:
        """RTP clock ticks in one packet of ``ptime`` milliseconds."""
        return self.clock_rate * self.ptime // 1000


class AudioCodec(ABC):
    """Encoder and decoder of one stream, with loss concealment on the decoding side.

    encode() takes one packet's worth of mono int16 PCM at ``info.sample_rate``; decode()
    returns the same kind of array and raises CodecError for an undecodable payload.
    conceal() returns a frame to play in place of a lost packet: by default the last
    decoded frame repeated with a fade to silence over FADE_FRAMES frames.  A codec whose
    packets carry a copy of the frame before them (Opus's in-band FEC) rebuilds a lost
    frame from the next packet with decode_fec(); the others return None there.
    """

    # A stateless codec encodes the frames of many streams in one step: encode_many takes
    # int16 frames as the rows of a 2-D array and returns their payloads as rows of uint8.
    encode_many: ClassVar[Callable[[np.ndarray], np.ndarray] | None] = None

    def __init__(self, info: CodecInfo) -> None:
        self.info = info
        self._last = np.zeros(info.samples_per_frame, dtype=np.int16)
        self._concealed = 0

    @abstractmethod
    def _encode(self, pcm: np.ndarray) -> bytes: ...

    @abstractmethod
    def _decode(self, payload: bytes) -> np.ndarray: ...

    def encode(self, pcm: np.ndarray) -> bytes:
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
            raise ValueError("encode() takes a one-dimensional numpy int16 array")
        return self._encode(pcm)

    def decode(self, payload: bytes) -> np.ndarray:
        if not payload:
            raise CodecError(f"empty {self.info.name} payload")
        pcm = self._decode(payload)
        self._last = pcm
        self._concealed = 0
        return pcm

    def decode_fec(self, payload: bytes, samples: int) -> np.ndarray | None:
        """The ``samples`` samples (at ``info.sample_rate``) lost just before ``payload``,
        from the forward error correction data it carries, or None when there is none to
        use (then conceal()).  After audio from it, decode ``payload`` itself next."""
        pcm = self._decode_fec(payload, samples)
        if pcm is not None:  # what conceal() repeats next, as after decode()
            self._last = pcm
            self._concealed = 0
        return pcm

    def _decode_fec(self, payload: bytes, samples: int) -> np.ndarray | None:
        """decode_fec() for a codec with FEC; the others have none."""
        return None

    def plan_for_loss(self, fraction: float) -> None:
        """The share (0.0-1.0) of our packets the peer reports lost, for a codec whose
        redundancy follows it (Opus's in-band FEC); the others ignore it."""
        return None

    def conceal(self) -> np.ndarray:
        k = self._concealed
        self._concealed += 1
        if k >= FADE_FRAMES or not len(self._last):
            return np.zeros(len(self._last), dtype=np.int16)
        return (self._last * _ramp(k, len(self._last))).astype(np.int16)


@cache
def _ramp(k: int, samples: int) -> np.ndarray:
    """The gains of the ``k``-th concealed frame (np.linspace costs more than the rest)."""
    ramp = np.linspace(1 - k / FADE_FRAMES, 1 - (k + 1) / FADE_FRAMES, samples)
    ramp.flags.writeable = False
    return ramp
