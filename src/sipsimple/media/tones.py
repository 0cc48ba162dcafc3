"""Tones: a mixer slot that plays sequences of (dual) tones and DTMF digits.

Each tone is computed from its own sample index (no accumulated phase error) and
fades in and out over 2 ms, so starts and stops do not click.  The sequence plays in
real time as the mixer ticks; tones queued while others play follow them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np

from sipsimple.media.mixer import MixerError, SlotPort, check_volume

if TYPE_CHECKING:
    from sipsimple.media.mixer import AudioMixer, Frame

__all__ = [
    "DTMF_FREQUENCIES",
    "TONE_AMPLITUDE",
    "ToneGenerator",
    "ToneSynth",
]

# Each sine's peak: two of them together stay 6 dB below full scale.
TONE_AMPLITUDE = 8192.0
RAMP_SECONDS = 0.002
DTMF_TONE_MS = 200
DTMF_PAUSE_MS = 50

# ITU-T Q.23: the row (low group) and column (high group) frequency of each key.
_ROWS = (697, 770, 852, 941)
_COLUMNS = (1209, 1336, 1477, 1633)
_KEYPAD = ("123A", "456B", "789C", "*0#D")
DTMF_FREQUENCIES: dict[str, tuple[int, int]] = {
    key: (_ROWS[row], _COLUMNS[column])
    for row, keys in enumerate(_KEYPAD)
    for column, key in enumerate(keys)
}


class ToneSynth:
    """A continuous sum of up to two sines (a frequency of 0 is left out)."""

    def __init__(
        self, sample_rate: int, freq1: float, freq2: float = 0.0, amplitude: float = TONE_AMPLITUDE
    ) -> None:
        for frequency in (freq1, freq2):
            if not 0 <= frequency < sample_rate / 2:
                raise ValueError(
                    f"tone frequency {frequency} Hz is outside 0..{sample_rate / 2} Hz "
                    f"(half the {sample_rate} Hz sample rate)"
                )
        self.sample_rate = sample_rate
        self.frequencies = tuple(f for f in (freq1, freq2) if f)
        self.amplitude = amplitude
        self._position = 0

    def render(self, count: int) -> np.ndarray:
        """The next ``count`` samples, as floats."""
        t = np.arange(self._position, self._position + count) / self.sample_rate
        self._position += count
        out = np.zeros(count)
        for frequency in self.frequencies:
            out += self.amplitude * np.sin(2 * np.pi * frequency * t)
        return out


class _Tone:
    """One queued tone (or pause) and how far it has played."""

    __slots__ = ("played", "synth", "total")

    def __init__(self, synth: ToneSynth | None, total: int) -> None:
        self.synth = synth
        self.total = total
        self.played = 0


class ToneGenerator(SlotPort):
    """Plays tones into the mixer; connect its :attr:`slot` to where they should go.

    ``on_finished(generator)`` is called (after the tick) each time the queued tones
    have all been played.
    """

    consumes = False

    def __init__(
        self, mixer: AudioMixer, *, on_finished: Callable[[ToneGenerator], object] | None = None
    ) -> None:
        self.mixer = mixer
        self.on_finished = on_finished
        self._volume: float = 100
        self._queue: deque[_Tone] = deque()
        self._slot: int | None = None
        self._ramp = max(1, round(RAMP_SECONDS * mixer.sample_rate))

    @property
    def slot(self) -> int | None:
        return self._slot

    @property
    def is_active(self) -> bool:
        return self._slot is not None

    @property
    def is_busy(self) -> bool:
        """Whether tones are queued or playing."""
        return bool(self._queue)

    @property
    def volume(self) -> float:
        return self._volume

    @volume.setter
    def volume(self, value: float) -> None:
        self._volume = check_volume(value)

    def start(self) -> None:
        if self._slot is None:
            self._slot = self.mixer.add_port(self)

    def stop(self) -> None:
        """Leaves the mixer, dropping any tones not yet played."""
        slot, self._slot = self._slot, None
        self._queue.clear()
        if slot is not None:
            self.mixer.remove_port(slot)

    def play_tones(self, tones: Iterable[tuple[float, float, int]]) -> None:
        """Queues ``(freq1, freq2, duration_ms)`` tones; 0 Hz leaves a sine out, so
        ``(0, 0, ms)`` is a pause and ``(f, 0, ms)`` a single tone."""
        if self._slot is None:
            raise MixerError("the ToneGenerator has not been started")
        rate = self.mixer.sample_rate
        queued = []
        for tone in tones:
            try:
                freq1, freq2, duration = tone
            except (TypeError, ValueError):
                raise ValueError(f"a tone is (freq1, freq2, duration_ms), got {tone!r}") from None
            if not duration > 0:
                raise ValueError(f"tone duration must be positive (ms), got {duration!r}")
            synth = ToneSynth(rate, freq1, freq2) if freq1 or freq2 else None
            queued.append(_Tone(synth, max(1, round(duration * rate / 1000))))
        self._queue.extend(queued)

    def play_dtmf(self, digit: str) -> None:
        """Queues a DTMF digit (0-9, *, #, A-D): 200 ms of its two tones, 50 ms pause."""
        frequencies = DTMF_FREQUENCIES.get(digit.upper()) if isinstance(digit, str) else None
        if frequencies is None:
            raise ValueError(f"not a DTMF digit: {digit!r} (expected one of 0-9, *, #, A-D)")
        self.play_tones([(*frequencies, DTMF_TONE_MS), (0, 0, DTMF_PAUSE_MS)])

    def produce(self) -> Frame | None:
        if not self._queue:
            return None
        count = self.mixer.frame_samples
        out = np.zeros(count)
        filled = 0
        while filled < count and self._queue:
            tone = self._queue[0]
            take = min(count - filled, tone.total - tone.played)
            if tone.synth is not None:
                index = np.arange(tone.played, tone.played + take)
                fade = np.minimum(np.minimum(index + 1, tone.total - index) / self._ramp, 1.0)
                out[filled : filled + take] = tone.synth.render(take) * fade
            tone.played += take
            filled += take
            if tone.played == tone.total:
                self._queue.popleft()
        if not self._queue:
            self.mixer.call_after_tick(self._finished)
        out *= self._volume / 100
        return np.clip(np.rint(out), -32768, 32767).astype(np.int16)

    def _finished(self) -> None:
        if self.on_finished is not None and self._slot is not None and not self._queue:
            self.on_finished(self)
