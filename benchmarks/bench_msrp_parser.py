"""MSRP parser throughput: MB/s parsing streams of SEND chunks with 2 KB and 64 KB bodies.

The stream is fed in 64 KB reads, as a socket would deliver it, and every event is
consumed.  The peer is a plain ``bytes.find`` loop over the same buffer that only
slices out start lines and bodies (no validation, no events, the whole buffer at
hand): the ratio says what incremental parsing and validation cost over the bare
minimum.
"""

from __future__ import annotations

import time

from sipsimple.msrp import MSRPURI, FrameData, FrameEnded, MSRPParser, OutgoingMessage, make_id

TO_PATH = [MSRPURI.parse("msrp://bob.example.com:8888/9di4eae923wzd;tcp")]
FROM_PATH = [MSRPURI.parse("msrp://alice.example.com:7777/iau39soe2843z;tcp")]
READ_SIZE = 65536


def make_stream(body_size: int, total: int) -> tuple[bytes, int]:
    body = bytes(range(256)) * (body_size // 256) + b"x" * (body_size % 256)
    count = max(1, total // body_size)
    message = OutgoingMessage(
        make_id(), "application/octet-stream", body * count, chunk_size=body_size
    )
    frames = []
    while message.ready:
        frames.append(message.next_chunk(TO_PATH, FROM_PATH, make_id).encode())
    return b"".join(frames), count


def parse_ours(stream: bytes) -> tuple[int, int]:
    parser = MSRPParser()
    frames = body = 0
    view = memoryview(stream)
    for offset in range(0, len(stream), READ_SIZE):
        for event in parser.feed(view[offset : offset + READ_SIZE]):
            if isinstance(event, FrameData):
                body += len(event.data)
            elif isinstance(event, FrameEnded):
                frames += 1
    return frames, body


def parse_peer(stream: bytes) -> tuple[int, int]:
    frames = body = 0
    position = 0
    end_of_stream = len(stream)
    while position < end_of_stream:
        line_end = stream.find(b"\r\n", position)
        tid = stream[position + 5 : stream.find(b" ", position + 5)]
        headers_end = stream.find(b"\r\n\r\n", line_end)
        marker = stream.find(b"\r\n-------" + tid, headers_end + 4)
        body += len(stream[headers_end + 4 : marker])
        position = marker + 9 + len(tid) + 3
        frames += 1
    return frames, body


def best_of(runs: int, function, stream: bytes) -> tuple[float, tuple[int, int]]:
    best = float("inf")
    result = (0, 0)
    for _ in range(runs):
        start = time.perf_counter()
        result = function(stream)
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    print(f"{'body':>7} {'frames':>7} {'ours MB/s':>10} {'peer MB/s':>10} {'peer/ours':>10}")
    for body_size, total in ((2048, 16 << 20), (65536, 64 << 20)):
        stream, count = make_stream(body_size, total)
        ours_time, ours = best_of(5, parse_ours, stream)
        peer_time, peer = best_of(5, parse_peer, stream)
        assert ours == peer == (count, count * body_size), (ours, peer)
        megabytes = len(stream) / 1e6
        print(
            f"{body_size:>7} {count:>7} {megabytes / ours_time:>10.1f} "
            f"{megabytes / peer_time:>10.1f} {ours_time / peer_time:>10.2f}"
        )


if __name__ == "__main__":
    main()
