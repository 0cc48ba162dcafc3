"""The audio mixer: a conference bridge of numbered slots, mixed every 20 ms.

Model (as PJSIP's conference bridge)
    * A slot holds a port (:class:`SlotPort`) that produces and/or consumes frames of
      20 ms of mono int16 audio at the mixer's rate.  Slot 0 is the sound device (the
      microphone produces, the speaker consumes); other ports take the lowest free slot.
    * ``connect_slots(src, dst)`` makes dst hear src.  On every tick each consuming port
      gets the sum of the frames its sources produced, saturated to int16 (int32
      accumulation, clipped once).  A slot is never connected to itself, so nobody hears
      their own voice.  A port with no sources gets ``None`` ("nothing connected"); one
      whose sources were all silent gets zeros.
    * Every producing port is asked for a frame on every tick, connected or not, so
      sources run in real time whether anyone listens (a WAV file plays on, a network
      port's queue stays short).
    * Tick hooks (:meth:`AudioMixer.add_tick_hook`) run at the start of every frame,
      before the ports are asked: for those that follow the mixer's clock (an
      AudioTransport takes the phase of its sends from the first tick after it starts),
      or whose frames are made together for many ports.

Cost
    Per tick, the frames of all producing ports are one 2-D int32 array and every mix is
    made from it by a few whole-array numpy operations (:func:`plan_sums` says which,
    when the topology changes): destinations that share a source set share one sum,
    and a full mesh (everyone hears everyone else, as in a conference) is one sum of
    all frames less each one's own, so mixing costs O(N) frame operations, not O(N^2),
    and all mixes are saturated at once, at the end.  What remains per slot is the
    call of its port's produce() and consume().

Timing
    :meth:`AudioMixer.tick` mixes a given number of frames at once: tests and offline
    use drive it by hand.  :meth:`AudioMixer.start` runs it on an asyncio loop from an
    absolute-deadline clock (frame n is due at ``t0 + n * 20 ms``; :class:`FramePacer`
    holds that arithmetic, free of I/O).  A wake-up that comes late mixes every frame
    that fell due (catching up, so media timelines stay continuous) up to ``max_burst``
    frames (200 ms by default); frames beyond that are dropped, i.e. that stretch of
    time is skipped.  Both are counted in :attr:`AudioMixer.statistics`.

Threads
    Topology changes take a lock that the tick also holds, so ports can be added,
    removed and connected from any thread, and from inside a port's own callback during
    a tick (a port removed during a tick gets no further call).  A port that raises is
    logged once and its frames count as silence.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from sipsimple.media.errors import MediaError
from sipsimple.threading import SIPThread

if TYPE_CHECKING:
    from sipsimple.media.devices import SoundDevice

__all__ = [
    "DEFAULT_SLOT_COUNT",
    "PTIME",
    "AudioMixer",
    "FramePacer",
    "MixerError",
    "MixerPort",
    "MixerStatistics",
    "SampleFifo",
    "SlotPort",
    "plan_sums",
    "scale_volume",
]

log = logging.getLogger("sipsimple.media.mixer")

PTIME = 0.02
FRAMES_PER_SECOND = 50
DEFAULT_SLOT_COUNT = 1024  # slots are a free list: cheap; a conference of N takes 3N+1
DEFAULT_MAX_BURST = 10
DEVICE_SLOT = 0

Frame = np.ndarray
_INT16 = np.dtype(np.int16)


class MixerError(MediaError):
    """A mixer operation that is not possible now (no free slot, port not started, ...)."""


def scale_volume(frame: Frame, volume: float) -> Frame:
    """``frame`` at ``volume`` percent (100 = unchanged), saturated to int16."""
    if volume == 100:
        return frame
    if volume <= 0:
        return np.zeros_like(frame)
    return np.clip(np.rint(frame * (volume / 100)), -32768, 32767).astype(np.int16)


def check_volume(value: object, name: str = "volume") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0 (100 = unchanged), got {value!r}")
    return value


def _check_tail_length(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"ec_tail_length must be an integer >= 0, got {value!r}")
    return value


class SlotPort:
    """What a mixer slot holds: it produces and/or consumes one frame per tick.

    ``produce()`` returns this tick's frame (a 1-D int16 array of the mixer's frame
    length; the mixer copies it) or None for silence.  ``consume(frame)`` receives the
    mix (read-only; keep it if you like) or None when nothing is connected to the slot.
    Both run on the mixer's thread, in the tick: keep them short and non-blocking.
    """

    produces: ClassVar[bool] = True
    consumes: ClassVar[bool] = True

    def produce(self) -> Frame | None:
        return None

    def consume(self, frame: Frame | None) -> None:
        return None


class SampleFifo:
    """A bounded FIFO of int16 samples between two threads; when full it drops the oldest.

    Used where audio crosses from one clock to another (a sound card's callback, the
    network), so a producer that runs ahead costs bounded latency, never unbounded memory.
    """

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = capacity
        self._buffer = np.zeros(capacity, dtype=np.int16)
        self._start = 0
        self._size = 0
        self._lock = threading.Lock()
        self.dropped = 0  # samples dropped because the FIFO was full
        self.underruns = 0  # reads that found fewer samples than asked for

    def __len__(self) -> int:
        return self._size

    def clear(self) -> None:
        with self._lock:
            self._start = self._size = 0

    def write(self, samples: np.ndarray) -> None:
        capacity = self.capacity
        with self._lock:
            count = len(samples)
            end = self._start + self._size
            if end + count <= capacity:  # the usual write: room, and no wrap-around
                self._buffer[end : end + count] = samples
                self._size += count
                return
            if count > capacity:
                self.dropped += count - capacity
                samples = samples[count - capacity :]
                count = capacity
            overflow = self._size + count - capacity
            if overflow > 0:
                self.dropped += overflow
                self._start = (self._start + overflow) % capacity
                self._size -= overflow
            end = (self._start + self._size) % capacity
            first = min(count, capacity - end)
            self._buffer[end : end + first] = samples[:first]
            self._buffer[: count - first] = samples[first:]
            self._size += count

    def read(self, count: int, *, pad: bool = False) -> Frame | None:
        """The next ``count`` samples; if fewer are there, None (keeping them), or with
        ``pad`` what there is followed by silence."""
        with self._lock:
            start = self._start
            if self._size >= count and start + count <= self.capacity:
                # the usual read: all there, in one piece
                self._start = (start + count) % self.capacity
                self._size -= count
                return self._buffer[start : start + count].copy()
            if self._size < count:
                self.underruns += 1
                if not pad:
                    return None
            take = min(count, self._size)
            out = np.zeros(count, dtype=np.int16)
            first = min(take, self.capacity - self._start)
            out[:first] = self._buffer[self._start : self._start + first]
            out[first:take] = self._buffer[: take - first]
            self._start = (self._start + take) % self.capacity
            self._size -= take
            return out


@dataclass(frozen=True, slots=True)
class MixerStatistics:
    frames: int  # frames mixed since the mixer was created (by hand or by the clock)
    late_wakeups: int  # clock wake-ups that found more than one frame due
    caught_up_frames: int  # frames mixed late, in a burst, to catch up
    dropped_frames: int  # frames skipped because the loop was later than max_burst frames
    max_lateness: float  # seconds, the latest a frame was mixed after its deadline


class FramePacer:
    """Absolute-deadline frame clock arithmetic: frame n is due at ``t0 + n * period``.

    No I/O and no clock: ``advance(now)`` says how many frames to mix now and how many
    to drop; ``deadline`` is when to wake up next.  Sleeping until a deadline computed
    from t0 (never ``sleep(period)`` in a loop) keeps the long-run rate exact whatever
    the wake-up jitter.
    """

    def __init__(self, period: float = PTIME, max_burst: int = DEFAULT_MAX_BURST) -> None:
        if period <= 0:
            raise ValueError(f"period must be positive, got {period}")
        if max_burst < 1:
            raise ValueError(f"max_burst must be at least 1, got {max_burst}")
        self.period = period
        self.max_burst = max_burst
        self._t0 = 0.0
        self._done = 0  # frames accounted for (mixed or dropped) since start()
        self.frames = 0
        self.late_wakeups = 0
        self.caught_up_frames = 0
        self.dropped_frames = 0
        self.max_lateness = 0.0

    def start(self, now: float) -> None:
        self._t0 = now
        self._done = 0

    @property
    def deadline(self) -> float:
        """When the next frame falls due."""
        return self._t0 + (self._done + 1) * self.period

    def advance(self, now: float) -> tuple[int, int]:
        """(frames to mix now, frames dropped) at time ``now``."""
        # The loop may wake a hair before the deadline it was asked for (clock
        # resolution): count a frame as due within a microsecond of its deadline.
        due = int((now - self._t0 + 1e-6) / self.period)
        behind = due - self._done
        if behind <= 0:
            return 0, 0
        self.max_lateness = max(self.max_lateness, now - self.deadline)
        mix = min(behind, self.max_burst)
        dropped = behind - mix
        if behind > 1:
            self.late_wakeups += 1
            self.caught_up_frames += mix - 1
        self.dropped_frames += dropped
        self.frames += mix
        self._done = due
        return mix, dropped


class _RealtimeClock:
    """Runs ``tick(frames)`` on an asyncio loop at the pacer's deadlines.

    While ``idle()`` says there is nothing to mix the clock sleeps (no wake-ups: an idle
    application costs no CPU); :meth:`resume` starts it again on a fresh timeline."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        pacer: FramePacer,
        tick: Callable[[int], None],
        idle: Callable[[], bool],
    ) -> None:
        self._loop = loop
        self._pacer = pacer
        self._tick = tick
        self._idle = idle
        self._handle: asyncio.TimerHandle | None = None
        self._stopped = False
        self._sleeping = False

    def start(self) -> None:
        self._call_on_loop(self._begin)

    def stop(self) -> None:
        self._stopped = True
        if not self._loop.is_closed():
            self._call_on_loop(self._cancel)

    def resume(self) -> None:
        """Something to mix again: wake up if asleep (from any thread)."""
        if not self._loop.is_closed():  # _wake_up runs on the loop, after any _wake
            self._call_on_loop(self._wake_up)

    def _wake_up(self) -> None:
        if self._sleeping:
            self._sleeping = False
            self._begin()

    def _call_on_loop(self, function: Callable[[], None]) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            function()
        else:
            self._loop.call_soon_threadsafe(function)

    def _begin(self) -> None:
        if self._stopped:
            return
        self._pacer.start(self._loop.time())
        self._handle = self._loop.call_at(self._pacer.deadline, self._wake)

    def _cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _wake(self) -> None:
        if self._stopped:
            return
        if self._idle():
            self._handle = None
            self._sleeping = True
            return
        frames, _dropped = self._pacer.advance(self._loop.time())
        if frames:
            try:
                self._tick(frames)
            except Exception:
                log.exception("the audio mixer failed to mix a frame")
        if not self._stopped:  # a port may have stopped the mixer during the tick
            self._handle = self._loop.call_at(self._pacer.deadline, self._wake)


