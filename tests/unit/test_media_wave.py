"""WAV files through the mixer: player and recorder slots, resampling, mixdown, errors."""

import wave

import numpy as np
import pytest

from sipsimple.media import wave as wave_module
from sipsimple.media.mixer import AudioMixer, MixerError, SlotPort
from sipsimple.media.wave import RecordingWaveFile, WaveFile, WaveFileError, WaveReader

RATE = 48000
FRAME = RATE // 50


def tone(frequency, samples, rate, amplitude=8000.0):
    t = np.arange(samples) / rate
    return np.rint(amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.int16)


def write_wav(path, samples, rate, channels=1, width=2):
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(np.ascontiguousarray(samples).tobytes())
    return path


def read_wav(path):
    with wave.open(str(path), "rb") as source:
        assert (source.getnchannels(), source.getsampwidth()) == (1, 2)
        data = source.readframes(source.getnframes())
        return source.getframerate(), np.frombuffer(data, dtype=np.int16)


def magnitude_at(signal, frequency, rate=RATE):
    window = np.hanning(len(signal))
    spectrum = np.abs(np.fft.rfft(signal * window)) / (window.sum() / 2)
    freqs = np.fft.rfftfreq(len(signal), 1 / rate)
    return spectrum[np.abs(freqs - frequency) <= 2 * rate / len(signal)].max()


def peak_frequency(signal, rate=RATE):
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return np.fft.rfftfreq(len(signal), 1 / rate)[spectrum.argmax()]


def play_into_recording(mixer, source_path, target_path, ticks, **options):
    """Plays source_path into a recorder for ``ticks`` frames; returns the recorded samples."""
    player = WaveFile(mixer, source_path, **options)
    recorder = RecordingWaveFile(mixer, target_path)
    player.start()
    recorder.start()
    mixer.connect_slots(player.slot, recorder.slot)
    mixer.tick(ticks)
    player.stop()
    recorder.stop().result(timeout=10)
    return read_wav(target_path)


@pytest.fixture
def mixer():
    return AudioMixer(None, None, RATE)


def test_wav_round_trip_through_the_mixer_is_exact(mixer, tmp_path):
    rng = np.random.default_rng(1)
    original = (rng.standard_normal(25 * FRAME) * 6000).clip(-32768, 32767).astype(np.int16)
    source = write_wav(tmp_path / "in.wav", original, RATE)
    rate, recorded = play_into_recording(mixer, source, tmp_path / "out.wav", 25)
    assert rate == RATE
    assert np.array_equal(recorded, original)


@pytest.mark.parametrize("file_rate", [8000, 16000, 32000, 44100, 22050, 48000])
def test_files_at_other_rates_are_resampled_to_the_mixer_rate(mixer, tmp_path, file_rate):
    seconds = 0.5
    source = write_wav(
        tmp_path / "in.wav", tone(1000, int(file_rate * seconds), file_rate), file_rate
    )
    ended = []
    player = WaveFile(mixer, source, on_finished=ended.append)
    recorder = RecordingWaveFile(mixer, tmp_path / "out.wav")
    player.start()
    recorder.start()
    mixer.connect_slots(player.slot, recorder.slot)
    mixer.tick(40)  # 0.8 s: the file ends after 25 frames
    recorder.stop().result(timeout=10)
    assert ended == [player]
    _rate, recorded = read_wav(tmp_path / "out.wav")
    body = recorded[FRAME : 24 * FRAME]
    assert peak_frequency(body) == pytest.approx(1000, abs=5)
    assert magnitude_at(body, 1000) == pytest.approx(8000, rel=0.03)
    # The tone lasts as long as the file, within the resampler's small delay.
    loud = np.flatnonzero(np.abs(recorded) > 2000)
    assert loud[-1] / RATE == pytest.approx(seconds, abs=0.003)
    assert not np.any(recorded[26 * FRAME :])


def test_stereo_is_mixed_down(mixer, tmp_path):
    left = tone(500, 25 * FRAME, RATE)
    right = tone(1500, 25 * FRAME, RATE)
    stereo = np.stack([left, right], axis=1)
    _rate, recorded = play_into_recording(
        mixer, write_wav(tmp_path / "s.wav", stereo, RATE, channels=2), tmp_path / "o.wav", 25
    )
    expected = (left.astype(np.int32) + right) // 2
    assert np.array_equal(recorded, expected)
    assert magnitude_at(recorded, 500) == pytest.approx(4000, rel=0.03)
    assert magnitude_at(recorded, 1500) == pytest.approx(4000, rel=0.03)


