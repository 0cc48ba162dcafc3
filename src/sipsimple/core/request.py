"""Out-of-dialog requests: the generic Request, IncomingRequest and Message.

These and the other request objects of the core (Registration, Publication) share one
threading rule: constructors and public methods may be called from any thread; they
check their arguments and state at once (raising TypeError, ValueError or
:class:`RequestStateError`), then hand the work to the SIP thread and return. What
happens next arrives as notifications, posted on the SIP thread with the object as
sender. A local failure (no response: timeout, transport error, DNS) is reported like
a response: code 408 for a timeout, 503 otherwise, the reason saying why.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from sipsimple.core.engine import Engine, EngineError
from sipsimple.core.errors import SIPCoreError
from sipsimple.core.sip.auth import Credentials, DigestAuthenticator
from sipsimple.core.sip.headers import (
    BaseHeader,
    CSeq,
    FrozenContactHeader,
    FrozenFromHeader,
    FrozenRouteHeader,
    FrozenToHeader,
)
from sipsimple.core.sip.message import SIPRequest, SIPResponse
from sipsimple.core.sip.uri import SIPURI, BaseSIPURI, FrozenSIPURI
from sipsimple.core.usage import ClientRequest, ServerRequest, reason_phrase
from sipsimple.notification import NotificationCenter, NotificationData
from sipsimple.threading import call_in_sip_thread, is_sip_thread

__all__ = ["IncomingRequest", "Message", "Request", "RequestStateError"]


class RequestStateError(SIPCoreError):
    """A method called in a state that does not allow it."""


# -- what the request objects share ----------------------------------------------------


def on_sip_thread(function: Callable[..., Any], *args: Any) -> None:
    """Run ``function(*args)`` now on the SIP thread, or hand it over from another."""
    if is_sip_thread():
        function(*args)
    else:
        call_in_sip_thread(function, *args)


def running_engine() -> Engine:
    engine = Engine()
    if not engine.is_running:
        raise EngineError("the Engine is not running: start it first")
    return engine


def post(sender: object, name: str, **fields: Any) -> None:
    NotificationCenter().post_notification(name, sender=sender, data=NotificationData(**fields))


def frozen_header(cls: Any, value: Any, what: str, *, optional: bool = False) -> Any:
    """``value`` (a header of cls's kind, mutable or frozen) as a Frozen header."""
    if value is None and optional:
        return None
    if not isinstance(value, BaseHeader) or value._family != cls._family:
        raise TypeError(f"{what} must be a {cls.name} header, not {value!r}")
    return value if isinstance(value, cls) else cls.new(value)


def frozen_uri(value: Any, what: str) -> FrozenSIPURI:
    if isinstance(value, SIPURI):
        return FrozenSIPURI.new(value)
    if isinstance(value, FrozenSIPURI):
        return value
    raise TypeError(f"{what} must be a SIPURI, not {value!r}")


def loose_route(route_header: Any) -> FrozenRouteHeader:
    """The outbound proxy as a Route value, with ``lr`` (RFC 3261 section 19.1.1)."""
    route = frozen_header(FrozenRouteHeader, route_header, "route_header")
    uri = route.uri
    if isinstance(uri, BaseSIPURI) and not any(k.lower() == "lr" for k in uri.parameters):
        parameters = {**uri.parameters, "lr": None}
        uri = FrozenSIPURI(uri.host, uri.user, uri.password, uri.port, uri.secure, parameters)
        route = FrozenRouteHeader(uri, route.display_name, route.parameters)
    return route


def with_tag(from_header: FrozenFromHeader, engine_tag: Callable[[], str]) -> FrozenFromHeader:
    if from_header.tag is not None:
        return from_header
    parameters = {**from_header.parameters, "tag": engine_tag()}
    return FrozenFromHeader(from_header.uri, from_header.display_name, parameters)


def without_tag(header: Any, cls: Any) -> Any:
    parameters = {k: v for k, v in header.parameters.items() if k.lower() != "tag"}
    return cls(header.uri, header.display_name, parameters)


def extra_header_pairs(extra_headers: Iterable[Any] | None) -> list[tuple[str, Any]]:
    """``extra_headers`` (header objects with name and body) as (name, header) pairs."""
    pairs = []
    for header in extra_headers or ():
        if not isinstance(header, BaseHeader):
            raise TypeError(f"extra_headers must hold header objects, not {header!r}")
        pairs.append((header.name, header))
    return pairs


def body_bytes(body: str | bytes | None) -> bytes:
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode()
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    raise TypeError(f"body must be str or bytes, not {type(body).__name__}")


def authenticator_for(credentials: Credentials | None) -> DigestAuthenticator | None:
    if credentials is None:
        return None
    if not isinstance(credentials, Credentials):
        raise TypeError(f"credentials must be a Credentials, not {credentials!r}")
    return DigestAuthenticator(credentials)


def response_fields(response: SIPResponse) -> dict[str, Any]:
    return {
        "code": response.code,
        "reason": response.reason,
        "headers": response.header_dict(),
        "body": response.body,
    }


def granted_expires(response: SIPResponse) -> int | None:
    """The Expires header of a 2xx, or None."""
    try:
        return response.expires
    except SIPCoreError:
        return None


# -- Request ----------------------------------------------------------------------------


class Request:
    """A generic out-of-dialog non-INVITE client transaction (spec: core Request).

    ``send(timeout=None)`` sends it (``timeout`` bounds the wait for a final response);
    401/407 are answered with ``credentials``. A 2xx with an Expires header moves to
    EXPIRING: SIPRequestWillExpire comes ``expire_warning_time`` seconds before the end
    (at once if the interval is shorter), and SIPRequestDidEnd when it expired.
    ``end()`` ends it in any state. States: INIT -> IN_PROGRESS -> (EXPIRING) ->
    TERMINATED.

    Notifications: SIPRequestGotProvisionalResponse (code, reason, headers, body),
    SIPRequestDidSucceed (code, reason, headers, body, expires), SIPRequestDidFail
    (code, reason, headers, body), SIPRequestWillExpire (expires), SIPRequestDidEnd.
    """

    expire_warning_time = 30

    def __init__(
        self,
        method: str,
        request_uri: Any,
        from_header: Any,
        to_header: Any,
        route_header: Any,
        credentials: Credentials | None = None,
        contact_header: Any = None,
        call_id: str | None = None,
        cseq: int | None = None,
        extra_headers: Iterable[Any] | None = None,
        content_type: str | None = None,
        body: str | bytes | None = None,
    ) -> None:
        if not isinstance(method, str) or method.upper() in ("INVITE", "ACK", "CANCEL"):
            raise ValueError(f"Request sends non-INVITE requests, not {method!r}")
        self.method = method
        self.request_uri = frozen_uri(request_uri, "request_uri")
        self.from_header = frozen_header(FrozenFromHeader, from_header, "from_header")
        self.to_header = frozen_header(FrozenToHeader, to_header, "to_header")
        self.route_header = frozen_header(
            FrozenRouteHeader, route_header, "route_header", optional=True
        )
        self.credentials = credentials
        self._authenticator = authenticator_for(credentials)
        self.contact_header = frozen_header(
            FrozenContactHeader, contact_header, "contact_header", optional=True
        )
        if call_id is not None and not isinstance(call_id, str):
            raise TypeError("call_id must be a str")
        self.call_id = call_id
        if cseq is not None and (not isinstance(cseq, int) or not 0 <= cseq < 2**31):
            raise ValueError(f"cseq must be an int in 0..2**31-1, not {cseq!r}")
        self.cseq = cseq
        self.extra_headers = list(extra_headers or ())
        self._extra = extra_header_pairs(self.extra_headers)
        if (content_type is None) != (body is None):
            raise ValueError("content_type and body go together")
        self.content_type = content_type
        self.body = body
        self.state = "INIT"
        self._lock = threading.Lock()
        self._client: ClientRequest | None = None
        self._timers: list[Any] = []
        self._ended = False

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.request_uri} {self.state}>"

    def send(self, timeout: float | None = None) -> None:
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be positive or None, not {timeout!r}")
        engine = running_engine()
        with self._lock:
            if self.state != "INIT":
                raise RequestStateError(f"a Request is sent once, not in state {self.state}")
            self.state = "IN_PROGRESS"
        on_sip_thread(self._send, engine, timeout)

    def end(self) -> None:
        with self._lock:
            if self.state in ("INIT", "TERMINATED"):
                self.state = "TERMINATED"
                return
        on_sip_thread(self._terminate)

    def _send(self, engine: Engine, timeout: float | None) -> None:
        if self.state != "IN_PROGRESS":
            return
        self.from_header = with_tag(self.from_header, engine.new_tag)
        if self.call_id is None:
            self.call_id = engine.new_call_id()
        if self.cseq is None:
            self.cseq = 1
        headers: list[tuple[str, Any]] = [
            ("From", self.from_header),
            ("To", self.to_header),
            ("Call-ID", self.call_id),
            ("CSeq", CSeq(self.cseq, self.method)),
        ]
        if self.route_header is not None:
            headers.append(("Route", loose_route(self.route_header)))
        if self.contact_header is not None:
            headers.append(("Contact", self.contact_header))
        headers += self._extra
        if self.content_type is not None:
            headers.append(("Content-Type", self.content_type))
        request = SIPRequest(self.method, self.request_uri, headers, body_bytes(self.body))
        try:
            self._client = engine.send_request(
                request, self._on_response, authenticator=self._authenticator, timeout=timeout
            )
        except (SIPCoreError, ValueError) as e:
            self._fail(request.make_response(503, reason_phrase(str(e))))

    def _on_response(self, client: ClientRequest, response: SIPResponse) -> None:
        if self.state != "IN_PROGRESS":
            return
        code = response.code
        if code < 200:
            post(self, "SIPRequestGotProvisionalResponse", **response_fields(response))
            return
        if code >= 300:
            self._fail(response)
            return
        expires = granted_expires(response)
        post(self, "SIPRequestDidSucceed", expires=expires, **response_fields(response))
        if self.state != "IN_PROGRESS":
            return
        if not expires:
            self._terminate()
            return
        self.state = "EXPIRING"
        loop = client.engine.loop
        warn_in = max(0, expires - self.expire_warning_time)
        self._timers = [
            loop.call_later(warn_in, self._will_expire, expires - warn_in),
            loop.call_later(expires, self._expired),
        ]

    def _fail(self, response: SIPResponse) -> None:
        post(self, "SIPRequestDidFail", **response_fields(response))
        self._terminate()

    def _will_expire(self, expires: int) -> None:
        if self.state == "EXPIRING":
            post(self, "SIPRequestWillExpire", expires=expires)

    def _expired(self) -> None:
        if self.state == "EXPIRING":
            self._terminate()

    def _terminate(self) -> None:
        if self._ended:
            return
        self._ended = True
        self.state = "TERMINATED"
        for timer in self._timers:
            timer.cancel()
        self._timers = []
        if self._client is not None:
            self._client.abandon()
        post(self, "SIPRequestDidEnd")


