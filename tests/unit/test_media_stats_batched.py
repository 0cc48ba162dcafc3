"""Receive statistics noted per packet and brought up to date in batches (RTCPSession
with ReceiveStatistics.extend) read exactly as the per-packet A.1/A.8 code of RFC 3550
as it was before batching (EagerStatistics below), whenever they are read."""

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from sipsimple.media.rtcpsession import RTCPSession
from sipsimple.media.rtp import RTPPacket
from sipsimple.media.stats import MAX_DROPOUT, MAX_MISORDER, RTP_SEQ_MOD, ReceiveStatistics


class EagerStatistics(ReceiveStatistics):
    """update() as it was: every packet accounted as it arrives."""

    def update(self, sequence_number, timestamp, arrival, octets):
        if self.packets == 0:
            self._init_seq(sequence_number)
            self.max_seq = (sequence_number - 1) & 0xFFFF
        self.packets += 1
        self.octets += octets
        valid = self._old_update_seq(sequence_number)
        transit = arrival * self.clock_rate - timestamp
        if self._transit is not None:
            d = (transit - self._transit + 2.0**31) % 2.0**32 - 2.0**31
            self._jitter += (abs(d) - self._jitter) / 16.0
        self._transit = transit
        return valid

    def _old_update_seq(self, seq):
        udelta = (seq - self.max_seq) & 0xFFFF
        if self.probation:
            if seq == (self.max_seq + 1) & 0xFFFF:
                self.probation -= 1
                self.max_seq = seq
                if self.probation == 0:
                    self._init_seq(seq)
                    self.received += 1
                    return True
            else:
                self.probation = 1
                self.max_seq = seq
            return False
        if udelta < MAX_DROPOUT:
            if seq < self.max_seq:
                self.cycles += RTP_SEQ_MOD
            self.max_seq = seq
        elif udelta <= RTP_SEQ_MOD - MAX_MISORDER:
            if seq != self.bad_seq:
                self.bad_seq = (seq + 1) & 0xFFFF
                return False
            self._init_seq(seq)
        self.received += 1
        return True


def state(stats):
    fields = vars(stats).copy()
    fields.pop("_valid", None)
    return fields


@st.composite
def streams(draw):
    """Packets of one to three sources - in order, lost, duplicated, reordered, jumping,
    wrapping - with arrival times, and the steps after which the statistics are read."""
    rng = random.Random(draw(st.integers(0, 2**16)))
    sources = {
        ssrc: [rng.choice([0, 65530, rng.randrange(65536)]), rng.randrange(2**32)]
        for ssrc in draw(st.lists(st.sampled_from([1, 2, 3]), min_size=1, max_size=3))
    }
    n = draw(st.integers(1, 300))
    packets, now = [], 0.0
    for _ in range(n):
        ssrc = rng.choice(list(sources)) if rng.random() < 0.2 else next(iter(sources))
        seq, ts = sources[ssrc]
        event = rng.choice(["next"] * 8 + ["lose", "duplicate", "back", "jump", "wrap-ts"])
        if event == "lose":
            seq, ts = seq + 2, ts + 320
        elif event == "back":
            seq -= rng.randrange(1, 5)
        elif event == "jump":
            seq += rng.randrange(MAX_DROPOUT, 40000)
        elif event == "wrap-ts":
            ts += 2**32 - 50
        elif event == "next":
            seq, ts = seq + 1, ts + 160
        sources[ssrc] = [seq & 0xFFFF, ts & 0xFFFFFFFF]
        now += rng.choice([0.0, 0.001, 0.02, 0.02, 0.02, 0.05])
        size = rng.choice([0, 160, 161])
        packets.append((now, RTPPacket(0, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc, bytes(size))))
    reads = draw(st.sets(st.integers(0, n - 1), max_size=12))
    return packets, reads


@settings(max_examples=150, deadline=None)
@given(streams())
def test_batched_statistics_read_as_per_packet_ones(stream):
    packets, reads = stream
    session = RTCPSession(0xABC, "me@example", 8000, 0.0, rng=random.Random(1))
    eager: dict[int, EagerStatistics] = {}
    for step, (now, packet) in enumerate(packets):
        session.rtp_received(packet, now)
        source = eager.setdefault(packet.ssrc, EagerStatistics(packet.ssrc, 8000))
        source.update(packet.sequence_number, packet.timestamp, now, len(packet.payload))
        if step in reads:
            batched = session.sources
            assert {s: state(b) for s, b in batched.items()} == {
                s: state(e) for s, e in eager.items()
            }
            for ssrc in eager:
                assert batched[ssrc].report_block(now) == eager[ssrc].report_block(now)
    stats = session.statistics.rx
    current = eager[packets[-1][1].ssrc]
    assert (stats.packets, stats.octets, stats.packets_lost, stats.jitter_ms) == (
        current.packets,
        current.octets,
        current.lost,
        current.jitter_ms,
    )


def test_update_is_one_packet_of_extend():
    stats = ReceiveStatistics(7, 8000)
    assert [stats.update(seq, seq * 160, seq * 0.02, 160) for seq in (5, 6, 7)] == [
        False,
        True,
        True,
    ]
    assert stats.extend([(7, 8, 1280, 0.16, 160), (9, 9, 1440, 0.18, 160)]) == 1
    assert stats.packets == 4 and stats.received == 3
