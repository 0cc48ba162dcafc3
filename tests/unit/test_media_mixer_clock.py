"""The mixer's absolute-deadline clock: the pacer on a fake clock, the asyncio driver on
the real one (asserting frame counts, never timings)."""

import asyncio
import random
import time

import pytest

from sipsimple.media.mixer import AudioMixer, FramePacer, MixerError, SlotPort
from sipsimple.threading import SIPThread

PERIOD = 0.02


class TestFramePacer:
    def test_on_time_wakeups_mix_one_frame_each(self):
        pacer = FramePacer(PERIOD)
        pacer.start(100.0)
        for n in range(1, 101):
            assert pacer.deadline == pytest.approx(100.0 + n * PERIOD)
            assert pacer.advance(pacer.deadline) == (1, 0)
        assert (pacer.frames, pacer.late_wakeups, pacer.dropped_frames) == (100, 0, 0)

    def test_an_early_wakeup_mixes_nothing(self):
        pacer = FramePacer(PERIOD)
        pacer.start(0.0)
        assert pacer.advance(0.015) == (0, 0)
        assert pacer.advance(0.02 - 1e-9) == (1, 0)  # within clock resolution: due
        assert pacer.deadline == pytest.approx(0.04)

    def test_jitter_never_drifts(self):
        rng = random.Random(7)
        pacer = FramePacer(PERIOD)
        pacer.start(5.0)
        total = 0
        for _ in range(5000):
            mixed, dropped = pacer.advance(pacer.deadline + rng.uniform(0, 0.004))
            total += mixed
            assert dropped == 0
        # 5000 wake-ups each up to 4 ms late, yet the grid is where it started.
        assert total == 5000
        assert pacer.deadline == pytest.approx(5.0 + 5001 * PERIOD)

    def test_a_late_wakeup_catches_up(self):
        pacer = FramePacer(PERIOD, max_burst=10)
        pacer.start(0.0)
        pacer.advance(0.02)
        assert pacer.advance(0.02 + 0.1 + 0.005) == (5, 0)  # frames due at 40..120 ms
        assert (pacer.late_wakeups, pacer.caught_up_frames) == (1, 4)
        assert pacer.max_lateness == pytest.approx(0.085)
        assert pacer.deadline == pytest.approx(0.14)

    def test_later_than_max_burst_drops_the_rest(self):
        pacer = FramePacer(PERIOD, max_burst=3)
        pacer.start(0.0)
        assert pacer.advance(0.205) == (3, 7)
        assert pacer.dropped_frames == 7
        assert pacer.deadline == pytest.approx(0.22)
        assert pacer.advance(0.22) == (1, 0)

    def test_arguments(self):
        with pytest.raises(ValueError):
            FramePacer(0)
        with pytest.raises(ValueError):
            FramePacer(PERIOD, max_burst=0)


class Counting(SlotPort):
    consumes = False
    produced = 0

    def produce(self):
        self.produced += 1


def frames_due(start, now):
    return int((now - start) / PERIOD)


async def test_the_realtime_driver_keeps_time_over_a_second():
    loop = asyncio.get_running_loop()
    mixer = AudioMixer(None, None, 48000)
    port = Counting()
    mixer.add_port(port)
    start = loop.time()
    mixer.start()
    try:
        await asyncio.sleep(1.0)
        now = loop.time()
        stats = mixer.statistics
    finally:
        mixer.stop()
    due = frames_due(start, now)
    assert due - 1 <= stats.frames + stats.dropped_frames <= due + 1
    assert stats.dropped_frames == 0
    assert port.produced == stats.frames
    await asyncio.sleep(0.1)
    assert mixer.statistics.frames == stats.frames  # stopped means stopped


