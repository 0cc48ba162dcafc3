"""Exceptions raised by the SIP core."""


class SIPCoreError(Exception):
    """Base class of every error raised by sipsimple.core."""


class SIPParseError(SIPCoreError):
    """Bytes or text that could not be parsed; the message says exactly what was wrong.

    The transport uses the text in the Warning header of the 400 it answers with.
    """


class SDPParseError(SIPCoreError):
    """An SDP body that could not be parsed."""
