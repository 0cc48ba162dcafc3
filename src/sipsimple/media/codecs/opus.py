"""Opus (RFC 7587): mono, 48 kHz, 20 ms frames by default.

The codec is the libopus that ships inside the PyAV wheel, called directly through ctypes
(ARCHITECTURE.md section 5: codecs come from PyAV's wheel; this keeps its library and
skips its Python wrapper).  PyAV's own path costs 45-70 us more CPU time per 20 ms encode
(+50 % at our complexity) and ~5 us more per decode: FFmpeg wants fixed-size encoder
input, so PyAV sends every frame through an audio filter graph (push, pull, and a pull
that raises EAGAIN) before avcodec_send_frame.  Where the wheel has no separate libopus
(another layout, a PyAV built on a system FFmpeg) the codec runs through PyAV's libopus
encoder and decoder with the same settings, and sends the same bytes.

The remote side's fmtp tells our encoder what it wants to receive: maxplaybackrate limits
the coded bandwidth, maxaveragebitrate caps the bit rate, cbr, useinbandfec and minptime
are honoured; stereo is accepted but we always send mono (RFC 7587 allows it).

Loss: a packet's SILK layer may carry a coarser copy of the frame before it (in-band FEC,
LBRR, RFC 6716 4.2.4).  When a packet is lost and the next one is already in the jitter
buffer, the playout asks decode_fec() for the lost frame from that copy (libopus's
opus_decode with decode_fec=1), so the fmtp we offer says useinbandfec=1 (RFC 7587 6.1:
we can use it, send it).  PyAV's decoder takes no such request: where the wheel has no
libopus of its own (or an older one, without opus_packet_has_lbrr) we offer
useinbandfec=0.  Otherwise loss concealment is libopus's own PLC: a packet whose frames
all have length zero, which the decoder treats as lost frames (RFC 6716 3.2.1), as many
as the last packet carried.

FEC has a price in audio band: an encoder asked for it that plans for loss codes voice
with SILK alone (libopus's mode decision, VOIP application), wideband (audio up to 8 kHz)
rather than hybrid fullband at 32 kbit/s.  So, as WebRTC does, our encoder plans for the
loss the peer reports in RTCP (plan_for_loss(), from each receiver report on our stream,
at most MAX_PLANNED_LOSS): nothing while the path loses nothing - fullband, no FEC - and
FEC once the peer reports loss.  (Wideband costs less CPU, speech-like, per 20 ms frame:
encoding 106 us against 130, decoding 26 against 42; the instruction counts below are of
fullband hybrid.)  The PyAV fallback cannot change its plan once it has started: it plans
for no loss, so it sends no FEC (and sends what the libopus path sends on a clean path).
A lost frame rebuilt from FEC costs what PLC does (~40 us).

Complexity: COMPLEXITY = 1, for CPU.  The target is 50 calls per process within 70 % of a
core, all RTP work included: 280 us per call and 20 ms frame, for one encode, one decode
and two packets' RTP and mixing.  Encoding costs (thousands of instructions per 20 ms
frame, callgrind; libopus 1.6.1, 32 kbit/s VBR fullband voip as we send it):

    complexity        0     1     2     3   4-5     6     7  8-10
    speech-like     722   787  1034  1092  1437  1531  1684  1950
    440 Hz tone     780   869  1105  1176  1493  1673  1083  1166

(speech-like: harmonics of a drifting pitch in syllable bursts, fricative noise and
pauses.  From 7 up libopus analyses its input and codes a pure tone with CELT alone,
which is cheap: a tone, as benchmarks/bench_rtp_calls.py's calls carry, understates what
speech costs at high complexity.)  A million instructions take ~140 us here, so
complexity 5 (pjsip's default, PJMEDIA_CODEC_OPUS_DEFAULT_COMPLEXITY; WebRTC uses 5 on
phones and 9 elsewhere) leaves no room for the rest, and 1 about halves it.  A crude quality
check, the log-spectral distance of decoded to original speech-like input, is the same
at 1 as at 5 (5.3 dB) and worse at 0 (6.5 dB).  Forcing CELT-only mode would cut encoding
and decoding of speech to ~40 % of that (50 and 28 us per frame at complexity 1) but give
up SILK's coding of speech at low bit rates and its concealment: not done.
benchmarks/bench_media.py prints the encoding cost by complexity.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import av
import numpy as np

from sipsimple.media.codecs._pyav import PyAVDecoder, PyAVEncoder
from sipsimple.media.codecs.base import AudioCodec, CodecInfo
from sipsimple.media.errors import CodecError

__all__ = ["OPUS_INFO", "Opus", "OpusParameters"]

DEFAULT_BITRATE = 32000
COMPLEXITY = 1  # libopus encoder complexity (0-10): see the module docstring
_FRAME_DURATIONS = (10, 20, 40, 60)  # milliseconds: the Opus frame sizes we send
_PARAMETER_RANGES = {
    "maxplaybackrate": (8000, 48000),
    "sprop_maxcapturerate": (8000, 48000),
    "maxaveragebitrate": (6000, 510000),
    "minptime": (3, 120),
    "stereo": (0, 1),
    "sprop_stereo": (0, 1),
    "cbr": (0, 1),
    "useinbandfec": (0, 1),
    "usedtx": (0, 1),
}
# maxplaybackrate -> the Opus bandwidth that carries it (RFC 7587 section 6.1): libopus's
# OPUS_BANDWIDTH_* value and FFmpeg's "cutoff" in Hz for the same band.
_BANDWIDTHS = (
    (8000, 1101, 4000),
    (12000, 1102, 6000),
    (16000, 1103, 8000),
    (24000, 1104, 12000),
    (48000, 1105, 20000),
)
_SAMPLE_RATE = 48000
_APPLICATION_VOIP = 2048
_SET_BITRATE, _SET_MAX_BANDWIDTH, _SET_VBR, _SET_COMPLEXITY = 4002, 4004, 4006, 4010
_SET_INBAND_FEC, _SET_PACKET_LOSS_PERC, _SET_VBR_CONSTRAINT = 4012, 4014, 4020
MAX_PLANNED_LOSS = 25  # percent: the most loss the encoder plans its in-band FEC for
_MAX_PACKET = 4000  # bytes: what the libopus documentation recommends for one packet
_MAX_SAMPLES = 5760  # 120 ms at 48 kHz, the longest an Opus packet lasts
_PLC_STEP = 120  # 2.5 ms at 48 kHz: a lost stretch libopus fills is a multiple of it
# Where wheels put the libraries they bundle, relative to the av package directory:
# auditwheel (Linux) and delvewheel (Windows) in ../av.libs, delocate (macOS) in .dylibs.
_WHEEL_LIBRARIES = (("..", "av.libs"), (".dylibs",))


@dataclass(frozen=True, slots=True)
class OpusParameters:
    """The RFC 7587 fmtp parameters; parse() ignores unknown or malformed values."""

    maxplaybackrate: int = 48000
    sprop_maxcapturerate: int = 48000
    maxaveragebitrate: int | None = None
    stereo: bool = False
    sprop_stereo: bool = False
    cbr: bool = False
    useinbandfec: bool = False
    usedtx: bool = False
    minptime: int | None = None

    @classmethod
    def parse(cls, fmtp: str) -> OpusParameters:
        values: dict[str, object] = {}
        for item in fmtp.split(";"):
            key, _, value = item.partition("=")
            name = key.strip().lower().replace("-", "_")
            try:
                number = int(value.strip())
            except ValueError:
                continue
            bounds = _PARAMETER_RANGES.get(name)
            if bounds is not None and bounds[0] <= number <= bounds[1]:
                values[name] = bool(number) if bounds == (0, 1) else number
        return cls(**values)  # type: ignore[arg-type]

    def __str__(self) -> str:
        items = [f"maxplaybackrate={self.maxplaybackrate}"]
        if self.sprop_maxcapturerate != 48000:
            items.append(f"sprop-maxcapturerate={self.sprop_maxcapturerate}")
        if self.maxaveragebitrate is not None:
            items.append(f"maxaveragebitrate={self.maxaveragebitrate}")
        items.append(f"stereo={int(self.stereo)}")
        if self.sprop_stereo:
            items.append("sprop-stereo=1")
        if self.cbr:
            items.append("cbr=1")
        items.append(f"useinbandfec={int(self.useinbandfec)}")
        if self.usedtx:
            items.append("usedtx=1")
        if self.minptime is not None:
            items.append(f"minptime={self.minptime}")
        return ";".join(items)


# --- libopus through ctypes: loading it, and what we offer with it ------------------------


@cache
def libopus() -> ctypes.CDLL | None:
    """The libopus bundled in the PyAV wheel (the one FFmpeg itself calls), or None."""
    package = Path(av.__file__).parent
    for parts in _WHEEL_LIBRARIES:
        for path in sorted(package.joinpath(*parts).glob("*opus*")):
            try:
                lib = ctypes.CDLL(str(path))
                _declare(lib)
            except (OSError, AttributeError):
                continue
            return lib
    return None


def _declare(lib: ctypes.CDLL) -> None:
    """Declare the prototypes we call (AttributeError: not libopus, or too old a one)."""
    p, i, i32 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int32
    for name, argtypes, restype in (
        ("opus_encoder_get_size", [i], i),
        ("opus_encoder_init", [p, i32, i, i], i),
        # variadic: the value is passed as one more argument of its own type
        ("opus_encoder_ctl", [p, i], i),
        ("opus_encode", [p, p, i, p, i32], i32),
        ("opus_decoder_get_size", [i], i),
        ("opus_decoder_init", [p, i32, i], i),
        ("opus_decode", [p, ctypes.c_char_p, i32, p, i, i], i),
        ("opus_packet_has_lbrr", [ctypes.c_char_p, i32], i),
        ("opus_packet_get_samples_per_frame", [ctypes.c_char_p, i32], i),
        ("opus_strerror", [i], ctypes.c_char_p),
    ):
        function = getattr(lib, name)
        function.argtypes, function.restype = argtypes, restype


def _check(lib: ctypes.CDLL, result: int, what: str) -> int:
    if result < 0:
        raise CodecError(f"{what}: {lib.opus_strerror(result).decode()}")
    return result


# What we offer (OpusParameters' defaults, RFC 7587 6.1) asks for in-band FEC only where
# our decoder can use it: libopus() is settled once, so this is too.
OPUS_INFO = CodecInfo(
    "opus", 111, 48000, 48000, channels=2, ptime=20,
    fmtp=str(OpusParameters(useinbandfec=libopus() is not None)),
)  # fmt: skip


class Opus(AudioCodec):
    """Opus encoder configured by the remote fmtp, and a libopus decoder with PLC and
    in-band FEC."""

    def __init__(self, info: CodecInfo = OPUS_INFO, remote_fmtp: str = "") -> None:
        self.parameters = OpusParameters.parse(remote_fmtp)
        ptime = max(info.ptime, self.parameters.minptime or 0)
        ptime = next((d for d in _FRAME_DURATIONS if d >= ptime), _FRAME_DURATIONS[-1])
        super().__init__(replace(info, ptime=ptime))
        bit_rate = min(DEFAULT_BITRATE, self.parameters.maxaveragebitrate or DEFAULT_BITRATE)
        _, bandwidth, cutoff = next(
            b for b in _BANDWIDTHS if self.parameters.maxplaybackrate <= b[0]
        )
        lib = libopus()
        self._encoder: LibOpusEncoder | PyAVEncoder
        self._decoder: LibOpusDecoder | PyAVDecoder
        if lib is not None:
            self._encoder = LibOpusEncoder(
                lib,
                self.info.samples_per_frame,
                bit_rate=bit_rate,
                bandwidth=bandwidth,
                cbr=self.parameters.cbr,
                fec=self.parameters.useinbandfec,
            )
            self._decoder = LibOpusDecoder(lib)
        else:
            options = {
                "application": "voip",
                "frame_duration": str(ptime),
                "vbr": "off" if self.parameters.cbr else "on",
                "cutoff": str(cutoff),
                "compression_level": str(COMPLEXITY),
            }
            if self.parameters.useinbandfec:
                options |= {"fec": "1", "packet_loss": "0"}  # fixed: see the module docstring
            self._encoder = PyAVEncoder("libopus", info.sample_rate, options, bit_rate)
            self._decoder = PyAVDecoder("libopus", info.sample_rate)
        # The last packet's configuration and frame count with every frame empty (code 3,
        # RFC 6716 3.2.5): the decoder conceals that many frames of that duration.
        self._plc_packet: bytes | None = None
        self.planned_loss = 0  # percent: what our in-band FEC is planned for

    def plan_for_loss(self, fraction: float) -> None:
        """Plans our in-band FEC (sent when the peer asked for it) for ``fraction`` of our
        packets lost, as the peer's RTCP reports (at most MAX_PLANNED_LOSS percent)."""
        percent = min(MAX_PLANNED_LOSS, round(fraction * 100))
        encoder = self._encoder
        if (
            percent != self.planned_loss
            and self.parameters.useinbandfec
            and isinstance(encoder, LibOpusEncoder)
        ):
            encoder.plan_for_loss(percent)
            self.planned_loss = percent

    def _encode(self, pcm: np.ndarray) -> bytes:
        if len(pcm) != self.info.samples_per_frame:
            raise ValueError(
                f"Opus encodes frames of {self.info.samples_per_frame} samples "
                f"({self.info.ptime} ms), got {len(pcm)}"
            )
        return self._encoder.encode(pcm)

    def _decode(self, payload: bytes) -> np.ndarray:
        pcm = self._decoder.decode(payload)
        code = payload[0] & 0x03  # frames: code 0 one, 1 and 2 two, 3 a count (RFC 6716 3.2)
        frames = payload[1] & 0x3F if code == 3 else (1, 2, 2)[code]
        self._plc_packet = bytes((payload[0] | 0x03, frames))
        return pcm

    def conceal(self) -> np.ndarray:
        if self._plc_packet is None:
            return super().conceal()
        return self._decoder.decode(self._plc_packet)

    def _decode_fec(self, payload: bytes, samples: int) -> np.ndarray | None:
        """The ``samples`` samples lost just before ``payload``, rebuilt from the copy of
        them that its SILK layer carries (LBRR; RFC 7587 3.3), or None where there is no
        such copy to use: PyAV's decoder (it takes no FEC request), a packet without one
        (CELT-only, or its sender put none in), a stretch shorter than the packet's frame
        or not whole 2.5 ms, a decoder whose last audio was CELT-only.  libopus would run
        its PLC there, as conceal() does.  Of a stretch longer than the packet's frame,
        PLC fills the part before the frame's duration and FEC the rest.  Decode
        ``payload`` itself next: the decoder state leads into it."""
        decoder = self._decoder
        last = self._plc_packet
        if not isinstance(decoder, LibOpusDecoder) or not payload or (last and last[0] & 0x80):
            return None  # (a TOC byte with its top bit set: CELT-only, RFC 6716 3.1)
        return decoder.decode_fec(payload, samples)


