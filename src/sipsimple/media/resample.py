"""Sample-rate conversion between a codec's rate and the mixer's, frame by frame.

libswresample (through PyAV) keeps its filter state from one frame to the next, so frame
boundaries make no clicks.  It holds back a few samples at first (its filter delay); we
hand out exactly round(total input * ratio) samples in total, padding the very start with
silence, so a 20 ms frame in gives a 20 ms frame out every time at a fixed small latency.
"""

from __future__ import annotations

import numpy as np
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler

__all__ = ["Resampler"]


class Resampler:
    """Converts mono int16 PCM from ``input_rate`` to ``output_rate``, keeping state."""

    def __init__(self, input_rate: int, output_rate: int) -> None:
        if input_rate <= 0 or output_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {input_rate}, {output_rate}")
        self.input_rate = input_rate
        self.output_rate = output_rate
        self._resampler: AudioResampler | None = None
        self._frame: AudioFrame | None = None
        self.reset()

    def reset(self) -> None:
        """Forgets all state, e.g. when the stream restarts after a pause."""
        self._resampler = None
        if self.input_rate != self.output_rate:
            self._resampler = AudioResampler(format="s16", layout="mono", rate=self.output_rate)
        self._pending = np.zeros(0, dtype=np.int16)
        self._samples_in = 0
        self._samples_out = 0
        self._started = False

    def process(self, pcm: np.ndarray) -> np.ndarray:
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
            raise ValueError("process() takes a one-dimensional numpy int16 array")
        if self._resampler is None or not len(pcm):
            return pcm
        # libswresample converts at once and keeps no reference to its input, so one
        # input frame per length is reused (half the cost of making one per call).
        frame = self._frame
        if frame is None or frame.samples != len(pcm):
            frame = self._frame = AudioFrame(format="s16", layout="mono", samples=len(pcm))
            frame.sample_rate = self.input_rate
        frame.planes[0].update(np.ascontiguousarray(pcm).data)
        produced = [
            np.frombuffer(f.planes[0], dtype=np.int16, count=f.samples)
            for f in self._resampler.resample(frame)
        ]
        available = np.concatenate([self._pending, *produced])
        self._samples_in += len(pcm)
        due = self._samples_in * self.output_rate // self.input_rate - self._samples_out
        if len(available) < due:
            # Only at the start (the filter delay) or by a rounding sample later on: pad at
            # the front with silence at first, later by holding the last sample.
            fill = 0 if not self._started else (available[-1] if len(available) else 0)
            missing = np.full(due - len(available), fill, dtype=np.int16)
            available = (
                np.concatenate([missing, available])
                if not self._started
                else np.concatenate([available, missing])
            )
        self._started = True
        self._pending = available[due:]
        self._samples_out += due
        return available[:due]