# -- IncomingRequest --------------------------------------------------------------------


class IncomingRequest:
    """A new request of a method listed in the Engine's ``incoming_requests``.

    Announced by SIPIncomingRequestGotRequest (method, request_uri, from_header,
    to_header, headers, body, content_type) with the IncomingRequest as sender; answer
    it with ``answer(code, reason=None, extra_headers=None)``, once with a final code.
    A request left unanswered for ``answer_timeout`` seconds is answered 500 (its
    sender has given up by then: RFC 3261 timer F is 64*T1).
    """

    answer_timeout = 32.0

    def __init__(self, server: ServerRequest) -> None:
        self._server = server
        request = server.request
        self.method = request.method
        self.request_uri = request.request_uri
        self.from_header = request.from_header
        self.to_header = request.to_header
        self.state = "incoming"
        self._lock = threading.Lock()
        self._timer = server.engine.loop.call_later(
            self.answer_timeout, self._answer, 500, "Not Answered", []
        )

    def __repr__(self) -> str:
        return f"<IncomingRequest {self.method} from {self.from_header} {self.state}>"

    @classmethod
    def _received(cls, server: ServerRequest) -> IncomingRequest:
        incoming = cls(server)
        request = server.request
        content_type = request.content_type
        post(
            incoming,
            "SIPIncomingRequestGotRequest",
            method=request.method,
            request_uri=request.request_uri,
            from_header=request.from_header,
            to_header=request.to_header,
            headers=request.header_dict(),
            body=request.body,
            content_type=content_type.content_type if content_type is not None else None,
        )
        return incoming

    def answer(
        self, code: int, reason: str | None = None, extra_headers: Iterable[Any] | None = None
    ) -> None:
        if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 699:
            raise ValueError(f"code must be a SIP status code, not {code!r}")
        pairs = extra_header_pairs(extra_headers)
        with self._lock:
            if self.state != "incoming":
                raise RequestStateError(f"the request was answered already ({self.state})")
            if code >= 200:
                self.state = "answered"
        on_sip_thread(self._answer, code, reason, pairs)

    def _answer(self, code: int, reason: str | None, pairs: list[tuple[str, Any]]) -> None:
        if self._server.answered:
            return
        if code >= 200:
            self.state = "answered"
            self._timer.cancel()
        self._server.answer(code, reason, headers=pairs)


