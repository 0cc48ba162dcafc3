"""Why a send or a connection failed: one exception class per kind, one code per reason.

Every failure the transport reports is a :class:`TransportError` whose ``failure`` is
a :class:`TransportFailure` code (for programs) and whose text says what went wrong
and where (for people). TLS failures are :class:`TLSError`, which keeps OpenSSL's
verify code and message when the peer's certificate was rejected.
"""

from __future__ import annotations

import enum
import ssl
from typing import TYPE_CHECKING

from sipsimple.core.errors import SIPCoreError

if TYPE_CHECKING:
    from sipsimple.core.transport.address import TransportAddress

__all__ = ["TLSError", "TransportError", "TransportFailure", "tls_error_from"]


class TransportFailure(enum.StrEnum):
    """The reason of a TransportError."""

    DISABLED = "transport disabled"
    BIND_FAILED = "cannot listen"
    TLS_CONFIGURATION = "bad TLS configuration"
    INVALID_DESTINATION = "invalid destination"
    CONNECTION_REFUSED = "connection refused"
    CONNECT_TIMEOUT = "connect timeout"
    UNREACHABLE = "unreachable"
    CONNECTION_LOST = "connection lost"
    CONNECTION_LIMIT = "too many connections"
    SEND_BUFFER_FULL = "send buffer full"
    KEEPALIVE_TIMEOUT = "keep-alive timeout"
    IDLE = "idle"
    CERTIFICATE_EXPIRED = "certificate expired"
    CERTIFICATE_NOT_YET_VALID = "certificate not yet valid"
    NAME_MISMATCH = "certificate name mismatch"
    UNKNOWN_CA = "unknown certificate authority"
    CERTIFICATE_INVALID = "certificate rejected"
    HANDSHAKE_TIMEOUT = "TLS handshake timeout"
    HANDSHAKE_FAILED = "TLS handshake failed"


class TransportError(SIPCoreError):
    """A message could not be sent, or a connection failed or was closed."""

    def __init__(
        self,
        failure: TransportFailure,
        detail: str = "",
        destination: TransportAddress | None = None,
    ) -> None:
        self.failure = failure
        self.detail = detail
        self.destination = destination
        where = f"{destination}: " if destination is not None else ""
        super().__init__(f"{where}{failure.value}" + (f" ({detail})" if detail else ""))


class TLSError(TransportError):
    """A TLS connection failed: certificate rejected, handshake failed or timed out.

    ``verify_code`` and ``verify_message`` are OpenSSL's (X509_V_ERR_*) when the peer's
    certificate was rejected, else None.
    """

    def __init__(
        self,
        failure: TransportFailure,
        detail: str = "",
        destination: TransportAddress | None = None,
        *,
        verify_code: int | None = None,
        verify_message: str | None = None,
    ) -> None:
        super().__init__(failure, detail, destination)
        self.verify_code = verify_code
        self.verify_message = verify_message


# OpenSSL's X509_V_ERR_* codes that have a reason of their own.
_VERIFY_FAILURES = {
    2: TransportFailure.UNKNOWN_CA,  # unable to get issuer certificate
    9: TransportFailure.CERTIFICATE_NOT_YET_VALID,
    10: TransportFailure.CERTIFICATE_EXPIRED,
    18: TransportFailure.UNKNOWN_CA,  # self-signed certificate
    19: TransportFailure.UNKNOWN_CA,  # self-signed certificate in chain
    20: TransportFailure.UNKNOWN_CA,  # unable to get local issuer certificate
    21: TransportFailure.UNKNOWN_CA,  # unable to verify the first certificate
    62: TransportFailure.NAME_MISMATCH,  # hostname mismatch
    64: TransportFailure.NAME_MISMATCH,  # IP address mismatch
}


def tls_error_from(
    error: BaseException, destination: TransportAddress | None, server_name: str | None
) -> TLSError:
    """The TLSError for what ``ssl`` raised while handshaking with ``destination``."""
    if isinstance(error, ssl.SSLCertVerificationError):
        code = error.verify_code
        message = error.verify_message or str(error)
        failure = _VERIFY_FAILURES.get(code, TransportFailure.CERTIFICATE_INVALID)
        detail = message
        if failure is TransportFailure.NAME_MISMATCH and server_name:
            detail = f"{message}; expected {server_name!r}"
        return TLSError(
            failure, detail, destination, verify_code=code, verify_message=error.verify_message
        )
    if isinstance(error, TimeoutError):
        return TLSError(TransportFailure.HANDSHAKE_TIMEOUT, str(error), destination)
    reason = getattr(error, "reason", None) or str(error) or type(error).__name__
    return TLSError(TransportFailure.HANDSHAKE_FAILED, str(reason), destination)
