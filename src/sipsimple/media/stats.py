"""Per-source receive statistics (RFC 3550 appendix A.1, A.3, A.8) and NTP time helpers.

Arrival times are plain float seconds from the caller's clock; only differences matter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sipsimple.media.rtcp import ReportBlock

__all__ = [
    "NTP_EPOCH_OFFSET",
    "Arrival",
    "ReceiveStatistics",
    "Summary",
    "ntp_middle",
    "ntp_timestamp",
    "round_trip_time",
]

NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 (NTP era 0) to 1970-01-01
RTP_SEQ_MOD = 1 << 16
MAX_DROPOUT = 3000
MAX_MISORDER = 100
MIN_SEQUENTIAL = 2

# One received RTP packet as extend() takes it: (SSRC, sequence number, timestamp,
# arrival time, payload octets).
Arrival = tuple[int, int, int, float, int]


def ntp_timestamp(unix_time: float) -> int:
    """The 64-bit NTP timestamp (32.32 fixed point) of a Unix time."""
    return int((unix_time + NTP_EPOCH_OFFSET) * (1 << 32)) & 0xFFFFFFFFFFFFFFFF


def ntp_middle(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp, as RTCP's LSR field carries it (16.16)."""
    return (ntp >> 16) & 0xFFFFFFFF


def round_trip_time(arrival_ntp: int, lsr: int, dlsr: int) -> float | None:
    """RTT in seconds from a report block (RFC 3550 6.4.1): arrival - LSR - DLSR.

    ``arrival_ntp`` is the full NTP time at which the report arrived.  None when the peer
    has not yet received an SR from us (LSR 0) or the result is negative (clock skew).
    """
    if lsr == 0:
        return None
    rtt = (ntp_middle(arrival_ntp) - lsr - dlsr) & 0xFFFFFFFF
    if rtt & 0x80000000:
        return None
    return rtt / 65536.0


@dataclass(slots=True)
class Summary:
    """Count, last, minimum, maximum and mean of a series of measurements."""

    count: int = 0
    last: float = 0.0
    minimum: float = 0.0
    maximum: float = 0.0
    mean: float = 0.0

    def add(self, value: float) -> None:
        self.count += 1
        self.last = value
        if self.count == 1:
            self.minimum = self.maximum = self.mean = value
        else:
            self.minimum = min(self.minimum, value)
            self.maximum = max(self.maximum, value)
            self.mean += (value - self.mean) / self.count