# --- libopus's encoder and decoder --------------------------------------------------------


class LibOpusEncoder:
    """One mono 48 kHz libopus encoder whose state lives in a buffer we own (no destroy)."""

    def __init__(
        self,
        lib: ctypes.CDLL,
        frame_samples: int,
        *,
        bit_rate: int,
        bandwidth: int,
        cbr: bool,
        fec: bool,
        complexity: int | None = None,
    ) -> None:
        self._lib = lib
        self._state = ctypes.create_string_buffer(lib.opus_encoder_get_size(1))
        self._address = ctypes.addressof(self._state)
        _check(
            lib,
            lib.opus_encoder_init(self._address, _SAMPLE_RATE, 1, _APPLICATION_VOIP),
            "opus_encoder_init",
        )
        # FFmpeg's "vbr on" is unconstrained VBR: libopus's default is the constrained kind.
        settings = [
            (_SET_BITRATE, bit_rate),
            (_SET_MAX_BANDWIDTH, bandwidth),
            (_SET_COMPLEXITY, COMPLEXITY if complexity is None else complexity),
            (_SET_VBR, int(not cbr)),
            (_SET_VBR_CONSTRAINT, 0),
            (_SET_INBAND_FEC, int(fec)),
            (_SET_PACKET_LOSS_PERC, 0),  # plan_for_loss() changes it
        ]
        for request, value in settings:
            self._control(request, value)
        self._pcm = np.zeros(frame_samples, dtype=np.int16)
        self._pcm_address = self._pcm.ctypes.data
        self._packet = ctypes.create_string_buffer(_MAX_PACKET)
        self._packet_address = ctypes.addressof(self._packet)

    def encode(self, pcm: np.ndarray) -> bytes:
        np.copyto(self._pcm, pcm)  # also takes non-contiguous input
        size = self._lib.opus_encode(
            self._address, self._pcm_address, len(self._pcm), self._packet_address, _MAX_PACKET
        )
        return self._packet[: _check(self._lib, size, "opus_encode")]

    def plan_for_loss(self, percent: int) -> None:
        """The packet loss, in percent, its in-band FEC (if on) is planned for."""
        self._control(_SET_PACKET_LOSS_PERC, percent)

    def _control(self, request: int, value: int) -> None:
        result = self._lib.opus_encoder_ctl(self._address, request, ctypes.c_int(value))
        _check(self._lib, result, f"opus_encoder_ctl({request}, {value})")


