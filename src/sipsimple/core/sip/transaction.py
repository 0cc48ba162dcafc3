"""SIP transactions (RFC 3261 section 17, updated by RFC 6026), sans-IO.

The :class:`TransactionLayer` is what the Engine drives. It owns every client and
server transaction of a user agent and never touches a socket or a clock:

- ``receive_message(message, source, transport, now)`` takes a parsed message from
  the transport, which has already stamped ``received``/``rport`` on the top Via of a
  request (RFC 3261 section 18.2.1, RFC 3581). Requests are matched to a server
  transaction (section 17.2.3, with the RFC 2543 rules for branches without the magic
  cookie) or start a new one;
  responses are matched to a client transaction (section 17.1.3).
- ``send_request(request, destination, reliable, now)`` starts a client transaction;
  ``send_response(transaction, response, now)`` answers through a server transaction;
  ``send_ack(transaction, ack, destination)`` sends the TU's ACK for a 2xx;
  ``cancel(transaction, now)`` cancels an INVITE as section 9.1 says (the CANCEL waits
  for a provisional response); ``transport_error(transaction, now)`` reports that the
  transport could not send for a transaction.
- ``messages_to_send()`` returns :class:`Transmission` tuples (bytes, destination,
  transaction) for the transport; ``next_event()`` returns the events for the TU, one
  at a time, None when there are no more; ``get_timer()`` is the next deadline and
  ``handle_timer(now)`` runs the timers due at ``now``.

Destinations are opaque: a client transaction sends to whatever the TU gave to
``send_request``; a server transaction sends to a :class:`ResponseDestination`, the
data section 18.2.2 and RFC 3581 need (the connection the request came on, and the
address to use when that is gone or the transport is UDP).

What the transactions do on their own, as RFC 3261 and RFC 6026 require: retransmit
requests (timers A and E) and non-2xx responses (G), send 100 Trying for an INVITE the
TU has not answered within ``trying_delay``, resend the last response when a request is
retransmitted, build and resend the ACK for a non-2xx final response, absorb ACKs for
non-2xx responses, pass every 2xx to an INVITE up (Accepted state, timer M) and resend
the TU's ACK when a 2xx is retransmitted, keep an answered INVITE server transaction in
Accepted for 64*T1 (timer L) so that retransmitted INVITEs are absorbed. Acting for the
UA core, the layer also retransmits a 2xx to an INVITE until its ACK arrives (RFC 3261
section 13.3.1.4: T1 doubling to T2, on every transport) and reports a missing ACK when
timer L fires. An INVITE client transaction in the proceeding state has no timer of
its own (RFC 3261 section 17.1.1.2): the TU ends it with ``cancel`` when its patience
runs out, or sets ``timer_c`` in the TimerSettings.

Every match is a dict lookup; ``max_transactions`` bounds what the layer holds.

Following RFC 6026 section 8.8, a transport error in a server transaction is reported
to the TU but leaves the transaction in its state (its timers end it); a client
transaction ends on one (RFC 3261 section 17.1.4). Following RFC 6026 section 8.9, a
response that matches no client transaction is to be discarded by a UA: it is reported
as :class:`StrayResponse` for logging only.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from sipsimple.core.errors import SIPCoreError
from sipsimple.core.sip.headers import CSeq
from sipsimple.core.sip.message import SIPRequest, SIPResponse
from sipsimple.core.sip.timers import TimerSettings

__all__ = [
    "DEFAULT_MAX_TRANSACTIONS",
    "MAGIC_COOKIE",
    "AckReceived",
    "CancelReceived",
    "ClientTransaction",
    "InviteClientTransaction",
    "InviteServerTransaction",
    "NonInviteClientTransaction",
    "NonInviteServerTransaction",
    "ProceedingTimeout",
    "RequestReceived",
    "RequestRejected",
    "ResponseDestination",
    "ResponseReceived",
    "ServerTransaction",
    "StrayResponse",
    "Transaction",
    "TransactionError",
    "TransactionEvent",
    "TransactionLayer",
    "TransactionLimitError",
    "TransactionState",
    "TransactionStateError",
    "TransactionTerminated",
    "TransactionTimedOut",
    "TransactionTransportError",
    "Transmission",
    "build_ack",
    "build_cancel",
    "is_reliable",
]

MAGIC_COOKIE = "z9hG4bK"
"""Branches starting with this were made by an RFC 3261 client (section 8.1.1.7)."""

Address = tuple[str, int]

DEFAULT_MAX_TRANSACTIONS = 65536
"""The TransactionLayer's default bound on the transactions it holds at once."""


class TransactionError(SIPCoreError):
    """Base class of the transaction layer's errors."""


class TransactionStateError(TransactionError):
    """A response or operation that the transaction cannot take in its current state."""


class TransactionLimitError(TransactionError):
    """The layer holds ``max_transactions`` transactions and cannot start another."""


