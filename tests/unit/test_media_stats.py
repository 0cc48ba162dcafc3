"""Receive statistics: RFC 3550 A.1 (sequence), A.3 (loss), A.8 (jitter), RTT (6.4.1)."""

import pytest

from sipsimple.media.stats import (
    ReceiveStatistics,
    Summary,
    ntp_middle,
    ntp_timestamp,
    round_trip_time,
)


def feed(stats, seqs, *, start_ts=0, step=160, clock=8000, delays=None):
    valid = []
    for i, seq in enumerate(seqs):
        ts = (start_ts + (seq - seqs[0]) * step) & 0xFFFFFFFF
        arrival = ((seq - seqs[0]) * step) / clock + (delays[i] if delays else 0.0)
        valid.append(stats.update(seq & 0xFFFF, ts, arrival, 160))
    return valid


def test_probation_then_in_order_across_sequence_wrap():
    stats = ReceiveStatistics(1, 8000)
    seqs = list(range(65500, 65600))
    valid = feed(stats, seqs)
    assert valid[:2] == [False, True] and all(valid[2:])  # MIN_SEQUENTIAL = 2
    assert stats.base_seq == 65501
    assert stats.cycles == 65536
    assert stats.extended_max_seq == 65536 + (65599 & 0xFFFF)
    assert stats.received == 99 and stats.expected == 99 and stats.lost == 0
    assert stats.packets == 100 and stats.octets == 16000


def test_loss_duplicates_and_fraction_per_interval():
    stats = ReceiveStatistics(1, 8000)
    feed(stats, [s for s in range(1000, 1100) if s % 10 != 5])  # 10 lost
    block = stats.report_block(now=2.0)
    assert stats.expected == 99 and stats.received == 89  # base is 1001 after probation
    assert block.packets_lost == 10
    assert block.fraction_lost == (10 << 8) // 99
    assert block.highest_sequence == 1099
    # next interval: no loss but three duplicates -> fraction 0, cumulative loss goes down
    feed(stats, [*range(1100, 1150), 1120, 1121, 1122])
    block = stats.report_block(now=4.0)
    assert block.fraction_lost == 0
    assert block.packets_lost == 7


def test_reordered_packets_count_but_do_not_move_the_highest():
    stats = ReceiveStatistics(1, 8000)
    feed(stats, [10, 11, 12, 14, 13, 15])
    assert stats.max_seq == 15 and stats.received == 5 and stats.lost == 0


def test_big_jump_needs_confirmation_then_restarts():
    stats = ReceiveStatistics(1, 8000)
    feed(stats, list(range(100, 110)))
    assert stats.update(20000, 0, 1.0, 160) is False  # a stray: not counted
    assert stats.received == 9
    assert stats.update(110, 1600, 1.0, 160) is True  # the stream goes on
    assert stats.update(30000, 0, 1.1, 160) is False
    assert stats.update(30001, 160, 1.12, 160) is True  # confirmed: sender restarted
    assert stats.base_seq == 30001 and stats.received == 1 and stats.lost == 0


def test_jitter_of_alternating_delay_converges_per_a8():
    stats = ReceiveStatistics(1, 8000)
    n = 200
    delay = 0.010  # every other packet 10 ms late: |D| = 80 ticks each step
    feed(stats, list(range(n)), delays=[delay * (i % 2) for i in range(n)])
    expected = 80 * (1 - (15 / 16) ** (n - 1))
    assert stats.jitter == pytest.approx(expected, rel=1e-6)
    assert stats.jitter_ms == pytest.approx(expected / 8, rel=1e-6)
    assert stats.report_block(now=5.0).jitter == int(expected)


def test_jitter_ignores_timestamp_wrap():
    stats = ReceiveStatistics(1, 8000)
    feed(stats, list(range(50)), start_ts=0xFFFFFFFF - 160 * 20)
    assert stats.jitter == pytest.approx(0.0, abs=1.0)


def test_lsr_and_dlsr_from_the_last_sender_report():
    stats = ReceiveStatistics(1, 8000)
    ntp = (0xB7052000 << 16) | 0x1234
    stats.sender_report(ntp, arrival=10.0)
    block = stats.report_block(now=15.25)
    assert block.lsr == 0xB7052000
    assert block.dlsr == 0x00054000  # 5.25 s in 1/65536 s


def test_round_trip_time_example_of_rfc3550_figure_2():
    assert round_trip_time(0xB7108000 << 16, 0xB7052000, 0x00054000) == 6.125
    assert round_trip_time(0xB7108000 << 16, 0, 0) is None  # no SR echoed yet
    assert round_trip_time(0xB7000000 << 16, 0xB7052000, 0x00054000) is None  # negative


def test_ntp_conversion():
    assert ntp_timestamp(0.0) == 2208988800 << 32
    assert ntp_timestamp(0.5) & 0xFFFFFFFF == 1 << 31
    assert ntp_middle(0x0123456789ABCDEF) == 0x456789AB


def test_summary():
    summary = Summary()
    for value in (3.0, 1.0, 2.0):
        summary.add(value)
    assert (summary.count, summary.last, summary.minimum, summary.maximum) == (3, 2.0, 1.0, 3.0)
    assert summary.mean == pytest.approx(2.0)
