"""Media core throughput and the CPU cost of one call, to predict calls per machine.

Prints:
- RTP packets parsed + serialized per second, against a bare struct.unpack_from of the
  12-byte header (the floor any Python RTP parser sits on);
- G.711 frames (20 ms) encoded and decoded per second, against FFmpeg's own pcm_mulaw
  through PyAV;
- Opus frames encoded and decoded per second;
- the CPU time of one 20 ms frame of a whole call, send and receive path without sockets
  (resample from/to the mixer rate, encode, packetize, serialize, parse, RTCP accounting,
  jitter buffer, decode), for G.711 and Opus, and what that means in calls per core.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

import av
import numpy as np

from sipsimple.media.codecs import create_codec
from sipsimple.media.jitterbuffer import FrameKind, JitterBuffer
from sipsimple.media.resample import Resampler
from sipsimple.media.rtcpsession import RTCPSession
from sipsimple.media.rtp import RTPPacket, RTPPacketizer

FRAME = 0.02


def rate(function: Callable[[], object], seconds: float = 0.5) -> float:
    """Calls per second of ``function``, measured over about ``seconds``."""
    calls = 0
    batch = 100
    start = time.perf_counter()
    while True:
        for _ in range(batch):
            function()
        calls += batch
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls / elapsed
        batch = min(batch * 2, 100000)


def sine(frequency: float, sample_rate: int, samples: int) -> np.ndarray:
    t = np.arange(samples) / sample_rate
    return np.round(8000 * np.sin(2 * np.pi * frequency * t)).astype(np.int16)


def bench_rtp() -> None:
    data = RTPPacket(0, 1234, 160000, 0xDEADBEEF, bytes(160), marker=True).serialize()
    header = struct.Struct("!BBHII")
    ours = rate(lambda: RTPPacket.parse(data).serialize())
    parse_only = rate(lambda: RTPPacket.parse(data))
    peer = rate(lambda: header.unpack_from(data))
    print(f"RTP parse+serialize       {ours:12,.0f} packets/s")
    print(f"RTP parse only            {parse_only:12,.0f} packets/s")
    print(f"peer struct.unpack_from   {peer:12,.0f} headers/s  (ours = {ours / peer:.2f}x peer)")


def bench_g711() -> None:
    codec = create_codec("PCMU")
    pcm = sine(1000, 8000, 160)
    payload = codec.encode(pcm)
    encode = rate(lambda: codec.encode(pcm))
    decode = rate(lambda: codec.decode(payload))
    ffmpeg = av.CodecContext.create("pcm_mulaw", "w")
    ffmpeg.sample_rate = 8000
    ffmpeg.layout = "mono"
    ffmpeg.format = "s16"
    ffmpeg.open()

    def peer_encode() -> bytes:
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 8000
        return b"".join(bytes(p) for p in ffmpeg.encode(frame))

    peer = rate(peer_encode)
    print(f"G.711 encode              {encode:12,.0f} frames/s")
    print(f"G.711 decode              {decode:12,.0f} frames/s")
    print(f"peer FFmpeg pcm_mulaw enc {peer:12,.0f} frames/s  (ours = {encode / peer:.2f}x peer)")


def bench_opus() -> None:
    codec = create_codec("opus")
    pcm = sine(440, 48000, 960)
    payload = codec.encode(pcm)
    encode = rate(lambda: codec.encode(pcm), seconds=1.0)
    decode = rate(lambda: codec.decode(payload), seconds=1.0)
    print(f"Opus encode               {encode:12,.0f} frames/s  ({encode / 50:.0f}x real time)")
    print(f"Opus decode               {decode:12,.0f} frames/s  ({decode / 50:.0f}x real time)")


def call_cost(name: str, mixer_rate: int, frames: int = 1500) -> float:
    """CPU seconds per 20 ms frame of one call: our send path and the peer's packets'
    receive path (both directions of one call on one machine)."""
    codec_out = create_codec(name)
    codec_in = create_codec(name)
    info = codec_out.info
    to_codec = Resampler(mixer_rate, info.sample_rate)
    to_mixer = Resampler(info.sample_rate, mixer_rate)
    packetizer = RTPPacketizer(info.payload_type)
    rtcp = RTCPSession(packetizer.ssrc, "bench@localhost", info.clock_rate, 0.0)
    jitter = JitterBuffer(info.clock_rate)
    mixer_frame = sine(440, mixer_rate, mixer_rate * 2)
    frame_samples = mixer_rate // 50
    start = time.process_time()
    for i in range(frames):
        now = i * FRAME
        offset = (i * frame_samples) % (len(mixer_frame) - frame_samples)
        # send: mixer -> codec rate -> encode -> RTP -> bytes
        pcm = to_codec.process(mixer_frame[offset : offset + frame_samples])
        packet = packetizer.next_packet(codec_out.encode(pcm))
        packetizer.advance(info.timestamp_increment)
        rtcp.rtp_sent(packet, now)
        data = packet.serialize()
        # receive (the same bytes stand for the peer's): bytes -> RTP -> jitter buffer -> PCM
        received = RTPPacket.parse(data)
        rtcp.rtp_received(received, now + 0.01)
        jitter.put(received, now + 0.01)
        slot = jitter.get(now + 0.015)
        if slot is None:
            decoded = np.zeros(info.samples_per_frame, dtype=np.int16)
        elif slot.kind is FrameKind.AUDIO:
            decoded = codec_in.decode(slot.packet.payload)
        else:
            decoded = codec_in.conceal()
        to_mixer.process(decoded)
        report = rtcp.handle_timer(now)
        if report is not None:
            rtcp.receive(report, now)
    return (time.process_time() - start) / frames


def bench_calls() -> None:
    budget = FRAME
    for mixer_rate in (48000, 44100):
        for name in ("PCMU", "opus"):
            cost = call_cost(name, mixer_rate)
            per_core = budget / cost
            print(
                f"{name:4} call, mixer {mixer_rate} Hz: {cost * 1e6:7.1f} us CPU per 20 ms frame"
                f" = {100 * cost / budget:4.2f} % of a core; {per_core:5.0f} calls/core,"
                f" {2 * per_core:5.0f} on 2 cores"
            )
    print("(2-core figures assume the calls are spread over 2 processes: one asyncio")
    print(" thread runs Python code on one core at a time, so one process gets the 1-core figure")
    print(" plus whatever codec work PyAV runs outside the GIL.)")


def main() -> None:
    bench_rtp()
    bench_g711()
    bench_opus()
    bench_calls()


if __name__ == "__main__":
    main()
