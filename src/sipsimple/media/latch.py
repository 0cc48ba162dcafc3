"""Symmetric RTP latching: send to the address media really comes from (RFC 4961, NAT).

Before anything arrives we send to the address the SDP gave.  The first packet latches at
once; after that a new address wins only after ``threshold`` consecutive packets from it
(none from the current address in between) carrying the SSRC we already receive, or
``new_ssrc_threshold`` such packets with another single SSRC, so a stray or spoofed packet
cannot steal the stream.
"""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["RTPLatch"]

Address = TypeVar("Address")


class RTPLatch(Generic[Address]):
    """Decides which remote address a stream follows; ``address`` is where to send."""

    def __init__(self, address: Address, *, threshold: int = 3, new_ssrc_threshold: int = 10):
        if threshold < 1 or new_ssrc_threshold < 1:
            raise ValueError("latching thresholds must be at least 1 packet")
        self.threshold = threshold
        self.new_ssrc_threshold = new_ssrc_threshold
        self.reset(address)

    def reset(self, address: Address) -> None:
        """Starts over from a (new) signalled address, e.g. after a re-INVITE."""
        self.address = address
        self.latched = False
        self.ssrc: int | None = None
        # The (address, SSRC) a switch may go to, counting; None: no switch under way.
        self.candidate: tuple[Address, int] | None = None
        self._count = 0

    def observe(self, address: Address, ssrc: int) -> bool:
        """Accounts a valid packet from ``address``; True when the stream latches there."""
        if not self.latched:
            changed = address != self.address
            self.address, self.ssrc, self.latched = address, ssrc, True
            return changed
        if address == self.address:
            self.ssrc = ssrc
            self.candidate, self._count = None, 0
            return False
        if self.candidate == (address, ssrc):
            self._count += 1
        else:
            self.candidate, self._count = (address, ssrc), 1
        needed = self.threshold if ssrc == self.ssrc else self.new_ssrc_threshold
        if self._count < needed:
            return False
        self.address, self.ssrc = address, ssrc
        self.candidate, self._count = None, 0
        return True