def test_the_end_is_reported_once_and_frees_the_slot(mixer, tmp_path):
    source = write_wav(tmp_path / "short.wav", tone(700, 3 * FRAME + 10, RATE), RATE)
    ended = []
    player = WaveFile(mixer, source, on_finished=ended.append)
    player.start()
    slot = player.slot
    mixer.connect_slots(slot, 0)
    mixer.tick(4)  # three full frames and a padded one
    assert ended == [] and player.is_active
    mixer.tick()
    assert ended == [player]
    assert not player.is_active and player.slot is None
    assert mixer.used_slot_count == 0
    mixer.tick(3)
    assert ended == [player]
    player.start()  # reusable
    assert player.is_active


def test_loop_plays_on_and_stop_does_not_report_an_end(mixer, tmp_path):
    samples = np.arange(2 * FRAME, dtype=np.int16)
    source = write_wav(tmp_path / "loop.wav", samples, RATE)
    ended = []
    player = WaveFile(mixer, source, loop=True, on_finished=ended.append)
    recorder = RecordingWaveFile(mixer, tmp_path / "rec.wav")
    player.start()
    recorder.start()
    mixer.connect_slots(player.slot, recorder.slot)
    mixer.tick(7)
    player.stop()
    mixer.tick(2)
    recorder.stop().result(timeout=10)
    _rate, recorded = read_wav(tmp_path / "rec.wav")
    assert np.array_equal(recorded[: 7 * FRAME], np.tile(samples, 4)[: 7 * FRAME])
    assert not np.any(recorded[7 * FRAME :])  # connected to nothing that plays: silence
    assert ended == []


def test_volume(mixer, tmp_path):
    source = write_wav(tmp_path / "v.wav", np.full(FRAME, 1000, dtype=np.int16), RATE)
    player = WaveFile(mixer, source)
    player.volume = 30
    recorder = RecordingWaveFile(mixer, tmp_path / "out.wav")
    player.start()
    recorder.start()
    mixer.connect_slots(player.slot, recorder.slot)
    mixer.tick()
    recorder.stop().result(timeout=10)
    assert np.all(read_wav(tmp_path / "out.wav")[1] == 300)
    with pytest.raises(ValueError):
        player.volume = -5


def test_an_empty_file_ends_at_once_even_looped(mixer, tmp_path):
    source = write_wav(tmp_path / "empty.wav", np.zeros(0, dtype=np.int16), RATE)
    for loop in (False, True):
        reader = WaveReader(source, RATE, loop=loop)
        assert reader.read_frame(FRAME) is None
        reader.close()


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("missing.wav", None, "cannot read"),
        ("garbage.wav", lambda p: p.write_bytes(b"RIFF\x00\x00junk" * 3), "cannot read"),
        ("eight.wav", lambda p: write_wav(p, np.zeros(10, np.uint8), 8000, width=1), "8-bit"),
        ("wide.wav", lambda p: write_wav(p, np.zeros(30, np.uint8), 8000, width=3), "24-bit"),
        ("six.wav", lambda p: write_wav(p, np.zeros(60, np.int16), 8000, channels=6), "6 channel"),
    ],
)
def test_unplayable_files_fail_at_start(mixer, tmp_path, name, make, message):
    path = tmp_path / name
    if make is not None:
        make(path)
    player = WaveFile(mixer, path)
    with pytest.raises(WaveFileError, match=message):
        player.start()
    assert not player.is_active
    assert mixer.used_slot_count == 0


def test_starting_twice_is_an_error(mixer, tmp_path):
    source = write_wav(tmp_path / "a.wav", np.zeros(FRAME, np.int16), RATE)
    player = WaveFile(mixer, source)
    player.start()
    with pytest.raises(MixerError):
        player.start()
    recorder = RecordingWaveFile(mixer, tmp_path / "r.wav")
    recorder.start()
    with pytest.raises(MixerError):
        recorder.start()
    recorder.stop().result(timeout=10)


