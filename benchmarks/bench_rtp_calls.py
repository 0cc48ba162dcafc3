"""Concurrent calls: how many AudioTransport pairs one machine carries with every packet on time.

Two processes, one per side of every call, each with one AudioMixer (a dummy device whose
microphone plays a tone, connected to every call both ways) and N RTPTransport +
AudioTransport pairs on loopback, media flowing both ways.  For each N the script runs
the calls for a while and measures, in a window after a warm-up:

* send lateness: when each RTP packet was handed to the socket, after its deadline
  (t0 + n * ptime) - p50, p99 and max over every packet of both sides;
* loss: packets sent minus packets received, both directions, once sending stopped;
* CPU: each process's CPU time over the window, per call (percent of one core) and per
  packet sent or received (us/pkt, which stays honest when a starved process skips frames).

Every N of the list is tried (on a shared machine one noisy trial should not end the
search) until a side saturates its core, ``--repeat`` times each: p99 lateness changes
much from one trial to the next even on a quiet machine (the two processes' clocks fall
at a different offset each time), so the summary says at which N every trial was on
time, and at which N some were; the CPU-bound capacity is what the median CPU
per packet allows at 70 % of one core per side.  The peer, measured in
the same run at the same N, is the floor of the job: bare asyncio UDP sockets sending a
172-byte datagram every 20 ms from the same kind of absolute-deadline timer and
receiving without looking at it; "x bare" is our CPU per packet over the bare one.

Once its calls are set up, each process does gc.collect() and gc.freeze(), as the README
advises for many calls: a full collection walks every object the process keeps (~40 ms
here), and one falls in most windows, stalling every call's packets; --gc-default leaves
the collector alone.

Usage: bench_rtp_calls.py [--codec PCMU|opus] [--calls N ...] [--window S] [--mixer-rate R]
                          [--repeat T] [--gc-default]
       bench_rtp_calls.py --profile N --codec opus   (cProfile of one side)
       bench_rtp_calls.py --virtual N [N ...]        (CPU per packet on a virtual clock)
--virtual runs both sides of N calls in one process on an event loop whose clock jumps
to the next timer instead of sleeping: every frame is on time and the CPU time per packet
(of both sides and their bare-UDP peer) is the work itself, whatever else the machine runs.
The "stall" column is the machine's CPU pressure during the trial (Linux PSI: the share of
time some runnable task waited for a CPU): where it is high, lateness says more about the
other tenants than about us.
Run it in a loopback-only namespace (scripts/bench.sh does).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import multiprocessing
import os
import pstats
import selectors
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection

import numpy as np

from sipsimple.core.media import AudioTransport, RTPTransport
from sipsimple.core.sdp import SDPConnection, SDPSession
from sipsimple.media.devices import DummyDevice
from sipsimple.media.mixer import AudioMixer

LOCAL = "127.0.0.1"
PORTS = {"offerer": (20000, 29999), "answerer": (30000, 39999)}
PTIME = 0.02
MIXER_RATE = 48000
GC_FREEZE = True  # --gc-default: leave the collector as it is (see run_side)
LATENESS_LIMIT = 0.005
WARMUP = 2.0
DRAIN = 0.5
DEFAULT_STEPS = {"PCMU": [25, 50, 75, 100, 150, 200], "opus": [10, 20, 30, 40, 50]}

_lateness: list[float] | None = None  # collected during the window only


class MeasuredAudioTransport(AudioTransport):
    """Notes when each packet leaves, against the deadline of its frame."""

    def _transmit(self, data: bytes, timestamp: int, octets: int, now: float, due: float) -> None:
        super()._transmit(data, timestamp, octets, now, due)
        if _lateness is not None:
            _lateness.append(self._loop.time() - due)  # type: ignore[union-attr]


@dataclass
class SideResult:
    cpu: float  # seconds of CPU in the window
    window: float
    sent: int
    received: int
    moved: int  # packets sent plus packets received in the window
    lateness: np.ndarray
    late_frames: int  # frames the jitter buffers found late or lost


# -- one side of N calls ---------------------------------------------------------------------


async def run_side(
    role: str,
    calls: int,
    codec: str,
    conn: Connection,
    bare: bool,
    profiler: cProfile.Profile | None = None,
    freeze: bool = True,
) -> None:
    global _lateness
    loop = asyncio.get_running_loop()

    async def receive() -> object:
        # A reader on the pipe, not a thread blocked in recv(): a waiting thread makes
        # the loop's thread give up the GIL on a timer and stalls it for milliseconds.
        ready = asyncio.Event()
        loop.add_reader(conn.fileno(), ready.set)
        try:
            await ready.wait()
        finally:
            loop.remove_reader(conn.fileno())
        return conn.recv()

    side = BareSide(calls) if bare else AudioSide(calls, codec, role)
    await side.setup()
    if role == "offerer":
        conn.send(side.offers())
        side.start(await receive())
    else:
        conn.send(side.answer(await receive()))
    if freeze:
        # What a media server does once it has started (see the README): the objects it
        # keeps - modules, the calls - leave the collector's generations, so a full
        # collection (~40 ms here for ~45k objects, one every few seconds after the
        # calls' set-up) does not stall the packets of every call.
        gc.collect()
        gc.freeze()
    assert await receive() == "go"
    _lateness = []
    moved = sum(side.totals())
    cpu, wall = time.process_time(), loop.time()
    if profiler is not None:
        profiler.enable()
    assert await receive() == "stop"
    if profiler is not None:
        profiler.disable()
    cpu, wall = time.process_time() - cpu, loop.time() - wall
    moved = sum(side.totals()) - moved
    lateness, _lateness = np.array(_lateness), None
    late = side.late_frames()
    side.stop_sending()
    await asyncio.sleep(DRAIN)
    sent, received = side.totals()
    conn.send(SideResult(cpu, wall, sent, received, moved, lateness, late))
    await side.close()


class AudioSide:
    def __init__(self, calls: int, codec: str, role: str) -> None:
        self.codec = codec
        self.mixer = AudioMixer(
            None, None, MIXER_RATE, slot_count=calls + 1, device=DummyDevice(tone=440)
        )
        self.rtps = [
            RTPTransport(local_address=LOCAL, port_range=PORTS[role]) for _ in range(calls)
        ]
        self.audios: list[AudioTransport] = []

    async def setup(self) -> None:
        self.mixer.start()
        await asyncio.gather(*(rtp.set_INIT() for rtp in self.rtps))

    def offers(self) -> list[str]:
        self.audios = [
            MeasuredAudioTransport(self.mixer, rtp, codecs=[self.codec]) for rtp in self.rtps
        ]
        self._offers = [self._sdp(audio.get_local_media()) for audio in self.audios]
        return self._offers

    def start(self, answers: list[str]) -> None:
        for audio, offer, answer in zip(self.audios, self._offers, answers, strict=True):
            self._start(audio, offer, answer)

    def answer(self, offers: list[str]) -> list[str]:
        answers = []
        for rtp, offer in zip(self.rtps, offers, strict=True):
            remote = SDPSession.parse(offer)
            audio = MeasuredAudioTransport(self.mixer, rtp, remote, 0, codecs=[self.codec])
            self.audios.append(audio)
            answers.append(self._sdp(audio.get_local_media(remote, 0)))
            self._start(audio, answers[-1], offer)
        return answers

    def _start(self, audio: AudioTransport, local: str, remote: str) -> None:
        audio.start(SDPSession.parse(local), SDPSession.parse(remote), 0)
        self.mixer.connect_slots(0, audio.slot)
        self.mixer.connect_slots(audio.slot, 0)

    @staticmethod
    def _sdp(media: object) -> str:
        return str(SDPSession(LOCAL, connection=SDPConnection(LOCAL), media=[media]))

    def stop_sending(self) -> None:
        for audio in self.audios:
            audio.update_direction("recvonly")

    def totals(self) -> tuple[int, int]:
        sent = sum(rtp.counters.rtp_sent for rtp in self.rtps)
        return sent, sum(rtp.counters.rtp_received for rtp in self.rtps)

    def late_frames(self) -> int:
        """Frames the jitter buffers had no packet for (late, lost or run dry)."""
        total = 0
        for audio in self.audios:
            stats = audio.jitter_buffer_statistics
            total += stats.late + stats.lost + stats.underruns
        return total

    async def close(self) -> None:
        for audio in self.audios:
            audio.stop()
        await asyncio.gather(*(rtp.stop() for rtp in self.rtps))
        self.mixer.close()


class _BareProtocol(asyncio.DatagramProtocol):
    received = 0

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.received += 1


class BareSide:
    """The floor: a UDP socket per call, a datagram every 20 ms each way, nothing else."""

    def __init__(self, calls: int) -> None:
        self.calls = calls
        self.payload = bytes(172)
        self.sending = True
        self.sent = 0

    async def setup(self) -> None:
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.sockets = [
            await loop.create_datagram_endpoint(_BareProtocol, local_addr=(LOCAL, 0))
            for _ in range(self.calls)
        ]

    def offers(self) -> list[int]:
        return [transport.get_extra_info("sockname")[1] for transport, _ in self.sockets]

    def start(self, ports: list[int]) -> None:
        for (transport, _), port in zip(self.sockets, ports, strict=True):
            self._run(transport, (LOCAL, port), self.loop.time())

    def answer(self, ports: list[int]) -> list[int]:
        mine = self.offers()
        self.start(ports)
        return mine

    def _run(self, transport: asyncio.DatagramTransport, peer: tuple[str, int], t0: float) -> None:
        state = {"n": 1}

        def tick() -> None:
            if not self.sending:
                return
            due = t0 + state["n"] * PTIME
            transport.sendto(self.payload, peer)
            self.sent += 1
            if _lateness is not None:
                _lateness.append(self.loop.time() - due)
            state["n"] += 1
            self.loop.call_at(t0 + state["n"] * PTIME, tick)

        self.loop.call_at(t0 + PTIME, tick)

    def stop_sending(self) -> None:
        self.sending = False

    def totals(self) -> tuple[int, int]:
        return self.sent, sum(protocol.received for _, protocol in self.sockets)

    def late_frames(self) -> int:
        return 0

    async def close(self) -> None:
        for transport, _ in self.sockets:
            transport.close()


def side_process(
    role: str,
    calls: int,
    codec: str,
    conn: Connection,
    bare: bool,
    profile: bool,
    rate: int,
    freeze: bool,
) -> None:
    global MIXER_RATE
    MIXER_RATE = rate
    # CPU time, not wall time: on a shared machine a preempted function is not charged.
    profiler = cProfile.Profile(time.process_time) if profile else None
    asyncio.run(run_side(role, calls, codec, conn, bare, profiler, freeze))
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(45)
        conn.send(out.getvalue())


# -- trials ------------------------------------------------------------------------------------


@dataclass
class Trial:
    calls: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    lost: int
    late_frames: int
    cpu_per_call: float  # percent of one core, mean of the two sides
    busiest: float  # the busier process, percent of one core
    us_per_packet: float  # CPU per packet sent or received, both sides

    @property
    def ok(self) -> bool:
        return self.p99_ms < LATENESS_LIMIT * 1000 and self.lost == 0


def trial(
    calls: int, codec: str, window: float, bare: bool = False, profile: bool = False
) -> Trial:
    context = multiprocessing.get_context("spawn")
    pipes, processes = {}, []
    for role in ("offerer", "answerer"):
        ours, theirs = context.Pipe()
        process = context.Process(
            target=side_process,
            args=(
                role,
                calls,
                codec,
                theirs,
                bare,
                profile and role == "offerer",
                MIXER_RATE,
                GC_FREEZE,
            ),
        )
        process.start()
        pipes[role] = ours
        processes.append(process)
    offers = pipes["offerer"].recv()
    pipes["answerer"].send(offers)
    pipes["offerer"].send(pipes["answerer"].recv())
    time.sleep(WARMUP)
    for pipe in pipes.values():
        pipe.send("go")
    time.sleep(window)
    for pipe in pipes.values():
        pipe.send("stop")
    results: list[SideResult] = [pipes[role].recv() for role in ("offerer", "answerer")]
    if profile:
        print(pipes["offerer"].recv())
    for process in processes:
        process.join(timeout=30)
    lateness = np.concatenate([r.lateness for r in results]) * 1000
    a, b = results
    lost = max(0, a.sent - b.received) + max(0, b.sent - a.received)
    loads = [r.cpu / r.window * 100 for r in results]
    return Trial(
        calls,
        float(np.percentile(lateness, 50)) if len(lateness) else 0.0,
        float(np.percentile(lateness, 99)) if len(lateness) else 0.0,
        float(lateness.max()) if len(lateness) else 0.0,
        lost,
        a.late_frames + b.late_frames,
        sum(loads) / 2 / calls,
        max(loads),
        sum(r.cpu for r in results) / max(1, sum(r.moved for r in results)) * 1e6,
    )


# -- on a virtual clock ------------------------------------------------------------------------


class _VirtualSelector(selectors.EpollSelector):
    """Never sleeps: where the loop would wait for a timer, the virtual clock jumps to it."""

    def __init__(self, loop: VirtualClockLoop) -> None:
        super().__init__()
        self._owner = loop

    def select(self, timeout: float | None = None) -> list:  # type: ignore[override]
        events = super().select(0)
        if not events and timeout is not None and timeout > 0:
            self._owner.now += timeout
        return events


class VirtualClockLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.now = 1000.0
        super().__init__(_VirtualSelector(self))

    def time(self) -> float:
        return self.now


async def _virtual_trial(calls: int, codec: str, seconds: float, bare: bool) -> float:
    """CPU microseconds per packet sent or received, both sides of ``calls`` calls."""
    sides = [
        BareSide(calls) if bare else AudioSide(calls, codec, role)
        for role in ("offerer", "answerer")
    ]
    offerer, answerer = sides
    for side in sides:
        await side.setup()
    offerer.start(answerer.answer(offerer.offers()))
    await asyncio.sleep(WARMUP)
    moved = sum(sum(side.totals()) for side in sides)
    cpu = time.process_time()
    await asyncio.sleep(seconds)
    cpu = time.process_time() - cpu
    moved = sum(sum(side.totals()) for side in sides) - moved
    for side in sides:
        side.stop_sending()
    await asyncio.sleep(DRAIN)
    for side in sides:
        await side.close()
    return cpu / max(1, moved) * 1e6


def virtual(calls_list: list[int], codecs: list[str], seconds: float) -> None:
    print("virtual clock: both sides in one process, no waiting; CPU per packet of the work")
    print(f"{'codec':<6} {'calls':>5} {'us/pkt':>7} {'bare':>6} {'x bare':>6} {'calls/core':>10}")
    for codec in codecs:
        for calls in calls_list:
            costs = []
            for bare in (False, True):
                loop = VirtualClockLoop()
                try:
                    costs.append(
                        loop.run_until_complete(_virtual_trial(calls, codec, seconds, bare))
                    )
                finally:
                    loop.close()
            ours, floor = costs
            # a call moves 100 packets a second through each side's process
            print(
                f"{codec:<6} {calls:>5} {ours:>7.1f} {floor:>6.1f} {ours / floor:>6.1f} "
                f"{1e6 / (100 * ours):>10.0f}",
                flush=True,
            )


def cpu_pressure() -> str:
    """How much of the last 10 s runnable tasks waited for a CPU (Linux PSI), e.g. "35%"."""
    try:
        with open("/proc/pressure/cpu") as pressure:
            return pressure.readline().split()[1].split("=")[1].split(".")[0] + "%"
    except (OSError, IndexError):
        return "?"


def main() -> None:
    global MIXER_RATE, GC_FREEZE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codec", choices=["PCMU", "opus"], action="append")
    parser.add_argument("--calls", type=int, nargs="+")
    parser.add_argument("--window", type=float, default=6.0)
    parser.add_argument("--profile", type=int, metavar="N")
    parser.add_argument("--mixer-rate", type=int, default=MIXER_RATE)
    parser.add_argument("--virtual", type=int, nargs="+", metavar="N")
    parser.add_argument("--repeat", type=int, default=1, metavar="T", help="trials per N")
    parser.add_argument(
        "--gc-default", action="store_true", help="do not gc.freeze() after the set-up"
    )
    args = parser.parse_args()
    MIXER_RATE = args.mixer_rate
    GC_FREEZE = not args.gc_default
    if args.virtual:
        virtual(args.virtual, args.codec or ["PCMU", "opus"], args.window)
        return
    print(
        f"mixer at {MIXER_RATE} Hz; gc.freeze() after the set-up: {GC_FREEZE}; "
        f"load average before: {os.getloadavg()[0]:.1f}"
    )
    print("stall: CPU pressure during the trial (share of time a runnable task waited for a CPU)")
    codecs = args.codec or ["PCMU", "opus"]
    if args.profile:
        for codec in codecs:
            print(f"cProfile of the offering side, {args.profile} {codec} calls:")
            trial(args.profile, codec, args.window, profile=True)
        return
    print(
        f"{'codec':<6} {'calls':>5} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'lost':>5} "
        f"{'jb late':>7} {'%cpu/call':>9} {'busiest%':>8} {'us/pkt':>6} {'bare':>5} "
        f"{'x bare':>6} {'stall':>5}"
    )
    for codec in codecs:
        always, sometimes, costs, tally = None, None, [], []
        for calls in args.calls or DEFAULT_STEPS[codec]:
            results = []
            for _ in range(args.repeat):
                result = trial(calls, codec, args.window)
                stall = cpu_pressure()
                floor = trial(calls, codec, args.window, bare=True)
                costs.append(result.us_per_packet)
                results.append(result)
                print(
                    f"{codec:<6} {calls:>5} {result.p50_ms:>7.2f} {result.p99_ms:>7.2f} "
                    f"{result.max_ms:>7.2f} {result.lost:>5} {result.late_frames:>7} "
                    f"{result.cpu_per_call:>9.2f} {result.busiest:>8.0f} "
                    f"{result.us_per_packet:>6.0f} {floor.us_per_packet:>5.0f} "
                    f"{result.us_per_packet / floor.us_per_packet:>6.1f} {stall:>5}"
                    f"{'' if result.ok else '  <- misses'}",
                    flush=True,
                )
            on_time = sum(result.ok for result in results)
            tally.append(f"{calls}: {on_time}/{len(results)}")
            if on_time == len(results):
                always = max(calls, always or 0)
            if on_time:
                sometimes = max(calls, sometimes or 0)
            if max(result.busiest for result in results) > 95:  # saturated
                break
        # What the CPU cost alone allows: each side's process at 70 % of one core, a call
        # moving 100 packets a second (50 out, 50 in).
        capacity = int(0.7e6 / (100 * float(np.median(costs))))
        print(
            f"{codec}: largest N on time (p99 < 5 ms, no loss) in every trial: {always}, "
            f"in some: {sometimes} (trials on time: {', '.join(tally)}); "
            f"CPU-bound capacity at 70 % of a core per side: {capacity} calls",
            flush=True,
        )


if __name__ == "__main__":
    main()
