"""The SIP core: sans-IO protocol machines and the asyncio objects built on them."""

from sipsimple.core.errors import SDPParseError, SIPCoreError, SIPParseError
from sipsimple.core.sip.auth import (
    AuthenticationError,
    Credentials,
    CredentialsRejectedError,
    DigestAuthenticator,
)

__all__ = [
    "AuthenticationError",
    "Credentials",
    "CredentialsRejectedError",
    "DigestAuthenticator",
    "SDPParseError",
    "SIPCoreError",
    "SIPParseError",
]
