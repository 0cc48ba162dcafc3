"""Authenticating to an MSRP relay with AUTH (RFC 4976 section 5), sans-IO.

The client sends AUTH to its relay, answers the 401 digest challenge through the
``authorize`` callback (the digest computation lives elsewhere: it gets the
challenge parameters, the method ``"AUTH"`` and the relay URI as digest URI, and
returns the Authorization header value), adjusts Expires after a 423, and learns
the Use-Path it must put in front of its own URI.  It refreshes the
authentication before it expires.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from sipsimple.msrp.errors import MSRPStateError
from sipsimple.msrp.protocol import MSRPData, make_id
from sipsimple.msrp.uri import MSRPURI

__all__ = [
    "Authorize",
    "RelayAuthenticated",
    "RelayAuthentication",
    "RelayAuthenticationFailed",
    "RelayEvent",
]

Authorize = Callable[[dict[str, str], str, str], str]
"""``authorize(challenge_params, method, digest_uri) -> Authorization header value``."""


@dataclass(slots=True)
class RelayAuthenticated:
    use_path: list[MSRPURI]
    expires: int | None


@dataclass(slots=True)
class RelayAuthenticationFailed:
    code: int
    comment: str | None


RelayEvent = RelayAuthenticated | RelayAuthenticationFailed


class RelayAuthentication:
    """The AUTH exchange with one relay (``relay_uri``) for ``local_uri``."""

    def __init__(
        self,
        relay_uri: MSRPURI,
        local_uri: MSRPURI,
        authorize: Authorize,
        *,
        expires: int | None = None,
        transaction_timeout: float = 30.0,
        refresh_ratio: float = 0.9,
        make_transaction_id: Callable[[], str] = make_id,
    ) -> None:
        if expires is not None and expires < 1:
            raise ValueError(f"expires must be a positive number of seconds, not {expires}")
        if not 0 < refresh_ratio < 1:
            raise ValueError(f"refresh_ratio must be between 0 and 1, not {refresh_ratio}")
        self.relay_uri = relay_uri
        self.local_uri = local_uri
        self.authorize = authorize
        self.expires = expires
        self.transaction_timeout = transaction_timeout
        self.refresh_ratio = refresh_ratio
        self.make_transaction_id = make_transaction_id
        self.use_path: list[MSRPURI] | None = None
        self._challenge: dict[str, str] | None = None
        self._answered_nonce: str | None = None
        self._pending: str | None = None
        self._deadline: float | None = None
        self._refresh_at: float | None = None
        self._failed = False
        self._out: list[bytes] = []
        self._events: deque[RelayEvent] = deque()

    @property
    def pending_transaction_id(self) -> str | None:
        """The transaction id of the AUTH waiting for its response."""
        return self._pending

    @property
    def authenticated(self) -> bool:
        return self.use_path is not None and not self._failed

    def start(self, now: float) -> None:
        if self._pending is not None or self._failed:
            raise MSRPStateError("relay authentication already started or failed")
        self._send_auth(now)

    def _send_auth(self, now: float) -> None:
        frame = MSRPData(self.make_transaction_id(), method="AUTH")
        frame.set_header("To-Path", [self.relay_uri])
        frame.set_header("From-Path", [self.local_uri])
        if self._challenge is not None:
            frame.set_header(
                "Authorization", self.authorize(self._challenge, "AUTH", str(self.relay_uri))
            )
            self._answered_nonce = self._challenge.get("nonce")
        if self.expires is not None:
            frame.set_header("Expires", self.expires)
        self._pending = frame.transaction_id
        self._deadline = now + self.transaction_timeout
        self._refresh_at = None
        self._out.append(frame.encode())

    def handle_response(self, frame: MSRPData, now: float) -> bool:
        """Take a response; returns False when it is not the pending AUTH's."""
        if frame.code is None or frame.transaction_id != self._pending:
            return False
        self._pending = None
        self._deadline = None
        code = frame.code
        if code == 200:
            use_path = frame.use_path
            if not use_path:
                self._fail(400, "200 response to AUTH without a Use-Path")
                return True
            self.use_path = use_path
            expires = frame.expires if frame.expires is not None else self.expires
            if expires is not None:
                self._refresh_at = now + expires * self.refresh_ratio
            self._events.append(RelayAuthenticated(use_path, expires))
        elif code == 401:
            challenge = frame.get_header("WWW-Authenticate")
            if challenge is None or challenge[0].lower() != "digest":
                self._fail(401, "401 response without a digest challenge")
                return True
            params = challenge[1]
            stale = params.get("stale", "").lower() == "true"
            if (
                self._answered_nonce is not None
                and not stale
                and (params.get("nonce") == self._answered_nonce)
            ):
                self._fail(401, frame.comment)
                return True
            self._challenge = params
            self._send_auth(now)
        elif code == 423:
            wanted = self._bounded_expires(frame)
            if wanted is None:
                self._fail(423, frame.comment)
                return True
            self.expires = wanted
            self._send_auth(now)
        else:
            self._fail(code, frame.comment)
        return True

    def _bounded_expires(self, frame: MSRPData) -> int | None:
        low = frame.get_header("Min-Expires")
        high = frame.get_header("Max-Expires")
        current = self.expires
        if low is not None and (current is None or current < low):
            return low
        if high is not None and (current is None or current > high):
            return high
        return None

    def _fail(self, code: int, comment: str | None) -> None:
        self._failed = True
        self._refresh_at = None
        self._events.append(RelayAuthenticationFailed(code, comment))

    def data_to_send(self) -> bytes:
        out, self._out = self._out, []
        return b"".join(out)

    def next_event(self) -> RelayEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        timers = [t for t in (self._deadline, self._refresh_at) if t is not None]
        return min(timers) if timers else None

    def handle_timer(self, now: float) -> None:
        if self._deadline is not None and now >= self._deadline:
            self._pending = None
            self._deadline = None
            self._fail(408, "AUTH transaction timed out")
        elif self._refresh_at is not None and now >= self._refresh_at:
            self._send_auth(now)
