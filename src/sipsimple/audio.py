"""The spec's audio objects: ports on an AudioMixer, joined by bridges.

IAudioPort
    Anything with ``mixer``, ``consumer_slot`` and ``producer_slot`` (a mixer slot
    number, or None) is a port.  A port whose slots change posts AudioPortDidChangeSlots
    after the change, so that the bridges it is part of rewire it; it posts it outside
    the mixer's tick (see ``AudioMixer.call_after_tick``).

AudioBridge
    Connects every member's producer slot to every other member's consumer slot.  It
    holds its members weakly: a member that is collected leaves by itself.  A bridge
    takes no mixer slot until it is used as a port: the first read of its
    ``consumer_slot`` or ``producer_slot`` gives it two relay slots, one gathering what
    its members produce and one handing what it hears to its members (each relay delays
    the audio by one 20 ms frame).  So the application's bridges, which are never ports,
    leave the mixer free to close the sound device while nothing plays.  Connections
    are counted per mixer: a pair of ports that two bridges both join stays connected
    until neither wants it.  A bridge of N ports makes N^2 connections, which the
    mixer mixes as one shared sum less each port's own frame (O(N) per tick), nested
    bridges included.

WavePlayer, WaveRecorder
    A player holds one mixer slot from ``start()`` to its end.  Its plays and the
    ``pause_time`` between them are counted in mixer frames, so loops and pauses are
    exact whatever the event loop's jitter: ``pause_time`` seconds are
    ``round(pause_time * 50)`` frames of silence between the last frame of a play and
    the first of the next.  A file that cannot be played is reported with
    WavePlayerDidFail, never raised by ``start()``; the mixer keeps an active player
    alive until it ends (a looping ringtone whose player was dropped still plays, and
    still ends).  A recorder that is collected stops and completes its file.

Threads
    Every method is safe from any thread (the mixer and the bridges lock what they
    share).  The objects belong on the SIP thread, where the mixer's clock runs: there
    a port's start, its slot change and its end are posted in order.  Notifications about
    a player's progress (its first play after an initial pause, its end) are posted
    from the mixer's thread, after the tick.

Application audio
    :func:`create_application_audio` builds the two mixers SIPApplication offers (the
    alert mixer on ``audio.alert_device``, the voice mixer on ``audio.input_device`` /
    ``audio.output_device``), each with a bridge that holds its AudioDevice, and starts
    their clocks; :meth:`ApplicationAudio.apply_settings` follows changes of the
    ``audio.*`` settings.  A device that cannot be found falls back to the system's
    default, then to none; the settings are left as the user wrote them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import os
import threading
import wave
import weakref
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Protocol

from sipsimple.media.devices import SYSTEM_DEFAULT, SoundDeviceError
from sipsimple.media.mixer import (
    DEVICE_SLOT,
    FRAMES_PER_SECOND,
    AudioMixer,
    MixerError,
    SlotPort,
    check_volume,
    scale_volume,
)
from sipsimple.media.wave import RecordingWaveFile, WaveFileError, WaveReader
from sipsimple.notification import Notification, NotificationCenter, NotificationData

if TYPE_CHECKING:
    from sipsimple.configuration.settings import AudioSettings, SIPSimpleSettings
    from sipsimple.media.mixer import Frame

__all__ = [
    "ApplicationAudio",
    "AudioBridge",
    "AudioDevice",
    "IAudioPort",
    "WavePlayer",
    "WavePlayerError",
    "WaveRecorder",
    "WaveRecorderError",
    "create_application_audio",
]

log = logging.getLogger("sipsimple.audio")


class WavePlayerError(Exception):
    """A WavePlayer call the player's state does not allow (start() while playing)."""


class WaveRecorderError(Exception):
    """A WaveRecorder call the recorder's state does not allow (start() while recording)."""


class IAudioPort(Protocol):
    """What an AudioBridge connects (see the module docstring)."""

    @property
    def mixer(self) -> AudioMixer: ...

    @property
    def consumer_slot(self) -> int | None: ...

    @property
    def producer_slot(self) -> int | None: ...


def _post(name: str, sender: object, **data: object) -> None:
    NotificationCenter().post_notification(name, sender=sender, data=NotificationData(**data))