class TransactionState(StrEnum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    ACCEPTED = "accepted"
    TERMINATED = "terminated"


_CALLING = TransactionState.CALLING
_TRYING = TransactionState.TRYING
_PROCEEDING = TransactionState.PROCEEDING
_COMPLETED = TransactionState.COMPLETED
_CONFIRMED = TransactionState.CONFIRMED
_ACCEPTED = TransactionState.ACCEPTED
_TERMINATED = TransactionState.TERMINATED


def is_reliable(transport: str) -> bool:
    """Whether a transport name (``udp``, ``tcp``, ``tls``, ``ws``, ...) is reliable."""
    return transport.lower() != "udp"


def _default_port(transport: str) -> int:
    return 5061 if transport.upper() in ("TLS", "WSS") else 5060


@dataclass(frozen=True, slots=True)
class ResponseDestination:
    """Where a server transaction's responses go (RFC 3261 section 18.2.2, RFC 3581).

    On a reliable ``transport`` the response goes over the connection the request
    came on, the one to ``source``; if that connection is gone, to ``address``. On UDP
    it goes to ``address``: the source address and, when the client asked with
    ``rport``, the source port (else the sent-by port), or the ``maddr`` of the Via.
    """

    transport: str
    source: Address
    address: Address


class Transmission(NamedTuple):
    """Bytes for the transport, where to send them, and the transaction they belong
    to (None for an ACK to a 2xx and for stateless responses), so that a failure can
    be reported with ``transport_error``."""

    data: bytes
    destination: Any
    transaction: Transaction | None


# -- events -----------------------------------------------------------------------------


@dataclass(slots=True)
class RequestReceived:
    """A new request, with the server transaction the TU answers it through."""

    transaction: ServerTransaction
    request: SIPRequest


@dataclass(slots=True)
class AckReceived:
    """An ACK for the TU: an ACK for a 2xx (RFC 3261 section 13.2.2.4).

    ``transaction`` is the INVITE server transaction whose 2xx it acknowledges when the
    layer still holds it (the 2xx retransmissions have then stopped), else None: the
    ACK matched nothing, and the dialog layer decides whether it belongs to a dialog.
    """

    request: SIPRequest
    transaction: InviteServerTransaction | None


@dataclass(slots=True)
class CancelReceived:
    """A CANCEL, with its own server transaction and the one it cancels.

    ``target`` is the server transaction it matched (RFC 3261 section 9.2), None when
    none did. The TU answers the CANCEL with 200 (or 481 when ``target`` is None) and,
    when ``target`` is an INVITE still in the proceeding state, the INVITE with 487.
    """

    transaction: NonInviteServerTransaction
    request: SIPRequest
    target: ServerTransaction | None


@dataclass(slots=True)
class ResponseReceived:
    """A response for a client transaction.

    ``retransmission`` is True only for a 2xx to an INVITE whose To tag was already
    seen: the layer has resent the TU's ACK for it, if the TU gave one with send_ack.
    A 2xx with a new To tag comes from another fork of the INVITE (a new dialog).
    """

    transaction: ClientTransaction
    response: SIPResponse
    retransmission: bool = False


@dataclass(slots=True)
class TransactionTimedOut:
    """A transaction gave up; ``timer`` says which one fired.

    B (INVITE) and F (non-INVITE): no final response. H: no ACK for a non-2xx
    response. L: no ACK for a 2xx to an INVITE (RFC 3261 section 13.3.1.4: the session
    should be ended with BYE). ``cancel``: no final response 64*T1 after a CANCEL
    (section 9.1). A TransactionTerminated follows.
    """

    transaction: Transaction
    timer: str


@dataclass(slots=True)
class ProceedingTimeout:
    """Timer C fired for an INVITE client transaction: no final response within
    ``timer_c`` of the last provisional one. The layer has cancelled the INVITE (or
    will, once a provisional response arrives); its final response follows as usual."""

    transaction: InviteClientTransaction


@dataclass(slots=True)
class TransactionTransportError:
    """The transport could not send for this transaction. A client transaction is
    terminated (a TransactionTerminated follows); a server transaction stays in its
    state until its timers end it (RFC 6026 section 8.8)."""

    transaction: Transaction


@dataclass(slots=True)
class TransactionTerminated:
    """The transaction ended and the layer forgot it. Sent once per transaction."""

    transaction: Transaction


@dataclass(slots=True)
class StrayResponse:
    """A response that matched no client transaction; a UA discards it (RFC 6026
    section 8.9). Reported for logging."""

    response: SIPResponse
    source: Address


@dataclass(slots=True)
class RequestRejected:
    """A new request arrived while the layer held ``max_transactions`` transactions:
    it was answered statelessly with ``response`` (503) and not passed on."""

    request: SIPRequest
    response: SIPResponse
    source: Address


TransactionEvent = (
    RequestReceived
    | AckReceived
    | CancelReceived
    | ResponseReceived
    | TransactionTimedOut
    | ProceedingTimeout
    | TransactionTransportError
    | TransactionTerminated
    | StrayResponse
    | RequestRejected
)


# -- message helpers -------------------------------------------------------------------


def build_ack(request: SIPRequest, response: SIPResponse) -> SIPRequest:
    """The ACK for a non-2xx final response to ``request`` (RFC 3261 section 17.1.1.3).

    Request-URI, Call-ID, From, the top Via (alone) and Route come from the request, To
    from the response (with its tag), CSeq is the request's number with method ACK.
    """
    headers = request.headers
    pairs: list[tuple[str, Any]] = [("Via", headers.getall("Via")[0])]
    max_forwards = headers.get("Max-Forwards")
    if max_forwards is not None:
        pairs.append(("Max-Forwards", max_forwards))
    pairs += [
        ("From", headers["From"]),
        ("To", response.headers["To"]),
        ("Call-ID", headers["Call-ID"]),
        ("CSeq", CSeq(request.cseq.number, "ACK")),  # type: ignore[union-attr]
    ]
    pairs += [("Route", route) for route in headers.getall("Route")]
    return SIPRequest("ACK", request.request_uri, pairs)


def build_cancel(request: SIPRequest) -> SIPRequest:
    """A CANCEL for ``request`` (RFC 3261 section 9.1).

    Request-URI, Call-ID, From, To and the CSeq number are the request's, with method
    CANCEL; the top Via (alone, so the branch is the same) and every Route are copied;
    no Require or Proxy-Require.
    """
    if request.method == "ACK":
        raise ValueError("an ACK cannot be cancelled")
    headers = request.headers
    pairs: list[tuple[str, Any]] = [("Via", headers.getall("Via")[0])]
    pairs.append(("Max-Forwards", headers.get("Max-Forwards") or "70"))
    pairs += [
        ("From", headers["From"]),
        ("To", headers["To"]),
        ("Call-ID", headers["Call-ID"]),
        ("CSeq", CSeq(request.cseq.number, "CANCEL")),  # type: ignore[union-attr]
    ]
    pairs += [("Route", route) for route in headers.getall("Route")]
    return SIPRequest("CANCEL", request.request_uri, pairs)


def _response_destination(via: Any, source: Address, transport: str) -> ResponseDestination:
    """Where the responses to a request go (RFC 3261 section 18.2.2, RFC 3581). The Via
    is the transport's to stamp (it knows the source): the layer only reads it."""
    host, port = source
    transport = transport.lower()
    if transport == "udp":
        host = via.maddr or host
    if via.rport is None:
        port = via.port or _default_port(via.transport)
    return ResponseDestination(transport, source, (host, port))


def _tag(header: Any) -> str | None:
    return header.tag if header is not None else None


# -- transactions ----------------------------------------------------------------------


class Transaction:
    """What every transaction has: its request, state, transport kind and timers.

    Timers are kept by name with their deadline; the layer keeps one heap entry for the
    earliest of them. Transactions are made and driven by the TransactionLayer only.
    """

    __slots__ = (
        "_deadline",
        "_interval",
        "_layer",
        "_timers",
        "method",
        "reliable",
        "request",
        "state",
    )

    def __init__(self, layer: TransactionLayer, request: SIPRequest, reliable: bool) -> None:
        self._layer = layer
        self.request = request
        self.method = request.method
        self.reliable = reliable
        self.state = _TERMINATED
        self._timers: dict[str, float] = {}
        self._deadline: float | None = None
        self._interval = layer.timers.t1

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.method} {self.state}>"

    @property
    def branch(self) -> str | None:
        """The branch of the request's top Via."""
        return self.request.top_via.branch  # type: ignore[no-any-return]

    # timers
    def _set_timer(self, name: str, delay: float, now: float) -> None:
        self._timers[name] = now + delay

    def _clear_timers(self, *names: str) -> None:
        timers = self._timers
        for name in names:
            timers.pop(name, None)

    def _fire(self, now: float) -> None:
        """Run every timer due at ``now``, earliest first, once each."""
        due = sorted((when, name) for name, when in self._timers.items() if when <= now)
        for when, name in due:
            if self.state is _TERMINATED:
                return
            if self._timers.get(name) != when:
                continue
            del self._timers[name]
            getattr(self, "_timer_" + name)(now)

    def _terminate(self) -> None:
        self.state = _TERMINATED
        self._timers.clear()
        self._layer._forget(self)

    def _transport_error(self, now: float) -> None:
        raise NotImplementedError