class ReceiveStatistics:
    """What we know of one remote source: sequence tracking, loss, jitter, its last SR.

    update() applies the A.1 validity rules: a new source is on probation until
    MIN_SEQUENTIAL packets arrive in sequence, and a jump of more than MAX_DROPOUT is
    taken as a restart only when the next packet confirms it.
    """

    def __init__(self, ssrc: int, clock_rate: int) -> None:
        self.ssrc = ssrc
        self.clock_rate = clock_rate
        self.packets = 0  # every packet from this source, valid or not
        self.octets = 0  # payload octets of those packets
        self.probation = MIN_SEQUENTIAL
        self.max_seq = 0
        self.cycles = 0
        self.base_seq = 0
        self.bad_seq = RTP_SEQ_MOD + 1
        self.received = 0
        self.received_prior = 0
        self.expected_prior = 0
        self._transit: float | None = None
        self._jitter = 0.0  # in timestamp units
        self._valid = False  # whether the last packet accounted was valid
        self.last_sr: int = 0  # middle 32 bits of the NTP time in the last SR
        self.last_sr_arrival: float | None = None
        self.fraction_lost = 0  # 8-bit fixed point, as of the last report block

    def _init_seq(self, seq: int) -> None:
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = RTP_SEQ_MOD + 1
        self.cycles = 0
        self.received = 0
        self.received_prior = 0
        self.expected_prior = 0

    def _update_seq(self, seq: int) -> bool:
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
                self.probation = MIN_SEQUENTIAL - 1
                self.max_seq = seq
            return False
        if udelta < MAX_DROPOUT:
            if seq < self.max_seq:  # in order, with permissible gap, wrapped
                self.cycles += RTP_SEQ_MOD
            self.max_seq = seq
        elif udelta <= RTP_SEQ_MOD - MAX_MISORDER:
            if seq != self.bad_seq:  # a big jump: wait for a second packet to confirm it
                self.bad_seq = (seq + 1) & 0xFFFF
                return False
            self._init_seq(seq)  # two sequential packets: the sender restarted
        # else: duplicate or reordered packet
        self.received += 1
        return True

    def update(self, sequence_number: int, timestamp: int, arrival: float, octets: int) -> bool:
        """Accounts one RTP packet arrived at ``arrival`` seconds; False while not valid."""
        self.extend(((self.ssrc, sequence_number, timestamp, arrival, octets),))
        return self._valid

    def extend(self, arrivals: Sequence[Arrival], start: int = 0) -> int:
        """Accounts ``arrivals[start:]`` in order, up to the first of another source;
        returns its index (len(arrivals) when all are ours).

        A batch of a stream's packets costs one call: the usual packet (the next in
        sequence) is accounted in local variables, any other goes through the A.1 rules.
        """
        ssrc, clock_rate = self.ssrc, self.clock_rate
        packets, octets, probation = self.packets, self.octets, self.probation
        max_seq, cycles, received = self.max_seq, self.cycles, self.received
        last, jitter, valid = self._transit, self._jitter, self._valid
        index, end = start, len(arrivals)
        while index < end:
            source, seq, timestamp, arrival, size = arrivals[index]
            if source != ssrc:
                break
            index += 1
            if packets and not probation and seq == (max_seq + 1) & 0xFFFF:
                if not seq:  # wrapping to 0 starts a new cycle
                    cycles += RTP_SEQ_MOD
                max_seq = seq
                received += 1
                valid = True
            else:
                self.max_seq, self.cycles, self.received = max_seq, cycles, received
                if not packets:
                    self._init_seq(seq)
                    self.max_seq = (seq - 1) & 0xFFFF
                valid = self._update_seq(seq)
                probation, max_seq = self.probation, self.max_seq
                cycles, received = self.cycles, self.received
            packets += 1
            octets += size
            # A.8: transit time in timestamp units; the difference is taken modulo 2**32 so
            # a timestamp wrap is not mistaken for a huge delay variation.
            transit = arrival * clock_rate - timestamp
            if last is not None:
                d = (transit - last + 2.0**31) % 2.0**32 - 2.0**31
                jitter += (abs(d) - jitter) / 16.0
            last = transit
        self.packets, self.octets = packets, octets
        self.max_seq, self.cycles, self.received = max_seq, cycles, received
        self._transit, self._jitter, self._valid = last, jitter, valid
        return index

    def sender_report(self, ntp: int, arrival: float) -> None:
        """Remembers an SR from this source for the LSR/DLSR of our next report."""
        self.last_sr = ntp_middle(ntp)
        self.last_sr_arrival = arrival

    @property
    def extended_max_seq(self) -> int:
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        return self.extended_max_seq - self.base_seq + 1 if self.received else 0

    @property
    def lost(self) -> int:
        """Cumulative packets lost, clamped to 24 signed bits (negative with duplicates)."""
        return max(-0x800000, min(0x7FFFFF, self.expected - self.received))

    @property
    def jitter(self) -> float:
        """Interarrival jitter in timestamp units."""
        return self._jitter

    @property
    def jitter_ms(self) -> float:
        return self._jitter * 1000.0 / self.clock_rate

    def report_block(self, now: float) -> ReportBlock:
        """The reception report block as of ``now``; starts a new loss interval (A.3)."""
        expected = self.expected
        expected_interval = expected - self.expected_prior
        self.expected_prior = expected
        received_interval = self.received - self.received_prior
        self.received_prior = self.received
        lost_interval = expected_interval - received_interval
        if expected_interval <= 0 or lost_interval <= 0:
            self.fraction_lost = 0
        else:
            self.fraction_lost = min(255, (lost_interval << 8) // expected_interval)
        dlsr = 0
        if self.last_sr_arrival is not None:
            dlsr = min(0xFFFFFFFF, max(0, int((now - self.last_sr_arrival) * 65536)))
        return ReportBlock(
            ssrc=self.ssrc,
            fraction_lost=self.fraction_lost,
            packets_lost=self.lost,
            highest_sequence=self.extended_max_seq & 0xFFFFFFFF,
            jitter=min(int(self._jitter), 0xFFFFFFFF),
            lsr=self.last_sr,
            dlsr=dlsr,
        )
