"""RFC 3264 offer/answer: the negotiator state machine and the answer-building rules it uses.

Sans-IO: the Invitation feeds it the SDP it sends and receives, calls negotiate(), and reads
``active_local``/``active_remote`` (what each side is now using). The negotiator enforces the
rules that keep a dialog's descriptions consistent: an answer has as many m-lines as its offer,
m-lines are never removed (a removed stream becomes port 0 in place), the o= line keeps its
session id and its version goes up by one whenever our description changes.
"""

from __future__ import annotations

from collections.abc import Iterable

from sipsimple.core.errors import SIPCoreError
from sipsimple.core.sdp.model import (
    DIRECTIONS,
    BaseSDPAttribute,
    BaseSDPMediaStream,
    BaseSDPSession,
    FrozenSDPAttribute,
    FrozenSDPMediaStream,
    FrozenSDPSession,
    MediaCodec,
    SDPAttribute,
    SDPMediaStream,
)

__all__ = [
    "SDPNegotiationError",
    "SDPNegotiator",
    "SDPNegotiatorStateError",
    "answer_direction",
    "answer_media",
    "effective_direction",
    "reject_media",
]


class SDPNegotiationError(SIPCoreError):
    """The offer and answer cannot be reconciled; an offer that raises this deserves a 488."""


class SDPNegotiatorStateError(SIPCoreError):
    """A negotiator method was called in a state that does not allow it."""


# Formats that ride along with a codec but are no use on their own (RFC 4733, 3389, 2198, 5109,
# 4588): a stream whose only common formats are these has nothing in common.
_AUXILIARY = frozenset({"telephone-event", "cn", "red", "ulpfec", "flexfec", "rtx"})
# Attributes whose value starts with the payload type they describe.
_PER_FORMAT = frozenset({"rtpmap", "fmtp", "rtcp-fb"})

_SEND_RECV = {
    "sendrecv": (True, True),
    "sendonly": (True, False),
    "recvonly": (False, True),
    "inactive": (False, False),
}
_DIRECTION = {flags: name for name, flags in _SEND_RECV.items()}


def _flags(direction: str) -> tuple[bool, bool]:
    try:
        return _SEND_RECV[direction]
    except KeyError:
        raise ValueError(
            f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}"
        ) from None


def answer_direction(offered: str, local: str = "sendrecv") -> str:
    """Our direction given the peer's and what we would like (RFC 3264 6.1).

    We may send only if the peer receives and receive only if it sends: an answer to sendonly
    is recvonly, to recvonly sendonly, to inactive inactive. The offerer uses the same rule on
    the answer to learn what it may now do.
    """
    peer_sends, peer_receives = _flags(offered)
    we_send, we_receive = _flags(local)
    return _DIRECTION[(we_send and peer_receives, we_receive and peer_sends)]


def effective_direction(session: BaseSDPSession, index: int) -> str:
    """The direction of media line ``index`` as its sender means it.

    A media-level direction attribute wins over a session-level one (default sendrecv); a
    disabled line (port 0) is inactive; c=0.0.0.0, the RFC 2543 way of putting a call on hold
    that old phones still use, means the sender wants nothing sent to it (RFC 3264 8.4).
    """
    media = session.media[index]
    if media.port == 0:
        return "inactive"
    direction = next(
        (a.name for a in media.attributes if a.name in DIRECTIONS),
        next((a.name for a in session.attributes if a.name in DIRECTIONS), "sendrecv"),
    )
    connection = media.connection if media.connection is not None else session.connection
    if connection is not None and connection.is_null:
        sends, _ = _SEND_RECV[direction]
        direction = _DIRECTION[(sends, False)]
    return direction


# ---------------------------------------------------------------------------------------------
# Payload formats


def _is_static(fmt: str) -> bool:
    return fmt.isascii() and fmt.isdigit() and len(fmt) <= 3 and int(fmt) < 96


