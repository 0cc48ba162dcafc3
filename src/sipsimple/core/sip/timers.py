"""The SIP transaction timer values (RFC 3261 section 17 and appendix A, RFC 6026).

Every timer of the transaction layer derives from the three base values T1 (an
estimate of the round-trip time), T2 (the longest retransmission interval for
non-INVITE requests and INVITE responses) and T4 (how long the network takes to clear
messages). Changing T1 scales the others, as the RFC intends. Which timers run depends
on the transport: on reliable transports A, E and G do not run and D, I, J and K are
zero (the layer then moves on at once instead of arming a zero timer).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TimerSettings"]


@dataclass(frozen=True, slots=True)
class TimerSettings:
    """T1/T2/T4 and the two values the RFC leaves to the implementation.

    ``trying_delay`` is how long an INVITE server transaction waits for the TU's first
    response before sending 100 Trying itself (RFC 3261 section 17.2.1: 200 ms; 0 sends
    it at once). ``timer_c`` (RFC 3261 section 16.6, item 11) bounds the wait for a
    final response after the last provisional response to an INVITE; None leaves that
    wait to the TU, which usually has its own (the session's invite timeout).
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    timer_d: float = 32.0
    trying_delay: float = 0.2
    timer_c: float | None = None

    def __post_init__(self) -> None:
        for name in ("t1", "t2", "t4", "timer_d"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        if self.t2 < self.t1:
            raise ValueError(f"t2 ({self.t2}) must not be smaller than t1 ({self.t1})")
        if not 0 <= self.trying_delay <= 0.2:
            raise ValueError(f"trying_delay must be in 0..0.2 seconds, not {self.trying_delay!r}")
        if self.timer_c is not None and not self.timer_c > 0:
            raise ValueError(f"timer_c must be positive or None, not {self.timer_c!r}")

    @property
    def timeout(self) -> float:
        """64*T1: timers B, F, H, L and M, timer J on unreliable transports."""
        return 64 * self.t1
