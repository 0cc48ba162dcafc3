"""WAV files in the mixer: a player slot (:class:`WaveFile`) and a recorder slot
(:class:`RecordingWaveFile`), on top of a streaming reader and a background writer.

Reading
    16-bit PCM, mono or stereo (mixed down), at any rate (resampled to the mixer's with
    the stateful :class:`~sipsimple.media.resample.Resampler`, seamlessly across loops).
    The file is read on the mixer's thread in small chunks of about 0.1 s as it plays:
    reads that size come from the page cache in microseconds and never hold the loop
    for long, and a long file never sits whole in memory.

Writing
    16-bit mono at the mixer's rate.  Frames are gathered into ~0.5 s batches which a
    single shared worker thread writes, so a slow or stalled disk never blocks the event
    loop.  Each batch also rewrites the header's sizes, so the file on disk is a valid WAV
    at all times.  The recording goes to a hidden ``.<name>.<random>.part`` file beside
    the target (mode 0600: recordings are private) that is renamed over ``filename``
    once stopped and complete: the file at ``filename`` is always whole, a crash leaves
    a clearly partial ``.part``, and two recordings to the same name never interleave.
    WAV sizes are 32-bit: a recording stops taking audio at 4 GiB (12 h at 48 kHz).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import tempfile
import threading
import wave
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from sipsimple.media.errors import MediaError
from sipsimple.media.mixer import MixerError, SlotPort, check_volume, scale_volume
from sipsimple.media.resample import Resampler

if TYPE_CHECKING:
    from sipsimple.media.mixer import AudioMixer, Frame

__all__ = [
    "RecordingWaveFile",
    "WaveFile",
    "WaveFileError",
    "WaveReader",
    "WaveWriter",
]

log = logging.getLogger("sipsimple.media.wave")

READ_SECONDS = 0.1
WRITE_SECONDS = 0.5
MAX_DATA_BYTES = 0xFFFFFFFF - 36


class WaveFileError(MediaError):
    """A WAV file that cannot be opened or is not 16-bit PCM mono/stereo."""


class WaveReader:
    """A 16-bit PCM WAV file as 20 ms frames at ``sample_rate``, optionally looped."""

    def __init__(self, filename: str | os.PathLike[str], sample_rate: int, *, loop: bool = False):
        self.filename = os.fspath(filename)
        try:
            self._wave = wave.open(self.filename, "rb")  # noqa: SIM115 (open while playing)
        except (OSError, EOFError, wave.Error) as error:
            raise WaveFileError(f"cannot read WAV file {self.filename!r}: {error}") from error
        channels = self._wave.getnchannels()
        width = self._wave.getsampwidth()
        rate = self._wave.getframerate()
        if width != 2 or channels not in (1, 2) or rate <= 0:
            self._wave.close()
            raise WaveFileError(
                f"{self.filename!r} is {8 * width}-bit, {channels} channel(s), {rate} Hz: "
                f"only 16-bit PCM mono or stereo is supported"
            )
        self.channels = channels
        self.file_rate = rate
        self.loop = loop
        self._empty = self._wave.getnframes() == 0
        self._resampler = Resampler(rate, sample_rate)
        self._chunk = max(1, round(rate * READ_SECONDS))
        self._pending = np.zeros(0, dtype=np.int16)
        self._ended = False

    def close(self) -> None:
        self._wave.close()

    def read_frame(self, count: int) -> Frame | None:
        """The next ``count`` samples; the last frame is padded with silence, then None."""
        while len(self._pending) < count and not self._ended:
            self._pending = np.concatenate([self._pending, self._read_chunk()])
        if not len(self._pending):
            return None
        frame, self._pending = self._pending[:count], self._pending[count:]
        if len(frame) < count:
            frame = np.concatenate([frame, np.zeros(count - len(frame), dtype=np.int16)])
        return frame

    def _read_chunk(self) -> np.ndarray:
        data = self._wave.readframes(self._chunk)
        if not data:
            if not self.loop or self._empty:
                self._ended = True
                return np.zeros(0, dtype=np.int16)
            self._wave.rewind()
            data = self._wave.readframes(self._chunk)
        samples = np.frombuffer(data, dtype=np.int16)
        if self.channels == 2:
            pairs = samples[: len(samples) // 2 * 2].reshape(-1, 2).astype(np.int32)
            samples = ((pairs[:, 0] + pairs[:, 1]) // 2).astype(np.int16)
        return self._resampler.process(samples)


_executor: concurrent.futures.ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _writer_thread() -> concurrent.futures.ThreadPoolExecutor:
    """The one worker that does all recording writes, in the order they were asked for."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="sipsimple-wave-writer"
            )
        return _executor