def _same_format(a: BaseSDPMediaStream, fmt_a: str, b: BaseSDPMediaStream, fmt_b: str) -> bool:
    """Static payload types match by number, the others by encoding name, rate and channels."""
    codec_a, codec_b = a.rtpmap(fmt_a), b.rtpmap(fmt_b)
    if codec_a is not None and codec_b is not None:
        return codec_a == codec_b
    return fmt_a == fmt_b and _is_static(fmt_a)


def _is_auxiliary(codec: MediaCodec | None) -> bool:
    return codec is not None and codec.name.lower() in _AUXILIARY


def _common_formats(
    preferred: BaseSDPMediaStream, other: BaseSDPMediaStream
) -> list[tuple[str, str]]:
    """(format in ``preferred``, matching format in ``other``) in ``preferred``'s order."""
    pairs: list[tuple[str, str]] = []
    taken: set[str] = set()
    for fmt in preferred.formats:
        candidates = [f for f in other.formats if f not in taken]
        # Prefer the same number (RFC 3264 6.1: an answer reuses the offer's payload types).
        candidates.sort(key=lambda f: f != fmt)
        match = next((f for f in candidates if _same_format(preferred, fmt, other, f)), None)
        if match is not None:
            pairs.append((fmt, match))
            taken.add(match)
    return pairs


def _format_attribute(attribute: BaseSDPAttribute) -> tuple[str, str] | None:
    """(payload type, rest) for rtpmap/fmtp/rtcp-fb attributes naming one payload type."""
    if attribute.name not in _PER_FORMAT:
        return None
    fmt, _, rest = attribute.value.partition(" ")
    return (fmt, rest) if fmt != "*" else None


def _format_attributes(media: BaseSDPMediaStream, fmt: str) -> list[tuple[str, str]]:
    """(name, value after the payload type) of the rtpmap/fmtp/rtcp-fb lines for ``fmt``."""
    found = []
    for attribute in media.attributes:
        parsed = _format_attribute(attribute)
        if parsed is not None and parsed[0] == fmt:
            found.append((attribute.name, parsed[1]))
    return found


def _has_codec(media: BaseSDPMediaStream, formats: Iterable[str]) -> bool:
    return any(not _is_auxiliary(media.rtpmap(fmt)) for fmt in formats)


def _enough_in_common(
    common: list[str], media: BaseSDPMediaStream, other: BaseSDPMediaStream
) -> bool:
    """True if the ``common`` formats of ``media`` make a usable stream.

    Sharing only telephone-event or comfort noise is not enough when both sides list real
    codecs; a stream meant for events only (RFC 3264 10.1) is fine.
    """
    if not common:
        return False
    if _has_codec(media, common):
        return True
    return not _has_codec(media, media.formats) or not _has_codec(other, other.formats)


# ---------------------------------------------------------------------------------------------
# Building answers


def reject_media(offer: BaseSDPMediaStream) -> SDPMediaStream:
    """The answer line refusing ``offer``: same type, transport and formats, port 0 (RFC 3264 6)."""
    return SDPMediaStream(offer.media, 0, offer.transport, formats=list(offer.formats))


def _answer_media(
    offer: BaseSDPMediaStream,
    local: BaseSDPMediaStream,
    offered_direction: str,
    local_direction: str,
) -> tuple[SDPMediaStream, str | None]:
    """The answer line and, when it is a rejection, why."""
    if offer.port == 0:
        return reject_media(offer), "the offer disabled it"
    if local.port == 0:
        return reject_media(offer), "it was declined locally"
    if offer.media != local.media:
        return reject_media(offer), f"a {local.media} line cannot answer {offer.media}"
    attributes: list[BaseSDPAttribute] = []
    if offer.is_rtp:
        pairs = _common_formats(local, offer)
        if not _enough_in_common([fmt for fmt, _ in pairs], local, offer):
            offered = " ".join(str(offer.rtpmap(fmt) or fmt) for fmt in offer.formats)
            return reject_media(offer), f"no codec in common with {offered or 'an empty list'}"
        formats = [offered_fmt for _, offered_fmt in pairs]
        for fmt, offered_fmt in pairs:
            own = _format_attributes(local, fmt)
            if not any(name == "rtpmap" for name, _ in own):
                # Keep the offer's mapping so that a dynamic type is never left undefined.
                own[:0] = [a for a in _format_attributes(offer, offered_fmt) if a[0] == "rtpmap"]
            attributes.extend(
                SDPAttribute(name, f"{offered_fmt} {rest}" if rest else offered_fmt)
                for name, rest in own
            )
    else:
        formats = list(local.formats) or list(offer.formats)
    attributes.extend(
        SDPAttribute.new(a)
        for a in local.attributes
        if a.name not in DIRECTIONS and (not offer.is_rtp or _format_attribute(a) is None)
    )
    attributes.append(SDPAttribute(answer_direction(offered_direction, local_direction)))
    answer = SDPMediaStream.new(local)
    answer.formats = formats
    answer.attributes = attributes
    return answer, None


