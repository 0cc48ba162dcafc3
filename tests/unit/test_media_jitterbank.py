"""JitterBank against JitterBuffer: the same packets give the same frames and statistics."""

from __future__ import annotations

import random
from dataclasses import astuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipsimple.media import jitterbank
from sipsimple.media.jitterbank import AUDIO, LOST, SILENT, JitterBank
from sipsimple.media.jitterbuffer import FrameKind, JitterBuffer, JitterFrame
from sipsimple.media.rtp import RTPPacket

RATE, FRAME, SIZE = 8000, 160, 160
PTIME = 0.02


class Stream:
    """One sender: packets of one timeline (or not, when told), their arrival times."""

    def __init__(self, rng: random.Random, index: int) -> None:
        self.rng = rng
        self.ssrc = rng.getrandbits(32)
        self.seq = rng.getrandbits(16)
        self.ts = rng.getrandbits(32)
        self.index = index

    def packet(self, payload_type: int = 0, size: int = SIZE) -> RTPPacket:
        payload = bytes([(self.seq + self.index) & 0xFF]) * size
        packet = RTPPacket(payload_type, self.seq, self.ts, self.ssrc, payload, False)
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + FRAME) & 0xFFFFFFFF
        return packet


def traffic(rng: random.Random, streams: int, frames: int, *, events: bool) -> list[list]:
    """Per frame: the (stream, packet, arrival offset) that arrive during it, in order."""
    senders = [Stream(rng, i) for i in range(streams)]
    arrivals: list[tuple[float, int, RTPPacket]] = []
    outage = [0] * streams  # frames a stream's packets are still lost for
    for n in range(frames):
        for s, sender in enumerate(senders):
            sent = n * PTIME + 0.001 * s / streams
            roll = rng.random()
            jitter = rng.choice([0.0, 0.0, 0.0, 0.002, 0.01, 0.03]) if s % 3 else 0.0
            packet = sender.packet()
            if events and n > 100 and roll < 0.003:  # an outage: playout stops, restarts
                outage[s] = rng.randint(12, 40)
            if outage[s] or (events and n > 100 and roll < 0.01):
                outage[s] = max(0, outage[s] - 1)
                continue  # lost
            if events and n > 100 and roll < 0.015:  # a silence: the timeline jumps
                sender.ts = (sender.ts + FRAME * rng.randint(5, 30)) & 0xFFFFFFFF
            if events and n > 100 and roll > 0.995:  # a new source
                sender.ssrc = rng.getrandbits(32)
            arrivals.append((sent + jitter, s, packet))
            if events and 0.02 < roll < 0.03:  # a duplicate, a little later
                arrivals.append((sent + jitter + 0.005, s, packet))
            if events and 0.03 < roll < 0.032:  # a packet of telephone-event size
                arrivals.append((sent + jitter, s, RTPPacket(101, 0, 0, sender.ssrc, b"1234")))
    arrivals.sort(key=lambda a: a[0])
    per_frame: list[list] = [[] for _ in range(frames + 10)]
    for when, s, packet in arrivals:
        per_frame[min(int(when / PTIME), frames + 9)].append((s, packet, when))
    return per_frame


def frame_of(what: int, payload: np.ndarray) -> tuple | None:
    """What the bank said, as buffer_frame() says what a buffer said."""
    return ("audio", payload.tobytes()) if what == AUDIO else ("lost",) if what == LOST else None


def buffer_frame(frame: JitterFrame | None) -> tuple | None:
    if frame is None:
        return None
    return ("audio", frame.packet.payload) if frame.kind is FrameKind.AUDIO else ("lost",)