# A set takes a shared sum that has at most this many rows too many (each costs one
# subtraction); a full mesh needs one.
SHARED_SUM_SPARE = 2


@dataclass(frozen=True, slots=True)
class _Recipe:
    """One sum: shared sum number ``shared`` (if not None), plus the ``add`` items, less
    the ``subtract`` items."""

    shared: int | None
    add: tuple[int, ...] = ()
    subtract: tuple[int, ...] = ()


def plan_sums(
    wanted: Iterable[frozenset[int]],
) -> tuple[list[frozenset[int]], dict[frozenset[int], _Recipe]]:
    """How to make each wanted sum of items (mixer slots) in few whole-frame operations.

    Returns the shared sums to compute first and a recipe for each wanted sum.  Sets of
    three items or more that differ from a shared sum by at most
    :data:`SHARED_SUM_SPARE` items it has too many take that sum less those items: a
    full mesh (everyone hears all but themselves) is one sum of N frames and N
    subtractions, O(N) instead of O(N^2), whether each party's own frame is in its own
    slot or, as with a bridge used as a port, in another.  Smaller sets are summed
    directly.  The work here is set operations in C, O(total size of the sets) for a
    mesh.
    """
    distinct = sorted(dict.fromkeys(wanted), key=len, reverse=True)
    # Largest first, so a shared sum is never smaller than a set that takes it: taking
    # a set only if the sum then has at most SHARED_SUM_SPARE items more than it keeps
    # that bound for the (larger) sets that took it before.
    bases: list[set[int]] = []
    home: dict[frozenset[int], int] = {}
    for sources in distinct:
        size = len(sources)
        if size < 3:
            break
        for index, base in enumerate(bases):
            if len(base) - size > SHARED_SUM_SPARE:
                continue
            missing = 0 if sources <= base else len(sources - base)
            if missing <= 1 and len(base) + missing - size <= SHARED_SUM_SPARE:
                if missing:
                    base |= sources
                home[sources] = index
                break
        else:
            home[sources] = len(bases)
            bases.append(set(sources))
    shared = [frozenset(base) for base in bases]
    recipes: dict[frozenset[int], _Recipe] = {}
    for sources in distinct:
        index = home.get(sources)
        if index is None:
            recipes[sources] = _Recipe(None, tuple(sorted(sources)))
        else:
            recipes[sources] = _Recipe(index, (), tuple(sorted(shared[index] - sources)))
    return shared, recipes