class WaveWriter:
    """Writes mono 16-bit frames to ``filename`` off the calling thread (see the module
    docstring); :meth:`close` returns a future that is done once the file is complete."""

    def __init__(self, filename: str | os.PathLike[str], sample_rate: int) -> None:
        self.path = Path(filename)
        self.sample_rate = sample_rate
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(
                prefix=f".{self.path.name}.", suffix=".part", dir=self.path.parent
            )
        except OSError as error:
            raise WaveFileError(f"cannot create WAV file {str(self.path)!r}: {error}") from error
        self.temporary = Path(temporary)
        self._file: BinaryIO = os.fdopen(descriptor, "wb")
        self._wave = wave.open(self._file, "wb")  # noqa: SIM115 (open while recording)
        self._wave.setnchannels(1)
        self._wave.setsampwidth(2)
        self._wave.setframerate(sample_rate)
        try:
            self._wave.writeframes(b"")  # the header: the file is a valid WAV from now on
        except OSError as error:
            self._file.close()
            self.temporary.unlink(missing_ok=True)
            raise WaveFileError(f"cannot write WAV file {str(self.path)!r}: {error}") from error
        self._batch = bytearray()
        self._batch_bytes = 2 * round(sample_rate * WRITE_SECONDS)
        self._bytes = 0
        self._error: BaseException | None = None
        self._closed: concurrent.futures.Future[None] | None = None
        self.truncated = False

    def write(self, frame: np.ndarray) -> None:
        if self._closed is not None:
            raise WaveFileError(f"{str(self.path)!r} is already closed")
        data = frame.astype(np.int16, copy=False).tobytes()
        if self._bytes + len(data) > MAX_DATA_BYTES:
            if not self.truncated:
                self.truncated = True
                log.warning("recording %s reached the WAV size limit; the rest is lost", self.path)
            return
        self._bytes += len(data)
        self._batch += data
        if len(self._batch) >= self._batch_bytes:
            self._flush()

    def close(self) -> concurrent.futures.Future[None]:
        """Finishes the file; the future fails if anything could not be written."""
        if self._closed is None:
            self._flush()
            self._closed = _writer_thread().submit(self._finish)
        return self._closed

    def discard(self) -> None:
        """Abandons the recording: nothing appears at ``filename``."""
        if self._closed is None:
            self._batch.clear()
            self._closed = _writer_thread().submit(self._remove)

    def _remove(self) -> None:
        try:
            self._wave.close()
        finally:
            self._file.close()
            self.temporary.unlink(missing_ok=True)

    def _flush(self) -> None:
        if self._batch:
            _writer_thread().submit(self._write, bytes(self._batch))
            self._batch.clear()

    def _write(self, data: bytes) -> None:
        if self._error is not None:
            return
        try:
            self._wave.writeframes(data)
        except Exception as error:
            self._error = error
            log.exception("writing %s failed; it stays partial as %s", self.path, self.temporary)

    def _finish(self) -> None:
        try:
            self._wave.close()
        finally:
            self._file.close()
        if self._error is not None:
            raise WaveFileError(
                f"writing {str(self.path)!r} failed: {self._error}"
            ) from self._error
        os.replace(self.temporary, self.path)


