"""How many participants one AudioConference mixes in real time, on one core.

An AudioConference holds the local device and, for each participant, the participant's
own AudioBridge (its stream, its muted device): every nested bridge adds two relay slots,
so the mixer mixes 3N+1 slots for N participants, and the mixer makes all their mixes
from one shared sum less each one's own (O(N)). The participants here are what an
AudioStream puts in the mixer, a MixerPort whose per-tick callback takes the frame mixed
for it and queues the next received one (as the AudioTransport does), without the codec
and the network. For each N it prints the CPU cost (thread CPU time) of one 20 ms tick
of the mixer beside two figures measured in the same run: the same N MixerPorts meshed
directly in one AudioBridge (no nesting), and the floor, one numpy sum of N stacked
frames. Then the largest N whose tick fits in 20 ms with 50% headroom, with the codecs on
top (the per-participant cost of encoding and decoding one frame, Opus and PCMU,
measured here too), and what a change of topology (someone joining) costs at that size:
the mixer rebuilds its plan once, in the next tick.

Run: PYTHONPATH=src python benchmarks/bench_conference.py
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np

from sipsimple.application import SIPApplication
from sipsimple.audio import AudioBridge, AudioDevice
from sipsimple.conference import AudioConference
from sipsimple.media.codecs import create_codec
from sipsimple.media.mixer import PTIME, AudioMixer, MixerPort

RATE = 48000
FRAME = RATE // 50
BUDGET = PTIME * 0.5  # 50% headroom


class Participant:
    """An AudioStream's footprint in the mixer: its slot, its bridge, its device."""

    def __init__(self, mixer: AudioMixer, frame: np.ndarray) -> None:
        self.mixer = mixer
        self.frame = frame
        self.port = MixerPort(mixer, on_frame=self._exchange)
        self.port.start()
        self.bridge = AudioBridge(mixer)
        self.device = AudioDevice(mixer)
        self.bridge.add(self.device)
        self.bridge.add(self)

    @property
    def consumer_slot(self) -> int | None:
        return self.port.slot

    @property
    def producer_slot(self) -> int | None:
        return self.port.slot

    def _exchange(self) -> None:
        self.port.get_frame()
        self.port.put_frame(self.frame)


def frames(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(count)
    return [(rng.standard_normal(FRAME) * 3000).astype(np.int16) for _ in range(count)]


def conference(count: int) -> tuple[AudioMixer, list[Participant], AudioConference]:
    mixer = AudioMixer(None, None, RATE, slot_count=3 * count + 8)
    SIPApplication._audio = SimpleNamespace(voice_audio_mixer=mixer)  # AudioConference's mixer
    try:
        room = AudioConference()
    finally:
        SIPApplication._audio = None
    participants = [Participant(mixer, frame) for frame in frames(count)]
    for participant in participants:
        room.add(participant)
    mixer.tick()  # builds the plan once, as the first real tick would
    return mixer, participants, room


def direct_mesh(count: int) -> tuple[AudioMixer, list[Participant], AudioBridge]:
    mixer = AudioMixer(None, None, RATE, slot_count=count + 8)
    participants = [Participant(mixer, frame) for frame in frames(count)]
    mesh = AudioBridge(mixer)
    for participant in participants:
        participant.bridge.remove(participant)
        mesh.add(participant)
    mixer.tick()
    return mixer, participants, mesh


def per_call(function, seconds: float = 0.3) -> float:
    """CPU seconds of this thread per call, best of three runs of about seconds/3 each."""
    calls = 1
    while True:
        start = time.thread_time()
        for _ in range(calls):
            function()
        elapsed = time.thread_time() - start
        if elapsed >= seconds / 3:
            break
        calls *= 2
    best = elapsed
    for _ in range(2):
        start = time.thread_time()
        for _ in range(calls):
            function()
        best = min(best, time.thread_time() - start)
    return best / calls


_ticks: dict[int, float] = {}


def conference_tick(count: int) -> float:
    """Seconds per tick of a conference of ``count`` (measured once per size)."""
    if count not in _ticks:
        mixer, _participants, _room = conference(count)
        _ticks[count] = per_call(mixer.tick)
    return _ticks[count]


def codec_cost(name: str) -> float:
    """CPU seconds to encode one 20 ms frame and decode one, at the codec's own rate."""
    codec = create_codec(name)
    rate = codec.info.sample_rate
    tone = (np.sin(np.arange(rate // 50) * 2 * np.pi * 440 / rate) * 8000).astype(np.int16)
    payload = codec.encode(tone)
    return per_call(lambda: (codec.encode(tone), codec.decode(payload)))


def largest_fitting(extra: float = 0.0, limit: int = 1024) -> tuple[int, float]:
    """The largest N (up to ``limit``) whose tick plus N * ``extra`` fits in BUDGET, by
    bisection: a conference of N has N^2 connections, so sizes are not probed blindly."""

    def cost(count: int) -> float:
        return conference_tick(count) + count * extra

    if cost(1) > BUDGET:
        return 0, cost(1)
    low, high = 1, 2
    while high <= limit and cost(high) <= BUDGET:
        low, high = high, high * 2
    if high > limit:
        return low, cost(low)
    while high - low > max(1, low // 20):
        middle = (low + high) // 2
        low, high = (middle, high) if cost(middle) <= BUDGET else (low, middle)
    return low, cost(low)


def main() -> None:
    print(f"AudioConference, {RATE} Hz, 20 ms frames, N participants, one core")
    print(
        f"{'N':>5} {'conference':>11} {'per part.':>10} {'direct mesh':>12} {'floor sum':>10}"
        f" {'vs mesh':>8} {'vs floor':>9} {'of 20ms':>8}"
    )
    for count in (3, 10, 32, 100):
        ours = conference_tick(count)
        mesh_mixer, _mesh_participants, _mesh = direct_mesh(count)
        mesh = per_call(mesh_mixer.tick)
        stacked = np.stack(frames(count))
        floor = per_call(lambda stacked=stacked: stacked.sum(axis=0, dtype=np.int32))
        print(
            f"{count:5d} {ours * 1e6:9.0f}us {ours / count * 1e6:8.1f}us {mesh * 1e6:10.0f}us "
            f"{floor * 1e6:8.1f}us {ours / mesh:7.1f}x {ours / floor:8.0f}x {ours / PTIME:7.1%}"
        )
    count, cost = largest_fitting()
    print(
        f"largest N mixed within 20 ms with 50% headroom: {count} "
        f"(tick {cost * 1e3:.2f} ms = {cost / PTIME:.0%} of the frame)"
    )
    for size in (100, count):
        mixer, _participants, _room = conference(size)
        rebuild = per_call(mixer._build_plan)
        print(
            f"plan rebuilt after a join, N={size}: {rebuild * 1e3:.1f} ms (once, in the next tick)"
        )
    for name in ("opus", "PCMU"):
        per_participant = codec_cost(name)
        count, cost = largest_fitting(per_participant)
        print(
            f"with {name} (encode + decode {per_participant * 1e6:.0f}us per participant): "
            f"{count} participants within 50% of 20 ms ({cost * 1e3:.2f} ms)"
        )


if __name__ == "__main__":
    main()
