"""The sans-IO RTCP session: report timing, SR/RR choice, statistics, RTT, BYE."""

import heapq
import itertools
import random

import pytest

from sipsimple.media.errors import RTCPParseError
from sipsimple.media.rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    SDESItemType,
    SenderReport,
    SourceDescription,
    parse_rtcp,
)
from sipsimple.media.rtcpsession import RTCPSession
from sipsimple.media.rtp import RTPPacketizer


class Endpoint:
    def __init__(self, ssrc, seed, start=100.0, wallclock_offset=0.0):
        self.rtp = RTPPacketizer(0, ssrc, sequence_number=65000, timestamp=1000)
        self.rtcp = RTCPSession(
            ssrc,
            f"user{ssrc}@example.com",
            8000,
            start,
            wallclock_offset=wallclock_offset,
            rng=random.Random(seed),
        )
        self.sent_reports = []


def simulate(a, b, seconds, *, delay_ab, delay_ba, drop_ab=lambda seq: False, start=100.0):
    """Both ends send 20 ms PCMU packets; RTCP goes both ways with the given delays."""
    events = []  # (time, order, receiver, kind, data)
    order = 0
    for tick in range(round(seconds / 0.02)):
        t = start + tick * 0.02
        for src, dst, delay, drop in ((a, b, delay_ab, drop_ab), (b, a, delay_ba, None)):
            packet = src.rtp.next_packet(bytes(160))
            src.rtp.advance(160)
            src.rtcp.rtp_sent(packet, t)
            if drop is None or not drop(packet.sequence_number):
                heapq.heappush(events, (t + delay, order, dst, "rtp", packet))
                order += 1
            report = src.rtcp.handle_timer(t)
            if report is not None:
                src.sent_reports.append((t, report))
                heapq.heappush(events, (t + delay, order, dst, "rtcp", report))
                order += 1
        while events and events[0][0] <= t + 0.02:
            when, _, dst, kind, data = heapq.heappop(events)
            if kind == "rtp":
                dst.rtcp.rtp_received(data, when)
            else:
                dst.rtcp.receive(data, when)


def test_round_trip_time_and_counters_between_two_sessions():
    a, b = Endpoint(0xA, 1, wallclock_offset=1.7e9), Endpoint(0xB, 2, wallclock_offset=-3.0)
    simulate(a, b, 30, delay_ab=0.030, delay_ba=0.050)
    for side in (a, b):
        stats = side.rtcp.statistics
        assert stats.rtt_ms.count >= 3
        # RTT = 30 + 50 ms, up to the 1/65536 s resolution of LSR/DLSR
        assert stats.rtt_ms.last == pytest.approx(80.0, abs=0.1)
        assert stats.rx.packets_lost == 0 and stats.tx.packets_lost == 0
        assert stats.rx.jitter_ms == pytest.approx(0.0, abs=0.2)
        assert stats.tx.packets == 1500 and stats.tx.octets == 1500 * 160
        assert stats.rx.packets >= 1490
    assert a.rtcp.remote_cname == "user11@example.com"
    assert b.rtcp.remote_cname == "user10@example.com"


def test_loss_is_measured_and_reported_back():
    a, b = Endpoint(0xA, 1), Endpoint(0xB, 2)
    simulate(a, b, 20, delay_ab=0.01, delay_ba=0.01, drop_ab=lambda seq: seq % 10 == 3)
    rx = b.rtcp.statistics.rx
    assert rx.packets_lost == pytest.approx(100, abs=2)
    assert rx.fraction_lost == pytest.approx(0.1, abs=0.02)
    tx = a.rtcp.statistics.tx  # what b told a in its last report
    assert tx.fraction_lost == pytest.approx(0.1, abs=0.02)
    assert 80 <= tx.packets_lost <= 100


