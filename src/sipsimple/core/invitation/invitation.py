"""The Invitation: one INVITE dialog usage (RFC 3261 sections 13-15 with RFC 6026, RFC 3262
reliable provisional responses, RFC 3311 UPDATE, RFC 4028 session timers).

Threading follows the other core objects (see :mod:`sipsimple.core.request`): the methods
may be called from any thread, check their arguments and the state at once (TypeError,
ValueError, :class:`InvitationStateError`) and do the work on the SIP thread. What happens
arrives as notifications, with the Invitation as sender, in the order it happened: the
notifications of one event are all queued before observers acting on the first can add
theirs.

States (``state``): None -> "outgoing" (send_invite) or "incoming" (a new INVITE) ->
"early" (a 1xx) -> "connecting" (a 2xx) -> "connected" (the ACK) -> "disconnecting" ->
"disconnected". In "connected", ``sub_state`` is "normal", "sent_proposal" (our re-INVITE
is out), "received_proposal" (a re-INVITE with an offer came) or
"received_proposal_request" (a re-INVITE without one: answer it with an offer).

Notifications:

SIPInvitationChangedState
    prev_state, state, prev_sub_state, sub_state, originator ("local" / "remote") and the
    message that caused it: ``method`` for a request, ``code`` and ``reason`` for a
    response, with ``headers`` (a mapping with the content of
    :meth:`SIPMessage.header_dict`, made when first read) and ``body`` when it came from
    the peer. "disconnected" also has ``code``, ``reason`` (the final
    response that ended it: of the INVITE, of the BYE, the 487 of a CANCEL...) and
    ``disconnect_reason``: "user request", "timeout", "missing ACK", "missing PRACK",
    "session expired", "dialog gone", the reason phrase of a rejection, or what a local
    failure was ("transport error: ...", "DNS lookup failed: ...", "engine stopped").
    A new incoming INVITE is announced with state "incoming" (the SessionManager's cue).
SIPInvitationGotSDPUpdate
    succeeded, local_sdp and remote_sdp (the active FrozenSDPSessions), or error: posted
    when an offer/answer exchange completes (or fails), before the state change the same
    message causes.
SIPInvitationDidProcessTransaction
    originator (who sent the request), method, code, reason, and for INVITEs we answered
    ``ack_received`` (True, False, or "unknown" when the transaction ended without us
    learning it): one per completed transaction of the dialog (INVITE, re-INVITE, BYE,
    UPDATE, PRACK), what the Session turns into SIPSessionDidProcessTransaction. For a
    non-2xx answer to an INVITE it comes when the server transaction ends (over UDP,
    T4 = 5 s after the ACK).

Protocol behaviour: CANCEL before a final response (a 2xx crossing it is acknowledged and
ended with BYE); 2xx retransmitted until the ACK, and a missing ACK (timer L) ends the call
with BYE; a second 2xx from another fork is acknowledged and ended with BYE; 491 on glare
with the RFC 3261 section 14.1 back-off (2.1-4 s for the owner of the Call-ID, else 0-2 s)
and an automatic retry (meanwhile sub_state stays "sent_proposal"; the peer's re-INVITE
is taken, and ours follows once it is answered; cancel_reinvite() drops it); a re-INVITE
answered 408 or 481, or timing out, ends the dialog with BYE; the callee's BYE waits for
the ACK of its 2xx (RFC 3261 section 15); reliable
provisional responses when the peer requires them or we do (``require_100rel``), sent
with RSeq, retransmitted until their PRACK and matched by RAck; UPDATE from the peer is
answered at once (an offer gets the answer our active description makes); session timers
refreshed with UPDATE when the peer allows it, else re-INVITE, and BYE when the session
expires. A re-INVITE whose offer is the peer's active description unchanged (a session
refresh) is answered by itself without bothering the application.

Settings (class attributes, changeable per instance before the dialog starts):
``session_expires`` (the interval we ask for, or None: no timer unless the peer asks),
``min_se`` (the smallest interval we accept; RFC 4028 says at least 90, tests use less),
``require_100rel`` (ask for, or send, reliable provisional responses).
"""

from __future__ import annotations

import functools
import logging
import random
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from sipsimple.core.engine import Engine, EngineError
from sipsimple.core.errors import SIPCoreError
from sipsimple.core.invitation.messages import message_fields
from sipsimple.core.invitation.sdp import (
    SDP_TYPE,
    BadBody,
    InvitationSDP,
    rebase,
    sdp_bytes,
    sdp_of,
    snapshot,
    unchanged,
)
from sipsimple.core.invitation.timer import (
    SessionTimer,
    parse_min_se,
    request_headers,
    timer_of_request,
    timer_of_response,
    too_small,
)
from sipsimple.core.request import (
    RequestStateError,
    authenticator_for,
    extra_header_pairs,
    frozen_header,
    frozen_uri,
    loose_route,
    on_sip_thread,
    post,
    running_engine,
    with_tag,
    without_tag,
)
from sipsimple.core.sdp import (
    FrozenSDPSession,
    SDPNegotiationError,
    SDPNegotiator,
)
from sipsimple.core.sdp.model import BaseSDPSession
from sipsimple.core.sip.auth import Credentials
from sipsimple.core.sip.dialog import Dialog, DialogID, DialogSet, DialogState, RAck
from sipsimple.core.sip.headers import (
    CSeq,
    FrozenContactHeader,
    FrozenFromHeader,
    FrozenRouteHeader,
    FrozenToHeader,
)
from sipsimple.core.sip.message import SIPRequest, SIPResponse
from sipsimple.core.sip.uri import FrozenSIPURI
from sipsimple.core.transport import TransportAddress
from sipsimple.core.usage import ClientRequest, ServerRequest, reason_phrase

__all__ = [
    "METHODS",
    "SUPPORTED",
    "Invitation",
    "InvitationStateError",
    "engine_stopped",
    "incoming_invite",
]

log = logging.getLogger("sipsimple.core.invitation")

SUPPORTED = ("100rel", "replaces", "timer")
METHODS = ("INVITE", "ACK", "CANCEL", "BYE", "PRACK", "UPDATE")
_AUTH_HEADERS = ("Authorization", "Proxy-Authorization")
_random = random.Random()
_F = TypeVar("_F", bound=Callable[..., Any])
_UNSET: Any = object()


class InvitationStateError(RequestStateError):
    """An Invitation method called in a state that does not allow it."""


def _is_reliable(response: SIPResponse) -> bool:
    try:
        return "100rel" in response.require and "RSeq" in response.headers
    except SIPCoreError:
        return False