class ClientTransaction(Transaction):
    """A client transaction: sends its request to ``destination`` until answered."""

    __slots__ = ("_data", "_key", "destination", "internal", "last_response")

    def __init__(
        self,
        layer: TransactionLayer,
        request: SIPRequest,
        destination: Any,
        reliable: bool,
        internal: bool = False,
        data: bytes | None = None,
        key: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(layer, request, reliable)
        self.destination = destination
        self.internal = internal
        self.last_response: SIPResponse | None = None
        self._data = bytes(request) if data is None else data
        self._key = (request.top_via.branch, self.method) if key is None else key

    def _send_request(self) -> None:
        self._layer._transmit(self._data, self.destination, self)

    def _receive_response(self, response: SIPResponse, now: float) -> None:
        raise NotImplementedError

    def _timed_out(self, timer: str) -> None:
        self._layer._emit_for(self, TransactionTimedOut(self, timer))
        self._terminate()

    def _transport_error(self, now: float) -> None:
        if self.state is not _TERMINATED:
            self._layer._emit_for(self, TransactionTransportError(self))
            self._terminate()


class InviteClientTransaction(ClientTransaction):
    """RFC 3261 section 17.1.1 with RFC 6026's Accepted state (figure 5 updated).

    ``cancelled`` is True once the TU (or timer C) asked to cancel it.
    """

    __slots__ = ("_ack", "_acks", "_cancel_pending", "_tags", "cancelled")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cancelled = False
        self._cancel_pending = False
        self._ack: bytes | None = None
        self._acks: dict[str | None, tuple[bytes, Any]] = {}
        self._tags: set[str | None] = set()

    def _start(self, now: float) -> None:
        timers = self._layer.timers
        self.state = _CALLING
        self._send_request()
        if not self.reliable:
            self._set_timer("A", timers.t1, now)
        self._set_timer("B", timers.timeout, now)
        if timers.timer_c is not None:
            self._set_timer("C", timers.timer_c, now)

    def _timer_A(self, now: float) -> None:
        self._send_request()
        self._interval *= 2
        self._set_timer("A", self._interval, now)

    def _timer_B(self, now: float) -> None:
        self._timed_out("B")

    def _timer_C(self, now: float) -> None:
        if self.state is _CALLING:
            self._timed_out("C")
            return
        self._layer._emit_for(self, ProceedingTimeout(self))
        self._cancel(now)

    def _timer_D(self, now: float) -> None:
        self._terminate()

    def _timer_M(self, now: float) -> None:
        self._terminate()

    def _timer_cancel(self, now: float) -> None:
        self._timed_out("cancel")

    def _receive_response(self, response: SIPResponse, now: float) -> None:
        code = response.code
        state = self.state
        layer = self._layer
        if state is _CALLING or state is _PROCEEDING:
            if code < 200:
                self.state = _PROCEEDING
                self._clear_timers("A", "B")
                if layer.timers.timer_c is not None:
                    self._set_timer("C", layer.timers.timer_c, now)
                self.last_response = response
                layer._emit_for(self, ResponseReceived(self, response))
                if self._cancel_pending:
                    self._send_cancel(now)
                return
            self._clear_timers("A", "B", "C", "cancel")
            self._cancel_pending = False
            self.last_response = response
            if code < 300:
                self.state = _ACCEPTED
                self._tags.add(_tag(response.to_header))
                self._set_timer("M", layer.timers.timeout, now)
                layer._emit_for(self, ResponseReceived(self, response))
                return
            self.state = _COMPLETED
            self._ack = bytes(build_ack(self.request, response))
            layer._transmit(self._ack, self.destination, self)
            layer._emit_for(self, ResponseReceived(self, response))
            if self.reliable:
                self._terminate()
            else:
                self._set_timer("D", layer.timers.timer_d, now)
        elif state is _ACCEPTED:
            if 200 <= code < 300:
                tag = _tag(response.to_header)
                seen = tag in self._tags
                if seen:
                    ack = self._acks.get(tag)
                    if ack is not None:
                        layer._transmit(ack[0], ack[1], None)
                else:
                    self._tags.add(tag)
                layer._emit_for(self, ResponseReceived(self, response, seen))
        elif state is _COMPLETED and code >= 300:
            layer._transmit(self._ack, self.destination, self)  # type: ignore[arg-type]

    def _remember_ack(self, ack: SIPRequest, data: bytes, destination: Any) -> None:
        if self.state is _ACCEPTED:
            self._acks[_tag(ack.to_header)] = (data, destination)

    def _cancel(self, now: float) -> bool:
        if self.cancelled or self.state not in (_CALLING, _PROCEEDING):
            return False
        self.cancelled = True
        if self.state is _CALLING:
            self._cancel_pending = True
        else:
            self._send_cancel(now)
        return True

    def _send_cancel(self, now: float) -> None:
        self._cancel_pending = False
        self._layer._start_cancel(self, now)
        self._clear_timers("C")
        self._set_timer("cancel", self._layer.timers.timeout, now)


class NonInviteClientTransaction(ClientTransaction):
    """RFC 3261 section 17.1.2 (figure 6)."""

    __slots__ = ()

    def _start(self, now: float) -> None:
        timers = self._layer.timers
        self.state = _TRYING
        self._send_request()
        if not self.reliable:
            self._set_timer("E", timers.t1, now)
        self._set_timer("F", timers.timeout, now)

    def _timer_E(self, now: float) -> None:
        self._send_request()
        if self.state is _TRYING:
            self._interval = min(2 * self._interval, self._layer.timers.t2)
            self._set_timer("E", self._interval, now)
        else:
            self._set_timer("E", self._layer.timers.t2, now)

    def _timer_F(self, now: float) -> None:
        self._timed_out("F")

    def _timer_K(self, now: float) -> None:
        self._terminate()

    def _receive_response(self, response: SIPResponse, now: float) -> None:
        state = self.state
        if state is not _TRYING and state is not _PROCEEDING:
            return
        self.last_response = response
        layer = self._layer
        if response.code < 200:
            self.state = _PROCEEDING
            layer._emit_for(self, ResponseReceived(self, response))
            return
        self.state = _COMPLETED
        self._clear_timers("E", "F")
        layer._emit_for(self, ResponseReceived(self, response))
        if self.reliable:
            self._terminate()
        else:
            self._set_timer("K", layer.timers.t4, now)


class ServerTransaction(Transaction):
    """A server transaction: passes its request up once and answers it.

    ``source`` and ``transport`` say where the request came from; ``destination`` is
    where the responses go; ``last_response`` is the last one the TU gave.
    """

    __slots__ = (
        "_key",
        "_last",
        "_target_key",
        "cancelled",
        "destination",
        "last_response",
        "source",
        "transport",
    )

    def __init__(
        self,
        layer: TransactionLayer,
        request: SIPRequest,
        source: Address,
        transport: str,
        destination: ResponseDestination,
        key: tuple[Any, ...],
        target_key: tuple[Any, ...] | None,
    ) -> None:
        super().__init__(layer, request, is_reliable(transport))
        self.source = source
        self.transport = transport
        self.destination = destination
        self.cancelled = False
        self.last_response: SIPResponse | None = None
        self._last: bytes | None = None
        self._key = key
        self._target_key = target_key

    def _send(self, response: SIPResponse) -> None:
        self.last_response = response
        self._last = bytes(response)
        self._resend()

    def _resend(self) -> None:
        self._layer._transmit(self._last, self.destination, self)  # type: ignore[arg-type]

    def _transport_error(self, now: float) -> None:
        if self.state is not _TERMINATED:
            self._layer._emit(TransactionTransportError(self))

    def _receive_request(self, request: SIPRequest, now: float) -> None:
        raise NotImplementedError

    def _send_response(self, response: SIPResponse, now: float) -> None:
        raise NotImplementedError


class InviteServerTransaction(ServerTransaction):
    """RFC 3261 section 17.2.1 with RFC 6026's Accepted state (figure 7 updated).

    ``ack_received`` says whether the ACK for its final response arrived.
    """

    __slots__ = ("_accepted_key", "_provisional", "_received_at", "ack_received")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.ack_received = False
        self._provisional = False
        self._accepted_key: tuple[Any, ...] | None = None
        self._received_at = 0.0

    def _start(self, now: float) -> None:
        self.state = _PROCEEDING
        self._received_at = now
        delay = self._layer.timers.trying_delay
        if delay:
            self._set_timer("trying", delay, now)
        else:
            self._send_trying(now)

    def _send_trying(self, now: float) -> None:
        request = self.request
        headers = []
        timestamp = request.headers.get("Timestamp")
        if timestamp is not None:
            delay = now - self._received_at
            if delay > 0 and " " not in timestamp and "\t" not in timestamp:
                timestamp = f"{timestamp} {delay:.3f}"
            headers.append(("Timestamp", timestamp))
        self._send(request.make_response(100, headers=headers))
        self._provisional = True

    def _timer_trying(self, now: float) -> None:
        if self.state is _PROCEEDING and not self._provisional:
            self._send_trying(now)

    def _timer_G(self, now: float) -> None:
        self._resend()
        self._interval = min(2 * self._interval, self._layer.timers.t2)
        self._set_timer("G", self._interval, now)

    def _timer_H(self, now: float) -> None:
        self._layer._emit(TransactionTimedOut(self, "H"))
        self._terminate()

    def _timer_I(self, now: float) -> None:
        self._terminate()

    def _timer_retransmit(self, now: float) -> None:
        self._resend()
        self._interval = min(2 * self._interval, self._layer.timers.t2)
        self._set_timer("retransmit", self._interval, now)

    def _timer_L(self, now: float) -> None:
        if not self.ack_received:
            self._layer._emit(TransactionTimedOut(self, "L"))
        self._terminate()

    def _terminate(self) -> None:
        if self._accepted_key is not None:
            self._layer._accepted.pop(self._accepted_key, None)
            self._accepted_key = None
        super()._terminate()

    def _receive_request(self, request: SIPRequest, now: float) -> None:
        state = self.state
        if request.method == "ACK":
            if state is _COMPLETED:
                self.ack_received = True
                self._clear_timers("G", "H")
                self.state = _CONFIRMED
                if self.reliable:
                    self._terminate()
                else:
                    self._set_timer("I", self._layer.timers.t4, now)
            elif state is _ACCEPTED:
                self._acknowledged(request)
        elif state is _PROCEEDING:
            if not self._provisional:
                self._clear_timers("trying")
                self._send_trying(now)
            else:
                self._resend()
        elif state is _COMPLETED:
            self._resend()

    def _acknowledged(self, ack: SIPRequest) -> None:
        """An ACK for our 2xx (RFC 6026 section 7.1: passed to the TU, not absorbed)."""
        if not self.ack_received:
            self.ack_received = True
            self._clear_timers("retransmit")
            if self._accepted_key is not None:
                self._layer._accepted.pop(self._accepted_key, None)
                self._accepted_key = None
        self._layer._emit(AckReceived(ack, self))

    def _send_response(self, response: SIPResponse, now: float) -> None:
        code = response.code
        state = self.state
        timers = self._layer.timers
        if state is _PROCEEDING:
            self._clear_timers("trying")
            self._send(response)
            if code < 200:
                self._provisional = True
            elif code < 300:
                self.state = _ACCEPTED
                self._set_timer("L", timers.timeout, now)
                self._interval = timers.t1
                self._set_timer("retransmit", timers.t1, now)
                key = (
                    self.request.call_id,
                    _tag(self.request.from_header),
                    _tag(response.to_header),
                    self.request.cseq.number,  # type: ignore[union-attr]
                )
                self._accepted_key = key
                self._layer._accepted[key] = self
            else:
                self.state = _COMPLETED
                if not self.reliable:
                    self._interval = timers.t1
                    self._set_timer("G", timers.t1, now)
                self._set_timer("H", timers.timeout, now)
        elif state is _ACCEPTED and 200 <= code < 300:
            self._send(response)
        else:
            raise TransactionStateError(
                f"an INVITE server transaction in the {state} state cannot send a {code}"
            )


class NonInviteServerTransaction(ServerTransaction):
    """RFC 3261 section 17.2.2 (figure 8)."""

    __slots__ = ()

    def _start(self, now: float) -> None:
        self.state = _TRYING

    def _timer_J(self, now: float) -> None:
        self._terminate()

    def _receive_request(self, request: SIPRequest, now: float) -> None:
        if self.state is _PROCEEDING or self.state is _COMPLETED:
            self._resend()

    def _send_response(self, response: SIPResponse, now: float) -> None:
        state = self.state
        if state is not _TRYING and state is not _PROCEEDING:
            raise TransactionStateError(
                f"a non-INVITE server transaction in the {state} state cannot send a "
                f"{response.code}: it already sent its final response"
            )
        self._send(response)
        if response.code < 200:
            self.state = _PROCEEDING
            return
        self.state = _COMPLETED
        if self.reliable:
            self._terminate()
        else:
            self._set_timer("J", self._layer.timers.timeout, now)


# -- the layer -------------------------------------------------------------------------


class TransactionLayer:
    """All transactions of a user agent; see the module docstring for the interface.

    ``max_transactions`` bounds the transactions held at once: past it, send_request
    raises TransactionLimitError and new requests are answered 503 statelessly (a
    RequestRejected event says so). Over UDP a transaction is held 64*T1 after its
    final response (timers J and L), so a call answered and ended by the peer holds two
    for 32 s: the default allows about 1000 such calls per second (a few hundred MB at
    most), far more than the CPU takes; 10000 made 157 calls/s the ceiling. ``rng`` is
    the random source of branches, tags and Call-IDs (a seeded random.Random in tests;
    by default the system's).
    """

    def __init__(
        self,
        *,
        timers: TimerSettings | None = None,
        max_transactions: int = DEFAULT_MAX_TRANSACTIONS,
        rng: random.Random | None = None,
    ) -> None:
        if max_transactions < 1:
            raise ValueError(f"max_transactions must be positive, not {max_transactions!r}")
        self.timers = timers if timers is not None else TimerSettings()
        self.max_transactions = max_transactions
        self._rng = rng if rng is not None else random.SystemRandom()
        self._clients: dict[tuple[str, str], ClientTransaction] = {}
        self._servers: dict[tuple[Any, ...], ServerTransaction] = {}
        self._targets: dict[tuple[Any, ...], ServerTransaction] = {}
        self._accepted: dict[tuple[Any, ...], InviteServerTransaction] = {}
        self._heap: list[tuple[float, int, Transaction]] = []
        self._counter = 0
        self._count = 0
        self._events: deque[TransactionEvent] = deque()
        self._output: list[Transmission] = []

    def __len__(self) -> int:
        """The number of transactions held."""
        return self._count

    # -- identifiers ----------------------------------------------------------------

    def new_branch(self) -> str:
        """A new Via branch: the magic cookie and 64 random bits."""
        return f"{MAGIC_COOKIE}{self._rng.getrandbits(64):016x}"

    def new_tag(self) -> str:
        """A new From/To tag (64 random bits, RFC 3261 section 19.3 asks for 32)."""
        return f"{self._rng.getrandbits(64):016x}"

    def new_call_id(self) -> str:
        """A new Call-ID (128 random bits)."""
        return f"{self._rng.getrandbits(128):032x}"

    # -- the TU's side --------------------------------------------------------------

    def send_request(
        self,
        request: SIPRequest,
        destination: Any,
        reliable: bool,
        now: float,
        *,
        data: bytes | None = None,
        branch: str | None = None,
    ) -> ClientTransaction:
        """Start a client transaction for ``request`` (not ACK: see send_ack).

        The top Via must carry a branch with the magic cookie that no other client
        transaction of this layer uses (new_branch() makes one). ``data`` is
        ``bytes(request)`` when the caller has it already (the transport serialised the
        request as it finalised the Via): it is sent as it is, never serialised again.
        ``branch`` is that Via's branch when the caller has just made it: the layer then
        does not parse the Via back to read it.
        """
        if not isinstance(request, SIPRequest):
            raise TypeError(f"send_request() needs a SIPRequest, not {type(request).__name__}")
        if request.method == "ACK":
            raise ValueError("an ACK has no client transaction: send it with send_ack()")
        if branch is None:
            branch = request.top_via.branch
        if not branch or not branch.startswith(MAGIC_COOKIE):
            raise ValueError(
                f"the top Via of a request needs a branch starting with {MAGIC_COOKIE}, "
                f"not {branch!r}"
            )
        key = (branch, request.method)
        if key in self._clients:
            raise ValueError(f"branch {branch} is already used by a {request.method} transaction")
        if self._count >= self.max_transactions:
            raise TransactionLimitError(
                f"cannot start a {request.method} transaction: the layer holds "
                f"max_transactions={self.max_transactions} transactions"
            )
        cls = InviteClientTransaction if request.method == "INVITE" else NonInviteClientTransaction
        transaction = cls(self, request, destination, reliable, data=data, key=key)
        self._clients[key] = transaction
        self._count += 1
        transaction._start(now)
        self._schedule(transaction)
        return transaction

    def send_response(
        self, transaction: ServerTransaction, response: SIPResponse, now: float
    ) -> None:
        """Send ``response`` through ``transaction``; TransactionStateError when the
        transaction cannot send it (a final response after the final one, anything
        after the transaction ended, a non-2xx after a 2xx to INVITE)."""
        if not isinstance(transaction, ServerTransaction) or transaction._layer is not self:
            raise TypeError("send_response() needs a server transaction of this layer")
        if not isinstance(response, SIPResponse):
            raise TypeError(f"send_response() needs a SIPResponse, not {type(response).__name__}")
        cseq = response.cseq
        if cseq is None or cseq.method != transaction.method:
            raise ValueError(
                f"a response with CSeq {cseq} cannot answer a {transaction.method} request"
            )
        transaction._send_response(response, now)
        self._schedule(transaction)

    def send_ack(
        self,
        transaction: InviteClientTransaction | None,
        ack: SIPRequest,
        destination: Any,
        *,
        data: bytes | None = None,
    ) -> None:
        """Send the TU's ACK for a 2xx (RFC 3261 section 13.2.2.4).

        With the INVITE client transaction that received the 2xx (still in Accepted),
        the layer keeps the ACK and resends it whenever that 2xx is retransmitted.
        ``data``: ``bytes(ack)`` when the caller has it already, as in send_request.
        """
        if not isinstance(ack, SIPRequest) or ack.method != "ACK":
            raise ValueError("send_ack() needs an ACK request")
        if data is None:
            data = bytes(ack)
        self._transmit(data, destination, None)
        if transaction is not None:
            if not isinstance(transaction, InviteClientTransaction):
                raise TypeError("send_ack() needs the INVITE client transaction or None")
            transaction._remember_ack(ack, data, destination)

    def cancel(self, transaction: InviteClientTransaction, now: float) -> bool:
        """Cancel an INVITE (RFC 3261 section 9.1). False when there is nothing to
        cancel: a final response arrived, or it was cancelled already.

        The CANCEL goes to the INVITE's destination at once if a provisional response
        arrived, else as soon as one does. Its own transaction is the layer's business:
        the outcome the TU sees is the INVITE's final response (normally 487), or a
        TransactionTimedOut with timer ``cancel`` when none comes within 64*T1.
        """
        if not isinstance(transaction, InviteClientTransaction) or transaction._layer is not self:
            raise TypeError("cancel() needs an INVITE client transaction of this layer")
        result = transaction._cancel(now)
        self._schedule(transaction)
        return result

    def transport_error(self, transaction: Transaction, now: float) -> None:
        """The transport failed to send a Transmission of ``transaction``."""
        if transaction._layer is not self:
            raise TypeError("transport_error() needs a transaction of this layer")
        transaction._transport_error(now)
        self._schedule(transaction)

    # -- the transport's side -------------------------------------------------------

    def receive_message(
        self, message: SIPRequest | SIPResponse, source: Address, transport: str, now: float
    ) -> None:
        """Take a message the transport received from ``source`` over ``transport``."""
        if isinstance(message, SIPResponse):
            self._receive_response(message, source, now)
        elif isinstance(message, SIPRequest):
            self._receive_request(message, source, transport, now)
        else:
            raise TypeError(f"receive_message() needs a SIP message, not {type(message).__name__}")

    def _receive_response(self, response: SIPResponse, source: Address, now: float) -> None:
        transaction = None
        branch = response.top_via.branch
        cseq = response.cseq
        if branch is not None and cseq is not None:
            transaction = self._clients.get((branch, cseq.method))
        if transaction is None:
            self._events.append(StrayResponse(response, source))
            return
        transaction._receive_response(response, now)
        self._schedule(transaction)

    def _receive_request(
        self, request: SIPRequest, source: Address, transport: str, now: float
    ) -> None:
        via = request.top_via
        method = request.method
        branch = via.branch
        if branch is not None and branch.startswith(MAGIC_COOKIE):
            port = via.port or _default_port(via.transport)
            base: tuple[Any, ...] = (branch, via.host.lower(), port)
            transaction = self._servers.get((base, "INVITE" if method == "ACK" else method))
        else:
            base, transaction = self._legacy_match(request)
        if transaction is not None:
            transaction._receive_request(request, now)
            self._schedule(transaction)
            return
        if method == "ACK":
            self._receive_ack(request)
            return
        destination = _response_destination(via, source, transport)
        if self._count >= self.max_transactions:
            self._reject(request, destination, source)
            return
        key = (base, method)
        target_key = None if method == "CANCEL" else base
        cls = InviteServerTransaction if method == "INVITE" else NonInviteServerTransaction
        transaction = cls(self, request, source, transport, destination, key, target_key)
        self._servers[key] = transaction
        if target_key is not None:
            self._targets[target_key] = transaction
        self._count += 1
        transaction._start(now)
        if method == "CANCEL":
            target = self._targets.get(base)
            if target is not None:
                target.cancelled = True
            self._events.append(CancelReceived(transaction, request, target))  # type: ignore[arg-type]
        else:
            self._events.append(RequestReceived(transaction, request))
        self._schedule(transaction)

    def _legacy_match(
        self, request: SIPRequest
    ) -> tuple[tuple[Any, ...], ServerTransaction | None]:
        """(key base, matching transaction) for a request without the magic cookie
        (RFC 3261 section 17.2.3): Request-URI, To tag, From tag, Call-ID, CSeq number
        and top Via, with the method apart. An ACK matches an INVITE whose final
        response had the ACK's To tag; the INVITE had that tag, or none."""
        cseq = request.cseq
        number = cseq.number if cseq is not None else None
        to_tag = _tag(request.to_header)
        rest = (_tag(request.from_header), request.call_id, number, request.top_via.body)
        base = (request.request_uri, to_tag, *rest)
        if request.method != "ACK":
            return base, self._servers.get((base, request.method))
        for tag in (to_tag, None) if to_tag is not None else (None,):
            transaction = self._servers.get(((request.request_uri, tag, *rest), "INVITE"))
            if transaction is not None:
                response = transaction.last_response
                if (
                    response is not None
                    and response.code >= 200
                    and _tag(response.to_header) == to_tag
                ):
                    return base, transaction
        return base, None

    def _receive_ack(self, ack: SIPRequest) -> None:
        cseq = ack.cseq
        key = (
            ack.call_id,
            _tag(ack.from_header),
            _tag(ack.to_header),
            cseq.number if cseq is not None else None,
        )
        transaction = self._accepted.get(key)
        if transaction is not None:
            transaction._acknowledged(ack)
            self._schedule(transaction)
        else:
            self._events.append(AckReceived(ack, None))

    def _reject(
        self, request: SIPRequest, destination: ResponseDestination, source: Address
    ) -> None:
        response = request.make_response(503)
        self._transmit(bytes(response), destination, None)
        self._events.append(RequestRejected(request, response, source))

    # -- output ---------------------------------------------------------------------

    def messages_to_send(self) -> list[Transmission]:
        """What the transport should send now, in order; each call empties the list."""
        output = self._output
        self._output = []
        return output

    def next_event(self) -> TransactionEvent | None:
        """The next event for the TU, or None."""
        events = self._events
        return events.popleft() if events else None

    # -- timers ---------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """The earliest deadline at which handle_timer() has something to do."""
        heap = self._heap
        while heap:
            deadline, _, transaction = heap[0]
            if transaction._deadline == deadline and transaction.state is not _TERMINATED:
                return deadline
            heapq.heappop(heap)
        return None

    def handle_timer(self, now: float) -> None:
        """Run every timer due at ``now``."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, transaction = heapq.heappop(heap)
            if transaction._deadline != deadline or transaction.state is _TERMINATED:
                continue
            transaction._deadline = None
            transaction._fire(now)
            self._schedule(transaction)

    # -- what the transactions call -------------------------------------------------

    def _schedule(self, transaction: Transaction) -> None:
        timers = transaction._timers
        deadline = min(timers.values()) if timers else None
        if deadline != transaction._deadline:
            transaction._deadline = deadline
            if deadline is not None:
                self._counter += 1
                heapq.heappush(self._heap, (deadline, self._counter, transaction))
                if len(self._heap) > 4 * self._count + 64:
                    self._compact()

    def _compact(self) -> None:
        self._heap = [
            entry
            for entry in self._heap
            if entry[2]._deadline == entry[0] and entry[2].state is not _TERMINATED
        ]
        heapq.heapify(self._heap)

    def _transmit(self, data: bytes, destination: Any, transaction: Transaction | None) -> None:
        self._output.append(Transmission(data, destination, transaction))

    def _emit(self, event: TransactionEvent) -> None:
        self._events.append(event)

    def _emit_for(self, transaction: ClientTransaction, event: TransactionEvent) -> None:
        if not transaction.internal:
            self._events.append(event)

    def _start_cancel(self, invite: InviteClientTransaction, now: float) -> None:
        key = (invite._key[0], "CANCEL")
        if key in self._clients:
            return
        cancel = build_cancel(invite.request)
        transaction = NonInviteClientTransaction(
            self, cancel, invite.destination, invite.reliable, internal=True, key=key
        )
        self._clients[key] = transaction  # type: ignore[index]
        self._count += 1
        transaction._start(now)
        self._schedule(transaction)

    def _forget(self, transaction: Transaction) -> None:
        """Drop a terminated transaction from the tables and tell the TU."""
        self._count -= 1
        if isinstance(transaction, ClientTransaction):
            key = transaction._key
            if self._clients.get(key) is transaction:
                del self._clients[key]
            if transaction.internal:
                return
        else:
            server: ServerTransaction = transaction  # type: ignore[assignment]
            if self._servers.get(server._key) is server:
                del self._servers[server._key]
            target_key = server._target_key
            if target_key is not None and self._targets.get(target_key) is server:
                del self._targets[target_key]
        self._events.append(TransactionTerminated(transaction))
