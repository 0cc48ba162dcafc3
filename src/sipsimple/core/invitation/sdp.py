"""The SDP side of an Invitation: the bodies it takes and sends, and the view of its
negotiator that the application reads (``invitation.sdp``)."""

from __future__ import annotations

from typing import Any

from sipsimple.core.errors import SDPParseError, SIPCoreError
from sipsimple.core.sdp import FrozenSDPMediaStream, FrozenSDPSession, SDPNegotiator
from sipsimple.core.sdp.model import BaseSDPSession
from sipsimple.core.sip.message import SIPRequest, SIPResponse
from sipsimple.core.usage import reason_phrase

__all__ = [
    "SDP_TYPE",
    "BadBody",
    "InvitationSDP",
    "rebase",
    "sdp_bytes",
    "sdp_of",
    "snapshot",
    "unchanged",
]

SDP_TYPE = "application/sdp"


class BadBody(Exception):
    """A body we cannot take: the response to answer with."""

    def __init__(self, code: int, reason: str, headers: list[tuple[str, str]] | None = None):
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.headers = headers or []


def sdp_of(message: SIPRequest | SIPResponse) -> FrozenSDPSession | None:
    """The session description a message carries, None without a body; BadBody
    (415 or 400) for another type of body or an SDP that does not parse."""
    if not message.body:
        return None
    try:
        content_type = message.content_type
    except SIPCoreError:
        content_type = None
    if content_type is None or content_type.content_type != SDP_TYPE:
        raise BadBody(415, "Unsupported Media Type", [("Accept", SDP_TYPE)])
    try:
        return FrozenSDPSession.parse(message.body)
    except SDPParseError as e:
        raise BadBody(400, reason_phrase(f"Bad SDP: {e}")) from None


class InvitationSDP:
    """The SDP of an Invitation: ``proposed_local``, ``proposed_remote`` (the pending
    offer or answer of each side, None when there is none) and ``active_local``,
    ``active_remote`` (the last negotiated descriptions), FrozenSDPSessions."""

    __slots__ = ("_negotiator",)

    def __init__(self, negotiator: SDPNegotiator) -> None:
        self._negotiator = negotiator

    @property
    def proposed_local(self) -> FrozenSDPSession | None:
        return self._negotiator.proposed_local

    @property
    def proposed_remote(self) -> FrozenSDPSession | None:
        return self._negotiator.proposed_remote

    @property
    def active_local(self) -> FrozenSDPSession | None:
        return self._negotiator.active_local

    @property
    def active_remote(self) -> FrozenSDPSession | None:
        return self._negotiator.active_remote


def snapshot(sdp: Any) -> FrozenSDPSession:
    """An SDP argument as it is now (the work happens later, maybe on another thread);
    TypeError for something else, ValueError for one that cannot be written out."""
    if not isinstance(sdp, BaseSDPSession):
        raise TypeError(f"sdp must be an SDPSession or None, not {sdp!r}")
    frozen = FrozenSDPSession.new(sdp)
    try:
        str(frozen)
    except (TypeError, ValueError) as e:
        raise ValueError(f"sdp cannot be sent: {e}") from None
    return frozen


def sdp_bytes(sdp: BaseSDPSession | None) -> bytes:
    return str(sdp).encode() if sdp is not None else b""


def unchanged(offer: FrozenSDPSession, active: FrozenSDPSession | None) -> bool:
    """Whether a re-offer repeats the peer's active description (RFC 3264 section 8: the
    same o= line version means no change): a session refresh."""
    return (
        active is not None
        and offer.id == active.id
        and offer.version == active.version
        and offer.address == active.address
    )


def rebase(sdp: BaseSDPSession, active: FrozenSDPSession | None, base_lines: int) -> BaseSDPSession:
    """An offer made when the session had ``base_lines`` m-lines, sent after the peer
    added some (a retry after glare): the lines it added are kept, not disabled."""
    if active is None or len(active.media) <= base_lines or len(sdp.media) >= len(active.media):
        return sdp
    session = FrozenSDPSession.new(sdp)
    kept = [
        FrozenSDPMediaStream(m.media, 0, m.transport, formats=m.formats)
        for m in active.media[len(session.media) : base_lines]
    ]
    fields = {name: getattr(session, name) for name in FrozenSDPSession._FIELDS}
    fields["media"] = (*session.media, *kept, *active.media[max(base_lines, len(session.media)) :])
    return FrozenSDPSession(**fields)