def _entry(method: _F) -> _F:
    """An entry point on the SIP thread: post what it queued once it is done."""

    @functools.wraps(method)
    def wrapper(self: Invitation, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        finally:
            self._flush()

    return wrapper  # type: ignore[return-value]


@dataclass(eq=False)
class _Proposal:
    """A re-INVITE or UPDATE of ours: an application proposal or a session refresh."""

    kind: str  # "proposal" (send_reinvite) or "refresh" (the session timer)
    method: str
    contact: FrozenContactHeader | None = None
    sdp: BaseSDPSession | None = None
    extra: list[tuple[str, Any]] = field(default_factory=list)
    client: ClientRequest | None = None
    cancelled: bool = False
    retried_422: bool = False
    base_lines: int = 0  # the m-lines of the session when it was proposed


@dataclass(eq=False)
class _Reliable:
    """A reliable provisional response of ours waiting for its PRACK (RFC 3262)."""

    response: SIPResponse
    rseq: int
    cseq: int
    has_sdp: bool
    interval: float
    sent_at: float


class Invitation:
    """One INVITE dialog usage (spec: core Invitation); see the module docstring."""

    session_expires: ClassVar[int | None] = None
    min_se: ClassVar[int] = 90
    require_100rel: ClassVar[bool] = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.state: str | None = None
        self.sub_state: str | None = None
        self.direction: str | None = None
        self.local_identity: FrozenFromHeader | FrozenToHeader | None = None
        self.remote_identity: FrozenFromHeader | FrozenToHeader | None = None
        self.request_uri: Any = None
        self.route_header: FrozenRouteHeader | None = None
        self.local_contact_header: FrozenContactHeader | None = None
        self.remote_contact_header: FrozenContactHeader | None = None
        self.remote_user_agent: str | None = None
        self.call_id: str | None = None
        self._engine: Engine | None = None
        self._local_tag: str | None = None
        self._negotiator = SDPNegotiator()
        self._sdp = InvitationSDP(self._negotiator)
        self._outbox: deque[tuple[str, dict[str, Any]]] = deque()
        self._flushing = False
        self._timers: dict[str, Any] = {}
        self._authenticator: Any = None
        self._dialog: Dialog | None = None
        # outgoing side
        self._dialog_set: DialogSet | None = None
        self._invite_client: ClientRequest | None = None
        self._invite_sending = False
        self._invite_timed_out = False
        self._retried_422 = False
        self._offer: FrozenSDPSession | None = None
        self._peer_address: TransportAddress | None = None
        # incoming side
        self._invite_server: ServerRequest | None = None
        self._reliable_mode = False
        self._unacked: _Reliable | None = None
        self._held: deque[SIPResponse] = deque()
        # the dialog
        self._proposal: _Proposal | None = None
        self._queued: _Proposal | None = None
        self._reinvite_server: ServerRequest | None = None
        self._awaiting_ack: dict[int, ServerRequest] = {}
        self._bye_pending: list[tuple[str, Any]] | None = None
        self._bye_extra: list[tuple[str, Any]] = []
        self._sub_state_before: str | None = None
        self._end_reason = "user request"
        self._session_timer: SessionTimer | None = None
        self._capabilities: SIPRequest | SIPResponse | None = None
        self._allow = ""

    def __repr__(self) -> str:
        return f"<Invitation {self.direction} {self.call_id} {self.state}>"

    # -- properties ------------------------------------------------------------------

    @property
    def sdp(self) -> InvitationSDP:
        return self._sdp

    @property
    def dialog_id(self) -> DialogID | None:
        if self.call_id is None or self._local_tag is None:
            return None
        remote = self._dialog.id.remote_tag if self._dialog is not None else None
        return DialogID(self.call_id, self._local_tag, remote)

    @property
    def peer_address(self) -> TransportAddress | None:
        """Where the peer's messages come from, or ours go to (transport, host, port)."""
        if self._invite_client is not None and self._invite_client.destination is not None:
            return self._invite_client.destination
        return self._peer_address

    @property
    def transport(self) -> str | None:
        address = self.peer_address
        return address.transport if address is not None else None

    # -- the public methods (any thread) ------------------------------------------------

    def send_invite(
        self,
        request_uri: Any,
        from_header: Any,
        to_header: Any,
        route_header: Any,
        contact_header: Any,
        sdp: BaseSDPSession,
        credentials: Credentials | None = None,
        extra_headers: Iterable[Any] | None = None,
        timeout: float | None = None,
    ) -> None:
        """Send the INVITE (an offer in ``sdp``); ``timeout`` bounds the wait for a
        final response (then CANCEL, reported as 408, disconnect_reason "timeout")."""
        uri = frozen_uri(request_uri, "request_uri")
        sender = frozen_header(FrozenFromHeader, from_header, "from_header")
        receiver = frozen_header(FrozenToHeader, to_header, "to_header")
        route = frozen_header(FrozenRouteHeader, route_header, "route_header", optional=True)
        contact = frozen_header(FrozenContactHeader, contact_header, "contact_header")
        sdp = snapshot(sdp)
        authenticator = authenticator_for(credentials)
        extra = extra_header_pairs(extra_headers)
        _check_timeout(timeout)
        engine = running_engine()
        with self._lock:
            if self.direction is not None:
                raise InvitationStateError(f"send_invite() is for a new Invitation, not {self}")
            self.direction = "outgoing"
        arguments = (engine, uri, sender, receiver, route, contact, sdp, authenticator, extra)
        on_sip_thread(self._send_invite, *arguments, timeout)

    def send_response(
        self,
        code: int,
        reason: str | None = None,
        contact_header: Any = None,
        sdp: BaseSDPSession | None = None,
        extra_headers: Iterable[Any] | None = None,
    ) -> None:
        """Answer the INVITE (incoming, early: 1xx -> early, 2xx -> connecting, >= 300 ->
        disconnected) or a re-INVITE (received_proposal*). ``sdp`` is the answer to the
        peer's offer, or our offer when the peer made none."""
        if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 699:
            raise ValueError(f"code must be a SIP status code, not {code!r}")
        if reason is not None:
            SIPResponse(code, reason)  # ValueError for a reason that is no reason phrase
        contact = frozen_header(
            FrozenContactHeader, contact_header, "contact_header", optional=True
        )
        if sdp is not None:
            sdp = snapshot(sdp)
        extra = extra_header_pairs(extra_headers)
        with self._lock:
            initial = self.direction == "incoming" and self.state in ("incoming", "early")
            if not initial and not self._answering_reinvite():
                raise InvitationStateError(
                    f"send_response() has nothing to answer in state {self.state}/{self.sub_state}"
                )
            needs_sdp = self._negotiator.state in ("null", "remote_offer")
            if 200 <= code < 300 and initial and sdp is None and needs_sdp:
                raise ValueError("a 2xx to the INVITE needs sdp (the answer, or our offer)")
        on_sip_thread(self._send_response, code, reason, contact, sdp, extra)

    def send_reinvite(
        self,
        contact_header: Any = None,
        sdp: BaseSDPSession | None = None,
        extra_headers: Iterable[Any] | None = None,
    ) -> None:
        """Propose a change (connected, normal): ``sdp`` is the new offer (None offers the
        active local description again, e.g. to refresh the target)."""
        contact = frozen_header(
            FrozenContactHeader, contact_header, "contact_header", optional=True
        )
        if sdp is not None:
            sdp = snapshot(sdp)
        extra = extra_header_pairs(extra_headers)
        with self._lock:
            if self.state != "connected" or self.sub_state != "normal":
                raise InvitationStateError(
                    f"send_reinvite() needs state connected/normal, not {self.state}/"
                    f"{self.sub_state}"
                )
        on_sip_thread(self._send_reinvite, contact, sdp, extra)

    def cancel_reinvite(self) -> None:
        """Cancel our pending re-INVITE; it ends with sub_state normal, code 487 (or what
        the peer answered first)."""
        with self._lock:
            if self.state != "connected" or self.sub_state != "sent_proposal":
                raise InvitationStateError(f"no re-INVITE of ours to cancel in {self}")
        on_sip_thread(self._cancel_reinvite)

    def end(self, extra_headers: Iterable[Any] | None = None, timeout: float | None = None) -> None:
        """End the dialog as fits its state: CANCEL an INVITE of ours, decline (603) one
        we have not answered, BYE a confirmed dialog. ``timeout`` bounds the wait for the
        peer: disconnected comes by then at the latest. A no-op once it is ending."""
        extra = extra_header_pairs(extra_headers)
        _check_timeout(timeout)
        with self._lock:
            if self.direction is None:
                raise InvitationStateError("end() on an Invitation that was never used")
        on_sip_thread(self._end, extra, timeout)

    def _answering_reinvite(self) -> bool:
        return self.state == "connected" and self.sub_state in (
            "received_proposal",
            "received_proposal_request",
        )

    # -- notifications ----------------------------------------------------------------

    def _notify(self, name: str, **fields: Any) -> None:
        self._outbox.append((name, fields))

    def _flush(self) -> None:
        if self._flushing:
            return
        self._flushing = True
        try:
            while self._outbox:
                name, fields = self._outbox.popleft()
                post(self, name, **fields)
        finally:
            self._flushing = False

    def _change(
        self,
        state: str,
        sub_state: str | None = _UNSET,
        *,
        originator: str,
        message: SIPRequest | SIPResponse | None = None,
        **fields: Any,
    ) -> None:
        """Move to ``state``/``sub_state`` and queue SIPInvitationChangedState."""
        prev_state, prev_sub_state = self.state, self.sub_state
        if sub_state is _UNSET:
            sub_state = prev_sub_state
        with self._lock:
            self.state = state
            self.sub_state = sub_state if state == "connected" else None
        if message is not None:
            fields.update(message_fields(message))
        self._notify(
            "SIPInvitationChangedState",
            prev_state=prev_state,
            state=state,
            prev_sub_state=prev_sub_state,
            sub_state=self.sub_state,
            originator=originator,
            **fields,
        )

    def _set_sub_state(self, sub_state: str, *, originator: str, **fields: Any) -> None:
        self._change("connected", sub_state, originator=originator, **fields)

    def _sdp_update(self, error: str | None = None) -> None:
        if error is None:
            self._notify(
                "SIPInvitationGotSDPUpdate",
                succeeded=True,
                local_sdp=self._negotiator.active_local,
                remote_sdp=self._negotiator.active_remote,
            )
        else:
            self._notify("SIPInvitationGotSDPUpdate", succeeded=False, error=error)

    def _transaction_done(
        self, originator: str, method: str, code: int, reason: str, ack_received: Any = _UNSET
    ) -> None:
        fields: dict[str, Any] = {
            "originator": originator,
            "method": method,
            "code": code,
            "reason": reason,
        }
        if ack_received is not _UNSET:
            fields["ack_received"] = ack_received
        self._notify("SIPInvitationDidProcessTransaction", **fields)

    # -- SDP ----------------------------------------------------------------------------

    def _negotiate(self) -> bool:
        """Settle the pending exchange; SIPInvitationGotSDPUpdate either way."""
        try:
            self._negotiator.negotiate()
        except SDPNegotiationError as e:
            self._sdp_update(str(e))
            return False
        self._sdp_update()
        return True

    def _take_answer(self, message: SIPRequest | SIPResponse) -> None:
        """The peer's answer to our pending offer, if the message carries one."""
        negotiator = self._negotiator
        try:
            sdp = sdp_of(message)
        except BadBody as e:
            if negotiator.state == "local_offer":
                negotiator.cancel_offer()
                self._sdp_update(e.reason)
            return
        if sdp is None:
            return
        if negotiator.state == "local_offer":
            negotiator.set_remote_answer(sdp)
            self._negotiate()
        elif (
            negotiator.state == "done"
            and self._offer is not None
            and sdp != negotiator.active_remote
        ):
            # Another answer to the same INVITE: a fork's early media, or the 2xx after
            # an unreliable 18x with a different description.
            negotiator.set_local_offer(self._offer)
            negotiator.set_remote_answer(sdp)
            self._negotiate()

    def _answer_body(
        self, sdp: BaseSDPSession | None, *, may_offer: bool
    ) -> tuple[bytes, bool, str | None]:
        """The SDP of a response of ours: (body, negotiated now, error).

        A pending offer of the peer gets our answer (``sdp``, else what our active
        description makes of it); when the peer made no offer in its (re-)INVITE, ``sdp``
        (else our active description) is our offer, if ``may_offer`` (a final or reliable
        response); once an exchange is done a response repeats our active description.
        """
        negotiator = self._negotiator
        state = negotiator.state
        if state == "remote_offer":
            answer = sdp if sdp is not None else negotiator.active_local
            if answer is None:
                return b"", False, "no SDP to answer the offer with"
            negotiator.set_local_answer(answer)
            try:
                negotiator.negotiate()
            except SDPNegotiationError as e:
                return b"", False, str(e)
            return sdp_bytes(negotiator.active_local), True, None
        if state == "local_offer":
            return b"", False, None  # our offer went in a reliable 1xx: PRACK answers it
        if self._needs_offer and may_offer:
            offer = sdp if sdp is not None else negotiator.active_local
            if offer is None:
                return b"", False, "no SDP to offer"
            return sdp_bytes(negotiator.set_local_offer(offer)), False, None
        if state == "done" and not self._needs_offer and not self._reliable_mode:
            # an answer sent in an unreliable 18x is repeated (RFC 3261 section 13.2.1);
            # one a PRACK acknowledged is not
            return sdp_bytes(negotiator.active_local), False, None
        return b"", False, None

    def _drop_pending_offer(self) -> None:
        """Forget an exchange that will not complete (rejected, cancelled)."""
        if self._negotiator.state not in ("null", "done"):
            self._negotiator.cancel_offer()

    @property
    def _needs_offer(self) -> bool:
        """Whether the (re-)INVITE being answered came without an offer."""
        server = self._reinvite_server or self._invite_server
        return server is not None and not server.answered and not server.request.body

    # -- outgoing INVITE ----------------------------------------------------------------

    @_entry
    def _send_invite(
        self,
        engine: Engine,
        uri: FrozenSIPURI,
        sender: FrozenFromHeader,
        receiver: FrozenToHeader,
        route: FrozenRouteHeader | None,
        contact: FrozenContactHeader,
        sdp: BaseSDPSession,
        authenticator: Any,
        extra: list[tuple[str, Any]],
        timeout: float | None,
    ) -> None:
        self._engine = engine
        self._authenticator = authenticator
        self._allow = ", ".join(engine.allowed_methods)
        sender = with_tag(sender, engine.new_tag)
        self.local_identity = sender
        self.remote_identity = without_tag(receiver, FrozenToHeader)
        self.request_uri = uri
        self.route_header = route
        self.local_contact_header = contact
        self.call_id = engine.new_call_id()
        self._local_tag = sender.tag
        self._offer = self._negotiator.set_local_offer(sdp)
        headers: list[tuple[str, Any]] = [
            ("From", sender),
            ("To", self.remote_identity),
            ("Call-ID", self.call_id),
            ("CSeq", CSeq(1, "INVITE")),
        ]
        if route is not None:
            headers.append(("Route", loose_route(route)))
        headers += [("Contact", contact), ("Allow", self._allow), ("Supported", _SUPPORTED)]
        if self.require_100rel:
            headers.append(("Require", "100rel"))
        headers += request_headers(None, self.session_expires, self.min_se)
        headers += extra
        headers.append(("Content-Type", SDP_TYPE))
        request = SIPRequest("INVITE", uri, headers, sdp_bytes(self._offer))
        engine.register_dialog_usage(self.call_id, self._local_tag, self)  # type: ignore[arg-type]
        _live.add(self)
        self._start_invite(request)
        self._change("outgoing", originator="local", method="INVITE")
        if timeout is not None:
            self._set_timer("invite", timeout, self._invite_timeout)
        client = self._invite_client
        if client is not None and client.final_response is not None:
            self._on_invite_response(client, client.final_response)

    def _start_invite(self, request: SIPRequest) -> None:
        """Send an INVITE (the first, or again after 422); a failure to send at once
        is left in the client's final_response for the caller."""
        engine = self._engine
        assert engine is not None
        self._dialog_set = None
        self._invite_sending = True
        try:
            self._invite_client = engine.send_request(
                request, self._on_invite_response, authenticator=self._authenticator
            )
        except (SIPCoreError, EngineError, ValueError) as e:
            self._invite_client = _failed_client(engine, request, str(e))
        finally:
            self._invite_sending = False

    @_entry
    def _invite_timeout(self) -> None:
        self._timers.pop("invite", None)
        client = self._invite_client
        if self.state not in ("outgoing", "early") or client is None or client.done:
            return
        self._invite_timed_out = True
        self._end_reason = "timeout"
        self._change("disconnecting", originator="local", method="CANCEL")
        if not client.cancel():
            client.abandon()
            self._transaction_done("local", "INVITE", 408, "Request Timeout")
            self._disconnect("local", "timeout", 408, "Request Timeout")

    @_entry
    def _on_invite_response(self, client: ClientRequest, response: SIPResponse) -> None:
        if self._invite_sending or client is not (self._invite_client or client):
            return  # the first INVITE of a 422 retry, or a failure _start_invite reports
        code = response.code
        if code == 100:
            return
        dialog_set = self._dialog_set
        if dialog_set is None and (code < 300 or client.failure is None):
            destination = client.destination
            secure = destination is not None and destination.transport == "tls"
            dialog_set = self._engine.dialog_layer.create_dialog_set(  # type: ignore[union-attr]
                client.request, secure_transport=secure
            )
            self._dialog_set = dialog_set
        if dialog_set is not None:
            dialog_set.request = client.request  # an authentication retry raised the CSeq
        if code < 200:
            self._invite_progress(client, dialog_set, response)  # type: ignore[arg-type]
        elif code < 300:
            self._invite_accepted(client, dialog_set, response)  # type: ignore[arg-type]
        else:
            self._invite_failed(client, dialog_set, response)

    def _invite_progress(
        self, client: ClientRequest, dialog_set: DialogSet, response: SIPResponse
    ) -> None:
        if self.state not in ("outgoing", "early", "disconnecting"):
            return
        self._learn_user_agent(response)
        try:
            dialog = dialog_set.receive_response(response)
        except SIPCoreError as e:
            log.info("%s: ignoring a %d: %s", self, response.code, e)
            return
        if dialog is not None and _is_reliable(response):
            try:
                if not dialog.receive_reliable_provisional(response):
                    return  # a retransmission, or out of order
            except SIPCoreError as e:
                log.info("%s: ignoring a %d with a bad RSeq: %s", self, response.code, e)
                return
            self._send_prack(dialog, response)
        if dialog is not None:
            self._dialog = dialog
        if self.state == "disconnecting":
            return
        self._take_answer(response)
        self._change("early", originator="remote", message=response)

    def _send_prack(self, dialog: Dialog, response: SIPResponse) -> None:
        prack = dialog.create_prack(response)

        def done(client: ClientRequest, answer: SIPResponse) -> None:
            if answer.code >= 200:
                self._transaction_done("local", "PRACK", answer.code, answer.reason)
                self._flush()

        self._send_request(prack, done, dialog)

    def _invite_accepted(
        self, client: ClientRequest, dialog_set: DialogSet, response: SIPResponse
    ) -> None:
        try:
            dialog = dialog_set.receive_response(response)
        except SIPCoreError as e:
            log.warning("%s: cannot take a %d: %s", self, response.code, e)
            return
        if dialog is None:
            return
        if dialog is not dialog_set.primary or self.state in ("disconnecting", "disconnected"):
            # Another fork answered, or our CANCEL crossed the 2xx: ACK it, then BYE.
            self._send_ack(client, dialog)
            if dialog is dialog_set.primary and self.state == "disconnecting":
                self._dialog = dialog
                self._transaction_done("local", "INVITE", response.code, response.reason)
                self._send_bye(self._bye_extra)
            else:
                self._end_fork(dialog, client, response)
            return
        self._cancel_timer("invite")
        self._dialog = dialog
        self._learn_user_agent(response)
        to = response.to_header
        if to is not None:
            self.remote_identity = to
        self._learn_contact(response)
        self._capabilities = response
        if self.session_expires is not None or "Session-Expires" in response.headers:
            asked = None
            if self.session_expires is not None:
                asked = SessionTimer(max(self.session_expires, self.min_se), True, self.min_se)
            try:
                self._session_timer = timer_of_response(response.headers, asked, None, self.min_se)
            except SIPCoreError as e:
                log.info("%s: ignoring malformed session timer headers: %s", self, e)
        self._change("connecting", originator="remote", message=response)
        if response.body:
            self._take_answer(response)
        elif self._negotiator.state == "local_offer":
            self._negotiator.cancel_offer()
            self._sdp_update("the 2xx carried no answer to our offer")
        self._offer = None
        self._send_ack(client, dialog)
        self._change("connected", "normal", originator="local", method="ACK")
        self._transaction_done("local", "INVITE", response.code, response.reason)
        self._restart_session_timer()
        if len(dialog_set.dialogs) > 1:
            self._set_timer("forks", 64 * self._t1, self._end_early_forks)

    def _send_ack(self, client: ClientRequest, dialog: Dialog) -> None:
        request = client.request
        credentials = [(n, v) for n in _AUTH_HEADERS for v in request.headers.getall(n)]
        ack = dialog.create_ack(request.cseq.number, headers=credentials)  # type: ignore[union-attr]
        try:
            client.send_ack(ack)
        except (SIPCoreError, ValueError) as e:
            log.warning("%s: cannot send the ACK: %s", self, e)

    def _end_fork(self, dialog: Dialog, client: ClientRequest, response: SIPResponse) -> None:
        """BYE a dialog another fork of our INVITE made, or one answered after we gave
        up (we ACKed its 2xx)."""
        engine = self._engine
        assert engine is not None
        if dialog.state is DialogState.TERMINATED:
            try:
                dialog = Dialog.from_uac(client.request, response)
            except SIPCoreError:
                return
        try:
            bye = dialog.create_request("BYE")
        except SIPCoreError:
            return
        self._send_request(bye, lambda c, r: r.code >= 200 and engine.remove_dialog(dialog), dialog)

    @_entry
    def _end_early_forks(self) -> None:
        self._timers.pop("forks", None)
        if self._dialog_set is not None:
            self._dialog_set.terminate_early()

    def _invite_failed(
        self, client: ClientRequest, dialog_set: DialogSet | None, response: SIPResponse
    ) -> None:
        if dialog_set is not None:
            dialog_set.receive_response(response)
        if self.state == "disconnected":
            return
        code = response.code
        if code == 422 and self._retry_422(client, response):
            return
        self._cancel_timer("invite")
        self._drop_pending_offer()
        self._transaction_done("local", "INVITE", code, response.reason)
        if client.failure is not None:
            reason = "timeout" if client.failure == "timeout" else _failure_reason(client)
            self._disconnect("local", reason, code, response.reason)
        elif self._invite_timed_out:
            self._disconnect("local", "timeout", 408, "Request Timeout", response)
        elif self.state == "disconnecting":
            self._disconnect("local", self._end_reason, code, response.reason, response)
        else:
            self._disconnect("remote", response.reason, code, response.reason, response)

    def _retry_422(self, client: ClientRequest, response: SIPResponse) -> bool:
        """Send the INVITE again with the Min-SE the 422 asked for (RFC 4028 section 7.4)."""
        if self._retried_422 or self.state not in ("outgoing", "early"):
            return False
        min_se = _min_se_of(response)
        if min_se is None:
            return False
        self._retried_422 = True
        self.min_se = max(self.min_se, min_se)
        old = client.request
        headers = old.headers.copy()
        headers.set("CSeq", CSeq(old.cseq.number + 1, "INVITE"))  # type: ignore[union-attr]
        headers.set("Session-Expires", str(self.min_se))
        headers.set("Min-SE", str(self.min_se))
        if self.session_expires is not None:
            self.session_expires = max(self.session_expires, self.min_se)
        self._start_invite(SIPRequest("INVITE", old.request_uri, headers, old.body))
        retry = self._invite_client
        if retry is not None and retry.final_response is not None:
            self._on_invite_response(retry, retry.final_response)
        return True

    # -- incoming INVITE ----------------------------------------------------------------

    @_entry
    def _received(self, server: ServerRequest, offer: FrozenSDPSession | None) -> None:
        """Take a new INVITE (checked by incoming_invite) and announce it."""
        request = server.request
        engine = server.engine
        self._engine = engine
        self._allow = ", ".join(engine.allowed_methods)
        self._invite_server = server
        self._peer_address = server.source
        self.direction = "incoming"
        self.call_id = request.call_id
        self._local_tag = server.to_tag
        self.request_uri = request.request_uri
        parameters = {**request.to_header.parameters, "tag": server.to_tag}  # type: ignore[union-attr]
        to = request.to_header
        self.local_identity = FrozenToHeader(to.uri, to.display_name, parameters)  # type: ignore[union-attr]
        self.remote_identity = request.from_header
        self._learn_contact(request)
        self._learn_user_agent(request)
        self.local_contact_header = _default_contact(engine, server)
        self._capabilities = request
        self._reliable_mode = self._peer_has("require", "100rel") or (
            self.require_100rel and self._peer_has("supported", "100rel")
        )
        if offer is not None:
            self._negotiator.set_remote_offer(offer)
        server.on_cancel = self._on_cancel
        server.on_timeout = self._on_server_timeout
        server.on_terminated = self._on_server_terminated
        engine.register_dialog_usage(self.call_id, self._local_tag, self)  # type: ignore[arg-type]
        _live.add(self)
        self._change("incoming", originator="remote", message=request)

    @_entry
    def _send_response(
        self,
        code: int,
        reason: str | None,
        contact: FrozenContactHeader | None,
        sdp: BaseSDPSession | None,
        extra: list[tuple[str, Any]],
    ) -> None:
        if contact is not None:
            self.local_contact_header = contact
        if self.state in ("incoming", "early"):
            server = self._invite_server
            if server is not None and not server.answered:
                self._answer_invite(server, code, reason, sdp, extra)
                return
        elif self._answering_reinvite() and self._reinvite_server is not None:
            self._answer_reinvite(self._reinvite_server, code, reason, sdp, extra)
            return
        log.info("%s: send_response(%d) came too late", self, code)

    def _response(
        self,
        server: ServerRequest,
        code: int,
        reason: str | None,
        headers: list[tuple[str, Any]],
        body: bytes = b"",
    ) -> SIPResponse:
        if 101 <= code < 300:
            headers = [("Contact", self.local_contact_header), *headers]
            if server is self._invite_server:
                # RFC 3261 section 12.1.1: a response that makes the dialog carries the
                # request's Record-Route, so that the caller learns the route set
                routes = server.request.headers.getall("Record-Route")
                headers = [*(("Record-Route", route) for route in routes), *headers]
        if body:
            headers.append(("Content-Type", SDP_TYPE))
        return server.create_response(code, reason, headers=headers, body=body)

    def _ensure_dialog(self, server: ServerRequest, response: SIPResponse) -> Dialog | None:
        if self._dialog is None:
            engine = self._engine
            assert engine is not None
            secure = server.source.transport == "tls"
            try:
                self._dialog = engine.dialog_layer.create_uas_dialog(
                    server.request, response, secure_transport=secure
                )
            except SIPCoreError as e:
                log.warning("%s: no dialog: %s", self, e)
        return self._dialog

    def _answer_invite(
        self,
        server: ServerRequest,
        code: int,
        reason: str | None,
        sdp: BaseSDPSession | None,
        extra: list[tuple[str, Any]],
    ) -> None:
        if code == 100:
            self._send(server, server.create_response(100, reason, headers=extra))
            return
        if code >= 300:
            self._reject_invite(server, code, reason, extra)
            return
        headers = [("Allow", self._allow), ("Supported", _SUPPORTED), *extra]
        reliable = self._reliable_mode and code < 200
        if code >= 200 or sdp is not None or self._negotiator.state == "done":
            body, negotiated, error = self._answer_body(sdp, may_offer=code >= 200 or reliable)
        else:
            body, negotiated, error = b"", False, None
        if error is not None:
            self._sdp_update(error)
            if code >= 200:
                self._reject_invite(server, 488, None, [("Warning", f'399 - "{error[:150]}"')])
                return
        if code >= 200:
            self._accept_invite(server, code, reason, headers, body, negotiated)
            return
        if reliable:
            headers.append(("Require", "100rel"))
        response = self._response(server, code, reason, headers, body)
        dialog = self._ensure_dialog(server, response)
        if reliable and dialog is not None:
            response.headers.add("RSeq", str(dialog.next_rseq()))
            self._send_reliable(server, response)
        else:
            self._send(server, response)
        if negotiated:
            self._sdp_update()
        self._change("early", originator="local", code=response.code, reason=response.reason)

    def _accept_invite(
        self,
        server: ServerRequest,
        code: int,
        reason: str | None,
        headers: list[tuple[str, Any]],
        body: bytes,
        negotiated: bool,
    ) -> None:
        request = server.request
        timer, timer_headers = None, []
        if self.session_expires is not None or "Session-Expires" in request.headers:
            try:
                timer, timer_headers = timer_of_request(
                    request.headers,
                    self._peer_has("supported", "timer"),
                    self.session_expires,
                    self.min_se,
                    None,
                )
            except SIPCoreError:
                pass
        self._session_timer = timer
        response = self._response(server, code, reason, headers + timer_headers, body)
        dialog = self._ensure_dialog(server, response)
        unacked = self._unacked
        if unacked is not None and unacked.has_sdp:
            self._held.append(response)  # RFC 3262 section 3: not before that PRACK
        else:
            self._send(server, response)
        if dialog is not None:
            dialog.response_sent(request, response)
        self._awaiting_ack[request.cseq.number] = server  # type: ignore[union-attr]
        if negotiated:
            self._sdp_update()
        self._change("connecting", originator="local", code=response.code, reason=response.reason)

    def _reject_invite(
        self,
        server: ServerRequest,
        code: int,
        reason: str | None,
        extra: list[tuple[str, Any]],
    ) -> None:
        self._stop_reliable()
        response = server.create_response(code, reason, headers=extra)
        self._send(server, response)
        if self._dialog is not None:
            self._dialog.response_sent(server.request, response)
        self._drop_pending_offer()
        self._disconnect("local", self._end_reason, code, response.reason)

    def _send(self, server: ServerRequest, response: SIPResponse) -> bool:
        try:
            server.send_response(response)
        except SIPCoreError as e:
            log.info("%s: cannot send a %d: %s", self, response.code, e)
            return False
        return True

    # -- reliable provisional responses (RFC 3262, UAS side) ---------------------------

    def _send_reliable(self, server: ServerRequest, response: SIPResponse) -> None:
        if self._unacked is not None:
            self._held.append(response)  # section 3: one unacknowledged at a time
            return
        engine = self._engine
        assert engine is not None
        t1 = self._t1
        self._unacked = _Reliable(
            response,
            int(response.headers["RSeq"]),
            server.request.cseq.number,  # type: ignore[union-attr]
            bool(response.body),
            t1,
            engine.loop.time(),
        )
        self._send(server, response)
        self._set_timer("100rel", t1, self._retransmit_reliable)

    @_entry
    def _retransmit_reliable(self) -> None:
        self._timers.pop("100rel", None)
        unacked, server = self._unacked, self._invite_server
        if unacked is None or server is None or server.answered:
            return
        engine = self._engine
        assert engine is not None
        limit = 64 * self._t1
        if engine.loop.time() - unacked.sent_at >= limit:
            self._stop_reliable()
            if not server.answered:
                self._end_reason = "missing PRACK"
                self._reject_invite(server, 504, "PRACK Timeout", [])
            elif self.state == "connecting":
                self._awaiting_ack.clear()
                self._start_bye("missing PRACK", [])
            return
        self._send(server, unacked.response)
        unacked.interval *= 2
        self._set_timer("100rel", unacked.interval, self._retransmit_reliable)

    def _stop_reliable(self) -> None:
        self._unacked = None
        self._held.clear()
        self._cancel_timer("100rel")

    def _prack(self, server: ServerRequest) -> None:
        request = server.request
        unacked = self._unacked
        try:
            rack = RAck.parse(request.headers.get("RAck", ""))
        except SIPCoreError:
            self._answer(server, 400, "Bad RAck")
            return
        if unacked is None or rack != (unacked.rseq, unacked.cseq, "INVITE"):
            self._answer(server, 481)
            return
        self._unacked = None
        self._cancel_timer("100rel")
        if self._negotiator.state == "local_offer":
            self._take_answer(request)
        self._answer(server, 200)
        self._transaction_done("remote", "PRACK", 200, "OK")
        invite = self._invite_server
        while self._held and invite is not None and self._unacked is None:
            response = self._held.popleft()
            if response.code < 200:
                self._send_reliable(invite, response)
            else:
                self._send(invite, response)

    # -- the dialog: requests from the peer ----------------------------------------------

    @_entry
    def handle_request(self, server: ServerRequest) -> bool:
        """Requests of our dialogs (the Engine routes them here: DialogUsage)."""
        method = server.method
        dialog = server.dialog
        if dialog is None or self.state in (None, "disconnected"):
            return False
        if dialog is not self._dialog:
            if method == "BYE" and self._dialog_set is not None and dialog.is_uac:
                server.answer(200)  # a fork we are ending ends itself
                self._engine.remove_dialog(dialog)  # type: ignore[union-attr]
                return True
            return False
        self._learn_user_agent(server.request)
        if method == "ACK":
            self._ack(server)
        elif method == "BYE":
            self._bye(server)
        elif method == "INVITE":
            self._reinvite(server)
        elif method == "UPDATE":
            self._update(server)
        elif method == "PRACK":
            self._prack(server)
        else:
            return False
        return True

    def _answer(
        self,
        server: ServerRequest,
        code: int,
        reason: str | None = None,
        headers: list[tuple[str, Any]] | None = None,
        body: bytes = b"",
    ) -> SIPResponse | None:
        if body:
            headers = [*(headers or []), ("Content-Type", SDP_TYPE)]
        try:
            return server.answer(code, reason, headers=headers, body=body)
        except SIPCoreError as e:
            log.info("%s: cannot answer a %s: %s", self, server.method, e)
            return None

    def _ack(self, server: ServerRequest) -> None:
        request = server.request
        answered = self._awaiting_ack.pop(request.cseq.number, None)  # type: ignore[union-attr]
        if answered is None:
            return  # a retransmission
        if self._negotiator.state == "local_offer":
            if request.body:
                self._take_answer(request)
            else:
                self._negotiator.cancel_offer()
                self._sdp_update("the ACK carried no answer to our offer")
        _release(answered)
        final = answered.final_response
        code, reason = (final.code, final.reason) if final is not None else (200, "OK")
        self._transaction_done("remote", "INVITE", code, reason, ack_received=True)
        if answered is self._invite_server and self.state == "connecting":
            self._change("connected", "normal", originator="remote", message=request)
            self._restart_session_timer()
        self._after_invite_transaction()

    def _after_invite_transaction(self) -> None:
        """An INVITE transaction ended: run what waited for it (RFC 3261 section 14.1
        allows one at a time; section 15 keeps the callee's BYE until the ACK)."""
        if self._invite_busy():
            return
        if self._bye_pending is not None and self.state == "disconnecting":
            extra = self._bye_pending
            self._bye_pending = None
            self._send_bye(extra)
            return
        queued = self._queued
        if queued is not None and "glare" not in self._timers and self.state == "connected":
            self._queued = None
            if queued.kind == "proposal" and self.sub_state != "sent_proposal":
                self._set_sub_state("sent_proposal", originator="local", method="INVITE")
            self._start_proposal(queued)

    def _invite_busy(self) -> bool:
        proposal = self._proposal
        return (
            bool(self._awaiting_ack)
            or (proposal is not None and proposal.method == "INVITE")
            or (self._reinvite_server is not None and not self._reinvite_server.answered)
        )

    def _bye(self, server: ServerRequest) -> None:
        response = self._answer(server, 200)
        self._transaction_done("remote", "BYE", 200, "OK")
        invite = self._invite_server
        if invite is not None and not invite.answered:
            self._stop_reliable()
            self._send(invite, invite.create_response(487))
        pending = self._reinvite_server
        if pending is not None and not pending.answered:
            self._send(pending, pending.create_response(487))
        code = response.code if response is not None else 200
        self._disconnect("remote", "user request", code, "OK", server.request)

    @_entry
    def _on_cancel(self, server: ServerRequest, cancel: SIPRequest) -> None:
        """A CANCEL for the INVITE or a re-INVITE we have not answered (RFC 3261 9.2)."""
        if server is self._invite_server and self.state in ("incoming", "early"):
            self._stop_reliable()
            response = server.create_response(487)
            self._send(server, response)
            if self._dialog is not None:
                self._dialog.response_sent(server.request, response)
            self._disconnect("remote", "user request", 487, response.reason, cancel)
        elif server is self._reinvite_server:
            self._send(server, server.create_response(487))
            self._drop_pending_offer()
            self._reinvite_finished(originator="remote", message=cancel)

    @_entry
    def _on_server_timeout(self, server: ServerRequest, timer: str) -> None:
        """Timer L: no ACK for our 2xx (RFC 3261 section 13.3.1.4): end with BYE."""
        if timer != "L":
            return
        if self._awaiting_ack.pop(server.request.cseq.number, None) is None:  # type: ignore[union-attr]
            return
        final = server.final_response
        code, reason = (final.code, final.reason) if final is not None else (200, "OK")
        self._transaction_done("remote", "INVITE", code, reason, ack_received=False)
        if self.state in ("connecting", "connected", "disconnecting"):
            self._bye_pending = None
            self._start_bye("missing ACK", [])

    @_entry
    def _on_server_terminated(self, server: ServerRequest) -> None:
        """An INVITE server transaction ended: after a non-2xx, say if its ACK came."""
        _release(server)
        response = server.final_response
        if response is None or response.code < 300:
            return
        transaction = server.transaction
        ack_received = getattr(transaction, "ack_received", "unknown")
        self._transaction_done("remote", "INVITE", response.code, response.reason, ack_received)

    # -- re-INVITE and UPDATE from the peer --------------------------------------------

    def _reinvite(self, server: ServerRequest) -> None:
        request = server.request
        server.on_terminated = self._on_server_terminated  # a refusal is reported there
        if self.state == "disconnecting":
            self._answer(server, 487)
            return
        if self.state != "connected" or self._reinvite_server is not None or self._awaiting_ack:
            self._answer(server, 500, None, [("Retry-After", str(_random.randint(1, 10)))])
            return
        proposal = self._proposal
        if proposal is not None and proposal.method == "INVITE":
            self._answer(server, 491)  # glare (RFC 3261 section 14.2)
            return
        negotiator = self._negotiator
        if negotiator.state == "local_offer":
            self._answer(server, 491)  # our UPDATE offer is out
            return
        try:
            offer = sdp_of(request)
            if too_small(request.headers, self.min_se):
                self._answer(server, 422, None, [("Min-SE", str(self.min_se))])
                return
        except BadBody as e:
            self._answer(server, e.code, e.reason, e.headers)
            return
        except SIPCoreError as e:
            self._answer(server, 400, reason_phrase(str(e)))
            return
        if offer is not None:
            try:
                negotiator.set_remote_offer(offer)
            except SDPNegotiationError as e:
                self._answer(server, 488, None, [("Warning", f'399 - "{str(e)[:150]}"')])
                return
        server.on_cancel = self._on_cancel
        server.on_timeout = self._on_server_timeout
        server.on_terminated = self._on_server_terminated
        self._reinvite_server = server
        self._sub_state_before = self.sub_state
        if offer is not None and unchanged(offer, negotiator.active_remote):
            self._answer_reinvite(server, 200, None, None, [], quietly=True)
            return
        sub_state = "received_proposal" if offer is not None else "received_proposal_request"
        self._set_sub_state(sub_state, originator="remote", message=request)

    def _answer_reinvite(
        self,
        server: ServerRequest,
        code: int,
        reason: str | None,
        sdp: BaseSDPSession | None,
        extra: list[tuple[str, Any]],
        *,
        quietly: bool = False,
    ) -> None:
        if code < 200:
            self._send(server, server.create_response(code, reason, headers=extra))
            return
        request = server.request
        negotiator = self._negotiator
        if code >= 300:
            if negotiator.state == "remote_offer":
                negotiator.cancel_offer()
            response = server.create_response(code, reason, headers=extra)
            self._send(server, response)
            self._reinvite_finished(originator="local", code=code, reason=response.reason)
            return
        before = (negotiator.active_local, negotiator.active_remote)
        body, negotiated, error = self._answer_body(sdp, may_offer=True)
        if error is not None:
            self._sdp_update(error)
            warning = [("Warning", f'399 - "{error[:150]}"')]
            self._send(server, server.create_response(488, headers=warning))
            self._reinvite_finished(originator="local", code=488, reason="Not Acceptable Here")
            return
        timer_headers = self._refresh_answer(request)
        headers = [("Allow", self._allow), ("Supported", _SUPPORTED), *extra, *timer_headers]
        response = self._response(server, code, reason, headers, body)
        self._send(server, response)
        self._dialog.response_sent(request, response)  # type: ignore[union-attr]
        self._learn_contact(request)
        self._awaiting_ack[request.cseq.number] = server  # type: ignore[union-attr]
        changed = before != (negotiator.active_local, negotiator.active_remote)
        if negotiated and (changed or not quietly):
            self._sdp_update()
        self._reinvite_finished(
            originator="local", code=response.code, reason=response.reason, quietly=quietly
        )

    def _reinvite_finished(self, *, originator: str, quietly: bool = False, **fields: Any) -> None:
        """The re-INVITE from the peer got its final answer (or was cancelled)."""
        self._reinvite_server = None
        before = self._sub_state_before
        back_to = "sent_proposal" if before == "sent_proposal" else "normal"
        if not quietly and self.state == "connected":
            self._set_sub_state(back_to, originator=originator, **fields)
        self._after_invite_transaction()

    def _refresh_answer(self, request: SIPRequest) -> list[tuple[str, str]]:
        """The session timer of a refresh request we accept: restarted, and its headers."""
        try:
            supports = "timer" in request.supported or "timer" in request.require
            timer, headers = timer_of_request(
                request.headers, supports, None, self.min_se, self._session_timer
            )
        except SIPCoreError:
            return []
        self._session_timer = timer
        self._restart_session_timer()
        return headers

    def _update(self, server: ServerRequest) -> None:
        """RFC 3311: answered at once; an offer gets the answer our active description
        makes (the application hears of it through SIPInvitationGotSDPUpdate)."""
        request = server.request
        negotiator = self._negotiator
        try:
            offer = sdp_of(request)
            if too_small(request.headers, self.min_se):
                self._answer(server, 422, None, [("Min-SE", str(self.min_se))])
                return
        except BadBody as e:
            self._answer(server, e.code, e.reason, e.headers)
            return
        except SIPCoreError as e:
            self._answer(server, 400, reason_phrase(str(e)))
            return
        body = b""
        if offer is not None:
            if negotiator.state == "local_offer":
                self._answer(server, 491)
                return
            if negotiator.state != "done":
                self._answer(server, 500, None, [("Retry-After", str(_random.randint(1, 10)))])
                return
            try:
                negotiator.set_remote_offer(offer)
                negotiator.set_local_answer(negotiator.active_local)  # type: ignore[arg-type]
                negotiator.negotiate()
            except SDPNegotiationError as e:
                if negotiator.state != "done":
                    negotiator.cancel_offer()
                self._answer(server, 488, None, [("Warning", f'399 - "{str(e)[:150]}"')])
                self._transaction_done("remote", "UPDATE", 488, "Not Acceptable Here")
                return
            body = sdp_bytes(negotiator.active_local)
        headers = [("Contact", self.local_contact_header), *self._refresh_answer(request)]
        response = self._answer(server, 200, None, headers, body)
        if response is not None and self._dialog is not None:
            self._dialog.response_sent(request, response)
            self._learn_contact(request)
        if offer is not None:
            self._sdp_update()
        self._transaction_done("remote", "UPDATE", 200, "OK")

    # -- our re-INVITEs and UPDATEs ---------------------------------------------------

    @_entry
    def _send_reinvite(
        self, contact: FrozenContactHeader | None, sdp: BaseSDPSession | None, extra: list[Any]
    ) -> None:
        if self.state != "connected" or self.sub_state != "normal":
            log.info("%s: send_reinvite() came too late: %s/%s", self, self.state, self.sub_state)
            return
        self._set_sub_state("sent_proposal", originator="local", method="INVITE")
        proposal = _Proposal("proposal", "INVITE", contact, sdp, extra)
        active = self._negotiator.active_local
        proposal.base_lines = len(active.media) if active is not None else 0
        if self._invite_busy() or self._negotiator.state != "done":
            self._queued = proposal
            return
        self._start_proposal(proposal)

    def _start_proposal(self, proposal: _Proposal) -> None:
        dialog = self._dialog
        assert dialog is not None
        negotiator = self._negotiator
        body = b""
        if proposal.method == "INVITE":
            sdp = proposal.sdp if proposal.sdp is not None else negotiator.active_local
            if sdp is not None and negotiator.state == "done":
                sdp = rebase(sdp, negotiator.active_local, proposal.base_lines)
                body = sdp_bytes(negotiator.set_local_offer(sdp))
        headers: list[tuple[str, Any]] = [("Supported", _SUPPORTED)]
        if proposal.method == "INVITE":
            headers.append(("Allow", self._allow))
        headers += request_headers(self._session_timer, self.session_expires, self.min_se)
        headers += proposal.extra
        if body:
            headers.append(("Content-Type", SDP_TYPE))
        contact = proposal.contact
        if contact is not None:
            self.local_contact_header = contact
        contact = contact or self.local_contact_header
        request = dialog.create_request(
            proposal.method, contact=contact, headers=headers, body=body
        )
        self._proposal = proposal
        proposal.client = self._send_request(
            request, lambda c, r: self._on_proposal_response(proposal, c, r), dialog
        )

    @_entry
    def _on_proposal_response(
        self, proposal: _Proposal, client: ClientRequest, response: SIPResponse
    ) -> None:
        code = response.code
        dialog = self._dialog
        if proposal is not self._proposal or self.state not in ("connected",):
            if 200 <= code < 300 and proposal.method == "INVITE" and dialog is not None:
                self._send_ack(client, dialog)
            if code >= 200:
                proposal.client = None
                if proposal is self._proposal:
                    self._proposal = None
                    self._after_invite_transaction()
            return
        if code < 200:
            if code > 100 and proposal.kind == "proposal":
                self._set_sub_state("sent_proposal", originator="remote", message=response)
            return
        self._proposal = None
        proposal.client = None  # (its callback holds the proposal)
        negotiator = self._negotiator
        method = proposal.method
        self._transaction_done("local", method, code, response.reason)
        if code < 300:
            dialog.receive_response(client.request, response)  # type: ignore[union-attr]
            self._learn_contact(response)
            try:
                self._session_timer = timer_of_response(
                    response.headers, self._session_timer, self.session_expires, self.min_se
                )
            except SIPCoreError:
                pass
            if method == "INVITE":
                self._send_ack(client, dialog)  # type: ignore[arg-type]
                before = (negotiator.active_local, negotiator.active_remote)
                if negotiator.state == "local_offer":
                    if response.body:
                        self._take_answer(response)
                    else:
                        negotiator.cancel_offer()
                        self._sdp_update("the 2xx carried no answer to our offer")
                if proposal.kind == "refresh" and before == (
                    negotiator.active_local,
                    negotiator.active_remote,
                ):
                    self._drop_last_sdp_update()
            self._restart_session_timer()
            if proposal.kind == "proposal":
                self._set_sub_state("normal", originator="remote", message=response)
            self._after_invite_transaction()
            return
        if negotiator.state == "local_offer":
            negotiator.cancel_offer()
        if code == 491 and not proposal.cancelled:
            self._glare(proposal)
            return
        if code == 422 and not proposal.retried_422:
            min_se = _min_se_of(response)
            if min_se is not None:
                self.min_se = max(self.min_se, min_se)
                proposal.retried_422 = True
                if self._session_timer is not None:
                    timer = self._session_timer
                    self._session_timer = SessionTimer(
                        max(timer.interval, self.min_se), timer.local_refresher, self.min_se
                    )
                self._start_proposal(proposal)
                return
        if proposal.kind == "proposal":
            if client.failure is None:
                self._set_sub_state("normal", originator="remote", message=response)
            else:
                self._set_sub_state("normal", originator="local", code=code, reason=response.reason)
        if code in (408, 481) and (client.failure == "timeout" or client.failure is None):
            # RFC 3261 section 14.1 (and RFC 4028 section 10 for refreshes)
            self._start_bye("timeout" if code == 408 else "dialog gone", [])
            return
        self._after_invite_transaction()

    def _glare(self, proposal: _Proposal) -> None:
        """RFC 3261 section 14.1: retry after a random time; the owner of the Call-ID
        waits 2.1-4 s, the other side 0-2 s, so that one of them goes first."""
        low, high = (2.1, 4.0) if self.direction == "outgoing" else (0.0, 2.0)
        self._queued = proposal
        self._set_timer("glare", round(_random.uniform(low, high), 2), self._glare_over)

    @_entry
    def _glare_over(self) -> None:
        self._timers.pop("glare", None)
        self._after_invite_transaction()

    @_entry
    def _cancel_reinvite(self) -> None:
        if self.state != "connected" or self.sub_state != "sent_proposal":
            return
        queued = self._queued
        if queued is not None and queued.kind == "proposal":
            self._queued = None
            self._cancel_timer("glare")
            self._set_sub_state("normal", originator="local", code=487, reason="Request Terminated")
            self._after_invite_transaction()
            return
        proposal = self._proposal
        if proposal is not None and proposal.kind == "proposal" and proposal.client is not None:
            proposal.cancelled = True
            proposal.client.cancel()

    def _drop_last_sdp_update(self) -> None:
        """A refresh that changed nothing is not an SDP update."""
        for index in range(len(self._outbox) - 1, -1, -1):
            if self._outbox[index][0] == "SIPInvitationGotSDPUpdate":
                del self._outbox[index]
                return

    # -- session timers (RFC 4028) --------------------------------------------------------

    def _restart_session_timer(self) -> None:
        self._cancel_timer("refresh")
        self._cancel_timer("expire")
        timer = self._session_timer
        if timer is None or self.state != "connected":
            return
        if timer.local_refresher:
            self._set_timer("refresh", timer.refresh_after, self._refresh_session)
        self._set_timer("expire", timer.expire_after, self._session_expired)

    @_entry
    def _refresh_session(self) -> None:
        self._timers.pop("refresh", None)
        if self.state != "connected" or self._invite_busy() or self._proposal is not None:
            return  # the transaction under way refreshes the session
        method = "UPDATE" if self._peer_has("allow", "UPDATE") else "INVITE"
        if method == "INVITE" and self._negotiator.state != "done":
            return
        self._start_proposal(_Proposal("refresh", method))

    @_entry
    def _session_expired(self) -> None:
        self._timers.pop("expire", None)
        if self.state == "connected":
            self._start_bye("session expired", [])

    # -- ending -------------------------------------------------------------------------

    @_entry
    def _end(self, extra: list[tuple[str, Any]], timeout: float | None) -> None:
        state = self.state
        if state in (None, "disconnecting", "disconnected"):
            return
        if timeout is not None:
            self._set_timer("end", timeout, self._end_timed_out)
        self._bye_extra = extra
        if state in ("outgoing", "early") and self.direction == "outgoing":
            client = self._invite_client
            self._change("disconnecting", originator="local", method="CANCEL")
            if client is None or client.done or not client.cancel():
                if client is not None and not client.done:
                    client.abandon()
                self._transaction_done("local", "INVITE", 487, "Request Terminated")
                self._disconnect("local", "user request", 487, "Request Terminated")
        elif state in ("incoming", "early"):
            server = self._invite_server
            if server is not None and not server.answered:
                self._reject_invite(server, 603, None, extra)
        elif state == "connecting" and self._awaiting_ack:
            self._change("disconnecting", originator="local", method="BYE")
            self._end_reason = "user request"
            self._bye_pending = extra
        else:
            self._start_bye("user request", extra)

    def _start_bye(self, reason: str, extra: list[tuple[str, Any]]) -> None:
        """Go to disconnecting and send the BYE (answering first a re-INVITE we owe)."""
        self._end_reason = reason
        pending = self._reinvite_server
        if pending is not None and not pending.answered:
            self._send(pending, pending.create_response(487))
            self._reinvite_server = None
        if self.state != "disconnecting":
            self._change("disconnecting", originator="local", method="BYE")
        self._send_bye(extra)

    def _send_bye(self, extra: list[tuple[str, Any]] | None = None) -> None:
        dialog = self._dialog
        if dialog is None or dialog.state is DialogState.TERMINATED:
            self._disconnect("local", self._end_reason, None, None)
            return
        bye = dialog.create_request("BYE", headers=extra or [])
        self._send_request(bye, self._on_bye_response, dialog)

    @_entry
    def _on_bye_response(self, client: ClientRequest, response: SIPResponse) -> None:
        if response.code < 200:
            return
        self._transaction_done("local", "BYE", response.code, response.reason)
        if self.state == "disconnecting":
            message = response if client.failure is None else None
            self._disconnect("local", self._end_reason, response.code, response.reason, message)

    @_entry
    def _end_timed_out(self) -> None:
        self._timers.pop("end", None)
        if self.state != "disconnected":
            self._disconnect("local", self._end_reason, 408, "Request Timeout")

    def _disconnect(
        self,
        originator: str,
        reason: str,
        code: int | None,
        phrase: str | None,
        message: SIPRequest | SIPResponse | None = None,
    ) -> None:
        """Go to disconnected, release the dialog and the timers."""
        if self.state == "disconnected":
            return
        for name in list(self._timers):
            self._cancel_timer(name)
        self._unacked = None
        self._held.clear()
        self._queued = None
        _live.discard(self)
        # The INVITE's ClientRequest calls back into us (a late 2xx is still ACKed and
        # ended): our reference to it goes, so that no cycle outlives the call.
        self._peer_address = self.peer_address
        self._invite_client = None
        engine = self._engine
        if engine is not None:
            if self.call_id is not None and self._local_tag is not None:
                engine.unregister_dialog_usage(self.call_id, self._local_tag, self)  # type: ignore[arg-type]
            dialogs = list(self._dialog_set.dialogs.values()) if self._dialog_set else []
            if self._dialog is not None and self._dialog not in dialogs:
                dialogs.append(self._dialog)
            for dialog in dialogs:
                engine.remove_dialog(dialog)
        fields: dict[str, Any] = {"disconnect_reason": reason, "code": code, "reason": phrase}
        if message is not None:
            fields.update(message_fields(message))
            fields["code"], fields["reason"] = code, phrase
        self._change("disconnected", originator=originator, **fields)

    # -- plumbing ---------------------------------------------------------------------------

    def _send_request(
        self,
        request: SIPRequest,
        callback: Callable[[ClientRequest, SIPResponse], Any],
        dialog: Dialog,
    ) -> ClientRequest:
        """Send an in-dialog request; a failure to send is reported to ``callback`` as
        a local 503, like any other failure."""
        engine = self._engine
        assert engine is not None
        try:
            return engine.send_request(
                request, callback, authenticator=self._authenticator, dialog=dialog
            )
        except (SIPCoreError, EngineError, ValueError) as e:
            client = _failed_client(engine, request, str(e))
            callback(client, client.final_response)  # type: ignore[arg-type]
            return client

    @property
    def _t1(self) -> float:
        """RFC 3261's T1 as the Engine runs it (timer values derive from it)."""
        return float(self._engine.T1)  # type: ignore[union-attr]

    @_entry
    def _engine_stopped(self) -> None:
        if self.state not in (None, "disconnected"):
            self._disconnect("local", "engine stopped", None, None)

    def _learn_user_agent(self, message: SIPRequest | SIPResponse) -> None:
        if self.remote_user_agent is None:
            name = "User-Agent" if isinstance(message, SIPRequest) else "Server"
            self.remote_user_agent = message.headers.get(name)

    def _peer_has(self, header: str, token: str) -> bool:
        """Whether the peer's INVITE (or 2xx to ours) lists ``token`` in Supported,
        Require or Allow (read when needed: most calls never ask)."""
        message = self._capabilities
        try:
            return message is not None and token in getattr(message, header)
        except SIPCoreError:
            return False

    def _learn_contact(self, message: SIPRequest | SIPResponse) -> None:
        try:
            contacts = message.contact
        except SIPCoreError:
            return
        if contacts and not contacts[0].is_wildcard:
            self.remote_contact_header = contacts[0]

    def _set_timer(self, name: str, delay: float, callback: Callable[[], Any]) -> None:
        self._cancel_timer(name)
        self._timers[name] = self._engine.loop.call_later(delay, callback)  # type: ignore[union-attr]

    def _cancel_timer(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()


# -- helpers ------------------------------------------------------------------------------


_SUPPORTED = ", ".join(SUPPORTED)
_live: set[Invitation] = set()
"""The Invitations not yet disconnected: what ends when the Engine stops."""


def engine_stopped(notification: Any) -> None:
    """SIPEngineDidEnd: the dialogs left (those with no request in flight, which the
    Engine failed already) are disconnected, disconnect_reason "engine stopped"."""
    for invitation in list(_live):
        invitation._engine_stopped()


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and (isinstance(timeout, bool) or not timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds or None, not {timeout!r}")


def _min_se_of(response: SIPResponse) -> int | None:
    try:
        return parse_min_se(response.headers.get("Min-SE", ""))
    except SIPCoreError:
        return None


def _failure_reason(client: ClientRequest) -> str:
    failure = client.failure
    reason = client.final_response.reason if client.final_response is not None else ""
    if failure == "stopped":
        return "engine stopped"
    if failure == "dns":
        return reason or "DNS lookup failed"
    return f"transport error: {reason}" if reason else "transport error"


def _release(server: ServerRequest) -> None:
    """Nothing more to hear from an INVITE server transaction: its callbacks, bound to
    the Invitation, go, so that the transaction (kept 64*T1 after a 2xx by RFC 6026)
    does not keep the call's objects alive, and no cycle waits for the collector."""
    server.on_cancel = server.on_timeout = server.on_terminated = None


def _failed_client(engine: Engine, request: SIPRequest, text: str) -> ClientRequest:
    """A ClientRequest that failed before it started (bad destination, Engine stopped)."""
    client = ClientRequest(engine, request, lambda c, r: None)
    client.failure = "transport"
    client.final_response = request.make_response(503, reason_phrase(text))
    return client


def _default_contact(engine: Engine, server: ServerRequest) -> FrozenContactHeader:
    """Our Contact for answers when the application gives none: the address the INVITE
    came in on, with the Request-URI's user."""
    source = server.source
    local = source.local
    if local is not None and local[0] not in ("0.0.0.0", "::"):
        host, port = local
    else:
        host = engine.ip_address or "127.0.0.1"
        port = getattr(engine, f"{source.transport}_port") or 5060
    user = getattr(server.request.request_uri, "user", None)
    return _contact(host, port, source.transport, user)


@functools.lru_cache(maxsize=256)
def _contact(host: str, port: int, transport: str, user: str | None) -> FrozenContactHeader:
    parameters = {} if transport == "udp" else {"transport": transport}
    return FrozenContactHeader(FrozenSIPURI(host, user, None, port, False, parameters))


def incoming_invite(server: ServerRequest) -> bool:
    """The Engine's handler of new INVITEs: checked, then a new Invitation announced."""
    request = server.request
    try:
        contacts = request.contact
    except SIPCoreError:
        contacts = []
    if not contacts or contacts[0].is_wildcard:
        server.answer(400, "Missing Contact")
        return True
    try:
        offer = sdp_of(request)
        min_se = Invitation.min_se
        if too_small(request.headers, min_se):
            server.answer(422, headers=[("Min-SE", str(min_se))])
            return True
    except BadBody as e:
        server.answer(e.code, e.reason, headers=e.headers)
        return True
    except SIPCoreError as e:
        server.answer(400, reason_phrase(str(e)))
        return True
    try:
        Invitation()._received(server, offer)
    except EngineError:
        return False
    return True
