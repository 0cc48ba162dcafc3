"""The internal API that the core's request objects and dialog usages are built on.

Everything here runs on the SIP thread. The :class:`~sipsimple.core.engine.Engine`
owns the transport, the transaction layer and the dialog layer; a *usage* (Request,
Registration, Publication, Message, Invitation, Subscription, Referral...) never
touches them directly but goes through these few calls:

Sending
    ``engine.send_request(request, on_response, authenticator=None, dialog=None,
    routes=None, timeout=None)`` sends ``request`` (any method but ACK and CANCEL) in a
    new client transaction and returns its :class:`ClientRequest`. The request needs
    no Via (each attempt gets a fresh top Via and branch); Max-Forwards and User-Agent
    are added when missing. Where it goes: ``routes`` (a list of
    :class:`sipsimple.util.Route`) when given, else the first Route header's URI, else
    the Request-URI, resolved with RFC 3263 (an IP address is used as is, a name is
    looked up with :class:`sipsimple.lookup.DNSLookup`). A timeout, a transport error
    or a 503 moves on to the next destination (RFC 3263 section 4.3).
    ``on_response(client_request, response)`` is called for every provisional
    response, for the final one, and for every further 2xx of an INVITE (forks); a 2xx
    retransmission is not passed on (the transaction layer resends the ACK given to
    :meth:`ClientRequest.send_ack`). A 401/407 is answered by itself when an
    ``authenticator`` (:class:`~sipsimple.core.sip.auth.DigestAuthenticator`) is given:
    the request is sent again with a higher CSeq (the dialog's next one when ``dialog``
    is given) and the credentials; known challenges authorize the first attempt
    pre-emptively. When no response can come, ``on_response`` gets a *local* final
    response instead, and ``client_request.failure`` says why: 408 "Request Timeout"
    (``"timeout"``: the transaction or ``timeout`` expired), 503 (``"transport"``:
    nothing could be sent, the reason phrase says why; ``"dns"``: no destination
    found; ``"stopped"``: the Engine stopped). ``client_request.cancel()`` cancels an
    INVITE; ``client_request.abandon()`` stops reporting. ``client_request.request``
    is the request as last sent: after a 401 its CSeq has moved on, so dialogs are made
    from it (``create_dialog_set(client_request.request)``) when the responses come.
    ``client_request.send_ack(dialog.create_ack(cseq))`` acknowledges a 2xx;
    ``engine.send_ack(ack)`` does so without the INVITE's transaction.

Receiving new requests
    ``engine.register_request_handler(method, handler)`` claims requests outside any
    dialog: ``handler(server_request) -> bool`` returns True when it took the request
    (and will answer it); the handlers of a method are asked newest first, and when
    none takes a request the Engine answers it itself (405, 481 or 489). SUBSCRIBE
    reaches the handlers only for events in the Engine's ``incoming_events``; the
    others are answered 489 by the Engine.

Dialogs
    ``engine.dialog_layer`` makes dialogs (``create_dialog_set(request)`` for a UAC,
    ``create_uas_dialog(request, response)`` for a UAS) and ``engine.remove_dialog``
    forgets one. ``engine.register_dialog_usage(call_id, local_tag, usage)`` routes to
    ``usage.handle_request(server_request) -> bool`` the requests of every dialog with
    that Call-ID and local tag (all the forks of one request of ours, and requests that
    arrive before the dialog exists, such as a NOTIFY racing the 200 of its SUBSCRIBE:
    ``server_request.dialog`` is then None). Usages sharing a dialog (an INVITE and the
    subscription of a REFER) are asked newest first; a request none takes gets 481.
    ACKs of 2xx responses arrive the same way, with ``server_request.transaction``
    None; they are never answered. ``unregister_dialog_usage`` undoes it.

Answering
    A :class:`ServerRequest` answers with ``answer(code, reason, headers=..., body=...)``
    or ``send_response(create_response(...))``; responses get the request's To tag, or
    one made for it (``server_request.to_tag``, the same for every response). Set
    ``on_cancel(server_request, cancel_request)`` on an INVITE to hear of its CANCEL
    (the Engine has answered the CANCEL with 200; the usage answers the INVITE with
    487), ``on_timeout(server_request, timer)`` to hear that its transaction gave
    up ("H": no ACK for a non-2xx, "L": no ACK for a 2xx), and
    ``on_terminated(server_request)`` to hear that it ended (an INVITE server
    transaction's ``ack_received`` then says whether the ACK of a non-2xx came).

Capabilities
    ``engine.add_allowed_methods(*methods)`` and ``engine.add_supported(*options)``
    extend the Allow and Supported headers (and the options a Require may name).
    ``engine.new_tag()``, ``engine.new_call_id()`` make identifiers.

:func:`failover` is the same RFC 3263 rule for callers that drive whole attempts
themselves (the middleware trying a Registration on each Route in turn).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sipsimple.core.sip.auth import AuthenticationError, DigestAuthenticator
from sipsimple.core.sip.dialog import Dialog
from sipsimple.core.sip.headers import CSeq
from sipsimple.core.sip.message import SIPRequest, SIPResponse
from sipsimple.core.sip.transaction import (
    ClientTransaction,
    InviteClientTransaction,
    ServerTransaction,
    TransactionStateError,
)
from sipsimple.core.sip.uri import BaseSIPURI
from sipsimple.core.transport import TransportAddress, TransportError, TransportFailure
from sipsimple.core.transport.address import DEFAULT_PORTS, canonical_ip
from sipsimple.util import Route

if TYPE_CHECKING:
    from sipsimple.core.engine import Engine

__all__ = [
    "FAILOVER_CODES",
    "ClientRequest",
    "DialogUsage",
    "RequestHandler",
    "ResponseCallback",
    "ServerRequest",
    "failover",
    "reason_phrase",
    "request_target",
    "route_destination",
]

log = logging.getLogger("sipsimple.core.engine")

ResponseCallback = Callable[["ClientRequest", SIPResponse], None]
HeadersArg = Mapping[str, Any] | Iterable[tuple[str, Any]] | None

FAILOVER_CODES = frozenset((408, 503))
"""Final codes after which RFC 3263 tries the next destination (408 only when local)."""

_AUTH_RETRIES = 3
_T = TypeVar("_T")


class RequestHandler(Protocol):
    """Claims a new out-of-dialog request: True when it took it (and will answer it)."""

    def __call__(self, request: ServerRequest) -> bool: ...


class DialogUsage(Protocol):
    """What ``register_dialog_usage`` routes requests to."""

    def handle_request(self, request: ServerRequest) -> bool: ...


def request_target(request: SIPRequest) -> Any:
    """The URI a request is sent towards: its first Route (RFC 3261 8.1.2), or its
    Request-URI."""
    routes = request.route
    return routes[0].uri if routes else request.request_uri


def route_destination(route: Route) -> TransportAddress:
    """A :class:`sipsimple.util.Route` as the transport's address."""
    port = route.port or DEFAULT_PORTS[route.transport]
    return TransportAddress(route.transport, route.address, port)


