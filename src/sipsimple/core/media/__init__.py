"""The core's RTP media objects: asyncio transports on the SIP thread's loop.

RTPTransport owns the sockets (or the ICE session) of one RTP stream, keys SRTP and follows
the peer's real address; AudioTransport runs one audio stream over it: codecs, jitter
buffer, RTCP, DTMF and a slot in the audio mixer.
"""

from sipsimple.core.media.audiotransport import AudioTransport, AudioTransportError
from sipsimple.core.media.rtptransport import (
    RTPReceiver,
    RTPTransport,
    RTPTransportCounters,
    RTPTransportError,
)

__all__ = [
    "AudioTransport",
    "AudioTransportError",
    "RTPReceiver",
    "RTPTransport",
    "RTPTransportCounters",
    "RTPTransportError",
]