def _layers(steps: list[list[int]]) -> list[tuple[slice | np.ndarray, slice | np.ndarray]]:
    """Per-mix row lists as (mixes, rows) index pairs, one pair per position: within a
    pair no mix appears twice, so ``mix[mixes] += buffer[rows]`` is exact."""
    layers = []
    for position in range(max(map(len, steps), default=0)):
        pairs = [(mix, rows[position]) for mix, rows in enumerate(steps) if len(rows) > position]
        layers.append((_index([m for m, _ in pairs]), _index([r for _, r in pairs])))
    return layers


@dataclass(slots=True)
class _Plan:
    version: int
    producers: list[tuple[int, SlotPort]]  # (slot, port), one per buffer row
    frames: list[Frame]  # this tick's frame of each producer
    silence: Frame
    buffer: np.ndarray  # int32: one row per producer, then one per shared sum
    shared: list[tuple[np.ndarray, slice | np.ndarray]]  # (buffer row, producer rows)
    starts: np.ndarray  # the buffer row each mix starts from
    adds: list[tuple[slice | np.ndarray, slice | np.ndarray]]  # (mixes, buffer rows)
    subtracts: list[tuple[slice | np.ndarray, slice | np.ndarray]]
    consumers: list[tuple[int, SlotPort, int]]  # (slot, port, mix or -1 for none)


