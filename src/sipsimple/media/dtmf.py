"""telephone-event (RFC 4733): DTMF digits sent and received as RTP events.

The sender is driven by the stream's frame clock: once per packet interval the transport
calls tick() with the media timestamp of that slot; while an event is under way tick()
returns the event packet to send in place of audio.  Each event is:

- a first packet with the marker bit and the event's start timestamp,
- updates every interval, all with that same timestamp and a growing duration,
- the final packet, with the end bit, sent three times (RFC 4733 2.5.1.4),

each with its own sequence number.  The receiver reports each event once, whichever of
its packets arrives first, and ignores the updates, the repeated end packets and any
packet of an older event.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

from sipsimple.media.rtp import RTPPacket

__all__ = [
    "DTMF_EVENTS",
    "TELEPHONE_EVENT_FMTP",
    "DTMFEvent",
    "DTMFPacket",
    "DTMFReceiver",
    "DTMFSender",
    "parse_event_payload",
]

# Event codes 0-16 (RFC 4733 section 3.2): digits, *, #, A-D, flash.
DTMF_EVENTS = "0123456789*#ABCD"
FLASH_EVENT = 16
TELEPHONE_EVENT_FMTP = "0-16"
END_REPEATS = 3
_EVENT = struct.Struct("!BBH")


def parse_event_payload(payload: bytes) -> tuple[int, bool, int, int] | None:
    """(event, end, volume, duration) of a telephone-event payload, None if too short."""
    if len(payload) < 4:
        return None
    event, flags, duration = _EVENT.unpack_from(payload)
    return event, bool(flags & 0x80), flags & 0x3F, duration


@dataclass(frozen=True, slots=True)
class DTMFPacket:
    """One telephone-event packet to send: its payload, RTP timestamp and marker bit."""

    payload: bytes
    timestamp: int
    marker: bool
    event: int
    end: bool
    duration: int


@dataclass(frozen=True, slots=True)
class DTMFEvent:
    """A digit the peer sent; ``timestamp`` identifies its event."""

    digit: str
    event: int
    timestamp: int


@dataclass(slots=True)
class _Active:
    event: int
    timestamp: int
    total: int  # duration of the whole event, in clock ticks
    elapsed: int = 0
    ends_sent: int = 0


class DTMFSender:
    """Queues digits and produces their telephone-event packets, one per tick()."""

    def __init__(
        self,
        clock_rate: int = 8000,
        *,
        ptime: int = 20,
        volume: int = 10,
        pause: float = 0.04,
    ) -> None:
        """``volume`` is the tone power in -dBm0 (0-63); ``pause`` the silence between
        consecutive digits, so a gateway regenerating tones keeps them apart."""
        if not 0 <= volume <= 63:
            raise ValueError(f"volume {volume}: must be 0-63 (-dBm0)")
        self.clock_rate = clock_rate
        self.volume = volume
        self._step = clock_rate * ptime // 1000
        self._pause_ticks = round(pause * 1000 / ptime)
        self._queue: deque[tuple[int, int]] = deque()
        self._active: _Active | None = None
        self._quiet = self._pause_ticks  # slots without an event since the last one ended

    @property
    def busy(self) -> bool:
        """Whether an event is being sent or digits are waiting."""
        return self._active is not None or bool(self._queue)

    def send(self, digit: str, duration: float = 0.1) -> None:
        """Queues a digit (0-9, *, #, A-D) of ``duration`` seconds."""
        if len(digit) != 1 or digit.upper() not in DTMF_EVENTS:
            raise ValueError(f"DTMF digit {digit!r}: must be one of {DTMF_EVENTS}")
        total = -(-round(duration * self.clock_rate) // self._step) * self._step
        if not self._step <= total <= 0xFFFF:
            raise ValueError(
                f"DTMF duration {duration}s: must be from one packet interval to "
                f"{0xFFFF / self.clock_rate:.3f}s at {self.clock_rate} Hz"
            )
        self._queue.append((DTMF_EVENTS.index(digit.upper()), total))

    def tick(self, timestamp: int) -> DTMFPacket | None:
        """The packet for the slot at media ``timestamp``; None to send audio as usual."""
        active = self._active
        if active is None:
            if not self._queue or self._quiet < self._pause_ticks:
                self._quiet += 1
                return None
            event, total = self._queue.popleft()
            active = self._active = _Active(event, timestamp, total)
        first = active.elapsed == 0
        active.elapsed = min(active.elapsed + self._step, active.total)
        end = active.elapsed == active.total
        if end:
            active.ends_sent += 1
            if active.ends_sent == END_REPEATS:
                self._active = None
                self._quiet = 0
        flags = (0x80 if end else 0) | self.volume
        return DTMFPacket(
            _EVENT.pack(active.event, flags, active.elapsed),
            active.timestamp,
            first,
            active.event,
            end,
            active.elapsed,
        )


class DTMFReceiver:
    """Turns received telephone-event packets into one DTMFEvent per event."""

    def __init__(self) -> None:
        self._ssrc: int | None = None
        self._last: tuple[int, int] | None = None  # (timestamp, event) of the newest event

    def receive(self, packet: RTPPacket) -> DTMFEvent | None:
        """The event if ``packet`` is the first seen of a new one; None otherwise."""
        parsed = parse_event_payload(packet.payload)
        if parsed is None:
            return None
        event = parsed[0]
        if packet.ssrc != self._ssrc:
            self._ssrc, self._last = packet.ssrc, None
        if self._last is not None:
            last_timestamp, last_event = self._last
            delta = (packet.timestamp - last_timestamp) & 0xFFFFFFFF
            if delta == 0 and event == last_event:
                return None  # an update or repeat of the current event
            if delta >= 0x80000000:
                return None  # a late packet of an older event
        self._last = (packet.timestamp, event)
        if event >= len(DTMF_EVENTS):
            return None  # flash and other events are not digits
        return DTMFEvent(DTMF_EVENTS[event], event, packet.timestamp)