def _post_slots_change(
    port: object,
    *,
    consumer: tuple[int | None, int | None] | None = None,
    producer: tuple[int | None, int | None] | None = None,
) -> None:
    """AudioPortDidChangeSlots for ``port``; ``consumer``/``producer`` are (old, new)."""
    data: dict[str, object] = {
        "consumer_slot_changed": consumer is not None,
        "producer_slot_changed": producer is not None,
    }
    if consumer is not None:
        data["old_consumer_slot"], data["new_consumer_slot"] = consumer
    if producer is not None:
        data["old_producer_slot"], data["new_producer_slot"] = producer
    _post("AudioPortDidChangeSlots", port, **data)


# -- wiring: one lock for every bridge, and the connections each mixer is asked for ------

_wiring_lock = threading.Lock()
_pending: deque[Callable[[], object]] = deque()
_wanted: weakref.WeakKeyDictionary[AudioMixer, Counter[tuple[int, int]]] = (
    weakref.WeakKeyDictionary()
)

Edge = tuple[int, int]


@contextmanager
def _wiring() -> Iterator[None]:
    try:
        with _wiring_lock:
            yield
    finally:
        _drain()


def _defer(work: Callable[[], object]) -> None:
    """Runs ``work`` under the wiring lock now, or as soon as its holder lets it go.

    For collection callbacks: they may run anywhere, even in the middle of a wiring
    change on this very thread, so they never wait for the lock.
    """
    _pending.append(work)
    _drain()


def _drain() -> None:
    while _pending and _wiring_lock.acquire(blocking=False):
        try:
            while _pending:
                work = _pending.popleft()
                try:
                    work()
                except Exception:
                    log.exception("cleaning up after a collected audio port or bridge failed")
        finally:
            _wiring_lock.release()


def _want(mixer: AudioMixer, edges: Iterable[Edge]) -> None:
    counts = _wanted.setdefault(mixer, Counter())
    for edge in edges:
        counts[edge] += 1
        try:
            mixer.connect_slots(*edge)
        except ValueError:
            pass  # a slot given up meanwhile: its port's notification is on its way


def _unwant(mixer: AudioMixer, edges: Iterable[Edge]) -> None:
    counts = _wanted.setdefault(mixer, Counter())
    for edge in edges:
        counts[edge] -= 1
        if counts[edge] <= 0:
            del counts[edge]
            try:
                mixer.disconnect_slots(*edge)
            except ValueError:
                pass  # the slot was given up, and its connections with it


class _Relay(SlotPort):
    """Gives out, one tick later, the mix its slot heard: how a bridge acts as a port."""

    def __init__(self) -> None:
        self._frame: Frame | None = None

    def consume(self, frame: Frame | None) -> None:
        self._frame = frame

    def produce(self) -> Frame | None:
        frame, self._frame = self._frame, None
        return frame


@dataclass(slots=True)
class _Member:
    ref: weakref.ref[object]
    consumer: int | None
    producer: int | None


