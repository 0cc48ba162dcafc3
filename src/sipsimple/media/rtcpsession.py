"""The RTCP side of one RTP stream, sans-IO: when to report, what to report, what we learn.

The transport tells the session about every RTP packet it sends and receives, hands it
every RTCP datagram that arrives, and asks handle_timer(now) for a report when the time
returned by get_timer() has come.  Statistics are read from ``statistics``.

The report interval follows RFC 3550 6.2/6.3 simplified for two parties: the bandwidth
rule with two members, a 5 s minimum (half of it before the first report), randomized
over [0.5, 1.5] times.  Without timer reconsideration the e-3/2 compensation is not
applied, so the mean interval stays at the nominal value.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from sipsimple.media.rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RTCPPacket,
    SDESChunk,
    SDESItemType,
    SenderReport,
    SourceDescription,
    parse_rtcp,
    serialize_rtcp,
)
from sipsimple.media.rtp import RTPPacket
from sipsimple.media.stats import (
    Arrival,
    ReceiveStatistics,
    Summary,
    ntp_timestamp,
    round_trip_time,
)

__all__ = ["DirectionStatistics", "RTCPSession", "StreamStatistics"]

_UDP_IP_OVERHEAD = 28
MAX_SOURCES = 16
# Received packets noted before their statistics are brought up to date (they are also
# whenever anything reads them): few enough that the notes stay in the cache.
MAX_ARRIVALS = 32
_RTCP_BANDWIDTH_FRACTION = 0.05


@dataclass(slots=True, frozen=True)
class DirectionStatistics:
    """One direction of a stream; fraction_lost is 0.0-1.0 over the last report interval."""

    packets: int = 0
    octets: int = 0
    packets_lost: int = 0
    fraction_lost: float = 0.0
    jitter_ms: float = 0.0


@dataclass(slots=True, frozen=True)
class StreamStatistics:
    """rx: what we receive, as we measure it.  tx: what we send, with loss and jitter as
    the peer last reported them.  rtt_ms: round-trip times from the peer's reports."""

    rx: DirectionStatistics
    tx: DirectionStatistics
    rtt_ms: Summary


