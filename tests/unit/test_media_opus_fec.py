"""Opus in-band FEC on the receiving side: Opus.decode_fec() and JitterBuffer.peek().

The reference for a lost frame is what a decoder that lost nothing made of it, so the
codec's delay and coding noise are not counted against FEC or concealment.
"""

import numpy as np
import pytest
from tests.unit.test_media_codecs import sine, speech_like

from sipsimple.media.codecs import create_codec
from sipsimple.media.codecs import opus as opus_module
from sipsimple.media.jitterbuffer import FrameKind, JitterBuffer
from sipsimple.media.rtp import RTPPacket

FRAME = 960  # 20 ms at 48 kHz
CELT_SILENCE = b"\xf8\xff\xfe"  # a CELT-only 20 ms fullband packet (config 31)

pytestmark = pytest.mark.skipif(opus_module.libopus() is None, reason="no libopus of ours")


def encoded(signal, fmtp="useinbandfec=1", loss=0.1):
    """The packets of ``signal`` from an encoder whose peer asked for ``fmtp`` and reports
    ``loss`` of our packets lost."""
    codec = create_codec("opus", fmtp=fmtp)
    codec.plan_for_loss(loss)
    return [codec.encode(signal[k : k + FRAME]) for k in range(0, len(signal), FRAME)]


def has_fec(packet):
    return opus_module.libopus().opus_packet_has_lbrr(packet, len(packet)) == 1


def test_fec_is_sent_once_the_peer_reports_loss():
    """Planned for no loss, an encoder asked for FEC sends none and codes speech in
    fullband hybrid mode (SILK + CELT: TOC configurations 14-15); planned for the loss the
    peer reports, its speech packets carry FEC (SILK alone, wideband); a peer that did
    not ask for FEC gets none whatever the loss."""
    codec = create_codec("opus", fmtp="useinbandfec=1")
    signal = speech_like(2.0)
    frames = [signal[k : k + FRAME] for k in range(0, len(signal), FRAME)]
    clean = [codec.encode(frame) for frame in frames[:50]]
    assert not any(has_fec(packet) for packet in clean)
    assert sum(packet[0] >> 3 in (14, 15) for packet in clean) > 25
    codec.plan_for_loss(0.125)
    assert codec.planned_loss == 12
    lossy = [codec.encode(frame) for frame in frames[50:]]
    assert sum(has_fec(packet) for packet in lossy) > 25
    codec.plan_for_loss(0.9)
    assert codec.planned_loss == opus_module.MAX_PLANNED_LOSS
    unasked = create_codec("opus", fmtp="useinbandfec=0")
    unasked.plan_for_loss(0.2)
    assert unasked.planned_loss == 0
    assert not any(has_fec(unasked.encode(frame)) for frame in frames[50:])


def decoded(packets):
    codec = create_codec("opus")
    return [codec.decode(packet) for packet in packets]


def snr_db(reference, x):
    reference, x = reference.astype(float), x.astype(float)
    return 10 * np.log10(np.sum(reference**2) / max(np.sum((reference - x) ** 2), 1e-9))


def losses(packets, step=1):
    """For each packet k that can be rebuilt from packet k + 1's FEC: the SNR against the
    lossless decode of frame k by FEC and by conceal(), and of frame k + 1 decoded after
    each (FEC must leave the decoder ready for the packet it came from)."""
    reference = decoded(packets)
    results = []
    for lost in range(5, len(packets) - 1, step):
        with_fec, concealing = create_codec("opus"), create_codec("opus")
        for packet in packets[:lost]:
            with_fec.decode(packet)
            concealing.decode(packet)
        rebuilt = with_fec.decode_fec(packets[lost + 1], FRAME)
        if rebuilt is None:  # this packet carries no FEC (a pause, or none planned)
            continue
        assert rebuilt.shape == (FRAME,) and rebuilt.dtype == np.int16
        concealed = concealing.conceal()
        results.append(
            (
                snr_db(reference[lost], rebuilt),
                snr_db(reference[lost], concealed),
                snr_db(reference[lost + 1], with_fec.decode(packets[lost + 1])),
                snr_db(reference[lost + 1], concealing.decode(packets[lost + 1])),
            )
        )
    return np.array(results)


