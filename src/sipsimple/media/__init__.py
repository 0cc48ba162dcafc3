"""Sans-IO media core: RTP/RTCP packets and reports, jitter buffer, codecs, DTMF, resampling.

Nothing here opens sockets or reads a clock: callers pass bytes and ``now`` and get back
values and bytes to send.  The asyncio transports and the mixer are built on top.
"""

from sipsimple.media.codecs import AudioCodec, CodecInfo, available_codecs, codec_info, create_codec
from sipsimple.media.dtmf import DTMFEvent, DTMFReceiver, DTMFSender
from sipsimple.media.errors import CodecError, MediaError, RTCPParseError, RTPParseError
from sipsimple.media.jitterbuffer import FrameKind, JitterBuffer, JitterFrame
from sipsimple.media.latch import RTPLatch
from sipsimple.media.resample import Resampler
from sipsimple.media.rtcp import parse_rtcp, serialize_rtcp
from sipsimple.media.rtcpsession import RTCPSession, StreamStatistics
from sipsimple.media.rtp import RTPHeaderExtension, RTPPacket, RTPPacketizer
from sipsimple.media.stats import ReceiveStatistics

__all__ = [
    "AudioCodec",
    "CodecError",
    "CodecInfo",
    "DTMFEvent",
    "DTMFReceiver",
    "DTMFSender",
    "FrameKind",
    "JitterBuffer",
    "JitterFrame",
    "MediaError",
    "RTCPParseError",
    "RTCPSession",
    "RTPHeaderExtension",
    "RTPLatch",
    "RTPPacket",
    "RTPPacketizer",
    "RTPParseError",
    "ReceiveStatistics",
    "Resampler",
    "StreamStatistics",
    "available_codecs",
    "codec_info",
    "create_codec",
    "parse_rtcp",
    "serialize_rtcp",
]