def _index(rows: list[int]) -> slice | np.ndarray:
    """A slice (a view, no copy) where the rows are contiguous, else an index array."""
    if rows and rows == list(range(rows[0], rows[-1] + 1)):
        return slice(rows[0], rows[-1] + 1)
    return np.array(rows, dtype=np.intp)


class _DeviceSlot(SlotPort):
    """Slot 0: the sound device, behind the mixer's input/output volume and mute."""

    def __init__(self, mixer: AudioMixer, device: SoundDevice) -> None:
        self.mixer = mixer
        self.device = device
        self.is_open = False

    def produce(self) -> Frame | None:
        if not self.is_open or self.mixer.muted:
            return None
        frame = self.device.produce()
        if frame is None:
            return None
        return scale_volume(frame, self.mixer.input_volume)

    def consume(self, frame: Frame | None) -> None:
        if not self.is_open:
            return
        if frame is not None:
            frame = scale_volume(frame, self.mixer.output_volume)
        self.device.consume(frame)


class AudioMixer:
    """Mixes the audio of numbered slots; slot 0 is the sound device.

    ``input_device``/``output_device`` are device names (see
    :mod:`sipsimple.media.devices`): ``"system_default"``, a name from
    ``input_devices()``/``output_devices()``, or None for none.  Without a sound backend
    or card the mixer runs on a silent :class:`~sipsimple.media.devices.DummyDevice`;
    ``device=`` gives it a device object instead (a DummyDevice playing a tone or a WAV
    file, say).  The device is opened while at least one port is in the mixer.
    ``ec_tail_length`` is kept for the API but there is no echo canceller.
    """

    def __init__(
        self,
        input_device: str | None,
        output_device: str | None,
        sample_rate: int,
        ec_tail_length: int = 0,
        slot_count: int = DEFAULT_SLOT_COUNT,
        *,
        device: SoundDevice | None = None,
        max_burst: int = DEFAULT_MAX_BURST,
    ) -> None:
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
        if sample_rate % FRAMES_PER_SECOND:
            raise ValueError(
                f"sample_rate must be a multiple of 50 (20 ms frames), got {sample_rate}"
            )
        if not isinstance(slot_count, int) or slot_count < 1:
            raise ValueError(f"slot_count must be a positive integer, got {slot_count!r}")
        self.sample_rate = sample_rate
        self.frame_samples = sample_rate // FRAMES_PER_SECOND
        self.slot_count = slot_count
        self._input_volume: float = 100
        self._output_volume: float = 100
        self._muted = False
        self._lock = threading.RLock()
        self._free = list(range(1, slot_count + 1))
        self._sources: dict[int, set[int]] = {}  # dst -> sources
        self._version = 0
        self._plan: _Plan | None = None
        self._after_tick: list[Callable[[], object]] = []
        self._tick_hooks: tuple[Callable[[], object], ...] = ()
        self._failing_hooks: set[Callable[[], object]] = set()
        self._ticking = False
        self._failing: dict[int, SlotPort] = {}
        self._pacer = FramePacer(PTIME, max_burst)
        self._clock: _RealtimeClock | None = None
        self._frames = 0
        self.ec_tail_length = _check_tail_length(ec_tail_length)
        if device is None:
            device = self._create_device(input_device, output_device)
        self.input_device = input_device
        self.output_device = output_device
        self._device_slot = _DeviceSlot(self, device)
        self._ports: dict[int, SlotPort] = {DEVICE_SLOT: self._device_slot}

    # -- settings ---------------------------------------------------------------------

    @property
    def input_volume(self) -> float:
        return self._input_volume

    @input_volume.setter
    def input_volume(self, value: float) -> None:
        self._input_volume = check_volume(value, "input_volume")

    @property
    def output_volume(self) -> float:
        return self._output_volume

    @output_volume.setter
    def output_volume(self, value: float) -> None:
        self._output_volume = check_volume(value, "output_volume")

    @property
    def muted(self) -> bool:
        """Mutes the microphone (what slot 0 produces); the speaker still plays."""
        return self._muted

    @muted.setter
    def muted(self, value: bool) -> None:
        self._muted = bool(value)

    @property
    def real_input_device(self) -> str | None:
        """The input actually in use ("system_default" resolved), None for none."""
        return self._device_slot.device.input_name

    @property
    def real_output_device(self) -> str | None:
        return self._device_slot.device.output_name

    @property
    def device(self) -> SoundDevice:
        return self._device_slot.device

    def set_sound_devices(
        self,
        input_device: str | None,
        output_device: str | None,
        ec_tail_length: int = 0,
        *,
        device: SoundDevice | None = None,
    ) -> None:
        """Switches to other devices (by name, or the ``device`` given), at once."""
        _check_tail_length(ec_tail_length)
        new = device if device is not None else self._create_device(input_device, output_device)
        with self._lock:
            slot = self._device_slot
            was_open = slot.is_open
            if was_open:
                self._close_device()
            slot.device = new
            self.input_device = input_device
            self.output_device = output_device
            self.ec_tail_length = ec_tail_length
            if was_open:
                self._open_device()

    def reset_ec(self) -> None:
        """Nothing to reset: there is no echo canceller."""

    # -- slots ------------------------------------------------------------------------

    @property
    def used_slot_count(self) -> int:
        """Slots in use, not counting the device's."""
        return len(self._ports) - 1

    @property
    def connected_slots(self) -> list[tuple[int, int]]:
        with self._lock:
            return sorted((src, dst) for dst, sources in self._sources.items() for src in sources)

    def add_port(self, port: SlotPort) -> int:
        """Puts ``port`` in the lowest free slot and returns the slot number."""
        with self._lock:
            if any(existing is port for existing in self._ports.values()):
                raise MixerError(f"{port!r} is already in this mixer")
            if not self._free:
                raise MixerError(f"all {self.slot_count} slots of the mixer are in use")
            slot = heapq.heappop(self._free)
            self._ports[slot] = port
            self._changed()
            if not self._device_slot.is_open:
                self._open_device()
            if self._clock is not None:
                self._clock.resume()
            return slot

    def remove_port(self, slot: int) -> None:
        """Frees ``slot`` and drops its connections; the device closes with the last port."""
        with self._lock:
            if slot == DEVICE_SLOT:
                raise ValueError("slot 0 is the sound device and cannot be removed")
            if slot not in self._ports:
                raise ValueError(f"slot {slot} is not in use")
            del self._ports[slot]
            self._failing.pop(slot, None)
            self._sources.pop(slot, None)
            for sources in self._sources.values():
                sources.discard(slot)
            heapq.heappush(self._free, slot)
            self._changed()
            if self.used_slot_count == 0:
                self.call_after_tick(self._close_device_if_unused)

    def connect_slots(self, src_slot: int, dst_slot: int) -> None:
        """Makes ``dst_slot`` hear ``src_slot`` (nothing happens if it already does)."""
        with self._lock:
            self._check_pair(src_slot, dst_slot)
            sources = self._sources.setdefault(dst_slot, set())
            if src_slot not in sources:
                sources.add(src_slot)
                self._changed()

    def disconnect_slots(self, src_slot: int, dst_slot: int) -> None:
        with self._lock:
            self._check_pair(src_slot, dst_slot)
            sources = self._sources.get(dst_slot)
            if sources and src_slot in sources:
                sources.discard(src_slot)
                self._changed()

    def _check_pair(self, src_slot: int, dst_slot: int) -> None:
        ports = self._ports
        if (
            type(src_slot) is int
            and type(dst_slot) is int
            and src_slot != dst_slot
            and src_slot in ports
            and dst_slot in ports
        ):
            return  # the usual case, checked cheaply: a conference of N makes N^2 calls
        for name, slot in (("src_slot", src_slot), ("dst_slot", dst_slot)):
            if isinstance(slot, bool) or not isinstance(slot, int):
                raise TypeError(f"{name} must be an int, got {slot!r}")
            if not 0 <= slot <= self.slot_count:
                raise ValueError(f"{name} {slot} is out of range 0..{self.slot_count}")
            if slot not in self._ports:
                raise ValueError(f"{name} {slot} is not in use")
        if src_slot == dst_slot:
            raise ValueError(
                f"slot {src_slot} cannot be connected to itself (it would hear itself)"
            )

    def _changed(self) -> None:
        self._version += 1
        self._plan = None

    # -- device -----------------------------------------------------------------------

    @staticmethod
    def _create_device(input_device: str | None, output_device: str | None) -> SoundDevice:
        # devices builds on wave and tones, which build on this module.
        from sipsimple.media.devices import create_sound_device

        return create_sound_device(input_device, output_device)

    def _open_device(self) -> None:
        slot = self._device_slot
        try:
            slot.device.open(self.sample_rate)
        except Exception:
            from sipsimple.media.devices import DummyDevice

            log.exception("cannot open the sound device; going on without one")
            slot.device = DummyDevice()
            slot.device.open(self.sample_rate)
        slot.is_open = True

    def _close_device(self) -> None:
        slot = self._device_slot
        slot.is_open = False
        try:
            slot.device.close()
        except Exception:
            log.exception("closing the sound device failed")

    def _close_device_if_unused(self) -> None:
        with self._lock:
            if self.used_slot_count == 0 and self._device_slot.is_open:
                self._close_device()

    # -- mixing -----------------------------------------------------------------------

    def call_after_tick(self, callback: Callable[[], object]) -> None:
        """Runs ``callback`` once the tick under way is over (at once if none is).

        For ports that must change the mixer or call out to user code from inside
        produce()/consume().
        """
        with self._lock:
            if self._ticking:
                self._after_tick.append(callback)
                return
        callback()

    def add_tick_hook(self, hook: Callable[[], object]) -> None:
        """Calls ``hook()`` at the start of every frame the mixer mixes, before it asks
        the ports for their frames, on the mixer's thread and under its lock.

        For those that follow the mixer's clock (an AudioTransport takes the phase of its
        sends from the first tick after it starts), or that fill the frames of many ports
        together rather than each in its produce().  A hook that raises is logged (once)
        and called again at the next frame.
        """
        with self._lock:
            self._tick_hooks = (*self._tick_hooks, hook)

    def remove_tick_hook(self, hook: Callable[[], object]) -> None:
        """Stops calling ``hook`` (from the next frame on, if called within a tick);
        ValueError if it is not a hook of this mixer."""
        with self._lock:
            hooks = list(self._tick_hooks)
            hooks.remove(hook)
            self._tick_hooks = tuple(hooks)
            self._failing_hooks.discard(hook)

    def tick(self, count: int = 1) -> None:
        """Mixes ``count`` frames now, one after the other."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"count must be an integer >= 0, got {count!r}")
        with self._lock:
            self._ticking = True
            try:
                for _ in range(count):
                    for hook in self._tick_hooks:
                        try:
                            hook()
                        except Exception:
                            if hook not in self._failing_hooks:
                                self._failing_hooks.add(hook)
                                log.exception("a hook run at the mixer's tick failed")
                    plan = self._plan
                    if plan is None:
                        plan = self._plan = self._build_plan()
                    self._mix(plan)
                    self._frames += 1
            finally:
                self._ticking = False
                callbacks, self._after_tick = self._after_tick, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("a callback run after the mixer's tick failed")

    def _build_plan(self) -> _Plan:
        ports = self._ports
        slots = sorted(ports)
        producers = [slot for slot in slots if ports[slot].produces]
        row = {slot: index for index, slot in enumerate(producers)}
        producing = frozenset(producers)
        nothing: frozenset[int] = frozenset()
        sets = {  # set operations in C: a full mesh has N^2 connections
            dst: producing.intersection(self._sources.get(dst, nothing))
            for dst in slots
            if ports[dst].consumes
        }
        shared, recipes = plan_sums(sources for sources in sets.values() if sources)
        starts, adds, subtracts = [], [], []
        for recipe in recipes.values():
            plus = [row[slot] for slot in recipe.add]
            if recipe.shared is None:
                starts.append(plus.pop(0))
            else:
                starts.append(len(producers) + recipe.shared)
            adds.append(plus)
            subtracts.append([row[slot] for slot in recipe.subtract])
        mix_of = {sources: index for index, sources in enumerate(recipes)}
        buffer = np.zeros((len(producers) + len(shared), self.frame_samples), dtype=np.int32)
        silence = np.zeros(self.frame_samples, dtype=np.int16)
        silence.flags.writeable = False
        return _Plan(
            version=self._version,
            producers=[(slot, ports[slot]) for slot in producers],
            frames=[silence] * len(producers),
            silence=silence,
            buffer=buffer,
            shared=[
                (buffer[len(producers) + index], _index(sorted(row[slot] for slot in members)))
                for index, members in enumerate(shared)
            ],
            starts=np.array(starts, dtype=np.intp),
            adds=_layers(adds),
            subtracts=_layers(subtracts),
            consumers=[
                (dst, ports[dst], mix_of[sources] if sources else -1)
                for dst, sources in sets.items()
            ],
        )

    def _mix(self, plan: _Plan) -> None:
        frames = plan.frames
        silence = plan.silence
        shape = silence.shape
        version = plan.version
        ports = self._ports
        for row, (slot, port) in enumerate(plan.producers):
            if self._version != version and ports.get(slot) is not port:
                frames[row] = silence  # removed during this tick
                continue
            try:
                frame = port.produce()
            except Exception:
                self._port_failed(slot, port)
                frame = None
            if frame is None:
                frame = silence
            elif frame.shape != shape or (frame.dtype is not _INT16 and frame.dtype != _INT16):
                problem = f"produce() gave {frame.dtype} {frame.shape}, not int16 {shape}"
                self._port_failed(slot, port, problem)
                frame = silence
            frames[row] = frame
        buffer = plan.buffer
        if frames:
            # One C-level copy (and widening to int32) of all the frames, row after row.
            np.concatenate(frames, out=buffer[: len(frames)].reshape(-1))
        for out, rows in plan.shared:
            np.add.reduce(buffer[rows], axis=0, out=out)
        mixes: list[Frame] = []
        if len(plan.starts):
            mix = buffer[plan.starts]
            for targets, rows in plan.adds:
                mix[targets] += buffer[rows]
            for targets, rows in plan.subtracts:
                mix[targets] -= buffer[rows]
            np.clip(mix, -32768, 32767, out=mix)  # one clip, at the end
            saturated = mix.astype(np.int16)
            saturated.flags.writeable = False
            mixes = list(saturated)
        for slot, port, index in plan.consumers:
            if self._version != version and ports.get(slot) is not port:
                continue  # removed during this tick
            try:
                port.consume(mixes[index] if index >= 0 else None)
            except Exception:
                self._port_failed(slot, port)

    def _port_failed(self, slot: int, port: SlotPort, problem: str | None = None) -> None:
        """Logs a port's first failure (with the exception being handled, if no problem
        is given); the port stays, and what it failed to produce counts as silence."""
        if self._failing.get(slot) is port:
            return
        self._failing[slot] = port
        if problem is None:
            log.exception("the port in mixer slot %d failed; its audio counts as silence", slot)
        else:
            log.error("the port in mixer slot %d failed: %s; it counts as silence", slot, problem)

    # -- real time --------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        return self._clock is not None

    def _idle(self) -> bool:
        """Only the device is in the mixer: a tick would mix nothing for no one (the
        device cannot hear itself), so the real-time clock sleeps until a port comes."""
        return len(self._ports) == 1

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Mixes in real time on ``loop`` (default: the SIP thread's loop if it runs,
        else the loop running in this thread) until :meth:`stop`."""
        with self._lock:
            if self._clock is not None:
                return
            self._clock = _RealtimeClock(
                loop or _default_loop(), self._pacer, self.tick, self._idle
            )
            self._clock.start()

    def stop(self) -> None:
        """Stops mixing in real time (the mixer can still be ticked by hand)."""
        with self._lock:
            clock, self._clock = self._clock, None
        if clock is not None:
            clock.stop()

    def close(self) -> None:
        """Stops the clock and releases the sound device."""
        self.stop()
        with self._lock:
            if self._device_slot.is_open:
                self._close_device()

    @property
    def statistics(self) -> MixerStatistics:
        pacer = self._pacer
        return MixerStatistics(
            frames=self._frames,
            late_wakeups=pacer.late_wakeups,
            caught_up_frames=pacer.caught_up_frames,
            dropped_frames=pacer.dropped_frames,
            max_lateness=pacer.max_lateness,
        )


