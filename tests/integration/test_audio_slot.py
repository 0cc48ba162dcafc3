"""An AudioTransport's mixer slot and its playout in the mixer's tick.

Calls between two mixers over loopback, each call carrying a tone of its own, on an event
loop whose clock jumps to the next timer (so every run sees the same timing): mixers
ticked by hand, packets of 10 to 60 ms beside 20 ms ones, hold, a transport stopped in
the middle of a tick, a mixer that mixes many frames in one go, and one that ticks on
another thread.

Run inside a private network namespace:
  unshare -n sh -c 'ip link set lo up; PYTHONPATH=src:. python -m pytest \\
      tests/integration/test_audio_slot.py'
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
from benchmarks.bench_rtp_calls import VirtualClockLoop
from tests.support.audio import Recorder, Tone

from sipsimple.core.media import AudioTransport, RTPTransport, audiotransport
from sipsimple.core.sdp import SDPConnection, SDPSession
from sipsimple.media.codecs.g711 import PCMA, PCMU
from sipsimple.media.devices import DummyDevice
from sipsimple.media.mixer import AudioMixer, SlotPort

pytestmark = pytest.mark.timeout(60)

LOCAL = "127.0.0.1"
RATE = 48000
FRAME = RATE // 50


def tone_purity(samples: np.ndarray, tone: float) -> float:
    """The share of the energy within 30 Hz of ``tone``: a gap, a click or a repeated or
    missing piece of a frame spreads energy far from it."""
    spectrum = np.abs(np.fft.rfft(samples.astype(float) * np.hanning(len(samples)))) ** 2
    near = np.abs(np.fft.rfftfreq(len(samples), 1 / RATE) - tone) < 30
    return float(spectrum[near].sum() / spectrum.sum())


def written(media: object) -> SDPSession:
    return SDPSession.parse(str(SDPSession(LOCAL, connection=SDPConnection(LOCAL), media=[media])))


@dataclass
class Call:
    audios: tuple[AudioTransport, AudioTransport]
    tones: tuple[float, float]  # what each side sends
    recorders: tuple[Recorder, Recorder]  # what each side hears


@dataclass
class Bench:
    mixers: list[AudioMixer]
    calls: list[Call] = field(default_factory=list)
    rtps: list[RTPTransport] = field(default_factory=list)

    async def call(self, codec: str = "PCMU", ptime: int = 20) -> Call:
        rtps = [RTPTransport(local_address=LOCAL) for _ in self.mixers]
        await asyncio.gather(*(rtp.set_INIT() for rtp in rtps))
        self.rtps += rtps
        offerer = AudioTransport(self.mixers[0], rtps[0], codecs=[codec], ptime=ptime)
        offer = written(offerer.get_local_media())
        answerer = AudioTransport(self.mixers[1], rtps[1], offer, 0, codecs=[codec], ptime=ptime)
        answer = written(answerer.get_local_media(offer, 0))
        offerer.start(offer, answer, 0)
        answerer.start(answer, offer, 0)
        base = 300.0 + 400 * len(self.calls)
        tones = (base, base + 170)
        recorders = (Recorder(), Recorder())
        for mixer, audio, tone, recorder in zip(
            self.mixers, (offerer, answerer), tones, recorders, strict=True
        ):
            mixer.connect_slots(mixer.add_port(Tone(tone)), audio.slot)
            mixer.connect_slots(audio.slot, mixer.add_port(recorder))
        call = Call((offerer, answerer), tones, recorders)
        self.calls.append(call)
        return call

    async def close(self) -> None:
        for call in self.calls:
            for audio in call.audios:
                audio.stop()
        await asyncio.gather(*(rtp.stop() for rtp in self.rtps))
        for mixer in self.mixers:
            mixer.close()


def mixers(count: int = 2) -> list[AudioMixer]:
    return [AudioMixer(None, None, RATE, device=DummyDevice()) for _ in range(count)]


def run_virtual(test: Callable[[], Awaitable[None]]) -> None:
    loop = VirtualClockLoop()
    try:
        loop.run_until_complete(test())
    finally:
        loop.close()


async def tick_by_hand(bench: Bench, seconds: float) -> None:
    for _ in range(round(seconds * 50)):
        await asyncio.sleep(0.02)
        for mixer in bench.mixers:
            mixer.tick()


def assert_hears_the_tones(call: Call, frames: int = 25, purity: float = 0.97) -> None:
    """Each side hears the other's tone, cleanly, over the last ``frames`` frames."""
    for recorder, tone in zip(call.recorders, reversed(call.tones), strict=True):
        assert tone_purity(recorder.recent(frames), tone) > purity, tone