class _Mesh:
    """An AudioBridge's members and relays, apart from the bridge so that the bridge's
    finalizer can undo its wiring.  Used under the wiring lock only."""

    def __init__(self, mixer: AudioMixer) -> None:
        self.mixer = mixer
        self.members: dict[int, _Member] = {}  # id(port) -> member
        self.gather_slot: int | None = None  # members' producers -> the bridge's producer slot
        self.scatter_slot: int | None = None  # the bridge's consumer slot -> members' consumers

    def _relay_edges(self, member: _Member) -> list[Edge]:
        edges = []
        if self.gather_slot is not None and member.producer is not None:
            edges.append((member.producer, self.gather_slot))
        if self.scatter_slot is not None and member.consumer is not None:
            edges.append((self.scatter_slot, member.consumer))
        return edges

    def _edges(self, member: _Member) -> list[Edge]:
        """Every connection the bridge makes because of ``member``."""
        edges = self._relay_edges(member)
        consumer, producer = member.consumer, member.producer
        for other in self.members.values():
            if other is member:
                continue
            if producer is not None and other.consumer is not None and producer != other.consumer:
                edges.append((producer, other.consumer))
            if other.producer is not None and consumer is not None and other.producer != consumer:
                edges.append((other.producer, consumer))
        return edges

    def add(self, key: int, member: _Member) -> None:
        self.members[key] = member
        _want(self.mixer, self._edges(member))

    def remove(self, key: int) -> None:
        member = self.members[key]
        edges = self._edges(member)
        del self.members[key]
        _unwant(self.mixer, edges)

    def update(self, key: int, consumer: int | None, producer: int | None) -> None:
        member = self.members[key]
        old = self._edges(member)
        member.consumer, member.producer = consumer, producer
        _want(self.mixer, self._edges(member))  # first: connections that stay never drop
        _unwant(self.mixer, old)

    def drop_dead(self, key: int, ref: weakref.ref[object]) -> None:
        member = self.members.get(key)
        if member is not None and member.ref is ref:
            self.remove(key)

    def open_relays(self) -> None:
        if self.gather_slot is not None:
            return
        gather = self.mixer.add_port(_Relay())
        try:
            scatter = self.mixer.add_port(_Relay())
        except BaseException:
            self.mixer.remove_port(gather)
            raise
        self.gather_slot, self.scatter_slot = gather, scatter
        for member in self.members.values():
            _want(self.mixer, self._relay_edges(member))

    def close(self) -> None:
        for key in list(self.members):
            self.remove(key)
        for slot in (self.gather_slot, self.scatter_slot):
            if slot is not None:
                self.mixer.remove_port(slot)
        self.gather_slot = self.scatter_slot = None


def _member_died(mesh_ref: weakref.ref[_Mesh], key: int, ref: weakref.ref[object]) -> None:
    mesh = mesh_ref()
    if mesh is not None:
        _defer(partial(mesh.drop_dead, key, ref))


def _slots_of(port: object, mixer: AudioMixer) -> tuple[int | None, int | None]:
    """(consumer_slot, producer_slot) of an IAudioPort on ``mixer``."""
    try:
        port_mixer = port.mixer  # type: ignore[attr-defined]
    except AttributeError:
        raise TypeError(
            f"expected an IAudioPort (mixer, consumer_slot, producer_slot), "
            f"got {type(port).__name__}"
        ) from None
    if port_mixer is not mixer:
        raise ValueError(f"{port!r} is on mixer {port_mixer!r}, not on the bridge's {mixer!r}")
    try:
        slots = port.consumer_slot, port.producer_slot  # type: ignore[attr-defined]
    except AttributeError:
        raise TypeError(
            f"expected an IAudioPort (mixer, consumer_slot, producer_slot), "
            f"got {type(port).__name__}"
        ) from None
    for slot in slots:
        if slot is not None and (isinstance(slot, bool) or not isinstance(slot, int)):
            raise TypeError(f"{port!r} gave slot {slot!r}: slots are integers or None")
    return slots


