"""Sound devices: the dummy device (tone, WAV microphone, WAV speaker) and the behaviour
without a sound backend (sounddevice is optional and absent here)."""

import importlib.util
import logging
import wave

import numpy as np
import pytest

from sipsimple.media import devices
from sipsimple.media.devices import (
    DummyDevice,
    PortAudioDevice,
    SoundDeviceError,
    create_sound_device,
)
from sipsimple.media.mixer import AudioMixer, SlotPort

RATE = 48000
FRAME = RATE // 50

no_backend = pytest.mark.skipif(
    importlib.util.find_spec("sounddevice") is not None,
    reason="tests the behaviour without the optional sounddevice package",
)


class Sink(SlotPort):
    produces = False

    def __init__(self):
        self.frames = []

    def consume(self, frame):
        self.frames.append(frame)

    def audio(self):
        return np.concatenate(self.frames)


class Tone(SlotPort):
    consumes = False

    def __init__(self, frequency):
        self.frequency = frequency
        self.position = 0

    def produce(self):
        t = np.arange(self.position, self.position + FRAME) / RATE
        self.position += FRAME
        return np.rint(5000 * np.sin(2 * np.pi * self.frequency * t)).astype(np.int16)


def peak_frequency(signal, rate=RATE):
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return np.fft.rfftfreq(len(signal), 1 / rate)[spectrum.argmax()]


@no_backend
class TestWithoutSoundBackend:
    def test_nothing_is_listed(self):
        assert not devices.sounddevice_available()
        assert devices.input_devices() == []
        assert devices.output_devices() == []
        assert devices.default_input_device() is None
        assert devices.default_output_device() is None
        devices.refresh_sound_devices()  # nothing to rescan, no error

    @pytest.mark.parametrize(
        ("input_device", "output_device"),
        [("system_default", "system_default"), ("Some Card", None), (None, None)],
    )
    def test_every_name_gives_a_silent_dummy(self, input_device, output_device):
        device = create_sound_device(input_device, output_device)
        assert type(device) is DummyDevice
        assert (device.input_name, device.output_name) == (None, None)

    def test_a_sound_card_device_explains_what_is_missing(self):
        with pytest.raises(SoundDeviceError, match="sounddevice"):
            PortAudioDevice("system_default", "system_default")

    def test_the_mixer_runs_with_default_names(self):
        mixer = AudioMixer("system_default", "system_default", RATE, 200)
        assert (mixer.input_device, mixer.output_device) == ("system_default", "system_default")
        assert (mixer.real_input_device, mixer.real_output_device) == (None, None)
        assert mixer.ec_tail_length == 200
        sink = Sink()
        mixer.connect_slots(0, mixer.add_port(sink))
        mixer.tick(3)
        assert [f is not None and not np.any(f) for f in sink.frames] == [True] * 3


def test_a_tone_microphone():
    mixer = AudioMixer(None, None, RATE, device=DummyDevice(tone=440))
    assert mixer.real_input_device == "dummy: 440 Hz tone"
    sink = Sink()
    mixer.connect_slots(0, mixer.add_port(sink))
    mixer.tick(25)
    assert peak_frequency(sink.audio()) == pytest.approx(440, abs=3)


def test_a_wav_microphone_loops(tmp_path):
    clip = np.arange(1, 3 * FRAME + 1, dtype=np.int16)
    path = tmp_path / "mic.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(clip.tobytes())
    mixer = AudioMixer(None, None, RATE, device=DummyDevice(input_file=path))
    sink = Sink()
    mixer.connect_slots(0, mixer.add_port(sink))
    mixer.tick(10)
    assert np.array_equal(sink.audio(), np.tile(clip, 4)[: 10 * FRAME])


def test_the_speaker_is_written_to_a_wav_file(tmp_path):
    target = tmp_path / "speaker.wav"
    device = DummyDevice(output_file=target)
    mixer = AudioMixer(None, None, RATE, device=device)
    assert mixer.real_output_device == f"dummy: {target}"
    tone = Tone(1000)
    slot = mixer.add_port(tone)
    mixer.tick(5)  # nothing connected yet: silence
    mixer.connect_slots(slot, 0)
    mixer.tick(50)
    mixer.remove_port(slot)  # the last port: the device closes
    device.output_closed.result(timeout=10)
    with wave.open(str(target), "rb") as recorded:
        assert recorded.getframerate() == RATE
        audio = np.frombuffer(recorded.readframes(recorded.getnframes()), dtype=np.int16)
    assert len(audio) == 55 * FRAME  # as long as the device was open
    assert not np.any(audio[: 5 * FRAME])
    assert peak_frequency(audio[5 * FRAME :]) == pytest.approx(1000, abs=2)


def test_tone_and_file_together_are_refused():
    with pytest.raises(ValueError):
        DummyDevice(tone=440, input_file="x.wav")


def test_a_device_that_cannot_open_falls_back_to_silence(tmp_path, caplog):
    mixer = AudioMixer(None, None, RATE, device=DummyDevice(input_file=tmp_path / "nope.wav"))
    sink = Sink()
    with caplog.at_level(logging.ERROR, logger="sipsimple.media.mixer"):
        mixer.connect_slots(0, mixer.add_port(sink))
    assert "cannot open the sound device" in caplog.text
    assert mixer.real_input_device is None
    mixer.tick(2)
    assert not np.any(sink.audio())


@no_backend
def test_set_sound_devices_by_name_without_a_card():
    mixer = AudioMixer(None, None, RATE, device=DummyDevice(tone=300))
    mixer.set_sound_devices("system_default", None, 50)
    assert (mixer.input_device, mixer.output_device, mixer.ec_tail_length) == (
        "system_default",
        None,
        50,
    )
    with pytest.raises(ValueError):
        mixer.set_sound_devices(None, None, -1)