def test_fec_rebuilds_a_lost_tone_frame_far_closer_than_concealment():
    # Measured (libopus 1.6.1, complexity 1, SILK wideband): FEC 24-36 dB, PLC 3-13 dB,
    # FEC at least 20 dB ahead in every trial; the frame after it 23-34 dB against 1-12.
    results = losses(encoded(sine(440, 48000, 2.0)))
    assert len(results) >= 10
    fec, plc, after_fec, after_plc = results.T
    assert fec.min() > 18 and (fec - plc).min() > 12
    assert after_fec.min() > 18 and np.median(after_fec - after_plc) > 12


def test_fec_rebuilds_lost_speech_closer_than_concealment():
    # Measured on speech-like input: median 11 dB by FEC against 2 dB by PLC, FEC ahead in
    # 9 trials of 10 (a few frames at a syllable's onset FEC renders worse).
    results = losses(encoded(speech_like(2.0)), step=2)
    assert len(results) >= 20
    fec, plc, after_fec, after_plc = results.T
    assert np.median(fec) - np.median(plc) > 6
    assert np.mean(fec > plc) > 0.75
    assert np.median(after_fec) - np.median(after_plc) > 4


def test_packets_without_fec_give_none_and_leave_the_decoder_untouched():
    signal = sine(440, 48000, 0.6)
    plain = encoded(signal, fmtp="")  # the peer did not ask for FEC: none is sent
    assert not has_fec(plain[10])
    codec, untouched = create_codec("opus"), create_codec("opus")
    for k, packet in enumerate(plain):
        assert codec.decode_fec(packet, FRAME) is None
        assert codec.decode_fec(CELT_SILENCE, FRAME) is None  # CELT has no FEC
        assert codec.decode_fec(b"", FRAME) is None
        assert np.array_equal(codec.decode(packet), untouched.decode(packet)), k


def primed():
    """A decoder that decoded 10 packets of a tone, the packets, and a later one with FEC."""
    packets = encoded(sine(440, 48000, 0.6))
    codec = create_codec("opus")
    for packet in packets[:10]:
        codec.decode(packet)
    return codec, packets, next(p for p in packets[11:] if has_fec(p))


def test_fec_needs_a_stretch_libopus_can_rebuild():
    codec, _packets, following = primed()
    assert codec.decode_fec(following, 480) is None  # shorter than the packet's frame
    assert codec.decode_fec(following, 1000) is None  # not whole 2.5 ms
    assert codec.decode_fec(following, 0) is None
    assert codec.decode_fec(following, 6000) is None  # over 120 ms
    assert codec.decode_fec(following, FRAME) is not None


def test_a_longer_lost_stretch_is_concealed_then_rebuilt():
    """Two frames lost: libopus's PLC for the first (what conceal() gives), the next
    packet's FEC for the second.  FEC continues from the concealed audio, so on a tone it
    is off in phase and far from the 30 dB of a single loss (measured: median 6 dB, against
    1 dB for a second conceal(); ahead in every trial)."""
    packets = encoded(sine(440, 48000, 1.6))
    reference = decoded(packets)
    ahead = []
    for lost in range(5, len(packets) - 2):
        if not has_fec(packets[lost + 2]):
            continue
        with_fec, concealing = create_codec("opus"), create_codec("opus")
        for packet in packets[:lost]:
            with_fec.decode(packet)
            concealing.decode(packet)
        rebuilt = with_fec.decode_fec(packets[lost + 2], 2 * FRAME)
        assert rebuilt.shape == (2 * FRAME,)
        assert np.array_equal(rebuilt[:FRAME], concealing.conceal())
        second = reference[lost + 1]
        ahead.append(snr_db(second, rebuilt[FRAME:]) - snr_db(second, concealing.conceal()))
    assert len(ahead) >= 10
    assert min(ahead) > 0 and np.median(ahead) > 3


def test_after_celt_audio_fec_gives_none():
    codec, packets, following = primed()
    codec.decode(CELT_SILENCE)
    assert codec.decode_fec(following, FRAME) is None  # libopus would only conceal
    codec.decode(packets[10])
    assert codec.decode_fec(following, FRAME) is not None


