"""SIP transports on asyncio (RFC 3261 section 18): UDP, TCP and TLS, IPv4 and IPv6.

Start a :class:`TransportManager` with :class:`TransportSettings` and an
``on_message(message, source, now)`` callback; send with ``await manager.send(...)``.
See :mod:`sipsimple.core.transport.manager` for the rules it applies.
"""

from sipsimple.core.transport.address import TransportAddress
from sipsimple.core.transport.errors import TLSError, TransportError, TransportFailure
from sipsimple.core.transport.manager import MessageHandler, TransportManager, TransportStatistics
from sipsimple.core.transport.settings import PacketLoss, TraceRecord, TransportSettings
from sipsimple.core.transport.stream import SIPConnection

__all__ = [
    "MessageHandler",
    "PacketLoss",
    "SIPConnection",
    "TLSError",
    "TraceRecord",
    "TransportAddress",
    "TransportError",
    "TransportFailure",
    "TransportManager",
    "TransportSettings",
    "TransportStatistics",
]
