"""Registration (RFC 3261 section 10), and the refreshing machinery it shares with
Publication.

A :class:`RefreshedBinding` keeps something alive at a server by sending the same
kind of request again before it expires: a REGISTER binding, a PUBLISH event state.
One request is in flight at a time (calls made meanwhile run when it completes,
the latest one winning). Rules:

- Refresh: at ``max(expires - refresh_margin, expires / 2)`` seconds after each
  success, ``refresh_margin`` being 40 s: more than a whole non-INVITE transaction
  that retransmits until timer F (64*T1 = 32 s) so a refresh that needs every
  retransmission still lands in time, while half the interval keeps short bindings
  from refreshing back to back.
- 423 Interval Too Brief: the request is sent again once with the Min-Expires the
  server asked for, which is then used for the refreshes too (RFC 3261 section
  10.2.8, RFC 3903 section 4.1); a second 423 is reported with ``min_expires``.
- A failed refresh is reported (DidFail) and, when the binding is still valid,
  followed by WillExpire ``expire_warning_time`` seconds before it lapses (``data.
  expires`` = seconds left: time for the application to try again), and by DidEnd
  with ``expired=True`` when it lapsed.
- ``end()`` posts WillEnd, then removes the binding (Expires 0): DidEnd with
  ``expired=False``, or DidNotEnd (code, reason) when the server refused.

The local failures of every request are reported like responses: 408 for a timeout,
503 for a transport or DNS failure (see :mod:`sipsimple.core.usage`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from typing import Any, ClassVar

from sipsimple.core.engine import Engine
from sipsimple.core.errors import SIPCoreError
from sipsimple.core.request import (
    authenticator_for,
    extra_header_pairs,
    frozen_header,
    loose_route,
    on_sip_thread,
    post,
    running_engine,
    with_tag,
    without_tag,
)
from sipsimple.core.sip.auth import Credentials
from sipsimple.core.sip.headers import (
    CSeq,
    FrozenContactHeader,
    FrozenFromHeader,
    FrozenRouteHeader,
    FrozenToHeader,
)
from sipsimple.core.sip.message import SIPRequest, SIPResponse
from sipsimple.core.sip.uri import BaseSIPURI, FrozenSIPURI
from sipsimple.core.usage import ClientRequest, reason_phrase

__all__ = ["RefreshedBinding", "Registration"]

_IDLE, _BINDING, _BOUND, _UNBINDING = "idle", "binding", "bound", "unbinding"


class RefreshedBinding:
    """The base of Registration and Publication; see the module docstring.

    Subclasses set ``_prefix`` (the notifications' name prefix), ``_states`` (the
    public names of idle, binding, bound and unbinding) and implement ``_build`` (the
    request for an operation) and ``_succeeded`` (the granted expiry of a 2xx, posting
    DidSucceed); ``_failed`` may recover from a failure (Publication's 412).
    """

    refresh_margin: ClassVar[float] = 40.0
    expire_warning_time: ClassVar[float] = 30.0
    _prefix: ClassVar[str]
    _states: ClassVar[dict[str, str]]

    def __init__(
        self,
        from_header: Any,
        credentials: Credentials | None,
        duration: int,
        extra_headers: Iterable[Any] | None,
    ) -> None:
        self.from_header = frozen_header(FrozenFromHeader, from_header, "from_header")
        if not isinstance(self.from_header.uri, BaseSIPURI):
            raise ValueError(f"from_header needs a SIP URI, not {self.from_header.uri}")
        if isinstance(duration, bool) or not isinstance(duration, int) or duration <= 0:
            raise ValueError(f"duration must be a positive number of seconds, not {duration!r}")
        self.credentials = credentials
        self._authenticator = authenticator_for(credentials)
        self.duration = duration
        self.extra_headers = list(extra_headers or ())
        self._extra = extra_header_pairs(self.extra_headers)
        self.route_header: FrozenRouteHeader | None = None
        self.call_id: str | None = None
        self._lock = threading.Lock()
        self._state = _IDLE
        self._engine: Engine | None = None
        self._expires = duration
        self._cseq = 0
        self._client: ClientRequest | None = None
        self._operation: str | None = None
        self._pending: tuple[str, float | None] | None = None
        self._min_expires_retried = False
        self._expires_at: float | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._will_end_posted = False
        self._timeout: float | None = None

    @property
    def state(self) -> str:
        return self._states[self._state]

    @property
    def expires_in(self) -> int:
        """Seconds until the binding lapses (0 when there is none)."""
        if self._expires_at is None or self._engine is None or self._state in (_IDLE,):
            return 0
        return max(0, int(self._expires_at - self._engine.loop.time()))

    # -- what the subclasses build on

    def _request_operation(self, operation: str, timeout: float | None) -> None:
        """Run ``operation`` ("bind" or "end") now or once the request in flight is done."""
        if self._client is not None:
            if operation == "end" and not self._will_end_posted:
                self._will_end_posted = True
                self._post("WillEnd")
            self._pending = (operation, timeout)
            return
        self._start(operation, timeout)

    def _start(self, operation: str, timeout: float | None) -> None:
        engine = self._engine
        assert engine is not None
        if operation == "end":
            if self._state == _IDLE and self._expires_at is None:
                return
            if not self._will_end_posted:
                self._will_end_posted = True
                self._post("WillEnd")
            self._state = _UNBINDING
        elif operation == "bind" and self._state != _BOUND:
            self._state = _BINDING
        self._operation = operation
        self._timeout = timeout
        self._cancel_timer("refresh")
        self.from_header = with_tag(self.from_header, engine.new_tag)
        if self.call_id is None:
            self.call_id = engine.new_call_id()
        self._cseq += 1
        headers: list[tuple[str, Any]] = [
            ("From", self.from_header),
            ("To", without_tag(self.from_header, FrozenToHeader)),
            ("Call-ID", self.call_id),
            ("CSeq", CSeq(self._cseq, "")),
        ]
        if self.route_header is not None:
            headers.append(("Route", loose_route(self.route_header)))
        request = self._build(operation, headers)
        request.headers.set("CSeq", CSeq(self._cseq, request.method))
        request.headers.add("Expires", "0" if operation == "end" else str(self._expires))
        for name, value in self._extra:
            request.headers.add(name, value)
        try:
            self._client = engine.send_request(
                request, self._on_response, authenticator=self._authenticator, timeout=timeout
            )
        except (SIPCoreError, ValueError) as e:
            self._client = None
            self._on_response(None, request.make_response(503, reason_phrase(str(e))))

    def _build(self, operation: str, headers: list[tuple[str, Any]]) -> SIPRequest:
        raise NotImplementedError

    def _succeeded(self, response: SIPResponse) -> int | None:
        raise NotImplementedError

    def _failed(self, response: SIPResponse) -> bool:
        """Recover from a failed bind or refresh (True: a new request is on its way)."""
        return False

    def _on_response(self, client: ClientRequest | None, response: SIPResponse) -> None:
        if client is not self._client or response.code < 200:
            return
        if client is not None:
            self._cseq = client.request.cseq.number  # type: ignore[union-attr]
        self._client = None
        operation = self._operation
        code = response.code
        if operation == "end":
            if 200 <= code < 300:
                self._unbound(expired=False)
            else:
                self._post("DidNotEnd", code=code, reason=response.reason)
                self._will_end_posted = False
                self._after_failure()
        elif 200 <= code < 300:
            self._min_expires_retried = False
            expires = self._succeeded(response)
            if not expires:
                self._unbound(expired=True)
            else:
                self._bound(expires)
        elif code == 423 and self._retry_with_min_expires(response):
            return
        elif not self._failed(response):
            self._min_expires_retried = False
            min_expires = response.min_expires if code == 423 else None
            self._post(
                "DidFail",
                code=code,
                reason=response.reason,
                route_header=self.route_header,
                min_expires=min_expires,
            )
            self._after_failure()
        else:
            return
        self._run_pending()

    def _retry_with_min_expires(self, response: SIPResponse) -> bool:
        try:
            min_expires = response.min_expires
        except SIPCoreError:
            min_expires = None
        if self._min_expires_retried or not min_expires or min_expires <= self._expires:
            return False
        self._min_expires_retried = True
        self._expires = min_expires
        self._start(self._operation or "bind", self._timeout)
        return True

    def _bound(self, expires: int) -> None:
        loop = self._loop
        self._state = _BOUND
        self._expires_at = loop.time() + expires
        self._cancel_timer("warn")
        self._cancel_timer("expire")
        delay = max(expires - self.refresh_margin, expires / 2)
        self._set_timer("refresh", delay, self._refresh)

    def _after_failure(self) -> None:
        """A bind, refresh or end failed: keep a binding that is still valid until it lapses."""
        now = self._loop.time()
        if self._expires_at is None or self._expires_at <= now:
            self._state = _IDLE
            self._expires_at = None
            return
        self._state = _BOUND
        left = self._expires_at - now
        if "expire" not in self._timers:
            warn_in = max(0.0, left - self.expire_warning_time)
            self._set_timer("warn", warn_in, self._will_expire)
            self._set_timer("expire", left, self._expired)

    def _unbound(self, *, expired: bool) -> None:
        for name in list(self._timers):
            self._cancel_timer(name)
        self._state = _IDLE
        self._expires_at = None
        self._will_end_posted = False
        self._post("DidEnd", expired=expired)

    def _run_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None and self._client is None:
            self._start(*pending)

    def _refresh(self) -> None:
        self._timers.pop("refresh", None)
        engine = self._engine
        if self._state == _BOUND and self._client is None and engine is not None:
            if engine.is_running:
                self._start("refresh", self._timeout)
            else:
                self._after_failure()

    def _will_expire(self) -> None:
        self._timers.pop("warn", None)
        if self._state == _BOUND and self._expires_at is not None:
            left = max(0, round(self._expires_at - self._loop.time()))
            self._post("WillExpire", expires=left)

    def _expired(self) -> None:
        self._timers.pop("expire", None)
        if self._state != _IDLE:
            self._unbound(expired=True)

    @property
    def _loop(self) -> asyncio.AbstractEventLoop:
        assert self._engine is not None
        return self._engine.loop

    def _set_timer(self, name: str, delay: float, callback: Any) -> None:
        self._cancel_timer(name)
        self._timers[name] = self._loop.call_later(delay, callback)

    def _cancel_timer(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def _post(self, event: str, **fields: Any) -> None:
        post(self, self._prefix + event, **fields)


class Registration(RefreshedBinding):
    """A registration of one Contact for the address of ``from_header`` (spec: core
    Registration).

    ``register(contact_header, route_header, timeout=None)`` registers (again: a
    new Contact replaces the old one, which is removed in the same REGISTER) and keeps
    the registration refreshed; ``end(timeout=None)`` removes it. ``route_header`` is
    the outbound proxy: the REGISTER goes there (RFC 3263 for a name) with it as a
    loose Route. ``duration`` is the Expires asked for. ``end()`` with nothing
    registered (and nothing being registered) does nothing.

    Notifications: SIPRegistrationDidSucceed (code, reason, contact_header,
    contact_header_list, expires_in, route_header), SIPRegistrationDidFail (code,
    reason, route_header, min_expires), SIPRegistrationWillExpire (expires),
    SIPRegistrationWillEnd, SIPRegistrationDidEnd (expired), SIPRegistrationDidNotEnd
    (code, reason). See the module docstring for the rules.
    """

    _prefix = "SIPRegistration"
    _states: ClassVar[dict[str, str]] = {
        _IDLE: "unregistered",
        _BINDING: "registering",
        _BOUND: "registered",
        _UNBINDING: "unregistering",
    }

    def __init__(
        self,
        from_header: Any,
        credentials: Credentials | None = None,
        duration: int = 300,
        extra_headers: Iterable[Any] | None = None,
    ) -> None:
        super().__init__(from_header, credentials, duration, extra_headers)
        self.contact_header: FrozenContactHeader | None = None
        self._registered_contact: FrozenContactHeader | None = None
        self._stale_contact: FrozenContactHeader | None = None

    def __repr__(self) -> str:
        return f"<Registration {self.from_header.uri} {self.state}>"

    @property
    def is_registered(self) -> bool:
        return self._state in (_BOUND, _UNBINDING) and self._registered_contact is not None

    @property
    def contact_uri(self) -> Any:
        """The URI of the registered Contact, or None."""
        contact = self._registered_contact
        return contact.uri if contact is not None and self.is_registered else None

    def register(
        self, contact_header: Any, route_header: Any, timeout: float | None = None
    ) -> None:
        contact = frozen_header(FrozenContactHeader, contact_header, "contact_header")
        if contact.is_wildcard:
            raise ValueError("register() needs a Contact address, not *")
        route = frozen_header(FrozenRouteHeader, route_header, "route_header", optional=True)
        _check_timeout(timeout)
        engine = running_engine()
        on_sip_thread(self._register, engine, contact, route, timeout)

    def end(self, timeout: float | None = None) -> None:
        _check_timeout(timeout)
        on_sip_thread(self._end, timeout)

    def _register(
        self,
        engine: Engine,
        contact: FrozenContactHeader,
        route: FrozenRouteHeader | None,
        timeout: float | None,
    ) -> None:
        self._engine = engine
        if self._registered_contact is not None and self._registered_contact.uri != contact.uri:
            self._stale_contact = self._registered_contact
        self.contact_header = contact
        self.route_header = route
        self._request_operation("bind", timeout)

    def _end(self, timeout: float | None) -> None:
        if self._engine is None:
            return
        self._request_operation("end", timeout)

    def _build(self, operation: str, headers: list[tuple[str, Any]]) -> SIPRequest:
        uri = self.from_header.uri
        request_uri = FrozenSIPURI(uri.host, None, None, uri.port, uri.secure)
        contact = self.contact_header
        assert contact is not None
        if operation == "end":
            contact = _with_expires(contact, 0)
        headers.append(("Contact", contact))
        stale = self._stale_contact
        if operation != "end" and stale is not None:
            headers.append(("Contact", _with_expires(stale, 0)))
        return SIPRequest("REGISTER", request_uri, headers)

    def _succeeded(self, response: SIPResponse) -> int | None:
        self._stale_contact = None
        contact = self.contact_header
        assert contact is not None
        try:
            contacts = response.contact
        except SIPCoreError:
            contacts = []
        ours = next((c for c in contacts if c.uri == contact.uri), None)
        expires = ours.expires if ours is not None else None
        if expires is None:
            try:
                expires = response.expires
            except SIPCoreError:
                expires = None
        if expires is None:
            expires = self._expires if ours is not None or not contacts else 0
        self._registered_contact = contact if expires else None
        if expires:
            self._post(
                "DidSucceed",
                code=response.code,
                reason=response.reason,
                contact_header=contact,
                contact_header_list=contacts,
                expires_in=expires,
                route_header=self.route_header,
            )
        return expires

    def _unbound(self, *, expired: bool) -> None:
        self._registered_contact = None
        super()._unbound(expired=expired)


def _with_expires(contact: FrozenContactHeader, expires: int) -> FrozenContactHeader:
    parameters = {k: v for k, v in contact.parameters.items() if k.lower() != "expires"}
    parameters["expires"] = str(expires)
    return FrozenContactHeader(contact.uri, contact.display_name, parameters)


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and (isinstance(timeout, bool) or not timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds or None, not {timeout!r}")
