"""The JitterBuffers of many steady streams as the rows of arrays, sans-IO.

A JitterBuffer costs a few microseconds of Python per packet and per frame; with hundreds
of G.711 calls that is a third of the CPU.  A JitterBank takes over the buffers of streams
in the usual state - playing one timeline of packets of one size - and does the work of
all its rows at once: put_many() stores a batch of packets (their headers parsed, their
numbers unwrapped and the delay model updated with a few array operations), get_many()
plays one frame of every row.  It is the same model as JitterBuffer (see its docstring):
a row keeps every field a buffer has, so adopt() takes a buffer's state over and eject()
writes it back, and the buffer goes on as if it had done the work itself.  A row's
integers and floats are the columns of two arrays, so that one gather and one scatter
move the state of a batch of rows.

What a row takes, by construction: packets of its SSRC and payload types, whose
timestamp is ``offset + sequence number * frame`` (one timeline, frames of one duration),
within the delay jump a JitterBuffer accepts, and no further ahead than its capacity.
put_many() refuses the rows that got anything else - a new source, a talkspurt after
silence (a timestamp jump), a payload type of another codec - with none of their packets
applied: the caller ejects them and gives their packets to the JitterBuffer, which knows
what to do.  A row whose stream went quiet stops playing and starts again when packets of
the same timeline come back, as a JitterBuffer does.

Two differences with a JitterBuffer, both in how often, not what: the quantile of the
excess window (the floor the target falls back to) is brought up to date every
``quantile_every`` frames instead of at every packet, and a duplicate of a packet played
up to SLOTS packets ago is counted as a duplicate (a buffer remembers the last 64 played).
"""

from __future__ import annotations

from array import array
from collections import deque
from typing import NamedTuple

import numpy as np

from sipsimple.media.jitterbuffer import (
    BASE_LEAK,
    HOLD,
    IDLE_FRAMES,
    MAX_DROPOUT,
    QUANTILE,
    TOP,
    WINDOW,
    JitterBuffer,
)
from sipsimple.media.rtp import RTP_HEADER_SIZE, RTPPacket

__all__ = ["AUDIO", "HEADER", "LOST", "SILENT", "JitterBank", "headers"]

SLOTS = 128  # packets a row's ring holds, by sequence number modulo SLOTS (a power of 2)
QUANTILE_EVERY = 25  # frames between updates of the rows' quantile (0.5 s of 20 ms frames)
# get_many() says, for each row, to play its packet's payload, to conceal a lost frame, or
# to play silence (nothing under way: a JitterBuffer's None).
AUDIO, LOST, SILENT = 0, 1, 2
_EMPTY, _HELD, _PLAYED = 0, 1, 2  # a ring slot's state
_NONE = np.iinfo(np.int64).min  # no sequence number (a JitterBuffer's None)
# The fixed RTP header as a numpy record: a row of packets viewed as one gives its fields.
HEADER = np.dtype([("b0", "u1"), ("b1", "u1"), ("seq", ">u2"), ("ts", ">u4"), ("ssrc", ">u4")])
# The columns of a row's integers, then its statistics (JitterBufferStatistics' counters)...
(
    _SSRC,
    _TYPE_A,
    _TYPE_B,  # the audio payload types the row takes
    _OFFSET,  # extended timestamp - extended sequence number * frame
    _SEQ_REF,  # the highest extended sequence number received
    _HOLD,
    _COUNT,  # excesses in the window
    _OLDEST,  # the window slot the next excess takes
    _PLAY,  # the extended sequence number of the next slot
    _LAST_SEQ,
    _EMPTY_FRAMES,
    _SINCE_SHRINK,
    _HELD_PACKETS,  # packets waiting in the ring
    _PLAYING,
    _RECEIVED,
    _PLAYED_FRAMES,
    _LOST,
    _UNDERRUNS,
    _EXPANDED,
    _LATE,
    _DUPLICATES,
    _DISCARDED,
    _RESETS,
) = range(23)
_INTS = _RESETS + 1
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
# ... and of its floats.
_BASE, _BASE_TIME, _PREVIOUS, _TARGET, _FLOOR, _DELAY = range(6)
_FLOATS = _DELAY + 1
_ALL = slice(None)