def test_codecs_without_fec_give_none(monkeypatch):
    packets = encoded(sine(440, 48000, 0.3))
    for name in ("PCMU", "PCMA", "G722"):
        codec = create_codec(name)
        assert codec.decode_fec(packets[5], codec.info.samples_per_frame) is None
    monkeypatch.setattr(opus_module, "libopus", lambda: None)  # PyAV's decoder
    codec = create_codec("opus")
    codec.decode(packets[4])
    assert codec.decode_fec(packets[6], FRAME) is None


@pytest.mark.parametrize(
    "payload", [b"\x03\x00", b"\x01\x00\x00\x00", b"\x02\xfb\x00", b"\x03\x3f" + bytes(60)]
)
def test_malformed_packets_give_none(payload):
    codec = create_codec("opus")
    codec.decode(encoded(sine(440, 48000, 0.1))[2])
    assert codec.decode_fec(payload, FRAME) is None


# --- JitterBuffer.peek ---------------------------------------------------------------------


def packets(n, ts0, *, seq0=65530, step=FRAME):
    """n consecutive 20 ms packets (payload: their index) from ``ts0``, modulo 2**32."""
    return [
        RTPPacket(111, (seq0 + i) & 0xFFFF, (ts0 + i * step) & 0xFFFFFFFF, 7, bytes([i]))
        for i in range(n)
    ]


def play(jb, stream, missing, ticks):
    """Sends ``stream`` but the packets in ``missing``, 20 ms apart with a 5 ms transit,
    and plays a slot every 20 ms; for each LOST frame, what peek() shows for the slot after
    it (its statistics unchanged) and what the next get() plays."""
    seen = []
    pending = after_lost = False
    for tick in range(ticks):
        now = tick * 0.02 + 0.005
        if tick < len(stream) and tick not in missing:
            jb.put(stream[tick], now)
        frame = jb.get(now + 0.007)
        if after_lost:
            seen.append((pending, frame))
        after_lost = frame is not None and frame.kind is FrameKind.LOST
        if after_lost and jb.statistics.played:
            before = repr(jb.statistics)
            pending = jb.peek(frame.timestamp + frame.samples)
            assert repr(jb.statistics) == before
    return seen


@pytest.mark.parametrize("ts0", [1000, 0xFFFFFFFF - 10 * FRAME + 1])  # the second wraps
def test_peek_shows_the_packet_after_a_lost_one(ts0):
    stream = packets(40, ts0)
    jb = JitterBuffer(48000, ptime=20)
    seen = play(jb, stream, {15, 22, 23}, 43)
    # One LOST frame each for 15, 22 and 23 (no expansion here: a steady stream): the
    # packet after 15 and after 23 are there, the one after 22 is lost too.
    assert [(p and p.payload[0], f.kind, f.packet and f.packet.payload[0]) for p, f in seen] == [
        (16, FrameKind.AUDIO, 16),
        (None, FrameKind.LOST, None),
        (24, FrameKind.AUDIO, 24),
    ]
    assert all(p is None or p is f.packet for p, f in seen)  # the very packet get() plays
    statistics = jb.statistics
    assert (statistics.lost, statistics.played, statistics.underruns) == (3, 37, 0)


def test_peek_shows_nothing_off_the_next_slot():
    jb = JitterBuffer(48000, ptime=20)
    stream = packets(10, 5000)
    assert jb.peek(5000) is None  # not playing yet
    for k, packet in enumerate(stream[:4]):
        jb.put(packet, 0.005 + k * 0.02)
    now = 0.075  # 70 ms after the first packet: over the 60 ms target, under 80
    frame = jb.get(now)
    assert frame.kind is FrameKind.AUDIO and frame.packet is stream[0]
    assert jb.peek(frame.timestamp + FRAME) is stream[1]  # the next slot's
    assert jb.peek(frame.timestamp + 2 * FRAME) is None  # not the next slot
    assert jb.peek(frame.timestamp + FRAME + (1 << 32)) is stream[1]  # modulo 2**32
    # A LOST frame that only grows the delay: its slot comes again, so what follows it
    # is not the next slot's packet.
    expanded = jb.get(now)  # no time has passed: the delay fell under the target
    assert expanded.kind is FrameKind.LOST and jb.statistics.expanded == 1
    assert jb.peek(expanded.timestamp + expanded.samples) is None
    assert jb.get(now + 0.02).packet is stream[1]