def test_calls_on_mixers_ticked_by_hand_take_their_phases_from_the_ticks():
    """Nothing runs the mixers but our ticks: a hook of the first tick after a call
    starts gives it its phase, and from then on its sends and playout follow the mixer's
    ticks on that phase (what it plays, the next tick takes)."""

    async def test() -> None:
        bench = Bench(mixers())
        try:
            calls = [await bench.call() for _ in range(3)]
            await tick_by_hand(bench, 1.0)
            for call in calls:
                assert_hears_the_tones(call)
                for audio in call.audios:
                    assert audio._clock is not None  # it took a phase
                    assert not audio._port.heard  # the tick took what we played
            loop = asyncio.get_running_loop()
            assert {key for key in audiotransport._watches if key[0] is loop} == {
                (loop, mixer) for mixer in bench.mixers
            }
        finally:
            await bench.close()
        assert not any(key[0] is loop for key in audiotransport._watches)
        assert all(not mixer._tick_hooks for mixer in bench.mixers)

    run_virtual(test)


@pytest.mark.parametrize(
    ("codec", "ptime"),
    # Opus has no 30 ms frame.
    [("PCMU", 10), ("PCMU", 30), ("PCMU", 40), ("PCMU", 60), ("opus", 10), ("opus", 60)],
)
def test_packets_of_other_lengths_beside_20_ms_ones(codec, ptime):
    """A call whose packets are not one mixer frame, between 20 ms calls on the same
    mixers: its playout is cut into mixer frames and its sends gather them, whole."""

    async def test() -> None:
        bench = Bench(mixers())
        for mixer in bench.mixers:
            mixer.start()
        try:
            calls = [await bench.call(codec), await bench.call(codec, ptime), await bench.call()]
            await asyncio.sleep(1.2)
            for call in calls:
                assert_hears_the_tones(call)
            other = calls[1]
            for audio in other.audios:
                statistics = audio.jitter_buffer_statistics
                assert statistics.played >= 0.9 / (ptime / 1000), statistics
                assert audio.statistics.rx.packets_lost == 0
        finally:
            await bench.close()

    run_virtual(test)


def test_every_codec_plays_out_after_its_sends_on_its_clock(monkeypatch):
    """No playout runs in the mixer's tick, where the playout of all the calls at once
    was one burst that delayed the sends due after it: each clock plays out its calls
    after their sends, the G.711 ones decoded together (one table lookup)."""
    playouts: list[tuple[bool, set[str]]] = []  # (in the tick, codecs played)
    batched: set[str] = set()  # codecs of the G.711 frames decoded together
    play_all = audiotransport._play_all

    def watched(members, now):
        if members:
            playouts.append((members[0].mixer._ticking, {m.codec for m in members}))
        play_all(members, now)

    def spied(decode_many):
        def spy(codecs, payloads):
            batched.update(type(codec).__name__ for codec in codecs)
            return decode_many(codecs, payloads)

        return staticmethod(spy)

    monkeypatch.setattr(audiotransport, "_play_all", watched)
    for codec in (PCMU, PCMA):
        monkeypatch.setattr(codec, "decode_many", spied(codec.decode_many))

    async def test() -> None:
        bench = Bench(mixers())
        for mixer in bench.mixers:
            mixer.start()
        try:
            calls = [await bench.call(codec) for codec in ("PCMU", "opus", "G722", "PCMA")]
            await asyncio.sleep(1.0)
            for call in calls:
                assert_hears_the_tones(call)
        finally:
            await bench.close()

    run_virtual(test)
    assert not any(ticking for ticking, _codecs in playouts)
    assert set().union(*(codecs for _ticking, codecs in playouts)) == {
        "PCMU",
        "PCMA",
        "opus",
        "G722",
    }
    assert batched == {"PCMU", "PCMA"}


def test_hold_stops_the_playout_and_unhold_brings_it_back():
    async def test() -> None:
        bench = Bench(mixers())
        for mixer in bench.mixers:
            mixer.start()
        try:
            call = await bench.call()
            await asyncio.sleep(0.5)
            offerer = call.audios[0]
            offerer.update_direction("sendonly")  # we no longer receive: nothing to play
            await asyncio.sleep(0.2)
            assert not np.any(call.recorders[0].recent(5))
            assert not offerer._port.heard
            assert tone_purity(call.recorders[1].recent(5), call.tones[0]) > 0.97
            offerer.update_direction("sendrecv")
            # Playout starts afresh after the pause: no frame is skipped to make up for
            # it (a timeline kept across it took the pause for delay and skipped frames
            # for half a second), and the tone is clean at once.
            await asyncio.sleep(0.2)
            assert_hears_the_tones(call, 5)
            await asyncio.sleep(0.3)
            assert_hears_the_tones(call, 15)
            statistics = offerer.jitter_buffer_statistics
            assert statistics is not None
            assert statistics.discarded == 0
            assert statistics.target_delay_ms < 80
        finally:
            await bench.close()

    run_virtual(test)