class AudioBridge:
    """Connects its ports in a full mesh; is itself a port (see the module docstring)."""

    def __init__(self, mixer: AudioMixer) -> None:
        if not isinstance(mixer, AudioMixer):
            raise TypeError(f"mixer must be an AudioMixer, got {type(mixer).__name__}")
        self.mixer = mixer
        self._mesh = _Mesh(mixer)
        finalizer = weakref.finalize(self, _defer, self._mesh.close)
        finalizer.atexit = False
        NotificationCenter().add_observer(self, name="AudioPortDidChangeSlots", weak=True)

    def __repr__(self) -> str:
        return f"<AudioBridge with {len(self._mesh.members)} port(s)>"

    @property
    def consumer_slot(self) -> int | None:
        """The relay that hands what the bridge hears to its members; the first read of
        either slot takes the two relay slots (MixerError if the mixer is full)."""
        self._open_relays()
        return self._mesh.scatter_slot

    @property
    def producer_slot(self) -> int | None:
        self._open_relays()
        return self._mesh.gather_slot

    def _open_relays(self) -> None:
        if self._mesh.gather_slot is None:
            with _wiring():
                self._mesh.open_relays()

    @property
    def ports(self) -> list[IAudioPort]:
        """The ports in the bridge, in no particular order."""
        with _wiring():
            ports = [member.ref() for member in self._mesh.members.values()]
        return [port for port in ports if port is not None]  # type: ignore[misc]

    def __contains__(self, port: object) -> bool:
        member = self._mesh.members.get(id(port))
        return member is not None and member.ref() is port

    def add(self, port: IAudioPort) -> None:
        """Connects ``port`` with every port of the bridge; adding it again does nothing."""
        if port is self:
            raise ValueError("an AudioBridge cannot contain itself")
        consumer, producer = _slots_of(port, self.mixer)
        key = id(port)
        with _wiring():
            mesh = self._mesh
            member = mesh.members.get(key)
            if member is not None:
                if member.ref() is port:
                    return
                mesh.remove(key)  # a collected port whose id was given to this one
            try:
                ref = weakref.ref(port, partial(_member_died, weakref.ref(mesh), key))
            except TypeError:
                raise TypeError(f"{port!r} cannot be weakly referenced, as bridges need") from None
            mesh.add(key, _Member(ref, consumer, producer))

    def remove(self, port: IAudioPort) -> None:
        """Disconnects ``port`` from the bridge's other ports; ValueError if not in it."""
        with _wiring():
            member = self._mesh.members.get(id(port))
            if member is None or member.ref() is not port:
                raise ValueError(f"{port!r} is not part of this AudioBridge")
            self._mesh.remove(id(port))

    def handle_notification(self, notification: Notification) -> None:
        if notification.name != "AudioPortDidChangeSlots":
            return
        port = notification.sender
        if port not in self:
            return
        try:
            consumer, producer = _slots_of(port, self.mixer)
        except (TypeError, ValueError):
            log.exception("cannot rewire %r in its AudioBridge", port)
            return
        with _wiring():
            member = self._mesh.members.get(id(port))
            if member is not None and member.ref() is port:
                self._mesh.update(id(port), consumer, producer)


# -- AudioDevice -----------------------------------------------------------------------


def _check_bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


class AudioDevice:
    """The sound device of ``mixer`` (its slot 0) as a port; muting a side takes that
    slot away from the bridges it is in."""

    def __init__(
        self, mixer: AudioMixer, input_muted: bool = False, output_muted: bool = False
    ) -> None:
        if not isinstance(mixer, AudioMixer):
            raise TypeError(f"mixer must be an AudioMixer, got {type(mixer).__name__}")
        self.mixer = mixer
        self._input_muted = _check_bool(input_muted, "input_muted")
        self._output_muted = _check_bool(output_muted, "output_muted")

    def __repr__(self) -> str:
        return f"<AudioDevice input_muted={self._input_muted} output_muted={self._output_muted}>"

    @property
    def consumer_slot(self) -> int | None:
        return None if self._output_muted else DEVICE_SLOT

    @property
    def producer_slot(self) -> int | None:
        return None if self._input_muted else DEVICE_SLOT

    @property
    def input_muted(self) -> bool:
        return self._input_muted

    @input_muted.setter
    def input_muted(self, value: bool) -> None:
        if _check_bool(value, "input_muted") == self._input_muted:
            return
        old = self.producer_slot
        self._input_muted = value
        _post_slots_change(self, producer=(old, self.producer_slot))

    @property
    def output_muted(self) -> bool:
        return self._output_muted

    @output_muted.setter
    def output_muted(self, value: bool) -> None:
        if _check_bool(value, "output_muted") == self._output_muted:
            return
        old = self.consumer_slot
        self._output_muted = value
        _post_slots_change(self, consumer=(old, self.consumer_slot))


# -- WavePlayer ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _PlayOptions:
    filename: str
    volume: float
    loop_count: int
    pause_frames: int
    initial_play: bool


