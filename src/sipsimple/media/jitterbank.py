"""The JitterBuffers of many steady streams as the rows of arrays, sans-IO.

A JitterBuffer costs a few microseconds of Python per packet and per frame; with hundreds
of G.711 calls that is a third of the CPU.  A JitterBank takes over the buffers of streams
in the usual state - playing, one timeline, packets of one size - and does the work of
all its rows at once: put_many() stores a batch of packets (their headers parsed, their
numbers unwrapped and the delay model updated with a few array operations), get_many()
plays one frame of every row.  It is the same model as JitterBuffer (see its docstring);
a row keeps every field a buffer has, so adopt() takes a buffer's state over and eject()
writes it back, and the buffer goes on as if it had done the work itself.

What a row takes, by construction: packets of its SSRC and payload types, whose
timestamp is ``offset + sequence number * frame`` (one timeline, frames of one duration),
within the delay jump a JitterBuffer accepts, and no further ahead than its capacity.
put_many() refuses the rows that got anything else - a new source, a talkspurt after
silence (a timestamp jump), another packet size, a payload type of another codec - with
none of their packets applied: the caller ejects them and gives their packets to the
JitterBuffer, which knows what to do.  A row whose playout stops (the stream went quiet)
is reported by get_many() for the same treatment.

Two differences with a JitterBuffer, both in how often, not what: the quantile of the
excess window (the floor the target falls back to) is brought up to date every
``quantile_every`` frames instead of at every packet, and a duplicate of a packet played
up to SLOTS packets ago is counted as a duplicate (a buffer remembers the last 64 played).
"""

from __future__ import annotations

from array import array
from collections import deque

import numpy as np

from sipsimple.media.jitterbuffer import (
    BASE_LEAK,
    HOLD,
    IDLE_FRAMES,
    MAX_DROPOUT,
    QUANTILE,
    WINDOW,
    JitterBuffer,
)
from sipsimple.media.rtp import RTP_HEADER_SIZE, RTPPacket

__all__ = ["AUDIO", "LOST", "STOPPED", "JitterBank"]

SLOTS = 128  # packets a row's ring holds, by sequence number modulo SLOTS
QUANTILE_EVERY = 25  # frames between updates of a row's quantile (0.5 s of 20 ms frames)
# get_many() says, for each row, to play its packet's payload, to conceal a lost frame,
# or that the row stopped playing (eject it: the JitterBuffer restarts playout).
AUDIO, LOST, STOPPED = 0, 1, 2
_EMPTY, _HELD, _PLAYED = 0, 1, 2  # a ring slot's state
_NONE = np.iinfo(np.int64).min  # no sequence number (a JitterBuffer's None)
_STATISTICS = (
    "received",
    "played",
    "lost",
    "underruns",
    "expanded",
    "late",
    "duplicates",
    "discarded",
    "resets",
)