def answer_media(
    offer: BaseSDPMediaStream, local: BaseSDPMediaStream, offered_direction: str | None = None
) -> SDPMediaStream:
    """The answer to one offered m-line given what we can do there (RFC 3264 6.1).

    ``local`` describes our side as if we were offering: port, connection, our formats in order
    of preference with their rtpmap/fmtp, the direction we would like, and any other attributes
    (crypto, ICE, ...). The answer keeps the formats both sides know, in our order but with the
    offer's payload type numbers (static types match by number, dynamic ones by encoding name,
    clock rate and channels); telephone-event and comfort noise stay only when both support them
    and are not enough in common unless one side lists nothing else. Its direction follows
    answer_direction(). The answer is a rejection (port 0) when the offer disabled the line,
    ``local`` has port 0 or another media type, or nothing usable is common.
    ``offered_direction`` defaults to the offer line's own direction; pass
    effective_direction(session, index) to honour session-level attributes and c=0.0.0.0.
    """
    direction = offered_direction if offered_direction is not None else offer.direction
    return _answer_media(offer, local, direction, local.direction)[0]


def _disabled(media: BaseSDPMediaStream) -> FrozenSDPMediaStream:
    return FrozenSDPMediaStream(media.media, 0, media.transport, formats=media.formats)


def _evolve(session: FrozenSDPSession, **changes: object) -> FrozenSDPSession:
    fields = {name: getattr(session, name) for name in FrozenSDPSession._FIELDS}
    fields.update(changes)
    return FrozenSDPSession(**fields)  # type: ignore[arg-type]


def _continue_origin(new: FrozenSDPSession, last: FrozenSDPSession | None) -> FrozenSDPSession:
    """Give ``new`` the o= line we last sent, its version + 1 if anything changed (RFC 3264 8).

    ``last`` is the last description we sent, accepted or not: a peer may have seen a rejected
    re-offer, so its version is never reused for different content.
    """
    if last is None:
        return new
    same_origin = _evolve(
        new,
        user=last.user,
        id=last.id,
        version=last.version,
        net_type=last.net_type,
        address_type=last.address_type,
        address=last.address,
    )
    if same_origin == last:
        return same_origin
    return _evolve(same_origin, version=last.version + 1)


def _narrow(
    offered: FrozenSDPMediaStream, answered: FrozenSDPMediaStream, index: int, direction: str
) -> FrozenSDPMediaStream:
    """Our offered line reduced to what the answer accepted (formats, direction)."""
    attributes = list(offered.attributes)
    formats = list(offered.formats)
    if offered.is_rtp:
        pairs = _common_formats(answered, offered)
        formats = [fmt for _, fmt in pairs]
        if not _enough_in_common(formats, offered, answered):
            raise SDPNegotiationError(
                f"m-line {index} ({offered.media}): the answer's formats "
                f"{' '.join(answered.formats) or '(none)'} have no codec in common with the "
                f"offer's {' '.join(offered.formats) or '(none)'}"
            )
        kept = set(formats)
        attributes = [a for a in attributes if (p := _format_attribute(a)) is None or p[0] in kept]
    if direction != offered.direction:
        attributes = [a for a in attributes if a.name not in DIRECTIONS]
        attributes.append(FrozenSDPAttribute(direction))
    return FrozenSDPMediaStream(
        offered.media,
        offered.port,
        offered.transport,
        offered.port_count,
        formats,
        offered.info,
        offered.connection,
        attributes,
        offered.bandwidth_info,
        extra_lines=offered.extra_lines,
    )


