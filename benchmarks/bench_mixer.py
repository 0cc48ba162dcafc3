"""How many participants one audio mixer mixes in real time, on one core.

For N participants fully meshed (everyone hears everyone else, as in a conference) it
prints the CPU cost of one 20 ms tick (every port asked for its frame, the N mixes,
every port handed its mix) against the floor measured in the same run: one numpy sum
of the same N frames, already stacked in one array (what any numpy mixer must at
least do).  Then it searches for the largest N whose tick fits in 20 ms with 50%
headroom (10 ms), the figure for sizing a conference server.

The ports are trivial (they hand out a stored frame and keep what they get), so this is
the mixer's own cost; codecs and the network come on top (see bench_media.py).
"""

from __future__ import annotations

import time

import numpy as np

from sipsimple.media.mixer import PTIME, AudioMixer, SlotPort

RATE = 48000
FRAME = RATE // 50
BUDGET = PTIME * 0.5  # 50% headroom


class Participant(SlotPort):
    def __init__(self, frame: np.ndarray) -> None:
        self.frame = frame
        self.heard: np.ndarray | None = None

    def produce(self) -> np.ndarray:
        return self.frame

    def consume(self, frame: np.ndarray | None) -> None:
        self.heard = frame


def meshed_mixer(count: int) -> tuple[AudioMixer, list[np.ndarray]]:
    mixer = AudioMixer(None, None, RATE, slot_count=count)
    rng = np.random.default_rng(count)
    frames = [(rng.standard_normal(FRAME) * 3000).astype(np.int16) for _ in range(count)]
    slots = [mixer.add_port(Participant(frame)) for frame in frames]
    for src in slots:
        for dst in slots:
            if src != dst:
                mixer.connect_slots(src, dst)
    mixer.tick()  # builds the plan once, as the first real tick would
    return mixer, frames


def per_call(function, seconds: float = 0.3) -> float:
    """CPU seconds of this thread per call of ``function``, best of three runs of about
    ``seconds``/3 each (thread CPU time: other processes on the machine barely count)."""
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


def tick_cost(count: int) -> tuple[float, float]:
    """(seconds per mixer tick, seconds per floor sum) for ``count`` meshed participants."""
    mixer, frames = meshed_mixer(count)
    stacked = np.stack(frames)
    ours = per_call(mixer.tick)
    floor = per_call(lambda: stacked.sum(axis=0, dtype=np.int32))
    return ours, floor


def largest_fitting() -> tuple[int, float]:
    """The largest N whose tick costs at most BUDGET, to within 5%.

    Past a few hundred participants (when the frames outgrow the CPU caches) the cost
    grows linearly with N: the line through two sizes predicts the N that meets the
    budget, which is then measured, and stepped down by 5% while it does not fit (a
    full mesh of N needs N^2 connections, so sizes are not probed blindly).
    """
    small, large = 512, 1024
    cost_small, cost_large = tick_cost(small)[0], tick_cost(large)[0]
    if cost_large > BUDGET:
        return (small, cost_small) if cost_small <= BUDGET else (0, 0.0)
    slope = (cost_large - cost_small) / (large - small)
    count = large + int((BUDGET - cost_large) / slope)
    while True:
        cost = tick_cost(count)[0]
        if cost <= BUDGET or count <= large:
            return count, cost
        count = max(large, int(count * 0.95))


def main() -> None:
    print(f"audio mixer, {RATE} Hz, 20 ms frames, N participants fully meshed, one core")
    print(f"{'N':>5} {'tick':>10} {'per slot':>10} {'floor sum':>10} {'ratio':>7} {'of 20ms':>8}")
    for count in (3, 10, 32, 100):
        ours, floor = tick_cost(count)
        print(
            f"{count:5d} {ours * 1e6:8.0f}us {ours / count * 1e6:8.2f}us {floor * 1e6:8.1f}us "
            f"{ours / floor:6.1f}x {ours / PTIME:7.1%}"
        )
    count, cost = largest_fitting()
    print(
        f"largest N mixed within 20 ms with 50% headroom: {count} "
        f"(tick {cost * 1e3:.2f} ms = {cost / PTIME:.0%} of the frame)"
    )


if __name__ == "__main__":
    main()