class RTCPSession:
    """RTCP for one stream (our single SSRC, any number of remote sources)."""

    def __init__(
        self,
        ssrc: int,
        cname: str,
        clock_rate: int,
        now: float,
        *,
        wallclock_offset: float = 0.0,
        session_bandwidth: int = 64000,
        min_interval: float = 5.0,
        rng: random.Random | None = None,
    ) -> None:
        """``wallclock_offset`` is added to ``now`` to get Unix time for SR NTP timestamps;
        leaving it 0 keeps them relative, which round-trip times do not mind."""
        self.ssrc = ssrc
        self.cname = cname
        self.clock_rate = clock_rate
        self.wallclock_offset = wallclock_offset
        self.session_bandwidth = session_bandwidth
        self.min_interval = min_interval
        self._random = rng or random.Random()
        self._sources: dict[int, ReceiveStatistics] = {}
        self._arrivals: list[Arrival] = []
        self.remote_cname: str | None = None
        self.closed = False
        self._current_source: int | None = None
        self._heard: set[int] = set()
        self._packets_sent = 0
        self._octets_sent = 0
        self._last_rtp: tuple[int, float] | None = None  # (timestamp, time sent)
        self._remote_report: ReportBlock | None = None
        self._rtt_ms = Summary()
        self._avg_rtcp_size = 100.0 + _UDP_IP_OVERHEAD
        self._next_report = now + self._interval(initial=True)

    # RTP accounting

    def rtp_sent(self, packet: RTPPacket, now: float) -> None:
        self.sent(packet.timestamp, len(packet.payload), now)

    def sent(self, timestamp: int, octets: int, now: float) -> None:
        """Accounts a packet sent with RTP ``timestamp`` and ``octets`` of payload."""
        self._packets_sent += 1
        self._octets_sent += octets
        self._last_rtp = (timestamp, now)

    def rtp_received(self, packet: RTPPacket, now: float) -> None:
        """Accounts a received packet.  It is only noted here: the statistics of a batch
        are brought up to date at once (_fold), before anything reads or reports them."""
        self.arrived(
            (packet.ssrc, packet.sequence_number, packet.timestamp, now, len(packet.payload))
        )

    def arrived(self, arrival: Arrival) -> None:
        """rtp_received() of a packet already taken apart: (SSRC, sequence number,
        timestamp, arrival time, payload octets)."""
        arrivals = self._arrivals
        arrivals.append(arrival)
        if len(arrivals) >= MAX_ARRIVALS:
            self._fold()

    def _fold(self) -> None:
        """Accounts the noted packets, in arrival order, to their sources."""
        arrivals = self._arrivals
        if not arrivals:
            return
        self._arrivals = []
        index, end = 0, len(arrivals)
        while index < end:
            ssrc = arrivals[index][0]
            source = self._sources.get(ssrc) or self._source(ssrc)
            self._current_source = ssrc
            self._heard.add(ssrc)
            index = source.extend(arrivals, index)

    @property
    def sources(self) -> dict[int, ReceiveStatistics]:
        """The statistics of every remote source heard (at most MAX_SOURCES), by SSRC."""
        self._fold()
        return self._sources

    # RTCP in

    def receive(self, data: bytes, now: float) -> list[RTCPPacket]:
        """Consumes a (compound) RTCP datagram; raises RTCPParseError for bad bytes."""
        packets = parse_rtcp(data)
        self._fold()  # in arrival order with the RTP before it (a new source may evict)
        self._avg_rtcp_size += (len(data) + _UDP_IP_OVERHEAD - self._avg_rtcp_size) / 16
        for packet in packets:
            if isinstance(packet, SenderReport):
                self._source(packet.ssrc).sender_report(packet.ntp_timestamp, now)
                self._take_reports(packet.reports, now)
            elif isinstance(packet, ReceiverReport):
                self._take_reports(packet.reports, now)
            elif isinstance(packet, SourceDescription):
                for chunk in packet.chunks:
                    if chunk.ssrc != self.ssrc and (cname := chunk.get(SDESItemType.CNAME)):
                        self.remote_cname = cname
            elif isinstance(packet, Bye):
                # The source left: stop reporting on it, but keep its statistics to read.
                self._heard.difference_update(packet.sources)
        return packets

    def _source(self, ssrc: int) -> ReceiveStatistics:
        sources = self._sources
        source = sources.get(ssrc)
        if source is None:
            if len(sources) >= MAX_SOURCES:  # packets with made-up SSRCs: forget the oldest
                oldest = next(s for s in sources if s != self._current_source)
                del sources[oldest]
                self._heard.discard(oldest)
            source = sources[ssrc] = ReceiveStatistics(ssrc, self.clock_rate)
        return source

    def _take_reports(self, reports: tuple[ReportBlock, ...], now: float) -> None:
        for block in reports:
            if block.ssrc != self.ssrc:
                continue
            self._remote_report = block
            rtt = round_trip_time(self._ntp(now), block.lsr, block.dlsr)
            if rtt is not None:
                self._rtt_ms.add(rtt * 1000.0)

    # RTCP out

    def get_timer(self) -> float | None:
        """When handle_timer() next has a report to send; None once BYE was sent."""
        return None if self.closed else self._next_report

    def handle_timer(self, now: float) -> bytes | None:
        """The compound report due at ``now``, or None if none is due yet."""
        if self.closed or now < self._next_report:
            return None
        data = serialize_rtcp(self._report(now))
        self._next_report = now + self._interval(initial=False)
        return data

    def bye(self, now: float, reason: str | None = None) -> bytes:
        """The final compound packet (report, SDES, BYE); the session sends nothing after."""
        self.closed = True
        return serialize_rtcp([*self._report(now), Bye((self.ssrc,), reason)])

    def _report(self, now: float) -> list[RTCPPacket]:
        self._fold()
        blocks = tuple(self._sources[s].report_block(now) for s in sorted(self._heard))[:31]
        self._heard.clear()
        sdes = SourceDescription((SDESChunk(self.ssrc, ((SDESItemType.CNAME, self.cname),)),))
        # RFC 3550 6.4: send an SR if we sent RTP since the report before the last one.
        horizon = 2 * self.min_interval
        if self._last_rtp is not None and now - self._last_rtp[1] <= horizon:
            ntp = self._ntp(now)
            timestamp, sent_at = self._last_rtp
            rtp_now = (timestamp + round((now - sent_at) * self.clock_rate)) & 0xFFFFFFFF
            report: RTCPPacket = SenderReport(
                self.ssrc,
                ntp,
                rtp_now,
                self._packets_sent & 0xFFFFFFFF,
                self._octets_sent & 0xFFFFFFFF,
                blocks,
            )
        else:
            report = ReceiverReport(self.ssrc, blocks)
        packets = [report, sdes]
        size = sum(len(p.serialize()) for p in packets) + _UDP_IP_OVERHEAD
        self._avg_rtcp_size += (size - self._avg_rtcp_size) / 16
        return packets

    def _interval(self, *, initial: bool) -> float:
        minimum = self.min_interval / 2 if initial else self.min_interval
        rtcp_bytes_per_second = _RTCP_BANDWIDTH_FRACTION * self.session_bandwidth / 8
        members = max(2, 1 + len(self._sources))
        interval = max(minimum, self._avg_rtcp_size * members / rtcp_bytes_per_second)
        return interval * self._random.uniform(0.5, 1.5)

    def _ntp(self, now: float) -> int:
        return ntp_timestamp(now + self.wallclock_offset)

    # statistics

    @property
    def statistics(self) -> StreamStatistics:
        self._fold()
        source = None if self._current_source is None else self._sources.get(self._current_source)
        if source is None:
            rx = DirectionStatistics()
        else:
            rx = DirectionStatistics(
                packets=source.packets,
                octets=source.octets,
                packets_lost=source.lost,
                fraction_lost=source.fraction_lost / 256,
                jitter_ms=source.jitter_ms,
            )
        remote = self._remote_report
        tx = DirectionStatistics(
            packets=self._packets_sent,
            octets=self._octets_sent,
            packets_lost=remote.packets_lost if remote else 0,
            fraction_lost=remote.fraction_lost / 256 if remote else 0.0,
            jitter_ms=remote.jitter * 1000.0 / self.clock_rate if remote else 0.0,
        )
        return StreamStatistics(rx, tx, replace(self._rtt_ms))