def uri_destination(uri: Any, transports: Sequence[str]) -> TransportAddress | None:
    """The destination of a URI whose host is an IP address (RFC 3263 section 4.1 and
    4.2 without DNS): its transport parameter, else TLS for sips and the first of
    ``transports`` otherwise; None when the host is a name (look it up)."""
    if not isinstance(uri, BaseSIPURI):
        raise ValueError(f"cannot send a request towards a {uri!r} URI")
    host = canonical_ip(uri.host)
    if host is None:
        return None
    parameter = next((v for k, v in uri.parameters.items() if k.lower() == "transport"), None)
    if uri.secure:
        transport = "tls"
    elif parameter is not None:
        transport = parameter.lower()
    else:
        transport = "udp" if "udp" in transports or not transports else transports[0]
    if transport not in DEFAULT_PORTS:
        raise ValueError(f"unsupported transport {transport!r} in {uri}")
    return TransportAddress(transport, host, uri.port or DEFAULT_PORTS[transport])


async def failover(
    routes: Iterable[Route],
    attempt: Callable[[Route], Awaitable[_T]],
    should_failover: Callable[[_T], bool],
) -> tuple[Route, _T]:
    """Try ``attempt(route)`` on each route in order (RFC 3263 section 4.3).

    Moves on while ``should_failover(result)`` says so (typically: the final code is a
    local 408 or a 503) and routes remain; returns the last route tried and its result.
    ValueError when ``routes`` is empty.
    """
    last: tuple[Route, _T] | None = None
    for route in routes:
        result = await attempt(route)
        last = (route, result)
        if not should_failover(result):
            break
    if last is None:
        raise ValueError("failover() needs at least one route")
    return last


