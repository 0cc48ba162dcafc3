"""The SIP core: sans-IO protocol machines and the asyncio objects built on them."""

from sipsimple.core.errors import SDPParseError, SIPCoreError, SIPParseError

__all__ = ["SDPParseError", "SIPCoreError", "SIPParseError"]