class WaveFile(SlotPort):
    """Plays a WAV file into the mixer; connect its :attr:`slot` to where it should go.

    ``start()`` raises :class:`WaveFileError` at once if the file cannot be played.
    When the file has played to its end (never, with ``loop``) the WaveFile stops by
    itself and calls ``on_finished(wave_file)``, after the tick; ``stop()`` does not
    call it.
    """

    consumes = False

    def __init__(
        self,
        mixer: AudioMixer,
        filename: str | os.PathLike[str],
        *,
        loop: bool = False,
        on_finished: Callable[[WaveFile], object] | None = None,
    ) -> None:
        if filename is None:
            raise ValueError("filename may not be None")
        self.mixer = mixer
        self.filename = os.fspath(filename)
        self.loop = loop
        self.on_finished = on_finished
        self._volume: float = 100
        self._reader: WaveReader | None = None
        self._slot: int | None = None

    @property
    def slot(self) -> int | None:
        return self._slot

    @property
    def is_active(self) -> bool:
        return self._slot is not None

    @property
    def volume(self) -> float:
        return self._volume

    @volume.setter
    def volume(self, value: float) -> None:
        self._volume = check_volume(value)

    def start(self) -> None:
        if self._slot is not None:
            raise MixerError(f"{self.filename!r} is already playing")
        reader = WaveReader(self.filename, self.mixer.sample_rate, loop=self.loop)
        try:
            self._slot = self.mixer.add_port(self)
        except BaseException:
            reader.close()
            raise
        self._reader = reader

    def stop(self) -> None:
        slot, self._slot = self._slot, None
        reader, self._reader = self._reader, None
        if slot is not None:
            self.mixer.remove_port(slot)
        if reader is not None:
            reader.close()

    def produce(self) -> Frame | None:
        reader = self._reader
        if reader is None:
            return None
        frame = reader.read_frame(self.mixer.frame_samples)
        if frame is None:
            self._reader = None
            reader.close()
            self.mixer.call_after_tick(self._finished)
            return None
        return scale_volume(frame, self._volume)

    def _finished(self) -> None:
        if self._slot is None or self._reader is not None:
            return  # stopped, or started again, meanwhile
        self.stop()
        if self.on_finished is not None:
            self.on_finished(self)


class RecordingWaveFile(SlotPort):
    """Records what its slot hears to a 16-bit mono WAV file at the mixer's rate.

    Connect sources to its :attr:`slot`; ticks where nothing is connected write nothing.
    ``start()`` creates the directories and the file at once (raising
    :class:`WaveFileError`); ``stop()`` returns a future that is done when the file is
    complete at ``filename``.  Starting again records anew over the same name.
    """

    produces = False

    def __init__(self, mixer: AudioMixer, filename: str | os.PathLike[str]) -> None:
        if filename is None:
            raise ValueError("filename may not be None")
        self.mixer = mixer
        self.filename = os.fspath(filename)
        self._writer: WaveWriter | None = None
        self._slot: int | None = None

    @property
    def slot(self) -> int | None:
        return self._slot

    @property
    def is_active(self) -> bool:
        return self._slot is not None

    def start(self) -> None:
        if self._slot is not None:
            raise MixerError(f"{self.filename!r} is already recording")
        writer = WaveWriter(self.filename, self.mixer.sample_rate)
        try:
            self._slot = self.mixer.add_port(self)
        except BaseException:
            writer.discard()
            raise
        self._writer = writer

    def stop(self) -> concurrent.futures.Future[None]:
        slot, self._slot = self._slot, None
        writer, self._writer = self._writer, None
        if slot is not None:
            self.mixer.remove_port(slot)
        if writer is None:
            done: concurrent.futures.Future[None] = concurrent.futures.Future()
            done.set_result(None)
            return done
        return writer.close()

    def consume(self, frame: Frame | None) -> None:
        if frame is not None and self._writer is not None:
            self._writer.write(frame)