class _PlayerPort(SlotPort):
    """One run of a WavePlayer, from start() to its end, in one mixer slot."""

    consumes = False

    def __init__(self, player: WavePlayer, options: _PlayOptions) -> None:
        self.player = player  # the mixer keeps an active player alive through its port
        self.mixer = player.mixer
        self.options = options
        self.slot: int | None = None
        self._reader: WaveReader | None = None
        self._plays = 0
        self._pause = 0 if options.initial_play else options.pause_frames
        self._started = False
        self._done = False

    def open_first(self) -> None:
        """Opens the first play at once (raising WaveFileError): initial_play."""
        self._reader = WaveReader(self.options.filename, self.mixer.sample_rate)
        self._started = True

    def close(self) -> None:
        self._done = True
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()

    def produce(self) -> Frame | None:
        if self._done:
            return None
        if self._pause:
            self._pause -= 1
            return None
        for _ in range(2):  # at most: one play ends and, with no pause, the next begins
            frame = self._read()
            if frame is not None:
                return scale_volume(frame, self.options.volume)
            if self._done or not self._next_play_now():
                return None
        return None

    def _read(self) -> Frame | None:
        """The next frame of the current play (opening it if need be); None at its end or
        on failure."""
        if self._reader is None:
            try:
                self._reader = WaveReader(self.options.filename, self.mixer.sample_rate)
            except WaveFileError as error:
                self._end(error)
                return None
            if not self._started:
                self._started = True
                self.mixer.call_after_tick(partial(self.player._port_started, self))
        try:
            frame = self._reader.read_frame(self.mixer.frame_samples)
        except (OSError, EOFError, wave.Error) as error:
            failure = WaveFileError(f"cannot read WAV file {self.options.filename!r}: {error}")
            failure.__cause__ = error
            self._end(failure)
            return None
        if frame is None:
            reader, self._reader = self._reader, None
            reader.close()
        return frame

    def _next_play_now(self) -> bool:
        """Counts the play that just ended; True if the next one starts in this frame."""
        self._plays += 1
        loop_count = self.options.loop_count
        if loop_count and self._plays >= loop_count:
            self._end(None)
            return False
        if self.options.pause_frames:
            self._pause = self.options.pause_frames - 1  # this frame is the pause's first
            return False
        return True

    def _end(self, error: WaveFileError | None) -> None:
        self.close()
        self.mixer.call_after_tick(partial(self.player._port_ended, self, error))


def _check_loop_count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"loop_count must be an integer >= 0 (0 = forever), got {value!r}")
    return value


def _check_pause_time(value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"pause_time must be a number of seconds >= 0, got {value!r}")
    return value


class WavePlayer:
    """Plays a WAV file ``loop_count`` times (0: forever) with ``pause_time`` seconds
    between plays; reusable.  Change the attributes only while it is stopped."""

    consumer_slot = None

    def __init__(
        self,
        mixer: AudioMixer,
        filename: str | os.PathLike[str],
        volume: float = 100,
        loop_count: int = 1,
        pause_time: float = 0,
        initial_play: bool = True,
    ) -> None:
        if not isinstance(mixer, AudioMixer):
            raise TypeError(f"mixer must be an AudioMixer, got {type(mixer).__name__}")
        if filename is None:
            raise ValueError("filename may not be None")
        self.mixer = mixer
        self.filename = os.fspath(filename)
        self.volume = check_volume(volume)
        self.loop_count = _check_loop_count(loop_count)
        self.pause_time = _check_pause_time(pause_time)
        self.initial_play = _check_bool(initial_play, "initial_play")
        self._port: _PlayerPort | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<WavePlayer {self.filename!r} active={self.is_active}>"

    @property
    def producer_slot(self) -> int | None:
        port = self._port
        return None if port is None else port.slot

    @property
    def is_active(self) -> bool:
        """True from start() until the player ends, pauses between plays included."""
        return self._port is not None

    def _options(self) -> _PlayOptions:
        return _PlayOptions(
            filename=os.fspath(self.filename),
            volume=check_volume(self.volume),
            loop_count=_check_loop_count(self.loop_count),
            pause_frames=round(_check_pause_time(self.pause_time) * FRAMES_PER_SECOND),
            initial_play=_check_bool(self.initial_play, "initial_play"),
        )

    def start(self) -> None:
        """Starts playing; a file that cannot be played gives WavePlayerDidFail."""
        options = self._options()
        failure: Exception | None = None
        with self._lock:
            if self._port is not None:
                raise WavePlayerError(f"{self.filename!r} is already playing; stop() it first")
            port = _PlayerPort(self, options)
            try:
                if options.initial_play:
                    port.open_first()
                port.slot = self.mixer.add_port(port)
            except (WaveFileError, MixerError) as error:
                port.close()
                failure = error
            else:
                self._port = port
        if failure is not None:
            _post("WavePlayerDidFail", self, error=failure)
            return
        _post_slots_change(self, producer=(None, port.slot))
        if options.initial_play:
            _post("WavePlayerDidStart", self)

    def stop(self) -> None:
        """Stops at once (WavePlayerDidEnd); nothing happens if it is not playing."""
        with self._lock:
            port, self._port = self._port, None
            if port is None:
                return
            self.mixer.remove_port(port.slot)  # type: ignore[arg-type]
            port.close()  # after: the mixer's thread is not in produce() any more
        _post_slots_change(self, producer=(port.slot, None))
        _post("WavePlayerDidEnd", self)

    def _port_started(self, port: _PlayerPort) -> None:
        if self._port is port:
            _post("WavePlayerDidStart", self)

    def _port_ended(self, port: _PlayerPort, error: WaveFileError | None) -> None:
        with self._lock:
            if self._port is not port:
                return  # stopped meanwhile
            self._port = None
            self.mixer.remove_port(port.slot)  # type: ignore[arg-type]
        _post_slots_change(self, producer=(port.slot, None))
        if error is None:
            _post("WavePlayerDidEnd", self)
        else:
            _post("WavePlayerDidFail", self, error=error)


