"""The SIP core: sans-IO protocol machines and the asyncio objects built on them."""

from sipsimple.core.errors import SDPParseError, SIPCoreError, SIPParseError
from sipsimple.core.sip.message import (
    MalformedSIPMessageError,
    SIPHeaders,
    SIPMessage,
    SIPRequest,
    SIPResponse,
    parse_message,
)

__all__ = [
    "MalformedSIPMessageError",
    "SDPParseError",
    "SIPCoreError",
    "SIPHeaders",
    "SIPMessage",
    "SIPParseError",
    "SIPRequest",
    "SIPResponse",
    "parse_message",
]