def run(seed: int, streams: int, frames: int, *, events: bool, quantile_every: int = 1):
    rng = random.Random(seed)
    per_frame = traffic(rng, streams, frames, events=events)
    reference = [JitterBuffer(RATE) for _ in range(streams)]
    ours = [JitterBuffer(RATE) for _ in range(streams)]
    bank = JitterBank(RATE, FRAME, SIZE, rows=2, quantile_every=quantile_every)
    row_of: dict[int, int] = {}
    adopted = ejected = 0
    mismatches = []
    for n, arrivals in enumerate(per_frame):
        now = n * PTIME + 0.0199
        # arrivals: the reference one by one; ours in a batch for the banked, one by one else
        rows, datas, times, slow = [], [], [], []
        for s, packet, when in arrivals:
            reference[s].put(packet, when)
            data = packet_bytes(packet)
            if s in row_of and len(data) == bank.packet_size:
                rows.append(row_of[s]), datas.append(data), times.append(when)
            else:
                slow.append((s, packet, when))
        if rows:
            matrix = np.frombuffer(b"".join(datas), np.uint8).reshape(len(rows), -1)
            refused = set(bank.put_many(np.array(rows), matrix, np.array(times)).tolist())
            for s, row in list(row_of.items()):
                if row in refused:
                    bank.eject(row)
                    del row_of[s]
                    ejected += 1
            for s, packet, when in arrivals:  # the refused rows' packets, to their buffers
                if s not in row_of and (s, packet, when) not in slow:
                    ours[s].put(packet, when)
        for s, packet, when in slow:
            if s in row_of:  # a packet of another size: the row goes back first
                bank.eject(row_of.pop(s))
                ejected += 1
            ours[s].put(packet, when)
        # playout
        banked = sorted(row_of.items())
        got = {}
        if banked:
            what, payloads = bank.get_many(np.array([r for _s, r in banked]), now)
            for i, (s, _row) in enumerate(banked):
                got[s] = frame_of(int(what[i]), payloads[i])
        for s in range(streams):
            expected = buffer_frame(reference[s].get(now))
            if s not in got:
                got[s] = buffer_frame(ours[s].get(now))
            if got[s] != expected:
                mismatches.append((n, s, expected, got[s]))
        if n % 7 == 3:
            for s in range(streams):
                if s not in row_of:
                    row = bank.adopt(ours[s], (0,))
                    if row is not None:
                        row_of[s] = row
                        adopted += 1
    for row in row_of.values():
        bank.eject(row)
    return reference, ours, mismatches, adopted, ejected


def packet_bytes(packet: RTPPacket) -> bytes:
    header = bytes([0x80, packet.payload_type | (0x80 if packet.marker else 0)])
    header += packet.sequence_number.to_bytes(2, "big") + packet.timestamp.to_bytes(4, "big")
    return header + packet.ssrc.to_bytes(4, "big") + packet.payload


@pytest.mark.parametrize("seed", range(6))
def test_a_bank_plays_what_its_buffers_would(seed: int) -> None:
    reference, ours, mismatches, adopted, ejected = run(seed, 12, 600, events=True)
    assert adopted > 12 and ejected > 5
    assert mismatches == []
    for ref, our in zip(reference, ours, strict=True):
        assert astuple(our.statistics) == pytest.approx(astuple(ref.statistics))


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_garbage_never_breaks_a_bank(data: st.DataObject) -> None:
    """Datagrams of the bank's size with random headers and payloads, among the usual
    ones: the bank refuses what does not fit, raises nothing, and its rows stay whole
    (the packets held are the ring's held slots; playout only moves forward)."""
    rng = random.Random(data.draw(st.integers(0, 2**32 - 1)))
    senders = [Stream(rng, i) for i in range(4)]
    buffers = [JitterBuffer(RATE) for _ in senders]
    for n in range(20):  # steady, then adopted
        for sender, buffer in zip(senders, buffers, strict=True):
            buffer.put(sender.packet(), n * PTIME)
            buffer.get(n * PTIME + 0.0199)
    bank = JitterBank(RATE, FRAME, SIZE, rows=2)
    rows = [bank.adopt(buffer, (0,)) for buffer in buffers]
    assert None not in rows
    for n in range(20, 40):
        batch_rows, datas = [], []
        for row, sender in zip(rows, senders, strict=True):
            data = packet_bytes(sender.packet())
            batch_rows.append(row)
            datas.append(garbled(data, rng) or data)
        matrix = np.frombuffer(b"".join(datas), np.uint8).reshape(len(datas), -1)
        refused = bank.put_many(np.array(batch_rows), matrix, np.full(len(datas), n * PTIME))
        assert set(refused.tolist()) <= set(rows)
        before = bank._i[rows, jitterbank._PLAY].copy()
        what, _payloads = bank.get_many(np.array(rows), n * PTIME + 0.0199)
        assert set(what.tolist()) <= {AUDIO, LOST, SILENT}
        assert (bank._i[rows, jitterbank._PLAY] >= before).all()
        held = (bank._slot_state[rows] == jitterbank._HELD).sum(axis=1)
        assert (held == bank._i[rows, jitterbank._HELD_PACKETS]).all()
    for row, buffer in zip(rows, buffers, strict=True):
        assert bank.eject(row) is buffer
        buffer.get(40 * PTIME)  # the buffer goes on


def garbled(data: bytes, rng: random.Random) -> bytes | None:
    """Now and then, a garbled version of ``data`` (its size kept), else None."""
    roll = rng.random()
    if roll < 0.2:
        return bytes(rng.getrandbits(8) for _ in data)  # anything at all
    if roll < 0.4:  # a plausible header, random numbers
        return data[:2] + rng.randbytes(6) + data[8:]
    if roll < 0.5:  # another SSRC or payload type
        return data[:1] + bytes([rng.getrandbits(8)]) + data[2:8] + rng.randbytes(4) + data[12:]
    return None