class ClientRequest:
    """One request of a usage until its final response: authentication retries, RFC
    3263 failover, a local timeout. Made by ``engine.send_request``; see the module
    docstring.

    ``request`` is the latest version sent (its CSeq is the one to continue from),
    ``transaction`` its client transaction, ``destination`` where it went,
    ``final_response`` the first final response (None before), ``failure`` the reason
    of a local final response (None for a real one).
    """

    def __init__(
        self,
        engine: Engine,
        request: SIPRequest,
        on_response: ResponseCallback,
        *,
        authenticator: DigestAuthenticator | None = None,
        dialog: Dialog | None = None,
        routes: Sequence[Route] | None = None,
        timeout: float | None = None,
    ) -> None:
        if request.method in ("ACK", "CANCEL"):
            raise ValueError(f"a {request.method} is not sent with send_request")
        self.engine = engine
        self.request = request
        self.on_response = on_response
        self.authenticator = authenticator
        self.dialog = dialog
        self.transaction: ClientTransaction | None = None
        self.destination: TransportAddress | None = None
        self.final_response: SIPResponse | None = None
        self.failure: str | None = None
        self._routes = list(routes) if routes is not None else None
        self._destinations: list[TransportAddress] = []
        self._last_error: str | None = None
        self._last_failure: TransportFailure | None = None
        self._size_rule = True  # False once TCP chosen for size was refused (retry on UDP)
        self._auth_retries = 0
        self._abandoned = False
        self._timeout = timeout
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<ClientRequest {self.request.method} {self.request.request_uri}>"

    @property
    def is_invite(self) -> bool:
        return self.request.method == "INVITE"

    @property
    def done(self) -> bool:
        """True once the final response was reported (or the request abandoned)."""
        return self.final_response is not None or self._abandoned

    # -- what the usage calls

    def start(self) -> None:
        engine = self.engine
        if self.authenticator is not None and self.authenticator.challenges:
            self._authorize(self.request)
        if self._timeout is not None:
            self._timer = engine.loop.call_later(self._timeout, self._timed_out)
        if self._routes is not None:
            self._destinations = [route_destination(route) for route in self._routes]
        else:
            target = request_target(self.request)
            destination = uri_destination(target, engine.transports)
            if destination is None:
                self._task = engine.loop.create_task(self._lookup(target))
                return
            self._destinations = [destination]
        self._next()

    def cancel(self) -> bool:
        """Cancel an INVITE (RFC 3261 section 9.1); False when there is nothing to cancel."""
        transaction = self.transaction
        if not isinstance(transaction, InviteClientTransaction) or self.done:
            return False
        return self.engine._cancel(transaction)

    def send_ack(self, ack: SIPRequest) -> None:
        """Send the ACK for a 2xx this INVITE received (built with ``dialog.create_ack``);
        the transaction layer resends it when that 2xx is retransmitted."""
        transaction = self.transaction
        if not isinstance(transaction, InviteClientTransaction):
            transaction = None
        self.engine.send_ack(ack, transaction)

    def abandon(self) -> None:
        """Stop reporting: nothing more reaches ``on_response``; the transaction runs on."""
        self._abandoned = True
        self._stop_timer()
        if self._task is not None:
            self._task.cancel()

    # -- sending

    async def _lookup(self, target: Any) -> None:
        try:
            self._destinations = await self.engine.lookup_destinations(target)
        except Exception as e:  # DNSLookupError, ValueError: no destination at all
            self._fail(503, f"DNS lookup failed: {e}", "dns")
            return
        self._next()

    def _next(self) -> None:
        """Send to the next destination; a local failure when none is left."""
        self._size_rule = True
        while self._destinations and not self.done:
            if self._send(self.request, self._destinations.pop(0)):
                return
        self._fail(503, self._last_error or "no destination", "transport")

    def _send(self, request: SIPRequest, destination: TransportAddress) -> bool:
        self.request = request
        self._last_failure = None
        try:
            self.transaction = self.engine._start_client(
                request, destination, self, size_rule=self._size_rule
            )
        except TransportError as e:
            self._last_error = str(e)
            return False
        self.destination = destination
        return True

    def _retry_on_udp(self) -> bool:
        """RFC 3261 section 18.1.1: a request that went to TCP only for its size, and
        whose connection was refused, is sent again over UDP."""
        destination = self.destination
        transaction = self.transaction
        if (
            not self._size_rule
            or destination is None
            or transaction is None
            or destination.transport != "udp"
            or transaction.destination.transport != "tcp"
            or self._last_failure is not TransportFailure.CONNECTION_REFUSED
        ):
            return False
        log.info("%s: TCP refused for a large request, sending it over UDP", self)
        self._size_rule = False
        return self._send(self.request, destination)

    def _authorize(self, request: SIPRequest) -> None:
        assert self.authenticator is not None
        headers = request.headers
        for name in ("Authorization", "Proxy-Authorization"):
            if name in headers:
                del headers[name]
        for name, value in self.authenticator.authorization_headers(
            request.method, str(request.request_uri), request.body
        ):
            headers.add(name, value)

    def _retry_with_credentials(self, response: SIPResponse) -> bool:
        authenticator = self.authenticator
        if authenticator is None or self._auth_retries >= _AUTH_RETRIES:
            return False
        try:
            authenticator.handle_challenge(
                response.headers.getall("WWW-Authenticate"),
                response.headers.getall("Proxy-Authenticate"),
            )
        except AuthenticationError as e:
            log.info("%s: not retrying the %d: %s", self, response.code, e)
            return False
        self._auth_retries += 1
        old = self.request
        if self.dialog is not None:
            number = (self.dialog.local_seq or 0) + 1
            self.dialog.local_seq = number
        else:
            number = old.cseq.number + 1  # type: ignore[union-attr]
        headers = old.headers.copy()
        headers.set("CSeq", CSeq(number, old.method))
        retry = SIPRequest(old.method, old.request_uri, headers, old.body)
        self._authorize(retry)
        assert self.destination is not None
        if not self._send(retry, self.destination):
            self._next()
        return True

    # -- what the Engine reports

    def _response(
        self, transaction: ClientTransaction, response: SIPResponse, retransmission: bool
    ) -> None:
        if retransmission or self._abandoned or transaction is not self.transaction:
            return
        code = response.code
        if self.final_response is not None:
            if self.is_invite and 200 <= code < 300:
                self.on_response(self, response)  # another fork answered
            return
        if code >= 200:
            if code in (401, 407) and self._retry_with_credentials(response):
                return
            if code == 503 and self._destinations:
                self._next()
                return
            self.final_response = response
            self._stop_timer()
        self.on_response(self, response)

    def _transaction_failed(self, transaction: ClientTransaction | None, reason: str) -> None:
        """The transaction timed out (``reason`` "timeout") or could not send."""
        if self.done or (transaction is not None and transaction is not self.transaction):
            return
        if reason == "transport" and self._retry_on_udp():
            return
        if self._destinations and reason != "stopped":
            self._next()
        elif reason == "timeout":
            self._fail(408, "Request Timeout", reason)
        else:
            self._fail(503, self._last_error or "transport error", reason)

    def _timed_out(self) -> None:
        self._timer = None
        if self.done or self.cancel():
            return  # a cancelled INVITE ends with its final response (487)
        self._fail(408, "Request Timeout", "timeout")

    def _fail(self, code: int, reason: str, failure: str) -> None:
        if self.done:
            return
        self.failure = failure
        self.final_response = response = self.request.make_response(code, reason_phrase(reason))
        self._stop_timer()
        self.on_response(self, response)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def reason_phrase(text: str) -> str:
    """Any text as a valid reason phrase (printable, at most 200 characters)."""
    return "".join(c if c.isprintable() else " " for c in text)[:200] or "Service Unavailable"