class TestRecording:
    def test_nothing_connected_writes_nothing(self, mixer, tmp_path):
        recorder = RecordingWaveFile(mixer, tmp_path / "silent.wav")
        recorder.start()
        mixer.tick(10)
        recorder.stop().result(timeout=10)
        assert read_wav(tmp_path / "silent.wav")[1].size == 0

    def test_directories_are_created_and_the_file_appears_when_complete(self, mixer, tmp_path):
        target = tmp_path / "a" / "b" / "call.wav"
        recorder = RecordingWaveFile(mixer, target)
        recorder.start()
        assert target.parent.is_dir()
        assert not target.exists()
        partial = list(target.parent.glob(".call.wav.*.part"))
        assert len(partial) == 1
        assert partial[0].stat().st_mode & 0o777 == 0o600
        recorder.stop().result(timeout=10)
        assert target.exists()
        assert list(target.parent.glob("*.part")) == []

    def test_a_long_recording_has_a_correct_header_during_and_after(self, mixer, tmp_path):
        class Counter(SlotPort):
            consumes = False
            n = 0

            def produce(self):
                self.n += 1
                return np.full(FRAME, self.n % 30000, dtype=np.int16)

        target = tmp_path / "long.wav"
        recorder = RecordingWaveFile(mixer, target)
        recorder.start()
        mixer.connect_slots(mixer.add_port(Counter()), recorder.slot)
        mixer.tick(3000)  # one minute
        wave_module._writer_thread().submit(lambda: None).result(timeout=10)
        (partial,) = target.parent.glob(".long.wav.*.part")
        with wave.open(str(partial), "rb") as during:
            assert during.getnframes() == 3000 * FRAME  # every batch written so far counts
        mixer.tick(10)
        recorder.stop().result(timeout=10)
        rate, recorded = read_wav(target)
        assert rate == RATE
        assert len(recorded) == 3010 * FRAME
        assert target.stat().st_size == 44 + 2 * 3010 * FRAME
        assert np.array_equal(recorded[::FRAME], np.arange(1, 3011) % 30000)

    def test_restarting_records_anew(self, mixer, tmp_path):
        target = tmp_path / "again.wav"
        recorder = RecordingWaveFile(mixer, target)
        source = mixer.add_port(ConstantPort(5))
        for ticks in (20, 3):
            recorder.start()
            mixer.connect_slots(source, recorder.slot)
            mixer.tick(ticks)
            recorder.stop().result(timeout=10)
        assert len(read_wav(target)[1]) == 3 * FRAME

    def test_the_wav_size_limit_stops_recording(self, mixer, tmp_path, monkeypatch):
        monkeypatch.setattr(wave_module, "MAX_DATA_BYTES", 5 * 2 * FRAME)
        recorder = RecordingWaveFile(mixer, tmp_path / "big.wav")
        recorder.start()
        mixer.connect_slots(mixer.add_port(ConstantPort(1)), recorder.slot)
        mixer.tick(8)
        recorder.stop().result(timeout=10)
        assert len(read_wav(tmp_path / "big.wav")[1]) == 5 * FRAME

    def test_an_unwritable_place_fails_at_start(self, mixer, tmp_path):
        blocker = tmp_path / "file"
        blocker.write_text("not a directory")
        recorder = RecordingWaveFile(mixer, blocker / "x.wav")
        with pytest.raises(WaveFileError, match="cannot create"):
            recorder.start()
        assert not recorder.is_active
        assert recorder.stop().result(timeout=1) is None

    def test_no_free_slot_leaves_no_file(self, tmp_path):
        mixer = AudioMixer(None, None, RATE, slot_count=1)
        mixer.add_port(ConstantPort(0))
        recorder = RecordingWaveFile(mixer, tmp_path / "none.wav")
        with pytest.raises(MixerError):
            recorder.start()
        wave_module._writer_thread().submit(lambda: None).result(timeout=10)
        assert list(tmp_path.iterdir()) == []


class ConstantPort(SlotPort):
    consumes = False

    def __init__(self, value):
        self.frame = np.full(FRAME, value, dtype=np.int16)

    def produce(self):
        return self.frame
