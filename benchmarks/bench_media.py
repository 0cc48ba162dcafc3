"""Media core throughput and the CPU cost of one call, to predict calls per machine.

Prints:
- RTP packets parsed + serialized per second, against a bare struct.unpack_from of the
  12-byte header (the floor any Python RTP parser sits on);
- G.711 frames (20 ms) encoded and decoded per second, against FFmpeg's own pcm_mulaw
  through PyAV;
- CPU time per 20 ms frame encoded and decoded, for Opus (libopus called directly, against
  the same libopus through PyAV with the same settings), G.722 (PyAV) and PCMU (our
  tables, against FFmpeg's pcm_mulaw), on speech-like input and on a tone;
- Opus encoding cost per complexity setting (the figures behind opus.COMPLEXITY);
- the CPU time of one 20 ms frame of a whole call, send and receive path without sockets
  (resample from/to the mixer rate, encode, packetize, serialize, parse, RTCP accounting,
  jitter buffer, decode), for G.711 and Opus, and what that means in calls per core.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from unittest import mock

import av
import numpy as np

from sipsimple.media.codecs import create_codec, opus
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


def speech_like(sample_rate: int, seconds: float = 2.0) -> np.ndarray:
    """Harmonics of a drifting pitch in syllable-like bursts, fricative noise and pauses:
    the kind of input that sends Opus through SILK or hybrid mode, as speech does."""
    rng = np.random.default_rng(5)
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    phase = 2 * np.pi * np.cumsum(140 + 40 * np.sin(2 * np.pi * 1.3 * t)) / sample_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, min(20, sample_rate // 400)))
    syllables = np.clip(np.sin(2 * np.pi * 3 * t), 0, None)
    fricatives = rng.normal(0, 0.3, len(t)) * (np.sin(2 * np.pi * 0.7 * t) > 0.8)
    return np.round(6000 * (voiced * syllables + fricatives)).astype(np.int16)


def cpu_per_frame(
    encode: Callable[[np.ndarray], bytes],
    decode: Callable[[bytes], object],
    signal: np.ndarray,
    frame: int,
    passes: int = 3,
) -> tuple[float, float]:
    """CPU microseconds (process_time) per frame to encode, then to decode, ``signal``."""
    frames = [signal[k : k + frame] for k in range(0, len(signal) - frame + 1, frame)]
    start = time.process_time()
    for _ in range(passes):
        packets = [encode(pcm) for pcm in frames]
    encoding = time.process_time() - start
    start = time.process_time()
    for _ in range(passes):
        for packet in packets:
            decode(packet)
    decoding = time.process_time() - start
    return 1e6 * encoding / (passes * len(frames)), 1e6 * decoding / (passes * len(frames))


def bench_codecs() -> None:
    print("CPU us per 20 ms frame          input    encode  decode")

    def line(label: str, signal_name: str, costs: tuple[float, float], note: str = "") -> None:
        print(f"{label:<31} {signal_name:<7} {costs[0]:7.1f} {costs[1]:7.1f}  {note}")

    def codec_costs(name: str, signal: np.ndarray) -> tuple[float, float]:
        encoder, decoder = create_codec(name), create_codec(name)
        return cpu_per_frame(encoder.encode, decoder.decode, signal, encoder.info.samples_per_frame)

    for signal_name, signal in (("speech", speech_like(48000)), ("tone", sine(440, 48000, 96000))):
        ours = codec_costs("opus", signal)
        with mock.patch.object(opus, "libopus", lambda: None):  # the same codec, PyAV's way
            peer = codec_costs("opus", signal)
        line("Opus, libopus direct", signal_name, ours)
        ratio = f"(ours = {ours[0] / peer[0]:.2f}x, {ours[1] / peer[1]:.2f}x peer)"
        line("peer Opus through PyAV", signal_name, peer, ratio)
    line("G.722 (PyAV)", "speech", codec_costs("G722", speech_like(16000)))
    narrowband = speech_like(8000)
    ours = codec_costs("PCMU", narrowband)
    ffmpeg = av.CodecContext.create("pcm_mulaw", "w")
    ffmpeg.sample_rate = 8000
    ffmpeg.layout = "mono"
    ffmpeg.format = "s16"
    ffmpeg.open()

    def peer_encode(pcm: np.ndarray) -> bytes:
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 8000
        return b"".join(bytes(p) for p in ffmpeg.encode(frame))

    decoder = av.CodecContext.create("pcm_mulaw", "r")
    decoder.sample_rate = 8000
    decoder.layout = "mono"
    peer = cpu_per_frame(peer_encode, lambda p: decoder.decode(av.Packet(p)), narrowband, 160)
    line("PCMU (our tables)", "speech", ours)
    ratio = f"(ours = {ours[0] / peer[0]:.2f}x, {ours[1] / peer[1]:.2f}x peer)"
    line("peer FFmpeg pcm_mulaw (PyAV)", "speech", peer, ratio)


def bench_opus_complexity() -> None:
    """Encoding cost per libopus complexity, 32 kbit/s VBR fullband voip as we send it."""
    lib = opus.libopus()
    if lib is None:
        print("Opus complexity: no libopus in the PyAV wheel, skipped")
        return
    signals = {"speech": speech_like(48000), "tone": sine(440, 48000, 96000)}
    print("Opus encode CPU us/frame by complexity (ours: " + str(opus.COMPLEXITY) + ")")
    print("complexity " + "".join(f"{c:>6}" for c in range(11)))
    for name, signal in signals.items():
        costs = []
        for complexity in range(11):
            encoder = opus.LibOpusEncoder(
                lib, 960, bit_rate=32000, bandwidth=1105, cbr=False, fec=False,
                complexity=complexity,
            )  # fmt: skip
            costs.append(cpu_per_frame(encoder.encode, len, signal, 960)[0])
        print(f"{name:<10} " + "".join(f"{cost:6.0f}" for cost in costs))


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
    bench_codecs()
    bench_opus_complexity()
    bench_calls()


if __name__ == "__main__":
    main()