def test_report_interval_is_randomized_around_five_seconds():
    a, b = Endpoint(0xA, 3), Endpoint(0xB, 4)
    simulate(a, b, 300, delay_ab=0.01, delay_ba=0.01)
    times = [t for t, _ in a.sent_reports]
    assert 100 + 1.25 <= times[0] <= 100 + 3.75 + 0.02  # initial: half the minimum
    gaps = [y - x for x, y in itertools.pairwise(times)]
    assert all(2.5 - 1e-9 <= gap <= 7.5 + 0.02 for gap in gaps)
    assert sum(gaps) / len(gaps) == pytest.approx(5.0, abs=0.6)


def test_sender_report_while_sending_receiver_report_when_silent():
    session = RTCPSession(1, "me@host", 8000, 0.0, rng=random.Random(5))
    packet = RTPPacketizer(0, 1, timestamp=5000).next_packet(bytes(160))
    session.rtp_sent(packet, now=1.0)
    due = session.get_timer()
    assert session.handle_timer(due - 0.001) is None
    sr, sdes = parse_rtcp(session.handle_timer(due))
    assert isinstance(sr, SenderReport) and sr.packet_count == 1 and sr.octet_count == 160
    assert isinstance(sdes, SourceDescription)
    assert sdes.chunks[0].get(SDESItemType.CNAME) == "me@host"
    later = session.get_timer() + 20.0  # more than two intervals without sending
    first, _ = parse_rtcp(session.handle_timer(later))
    assert isinstance(first, ReceiverReport)


def test_sender_report_rtp_timestamp_follows_the_media_clock():
    session = RTCPSession(1, "me@host", 8000, 0.0, rng=random.Random(6))
    packet = RTPPacketizer(0, 1, timestamp=0xFFFFF000).next_packet(b"x")
    session.rtp_sent(packet, now=0.5)
    due = session.get_timer()
    sr = parse_rtcp(session.handle_timer(due))[0]
    assert sr.rtp_timestamp == (0xFFFFF000 + round((due - 0.5) * 8000)) & 0xFFFFFFFF


def test_bye_closes_the_session():
    session = RTCPSession(7, "me@host", 8000, 0.0)
    packets = parse_rtcp(session.bye(1.0, "hangup"))
    assert isinstance(packets[0], ReceiverReport)
    assert packets[-1] == Bye((7,), "hangup")
    assert session.get_timer() is None and session.handle_timer(100.0) is None


def test_incoming_bye_ends_reports_on_the_source_and_garbage_raises_parse_error():
    session = RTCPSession(7, "me@host", 8000, 0.0)
    packetizer = RTPPacketizer(0, 9)
    for i in range(3):
        session.rtp_received(packetizer.next_packet(b"x"), 0.1 + i * 0.02)
    session.receive(Bye((9,)).serialize(), 0.2)
    report = parse_rtcp(session.handle_timer(session.get_timer()))[0]
    assert report.reports == ()
    assert session.statistics.rx.packets == 3  # still there to read
    with pytest.raises(RTCPParseError):
        session.receive(b"\x80\xc9\x00\x09", 0.3)


def test_reports_about_other_sources_do_not_count_as_ours():
    session = RTCPSession(7, "me@host", 8000, 0.0)
    foreign = ReceiverReport(9, (ReportBlock(8, 128, 50, 0, 0, 1, 1),))
    session.receive(foreign.serialize(), 1.0)
    stats = session.statistics
    assert stats.tx.packets_lost == 0 and stats.rtt_ms.count == 0


def test_made_up_ssrcs_cannot_grow_the_source_table():
    session = RTCPSession(7, "me@host", 8000, 0.0)
    real = RTPPacketizer(0, 1)
    for ssrc in range(100, 400):
        session.rtp_received(real.next_packet(b"x"), ssrc / 1000)
        session.rtp_received(RTPPacketizer(0, ssrc).next_packet(b"junk"), ssrc / 1000)
    assert len(session.sources) <= 16 and 1 in session.sources
