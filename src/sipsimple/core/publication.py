"""Publication: event state published with PUBLISH (RFC 3903), kept refreshed.

The refresh, Min-Expires, expiry and end rules are those of
:class:`~sipsimple.core.registration.RefreshedBinding`. Specific to PUBLISH: the
SIP-ETag of each 2xx is kept and sent back in SIP-If-Match (a refresh carries no
body, a modification the new one); a 412 Conditional Request Failed (the server lost
our state) is recovered by publishing the last body afresh, without SIP-If-Match,
once; ``publish(None)`` refreshes now.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from sipsimple.core.engine import Engine
from sipsimple.core.errors import SIPCoreError
from sipsimple.core.registration import RefreshedBinding, _check_timeout
from sipsimple.core.request import (
    RequestStateError,
    body_bytes,
    frozen_header,
    on_sip_thread,
    running_engine,
)
from sipsimple.core.sip.auth import Credentials
from sipsimple.core.sip.grammar import is_token
from sipsimple.core.sip.headers import FrozenRouteHeader
from sipsimple.core.sip.message import SIPRequest, SIPResponse

__all__ = ["Publication"]


class Publication(RefreshedBinding):
    """The state of one event package for the address of ``from_header`` (spec: core
    Publication).

    ``publish(body, route_header, timeout=None)`` publishes ``body`` (str or bytes of
    ``content_type``), or refreshes when ``body`` is None; ``end(timeout=None)``
    removes the state. ``etag`` is the entity tag of the published state.

    Notifications: SIPPublicationDidSucceed (code, reason, expires, route_header),
    SIPPublicationDidFail (code, reason, route_header, min_expires),
    SIPPublicationWillExpire (expires), SIPPublicationWillEnd, SIPPublicationDidEnd
    (expired), SIPPublicationDidNotEnd (code, reason).
    """

    _prefix = "SIPPublication"
    _states: ClassVar[dict[str, str]] = {
        "idle": "unpublished",
        "binding": "publishing",
        "bound": "published",
        "unbinding": "unpublishing",
    }

    def __init__(
        self,
        from_header: Any,
        event: str,
        content_type: str,
        credentials: Credentials | None = None,
        duration: int = 300,
        extra_headers: Iterable[Any] | None = None,
    ) -> None:
        super().__init__(from_header, credentials, duration, extra_headers)
        if not isinstance(event, str) or not is_token(event):
            raise ValueError(f"event must be an event package name, not {event!r}")
        if not isinstance(content_type, str) or "/" not in content_type:
            raise ValueError(f"content_type must be a MIME type, not {content_type!r}")
        self.event = event
        self.content_type = content_type
        self.etag: str | None = None
        self._body: bytes | None = None
        self._send_body = False
        self._recovering = False

    def __repr__(self) -> str:
        return f"<Publication {self.event} for {self.from_header.uri} {self.state}>"

    def publish(
        self, body: str | bytes | None, route_header: Any, timeout: float | None = None
    ) -> None:
        data = None if body is None else body_bytes(body)
        route = frozen_header(FrozenRouteHeader, route_header, "route_header", optional=True)
        _check_timeout(timeout)
        engine = running_engine()
        if data is None and self._body is None:
            raise RequestStateError("nothing was published yet: publish a body first")
        on_sip_thread(self._publish, engine, data, route, timeout)

    def end(self, timeout: float | None = None) -> None:
        _check_timeout(timeout)
        on_sip_thread(self._end, timeout)

    def _publish(
        self,
        engine: Engine,
        body: bytes | None,
        route: FrozenRouteHeader | None,
        timeout: float | None,
    ) -> None:
        self._engine = engine
        self.route_header = route
        if body is not None:
            self._body = body
            self._send_body = True
        self._request_operation("bind", timeout)

    def _end(self, timeout: float | None) -> None:
        if self._engine is None:
            return
        self._request_operation("end", timeout)

    def _build(self, operation: str, headers: list[tuple[str, Any]]) -> SIPRequest:
        uri = self.from_header.uri
        headers.append(("Event", self.event))
        if self.etag is not None:
            headers.append(("SIP-If-Match", self.etag))
        body = b""
        if operation == "bind" and (self._send_body or self.etag is None):
            body = self._body or b""
            headers.append(("Content-Type", self.content_type))
            self._send_body = False
        return SIPRequest("PUBLISH", uri, headers, body)

    def _succeeded(self, response: SIPResponse) -> int | None:
        self._recovering = False
        self.etag = response.headers.get("SIP-ETag") or self.etag
        try:
            expires = response.expires
        except SIPCoreError:
            expires = None
        if expires is None:
            expires = self._expires
        if expires:
            self._post(
                "DidSucceed",
                code=response.code,
                reason=response.reason,
                expires=expires,
                route_header=self.route_header,
            )
        return expires

    def _failed(self, response: SIPResponse) -> bool:
        if response.code == 412 and self.etag is not None and not self._recovering:
            self._recovering = True
            self.etag = None
            self._start("bind", self._timeout)
            return True
        self._recovering = False
        if response.code == 412:
            self.etag = None
        return False

    def _unbound(self, *, expired: bool) -> None:
        self.etag = None
        super()._unbound(expired=expired)
