"""Codecs: G.711 bit-exactness, sine-wave quality per codec, concealment, Opus fmtp, registry."""

import av
import numpy as np
import pytest

from sipsimple.media.codecs import (
    CODECS,
    OpusParameters,
    available_codecs,
    codec_info,
    create_codec,
)
from sipsimple.media.codecs import opus as opus_module
from sipsimple.media.codecs._pyav import PyAVEncoder
from sipsimple.media.codecs.base import FADE_FRAMES
from sipsimple.media.codecs.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from sipsimple.media.errors import CodecError

# --- ITU-T G.191 (STL) g711.c, written out sample by sample as the reference -------------


def ref_ulaw_compress(sample: int) -> int:
    absno = ((~sample) >> 2) + 33 if sample < 0 else (sample >> 2) + 33
    absno = min(absno, 0x1FFF)
    i = absno >> 6
    segno = 1
    while i != 0:
        segno += 1
        i >>= 1
    high_nibble = 0x0008 - segno
    low_nibble = 0x000F - ((absno >> segno) & 0x000F)
    code = (high_nibble << 4) | low_nibble
    return code | 0x0080 if sample >= 0 else code


def ref_ulaw_expand(code: int) -> int:
    sign = -1 if code < 0x0080 else 1
    mantissa = ~code
    exponent = (mantissa >> 4) & 0x0007
    segment = exponent + 1
    mantissa &= 0x000F
    step = 4 << segment
    return sign * ((0x0080 << exponent) + step * mantissa + step // 2 - 4 * 33)


def ref_alaw_compress(sample: int) -> int:
    ix = (~sample) >> 4 if sample < 0 else sample >> 4
    if ix > 15:
        iexp = 1
        while ix > 16 + 15:
            ix >>= 1
            iexp += 1
        ix -= 16
        ix += iexp << 4
    if sample >= 0:
        ix |= 0x0080
    return ix ^ 0x0055


def ref_alaw_expand(code: int) -> int:
    ix = (code ^ 0x0055) & 0x007F
    iexp = ix >> 4
    mant = ix & 0x000F
    if iexp > 0:
        mant += 16
    mant = (mant << 4) + 0x0008
    if iexp > 1:
        mant <<= iexp - 1
    return mant if code > 127 else -mant


ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = bytes(range(256))


@pytest.mark.parametrize(
    ("encode", "reference"), [(ulaw_encode, ref_ulaw_compress), (alaw_encode, ref_alaw_compress)]
)
def test_g711_encoding_is_bit_exact_for_every_sample(encode, reference):
    expected = bytes(reference(int(x)) for x in ALL_SAMPLES)
    assert encode(ALL_SAMPLES) == expected


@pytest.mark.parametrize(
    ("decode", "reference", "ffmpeg"),
    [(ulaw_decode, ref_ulaw_expand, "pcm_mulaw"), (alaw_decode, ref_alaw_expand, "pcm_alaw")],
)
def test_g711_decoding_is_bit_exact_for_every_code(decode, reference, ffmpeg):
    ours = decode(ALL_CODES)
    assert ours.tolist() == [reference(c) for c in ALL_CODES]
    # and FFmpeg's independent implementation agrees
    decoder = av.CodecContext.create(ffmpeg, "r")
    decoder.sample_rate = 8000
    decoder.layout = "mono"
    theirs = np.concatenate([f.to_ndarray()[0] for f in decoder.decode(av.Packet(ALL_CODES))])
    assert np.array_equal(ours, theirs)


@pytest.mark.parametrize(
    ("encode", "decode"), [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)]
)
def test_g711_decoded_values_encode_back_to_their_code(encode, decode):
    codes = np.frombuffer(ALL_CODES, dtype=np.uint8)
    again = np.frombuffer(encode(decode(ALL_CODES)), dtype=np.uint8)
    differing = set(codes[codes != again].tolist())
    assert differing <= {0x7F}  # mu-law's "negative zero" decodes to 0, which encodes as 0xFF


# --- sine waves through each codec -----------------------------------------------------


def round_trip(codec, signal):
    n = codec.info.samples_per_frame
    return np.concatenate(
        [codec.decode(codec.encode(signal[k : k + n])) for k in range(0, len(signal), n)]
    )