class JitterBank:
    """Rows of JitterBuffers of ``clock_rate``, ``frame`` ticks a packet and packets of
    ``payload_size`` octets (an RTP header of 12 before them)."""

    def __init__(
        self,
        clock_rate: int,
        frame: int,
        payload_size: int,
        *,
        rows: int = 16,
        quantile_every: int | None = None,
    ) -> None:
        self.clock_rate = clock_rate
        self.frame = frame
        self.payload_size = payload_size
        self.packet_size = RTP_HEADER_SIZE + payload_size
        self.quantile_every = QUANTILE_EVERY if quantile_every is None else quantile_every
        self._buffers: list[JitterBuffer | None] = []
        self._free: list[int] = []
        self._allocate(rows)

    def _allocate(self, rows: int) -> None:
        """Room for ``rows`` rows: the arrays grow, what they hold stays."""
        old = len(self._buffers)

        def grow(name: str, dtype: object, shape: tuple[int, ...] = (), fill: object = 0) -> None:
            array = np.full((rows, *shape), fill, dtype=dtype)
            if old:
                array[:old] = getattr(self, name)
            setattr(self, name, array)

        grow("_ssrc", np.int64)
        grow("_types", np.int16, (2,), -1)  # the audio payload types a row takes
        grow("_offset", np.int64)  # extended timestamp - extended sequence number * frame
        grow("_seq_ref", np.int64)  # the highest extended sequence number received
        grow("_base", np.float64)
        grow("_base_time", np.float64)
        grow("_previous", np.float64)  # the previous packet's excess
        grow("_target", np.float64)
        grow("_hold", np.int64)
        grow("_floor", np.float64)
        grow("_until_floor", np.int64)  # frames until the quantile is brought up to date
        grow("_window", np.float64, (WINDOW,))
        grow("_count", np.int64)  # excesses in the window
        grow("_oldest", np.int64)  # the window slot the next excess takes
        grow("_play", np.int64)  # the extended sequence number of the next slot
        grow("_last_seq", np.int64, (), _NONE)
        grow("_empty", np.int64)
        grow("_since_shrink", np.int64)
        grow("_held", np.int64)  # packets waiting in the ring
        grow("_capacity", np.int64)
        grow("_min_delay", np.float64)
        grow("_max_delay", np.float64)
        grow("_release", np.float64)
        grow("_shrink_interval", np.int64)
        grow("_jump", np.float64)
        grow("_frame_seconds", np.float64)
        grow("_hold_frames", np.int64)
        grow("_delay_ms", np.float64)
        grow("_stats", np.int64, (len(_STATISTICS),))
        grow("_slot_seq", np.int64, (SLOTS,), _NONE)
        grow("_slot_state", np.uint8, (SLOTS,))
        grow("_slot_b1", np.uint8, (SLOTS,))  # marker bit and payload type
        grow("_payload", np.uint8, (SLOTS, self.payload_size))
        self._free.extend(range(rows - 1, old - 1, -1))
        self._buffers.extend([None] * (rows - old))

    def __len__(self) -> int:
        """The rows in use."""
        return len(self._buffers) - len(self._free)

    # -- rows in and out --------------------------------------------------------------------

    def adopt(self, buffer: JitterBuffer, payload_types: tuple[int, ...]) -> int | None:
        """Takes over ``buffer``'s state as a row, whose number it returns, when the buffer
        is playing one timeline of this bank's frames; else None, the buffer untouched.
        Until eject(), the row is the buffer: use the bank, not the buffer."""
        frame = self.frame
        highest = buffer._highest
        if (
            not buffer._playing
            or buffer._suspect is not None
            or buffer._ssrc is None
            or highest is None
            or buffer.clock_rate != self.clock_rate
            or buffer._frame != frame
            or buffer._step != frame
            or round(buffer._frame_seconds * self.clock_rate) != frame
            or highest != (buffer._seq_ref, buffer._ts_ref)
            or not 1 <= len(payload_types) <= 2
        ):
            return None
        offset = highest[1] - highest[0] * frame
        play, rest = divmod(buffer._playout - offset, frame)
        capacity = min(buffer._capacity, SLOTS)
        held = buffer._buffer
        last_seq = buffer._last_seq
        # (A packet played at or after the slot due: the timeline jumped back.)
        if (
            rest
            or (last_seq is not None and last_seq >= play)
            or any(
                ts != offset + seq * frame
                or not play <= seq < play + capacity
                or len(packet.payload) != self.payload_size
                or packet.ssrc != buffer._ssrc
                for ts, (seq, packet) in held.items()
            )
        ):
            return None
        if not self._free:
            self._allocate(2 * len(self._buffers))
        row = self._free.pop()
        self._buffers[row] = buffer
        self._ssrc[row] = buffer._ssrc
        self._types[row] = (*payload_types, payload_types[0])[:2]
        self._offset[row] = offset
        self._seq_ref[row] = highest[0]
        self._base[row] = buffer._base
        self._base_time[row] = buffer._base_time
        self._previous[row] = buffer._previous_excess
        self._target[row] = buffer._target
        self._hold[row] = buffer._hold
        self._floor[row] = buffer._floor
        self._until_floor[row] = self.quantile_every
        count = len(buffer._excesses)
        self._window[row, :count] = buffer._excesses
        self._count[row] = count
        self._oldest[row] = buffer._oldest
        self._play[row] = play
        self._last_seq[row] = _NONE if last_seq is None else last_seq
        self._empty[row] = buffer._empty
        self._since_shrink[row] = buffer._since_shrink
        self._capacity[row] = capacity
        self._min_delay[row] = buffer.min_delay
        self._max_delay[row] = buffer.max_delay
        self._release[row] = buffer.release
        self._shrink_interval[row] = buffer.shrink_interval
        self._jump[row] = buffer._jump
        self._frame_seconds[row] = buffer._frame_seconds
        self._hold_frames[row] = round(HOLD / buffer._frame_seconds)
        statistics = buffer.statistics
        self._stats[row] = [getattr(statistics, name) for name in _STATISTICS]
        self._delay_ms[row] = statistics.delay_ms
        slot_seq, slot_state = self._slot_seq[row], self._slot_state[row]
        slot_seq[:] = _NONE
        slot_state[:] = _EMPTY
        for seq in buffer._played:
            if seq > play - SLOTS:
                slot_seq[seq % SLOTS] = seq
                slot_state[seq % SLOTS] = _PLAYED
        for seq, packet in held.values():
            slot = seq % SLOTS
            slot_seq[slot] = seq
            slot_state[slot] = _HELD
            self._slot_b1[row, slot] = packet.payload_type | (0x80 if packet.marker else 0)
            self._payload[row, slot] = np.frombuffer(packet.payload, dtype=np.uint8)
        self._held[row] = len(held)
        held.clear()  # the packets live in the ring now
        return row

    def eject(self, row: int) -> JitterBuffer:
        """Writes row ``row`` back into its JitterBuffer, which it returns, and frees it."""
        buffer = self._buffers[row]
        if buffer is None:
            raise ValueError(f"row {row} of the bank is not in use")
        frame = self.frame
        offset = int(self._offset[row])
        seq_ref = int(self._seq_ref[row])
        ssrc = int(self._ssrc[row])
        buffer._ssrc = ssrc
        buffer._suspect = None
        buffer._seq_ref = seq_ref
        buffer._ts_ref = offset + seq_ref * frame
        buffer._highest = (seq_ref, buffer._ts_ref)
        buffer._frame = buffer._step = frame
        buffer._base = float(self._base[row])
        buffer._base_time = float(self._base_time[row])
        buffer._previous_excess = float(self._previous[row])
        buffer._target = float(self._target[row])
        buffer._hold = int(self._hold[row])
        count = int(self._count[row])
        buffer._excesses = array("d", self._window[row, :count].tobytes())
        buffer._oldest = int(self._oldest[row])
        buffer._need = count - int(QUANTILE * (count - 1)) if count else 1
        buffer._rebuild_top()
        if count:
            floor = buffer._top[len(buffer._top) - buffer._need]
            buffer._floor = min(max(floor, buffer.min_delay), buffer.max_delay)
        play = int(self._play[row])
        buffer._playout = offset + play * frame
        last_seq = int(self._last_seq[row])
        buffer._last_seq = None if last_seq == _NONE else last_seq
        buffer._empty = int(self._empty[row])
        buffer._since_shrink = int(self._since_shrink[row])
        states, seqs = self._slot_state[row], self._slot_seq[row]
        played = sorted(int(seq) for seq in seqs[states == _PLAYED])[-64:]
        buffer._played = deque(played, maxlen=64)
        buffer._played_max = float(max(played)) if played else -float("inf")
        held = {}
        for slot in np.flatnonzero(states == _HELD).tolist():
            seq = int(seqs[slot])
            b1 = int(self._slot_b1[row, slot])
            packet = RTPPacket(
                b1 & 0x7F,
                seq & 0xFFFF,
                (offset + seq * frame) & 0xFFFFFFFF,
                ssrc,
                self._payload[row, slot].tobytes(),
                b1 > 0x7F,
            )
            held[offset + seq * frame] = (seq, packet)
        buffer._buffer = dict(sorted(held.items()))
        self._sync(row, buffer)
        self._buffers[row] = None
        self._free.append(row)
        return buffer

    def statistics(self, row: int) -> JitterBuffer:
        """The buffer of ``row`` with its statistics brought up to date (still the bank's)."""
        buffer = self._buffers[row]
        if buffer is None:
            raise ValueError(f"row {row} of the bank is not in use")
        self._sync(row, buffer)
        return buffer

    def _sync(self, row: int, buffer: JitterBuffer) -> None:
        statistics = buffer.statistics
        for name, value in zip(_STATISTICS, self._stats[row].tolist(), strict=True):
            setattr(statistics, name, value)
        statistics.delay_ms = float(self._delay_ms[row])
        statistics.target_delay_ms = float(self._target[row]) * 1000

    # -- arrival side -----------------------------------------------------------------------

    def put_many(self, rows: np.ndarray, packets: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Stores a batch of packets, in arrival order: packet i is the row ``packets[i]``
        (uint8, ``packet_size`` columns: the RTP header and the payload) for bank row
        ``rows[i]``, arrived at ``times[i]``.  Returns the rows refused (see the module
        docstring): none of their packets were stored."""
        rows = np.asarray(rows, dtype=np.int64)
        frame = self.frame
        header = packets[:, :RTP_HEADER_SIZE].astype(np.int64)
        seq16 = (header[:, 2] << 8) | header[:, 3]
        ts32 = (header[:, 4] << 24) | (header[:, 5] << 16) | (header[:, 6] << 8) | header[:, 7]
        ssrc = (header[:, 8] << 24) | (header[:, 9] << 16) | (header[:, 10] << 8) | header[:, 11]
        b1 = header[:, 1]
        payload_type = b1 & 0x7F
        seq_ref = self._seq_ref[rows]
        offset = self._offset[rows]
        ext_seq = seq_ref + ((seq16 - seq_ref + 0x8000) & 0xFFFF) - 0x8000
        ts_ref = offset + seq_ref * frame
        ext_ts = ts_ref + ((ts32 - ts_ref + 0x80000000) & 0xFFFFFFFF) - 0x80000000
        transit = times - ext_ts / self.clock_rate
        types = self._types[rows]
        fits = (
            (header[:, 0] == 0x80)
            & (ssrc == self._ssrc[rows])
            & ((payload_type == types[:, 0]) | (payload_type == types[:, 1]))
            & (ext_ts - ext_seq * frame == offset)
            & (np.abs(ext_seq - seq_ref) <= MAX_DROPOUT)
            & (np.abs(transit - self._base[rows]) <= self._jump[rows])
            & (ext_seq < self._play[rows] + self._capacity[rows])
        )
        if fits.all():
            refused = rows[:0]
        else:
            refused = np.unique(rows[~fits])
            keep = ~np.isin(rows, refused)
            rows, ext_seq, transit, times, b1 = (
                rows[keep],
                ext_seq[keep],
                transit[keep],
                times[keep],
                b1[keep],
            )
            packets = packets[keep]
        if not len(rows):
            return refused
        # A row's packets in turn: the first of each row, then the second, ...
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        starts = np.flatnonzero(np.r_[True, sorted_rows[1:] != sorted_rows[:-1]])
        rank = np.empty(len(rows), dtype=np.int64)
        rank[order] = np.arange(len(rows)) - np.repeat(starts, np.diff(np.r_[starts, len(rows)]))
        turns = int(rank.max()) + 1
        if turns == 1:  # the usual batch: a packet per row at most
            self._put_turn(rows, ext_seq, transit, times, b1, packets)
        for turn in range(turns if turns > 1 else 0):
            batch = rank == turn
            self._put_turn(
                rows[batch], ext_seq[batch], transit[batch], times[batch], b1[batch], packets[batch]
            )
        return refused

    def _put_turn(
        self,
        rows: np.ndarray,
        ext_seq: np.ndarray,
        transit: np.ndarray,
        times: np.ndarray,
        b1: np.ndarray,
        packets: np.ndarray,
    ) -> None:
        """put() of one packet for each of ``rows`` (no row twice)."""
        stats = self._stats
        stats[rows, 0] += 1  # received
        self._seq_ref[rows] = np.maximum(self._seq_ref[rows], ext_seq)
        slot = ext_seq % SLOTS
        states = self._slot_state[rows, slot]
        duplicate = (self._slot_seq[rows, slot] == ext_seq) & (states != _EMPTY)
        if duplicate.any():  # says nothing of the network delay: not observed
            stats[rows[duplicate], 6] += 1
            fresh = ~duplicate
            rows, ext_seq, transit, times, b1, packets, slot = (
                rows[fresh],
                ext_seq[fresh],
                transit[fresh],
                times[fresh],
                b1[fresh],
                packets[fresh],
                slot[fresh],
            )
        # _observe(): the base transit, the excess, the window, the target
        leaked = self._base[rows] + BASE_LEAK * (times - self._base_time[rows])
        base = np.minimum(leaked, transit)
        self._base[rows] = base
        self._base_time[rows] = times
        excess = transit - base
        oldest = self._oldest[rows]
        self._window[rows, oldest] = excess
        self._oldest[rows] = np.where(oldest + 1 < WINDOW, oldest + 1, 0)
        self._count[rows] = np.minimum(self._count[rows] + 1, WINDOW)
        needed = np.minimum(self._previous[rows], excess)
        self._previous[rows] = excess
        rise = needed > self._target[rows]
        if rise.any():
            risen = rows[rise]
            self._target[risen] = np.minimum(needed[rise], self._max_delay[risen])
            self._hold[risen] = self._hold_frames[risen]
        late = ext_seq < self._play[rows]
        if late.any():
            stats[rows[late], 5] += 1
            kept = ~late
            rows, ext_seq, b1, packets, slot = (
                rows[kept],
                ext_seq[kept],
                b1[kept],
                packets[kept],
                slot[kept],
            )
        self._slot_seq[rows, slot] = ext_seq
        self._slot_state[rows, slot] = _HELD
        self._slot_b1[rows, slot] = b1
        self._payload[rows, slot] = packets[:, RTP_HEADER_SIZE:]
        self._held[rows] += 1

    # -- playout side -----------------------------------------------------------------------

    def get_many(self, rows: np.ndarray, now: float) -> tuple[np.ndarray, np.ndarray]:
        """One frame of each of ``rows`` (no row twice), as JitterBuffer.get() would give
        it: (what, payloads) with what[i] AUDIO (play payloads[i]), LOST (conceal) or
        STOPPED (the row stopped playing; eject it)."""
        rows = np.asarray(rows, dtype=np.int64)
        self._update_floors(rows)
        frame_seconds = self._frame_seconds[rows]
        floor = self._floor[rows]
        target = self._target[rows]
        hold = self._hold[rows]
        held_on = hold > 0
        released = np.maximum(target - self._release[rows] * frame_seconds, floor)
        target = np.where(held_on, target, np.where(target > floor, released, target))
        target = np.maximum(target, floor)
        self._target[rows] = target
        self._hold[rows] = np.where(held_on, hold - 1, hold)
        play = self._play[rows]
        delay = now - (self._offset[rows] + play * self.frame) / self.clock_rate - self._base[rows]
        self._delay_ms[rows] = delay * 1000
        stats = self._stats
        what = np.full(len(rows), LOST, dtype=np.int8)
        expand = (delay < target) & (delay + frame_seconds <= self._max_delay[rows])
        stats[rows[expand], 4] += 1
        going = ~expand
        rows, play, delay, target, frame_seconds, index = (
            rows[going],
            play[going],
            delay[going],
            target[going],
            frame_seconds[going],
            np.flatnonzero(going),
        )
        since = self._since_shrink[rows] + 1
        shrink = (
            (delay > target + 2 * frame_seconds)
            & (since >= self._shrink_interval[rows])
            & (self._held[rows] >= 2)
        )
        if shrink.any():  # skip a frame: the one due now, if it is here
            since[shrink] = 0
            skipping = rows[shrink]
            skip_play = play[shrink]
            slot = skip_play % SLOTS
            here = (self._slot_state[skipping, slot] == _HELD) & (
                self._slot_seq[skipping, slot] == skip_play
            )
            skipped = skipping[here]
            self._slot_state[skipped, slot[here]] = _PLAYED
            self._last_seq[skipped] = skip_play[here]
            self._held[skipped] -= 1
            stats[skipped, 7] += 1
            play = play + shrink
        self._since_shrink[rows] = since
        slot = play % SLOTS
        present = (self._slot_state[rows, slot] == _HELD) & (self._slot_seq[rows, slot] == play)
        payloads = np.empty((len(what), self.payload_size), dtype=np.uint8)
        audio = rows[present]
        if len(audio):
            slots = slot[present]
            payloads[index[present]] = self._payload[audio, slots]
            self._slot_state[audio, slots] = _PLAYED
            self._last_seq[audio] = play[present]
            self._held[audio] -= 1
            stats[audio, 1] += 1
            what[index[present]] = AUDIO
        held = self._held[rows]
        waiting = ~present & (held > 0)  # a packet is missing: later ones are here
        stats[rows[waiting], 2] += 1
        empty = np.where(present | waiting, 0, self._empty[rows] + 1)
        stopping = empty > IDLE_FRAMES
        underrun = ~present & ~waiting & ~stopping
        stats[rows[underrun], 3] += 1
        if stopping.any():
            what[index[stopping]] = STOPPED
            empty[stopping] = 0
            self._since_shrink[rows[stopping]] = 0
        self._empty[rows] = empty
        self._play[rows] = play + ~stopping
        return what, payloads

    def _update_floors(self, rows: np.ndarray) -> None:
        """The quantile of the excess window of the rows whose turn it is."""
        until = self._until_floor[rows] - 1
        due = until <= 0
        self._until_floor[rows] = np.where(due, self.quantile_every, until)
        if not due.any():
            return
        rows = rows[due]
        counts = self._count[rows]
        full = counts == WINDOW
        need = WINDOW - int(QUANTILE * (WINDOW - 1))
        floors = np.empty(len(rows))
        if full.any():
            window = self._window[rows[full]]
            floors[full] = np.partition(window, WINDOW - need, axis=1)[:, WINDOW - need]
        for i in np.flatnonzero(~full).tolist():
            count = int(counts[i])
            if not count:
                floors[i] = self._floor[rows[i]]
                continue
            row_need = count - int(QUANTILE * (count - 1))
            window = self._window[rows[i], :count]
            floors[i] = np.partition(window, count - row_need)[count - row_need]
        self._floor[rows] = np.clip(floors, self._min_delay[rows], self._max_delay[rows])