# -- WaveRecorder ----------------------------------------------------------------------


def _stop_recording(recording: RecordingWaveFile) -> None:
    recording.stop()


class WaveRecorder:
    """Records what it hears in its bridges to a WAV file; reusable (starting again
    overwrites ``filename``)."""

    producer_slot = None

    def __init__(self, mixer: AudioMixer, filename: str | os.PathLike[str]) -> None:
        if not isinstance(mixer, AudioMixer):
            raise TypeError(f"mixer must be an AudioMixer, got {type(mixer).__name__}")
        if filename is None:
            raise ValueError("filename may not be None")
        self.mixer = mixer
        self.filename = os.fspath(filename)
        self._recording: RecordingWaveFile | None = None
        self._finalizer: weakref.finalize | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<WaveRecorder {self.filename!r} active={self.is_active}>"

    @property
    def consumer_slot(self) -> int | None:
        recording = self._recording
        return None if recording is None else recording.slot

    @property
    def is_active(self) -> bool:
        return self._recording is not None

    def start(self) -> None:
        """Creates the file (and its directories) at once: WaveFileError if it cannot."""
        with self._lock:
            if self._recording is not None:
                raise WaveRecorderError(f"{self.filename!r} is already recording; stop() it first")
            recording = RecordingWaveFile(self.mixer, self.filename)
            recording.start()
            self._recording = recording
            self._finalizer = weakref.finalize(self, _stop_recording, recording)
            self._finalizer.atexit = False
        _post_slots_change(self, consumer=(None, recording.slot))

    def stop(self) -> concurrent.futures.Future[None]:
        """Stops recording; the future is done once the file is complete at ``filename``."""
        with self._lock:
            recording, self._recording = self._recording, None
            if recording is None:
                done: concurrent.futures.Future[None] = concurrent.futures.Future()
                done.set_result(None)
                return done
            assert self._finalizer is not None
            self._finalizer.detach()
            slot = recording.slot
            completed = recording.stop()
        _post_slots_change(self, consumer=(slot, None))
        return completed


# -- the application's audio -----------------------------------------------------------

_VOICE_SETTINGS = frozenset(
    {
        "audio.input_device",
        "audio.output_device",
        "audio.echo_canceller.enabled",
        "audio.echo_canceller.tail_length",
    }
)


def _tail_length(audio: AudioSettings) -> int:
    return int(audio.echo_canceller.tail_length) if audio.echo_canceller.enabled else 0


def _device_choices(
    input_device: str | None, output_device: str | None
) -> list[tuple[str | None, str | None]]:
    """The devices asked for, then the system's defaults for the sides asked for, then none."""
    choices = [
        (input_device, output_device),
        (
            None if input_device is None else SYSTEM_DEFAULT,
            None if output_device is None else SYSTEM_DEFAULT,
        ),
        (None, None),
    ]
    return list(dict.fromkeys(choices))