def sine(frequency, rate, seconds, amplitude=10000):
    t = np.arange(int(rate * seconds)) / rate
    return np.round(amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.int16)


def dominant_frequency(x, rate):
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spectrum) * rate / len(x)


def snr_db(x, frequency, rate):
    """Signal to noise-and-distortion: the best-fitting sine (any delay) against the rest."""
    t = np.arange(len(x)) / rate
    basis = np.stack(
        [np.sin(2 * np.pi * frequency * t), np.cos(2 * np.pi * frequency * t), np.ones_like(t)], 1
    )
    coefficients, *_ = np.linalg.lstsq(basis, x.astype(float), rcond=None)
    fitted = basis @ coefficients
    tone = fitted - coefficients[2]
    return 10 * np.log10(np.sum(tone**2) / np.sum((x - fitted) ** 2)), np.hypot(*coefficients[:2])


def speech_like(seconds=1.0, seed=5):
    """Harmonics of a drifting pitch in syllable-like bursts, fricative noise and pauses."""
    rng = np.random.default_rng(seed)
    n = int(48000 * seconds)
    t = np.arange(n) / 48000
    pitch = 140 + 40 * np.sin(2 * np.pi * 1.3 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / 48000
    voiced = sum(np.sin(k * phase) / k for k in range(1, 20))
    syllables = np.clip(np.sin(2 * np.pi * 3 * t), 0, None)
    fricatives = rng.normal(0, 0.3, n) * (np.sin(2 * np.pi * 0.7 * t) > 0.8)
    return np.round(6000 * (voiced * syllables + fricatives)).astype(np.int16)


@pytest.fixture(params=["libopus", "pyav"])
def opus_backend(request, monkeypatch):
    """Run an Opus test on each way to libopus: direct (ctypes) and through PyAV."""
    if request.param == "pyav":
        monkeypatch.setattr(opus_module, "libopus", lambda: None)
    return request.param


# The minimum SNR each codec must keep for a -10 dBFS sine (measured values are 2-10 dB above;
# Opus at our complexity 1 codes a tone with SILK, ~4 dB below what complexity 10 gets).
QUALITY = [
    ("PCMU", 1000, 33.0),
    ("PCMA", 1000, 33.0),
    ("G722", 1000, 40.0),
    ("G722", 6000, 22.0),  # wideband: 6 kHz passes (a narrowband codec could not carry it)
    ("opus", 1000, 32.0),
    ("opus", 6000, 29.0),
]


@pytest.mark.parametrize(
    ("name", "frequency", "minimum_snr", "backend"),
    [(*case, "libopus") for case in QUALITY]
    + [(*case, "pyav") for case in QUALITY if case[0] == "opus"],
)
def test_sine_survives_encode_and_decode(name, frequency, minimum_snr, backend, monkeypatch):
    if backend == "pyav":
        monkeypatch.setattr(opus_module, "libopus", lambda: None)
    codec = create_codec(name)
    rate = codec.info.sample_rate
    out = round_trip(codec, sine(frequency, rate, 1.0))
    assert len(out) == rate
    steady = out[rate // 2 :]
    assert abs(dominant_frequency(steady, rate) - frequency) <= 2
    snr, amplitude = snr_db(steady, frequency, rate)
    assert snr >= minimum_snr
    assert 20 * np.log10(amplitude / 10000) == pytest.approx(0.0, abs=0.5)


@pytest.mark.parametrize("name", ["PCMU", "PCMA", "G722"])
def test_repeat_and_fade_concealment(name):
    codec = create_codec(name)
    last = codec.decode(codec.encode(sine(500, codec.info.sample_rate, 0.02)))
    frames = [codec.conceal() for _ in range(FADE_FRAMES + 1)]
    assert all(len(f) == len(last) for f in frames)
    assert np.array_equal(frames[0][:1], last[:1])  # starts as the last frame...
    peaks = [int(np.abs(f.astype(int)).max()) for f in frames]
    assert peaks == sorted(peaks, reverse=True) and peaks[0] > 0.7 * np.abs(last).max()
    assert peaks[-1] == 0  # ...and fades to silence
    codec.decode(codec.encode(sine(500, codec.info.sample_rate, 0.02)))
    assert np.abs(codec.conceal()).max() > 0  # a good frame resets the fade


def test_opus_concealment_uses_libopus_plc(opus_backend):
    codec = create_codec("opus")
    round_trip(codec, sine(440, 48000, 0.2))
    concealed = [codec.conceal() for _ in range(20)]
    assert all(len(f) == 960 for f in concealed)
    first = concealed[0]
    assert np.abs(first).max() > 3000  # continues the tone rather than repeating silence
    assert abs(dominant_frequency(first, 48000) - 440) < 100
    assert np.abs(concealed[-1]).max() < np.abs(first).max() / 4  # and fades out


def test_concealment_before_any_packet_is_silence():
    for name in available_codecs():
        codec = create_codec(name)
        assert not np.abs(codec.conceal()).any()


# --- Opus parameters --------------------------------------------------------------------


def test_opus_fmtp_parsing_and_formatting():
    params = OpusParameters.parse(
        "minptime=10; useinbandfec=1;MAXPLAYBACKRATE=16000;stereo=1;sprop-stereo=1;"
        "maxaveragebitrate=20000;cbr=1;usedtx=1;bogus;x=y;maxplaybackrate=99"
    )
    assert params == OpusParameters(
        maxplaybackrate=16000,
        maxaveragebitrate=20000,
        stereo=True,
        sprop_stereo=True,
        cbr=True,
        useinbandfec=True,
        usedtx=True,
        minptime=10,
    )
    assert OpusParameters.parse(str(params)) == params
    assert OpusParameters.parse("") == OpusParameters()
    # What we offer: the RFC 7587 defaults, and in-band FEC where our decoder uses it.
    fec = opus_module.libopus() is not None
    assert CODECS["opus"].fmtp == str(OpusParameters(useinbandfec=fec))


def opus_packets(fmtp, frequency=1000, seconds=0.5):
    codec = create_codec("opus", fmtp=fmtp)
    n = codec.info.samples_per_frame
    signal = sine(frequency, 48000, seconds)
    return codec, [codec.encode(signal[k : k + n]) for k in range(0, len(signal), n)]


def speech_bit_rates(fmtp):
    codec = create_codec("opus", fmtp=fmtp)
    signal = speech_like(1.0)
    packets = [codec.encode(signal[k : k + 960]) for k in range(0, len(signal), 960)]
    sizes = [len(p) for p in packets[10:]]  # once VBR has settled
    return np.mean(sizes) * 8 * 50, set(sizes)


def test_opus_bitrate_and_cbr_follow_the_remote_fmtp(opus_backend):
    default, _ = speech_bit_rates("")
    capped, _ = speech_bit_rates("maxaveragebitrate=8000")
    higher, _ = speech_bit_rates("maxaveragebitrate=16000")
    _, cbr_sizes = speech_bit_rates("cbr=1")
    assert capped <= 8000 * 1.1 < higher <= 16000 * 1.1 < default <= 32000 * 1.1
    assert cbr_sizes == {80}  # 32 kbit/s in 20 ms packets, every one


def test_opus_maxplaybackrate_limits_the_coded_band(opus_backend):
    narrow, packets = opus_packets("maxplaybackrate=8000", frequency=6000)
    out = np.concatenate([narrow.decode(p) for p in packets])
    wide, packets = opus_packets("", frequency=6000)
    full = np.concatenate([wide.decode(p) for p in packets])
    assert np.abs(out[12000:]).max() < 0.1 * np.abs(full[12000:]).max()


def test_opus_minptime_and_ptime_choose_the_frame_duration(opus_backend):
    codec = create_codec("opus", fmtp="minptime=40")
    assert codec.info.ptime == 40 and codec.info.samples_per_frame == 1920
    assert len(codec.decode(codec.encode(np.zeros(1920, dtype=np.int16)))) == 1920
    assert len(codec.conceal()) == 1920  # PLC lasts as long as the packets it replaces
    assert create_codec("opus", ptime=30).info.ptime == 40  # rounded up to an Opus duration


def test_opus_decoder_takes_stereo_packets(opus_backend):
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = 48000
    encoder.layout = "stereo"
    encoder.format = "s16"
    encoder.open()
    stereo = np.repeat(sine(1000, 48000, 0.02), 2).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
    frame.sample_rate = 48000
    payload = b"".join(bytes(p) for p in encoder.encode(frame))
    assert create_codec("opus").decode(payload).shape == (960,)


# --- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["PCMU", "PCMA", "G722", "opus"])
def test_empty_payload_and_bad_pcm(name):
    codec = create_codec(name)
    with pytest.raises(CodecError):
        codec.decode(b"")
    with pytest.raises(ValueError):
        codec.encode(np.zeros(codec.info.samples_per_frame, dtype=np.float32))
    with pytest.raises(ValueError):
        codec.encode(np.zeros((1, codec.info.samples_per_frame), dtype=np.int16))


def test_opus_garbage_raises_codec_error_or_decodes(opus_backend):
    codec = create_codec("opus")
    rng = np.random.default_rng(1)
    for _ in range(200):
        payload = rng.integers(0, 256, rng.integers(1, 60), dtype=np.uint8).tobytes()
        try:
            out = codec.decode(payload)
        except CodecError:
            continue
        assert out.dtype == np.int16


# Invalid per RFC 6716 section 3.4: R1 (code 3 with no frame), R3 (code 1 with an odd
# length), R4 (code 2 with a first frame longer than the packet), R5 (code 3 with more
# than 120 ms of audio), and the reserved code-3 length of 255 frames.
MALFORMED_OPUS = [b"\x03\x00", b"\x01\x00\x00\x00", b"\x02\xfb\x00", b"\x03\x3f" + bytes(60)]


@pytest.mark.parametrize("payload", MALFORMED_OPUS)
def test_malformed_opus_packets_raise_codec_error(payload, opus_backend):
    codec = create_codec("opus")
    codec.decode(codec.encode(sine(440, 48000, 0.02)))
    with pytest.raises(CodecError):
        codec.decode(payload)
    assert len(codec.conceal()) == 960  # and the stream goes on


def test_frame_size_checks():
    with pytest.raises(ValueError, match="960"):
        create_codec("opus").encode(np.zeros(100, dtype=np.int16))
    with pytest.raises(ValueError, match="pairs"):
        create_codec("G722").encode(np.zeros(321, dtype=np.int16))


# --- registry ---------------------------------------------------------------------------


def test_registry_describes_each_codec():
    assert available_codecs() == ("opus", "G722", "PCMU", "PCMA")
    g722 = codec_info("g722")
    assert (g722.payload_type, g722.clock_rate, g722.sample_rate) == (9, 8000, 16000)
    assert (g722.rtpmap, g722.samples_per_frame, g722.timestamp_increment) == (
        "G722/8000",
        320,
        160,
    )
    opus = codec_info("OPUS")
    assert (opus.rtpmap, opus.samples_per_frame, opus.timestamp_increment) == (
        "opus/48000/2",
        960,
        960,
    )
    assert codec_info("pcmu").payload_type == 0 and codec_info("PCMA").payload_type == 8


def test_create_codec_with_negotiated_values_and_errors():
    codec = create_codec("PCMU", payload_type=0, ptime=30)
    assert codec.info.ptime == 30 and codec.info.samples_per_frame == 240
    assert create_codec("opus", payload_type=96).info.payload_type == 96
    with pytest.raises(CodecError, match="unknown codec"):
        create_codec("speex")
    with pytest.raises(ValueError):
        create_codec("PCMU", ptime=25)
    with pytest.raises(ValueError):
        create_codec("PCMU", payload_type=128)


# --- PyAV glue ----------------------------------------------------------------------------


OPUS_OPTIONS = {"application": "voip", "frame_duration": "20", "vbr": "on"}


@pytest.mark.parametrize(
    ("name", "rate", "options"), [("g722", 16000, {}), ("libopus", 48000, OPUS_OPTIONS)]
)
def test_reused_input_frame_encodes_as_fresh_frames_do(name, rate, options):
    """Our encoder refills one AudioFrame for every call: what it sends must be byte for
    byte what FFmpeg makes from a new frame each time (the encoder keeps no reference)."""
    encoder = PyAVEncoder(name, rate, options)
    twin = PyAVEncoder(name, rate, options)._context  # the same settings, fed by hand
    samples = rate // 50
    rng = np.random.default_rng(7)
    signal = (sine(700, rate, 1.0).astype(int) + rng.integers(-2000, 2000, rate)).astype(np.int16)
    ours, theirs = [], []
    for k in range(0, rate - samples + 1, samples):
        pcm = signal[k : k + samples]
        ours.append(encoder.encode(pcm))
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts = rate, k
        theirs.append(b"".join(bytes(p) for p in twin.encode(frame)))
    assert ours == theirs and all(ours)


# --- libopus direct ---------------------------------------------------------------------------


def test_the_pyav_wheel_libopus_is_found_and_used():
    lib = opus_module.libopus()
    assert lib is not None and lib.opus_get_version_string  # the wheel ships libopus
    codec = create_codec("opus")
    assert isinstance(codec._encoder, opus_module.LibOpusEncoder)
    assert isinstance(codec._decoder, opus_module.LibOpusDecoder)


def run_opus(fmtp, signal, monkeypatch, direct):
    with monkeypatch.context() as patch:
        if not direct:
            patch.setattr(opus_module, "libopus", lambda: None)
        encoder, decoder = create_codec("opus", fmtp=fmtp), create_codec("opus", fmtp=fmtp)
    n = encoder.info.samples_per_frame
    packets = [encoder.encode(signal[k : k + n]) for k in range(0, len(signal) - n + 1, n)]
    pcm = [decoder.decode(p) for p in packets] + [decoder.conceal() for _ in range(3)]
    return packets, np.concatenate(pcm)


@pytest.mark.parametrize(
    "fmtp",
    ["", "cbr=1;maxplaybackrate=16000", "useinbandfec=1;maxaveragebitrate=12000", "minptime=40",
     "maxplaybackrate=8000;maxaveragebitrate=64000", "maxplaybackrate=24000"],
)  # fmt: skip
def test_libopus_direct_is_byte_for_byte_ffmpeg_libopus(fmtp, monkeypatch):
    """The same settings reach libopus on both paths: FFmpeg's encoder (with our options)
    sends exactly our packets, and its decoder (PLC included) plays exactly our PCM."""
    signal = speech_like()
    ours, our_pcm = run_opus(fmtp, signal, monkeypatch, direct=True)
    theirs, their_pcm = run_opus(fmtp, signal, monkeypatch, direct=False)
    assert ours == theirs
    assert np.array_equal(our_pcm, their_pcm) and np.abs(our_pcm).max() > 1000


def test_libopus_encoder_takes_strided_input():
    signal = speech_like(0.2)
    wide = np.repeat(signal, 2)[::2]  # the same samples, not contiguous in memory
    assert not wide.flags.c_contiguous
    one, other = create_codec("opus"), create_codec("opus")
    for k in range(0, len(signal), 960):
        assert one.encode(wide[k : k + 960]) == other.encode(signal[k : k + 960])


def test_complexity_and_fec_reach_the_encoder():
    lib = opus_module.libopus()
    signal = speech_like(0.5)

    def packets(loss=0, **settings):
        settings = {"bit_rate": 32000, "bandwidth": 1105, "cbr": False, "fec": False} | settings
        encoder = opus_module.LibOpusEncoder(lib, 960, **settings)
        encoder.plan_for_loss(loss)
        return [encoder.encode(signal[k : k + 960]) for k in range(0, len(signal), 960)]

    default = packets()
    assert packets(complexity=opus_module.COMPLEXITY) == default
    assert packets(complexity=10) != default and packets(complexity=0) != default
    assert packets(fec=True) == default  # FEC planned for no loss: none sent
    assert packets(fec=True, loss=10) != default


@pytest.mark.parametrize("name", ["PCMU", "PCMA"])
def test_g711_encodes_many_frames_at_once_as_one_by_one(name):
    codec = create_codec(name)
    frames = np.random.default_rng(3).integers(-32768, 32767, (7, 160), dtype=np.int16)
    payloads = type(codec).encode_many(frames)
    assert payloads.dtype == np.uint8 and payloads.shape == (7, 160)
    assert [row.tobytes() for row in payloads] == [codec.encode(frame) for frame in frames]


@pytest.mark.parametrize("name", ["opus", "G722"])
def test_codecs_with_state_do_not_encode_many(name):
    assert type(create_codec(name)).encode_many is None