# -- Message ----------------------------------------------------------------------------


class Message:
    """An out-of-dialog MESSAGE (RFC 3428): ``send(timeout=None)`` once.

    Notifications: SIPMessageDidSucceed and SIPMessageDidFail (code, reason, headers,
    body).
    """

    def __init__(
        self,
        from_header: Any,
        to_header: Any,
        route_header: Any,
        content_type: str,
        body: str | bytes,
        credentials: Credentials | None = None,
        extra_headers: Iterable[Any] | None = None,
    ) -> None:
        self.from_header = frozen_header(FrozenFromHeader, from_header, "from_header")
        self.to_header = frozen_header(FrozenToHeader, to_header, "to_header")
        if not isinstance(self.to_header.uri, BaseSIPURI):
            raise ValueError(f"to_header needs a SIP URI, not {self.to_header.uri}")
        self.route_header = frozen_header(
            FrozenRouteHeader, route_header, "route_header", optional=True
        )
        if not isinstance(content_type, str) or "/" not in content_type:
            raise ValueError(f"content_type must be a MIME type, not {content_type!r}")
        self.content_type = content_type
        self.body = body_bytes(body)
        self.credentials = credentials
        self._authenticator = authenticator_for(credentials)
        self.extra_headers = list(extra_headers or ())
        self._extra = extra_header_pairs(self.extra_headers)
        self._sent = False
        self._lock = threading.Lock()
        self.call_id: str | None = None

    def __repr__(self) -> str:
        return f"<Message to {self.to_header.uri}>"

    def send(self, timeout: float | None = None) -> None:
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be positive or None, not {timeout!r}")
        engine = running_engine()
        with self._lock:
            if self._sent:
                raise RequestStateError("a Message is sent once")
            self._sent = True
        on_sip_thread(self._send, engine, timeout)

    def _send(self, engine: Engine, timeout: float | None) -> None:
        self.from_header = with_tag(self.from_header, engine.new_tag)
        self.call_id = engine.new_call_id()
        headers: list[tuple[str, Any]] = [
            ("From", self.from_header),
            ("To", without_tag(self.to_header, FrozenToHeader)),
            ("Call-ID", self.call_id),
            ("CSeq", CSeq(1, "MESSAGE")),
        ]
        if self.route_header is not None:
            headers.append(("Route", loose_route(self.route_header)))
        headers += self._extra
        headers.append(("Content-Type", self.content_type))
        uri = self.to_header.uri
        request_uri = FrozenSIPURI(uri.host, uri.user, None, uri.port, uri.secure, uri.parameters)
        request = SIPRequest("MESSAGE", request_uri, headers, self.body)
        try:
            engine.send_request(
                request, self._on_response, authenticator=self._authenticator, timeout=timeout
            )
        except (SIPCoreError, ValueError) as e:
            response = request.make_response(503, reason_phrase(str(e)))
            post(self, "SIPMessageDidFail", **response_fields(response))

    def _on_response(self, client: ClientRequest, response: SIPResponse) -> None:
        if response.code < 200:
            return
        name = "SIPMessageDidSucceed" if response.code < 300 else "SIPMessageDidFail"
        post(self, name, **response_fields(response))
