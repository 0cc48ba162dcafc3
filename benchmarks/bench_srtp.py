"""SRTP cost: protect + unprotect round trips per second for each SDES suite, 160 and 1200 bytes.

A 160-byte packet is 20 ms of G.711 (12-byte header, 148 bytes of payload here); 1200 bytes
stands for a large Opus or video packet. The peer is plain RTP measured in the same run:
the same loop with a bytes copy in place of each SRTP call, so the ratio is what SRTP (and
the pylibsrtp call) adds to moving a packet. One call of a 50 packet/s audio stream is 100
round trips per second.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

from sipsimple.media.srtp import SUITES, SRTPSession

PACKETS = 10_000
RUNS = 5


def make_packets(size: int) -> list[bytes]:
    payload = bytes(range(256)) * (size // 256 + 1)
    return [
        struct.pack("!BBHII", 0x80, 0, n & 0xFFFF, n * 160, 0x5EED) + payload[: size - 12]
        for n in range(PACKETS)
    ]


def srtp_round_trips(suite: str, packets: list[bytes]) -> float:
    length = SUITES[suite].key_salt_length
    alice_key, bob_key = bytes(range(length)), bytes(range(1, length + 1))
    alice = SRTPSession(suite, alice_key, bob_key)
    bob = SRTPSession(suite, bob_key, alice_key)
    protect, unprotect = alice.protect, bob.unprotect
    assert unprotect(protect(packets[0])) == packets[0]
    start = time.perf_counter()
    for packet in packets[1:]:
        unprotect(protect(packet))
    return time.perf_counter() - start


def plain_round_trips(packets: list[bytes]) -> float:
    copy = bytes
    start = time.perf_counter()
    for packet in packets[1:]:
        copy(memoryview(copy(memoryview(packet))))
    return time.perf_counter() - start


def best_of(function: Callable[[], float]) -> float:
    return min(function() for _ in range(RUNS))


def main() -> None:
    count = PACKETS - 1
    print(
        f"{'suite':<24} {'bytes':>5} {'round trips/s':>14} {'us each':>8} "
        f"{'plain/s':>11} {'slower':>7}"
    )
    for size in (160, 1200):
        packets = make_packets(size)
        plain = best_of(lambda packets=packets: plain_round_trips(packets))
        for suite in SUITES:
            took = best_of(lambda suite=suite, packets=packets: srtp_round_trips(suite, packets))
            print(
                f"{suite:<24} {size:>5} {count / took:>14,.0f} {took / count * 1e6:>8.2f} "
                f"{count / plain:>11,.0f} {took / plain:>6.1f}x"
            )


if __name__ == "__main__":
    main()
