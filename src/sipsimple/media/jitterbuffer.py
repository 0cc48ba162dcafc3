"""An adaptive jitter buffer for one received RTP audio stream, sans-IO.

put(packet, now) stores a packet as it arrives; get(now) is called once per frame the
playout needs (every 20 ms with 20 ms packets) and says what to play: a packet to decode,
a lost frame to conceal (the codec's conceal()), or None for silence.  peek(timestamp)
shows the packet that follows a lost frame when it is here already, for a codec that
rebuilds the lost frame from it (Opus's in-band FEC).

Delay model.  Each packet's transit is ``arrival - timestamp / clock_rate``.  The base
transit stands for the fastest path: the smallest transit seen, allowed to creep up by
BASE_LEAK seconds per second so that it follows a sender whose clock runs slow.  A
packet's excess is its transit above the base; the buffer delay D is how much later than
the base a frame is played, measured at each get(), so a packet is in time exactly when
its excess is below D.  The target delay follows the excess: it rises at once when two
consecutive packets need more (one isolated outlier does not count), holds for HOLD
seconds, then falls back by ``release`` seconds per second towards a high quantile of the
recent excesses, within [min_delay, max_delay].  D is kept within [target, target + 2
frames] by inserting a concealed frame (growing) or by skipping a frame, at most one
every ``shrink_interval`` frames (shrinking).

Sequence numbers and timestamps are unwrapped to 64-bit counters, so wrap-around needs
no special case.  A new SSRC, or a jump in timestamps or sequence numbers that no network
delay explains, restarts the buffer (keeping what it learned of the network).
"""

from __future__ import annotations

import heapq
import math
from array import array
from bisect import bisect_left, insort
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

from sipsimple.media.rtp import RTPPacket

__all__ = ["FrameKind", "JitterBuffer", "JitterBufferStatistics", "JitterFrame"]

WINDOW = 500  # packets of excess-transit history (10 s of 20 ms packets)
QUANTILE = 0.98
TOP = 24  # excesses a rebuilt top keeps: the quantile is among the largest 11 of WINDOW
TOP_LIMIT = 64  # a top grown past this is rebuilt, so that inserting in it stays cheap
HOLD = 10.0  # seconds the target stays up after rising
BASE_LEAK = 0.002  # seconds per second the base transit may rise (a 0.2 % slow clock)
MAX_DROPOUT = 3000  # sequence jump taken as a restart (RFC 3550 A.1)
IDLE_FRAMES = 10  # consecutive empty frames after which playout stops and rebuffers


class FrameKind(Enum):
    AUDIO = "audio"  # decode ``packet``
    LOST = "lost"  # nothing to play in this slot: run the codec's concealment


_AUDIO, _LOST = FrameKind.AUDIO, FrameKind.LOST


class JitterFrame(NamedTuple):
    """One slot of playout.  ``samples`` is its duration in RTP clock ticks.  A named tuple:
    one is made per frame, and a tuple is the cheapest immutable object to make."""

    kind: FrameKind
    timestamp: int
    samples: int
    packet: RTPPacket | None = None


# get() makes its frames as tuple.__new__(JitterFrame, fields): what JitterFrame(*fields)
# does, without the Python-level __new__ of a named tuple (a third of the cost).
_new_frame = tuple.__new__


@dataclass(slots=True)
class JitterBufferStatistics:
    received: int = 0  # packets put()
    played: int = 0  # AUDIO frames returned
    lost: int = 0  # LOST frames for a packet missing while later ones were there
    underruns: int = 0  # LOST frames because the buffer ran empty
    expanded: int = 0  # LOST frames inserted to grow the delay
    late: int = 0  # packets that arrived after their slot was played
    duplicates: int = 0
    discarded: int = 0  # packets skipped to shrink the delay, or on overflow
    resets: int = 0  # restarts: new SSRC, timestamp or sequence jump
    delay_ms: float = 0.0  # current buffer delay D
    target_delay_ms: float = 0.0


