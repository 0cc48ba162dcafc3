"""The tone generator slot: DTMF frequencies, timing, queueing, fades, errors."""

import numpy as np
import pytest

from sipsimple.media.mixer import AudioMixer, MixerError, SlotPort
from sipsimple.media.tones import DTMF_FREQUENCIES, TONE_AMPLITUDE, ToneGenerator, ToneSynth


class Sink(SlotPort):
    produces = False

    def __init__(self):
        self.frames = []

    def consume(self, frame):
        self.frames.append(frame)

    def audio(self):
        return np.concatenate(self.frames)


def spectrum_peaks(signal, rate, count=2):
    """The ``count`` strongest spectral peaks (Hz), strongest first, one per lobe."""
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    freqs = np.fft.rfftfreq(len(signal), 1 / rate)
    peaks = []
    for index in np.argsort(spectrum)[::-1]:
        if all(abs(freqs[index] - p) > 50 for p in peaks):
            peaks.append(freqs[index])
        if len(peaks) == count:
            return peaks
    return peaks


def setup(rate=48000):
    mixer = AudioMixer(None, None, rate)
    generator = ToneGenerator(mixer)
    generator.start()
    sink = Sink()
    mixer.connect_slots(generator.slot, mixer.add_port(sink))
    return mixer, generator, sink


def test_the_keypad_table_is_the_standard_one():
    assert DTMF_FREQUENCIES["1"] == (697, 1209)
    assert DTMF_FREQUENCIES["0"] == (941, 1336)
    assert DTMF_FREQUENCIES["#"] == (941, 1477)
    assert DTMF_FREQUENCIES["D"] == (941, 1633)
    assert len(DTMF_FREQUENCIES) == 16


@pytest.mark.parametrize("rate", [8000, 48000])
@pytest.mark.parametrize("digit", list("0123456789*#ABCD"))
def test_each_dtmf_digit_has_its_two_frequencies(rate, digit):
    mixer, generator, sink = setup(rate)
    generator.play_dtmf(digit)
    mixer.tick(10)  # the 200 ms tone
    found = sorted(spectrum_peaks(sink.audio(), rate))
    low, high = DTMF_FREQUENCIES[digit]
    assert found[0] == pytest.approx(low, abs=5)
    assert found[1] == pytest.approx(high, abs=5)


def test_a_digit_is_200ms_of_tone_then_50ms_of_silence_then_the_end_is_reported():
    mixer, generator, sink = setup()
    finished = []
    generator.on_finished = finished.append
    generator.play_dtmf("5")
    assert generator.is_busy
    mixer.tick(12)
    assert generator.is_busy and finished == []
    mixer.tick(1)  # 260 ms: the pause ended at 250 ms
    assert not generator.is_busy
    assert finished == [generator]
    audio = sink.audio()
    sounding = np.flatnonzero(audio)
    assert sounding[0] < 48 and sounding[-1] == pytest.approx(9600, abs=48)
    assert np.max(np.abs(audio)) <= 2 * TONE_AMPLITUDE
    mixer.tick(3)
    assert finished == [generator]
    assert not np.any(sink.audio()[-3 * 960 :])


def test_tones_queue_up_and_pauses_and_single_tones_work():
    mixer, generator, sink = setup()
    generator.play_tones([(440, 0, 100), (0, 0, 100)])
    generator.play_tones([(1000, 0, 100)])
    mixer.tick(15)
    audio = sink.audio()
    first, pause, second = audio[:4800], audio[4800:9600], audio[9600:14400]
    assert spectrum_peaks(first, 48000, 1)[0] == pytest.approx(440, abs=10)
    assert not np.any(pause)
    assert spectrum_peaks(second, 48000, 1)[0] == pytest.approx(1000, abs=10)


def test_tones_fade_in_and_out_without_clicks():
    mixer, generator, sink = setup()
    generator.play_tones([(3000, 0, 50)])
    mixer.tick(3)
    audio = sink.audio().astype(float)
    assert abs(audio[0]) < 100 and abs(audio[2399]) < 100
    # A hard-gated 3 kHz sine jumps by up to 0.38 of its amplitude per sample; faded,
    # the edges move no faster than the steady tone in the middle.
    middle = np.max(np.abs(np.diff(audio[1000:1400])))
    assert np.max(np.abs(np.diff(audio[:2400]))) <= middle + 1


def test_volume_scales_the_tones():
    mixer, generator, sink = setup()
    generator.volume = 50
    generator.play_tones([(1000, 0, 100)])
    mixer.tick(5)
    assert np.max(np.abs(sink.audio())) == pytest.approx(TONE_AMPLITUDE / 2, rel=0.01)
    with pytest.raises(ValueError):
        generator.volume = -1


def test_stop_drops_what_was_queued():
    mixer, generator, _sink = setup()
    generator.play_tones([(1000, 0, 1000)])
    mixer.tick()
    generator.stop()
    assert not generator.is_busy and not generator.is_active and generator.slot is None
    assert mixer.used_slot_count == 1


@pytest.mark.parametrize(
    "tones",
    [[(1000, 0, 0)], [(1000, 0, -5)], [(24000, 0, 10)], [(-1, 0, 10)], [(1000, 10)], [5]],
)
def test_bad_tones_are_refused(tones):
    _mixer, generator, _sink = setup()
    with pytest.raises(ValueError):
        generator.play_tones(tones)
    assert not generator.is_busy


@pytest.mark.parametrize("digit", ["X", "", "12", 1, None])
def test_bad_digits_are_refused(digit):
    _mixer, generator, _sink = setup()
    with pytest.raises(ValueError, match="DTMF"):
        generator.play_dtmf(digit)


def test_lowercase_letters_are_digits_too():
    mixer, generator, sink = setup()
    generator.play_dtmf("a")
    mixer.tick(10)
    assert sorted(spectrum_peaks(sink.audio(), 48000)) == pytest.approx([697, 1633], abs=5)


def test_playing_before_start_is_an_error():
    generator = ToneGenerator(AudioMixer(None, None, 8000))
    with pytest.raises(MixerError, match="started"):
        generator.play_dtmf("1")


def test_the_synth_is_phase_continuous_across_calls():
    whole = ToneSynth(8000, 697, 1209).render(800)
    synth = ToneSynth(8000, 697, 1209)
    pieces = np.concatenate([synth.render(n) for n in (1, 159, 333, 307)])
    assert np.allclose(whole, pieces)
