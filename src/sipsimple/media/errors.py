"""Exceptions raised by sipsimple.media."""


class MediaError(Exception):
    """Base class of every error raised by sipsimple.media."""


class RTPParseError(MediaError):
    """Bytes that are not a valid RTP packet; the message says what was wrong."""


class RTCPParseError(MediaError):
    """Bytes that are not a valid (compound) RTCP packet; the message says what was wrong."""


class CodecError(MediaError):
    """A codec could not be created, or a payload could not be decoded."""