def _unwrap(value: int, reference: int, bits: int) -> int:
    """The extended value nearest to ``reference`` whose low ``bits`` equal ``value``."""
    modulus = 1 << bits
    delta = (value - reference) % modulus
    if delta >= modulus >> 1:
        delta -= modulus
    return reference + delta


class JitterBuffer:
    """Playout buffer of one audio stream; delays are in seconds, ``ptime`` in ms.

    Only audio packets belong here: telephone-event packets go to the DTMFReceiver (the
    audio slots they replaced play as lost frames, which the concealment fades out).
    """

    def __init__(
        self,
        clock_rate: int,
        *,
        ptime: int = 20,
        min_delay: float = 0.04,
        max_delay: float = 0.5,
        initial_delay: float = 0.06,
        release: float = 0.02,
        shrink_interval: int = 20,
    ) -> None:
        if not 0 <= min_delay <= initial_delay <= max_delay:
            raise ValueError("delays must satisfy 0 <= min_delay <= initial_delay <= max_delay")
        self.clock_rate = clock_rate
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.release = release
        self.shrink_interval = shrink_interval
        self.statistics = JitterBufferStatistics(target_delay_ms=initial_delay * 1000)
        self._frame = clock_rate * ptime // 1000
        self._step = self._frame  # the last timestamp step between consecutive packets
        self._frame_seconds = ptime / 1000
        self._target = initial_delay
        self._hold = 0  # frames left before the target may fall
        # The excesses in arrival order (a ring once full, _oldest its start), and the
        # quantile's neighbourhood: _top holds the largest excesses, sorted, those of the
        # ring slots marked in _in_top, and no unmarked excess is above _top[0].  A packet
        # touches a slot and compares with _top[0]; the window is not kept sorted.
        self._excesses = array("d")
        self._oldest = 0
        self._top: list[float] = []
        self._in_top = bytearray(WINDOW)
        self._need = 1  # the quantile is _top[-_need]
        self._floor = min_delay  # the quantile within [min_delay, max_delay], as of _top
        self._previous_excess = 0.0
        self._jump = max(1.0, 2 * max_delay)
        self._capacity = int(2 * max_delay / self._frame_seconds) + 16
        self._ssrc: int | None = None
        self._suspect: tuple[RTPPacket, float] | None = None
        self._restart()

    def flush(self) -> None:
        """Forgets the packets held and the playout timeline: the next packet starts
        playout afresh, as after a new SSRC (what was learned of the network stays).

        For a pause in receiving (hold): the packets from before it are stale, and a
        timeline kept across it would take the pause for network delay (and then skip
        frames for a long while to bring that delay down)."""
        self._suspect = None
        self._restart()

    def _restart(self) -> None:
        self._buffer: dict[int, tuple[int, RTPPacket]] = {}  # extended ts -> (ext seq, packet)
        self._ts_ref: int | None = None
        self._seq_ref = 0
        self._highest: tuple[int, int] | None = None  # (ext seq, ext ts) of the newest packet
        self._base = math.inf  # base transit, updated at each arrival
        self._base_time = 0.0
        self._playout = 0  # extended timestamp of the next slot
        self._last_seq: int | None = None  # extended sequence number last played
        self._played: deque[int] = deque(maxlen=64)
        self._played_max: float = -math.inf  # no sequence number above this was played
        self._stop()

    def _stop(self) -> None:
        """Stops playout until the buffer refills (the timeline and what was played stay)."""
        self._playing = False
        self._empty = 0
        self._since_shrink = 0

    # arrival side

    def put(self, packet: RTPPacket, now: float) -> None:
        """Stores ``packet``, arrived at ``now``."""
        # The usual packet: the next in sequence from the source we play, on its timeline,
        # in time and no duplicate, while playing.  It takes the steps _put() would take,
        # without the calls and the checks that cannot fail; anything else takes _put().
        highest = self._highest
        if (
            self._playing
            and highest is not None
            and packet.ssrc == self._ssrc
            and (seq_ref := self._seq_ref) == highest[0]
            and packet.sequence_number == (seq_ref + 1) & 0xFFFF
            and self._suspect is None
        ):
            ts_ref: int = self._ts_ref  # type: ignore[assignment]  # set with _highest
            ext_ts = ts_ref + ((packet.timestamp - ts_ref + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            transit = now - ext_ts / self.clock_rate
            buffer = self._buffer
            if (
                -(jump := self._jump) <= transit - self._base <= jump
                and ext_ts not in buffer
                and ext_ts >= self._playout - self._frame // 2
            ):
                stats = self.statistics
                stats.received += 1
                ext_seq = seq_ref + 1
                self._seq_ref = ext_seq
                if ext_ts > ts_ref:
                    self._ts_ref = ext_ts
                self._observe(transit, now)
                # the packet duration, as in _store():
                step = ext_ts - highest[1]
                if step == self._step and 0 < step <= self.clock_rate * 0.12:
                    self._frame = step
                self._step = step
                self._highest = (ext_seq, ext_ts)
                buffer[ext_ts] = (ext_seq, packet)
                if len(buffer) > self._capacity:
                    del buffer[min(buffer)]
                    stats.discarded += 1
                return
        self._put(packet, now)

    def _put(self, packet: RTPPacket, now: float) -> None:
        stats = self.statistics
        stats.received += 1
        ssrc = packet.ssrc
        if self._ssrc is None:
            self._ssrc = ssrc
        if ssrc == self._ssrc:
            # The usual packet: unwrap its numbers once, for the jump check and the insert.
            ts_ref = self._ts_ref
            if ts_ref is None:
                ext_ts, ext_seq = packet.timestamp, packet.sequence_number
                self._ts_ref, self._seq_ref = ext_ts, ext_seq
                self._take(packet, now, ext_ts, ext_seq)
                return
            ext_ts = ts_ref + ((packet.timestamp - ts_ref + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            seq_ref = self._seq_ref
            ext_seq = seq_ref + ((packet.sequence_number - seq_ref + 0x8000) & 0xFFFF) - 0x8000
            if (
                abs(now - ext_ts / self.clock_rate - self._base) <= self._jump
                and abs(ext_seq - seq_ref) <= MAX_DROPOUT
            ):
                if self._suspect is not None:  # it was a stray
                    stats.discarded += 1
                    self._suspect = None
                self._store(packet, now, ext_ts, ext_seq)
                return
        # A new SSRC, or a jump no network delay explains.  Restart only when a second
        # packet confirms the new source or timeline (as in RFC 3550 A.1), so a stray
        # packet cannot flush the buffer.
        suspect = self._suspect
        if suspect is None or not self._follows(suspect[0], packet):
            if suspect is not None:
                stats.discarded += 1
            self._suspect = (packet, now)
            return
        stats.resets += 1
        self._ssrc = ssrc
        self._restart()
        self._suspect = None
        self._insert(*suspect)
        self._insert(packet, now)

    def _take(self, packet: RTPPacket, now: float, ext_ts: int, ext_seq: int) -> None:
        """A packet of the current source and timeline: a suspect before it was a stray."""
        if self._suspect is not None:
            self.statistics.discarded += 1
            self._suspect = None
        self._store(packet, now, ext_ts, ext_seq)

    def _follows(self, previous: RTPPacket, packet: RTPPacket) -> bool:
        step = (packet.timestamp - previous.timestamp) & 0xFFFFFFFF
        return (
            packet.ssrc == previous.ssrc
            and packet.sequence_number == (previous.sequence_number + 1) & 0xFFFF
            and step <= self.clock_rate * 0.12
        )

    def _insert(self, packet: RTPPacket, now: float) -> None:
        if self._ts_ref is None:
            self._ts_ref, self._seq_ref = packet.timestamp, packet.sequence_number
        ext_ts = _unwrap(packet.timestamp, self._ts_ref, 32)
        ext_seq = _unwrap(packet.sequence_number, self._seq_ref, 16)
        self._store(packet, now, ext_ts, ext_seq)

    def _store(self, packet: RTPPacket, now: float, ext_ts: int, ext_seq: int) -> None:
        stats = self.statistics
        if ext_seq > self._seq_ref:
            self._seq_ref = ext_seq
        if ext_ts > self._ts_ref:  # type: ignore[operator]  # set before any _store
            self._ts_ref = ext_ts
        buffer = self._buffer
        if ext_ts in buffer or (ext_seq <= self._played_max and ext_seq in self._played):
            stats.duplicates += 1  # says nothing of the network delay: not observed
            return
        self._observe(now - ext_ts / self.clock_rate, now)
        if (
            ext_ts < self._playout - self._frame // 2
            if self._playing
            else self._last_seq is not None and ext_seq <= self._last_seq
        ):
            stats.late += 1
            return
        highest = self._highest
        if highest is None:
            self._highest = (ext_seq, ext_ts)
        elif ext_seq > highest[0]:
            if ext_seq == highest[0] + 1:
                # The packet duration is the timestamp step between consecutive packets,
                # once seen twice in a row (a single step may span a pause in sending).
                step = ext_ts - highest[1]
                if step == self._step and 0 < step <= self.clock_rate * 0.12:
                    self._frame = step
                self._step = step
            self._highest = (ext_seq, ext_ts)
        buffer[ext_ts] = (ext_seq, packet)
        if len(buffer) > self._capacity:
            del buffer[min(buffer)]
            stats.discarded += 1

    def _observe(self, transit: float, now: float) -> None:
        # (Comparisons rather than min(): the same values without a call of a builtin.)
        leaked = self._base + BASE_LEAK * (now - self._base_time)
        base = self._base = leaked if leaked < transit else transit
        self._base_time = now
        excess = transit - base
        self._remember(excess)
        # Grow at once when two packets in a row need it; one outlier alone does not.
        previous = self._previous_excess
        needed = previous if previous < excess else excess
        self._previous_excess = excess
        if needed > self._target:
            self._raise_target(needed)

    def _remember(self, excess: float) -> None:
        """Adds an excess to the window, in place of the oldest once it is full."""
        excesses, top, marks = self._excesses, self._top, self._in_top
        slot = self._oldest
        if len(excesses) < WINDOW:
            excesses.append(excess)
            n = slot + 1
            self._need = n - int(QUANTILE * (n - 1))
            changed = True
        else:
            changed = marks[slot]
            if changed:
                marks[slot] = 0
                del top[bisect_left(top, excesses[slot])]
            excesses[slot] = excess
        self._oldest = slot + 1 if slot + 1 < WINDOW else 0
        if not top or excess > top[0]:
            insort(top, excess)
            marks[slot] = 1
            changed = True
        if changed:  # else the quantile is what it was
            if not self._need <= len(top) <= TOP_LIMIT:
                self._rebuild_top()
                top = self._top
            floor = top[len(top) - self._need]
            min_delay, max_delay = self.min_delay, self.max_delay
            self._floor = (
                min_delay if floor < min_delay else max_delay if floor > max_delay else floor
            )

    def _rebuild_top(self) -> None:
        """Marks the TOP largest excesses of the window (all of them while it is smaller)."""
        excesses = self._excesses
        slots = heapq.nlargest(TOP, range(len(excesses)), key=excesses.__getitem__)
        marks = self._in_top = bytearray(WINDOW)
        for slot in slots:
            marks[slot] = 1
        self._top = sorted(excesses[slot] for slot in slots)

    def _raise_target(self, needed: float) -> None:
        self._target = min(needed, self.max_delay)
        self._hold = round(HOLD / self._frame_seconds)

    # playout side

    def get(self, now: float) -> JitterFrame | None:
        """What to play for the next slot; None means silence (nothing under way)."""
        stats = self.statistics
        if not self._playing and not self._start(now):
            return None
        # The target falls back towards the quantile of the excesses once HOLD is over.
        floor = self._floor
        max_delay = self.max_delay
        target = self._target
        frame_seconds = self._frame_seconds
        if self._hold:
            self._hold -= 1
        elif target > floor:
            lowered = target - self.release * frame_seconds
            target = lowered if lowered > floor else floor
        if target < floor:
            target = floor
        self._target = target
        playout = self._playout
        delay = now - playout / self.clock_rate - self._base
        stats.delay_ms = delay * 1000
        stats.target_delay_ms = target * 1000
        frame = self._frame
        if delay < target and delay + frame_seconds <= max_delay:
            stats.expanded += 1
            return _new_frame(JitterFrame, (_LOST, playout & 0xFFFFFFFF, frame, None))
        buffer = self._buffer
        self._since_shrink += 1
        if (
            delay > target + 2 * frame_seconds
            and self._since_shrink >= self.shrink_interval
            and len(buffer) >= 2
        ):
            self._since_shrink = 0
            skipped = buffer.pop(playout, None)
            if skipped is not None:
                stats.discarded += 1
                self._last_seq = skipped[0]
                self._played_append(skipped[0])
            playout += frame
            self._playout = playout
        half = frame // 2
        if buffer:
            earliest = min(buffer)
            if earliest < playout - half:
                for stale in [ts for ts in buffer if ts < playout - half]:
                    del buffer[stale]
                    stats.late += 1
                earliest = min(buffer) if buffer else None
        else:
            earliest = None
        if earliest is None:
            self._empty += 1
            if self._empty > IDLE_FRAMES:
                self._stop()
                return None
            stats.underruns += 1
            self._playout = playout + frame
            return _new_frame(JitterFrame, (_LOST, playout & 0xFFFFFFFF, frame, None))
        self._empty = 0
        if earliest <= playout + half:
            seq, packet = buffer.pop(earliest)
            self._playout = earliest + frame
            self._last_seq = seq
            self._played.append(seq)
            if seq > self._played_max:
                self._played_max = seq
            stats.played += 1
            return _new_frame(JitterFrame, (_AUDIO, packet.timestamp, frame, packet))
        self._playout = playout + frame
        if self._last_seq is not None and buffer[earliest][0] == self._last_seq + 1:
            return None  # no packet is missing: the sender paused (silence suppression)
        stats.lost += 1
        return _new_frame(JitterFrame, (_LOST, playout & 0xFFFFFFFF, frame, None))

    def peek(self, timestamp: int) -> RTPPacket | None:
        """The packet held for the next slot, if it is here and that slot starts at RTP
        ``timestamp`` (taken modulo 2**32): after a LOST frame of timestamp t and duration
        d, peek(t + d) is the packet that follows the lost one.  It stays in the buffer.
        None after a LOST frame that grew the delay (the same slot comes again)."""
        playout = self._playout
        if not self._playing or (timestamp - playout) & 0xFFFFFFFF:
            return None
        entry = self._buffer.get(playout)
        return None if entry is None else entry[1]

    def _played_append(self, seq: int) -> None:
        self._played.append(seq)
        if seq > self._played_max:
            self._played_max = seq

    def _start(self, now: float) -> bool:
        """Starts playout once the earliest packet has waited for the target delay."""
        if not self._buffer:
            return False
        earliest = min(self._buffer)
        if now - earliest / self.clock_rate - self._base < self._target:
            return False
        self._playing = True
        self._playout = earliest
        return True

    @property
    def delay(self) -> float:
        """The current buffer delay in seconds (as of the last get())."""
        return self.statistics.delay_ms / 1000
