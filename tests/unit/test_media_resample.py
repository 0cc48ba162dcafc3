"""Stateful resampling: exact frame sizes, continuity across frames, quality."""

import numpy as np
import pytest

from sipsimple.media.resample import Resampler, ResamplerBank, _SwResampler

RATES = [
    (8000, 48000),
    (16000, 48000),
    (48000, 16000),
    (48000, 8000),
    (16000, 44100),
    (44100, 48000),
]


def sine(frequency, rate, samples, amplitude=10000.0):
    return np.round(amplitude * np.sin(2 * np.pi * frequency * np.arange(samples) / rate)).astype(
        np.int16
    )


def fitted_snr(x, frequency, rate):
    t = np.arange(len(x)) / rate
    basis = np.stack([np.sin(2 * np.pi * frequency * t), np.cos(2 * np.pi * frequency * t)], 1)
    coefficients, *_ = np.linalg.lstsq(basis, x.astype(float), rcond=None)
    fitted = basis @ coefficients
    return 10 * np.log10(np.sum(fitted**2) / np.sum((x - fitted) ** 2))


@pytest.mark.parametrize(("source", "target"), RATES)
def test_every_20ms_frame_gives_exactly_20ms(source, target):
    resampler = Resampler(source, target)
    signal = sine(1000, source, source)  # one second
    frame = source // 50
    sizes = [len(resampler.process(signal[k : k + frame])) for k in range(0, len(signal), frame)]
    assert sizes == [target // 50] * 50


@pytest.mark.parametrize(("source", "target"), RATES)
def test_frames_join_without_clicks(source, target):
    resampler = Resampler(source, target)
    signal = sine(1000, source, source)
    frame = source // 50
    out = np.concatenate(
        [resampler.process(signal[k : k + frame]) for k in range(0, len(signal), frame)]
    )
    steady = out[target // 10 :]
    assert fitted_snr(steady, 1000, target) > 50
    # a click is a step steeper than the sine itself can make, at a frame boundary or not
    steepest = 10000 * 2 * np.pi * 1000 / target
    assert np.abs(np.diff(steady.astype(int))).max() <= steepest * 1.05


def test_odd_frame_sizes_keep_the_long_run_count_exact():
    resampler = Resampler(8000, 44100)
    rng = np.random.default_rng(3)
    total_in = total_out = 0
    for _ in range(100):
        n = int(rng.integers(1, 400))
        total_in += n
        total_out += len(resampler.process(np.zeros(n, dtype=np.int16)))
        assert total_out == total_in * 44100 // 8000


def test_same_rate_is_a_pass_through_and_reset_forgets_state():
    pcm = sine(440, 8000, 160)
    assert Resampler(8000, 8000).process(pcm) is pcm
    resampler = Resampler(8000, 16000)
    first = resampler.process(pcm)
    resampler.reset()
    assert np.array_equal(resampler.process(pcm), first)


def test_bad_arguments():
    with pytest.raises(ValueError):
        Resampler(0, 8000)
    with pytest.raises(ValueError):
        Resampler(8000, 16000).process(np.zeros(160, dtype=np.float64))


# -- the polyphase FIR of the integer ratios ---------------------------------------------------

INTEGER_RATIOS = [
    (8000, 48000),
    (16000, 48000),
    (24000, 48000),
    (8000, 16000),
    (48000, 8000),
    (48000, 16000),
    (48000, 24000),
    (16000, 8000),
]


def in_frames(resampler, signal, frame):
    return np.concatenate(
        [resampler.process(signal[k : k + frame]) for k in range(0, len(signal), frame)]
    )


def level_db(x, frequency, rate, reference=10000.0):
    """The level of ``frequency`` in ``x`` (Hann-windowed projection), in dB of reference."""
    window = np.hanning(len(x))
    t = np.arange(len(x)) / rate
    amplitude = abs(np.sum(x * window * np.exp(-2j * np.pi * frequency * t))) / window.sum() * 2
    return 20 * np.log10(amplitude / reference + 1e-12)


def test_which_ratios_take_the_fir():
    assert Resampler(8000, 48000).method == "fir"
    assert Resampler(48000, 16000).method == "fir"
    assert Resampler(44100, 48000).method == "swresample"
    assert Resampler(8000, 44100).method == "swresample"
    assert Resampler(8000, 8000).method == "none"


@pytest.mark.parametrize(("source", "target"), INTEGER_RATIOS)
def test_fir_passband_is_flat(source, target):
    nyquist = min(source, target) / 2
    for fraction in (0.05, 0.3, 0.6, 0.85):
        frequency = fraction * nyquist
        out = in_frames(Resampler(source, target), sine(frequency, source, source // 2), 160)
        assert abs(level_db(out[target // 20 :].astype(float), frequency, target)) < 0.05


@pytest.mark.parametrize(("source", "target"), [r for r in INTEGER_RATIOS if r[1] > r[0]])
def test_fir_upsampling_leaves_no_images(source, target):
    """A tone f at the low rate must not come out at k*source -/+ f as well."""
    for frequency in (0.2 * source / 2, 0.85 * source / 2):
        out = in_frames(Resampler(source, target), sine(frequency, source, source // 2), 160)
        out = out[target // 20 :].astype(float)
        spectrum = np.abs(np.fft.rfft(out * np.hanning(len(out))))
        freqs = np.fft.rfftfreq(len(out), 1 / target)
        wanted = np.abs(freqs - frequency) < 100
        assert 20 * np.log10(spectrum[~wanted].max() / spectrum[wanted].max()) < -70


@pytest.mark.parametrize(("source", "target"), [r for r in INTEGER_RATIOS if r[1] < r[0]])
def test_fir_downsampling_does_not_alias(source, target):
    """Tones above 1.15 x the target's Nyquist frequency are gone, not folded over."""
    nyquist = target / 2
    for frequency in np.linspace(1.15 * nyquist, 0.98 * source / 2, 7):
        out = in_frames(Resampler(source, target), sine(frequency, source, source // 2), 960)
        out = out[target // 20 :].astype(float)
        spectrum = np.abs(np.fft.rfft(out * np.hanning(len(out)))) / np.hanning(len(out)).sum()
        assert 20 * np.log10(spectrum.max() * 2 / 10000 + 1e-12) < -70


@pytest.mark.parametrize(("source", "target"), INTEGER_RATIOS)
def test_fir_state_carries_across_any_frame_sizes(source, target):
    """Cutting the input anywhere changes nothing: the output equals the one-shot output
    (within one rounding step of float32 arithmetic) and its length is exact."""
    rng = np.random.default_rng(5)
    signal = (rng.standard_normal(source // 4) * 3000).astype(np.int16)
    whole = Resampler(source, target).process(signal)
    assert len(whole) == len(signal) * target // source
    resampler = Resampler(source, target)
    pieces, start = [], 0
    while start < len(signal):
        size = int(rng.integers(1, 500))
        pieces.append(resampler.process(signal[start : start + size]))
        start = min(start + size, len(signal))
        assert sum(map(len, pieces)) == start * target // source
    cut = np.concatenate(pieces)
    assert np.abs(cut.astype(int) - whole).max() <= 1


@pytest.mark.parametrize(("source", "target"), [(8000, 48000), (48000, 8000), (16000, 48000)])
def test_fir_agrees_with_libswresample(source, target):
    """Speech-band content comes out as libswresample makes it, within -70 dB once the
    two filters' delays (a few samples apart) are aligned."""
    low = min(source, target)
    signal = sum(sine(f * low / 8000, source, source, 3000) for f in (300, 1000, 2500)).astype(
        np.int16
    )
    ours = in_frames(Resampler(source, target), signal, source // 50).astype(float)
    theirs = in_frames(_SwResampler(source, target), signal, source // 50).astype(float)
    edge = target // 20
    reference = theirs[edge:-edge]
    residuals = [
        np.sqrt(np.mean((ours[edge + lag : len(ours) - edge + lag] - reference) ** 2))
        for lag in range(-20, 21)
    ]
    assert 20 * np.log10(min(residuals) / np.sqrt(np.mean(reference**2))) < -70


def test_fir_saturates_instead_of_wrapping():
    """A full-scale square wave overshoots through the filter: where the exact result is
    out of range the output is clipped to int16, never wrapped around."""
    square = np.tile(np.repeat(np.array([32767, -32768], dtype=np.int16), 20), 40)
    for source, target in ((8000, 48000), (48000, 8000)):
        full = Resampler(source, target).process(square).astype(int)
        half = Resampler(source, target).process(square // 2).astype(int)
        assert full.max() == 32767 and full.min() == -32768
        assert np.abs(full - np.clip(2 * half, -32768, 32767)).max() <= 2


@pytest.mark.parametrize(
    ("source", "target"), [(48000, 8000), (8000, 48000), (48000, 16000), (16000, 48000)]
)
def test_a_bank_resamples_each_lane_as_its_own_resampler_would(source, target):
    frame = source // 50
    bank = ResamplerBank(source, target, frame)
    lanes = [bank.open() for _ in range(5)]
    bank.close(lanes.pop(2))  # a closed lane is reused, silent, by the next stream
    lanes.append(bank.open())
    resamplers = [Resampler(source, target) for _ in lanes]
    rng = np.random.default_rng(7)
    for _ in range(6):
        pcm = rng.integers(-20000, 20000, (len(lanes), frame), dtype=np.int16)
        # lanes in another order than they were opened, and only some of them each time
        order = rng.permutation(len(lanes))[: rng.integers(1, len(lanes) + 1)]
        # a matrix of frames or a list of them (by the count's parity): the same result
        frames = pcm[order] if len(order) % 2 else [pcm[i] for i in order]
        out = bank.process([lanes[i] for i in order], frames)
        assert out.shape == (len(order), target // 50) and out.dtype == np.int16
        for row, i in zip(out, order, strict=True):
            expected = resamplers[i].process(pcm[i])
            assert np.abs(row.astype(int) - expected).max() <= 1  # float rounding at most


def test_a_bank_takes_only_integer_ratios_and_whole_frames():
    assert not ResamplerBank.supports(44100, 48000, 882)
    assert not ResamplerBank.supports(48000, 8000, 961)
    with pytest.raises(ValueError, match="integer ratio"):
        ResamplerBank(44100, 48000, 882)
