"""MSRP (RFC 4975, relays RFC 4976, connection model RFC 6135): the sans-IO layer.

URIs, the frame model with its incremental parser and serializer, chunking and
reassembly, the per-session machine, relay authentication and the RFC 5547 file
selector.  The asyncio connections and the streams are built on these.
"""

from sipsimple.msrp.chunking import DEFAULT_CHUNK_SIZE, ByteRanges, IncomingMessage, OutgoingMessage
from sipsimple.msrp.errors import MSRPError, MSRPParseError, MSRPStateError
from sipsimple.msrp.fileselector import FileSelector
from sipsimple.msrp.protocol import (
    REASONS,
    ByteRange,
    FileRegion,
    FrameData,
    FrameEnded,
    FrameError,
    FrameStarted,
    MSRPData,
    MSRPParser,
    Status,
    make_id,
)
from sipsimple.msrp.relay import RelayAuthenticated, RelayAuthentication, RelayAuthenticationFailed
from sipsimple.msrp.session import (
    MessageAborted,
    MessageDataReceived,
    MessageDeliveryFailed,
    MessageReceived,
    MessageSent,
    MSRPSession,
    ProtocolError,
    ReportReceived,
    ResponseReceived,
    TransactionTimedOut,
)
from sipsimple.msrp.uri import DEFAULT_PORT, MSRPURI

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_PORT",
    "MSRPURI",
    "REASONS",
    "ByteRange",
    "ByteRanges",
    "FileRegion",
    "FileSelector",
    "FrameData",
    "FrameEnded",
    "FrameError",
    "FrameStarted",
    "IncomingMessage",
    "MSRPData",
    "MSRPError",
    "MSRPParseError",
    "MSRPParser",
    "MSRPSession",
    "MSRPStateError",
    "MessageAborted",
    "MessageDataReceived",
    "MessageDeliveryFailed",
    "MessageReceived",
    "MessageSent",
    "OutgoingMessage",
    "ProtocolError",
    "RelayAuthenticated",
    "RelayAuthentication",
    "RelayAuthenticationFailed",
    "ReportReceived",
    "ResponseReceived",
    "Status",
    "TransactionTimedOut",
    "make_id",
]
