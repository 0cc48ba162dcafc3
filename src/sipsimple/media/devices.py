"""Sound devices: what stands behind mixer slot 0.

Backends
    * A sound card through PortAudio, with the optional ``sounddevice`` package
      (``pip install sipsimple[sound]``; it needs Debian's libportaudio2).  It is
      imported on first use only, and a missing package or library just means "no sound
      backend".  Input and output run in PortAudio's callback mode on its own thread;
      they meet the mixer through small :class:`~sipsimple.media.mixer.SampleFifo`
      buffers (100 ms in, 60 ms out), so the mixer's clock stays the master and a card
      clock that drifts against it costs an occasional dropped or padded frame, never
      growing latency.
    * :class:`DummyDevice`: for servers, CI and demos.  It is polled on the mixer's own
      absolute-deadline clock like any other slot; its microphone is silence, a tone, or
      a WAV file played in a loop, and its speaker can be recorded to a WAV file.

Names
    A device is named as in ``input_devices()`` / ``output_devices()``;
    ``"system_default"`` means the system's default; None means no device in that
    direction.  Without a backend, or without any card, every name falls back to a
    silent DummyDevice (as the original SDK did); with a backend, an unknown name raises
    :class:`SoundDeviceError`.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from sipsimple.media.errors import MediaError
from sipsimple.media.mixer import FRAMES_PER_SECOND, SampleFifo
from sipsimple.media.tones import ToneSynth
from sipsimple.media.wave import WaveReader, WaveWriter

if TYPE_CHECKING:
    import concurrent.futures

    from sipsimple.media.mixer import Frame

__all__ = [
    "SYSTEM_DEFAULT",
    "DummyDevice",
    "PortAudioDevice",
    "SoundDevice",
    "SoundDeviceError",
    "create_sound_device",
    "default_input_device",
    "default_output_device",
    "input_devices",
    "output_devices",
    "refresh_sound_devices",
    "sounddevice_available",
]

log = logging.getLogger("sipsimple.media.devices")

SYSTEM_DEFAULT = "system_default"
INPUT_BUFFER_FRAMES = 5
OUTPUT_BUFFER_FRAMES = 3


class SoundDeviceError(MediaError):
    """A sound device that does not exist or cannot be opened."""


class SoundDevice:
    """A microphone and/or speaker that the mixer polls once per 20 ms frame.

    ``open(sample_rate)`` and ``close()`` bracket its use (the mixer opens it while it
    has ports); ``produce()`` gives the next microphone frame or None, ``consume(frame)``
    plays a frame (None: nothing to play).
    """

    input_name: str | None = None
    output_name: str | None = None

    def open(self, sample_rate: int) -> None:
        return None

    def close(self) -> None:
        return None

    def produce(self) -> Frame | None:
        return None

    def consume(self, frame: Frame | None) -> None:
        return None


class DummyDevice(SoundDevice):
    """A stand-in for a sound card: microphone silence, a ``tone`` (Hz) or ``input_file``
    (a WAV file, looped); speaker discarded or written to ``output_file`` (silence where
    nothing played, so the file lasts as long as the device was open).

    Each open() starts the output file anew; after close(), :attr:`output_closed` is done
    once the file is complete.
    """

    def __init__(
        self,
        *,
        tone: float | None = None,
        input_file: str | os.PathLike[str] | None = None,
        output_file: str | os.PathLike[str] | None = None,
    ) -> None:
        if tone is not None and input_file is not None:
            raise ValueError("a DummyDevice's microphone is a tone or a file, not both")
        self.tone = tone
        self.input_file = None if input_file is None else os.fspath(input_file)
        self.output_file = None if output_file is None else os.fspath(output_file)
        if tone is not None:
            self.input_name = f"dummy: {tone:g} Hz tone"
        elif self.input_file is not None:
            self.input_name = f"dummy: {self.input_file}"
        if self.output_file is not None:
            self.output_name = f"dummy: {self.output_file}"
        self._frame_samples = 0
        self._synth: ToneSynth | None = None
        self._reader: WaveReader | None = None
        self._writer: WaveWriter | None = None
        self.output_closed: concurrent.futures.Future[None] | None = None

    def open(self, sample_rate: int) -> None:
        self._frame_samples = sample_rate // FRAMES_PER_SECOND
        if self.tone is not None:
            self._synth = ToneSynth(sample_rate, self.tone)
        if self.input_file is not None:
            self._reader = WaveReader(self.input_file, sample_rate, loop=True)
        if self.output_file is not None:
            self._writer = WaveWriter(self.output_file, sample_rate)

    def close(self) -> None:
        reader, self._reader = self._reader, None
        writer, self._writer = self._writer, None
        self._synth = None
        if reader is not None:
            reader.close()
        if writer is not None:
            self.output_closed = writer.close()

    def produce(self) -> Frame | None:
        if self._synth is not None:
            return np.rint(self._synth.render(self._frame_samples)).astype(np.int16)
        if self._reader is not None:
            return self._reader.read_frame(self._frame_samples)
        return None

    def consume(self, frame: Frame | None) -> None:
        if self._writer is not None:
            if frame is None:
                frame = np.zeros(self._frame_samples, dtype=np.int16)
            self._writer.write(frame)


# -- PortAudio, through the optional sounddevice package --------------------------------

_backend: Any = None
_backend_checked = False
_backend_lock = threading.Lock()
_open_devices = 0


def _sounddevice() -> Any:
    """The sounddevice module, or None if it (or the PortAudio library) is missing."""
    global _backend, _backend_checked
    with _backend_lock:
        if not _backend_checked:
            _backend_checked = True
            try:
                import sounddevice  # type: ignore[import-not-found]
            except (ImportError, OSError) as error:
                log.info("no sound backend (sounddevice/PortAudio): %s", error)
            else:
                _backend = sounddevice
        return _backend


def _require() -> Any:
    backend = _sounddevice()
    if backend is None:
        raise SoundDeviceError(
            "sound cards need the optional 'sounddevice' package and the PortAudio library "
            "(pip install sipsimple[sound]; apt install libportaudio2)"
        )
    return backend


def sounddevice_available() -> bool:
    return _sounddevice() is not None


def _names(kind: str) -> list[str]:
    backend = _sounddevice()
    if backend is None:
        return []
    names: list[str] = []
    for info in backend.query_devices():
        if info[f"max_{kind}_channels"] > 0 and info["name"] not in names:
            names.append(info["name"])
    return names


def _default(kind: str) -> str | None:
    backend = _sounddevice()
    if backend is None:
        return None
    index = backend.default.device[0 if kind == "input" else 1]
    if index is None or index < 0:
        return None
    return backend.query_devices(index)["name"]


def input_devices() -> list[str]:
    """Names of the devices that can record (empty without a sound backend)."""
    return _names("input")


def output_devices() -> list[str]:
    return _names("output")


def default_input_device() -> str | None:
    return _default("input")


def default_output_device() -> str | None:
    return _default("output")


def refresh_sound_devices() -> None:
    """Scans for devices plugged in or out since the start (PortAudio only sees them
    then).  PortAudio can only rescan while no device is open."""
    backend = _sounddevice()
    if backend is None:
        return
    if _open_devices:
        raise SoundDeviceError("cannot rescan the sound devices while one is open")
    backend._terminate()
    backend._initialize()


def _find(backend: Any, name: str | None, kind: str) -> tuple[int, str] | None:
    if name is None:
        return None
    if name == SYSTEM_DEFAULT:
        index = backend.default.device[0 if kind == "input" else 1]
        if index is None or index < 0:
            return None  # no such default: that direction stays off
        return index, backend.query_devices(index)["name"]
    for index, info in enumerate(backend.query_devices()):
        if info["name"] == name and info[f"max_{kind}_channels"] > 0:
            return index, name
    raise SoundDeviceError(f'audio {kind} device "{name}" not found')


class PortAudioDevice(SoundDevice):
    """A sound card through sounddevice; names are resolved at construction."""

    def __init__(self, input_device: str | None, output_device: str | None) -> None:
        backend = _require()
        self._input = _find(backend, input_device, "input")
        self._output = _find(backend, output_device, "output")
        self.input_name = self._input[1] if self._input else None
        self.output_name = self._output[1] if self._output else None
        self._streams: list[Any] = []
        self._counted = False
        self._frame_samples = 0
        self._microphone = SampleFifo(1)
        self._speaker = SampleFifo(1)

    def open(self, sample_rate: int) -> None:
        global _open_devices
        backend = _require()
        samples = self._frame_samples = sample_rate // FRAMES_PER_SECOND
        self._microphone = SampleFifo(INPUT_BUFFER_FRAMES * samples)
        self._speaker = SampleFifo(OUTPUT_BUFFER_FRAMES * samples)
        common = {"samplerate": sample_rate, "blocksize": samples, "channels": 1}
        common |= {"dtype": "int16", "latency": "low"}
        try:
            if self._input is not None:
                self._streams.append(
                    backend.RawInputStream(
                        device=self._input[0], callback=self._input_callback, **common
                    )
                )
            if self._output is not None:
                self._streams.append(
                    backend.RawOutputStream(
                        device=self._output[0], callback=self._output_callback, **common
                    )
                )
            for stream in self._streams:
                stream.start()
        except Exception as error:
            self.close()
            raise SoundDeviceError(
                f"cannot open sound device(s) {self.input_name!r}/{self.output_name!r} "
                f"at {sample_rate} Hz: {error}"
            ) from error
        with _backend_lock:
            _open_devices += 1
        self._counted = True

    def close(self) -> None:
        global _open_devices
        streams, self._streams = self._streams, []
        for stream in streams:
            try:
                stream.stop()
                stream.close()
            except Exception:
                log.exception("closing a sound stream failed")
        if self._counted:
            self._counted = False
            with _backend_lock:
                _open_devices -= 1

    def _input_callback(self, indata: Any, frames: int, time: Any, status: Any) -> None:
        self._microphone.write(np.frombuffer(indata, dtype=np.int16, count=frames))

    def _output_callback(self, outdata: Any, frames: int, time: Any, status: Any) -> None:
        outdata[:] = self._speaker.read(frames, pad=True).tobytes()

    def produce(self) -> Frame | None:
        return self._microphone.read(self._frame_samples)

    def consume(self, frame: Frame | None) -> None:
        if frame is None:
            frame = np.zeros(self._frame_samples, dtype=np.int16)
        self._speaker.write(frame)


def create_sound_device(input_device: str | None, output_device: str | None) -> SoundDevice:
    """The device for these names (see the module docstring), not yet opened."""
    if input_device is None and output_device is None:
        return DummyDevice()
    if not sounddevice_available() or not (input_devices() or output_devices()):
        log.info("no sound card: audio runs on a silent dummy device")
        return DummyDevice()
    return PortAudioDevice(input_device, output_device)