def _default_loop() -> asyncio.AbstractEventLoop:
    loop = SIPThread().loop
    if loop is not None and SIPThread().is_running:
        return loop
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise MixerError(
            "no event loop to run the mixer on: pass one to start(), start the SIP thread, "
            "or call start() from a coroutine"
        ) from None


class MixerPort(SlotPort):
    """A slot for audio that comes from and goes to somewhere else: the RTP transport.

    The network side calls :meth:`put_frame` with decoded audio (mono int16 at the
    mixer's rate, any length) and :meth:`get_frame` for the next mixed 20 ms frame to
    send.  Both sides are bounded queues (``max_delay`` seconds each; the oldest audio
    is dropped when full), so a side that runs ahead adds bounded latency.

    ``on_frame`` (optional) is called on the mixer's thread right after each tick
    queued a frame for get_frame(): a transport that sends from there, and pulls its
    jitter buffer into put_frame() at the same time, runs in step with the mixer's
    clock and needs no timer of its own.
    """

    def __init__(
        self,
        mixer: AudioMixer,
        *,
        on_frame: Callable[[], object] | None = None,
        max_delay: float = 0.2,
    ) -> None:
        if max_delay < PTIME:
            raise ValueError(f"max_delay must be at least one frame ({PTIME} s), got {max_delay}")
        self.mixer = mixer
        self.on_frame = on_frame
        frames = round(max_delay / PTIME)
        self._inbound = SampleFifo(frames * mixer.frame_samples)
        self._outbound: deque[Frame | None] = deque(maxlen=frames)
        self._slot: int | None = None

    @property
    def slot(self) -> int | None:
        return self._slot

    @property
    def is_active(self) -> bool:
        return self._slot is not None

    def start(self) -> None:
        if self._slot is None:
            self._slot = self.mixer.add_port(self)

    def stop(self) -> None:
        slot, self._slot = self._slot, None
        if slot is not None:
            self.mixer.remove_port(slot)
        self._inbound.clear()
        self._outbound.clear()

    def put_frame(self, pcm: np.ndarray) -> None:
        """Queues audio received from the network for the mixer."""
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
            raise ValueError("put_frame() takes a one-dimensional numpy int16 array")
        self._inbound.write(pcm)

    def get_frame(self) -> Frame | None:
        """The oldest mixed frame not yet taken; None if there is none, or if nothing
        was connected to this slot at that tick."""
        try:
            return self._outbound.popleft()
        except IndexError:
            return None

    def produce(self) -> Frame | None:
        return self._inbound.read(self.mixer.frame_samples)

    def consume(self, frame: Frame | None) -> None:
        self._outbound.append(frame)
        if self.on_frame is not None:
            self.on_frame()