class LibOpusDecoder:
    """One mono 48 kHz libopus decoder (stereo packets are downmixed by libopus)."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib
        self._state = ctypes.create_string_buffer(lib.opus_decoder_get_size(1))
        self._address = ctypes.addressof(self._state)
        _check(lib, lib.opus_decoder_init(self._address, _SAMPLE_RATE, 1), "opus_decoder_init")
        self._pcm = np.zeros(_MAX_SAMPLES, dtype=np.int16)
        self._pcm_address = self._pcm.ctypes.data

    def decode(self, payload: bytes) -> np.ndarray:
        samples = self._lib.opus_decode(
            self._address, payload, len(payload), self._pcm_address, _MAX_SAMPLES, 0
        )
        return self._pcm[: _check(self._lib, samples, "undecodable opus payload")].copy()

    def decode_fec(self, payload: bytes, samples: int) -> np.ndarray | None:
        """Opus.decode_fec() once the codec has seen nothing against it (None: no FEC)."""
        lib = self._lib
        if (
            samples % _PLC_STEP
            or not 0 < samples <= _MAX_SAMPLES
            or lib.opus_packet_has_lbrr(payload, len(payload)) != 1  # < 0: malformed
            or samples < lib.opus_packet_get_samples_per_frame(payload, _SAMPLE_RATE)
        ):
            return None
        count = lib.opus_decode(self._address, payload, len(payload), self._pcm_address, samples, 1)
        return self._pcm[: _check(lib, count, "undecodable opus FEC")].copy()
