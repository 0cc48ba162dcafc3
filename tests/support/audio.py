"""Audio for tests: a sound device that keeps what it plays, the analysis of it, and the
functions that drive AudioStream sessions in a RemoteSDK child.

:class:`CaptureDevice` is the SDK's DummyDevice (its microphone a tone or a WAV file)
whose speaker output is also kept in memory, so a test can ask at any moment what the
local party heard over the last seconds; :func:`analyse` finds the dominant frequency
(FFT), how much of the energy is near given tones, and the level.

In a child (``remote.call("tests.support.audio:start_audio_endpoint", ...)``) the
SIPApplication is not started (the child's SIP thread is taken), so the functions here
add the application's audio to the start order of tests.support.sessions by hand.
Sessions are those of tests.support.sessions (outgoing ones by the test's name,
incoming ones "in1", "in2"...).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import struct
import wave
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
from tests.support import sessions

from sipsimple.account import AccountManager
from sipsimple.application import SIPApplication
from sipsimple.audio import create_application_audio
from sipsimple.configuration.settings import SIPSimpleSettings
from sipsimple.core import SIPURI, ToHeader
from sipsimple.media.devices import DummyDevice
from sipsimple.media.mixer import SlotPort
from sipsimple.media.rtp import RTPPacket
from sipsimple.session import Session
from sipsimple.streams import AudioStream
from sipsimple.util import Route

__all__ = [
    "CaptureDevice",
    "Recorder",
    "Tone",
    "analyse",
    "audio_stream",
    "connect_audio",
    "heard",
    "install_device",
    "listen",
    "send_stray_rtp",
    "set_tone",
    "start_audio_endpoint",
    "stop_audio_endpoint",
    "stop_sending",
    "stream_call",
    "stream_info",
    "write_tone",
]

FRAMES_PER_SECOND = 50
MIXER_FRAME = 960  # samples of a 20 ms frame at 48 kHz


class Tone(SlotPort):
    """A mixer port playing a sine of its own frequency (at the mixer's ``rate``),
    continuous from frame to frame: each call of a test can carry audio of its own."""

    consumes = False

    def __init__(self, frequency: float, rate: int = 48000) -> None:
        self.frequency = frequency
        self.rate = rate
        self.size = rate // FRAMES_PER_SECOND
        self.samples = 0

    def produce(self) -> np.ndarray:
        t = (self.samples + np.arange(self.size)) / self.rate
        self.samples += self.size
        return (8000 * np.sin(2 * np.pi * self.frequency * t)).astype(np.int16)


class Recorder(SlotPort):
    """A mixer port (of a mixer at ``rate``) that keeps every frame it is given (silence
    where it gets None)."""

    produces = False

    def __init__(self, rate: int = 48000) -> None:
        self.rate = rate
        self.size = rate // FRAMES_PER_SECOND
        self.frames: list[np.ndarray] = []

    def consume(self, frame: np.ndarray | None) -> None:
        self.frames.append(np.zeros(self.size, np.int16) if frame is None else frame.copy())

    def recent(self, frames: int) -> np.ndarray:
        """The last ``frames`` frames (none for 0 or less)."""
        return np.concatenate(self.frames[-frames:] if frames > 0 else [np.zeros(0, np.int16)])


class CaptureDevice(DummyDevice):
    """A DummyDevice that also keeps the last ``keep`` seconds its speaker played."""

    def __init__(self, *, keep: float = 30.0, **options: Any) -> None:
        super().__init__(**options)
        self.sample_rate = 0
        self.frames: deque[np.ndarray] = deque(maxlen=round(keep * FRAMES_PER_SECOND))

    def open(self, sample_rate: int) -> None:
        super().open(sample_rate)
        self.sample_rate = sample_rate

    def consume(self, frame: np.ndarray | None) -> None:
        super().consume(frame)
        if frame is None:
            frame = np.zeros(self.sample_rate // FRAMES_PER_SECOND, dtype=np.int16)
        self.frames.append(frame.copy())

    def recent(self, seconds: float) -> np.ndarray:
        """The last ``seconds`` of what was played (less if not that much yet)."""
        frames = list(self.frames)[-round(seconds * FRAMES_PER_SECOND) :]
        return np.concatenate(frames) if frames else np.zeros(0, dtype=np.int16)


def analyse(samples: np.ndarray, rate: int, tones: tuple[float, ...] = ()) -> dict[str, Any]:
    """``frequency``: the strongest (Hann window, FFT); ``share``: for each of ``tones``,
    the part of the energy within 25 Hz of it; ``rms``: the level."""
    if len(samples) < 256:
        return {"frequency": 0.0, "share": {tone: 0.0 for tone in tones}, "rms": 0.0}
    data = samples.astype(float)
    spectrum = np.abs(np.fft.rfft(data * np.hanning(len(data)))) ** 2
    frequencies = np.fft.rfftfreq(len(data), 1 / rate)
    total = float(spectrum.sum()) or 1.0
    return {
        "frequency": float(frequencies[np.argmax(spectrum)]),
        "share": {
            tone: float(spectrum[np.abs(frequencies - tone) < 25].sum() / total) for tone in tones
        },
        "rms": float(np.sqrt(np.mean(data**2))),
    }


def write_tone(path: Path, frequency: float, seconds: float, sample_rate: int = 48000) -> Path:
    """A mono 16-bit WAV file holding a sine of ``frequency`` at a quarter of full scale."""
    count = int(seconds * sample_rate)
    step = 2 * math.pi * frequency / sample_rate
    samples = struct.pack(f"<{count}h", *(int(8192 * math.sin(step * n)) for n in range(count)))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(samples)
    return path


# -- in the process that runs the SIPApplication ---------------------------------------------


def install_device(**options: Any) -> CaptureDevice:
    """Put a CaptureDevice (DummyDevice options: tone, input_file) behind the voice mixer."""
    device = CaptureDevice(**options)
    mixer = SIPApplication.voice_audio_mixer
    assert mixer is not None, "the application's audio is not running"
    mixer.set_sound_devices(None, None, device=device)
    return device


def heard(device: CaptureDevice, seconds: float, tones: tuple[float, ...] = ()) -> dict[str, Any]:
    return analyse(device.recent(seconds), device.sample_rate, tones)


# -- in a RemoteSDK child ---------------------------------------------------------------------

_device: CaptureDevice | None = None


async def start_audio_endpoint(
    accounts: dict[str, dict[str, Any]],
    settings: dict[str, Any] | None = None,
    tone: float | None = None,
    input_file: str | None = None,
) -> dict[str, int | None]:
    """tests.support.sessions.start_endpoint with the application's audio, its voice
    device a CaptureDevice playing ``tone`` (or ``input_file``)."""
    global _device
    ports = await sessions.start_endpoint(accounts, settings)
    loop = asyncio.get_running_loop()
    SIPApplication._audio = create_application_audio(SIPSimpleSettings(), loop=loop)
    _device = install_device(tone=tone, input_file=input_file)
    return ports


async def stop_audio_endpoint() -> None:
    await sessions.stop_endpoint()
    audio, SIPApplication._audio = SIPApplication._audio, None
    if audio is not None:
        audio.close()


def listen(seconds: float, tones: tuple[float, ...] = ()) -> dict[str, Any]:
    """What the child's party heard over the last ``seconds``."""
    assert _device is not None
    return heard(_device, seconds, tones)


def set_tone(tone: float | None) -> None:
    """Give the child's microphone another tone (None: silence)."""
    global _device
    _device = install_device(tone=tone)


def connect_audio(
    name: str, account_id: str, target: str, route: tuple[str, int, str] | None
) -> None:
    """Session ``name`` from ``account_id`` to ``target`` with one AudioStream."""
    account = AccountManager().get_account(account_id)
    session = Session(account)
    sessions._sessions[name] = session
    routes = [Route(*route)] if route is not None else None
    session.connect(ToHeader(SIPURI.parse(target)), routes, [AudioStream(account)])


def audio_stream(name: str) -> AudioStream:
    session = sessions._sessions[name]
    return next(stream for stream in session.streams if isinstance(stream, AudioStream))


def stream_info(name: str) -> dict[str, Any]:
    """The spec's attributes of session ``name``'s AudioStream (and a few more)."""
    stream = audio_stream(name)
    statistics = stream.statistics
    counters = stream.transport_counters
    return {
        "state": stream.state,
        "codec": stream.codec,
        "sample_rate": stream.sample_rate,
        "srtp_active": stream.srtp_active,
        "ice_active": stream.ice_active,
        "local_rtp_address": stream.local_rtp_address,
        "local_rtp_port": stream.local_rtp_port,
        "remote_rtp_address_sdp": stream.remote_rtp_address_sdp,
        "remote_rtp_port_sdp": stream.remote_rtp_port_sdp,
        "remote_rtp_address_received": stream.remote_rtp_address_received,
        "remote_rtp_port_received": stream.remote_rtp_port_received,
        "local_rtp_candidate_type": stream.local_rtp_candidate_type,
        "remote_rtp_candidate_type": stream.remote_rtp_candidate_type,
        "recording_filename": stream.recording_filename,
        "on_hold_by_local": stream.on_hold_by_local,
        "on_hold_by_remote": stream.on_hold_by_remote,
        "in_bridge": stream in stream.bridge,
        "rx_packets": statistics.rx.packets if statistics is not None else 0,
        "counters": dataclasses.asdict(counters) if counters is not None else {},
    }


def stream_call(name: str, method: str, *args: Any) -> Any:
    """Call an AudioStream method of session ``name`` (send_dtmf, start_recording...)."""
    return getattr(audio_stream(name), method)(*args)


def stop_sending(name: str) -> None:
    """Make session ``name``'s stream send no RTP while its SDP still says it does: a
    peer that sends no media."""
    audio_stream(name)._audio.update_direction("recvonly")  # type: ignore[union-attr]


def send_stray_rtp(name: str, count: int, payload_type: int = 0) -> None:
    """Send ``count`` RTP packets of a foreign SSRC from session ``name``'s own RTP socket
    (through its RTPTransport, so SRTP-protected when SRTP is on)."""
    rtp = audio_stream(name)._rtp
    assert rtp is not None
    for index in range(count):
        packet = RTPPacket(payload_type, 1000 + index, 160 * index, 0x5EEDF00D, b"\xff" * 160)
        rtp.send_rtp(packet.serialize())
