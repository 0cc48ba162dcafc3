"""Stateful resampling: exact frame sizes, continuity across frames, quality."""

import numpy as np
import pytest

from sipsimple.media.resample import Resampler

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
