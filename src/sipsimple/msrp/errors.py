"""Exceptions raised by sipsimple.msrp."""

from __future__ import annotations


class MSRPError(Exception):
    """Base class of every error raised by sipsimple.msrp."""


class MSRPParseError(MSRPError, ValueError):
    """Bytes or text that are not valid MSRP.

    ``transaction_id`` is the transaction of the frame the error was found in, when
    it is known, and ``code`` the MSRP status a request carrying it deserves (400
    unless a more specific code applies).  ``fatal`` means that framing is lost: the
    stream cannot be resynchronised and the connection has to be closed.
    """

    def __init__(
        self,
        message: str,
        *,
        transaction_id: str | None = None,
        code: int = 400,
        fatal: bool = False,
    ) -> None:
        super().__init__(message)
        self.transaction_id = transaction_id
        self.code = code
        self.fatal = fatal


class MSRPStateError(MSRPError):
    """A session or relay operation that is not allowed in the current state."""
