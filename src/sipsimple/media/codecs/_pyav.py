"""Thin glue between our int16 frames and PyAV (FFmpeg) audio encoders and decoders."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
from av.audio.frame import AudioFrame

from sipsimple.media.errors import CodecError

__all__ = ["PyAVDecoder", "PyAVEncoder", "pyav_supports"]


def pyav_supports(name: str) -> bool:
    """Whether this PyAV build can both encode and decode with codec ``name``."""
    try:
        av.codec.Codec(name, "w")
        av.codec.Codec(name, "r")
    except (av.error.FFmpegError, ValueError):  # UnknownCodecError is a ValueError too
        return False
    return True


class PyAVEncoder:
    def __init__(
        self, name: str, sample_rate: int, options: dict[str, str], bit_rate: int | None = None
    ):
        try:
            context = av.CodecContext.create(name, "w")
            context.sample_rate = sample_rate
            context.layout = "mono"
            context.format = "s16"
            context.time_base = Fraction(1, sample_rate)
            if bit_rate is not None:
                context.bit_rate = bit_rate
            context.options = options
            context.open()
        except (av.error.FFmpegError, ValueError) as exc:
            raise CodecError(f"cannot open the {name} encoder: {exc}") from exc
        self._context = context
        self._sample_rate = sample_rate
        self._pts = 0
        self._frame: AudioFrame | None = None

    def encode(self, pcm: np.ndarray) -> bytes:
        # The encoder is done with a frame's samples when encode() returns (libopus and
        # g722 copy what they keep), so one input frame per length is reused: a third of
        # the cost of making one per call.
        frame = self._frame
        if frame is None or frame.samples != len(pcm):
            frame = self._frame = AudioFrame(format="s16", layout="mono", samples=len(pcm))
            frame.sample_rate = self._sample_rate
        frame.planes[0].update(np.ascontiguousarray(pcm).data)
        frame.pts = self._pts
        self._pts += len(pcm)
        try:
            return b"".join(bytes(packet) for packet in self._context.encode(frame))
        except (av.error.FFmpegError, ValueError) as exc:
            raise CodecError(f"encoding failed: {exc}") from exc


class PyAVDecoder:
    def __init__(self, name: str, sample_rate: int):
        try:
            context = av.CodecContext.create(name, "r")
            context.sample_rate = sample_rate
            context.layout = "mono"
            context.open()
        except (av.error.FFmpegError, ValueError) as exc:
            raise CodecError(f"cannot open the {name} decoder: {exc}") from exc
        self._context = context
        self._name = name

    def decode(self, payload: bytes) -> np.ndarray:
        try:
            frames = self._context.decode(av.Packet(payload))
        except (av.error.FFmpegError, ValueError) as exc:
            raise CodecError(f"undecodable {self._name} payload: {exc}") from exc
        arrays = [_mono_int16(frame) for frame in frames]
        if not arrays:
            return np.zeros(0, dtype=np.int16)
        return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def _mono_int16(frame: AudioFrame) -> np.ndarray:
    if frame.format.name == "s16":
        return np.frombuffer(frame.planes[0], dtype=np.int16, count=frame.samples)
    if frame.format.name in ("flt", "fltp"):
        return np.clip(frame.to_ndarray()[0] * 32768.0, -32768, 32767).astype(np.int16)
    raise CodecError(f"decoder produced unexpected sample format {frame.format.name}")