class _Parameters(NamedTuple):
    """The delay parameters of a bank's buffers (all alike: the first adopted sets them)."""

    min_delay: float
    max_delay: float
    release: float
    shrink_interval: int
    jump: float
    frame_seconds: float
    capacity: int  # packets a row holds, at most SLOTS

    @property
    def hold_frames(self) -> int:
        return round(HOLD / self.frame_seconds)


def headers(packets: np.ndarray) -> np.ndarray:
    """The RTP headers of the rows of ``packets`` (uint8, a datagram a row) as HEADER
    records."""
    return np.ascontiguousarray(packets[:, :RTP_HEADER_SIZE]).view(HEADER).ravel()


def _pick(rows: slice | np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The positions ``mask`` selects among ``rows`` (all of a block, or some of them)."""
    return np.flatnonzero(mask) if isinstance(rows, slice) else rows[mask]


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
        self._gets = 0
        self._parameters: _Parameters | None = None
        self._buffers: list[JitterBuffer | None] = []
        self._free: list[int] = []
        self._i = np.zeros((0, _INTS), dtype=np.int64)
        self._f = np.zeros((0, _FLOATS), dtype=np.float64)
        self._window = np.zeros((0, WINDOW), dtype=np.float64)
        self._slot_seq = np.zeros((0, SLOTS), dtype=np.int64)
        self._slot_state = np.zeros((0, SLOTS), dtype=np.uint8)
        self._slot_b1 = np.zeros((0, SLOTS), dtype=np.uint8)  # marker bit and payload type
        self._payload = np.zeros((0, SLOTS, payload_size), dtype=np.uint8)
        self._allocate(rows)

    def _allocate(self, rows: int) -> None:
        """Room for ``rows`` rows: the arrays grow, what they hold stays."""
        old = len(self._buffers)
        for name in ("_i", "_f", "_window", "_slot_seq", "_slot_state", "_slot_b1", "_payload"):
            current = getattr(self, name)
            grown = np.zeros((rows, *current.shape[1:]), dtype=current.dtype)
            grown[:old] = current
            setattr(self, name, grown)
        self._slot_seq[old:] = _NONE
        # flat views: a ring slot is row * SLOTS + sequence number % SLOTS
        self._seqs = self._slot_seq.reshape(-1)
        self._states = self._slot_state.reshape(-1)
        self._b1s = self._slot_b1.reshape(-1)
        self._payloads = self._payload.reshape(-1, self.payload_size)
        self._excesses = self._window.reshape(-1)
        self._free.extend(range(rows - 1, old - 1, -1))
        self._buffers.extend([None] * (rows - old))

    # -- rows in and out --------------------------------------------------------------------

    def adopt(self, buffer: JitterBuffer, payload_types: tuple[int, ...]) -> int | None:
        """Takes over ``buffer``'s state as a row, whose number it returns, when the buffer
        is playing one timeline of this bank's frames; else None, the buffer untouched.
        Until eject(), the row is the buffer: use the bank, not the buffer."""
        frame = self.frame
        highest = buffer._highest
        parameters = _Parameters(
            buffer.min_delay,
            buffer.max_delay,
            buffer.release,
            buffer.shrink_interval,
            buffer._jump,
            buffer._frame_seconds,
            min(buffer._capacity, SLOTS),
        )
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
            or parameters != (self._parameters or parameters)
        ):
            return None
        offset = highest[1] - highest[0] * frame
        play, rest = divmod(buffer._playout - offset, frame)
        capacity = parameters.capacity
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
        self._parameters = parameters
        if not self._free:
            self._allocate(2 * len(self._buffers))
        row = self._free.pop()
        self._buffers[row] = buffer
        statistics = buffer.statistics
        ints = self._i[row]
        ints[:] = 0
        ints[_SSRC] = buffer._ssrc
        ints[_TYPE_A] = payload_types[0]
        ints[_TYPE_B] = payload_types[-1]
        ints[_OFFSET] = offset
        ints[_SEQ_REF] = highest[0]
        ints[_HOLD] = buffer._hold
        ints[_COUNT] = len(buffer._excesses)
        ints[_OLDEST] = buffer._oldest
        ints[_PLAY] = play
        ints[_LAST_SEQ] = _NONE if last_seq is None else last_seq
        ints[_EMPTY_FRAMES] = buffer._empty
        ints[_SINCE_SHRINK] = buffer._since_shrink
        ints[_HELD_PACKETS] = len(held)
        ints[_PLAYING] = 1
        ints[_RECEIVED:] = [getattr(statistics, name) for name in _STATISTICS]
        self._f[row] = (
            buffer._base,
            buffer._base_time,
            buffer._previous_excess,
            buffer._target,
            buffer._floor,
            statistics.delay_ms,
        )
        self._window[row, : len(buffer._excesses)] = np.frombuffer(buffer._excesses)
        slot_seq, slot_state = self._slot_seq[row], self._slot_state[row]
        slot_seq[:] = _NONE
        slot_state[:] = _EMPTY
        played = np.fromiter(buffer._played, dtype=np.int64, count=len(buffer._played))
        played = played[played > play - SLOTS]
        slot_seq[played % SLOTS] = played
        slot_state[played % SLOTS] = _PLAYED
        for seq, packet in held.values():
            slot = seq % SLOTS
            slot_seq[slot] = seq
            slot_state[slot] = _HELD
            self._slot_b1[row, slot] = packet.payload_type | (0x80 if packet.marker else 0)
            self._payload[row, slot] = np.frombuffer(packet.payload, dtype=np.uint8)
        held.clear()  # the packets live in the ring now
        return row

    def eject(self, row: int) -> JitterBuffer:
        """Writes row ``row`` back into its JitterBuffer, which it returns, and frees it."""
        buffer = self.statistics(row)
        frame = self.frame
        (
            ssrc,
            _type_a,
            _type_b,
            offset,
            seq_ref,
            hold,
            count,
            oldest,
            play,
            last_seq,
            empty,
            since_shrink,
            _held,
            playing,
        ) = self._i[row, :_RECEIVED].tolist()
        base, base_time, previous, target, _floor, _delay = self._f[row].tolist()
        buffer._ssrc = ssrc
        buffer._suspect = None
        buffer._seq_ref = seq_ref
        buffer._ts_ref = offset + seq_ref * frame
        buffer._highest = (seq_ref, buffer._ts_ref)
        buffer._frame = buffer._step = frame
        buffer._base, buffer._base_time = base, base_time
        buffer._previous_excess = previous
        buffer._target, buffer._hold = target, hold
        window = self._window[row, :count]
        buffer._excesses = array("d", window.tobytes())
        buffer._oldest = oldest
        buffer._need = count - int(QUANTILE * (count - 1)) if count else 1
        # what JitterBuffer._rebuild_top() does, a tenth of its time: the TOP largest
        top = np.argpartition(window, count - TOP)[count - TOP :] if count > TOP else range(count)
        buffer._in_top = bytearray(WINDOW)
        for slot in top:
            buffer._in_top[slot] = 1
        buffer._top = sorted(window[top].tolist())
        if count:
            floor = buffer._top[len(buffer._top) - buffer._need]
            buffer._floor = min(max(floor, buffer.min_delay), buffer.max_delay)
        buffer._playout = offset + play * frame
        buffer._last_seq = None if last_seq == _NONE else last_seq
        buffer._empty = empty
        buffer._since_shrink = since_shrink
        buffer._playing = bool(playing)
        states, seqs = self._slot_state[row], self._slot_seq[row]
        played = sorted(seqs[states == _PLAYED].tolist())[-64:]
        buffer._played = deque(played, maxlen=64)
        buffer._played_max = float(played[-1]) if played else -float("inf")
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
        self._buffers[row] = None
        self._free.append(row)
        return buffer

    def statistics(self, row: int) -> JitterBuffer:
        """The buffer of ``row`` with its statistics brought up to date (still the bank's)."""
        buffer = self._buffers[row]
        if buffer is None:
            raise ValueError(f"row {row} of the bank is not in use")
        statistics = buffer.statistics
        for name, value in zip(_STATISTICS, self._i[row, _RECEIVED:].tolist(), strict=True):
            setattr(statistics, name, value)
        statistics.delay_ms = float(self._f[row, _DELAY])
        statistics.target_delay_ms = float(self._f[row, _TARGET]) * 1000
        return buffer

    # -- arrival side -----------------------------------------------------------------------

    def put_many(
        self,
        rows: np.ndarray,
        packets: np.ndarray,
        times: np.ndarray,
        header: np.ndarray | None = None,
    ) -> np.ndarray:
        """Stores a batch of packets, in arrival order: packet i is the row ``packets[i]``
        (uint8, ``packet_size`` columns: the RTP header and the payload) for bank row
        ``rows[i]``, arrived at ``times[i]``; ``header``: headers(packets), when the
        caller has it already.  Returns the rows refused (see the module docstring):
        none of their packets were stored."""
        rows = np.asarray(rows, dtype=np.int64)
        frame = self.frame
        parameters = self._parameters
        if parameters is None:  # no row adopted yet: no row to put packets for
            raise ValueError("put_many() of a bank that has adopted no buffer")
        if header is None:
            header = headers(packets)
        ints, floats = self._i[rows], self._f[rows]
        seq_ref, offset = ints[:, _SEQ_REF], ints[:, _OFFSET]
        seq = header["seq"].astype(np.int64)
        ext_seq = seq_ref + ((seq - seq_ref + 0x8000) & 0xFFFF) - 0x8000
        ts_ref = offset + seq_ref * frame
        ts = header["ts"].astype(np.int64)
        ext_ts = ts_ref + ((ts - ts_ref + 0x80000000) & 0xFFFFFFFF) - 0x80000000
        transit = times - ext_ts / self.clock_rate
        b1 = header["b1"]
        payload_type = b1 & 0x7F
        fits = (
            (header["b0"] == 0x80)
            & (header["ssrc"] == ints[:, _SSRC])
            & ((payload_type == ints[:, _TYPE_A]) | (payload_type == ints[:, _TYPE_B]))
            & (ext_ts - ext_seq * frame == offset)
            & (np.abs(ext_seq - seq_ref) <= MAX_DROPOUT)
            & (np.abs(transit - floats[:, _BASE]) <= parameters.jump)
            & (ext_seq < ints[:, _PLAY] + parameters.capacity)
        )
        if fits.all():
            refused = rows[:0]
        else:
            refused = np.unique(rows[~fits])
            keep = ~np.isin(rows, refused)
            rows, ints, floats, ext_seq = rows[keep], ints[keep], floats[keep], ext_seq[keep]
            transit, times, b1, packets = transit[keep], times[keep], b1[keep], packets[keep]
        if len(np.unique(rows)) == len(rows):  # the usual batch: a packet per row at most
            self._put_turn(rows, ints, floats, ext_seq, transit, times, b1, packets)
            return refused
        # A row's packets in turn: the first of each row, then the second, ...
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        starts = np.flatnonzero(np.r_[True, sorted_rows[1:] != sorted_rows[:-1]])
        rank = np.empty(len(rows), dtype=np.int64)
        rank[order] = np.arange(len(rows)) - np.repeat(starts, np.diff(np.r_[starts, len(rows)]))
        for turn in range(int(rank.max()) + 1):
            batch = rank == turn
            some = rows[batch]
            self._put_turn(
                some,
                self._i[some],
                self._f[some],
                ext_seq[batch],
                transit[batch],
                times[batch],
                b1[batch],
                packets[batch],
            )
        return refused

    def _put_turn(
        self,
        rows: np.ndarray,
        ints: np.ndarray,
        floats: np.ndarray,
        ext_seq: np.ndarray,
        transit: np.ndarray,
        times: np.ndarray,
        b1: np.ndarray,
        packets: np.ndarray,
    ) -> None:
        """put() of one packet for each of ``rows`` (no row twice), whose integers and
        floats are ``ints`` and ``floats`` (copies, written back at the end)."""
        ints[:, _RECEIVED] += 1
        ints[:, _SEQ_REF] = np.maximum(ints[:, _SEQ_REF], ext_seq)
        flat = rows * SLOTS + (ext_seq & (SLOTS - 1))
        duplicate = (self._seqs.take(flat) == ext_seq) & (self._states.take(flat) != _EMPTY)
        # the others are observed: the base transit, the excess, the window, the target
        some: slice | np.ndarray = _ALL
        if duplicate.any():  # says nothing of the network delay
            ints[duplicate, _DUPLICATES] += 1
            some = np.flatnonzero(~duplicate)
        transit, times = transit[some], times[some]
        leaked = floats[some, _BASE] + BASE_LEAK * (times - floats[some, _BASE_TIME])
        base = np.minimum(leaked, transit)
        floats[some, _BASE] = base
        floats[some, _BASE_TIME] = times
        excess = transit - base
        oldest = ints[some, _OLDEST]
        self._excesses.put(rows[some] * WINDOW + oldest, excess)
        ints[some, _OLDEST] = np.where(oldest + 1 < WINDOW, oldest + 1, 0)
        ints[some, _COUNT] = np.minimum(ints[some, _COUNT] + 1, WINDOW)
        needed = np.minimum(floats[some, _PREVIOUS], excess)
        floats[some, _PREVIOUS] = excess
        target = floats[some, _TARGET]
        rise = needed > target
        if rise.any():
            parameters = self._parameters
            assert parameters is not None  # (set with the first row)
            ceiling = np.minimum(needed, parameters.max_delay)
            floats[some, _TARGET] = np.where(rise, ceiling, target)
            ints[some, _HOLD] = np.where(rise, parameters.hold_frames, ints[some, _HOLD])
        # then stored, unless late (or a duplicate)
        late = ~duplicate & np.where(
            ints[:, _PLAYING] != 0, ext_seq < ints[:, _PLAY], ext_seq <= ints[:, _LAST_SEQ]
        )
        store = ~duplicate & ~late
        if late.any():
            ints[late, _LATE] += 1
        stored: slice | np.ndarray = _ALL
        if not store.all():
            stored = np.flatnonzero(store)
            flat, ext_seq, b1, packets = flat[stored], ext_seq[stored], b1[stored], packets[stored]
        self._seqs.put(flat, ext_seq)
        self._states.put(flat, _HELD)
        self._b1s.put(flat, b1)
        self._payloads[flat] = packets[:, RTP_HEADER_SIZE:]
        ints[stored, _HELD_PACKETS] += 1
        self._i[rows] = ints
        self._f[rows] = floats

    # -- playout side -----------------------------------------------------------------------

    def get_many(self, rows: np.ndarray, now: float) -> tuple[np.ndarray, np.ndarray]:
        """One frame of each of ``rows`` (no row twice), as JitterBuffer.get() would give
        it: (what, payloads) with what[i] AUDIO (play payloads[i]), LOST (conceal) or
        SILENT (nothing under way)."""
        rows = np.asarray(rows, dtype=np.int64)
        self._gets += 1
        if self._gets % self.quantile_every == 0:
            self._update_floors(rows)
        ints, floats = self._i[rows], self._f[rows]
        what = np.full(len(rows), SILENT, dtype=np.int8)
        payloads = np.empty((len(rows), self.payload_size), dtype=np.uint8)
        playing = ints[:, _PLAYING] != 0
        if not playing.all():
            self._start(rows, ints, floats, now)
            playing = ints[:, _PLAYING] != 0
        some: slice | np.ndarray = _ALL if playing.all() else np.flatnonzero(playing)
        parameters = self._parameters
        assert parameters is not None  # (set with the first row)
        max_delay, frame_seconds = parameters.max_delay, parameters.frame_seconds
        # The target falls back towards the quantile of the excesses once HOLD is over.
        hold = ints[some, _HOLD]
        target = floats[some, _TARGET]
        target = np.maximum(
            np.where(hold > 0, target, target - parameters.release * frame_seconds),
            floats[some, _FLOOR],
        )
        floats[some, _TARGET] = target
        ints[some, _HOLD] = np.maximum(hold - 1, 0)
        play = ints[some, _PLAY]
        delay = now - (ints[some, _OFFSET] + play * self.frame) / self.clock_rate
        delay -= floats[some, _BASE]
        floats[some, _DELAY] = delay * 1000
        expand = (delay < target) & (delay + frame_seconds <= max_delay)
        if expand.any():  # a concealed frame grows the delay
            grown = _pick(some, expand)
            ints[grown, _EXPANDED] += 1
            what[grown] = LOST
            going = ~expand
            some, play, delay, target = _pick(some, going), play[going], delay[going], target[going]
        since = ints[some, _SINCE_SHRINK] + 1
        held = ints[some, _HELD_PACKETS]
        shrink = (
            (delay > target + 2 * frame_seconds)
            & (since >= parameters.shrink_interval)
            & (held >= 2)
        )
        if shrink.any():  # skip a frame to shrink the delay: the one due now, if it is here
            since[shrink] = 0
            skip = play[shrink]
            at = _pick(some, shrink)
            flat = rows[at] * SLOTS + (skip & (SLOTS - 1))
            here = (self._states.take(flat) == _HELD) & (self._seqs.take(flat) == skip)
            self._states.put(flat[here], _PLAYED)
            at = at[here]
            ints[at, _LAST_SEQ] = skip[here]
            ints[at, _HELD_PACKETS] -= 1
            ints[at, _DISCARDED] += 1
            play = play + shrink
            held = ints[some, _HELD_PACKETS]
        ints[some, _SINCE_SHRINK] = since
        flat = rows[some] * SLOTS + (play & (SLOTS - 1))
        present = (self._states.take(flat) == _HELD) & (self._seqs.take(flat) == play)
        if present.all():  # the usual frame: every packet is here
            payloads[some] = self._payloads[flat]
            self._states.put(flat, _PLAYED)
            ints[some, _LAST_SEQ] = play
            ints[some, _HELD_PACKETS] = held - 1
            ints[some, _PLAYED_FRAMES] += 1
            ints[some, _EMPTY_FRAMES] = 0
            ints[some, _PLAY] = play + 1
            what[some] = AUDIO
        else:
            self._play_some(rows, ints, some, play, held, flat, present, what, payloads)
        self._i[rows] = ints
        self._f[rows] = floats
        return what, payloads

    def _play_some(
        self,
        rows: np.ndarray,
        ints: np.ndarray,
        some: slice | np.ndarray,
        play: np.ndarray,
        held: np.ndarray,
        flat: np.ndarray,
        present: np.ndarray,
        what: np.ndarray,
        payloads: np.ndarray,
    ) -> None:
        """The end of get_many() when some packets due are not here: lost (later ones are
        here), an underrun, or the end of playout once IDLE_FRAMES frames found none."""
        audio = _pick(some, present)
        here = flat[present]
        payloads[audio] = self._payloads[here]
        self._states.put(here, _PLAYED)
        ints[audio, _LAST_SEQ] = play[present]
        ints[audio, _HELD_PACKETS] -= 1
        ints[audio, _PLAYED_FRAMES] += 1
        what[audio] = AUDIO
        waiting = ~present & (held > 0)  # a packet is missing: later ones are here
        ints[_pick(some, waiting), _LOST] += 1
        empty = np.where(present | waiting, 0, ints[some, _EMPTY_FRAMES] + 1)
        stopping = empty > IDLE_FRAMES
        underrun = ~present & ~waiting & ~stopping
        ints[_pick(some, underrun), _UNDERRUNS] += 1
        what[_pick(some, waiting | underrun)] = LOST
        if stopping.any():  # it stops until the buffer refills (what a row holds stays)
            stopped = _pick(some, stopping)
            ints[stopped, _PLAYING] = 0
            ints[stopped, _SINCE_SHRINK] = 0
            empty[stopping] = 0
        ints[some, _EMPTY_FRAMES] = empty
        ints[some, _PLAY] = play + ~stopping

    def _start(self, rows: np.ndarray, ints: np.ndarray, floats: np.ndarray, now: float) -> None:
        """Rows not playing start once their earliest packet has waited the target delay."""
        waiting = np.flatnonzero((ints[:, _PLAYING] == 0) & (ints[:, _HELD_PACKETS] > 0))
        if not len(waiting):
            return
        some = rows[waiting]
        seqs = np.where(
            self._slot_state[some] == _HELD, self._slot_seq[some], np.iinfo(np.int64).max
        )
        earliest = seqs.min(axis=1)
        when = (ints[waiting, _OFFSET] + earliest * self.frame) / self.clock_rate
        go = now - when - floats[waiting, _BASE] >= floats[waiting, _TARGET]
        started = waiting[go]
        ints[started, _PLAYING] = 1
        ints[started, _PLAY] = earliest[go]

    def _update_floors(self, rows: np.ndarray) -> None:
        """The quantile of the excess window of ``rows``."""
        counts = self._i[rows, _COUNT]
        full = counts == WINDOW
        need = WINDOW - int(QUANTILE * (WINDOW - 1))
        floors = self._f[rows, _FLOOR]
        if full.any():
            window = self._window[rows[full]]
            floors[full] = np.partition(window, WINDOW - need, axis=1)[:, WINDOW - need]
        for i in np.flatnonzero(~full & (counts > 0)).tolist():
            count = int(counts[i])
            row_need = count - int(QUANTILE * (count - 1))
            window = self._window[rows[i], :count]
            floors[i] = np.partition(window, count - row_need)[count - row_need]
        parameters = self._parameters
        assert parameters is not None  # (set with the first row)
        self._f[rows, _FLOOR] = np.clip(floors, parameters.min_delay, parameters.max_delay)