class Stopper(SlotPort):
    """Stops a transport from inside the mixer's tick, when asked to."""

    def __init__(self) -> None:
        self.victim: AudioTransport | None = None

    def produce(self) -> None:
        if self.victim is not None:
            self.victim.stop()
            self.victim = None


@pytest.mark.parametrize("before", [True, False])
def test_a_transport_stopped_in_the_middle_of_a_tick(before, caplog):
    """stop() from a port's produce() in the tick, before or after the transport's own
    slot is asked: the mixer skips its slot, the other calls play on, and once every call
    is gone no hook is left on the mixers."""

    async def test() -> None:
        bench = Bench(mixers())
        stopper = Stopper()
        if before:  # in a lower slot than the calls: asked first
            bench.mixers[0].add_port(stopper)
        try:
            calls = [await bench.call() for _ in range(3)]
            if not before:
                bench.mixers[0].add_port(stopper)
            await tick_by_hand(bench, 0.5)
            victim = calls[1].audios[0]
            stopper.victim = victim
            slot = victim.slot
            await tick_by_hand(bench, 0.5)
            assert not victim.is_started and victim.slot is None
            assert slot not in bench.mixers[0]._ports or bench.mixers[0]._ports[slot] is stopper
            for call in (calls[0], calls[2]):
                assert_hears_the_tones(call)
        finally:
            await bench.close()
        assert all(not mixer._tick_hooks for mixer in bench.mixers)

    with caplog.at_level(logging.ERROR):
        run_virtual(test)
    assert not caplog.records


def test_a_mixer_that_mixes_many_frames_at_once_leaves_short_queues():
    """The mixer catching up after a stall (or a burst of ticks by hand) fills our slot
    with mixed frames faster than we send: only the newest are kept, so the delay stays
    bounded, and the playout gives one frame per tick, never a backlog."""

    class Counter(SlotPort):
        consumes = False
        count = 0

        def produce(self) -> np.ndarray:
            self.count += 1
            return np.full(FRAME, self.count, np.int16)

    async def test() -> None:
        bench = Bench(mixers())
        try:
            call = await bench.call()
            await tick_by_hand(bench, 0.4)
            offerer = call.audios[0]
            mixer = bench.mixers[0]
            counter = Counter()
            tone = next(src for src, dst in mixer.connected_slots if dst == offerer.slot)
            mixer.disconnect_slots(tone, offerer.slot)
            mixer.connect_slots(mixer.add_port(counter), offerer.slot)
            mixer.tick(50)
            slot = offerer._port
            kept = [int(frame[0]) for frame in slot.mixed]
            assert kept == [48, 49, 50]  # a packet's worth and MAX_QUEUED_FRAMES
            assert len(slot.heard) <= 1
            await tick_by_hand(bench, 0.4)
            assert tone_purity(call.recorders[0].recent(10), call.tones[1]) > 0.97
        finally:
            await bench.close()

    run_virtual(test)


async def test_a_mixer_ticking_on_another_thread(monkeypatch):
    """A mixer that runs on another thread's loop: its tick's hook posts the phase of
    our calls to our loop, the playout runs there (the jitter buffers are never touched
    off it) and the audio crosses."""
    threads = set()
    play_all = audiotransport._play_all

    def spy(members, now):
        threads.add(threading.get_ident())
        play_all(members, now)

    monkeypatch.setattr(audiotransport, "_play_all", spy)
    other = asyncio.new_event_loop()
    thread = threading.Thread(target=other.run_forever)
    thread.start()
    bench = Bench(mixers())
    try:
        for mixer in bench.mixers:
            mixer.start(other)
        call = await bench.call()
        await asyncio.sleep(0.8)
        assert_hears_the_tones(call, 15, purity=0.9)  # two real clocks on a shared machine
        assert threads == {threading.get_ident()}
    finally:
        await bench.close()
        other.call_soon_threadsafe(other.stop)
        thread.join()
        other.close()