async def test_a_mixer_with_nothing_but_its_device_sleeps_until_a_port_comes():
    """An idle application costs no CPU: with only the device in it (which cannot hear
    itself) the started mixer does not wake up; a port wakes it on a fresh timeline, and
    when the last port leaves it sleeps again."""
    loop = asyncio.get_running_loop()
    mixer = AudioMixer(None, None, 48000)
    mixer.start(loop)
    try:
        await asyncio.sleep(0.2)
        assert mixer.statistics.frames <= 1  # at most the wake-up that found it idle
        asleep = mixer.statistics.frames
        port = Counting()
        start = loop.time()
        slot = mixer.add_port(port)
        await asyncio.sleep(0.3)
        due = frames_due(start, loop.time())
        assert due - 1 <= port.produced <= due + 1
        assert mixer.statistics.frames - asleep == port.produced
        assert mixer.statistics.dropped_frames == 0  # the idle time is not caught up
        mixer.remove_port(slot)
        await asyncio.sleep(0.05)
        frames = mixer.statistics.frames
        await asyncio.sleep(0.2)
        assert mixer.statistics.frames == frames
        again = Counting()
        mixer.add_port(again)
        await asyncio.sleep(0.2)
        assert again.produced >= 5
    finally:
        mixer.stop()


async def test_a_port_added_from_another_thread_wakes_the_mixer():
    loop = asyncio.get_running_loop()
    mixer = AudioMixer(None, None, 48000)
    mixer.start(loop)
    try:
        await asyncio.sleep(0.1)
        port = Counting()
        await asyncio.to_thread(mixer.add_port, port)
        await asyncio.sleep(0.2)
        assert port.produced >= 5
    finally:
        mixer.stop()


async def test_a_loop_blocked_for_100ms_is_caught_up():
    loop = asyncio.get_running_loop()
    mixer = AudioMixer(None, None, 48000)
    port = Counting()
    mixer.add_port(port)
    start = loop.time()
    mixer.start(loop)
    try:
        await asyncio.sleep(0.1)
        time.sleep(0.1)  # the loop is stuck: five frames fall due meanwhile
        await asyncio.sleep(0.2)
        now = loop.time()
        stats = mixer.statistics
    finally:
        mixer.stop()
    due = frames_due(start, now)
    assert stats.late_wakeups >= 1
    assert stats.caught_up_frames >= 4
    assert stats.max_lateness >= 0.08
    assert stats.dropped_frames == 0
    assert due - 1 <= stats.frames <= due + 1


async def test_a_loop_blocked_beyond_max_burst_drops_frames():
    loop = asyncio.get_running_loop()
    mixer = AudioMixer(None, None, 48000, max_burst=2)
    mixer.add_port(Counting())
    start = loop.time()
    mixer.start(loop)
    try:
        await asyncio.sleep(0.05)
        time.sleep(0.2)  # ten frames fall due; two are mixed, the rest dropped
        await asyncio.sleep(0.1)
        now = loop.time()
        stats = mixer.statistics
    finally:
        mixer.stop()
    due = frames_due(start, now)
    assert stats.dropped_frames >= 7
    assert due - 1 <= stats.frames + stats.dropped_frames <= due + 1


def test_start_from_another_thread_runs_on_the_sip_thread():
    thread = SIPThread()
    thread.start()
    try:
        mixer = AudioMixer(None, None, 16000)
        port = Counting()
        mixer.add_port(port)
        mixer.start()  # the SIP thread's loop, from this thread
        mixer.start()  # already running: nothing more
        time.sleep(0.3)
        mixer.stop()
        frames = mixer.statistics.frames
        assert 10 <= frames <= 16
        time.sleep(0.06)
        assert mixer.statistics.frames == frames
    finally:
        thread.stop()


def test_start_without_any_loop_is_an_error():
    mixer = AudioMixer(None, None, 8000)
    with pytest.raises(MixerError, match="event loop"):
        mixer.start()
    assert not mixer.is_running


async def test_a_port_can_stop_the_clock_from_inside_a_tick():
    mixer = AudioMixer(None, None, 8000)

    class Stopper(SlotPort):
        consumes = False
        calls = 0

        def produce(self):
            self.calls += 1
            if self.calls == 3:
                mixer.stop()

    port = Stopper()
    mixer.add_port(port)
    mixer.start()
    await asyncio.sleep(0.15)
    calls = port.calls
    assert calls >= 3 and not mixer.is_running
    await asyncio.sleep(0.1)
    assert port.calls == calls
