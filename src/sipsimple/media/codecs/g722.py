"""G.722 through PyAV: 16 kHz audio on an 8000 Hz RTP clock (RFC 3551 section 4.5.2)."""

from __future__ import annotations

import numpy as np

from sipsimple.media.codecs._pyav import PyAVDecoder, PyAVEncoder
from sipsimple.media.codecs.base import AudioCodec, CodecInfo

__all__ = ["G722", "G722_INFO"]

G722_INFO = CodecInfo("G722", 9, 8000, 16000)


class G722(AudioCodec):
    """G.722 at 64 kbit/s: two samples per octet."""

    def __init__(self, info: CodecInfo = G722_INFO) -> None:
        super().__init__(info)
        self._encoder = PyAVEncoder("g722", info.sample_rate, {})
        self._decoder = PyAVDecoder("g722", info.sample_rate)

    def _encode(self, pcm: np.ndarray) -> bytes:
        if len(pcm) % 2:
            raise ValueError(f"G.722 encodes pairs of samples, got {len(pcm)}")
        return self._encoder.encode(pcm)

    def _decode(self, payload: bytes) -> np.ndarray:
        return self._decoder.decode(payload)