# ---------------------------------------------------------------------------------------------
# The state machine


class SDPNegotiator:
    """One dialog's offer/answer state (RFC 3264), the sans-IO counterpart of pjmedia_sdp_neg.

    States: "null" (nothing negotiated yet), "local_offer" (our offer is out, waiting for the
    answer), "remote_offer" (an offer came in, waiting for our answer), "waiting_negotiation"
    (offer and answer known, call negotiate()) and "done". After done, either side may offer
    again. cancel_offer() drops a pending exchange and goes back to the last negotiated one.
    """

    def __init__(self) -> None:
        self._state = "null"
        self._active_local: FrozenSDPSession | None = None
        self._active_remote: FrozenSDPSession | None = None
        self._proposed_local: FrozenSDPSession | None = None
        self._proposed_remote: FrozenSDPSession | None = None
        self._local_offered = False
        self._last_sent: FrozenSDPSession | None = None

    @classmethod
    def create_with_local_offer(cls, sdp: BaseSDPSession) -> SDPNegotiator:
        negotiator = cls()
        negotiator.set_local_offer(sdp)
        return negotiator

    @classmethod
    def create_with_remote_offer(cls, sdp: BaseSDPSession) -> SDPNegotiator:
        negotiator = cls()
        negotiator.set_remote_offer(sdp)
        return negotiator

    def __repr__(self) -> str:
        return f"<SDPNegotiator state={self._state}>"

    @property
    def state(self) -> str:
        return self._state

    @property
    def active_local(self) -> FrozenSDPSession | None:
        """Our description as last negotiated (for an answerer, the answer that was sent)."""
        return self._active_local

    @property
    def active_remote(self) -> FrozenSDPSession | None:
        """The peer's description as last negotiated."""
        return self._active_remote

    @property
    def proposed_local(self) -> FrozenSDPSession | None:
        """Our pending offer or answer (an offer here is what must be sent), else None."""
        return self._proposed_local

    @property
    def proposed_remote(self) -> FrozenSDPSession | None:
        """The peer's pending offer or answer, else None."""
        return self._proposed_remote

    def _require(self, method: str, *states: str) -> None:
        if self._state not in states:
            raise SDPNegotiatorStateError(
                f"cannot call {method}() in state {self._state!r}; allowed in {', '.join(states)}"
            )

    def set_local_offer(self, sdp: BaseSDPSession) -> FrozenSDPSession:
        """Start an exchange with our offer; returns the offer to send.

        In a later offer the o= line is the one we last sent (version + 1 if anything changed)
        and m-lines missing at the end are kept, disabled (port 0).
        """
        self._require("set_local_offer", "null", "done")
        offer = FrozenSDPSession.new(sdp)
        previous = self._active_local
        if previous is not None and len(offer.media) < len(previous.media):
            kept = [_disabled(m) for m in previous.media[len(offer.media) :]]
            offer = _evolve(offer, media=(*offer.media, *kept))
        offer = _continue_origin(offer, self._last_sent)
        self._proposed_local = self._last_sent = offer
        self._local_offered = True
        self._state = "local_offer"
        return offer

    def set_remote_offer(self, sdp: BaseSDPSession) -> None:
        """Start an exchange with the peer's offer; SDPNegotiationError means answer 488."""
        self._require("set_remote_offer", "null", "done")
        offer = FrozenSDPSession.new(sdp)
        previous = self._active_remote
        if previous is not None and len(offer.media) < len(previous.media):
            raise SDPNegotiationError(
                f"the offer has {len(offer.media)} m-lines but the session already has "
                f"{len(previous.media)}; m-lines may not be removed (RFC 3264 8)"
            )
        self._proposed_remote = offer
        self._local_offered = False
        self._state = "remote_offer"

    def set_local_answer(self, sdp: BaseSDPSession) -> None:
        """Our answer (or capabilities) for the peer's offer, one m-line per offered m-line.

        Missing trailing m-lines are answered as rejected. negotiate() turns it into the
        answer to send (active_local): see answer_media() for the rules per line.
        """
        self._require("set_local_answer", "remote_offer")
        self._proposed_local = FrozenSDPSession.new(sdp)
        self._state = "waiting_negotiation"

    def set_remote_answer(self, sdp: BaseSDPSession) -> None:
        """The peer's answer to our pending offer."""
        self._require("set_remote_answer", "local_offer")
        self._proposed_remote = FrozenSDPSession.new(sdp)
        self._state = "waiting_negotiation"

    def cancel_offer(self) -> None:
        """Forget the pending exchange (rejected re-INVITE, CANCEL, 488) and keep the last one."""
        self._require("cancel_offer", "local_offer", "remote_offer", "waiting_negotiation")
        self._reset()

    def _reset(self) -> None:
        self._proposed_local = self._proposed_remote = None
        self._state = "done" if self._active_local is not None else "null"

    def negotiate(self) -> None:
        """Settle the pending offer and answer into active_local and active_remote.

        On SDPNegotiationError the pending exchange is dropped and the previous one stays
        active, as if cancel_offer() had been called.
        """
        self._require("negotiate", "waiting_negotiation")
        assert self._proposed_local is not None and self._proposed_remote is not None
        try:
            if self._local_offered:
                local = self._process_answer(self._proposed_local, self._proposed_remote)
            else:
                local = self._make_answer(self._proposed_remote, self._proposed_local)
        except SDPNegotiationError:
            self._reset()
            raise
        if not self._local_offered:
            self._last_sent = local
        self._active_local, self._active_remote = local, self._proposed_remote
        self._proposed_local = self._proposed_remote = None
        self._state = "done"

    def _process_answer(
        self, offer: FrozenSDPSession, answer: FrozenSDPSession
    ) -> FrozenSDPSession:
        if len(answer.media) != len(offer.media):
            raise SDPNegotiationError(
                f"the answer has {len(answer.media)} m-lines but the offer had "
                f"{len(offer.media)}; RFC 3264 6 requires the same number"
            )
        media = []
        for index, (offered, answered) in enumerate(zip(offer.media, answer.media, strict=True)):
            if offered.port == 0:
                media.append(offered)
            elif answered.port == 0:
                media.append(_disabled(offered))
            elif answered.media != offered.media:
                raise SDPNegotiationError(
                    f"m-line {index}: the answer has media {answered.media!r} where the offer "
                    f"had {offered.media!r}"
                )
            else:
                direction = answer_direction(
                    effective_direction(answer, index), effective_direction(offer, index)
                )
                media.append(_narrow(offered, answered, index, direction))
        return _evolve(offer, media=tuple(media))

    def _make_answer(self, offer: FrozenSDPSession, local: FrozenSDPSession) -> FrozenSDPSession:
        if len(local.media) > len(offer.media):
            raise SDPNegotiationError(
                f"the answer has {len(local.media)} m-lines but the offer only "
                f"{len(offer.media)} (RFC 3264 6)"
            )
        media: list[BaseSDPMediaStream] = []
        reasons = []
        for index, offered in enumerate(offer.media):
            if index < len(local.media):
                line, reason = _answer_media(
                    offered,
                    local.media[index],
                    effective_direction(offer, index),
                    effective_direction(local, index),
                )
            else:
                line, reason = reject_media(offered), "it was not answered"
            media.append(line)
            if reason is not None and offered.port != 0:
                reasons.append(f"m-line {index} ({offered.media}): {reason}")
        if any(m.port for m in offer.media) and not any(m.port for m in media):
            raise SDPNegotiationError("no acceptable media stream: " + "; ".join(reasons))
        return _continue_origin(_evolve(local, media=media), self._last_sent)