def _create_mixer(
    input_device: str | None, output_device: str | None, sample_rate: int, tail_length: int
) -> AudioMixer:
    *choices, last = _device_choices(input_device, output_device)
    for input_name, output_name in choices:
        try:
            return AudioMixer(input_name, output_name, sample_rate, tail_length)
        except SoundDeviceError as error:
            log.warning("audio devices %r/%r: %s; trying others", input_name, output_name, error)
    return AudioMixer(*last, sample_rate, tail_length)


def _switch_devices(
    mixer: AudioMixer, input_device: str | None, output_device: str | None, tail_length: int
) -> None:
    *choices, last = _device_choices(input_device, output_device)
    for input_name, output_name in choices:
        try:
            mixer.set_sound_devices(input_name, output_name, tail_length)
            return
        except SoundDeviceError as error:
            log.warning("audio devices %r/%r: %s; trying others", input_name, output_name, error)
    mixer.set_sound_devices(*last, tail_length)


class ApplicationAudio:
    """The application's alert and voice audio (the spec's SIPApplication attributes of
    the same names); made by :func:`create_application_audio`."""

    alert_audio_mixer: AudioMixer
    alert_audio_bridge: AudioBridge
    alert_audio_device: AudioDevice
    voice_audio_mixer: AudioMixer
    voice_audio_bridge: AudioBridge
    voice_audio_device: AudioDevice

    def __init__(self, audio: AudioSettings, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop
        self._build(audio)

    def _build(self, audio: AudioSettings) -> None:
        rate = int(audio.sample_rate)
        voice = _create_mixer(audio.input_device, audio.output_device, rate, _tail_length(audio))
        try:
            alert = _create_mixer(None, audio.alert_device, rate, 0)
        except BaseException:
            voice.close()
            raise
        voice.muted = audio.muted
        alert.output_volume = 0 if audio.silent else 100
        try:
            voice.start(self._loop)
            alert.start(self._loop)
        except BaseException:
            voice.close()
            alert.close()
            raise
        self.voice_audio_mixer = voice
        self.voice_audio_device = AudioDevice(voice)
        self.voice_audio_bridge = AudioBridge(voice)
        self.voice_audio_bridge.add(self.voice_audio_device)
        self.alert_audio_mixer = alert
        self.alert_audio_device = AudioDevice(alert)
        self.alert_audio_bridge = AudioBridge(alert)
        self.alert_audio_bridge.add(self.alert_audio_device)

    def apply_settings(self, settings: SIPSimpleSettings, modified: Iterable[str]) -> None:
        """Follows changed settings (the dotted names of CFGSettingsObjectDidChange's
        ``modified``).  A new sample rate makes new mixers, bridges and devices (the
        old mixers are closed: what was on them goes quiet); device changes switch
        the devices in place.  Opening a sound card may take a moment."""
        changed = set(modified)
        audio = settings.audio
        if "audio.sample_rate" in changed:
            old = (self.voice_audio_mixer, self.alert_audio_mixer)
            self._build(audio)
            for mixer in old:
                mixer.close()
            return
        if changed & _VOICE_SETTINGS:
            voice = self.voice_audio_mixer
            tail = _tail_length(audio)
            wanted = (audio.input_device, audio.output_device, tail)
            if wanted != (voice.input_device, voice.output_device, voice.ec_tail_length):
                _switch_devices(voice, *wanted)
        if "audio.alert_device" in changed:
            alert = self.alert_audio_mixer
            if audio.alert_device != alert.output_device:
                _switch_devices(alert, None, audio.alert_device, 0)
        if "audio.muted" in changed:
            self.voice_audio_mixer.muted = audio.muted
        if "audio.silent" in changed:
            self.alert_audio_mixer.output_volume = 0 if audio.silent else 100

    def close(self) -> None:
        """Stops both mixers' clocks and releases their sound devices."""
        self.voice_audio_mixer.close()
        self.alert_audio_mixer.close()


def create_application_audio(
    settings: SIPSimpleSettings, *, loop: asyncio.AbstractEventLoop | None = None
) -> ApplicationAudio:
    """Builds the alert and voice mixers on the configured devices and starts their
    clocks on ``loop`` (default: the SIP thread's loop if it runs, else the running loop)."""
    return ApplicationAudio(settings.audio, loop)
