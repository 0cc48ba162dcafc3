"""Session timers (RFC 4028), sans-IO: the two headers and the rules that pick an interval
and a refresher.

Who refreshes is said from the side of the transaction that negotiated it: ``refresher=uac``
in the 2xx names the sender of the request. A :class:`SessionTimer` turns that into the
only thing a dialog needs to know: whether *we* refresh (``local_refresher``). The
refresher sends a re-INVITE or UPDATE after half the interval (section 10); the other side
ends the session with BYE when no refresh came ``min(32, interval / 3)`` seconds before it
expires.

Every function here takes header values and returns header values or decisions; no clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sipsimple.core.errors import SIPParseError

__all__ = [
    "MIN_SE_FLOOR",
    "SessionExpires",
    "SessionTimer",
    "parse_min_se",
    "request_headers",
    "timer_of_request",
    "timer_of_response",
    "too_small",
]

MIN_SE_FLOOR = 90
"""The smallest Min-SE RFC 4028 section 4 allows; tests may configure less."""

_DELTA = r"[0-9]{1,10}"
_SESSION_EXPIRES = re.compile(rf"[ \t]*({_DELTA})[ \t]*((?:;[^;]*)*)")
_MIN_SE = re.compile(rf"[ \t]*({_DELTA})[ \t]*(?:;.*)?")


def _delta(text: str, what: str) -> int:
    value = int(text)
    if value == 0 or value > 2**32 - 1:
        raise SIPParseError(f"invalid {what} header: {text!r}")
    return value


@dataclass(frozen=True, slots=True)
class SessionExpires:
    """A Session-Expires value: the interval in seconds and the refresher ("uac", "uas")
    or None when the sender leaves the choice to the answerer."""

    interval: int
    refresher: str | None = None

    @classmethod
    def parse(cls, text: str) -> SessionExpires:
        m = _SESSION_EXPIRES.fullmatch(text)
        if m is None:
            raise SIPParseError(f"invalid Session-Expires header: {text!r}")
        refresher = None
        for parameter in m.group(2).split(";")[1:]:
            name, _, value = parameter.strip(" \t").partition("=")
            if name.strip(" \t").lower() == "refresher":
                refresher = value.strip(" \t").lower()
                if refresher not in ("uac", "uas"):
                    raise SIPParseError(f"invalid refresher in Session-Expires: {text!r}")
        return cls(_delta(m.group(1), "Session-Expires"), refresher)

    def __str__(self) -> str:
        if self.refresher is None:
            return str(self.interval)
        return f"{self.interval};refresher={self.refresher}"


def parse_min_se(text: str) -> int:
    m = _MIN_SE.fullmatch(text)
    if m is None:
        raise SIPParseError(f"invalid Min-SE header: {text!r}")
    return _delta(m.group(1), "Min-SE")


@dataclass(frozen=True, slots=True)
class SessionTimer:
    """A running session timer: its interval, whether we refresh, and the Min-SE in force
    (the largest either side asked for)."""

    interval: int
    local_refresher: bool
    min_se: int

    @property
    def refresh_after(self) -> float:
        """When the refresher sends its refresh (RFC 4028 section 10: half the interval)."""
        return self.interval / 2

    @property
    def expire_after(self) -> float:
        """When the session ends without a refresh: the refresher at the full interval,
        the other side ``min(32, interval / 3)`` seconds before it (section 10)."""
        if self.local_refresher:
            return float(self.interval)
        return self.interval - min(32.0, self.interval / 3)

    def request_value(self) -> SessionExpires:
        """The Session-Expires of a refresh we send: it keeps the refresher where it is."""
        return SessionExpires(self.interval, "uac" if self.local_refresher else "uas")


def request_headers(
    timer: SessionTimer | None, preferred: int | None, min_se: int
) -> list[tuple[str, str]]:
    """The Session-Expires and Min-SE of a request we send (initial, re-INVITE, UPDATE):
    the running timer's, else the interval we prefer with no refresher (the answerer
    chooses), else nothing."""
    if timer is not None:
        return [("Session-Expires", str(timer.request_value())), ("Min-SE", str(timer.min_se))]
    if preferred is not None:
        interval = max(preferred, min_se)
        return [("Session-Expires", str(interval)), ("Min-SE", str(min_se))]
    return []


def _request_values(headers: Any) -> tuple[SessionExpires | None, int | None]:
    """The Session-Expires and Min-SE of a message (SIPParseError when malformed)."""
    text = headers.get("Session-Expires")
    session_expires = SessionExpires.parse(text) if text is not None else None
    text = headers.get("Min-SE")
    return session_expires, parse_min_se(text) if text is not None else None


def too_small(headers: Any, min_se: int) -> bool:
    """Whether a request asks for an interval below ``min_se``: answer 422 with Min-SE
    (RFC 4028 section 9). SIPParseError when the headers are malformed."""
    session_expires, _ = _request_values(headers)
    return session_expires is not None and session_expires.interval < min_se


def timer_of_request(
    headers: Any,
    peer_supports: bool,
    preferred: int | None,
    min_se: int,
    current: SessionTimer | None,
) -> tuple[SessionTimer | None, list[tuple[str, str]]]:
    """What we, answering a session refresh request (the INVITE, a re-INVITE, an UPDATE)
    with a 2xx, put in it: the timer that runs from then on and the headers for the 2xx.

    The request's interval and refresher are kept (a refresher is picked when it left
    the choice: the requester if it supports timers, else us). Without a Session-Expires
    the running timer goes on (or the one we prefer starts), refreshed by whoever
    refreshed before. ``Require: timer`` goes in when the requester must refresh
    (section 9). SIPParseError for malformed headers; check too_small() first.
    """
    session_expires, peer_min_se = _request_values(headers)
    floor = max(min_se, peer_min_se or 0)
    if session_expires is not None:
        interval = session_expires.interval
        refresher = session_expires.refresher or ("uac" if peer_supports else "uas")
    elif current is not None:
        interval = max(current.interval, floor)
        refresher = "uas" if current.local_refresher or not peer_supports else "uac"
    elif preferred is not None:
        interval = max(preferred, floor)
        refresher = "uac" if peer_supports else "uas"
    else:
        return None, []
    if refresher == "uac" and not peer_supports:
        refresher = "uas"
    timer = SessionTimer(interval, refresher == "uas", max(floor, current.min_se if current else 0))
    headers_out = [("Session-Expires", str(SessionExpires(interval, refresher)))]
    if refresher == "uac":
        headers_out.append(("Require", "timer"))
    return timer, headers_out


def timer_of_response(
    headers: Any, asked: SessionTimer | None, preferred: int | None, min_se: int
) -> SessionTimer | None:
    """The timer after a 2xx to a request we sent with request_headers(): the one the 2xx
    states (we refresh unless it says ``refresher=uas``), else, when we asked for one, we
    keep it and refresh ourselves (the peer does not do timers: section 7.2).
    SIPParseError for malformed headers."""
    session_expires, _ = _request_values(headers)
    floor = max(min_se, asked.min_se if asked is not None else 0)
    if session_expires is not None:
        return SessionTimer(session_expires.interval, session_expires.refresher != "uas", floor)
    if asked is not None:
        return SessionTimer(asked.interval, True, floor)
    if preferred is not None:
        return SessionTimer(max(preferred, floor), True, floor)
    return None
