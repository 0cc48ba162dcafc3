"""Sample-rate conversion between a codec's rate and the mixer's, frame by frame.

Every call's audio crosses it twice per 20 ms, so it is on the hot path.  Integer ratios
(8/16/24 kHz <-> 48 kHz, 8 <-> 16 kHz) use our own polyphase FIR in numpy, a few times
cheaper than a trip through PyAV; other ratios (44.1 kHz) use libswresample through PyAV.

The FIR is a Kaiser-windowed sinc centred on the lower rate's Nyquist frequency: flat
(within 0.05 dB) up to 0.85 of it, at least 80 dB down from 1.15 of it, so whatever
folds over lands above the passband (3.4 kHz for G.711).  Its delay is ``PHASE_TAPS / 2``
samples of the lower rate (about 2 ms at 8 kHz).

Both kinds keep their filter state from one frame to the next, so frame boundaries make no
clicks, and hand out exactly floor(total input * ratio) samples in total: a 20 ms frame in
gives a 20 ms frame out every time, the filter's delay showing as silence at the start.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler
from numpy.lib.stride_tricks import as_strided

__all__ = ["Resampler", "ResamplerBank"]

MAX_FIR_RATIO = 12  # integer ratios up to this use the FIR; its length grows with the ratio
PASSBAND = 0.85  # of the lower rate's Nyquist frequency
STOPBAND = 1.15
ATTENUATION = 80.0  # dB in the stopband
_DTYPE = np.float32  # 24-bit mantissa: rounding noise far below int16's
_MAX_SHAPES = 8  # work buffers kept for this many input lengths
BLOCK_OUTPUTS = 40  # a ResamplerBank computes this many output samples (about) per product row
# when it interpolates; when it decimates, a block's window overlaps the next by the filter's
# span, so fewer outputs per row waste fewer multiplications on the band's zeros.
DECIMATOR_OUTPUTS = 20
# OpenBLAS multiplies on every core once a product exceeds 2**18 multiply-adds, and its idle
# threads then spin: on a machine shared by busy processes that costs far more than it
# saves, so a ResamplerBank stacks its product in slices below that size.
SINGLE_THREAD_MACS = 1 << 18


def _design(ratio: int) -> tuple[np.ndarray, int]:
    """The lowpass (unit gain at DC, at the higher rate) and its taps per phase."""
    width = (STOPBAND - PASSBAND) * math.pi / ratio  # transition, radians per sample
    taps = math.ceil((ATTENUATION - 7.95) / (2.285 * width)) + 1  # Kaiser's estimate
    phase_taps = math.ceil(taps / ratio)
    length = phase_taps * ratio - 1  # odd: the delay is a whole number of samples
    beta = 0.1102 * (ATTENUATION - 8.7)
    n = np.arange(length) - (length - 1) / 2
    h = np.sinc(n / ratio) * np.kaiser(length, beta)
    return np.append(h / h.sum(), 0.0), phase_taps


class _Interpolator:
    """Upsampling by an integer ``ratio``: each input sample gives ``ratio`` outputs."""

    def __init__(self, ratio: int) -> None:
        h, k = _design(ratio)
        # Output n*ratio + p = sum_j x[n - j] * h[p + j*ratio] * ratio; row i of the input
        # window holds x[n - k + 1 + i], so it meets coefficient h[p + (k - 1 - i)*ratio].
        self._taps = np.ascontiguousarray(
            (h * ratio).reshape(k, ratio)[::-1], dtype=_DTYPE
        )  # (k, ratio)
        self._ratio = ratio
        self._keep = k - 1
        self._history = np.zeros(k - 1, dtype=_DTYPE)
        self._work: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def process(self, pcm: np.ndarray) -> np.ndarray:
        n = len(pcm)
        work = self._work.get(n)
        if work is None:
            if len(self._work) >= _MAX_SHAPES:
                self._work.clear()
            buffer = np.zeros(self._keep + n, dtype=_DTYPE)
            size = buffer.itemsize
            windows = as_strided(buffer, (n, self._keep + 1), (size, size), writeable=False)
            work = self._work[n] = (buffer, windows, np.empty((n, self._ratio), dtype=_DTYPE))
        buffer, windows, out = work
        keep = self._keep
        buffer[:keep] = self._history
        buffer[keep:] = pcm
        self._history[:] = buffer[n:]
        np.matmul(windows, self._taps, out=out)
        return _to_int16(out.reshape(-1))


class _Decimator:
    """Downsampling by an integer ``ratio``: one output per ``ratio`` inputs."""

    def __init__(self, ratio: int) -> None:
        h, k = _design(ratio)
        self._taps = np.ascontiguousarray(h[::-1], dtype=_DTYPE)  # (k * ratio,)
        self._ratio = ratio
        self._span = k * ratio  # inputs behind one output
        # What the next call's first output still needs: (k - 1) * ratio + the remainder.
        self._history = np.zeros((k - 1) * ratio, dtype=_DTYPE)
        self._work: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def process(self, pcm: np.ndarray) -> np.ndarray:
        keep = len(self._history)
        total = keep + len(pcm)
        count = (total - self._span) // self._ratio + 1
        work = self._work.get(total)
        if work is None:
            if len(self._work) >= _MAX_SHAPES:
                self._work.clear()
            buffer = np.zeros(total, dtype=_DTYPE)
            size = buffer.itemsize
            windows = as_strided(
                buffer, (count, self._span), (self._ratio * size, size), writeable=False
            )
            work = self._work[total] = (buffer, windows, np.empty(count, dtype=_DTYPE))
        buffer, windows, out = work
        buffer[:keep] = self._history
        buffer[keep:] = pcm
        self._history = buffer[count * self._ratio :].copy()
        np.dot(windows, self._taps, out=out)
        return _to_int16(out)


_LOWEST, _HIGHEST = _DTYPE(-32768), _DTYPE(32767)


def _to_int16(samples: np.ndarray) -> np.ndarray:
    """Rounded and saturated (two ufuncs: np.clip's wrapper costs more for a frame)."""
    np.rint(samples, out=samples)
    np.minimum(samples, _HIGHEST, out=samples)
    np.maximum(samples, _LOWEST, out=samples)
    return samples.astype(np.int16)


class _SwResampler:
    """Any ratio, through libswresample (PyAV)."""

    def __init__(self, input_rate: int, output_rate: int) -> None:
        self.input_rate = input_rate
        self.output_rate = output_rate
        self._resampler = AudioResampler(format="s16", layout="mono", rate=output_rate)
        self._frame: AudioFrame | None = None
        self._pending = np.zeros(0, dtype=np.int16)
        self._samples_in = 0
        self._samples_out = 0
        self._started = False

    def process(self, pcm: np.ndarray) -> np.ndarray:
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
            # libswresample holds back its filter delay at first: pad at the front with
            # silence then; later a rounding sample is made by holding the last one.
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


class Resampler:
    """Converts mono int16 PCM from ``input_rate`` to ``output_rate``, keeping state."""

    def __init__(self, input_rate: int, output_rate: int) -> None:
        if input_rate <= 0 or output_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {input_rate}, {output_rate}")
        self.input_rate = input_rate
        self.output_rate = output_rate
        self._converter: _Interpolator | _Decimator | _SwResampler | None = None
        self.reset()

    @property
    def method(self) -> str:
        """ "none" (same rates), "fir" (our polyphase filter) or "swresample" (PyAV)."""
        converter = self._converter
        if converter is None:
            return "none"
        return "swresample" if isinstance(converter, _SwResampler) else "fir"

    def reset(self) -> None:
        """Forgets all state, e.g. when the stream restarts after a pause."""
        low, high = sorted((self.input_rate, self.output_rate))
        ratio, remainder = divmod(high, low)
        if ratio == 1 and not remainder:
            self._converter = None
        elif remainder or ratio > MAX_FIR_RATIO:
            self._converter = _SwResampler(self.input_rate, self.output_rate)
        elif self.output_rate > self.input_rate:
            self._converter = _Interpolator(ratio)
        else:
            self._converter = _Decimator(ratio)

    def process(self, pcm: np.ndarray) -> np.ndarray:
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
            raise ValueError("process() takes a one-dimensional numpy int16 array")
        if self._converter is None or not len(pcm):
            return pcm
        return self._converter.process(pcm)


class ResamplerBank:
    """The Resamplers of many streams of one integer ratio and frame length, run at once.

    Each stream holds a lane (open()/close()); process() converts one frame of every lane
    it is given in a single matrix product, so the per-frame cost is a few numpy calls for
    all the calls a clock serves instead of a dozen per call.  The filter is the FIR of
    Resampler; the product takes each block of about BLOCK_OUTPUTS output samples from a
    window of the input through a banded (block Toeplitz) matrix, which BLAS multiplies
    several times faster than the strided windows of the one-stream form.
    """

    def __init__(self, input_rate: int, output_rate: int, frame: int) -> None:
        if not self.supports(input_rate, output_rate, frame):
            raise ValueError(
                f"a ResamplerBank needs an integer ratio up to {MAX_FIR_RATIO} and whole "
                f"frames: {input_rate} -> {output_rate} Hz, {frame} samples"
            )
        self.input_rate = input_rate
        self.output_rate = output_rate
        self.frame = frame
        up = output_rate > input_rate
        ratio = max(input_rate, output_rate) // min(input_rate, output_rate)
        h, k = _design(ratio)
        self.output_frame = frame * ratio if up else frame // ratio
        if up:
            # Output c*ratio + p = sum_i x[c + i] * taps[i, p] over a window of k inputs.
            taps = (h * ratio).reshape(k, ratio)[::-1]
            step = _divisor_near(frame, BLOCK_OUTPUTS // ratio or 1)  # inputs per block
            window = step + k - 1
            matrix = np.zeros((window, step * ratio))
            for s in range(step):
                matrix[s : s + k, s * ratio : (s + 1) * ratio] = taps
            self._keep = k - 1
        else:
            # Output c = sum_i x[c*ratio + i] * h[::-1][i] over a window of k*ratio inputs.
            outputs = _divisor_near(self.output_frame, DECIMATOR_OUTPUTS)
            span = k * ratio
            step = outputs * ratio
            window = step - ratio + span
            matrix = np.zeros((window, outputs))
            for s in range(outputs):
                matrix[s * ratio : s * ratio + span, s] = h[::-1]
            self._keep = span - ratio
        self._matrix = matrix.astype(_DTYPE)
        self._step = step
        self._window = window
        self._blocks = frame // step
        self._slice = max(1, SINGLE_THREAD_MACS // matrix.size)  # product rows per slice
        self._history = np.zeros((0, self._keep), dtype=_DTYPE)
        self._free: list[int] = []
        self._work: dict[int, tuple[np.ndarray, ...]] = {}

    @staticmethod
    def supports(input_rate: int, output_rate: int, frame: int) -> bool:
        low, high = sorted((input_rate, output_rate))
        ratio, remainder = divmod(high, low) if low > 0 else (0, 1)
        if remainder or not 1 < ratio <= MAX_FIR_RATIO or frame <= 0:
            return False
        return input_rate < output_rate or frame % ratio == 0

    def open(self) -> int:
        """A lane for a new stream, its filter state silent."""
        if not self._free:
            lanes = len(self._history)
            grown = np.zeros((max(8, 2 * lanes), self._keep), dtype=_DTYPE)
            grown[:lanes] = self._history
            self._history = grown
            self._free = list(range(len(grown) - 1, lanes - 1, -1))
        lane = self._free.pop()
        self._history[lane] = 0
        return lane

    def close(self, lane: int) -> None:
        self._free.append(lane)

    def process(self, lanes: Sequence[int], pcm: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Row i of ``pcm`` (int16, one frame per row: a matrix, or a list of frames that
        are written straight into the work buffer) is the next frame of lanes[i]; the
        result's row i is its converted frame."""
        work = self._work.get(len(lanes))
        if work is None:
            work = self._prepare(len(lanes))
        buffer, windows, index, rows, target, product, used = work
        keep = self._keep
        index[:] = lanes
        np.take(self._history, index, axis=0, out=buffer[:, :keep], mode="clip")
        buffer[:, keep:] = pcm
        self._history[index] = buffer[:, self.frame :]
        np.copyto(target, windows)
        np.matmul(rows, self._matrix, out=product)
        return _to_int16(used).reshape(len(lanes), self.output_frame)

    def _prepare(self, count: int) -> tuple[np.ndarray, ...]:
        """The work buffers for ``count`` lanes at once."""
        if len(self._work) >= _MAX_SHAPES:
            self._work.clear()
        buffer = np.zeros((count, self._keep + self.frame), dtype=_DTYPE)
        size = buffer.itemsize
        windows = as_strided(
            buffer,
            (count, self._blocks, self._window),
            (buffer.strides[0], self._step * size, size),
            writeable=False,
        )
        needed = count * self._blocks  # product rows
        slices = -(-needed // self._slice)
        per_slice = -(-needed // slices)  # as even as can be: few rows computed for nothing
        rows = np.zeros((slices, per_slice, self._window), dtype=_DTYPE)
        target = rows.reshape(-1, self._window)[:needed].reshape(windows.shape)
        product = np.empty((slices, per_slice, self._matrix.shape[1]), dtype=_DTYPE)
        used = product.reshape(-1, self._matrix.shape[1])[:needed]
        index = np.zeros(count, dtype=np.intp)
        work = self._work[count] = (buffer, windows, index, rows, target, product, used)
        return work


def _divisor_near(total: int, wanted: int) -> int:
    """The largest divisor of ``total`` not above ``wanted`` (at least 1)."""
    return max(d for d in range(1, min(total, max(1, wanted)) + 1) if total % d == 0)