class ServerRequest:
    """An incoming request and the server transaction that answers it (None for an ACK).

    ``source`` is where it came from, ``dialog`` the dialog it belongs to (None outside
    of one), ``final_response`` the final response sent (None before).
    """

    __slots__ = (
        "_to_tag",
        "dialog",
        "engine",
        "final_response",
        "on_cancel",
        "on_terminated",
        "on_timeout",
        "request",
        "source",
        "transaction",
    )

    def __init__(
        self,
        engine: Engine,
        request: SIPRequest,
        transaction: ServerTransaction | None,
        source: TransportAddress,
        dialog: Dialog | None = None,
    ) -> None:
        self.engine = engine
        self.request = request
        self.transaction = transaction
        self.source = source
        self.dialog = dialog
        self.final_response: SIPResponse | None = None
        self.on_cancel: Callable[[ServerRequest, SIPRequest], None] | None = None
        self.on_timeout: Callable[[ServerRequest, str], None] | None = None
        self.on_terminated: Callable[[ServerRequest], None] | None = None
        self._to_tag: str | None = None

    def __repr__(self) -> str:
        return f"<ServerRequest {self.request.method} from {self.source}>"

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def to_tag(self) -> str:
        """The To tag of the responses: the request's, or one made once for them."""
        if self._to_tag is None:
            to = self.request.to_header
            tag = to.tag if to is not None else None
            self._to_tag = tag if tag is not None else self.engine.new_tag()
        return self._to_tag

    @property
    def answered(self) -> bool:
        return self.final_response is not None

    def create_response(
        self, code: int, reason: str | None = None, *, headers: HeadersArg = None, body: bytes = b""
    ) -> SIPResponse:
        response = self.request.make_response(
            code, reason, to_tag=None if code == 100 else self.to_tag, headers=headers, body=body
        )
        server = self.engine.user_agent
        if server and "Server" not in response.headers:
            response.headers.add("Server", server)
        return response

    def send_response(self, response: SIPResponse) -> None:
        """Send a response through the transaction; TransactionStateError if it cannot."""
        if self.transaction is None:
            raise TransactionStateError(f"a {self.request.method} is not answered")
        self.engine._send_response(self.transaction, response)
        if response.code >= 200 and self.final_response is None:
            self.final_response = response

    def answer(
        self, code: int, reason: str | None = None, *, headers: HeadersArg = None, body: bytes = b""
    ) -> SIPResponse:
        """Build and send a response; returns it."""
        response = self.create_response(code, reason, headers=headers, body=body)
        self.send_response(response)
        return response
