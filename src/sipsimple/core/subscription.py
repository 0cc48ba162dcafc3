"""Subscriptions to event state (RFC 6665): the subscriber (:class:`Subscription`) and
the notifier (:class:`IncomingSubscription`), on machinery that the subscription of a
REFER (:mod:`sipsimple.core.referral`) shares.

Threading is that of every core object (:mod:`sipsimple.core.request`): constructors
and methods may be called from any thread, check their arguments and state at once
(TypeError, ValueError, :class:`~sipsimple.core.request.RequestStateError`), then hand
the work to the SIP thread; what happens is posted there as notifications with the
object as sender. A local failure is reported like a response: 408 for a timeout, 503
for a transport or DNS failure.

The subscriber
    States NULL -> SENT (the SUBSCRIBE went out) -> ACCEPTED (a 2xx came, no NOTIFY
    yet) -> PENDING or ACTIVE (what the last NOTIFY said) -> TERMINATED.

    - The dialog is made by the 2xx, or by a NOTIFY that comes before it (section
      4.1.2.4). A forked SUBSCRIBE may reach several notifiers: the first dialog made is
      kept, NOTIFYs of any other get 481 (which ends that subscription at its notifier)
      and a 2xx from another one is ignored (section 5.4.9).
    - Timer N: no NOTIFY 64*T1 after the 2xx means the subscription failed (DidFail 408
      "No NOTIFY received"; RFC 6665 starts it when the SUBSCRIBE is sent, the 2xx is
      the later and safer start).
    - Refresh: max(expires - refresh_margin, expires / 2) seconds after each 2xx, where
      expires is the 2xx's Expires, or a shorter one a NOTIFY's Subscription-State
      gives. 423 Interval Too Brief is retried once with the Min-Expires asked for. A
      refresh answered 481 ends the subscription; any other failure leaves it valid until
      it lapses (section 4.1.2.2), and DidFail then reports that failure.
    - A NOTIFY is answered 200 (400 without Subscription-State, 489 for another event,
      481 from another fork) and posted as GotNotify unless its body has a type that the
      Engine's ``events`` does not list for the event. Subscription-State "terminated"
      ends the subscription: DidFail with code 0, ``reason`` the notifier's reason
      ("terminated" when it gave none) and ``retry_after``. The core does not subscribe
      again by itself; section 4.1.3 says when a new Subscription may: at once after
      "deactivated" and "timeout", after ``retry_after`` seconds for "probation" and
      "giveup", never after "rejected", "noresource" and "invariant".
    - ``end(timeout=None)``: WillEnd, an unsubscribe (Expires: 0) once the SUBSCRIBE
      was answered, then DidEnd when the final NOTIFY came, the unsubscribe failed or
      ``timeout`` (default 64*T1) passed. Anything that ends it after end() is DidEnd.

The notifier
    SUBSCRIBEs outside any dialog for the events in the Engine's ``incoming_events``
    become IncomingSubscriptions (states incoming -> pending / active -> terminated),
    announced by SIPIncomingSubscriptionGotSubscribe. One NOTIFY is in flight at a time:
    changes made meanwhile go out in the next one, which carries the state as it is
    then (the final NOTIFY always goes last). A refresh is answered 200 and followed by
    a NOTIFY of the current state (section 4.2.1.2); a subscription not refreshed in
    time ends with "terminated;reason=timeout", an unsubscribe likewise. A NOTIFY
    answered 481, or that could not be delivered (408, 503), ends the subscription.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import Iterable
from typing import Any, ClassVar

from sipsimple.core.engine import Engine, EngineError
from sipsimple.core.errors import SIPCoreError, SIPParseError
from sipsimple.core.request import (
    RequestStateError,
    authenticator_for,
    body_bytes,
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
from sipsimple.core.sip.auth import Credentials, DigestAuthenticator
from sipsimple.core.sip.dialog import Dialog, DialogError, DialogID, DialogSet, DialogState
from sipsimple.core.sip.grammar import is_token
from sipsimple.core.sip.headers import (
    CSeq,
    FrozenContactHeader,
    FrozenEventHeader,
    FrozenFromHeader,
    FrozenRouteHeader,
    FrozenSubscriptionStateHeader,
    FrozenToHeader,
)
from sipsimple.core.sip.message import SIPRequest, SIPResponse
from sipsimple.core.sip.uri import BaseSIPURI, FrozenSIPURI
from sipsimple.core.usage import ClientRequest, ServerRequest, reason_phrase

__all__ = ["IncomingSubscription", "Subscription"]

log = logging.getLogger("sipsimple.core.subscription")

TERMINATED_REASONS = (
    "deactivated",
    "probation",
    "rejected",
    "timeout",
    "giveup",
    "noresource",
    "invariant",
)
"""The reasons of Subscription-State "terminated" (RFC 6665 section 4.1.3)."""


# -- helpers shared with sipsimple.core.referral ------------------------------------------


def request_fields(request: SIPRequest) -> dict[str, Any]:
    """The fields notifications about an incoming request carry (its Content-Type and
    Event checked already: see :func:`check_request`)."""
    content_type = request.content_type if request.body else None
    event = request.get_header("Event")
    return {
        "request_uri": request.request_uri,
        "from_header": request.from_header,
        "to_header": request.to_header,
        "headers": request.header_dict(),
        "body": request.body,
        "content_type": content_type.content_type if content_type is not None else None,
        "event": event.event if event is not None else None,
    }


def check_request(request: SIPRequest, *names: str) -> str | None:
    """Why a request that will be processed is malformed (the reason phrase of its
    400), or None: Content-Type, Contact, Event and the headers ``names`` parse (with
    the numbers of a Subscription-State)."""
    for name in ("Content-Type", "Contact", "Event", *names):
        try:
            for value in request.get_headers(name):
                if isinstance(value, FrozenSubscriptionStateHeader):
                    _ = value.expires, value.retry_after  # parsed on first use
        except SIPParseError:
            return f"Bad {name} header"
    return None


def check_timeout(timeout: float | None) -> None:
    if timeout is not None and (isinstance(timeout, bool) or not timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds or None, not {timeout!r}")


def check_content_type(content_type: Any) -> str:
    if not isinstance(content_type, str) or content_type.count("/") != 1:
        raise ValueError(f"content_type must be a MIME type, not {content_type!r}")
    return content_type


def dialog_of(engine: Engine, dialog_id: Any) -> Dialog:
    """The Engine's dialog named by ``dialog_id``: a DialogID, an object with
    ``call_id``, ``local_tag`` and ``remote_tag`` (an Invitation's ``dialog_id``), or
    such a tuple. ValueError when there is none (any more)."""
    try:
        if isinstance(dialog_id, tuple):
            key = DialogID(*dialog_id)
        else:
            key = DialogID(dialog_id.call_id, dialog_id.local_tag, dialog_id.remote_tag)
    except (AttributeError, TypeError):
        raise TypeError(
            f"dialog_id must name a dialog (call_id, local_tag, remote_tag), not {dialog_id!r}"
        ) from None
    dialog = engine.dialog_layer.get(key)
    if dialog is None or dialog.state is DialogState.TERMINATED:
        raise ValueError(f"there is no dialog {tuple(key)}")
    return dialog


def local_contact(server: ServerRequest) -> FrozenContactHeader:
    """Our Contact for the dialog an incoming request makes: the address of the
    transport it came in on (the address towards the peer when that listens on all)."""
    engine = server.engine
    source = server.source
    transport = engine.transport
    if transport is None:
        raise EngineError("the Engine is not running")
    host = transport._local_host(source)
    uri = server.request.request_uri
    user = uri.user if isinstance(uri, BaseSIPURI) else None
    parameters = {} if source.transport == "udp" else {"transport": source.transport}
    port = transport.ports[source.transport]
    return FrozenContactHeader(FrozenSIPURI(host, user, None, port, False, parameters))


def _event_matches(event: Any, name: str, event_id: str | None) -> bool:
    """Whether an Event header names this subscription (RFC 6665 section 8.2.1: the
    package and the id; a missing id matches a subscription without one)."""
    if event is None or event.event != name:
        return False
    return event.id is None or event_id is None or event.id == event_id


class SubscriberUsage:
    """The subscriber side of a subscription: its dialog, NOTIFYs, refreshes and end.

    The base of :class:`Subscription` and of :class:`~sipsimple.core.referral.Referral`.
    Subclasses set ``_prefix`` and build the initial request (``_initial_request``);
    they may adjust what a 2xx means (``_accepted_hook``), how long a refresh asks for
    (``_refresh_expires``) and how a terminating NOTIFY is reported (``_remote_end``).
    """

    _prefix: ClassVar[str]
    refresh_margin: ClassVar[float] = 40.0

    def __init__(self, event: str, credentials: Credentials | None) -> None:
        self.event = event
        self.credentials = credentials
        self._authenticator: DigestAuthenticator | None = authenticator_for(credentials)
        self.state = "NULL"
        self.call_id: str | None = None
        self.extra_headers: list[Any] = []
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._event_id: str | None = None
        self._dialog: Dialog | None = None
        self._dialog_set: DialogSet | None = None
        self._owns_dialog = True
        self._usage_key: tuple[str, str] | None = None
        self._client: ClientRequest | None = None
        self._operation: str | None = None
        self._pending: str | None = None
        self._timeout: float | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._started = False
        self._notified = False
        self._want_end = False
        self._expires_at: float | None = None
        self._granted: int | None = None
        self._interval_retried = False
        self._interval: int | None = None

    @property
    def dialog_id(self) -> DialogID | None:
        """The id of the subscription's dialog (None before there is one)."""
        return self._dialog.id if self._dialog is not None else None

    # -- what the subclasses implement

    def _initial_request(self) -> SIPRequest:
        raise NotImplementedError

    def _accepted_hook(self, response: SIPResponse) -> bool:
        """A 2xx to the initial request came; False when it ended the subscription."""
        return True

    def _refresh_expires(self) -> int:
        raise NotImplementedError

    def _refresh_extra(self) -> tuple[list[tuple[str, Any]], str | None, bytes]:
        """Extra headers, content type and body of a refreshing SUBSCRIBE."""
        return [], None, b""

    def _remote_end(self, request: SIPRequest, state: Any) -> dict[str, Any] | None:
        """How a NOTIFY "terminated" is reported: DidFail's fields, or None for DidEnd."""
        return {
            "code": 0,
            "reason": state.reason or "terminated",
            "min_expires": None,
            "retry_after": state.retry_after,
        }

    # -- on the SIP thread: sending

    def _start(self, engine: Engine, timeout: float | None) -> None:
        """Send the initial request and start listening to the dialog's requests."""
        self._engine = engine
        self._timeout = timeout
        request = self._initial_request()
        if self._owns_dialog:
            self._dialog_set = engine.dialog_layer.create_dialog_set(request)
        self._listen(request.call_id, request.from_header.tag)  # type: ignore[arg-type, union-attr]
        self._post("WillStart")
        self._set_state("SENT")
        self._send(request, "initial", None)

    def _listen(self, call_id: str, local_tag: str) -> None:
        assert self._engine is not None
        self._usage_key = (call_id, local_tag)
        self._engine.register_dialog_usage(call_id, local_tag, self)

    def _send(self, request: SIPRequest, operation: str, dialog: Dialog | None) -> None:
        assert self._engine is not None
        self._operation = operation
        try:
            self._client = self._engine.send_request(
                request,
                self._on_response,
                authenticator=self._authenticator,
                dialog=dialog,
                timeout=self._timeout,
            )
        except (SIPCoreError, EngineError, ValueError) as e:
            self._client = None
            self._on_response(None, request.make_response(503, reason_phrase(str(e))))

    def _send_in_dialog(self, operation: str, expires: int) -> None:
        """A refreshing SUBSCRIBE (or the unsubscribe, expires 0) in the dialog."""
        dialog = self._dialog
        assert dialog is not None
        event = FrozenEventHeader(
            self.event, {"id": self._event_id} if self._event_id is not None else None
        )
        headers: list[tuple[str, Any]] = [("Event", event), ("Expires", str(expires))]
        extra, content_type, body = self._refresh_extra() if expires else ([], None, b"")
        headers += extra
        if content_type is not None:
            headers.append(("Content-Type", content_type))
        try:
            request = dialog.create_request("SUBSCRIBE", headers=headers, body=body)
        except DialogError as e:
            self._terminate({"code": 481, "reason": reason_phrase(str(e)), "min_expires": None})
            return
        self._send(request, operation, dialog)

    def _request(self, operation: str) -> None:
        """Run "refresh" or "end" now, or once the request in flight is answered."""
        if self.state == "TERMINATED":
            return
        if self._client is not None or self._dialog is None:
            if self._pending != "end":
                self._pending = operation
            return
        if operation == "end":
            self._send_in_dialog("end", 0)
        else:
            self._send_in_dialog("refresh", self._interval or self._refresh_expires())

    # -- on the SIP thread: responses

    def _on_response(self, client: ClientRequest | None, response: SIPResponse) -> None:
        if client is not self._client or response.code < 200 or self.state == "TERMINATED":
            return
        self._client = None
        operation = self._operation
        if operation == "initial":
            self._initial_response(client, response)
        elif operation == "refresh":
            self._refresh_response(response)
        elif not 200 <= response.code < 300:
            self._terminate(None)
        if self._client is None and self.state != "TERMINATED":
            pending, self._pending = self._pending, None
            if pending is not None:
                self._request(pending)

    def _initial_response(self, client: ClientRequest | None, response: SIPResponse) -> None:
        code = response.code
        if 200 <= code < 300:
            if client is not None:
                self._accepted(client.request, response)
            return
        if code == 423 and self._retry_interval(response):
            request = self._initial_request_again(client)
            if request is not None:
                self._send(request, "initial", None)
                return
        self._terminate(self._failure(response))

    def _initial_request_again(self, client: ClientRequest | None) -> SIPRequest | None:
        """The initial request once more, with the next CSeq and the new interval."""
        if client is None or self._dialog is not None:
            return None
        old = client.request
        headers = old.headers.copy()
        headers.set("CSeq", CSeq(old.cseq.number + 1, old.method))  # type: ignore[union-attr]
        headers.set("Expires", str(self._interval))
        for name in ("Authorization", "Proxy-Authorization", "Via"):
            if name in headers:
                del headers[name]
        request = SIPRequest(old.method, old.request_uri, headers, old.body)
        if self._dialog_set is not None:
            self._dialog_set.request = request
        return request

    def _retry_interval(self, response: SIPResponse) -> bool:
        try:
            min_expires = response.min_expires
        except SIPCoreError:
            return False
        current = self._interval or self._refresh_expires()
        if self._interval_retried or not min_expires or min_expires <= current:
            return False
        self._interval_retried = True
        self._interval = min_expires
        return True

    def _accepted(self, request: SIPRequest, response: SIPResponse) -> None:
        self._interval_retried = False
        dialog_set = self._dialog_set
        if dialog_set is not None:
            dialog_set.request = request
            tag = response.to_header.tag  # type: ignore[union-attr]
            if self._dialog is None:
                try:
                    self._dialog = dialog_set.receive_response(response)
                except (DialogError, SIPParseError) as e:
                    self._dialog = None
                    log.info("%r: a 2xx that makes no dialog: %s", self, e)
                if self._dialog is None:
                    self._terminate({"code": 400, "reason": "Bad 2xx", "min_expires": None})
                    return
                self.to_header = _remote_to(self._dialog)
            elif self._dialog.id.remote_tag == tag:
                self._dialog.local_seq = max(self._dialog.local_seq or 0, request.cseq.number)  # type: ignore[union-attr]
        if not self._accepted_hook(response):
            return
        if not self._started:
            self._started = True
            self._post("DidStart")
        if self.state == "SENT":
            self._set_state("ACCEPTED")
        if not self._notified and "timer_n" not in self._timers:
            self._set_timer("timer_n", 64 * self._engine.T1, self._no_notify)  # type: ignore[union-attr]
        if self._want_end:
            self._pending = "end"

    def _refresh_response(self, response: SIPResponse) -> None:
        code = response.code
        if 200 <= code < 300:
            self._interval_retried = False
            self._schedule_refresh(self._granted_expires(response))
        elif code == 423 and self._retry_interval(response):
            self._request("refresh")
        elif code == 481:
            self._terminate(self._failure(response))
        else:
            failure = self._failure(response)
            left = (self._expires_at or 0) - self._loop.time()
            if left <= 0:
                self._terminate(failure)
            else:
                self._set_timer("expire", left, self._terminate, failure)

    def _granted_expires(self, response: SIPResponse) -> int:
        try:
            expires = response.expires
        except SIPCoreError:
            expires = None
        return expires if expires is not None else self._interval or self._refresh_expires()

    def _failure(self, response: SIPResponse) -> dict[str, Any]:
        min_expires = None
        if response.code == 423:
            try:
                min_expires = response.min_expires
            except SIPCoreError:
                min_expires = None
        return {"code": response.code, "reason": response.reason, "min_expires": min_expires}

    # -- on the SIP thread: the dialog's requests (NOTIFY)

    def handle_request(self, server: ServerRequest) -> bool:
        """The dialog usage entry point (see :mod:`sipsimple.core.usage`)."""
        request = server.request
        if request.method != "NOTIFY" or self.state == "TERMINATED":
            return False
        problem = check_request(request, "Subscription-State")
        if problem is not None:
            server.answer(400, problem)
            return True
        dialog = server.dialog
        owned = self._owns_dialog
        if not owned and (dialog is None or dialog is not self._dialog):
            return False
        if not _event_matches(request.get_header("Event"), self.event, self._notify_id()):
            if owned and (dialog is None or dialog is self._dialog):
                server.answer(489)
                return True
            return False
        if dialog is not self._dialog:
            server.answer(481, "Subscription Does Not Exist")
            return True
        state = request.get_header("Subscription-State")
        if state is None:
            server.answer(400, "Missing Subscription-State header")
            return True
        if dialog is None:
            response = server.create_response(200)
            dialog = self._dialog_from_notify(request, response)
            if dialog is None:
                server.answer(400, "Missing or bad Contact header")
                return True
        else:
            response = server.create_response(200)
        server.send_response(response)
        dialog.response_sent(request, response)
        self._notify_received(request, state)
        return True

    def _notify_id(self) -> str | None:
        return self._event_id

    def _dialog_from_notify(self, request: SIPRequest, response: SIPResponse) -> Dialog | None:
        """The dialog a NOTIFY makes when it comes before the 2xx (RFC 6665 4.1.2.4)."""
        engine = self._engine
        dialog_set = self._dialog_set
        assert engine is not None and dialog_set is not None
        try:
            dialog = Dialog.from_uas(request, response)
        except (DialogError, SIPParseError):
            return None
        sent = self._client.request if self._client is not None else dialog_set.request
        dialog.local_seq = sent.cseq.number  # type: ignore[union-attr]
        dialog.local_contact = self.contact_header
        engine.dialog_layer.add(dialog)
        dialog_set.dialogs[dialog.id.remote_tag] = dialog
        self._dialog = dialog
        self.to_header = _remote_to(dialog)
        return dialog

    def _notify_received(self, request: SIPRequest, state: Any) -> None:
        self._notified = True
        self._cancel_timer("timer_n")
        fields = request_fields(request)
        event_id = request.get_header("Event").id
        if self._event_id is None and event_id is not None:
            self._event_id = event_id  # our SUBSCRIBEs name the subscription as it does
        accepted = self._engine.events.get(self.event, []) if self._engine else []  # type: ignore[union-attr]
        content_type = fields["content_type"]
        if content_type is None or _accepts(accepted, content_type):
            self._post("GotNotify", **fields)
        else:
            log.info("%r: ignored a NOTIFY body of type %s", self, content_type)
        value = state.state.lower()
        if value == "terminated":
            self._terminate(None if self._want_end else self._remote_end(request, state))
            return
        if value not in ("active", "pending"):
            return
        if not self._started:
            self._started = True
            self._post("DidStart")
        if not self._want_end:
            self._set_state(value.upper())
            expires = state.expires
            if expires is not None and (
                self._expires_at is None or self._loop.time() + expires < self._expires_at
            ):
                self._schedule_refresh(expires)

    # -- on the SIP thread: timers and the end

    def _schedule_refresh(self, expires: int) -> None:
        self._cancel_timer("expire")
        if self._want_end:
            return
        if expires <= 0:
            ended = {"code": 0, "reason": "timeout", "min_expires": None}
            self._set_timer("expire", 64 * self._engine.T1, self._terminate, ended)  # type: ignore[union-attr]
            return
        self._granted = expires
        self._expires_at = self._loop.time() + expires
        delay = max(expires - self.refresh_margin, expires / 2)
        self._set_timer("refresh", delay, self._refresh)

    def _refresh(self) -> None:
        self._timers.pop("refresh", None)
        if self.state != "TERMINATED" and not self._want_end:
            self._request("refresh")

    def _no_notify(self) -> None:
        self._timers.pop("timer_n", None)
        if not self._notified:
            self._terminate({"code": 408, "reason": "No NOTIFY received", "min_expires": None})

    def _end(self, timeout: float | None) -> None:
        if self.state in ("NULL", "TERMINATED") or self._want_end:
            return
        self._want_end = True
        self._cancel_timer("refresh")
        self._cancel_timer("timer_n")
        self._post("WillEnd")
        if self._client is None and self._dialog is None:
            self._terminate(None)
            return
        if timeout is None:
            timeout = 64 * self._engine.T1  # type: ignore[union-attr]
        self._set_timer("end", timeout, self._terminate, None)
        self._request("end")

    def _terminate(self, failure: dict[str, Any] | None) -> None:
        """End everything: the dialog(s), the timers, the request in flight."""
        if self.state == "TERMINATED":
            return
        for name in list(self._timers):
            self._cancel_timer(name)
        if self._client is not None:
            self._client.abandon()
            self._client = None
        self._pending = None
        self._release()
        self._set_state("TERMINATED")
        if failure is None or self._want_end:
            self._post("DidEnd")
        else:
            failure.setdefault("retry_after", None)
            self._post("DidFail", **failure)

    def _release(self) -> None:
        engine = self._engine
        if engine is None:
            return
        if self._usage_key is not None:
            engine.unregister_dialog_usage(*self._usage_key, self)
            self._usage_key = None
        if self._owns_dialog:
            dialogs = list(self._dialog_set.dialogs.values()) if self._dialog_set else []
            if self._dialog is not None and self._dialog not in dialogs:
                dialogs.append(self._dialog)
            for dialog in dialogs:
                engine.remove_dialog(dialog)

    # -- small things

    @property
    def _loop(self) -> asyncio.AbstractEventLoop:
        assert self._engine is not None
        return self._engine.loop

    def _set_timer(self, name: str, delay: float, callback: Any, *args: Any) -> None:
        self._cancel_timer(name)
        self._timers[name] = self._loop.call_later(delay, callback, *args)

    def _cancel_timer(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def _set_state(self, state: str) -> None:
        previous = self.state
        self.state = state
        if previous != state:
            self._post("ChangedState", prev_state=previous, state=state)

    def _post(self, what: str, /, **fields: Any) -> None:
        post(self, self._prefix + what, **fields)


def _remote_to(dialog: Dialog) -> FrozenToHeader:
    """The To header of the dialog's requests: the remote identity with its tag."""
    remote = dialog.remote_identity
    parameters = dict(remote.parameters)
    if dialog.id.remote_tag is not None:
        parameters["tag"] = dialog.id.remote_tag
    return FrozenToHeader(remote.uri, remote.display_name, parameters)


def _accepts(accepted: Iterable[str], content_type: str) -> bool:
    """Whether a content type (without parameters) is among the accepted ones."""
    wanted = content_type.split(";")[0].strip().lower()
    return any(item.split(";")[0].strip().lower() == wanted for item in accepted)


class Subscription(SubscriberUsage):
    """A subscription to ``event`` state of ``to_header``'s resource (spec: core
    Subscription; RFC 6665). See the module docstring for the rules.

    ``subscribe(extra_headers=None, content_type=None, body=None, timeout=None)`` sends
    the SUBSCRIBE (called again, it refreshes at once with the new headers and body,
    which later refreshes keep); ``end(timeout=None)`` unsubscribes. ``refresh`` is the
    Expires asked for; ``timeout`` bounds the wait for each final response. ``event``
    must be one of the Engine's ``events`` (whose content types go in Accept).

    Notifications: SIPSubscriptionWillStart, SIPSubscriptionDidStart,
    SIPSubscriptionChangedState (prev_state, state), SIPSubscriptionGotNotify
    (request_uri, from_header, to_header, headers, body, content_type, event),
    SIPSubscriptionWillEnd, SIPSubscriptionDidEnd, SIPSubscriptionDidFail (code,
    reason, min_expires, retry_after).
    """

    _prefix = "SIPSubscription"

    def __init__(
        self,
        request_uri: Any,
        from_header: Any,
        to_header: Any,
        contact_header: Any,
        event: str,
        route_header: Any = None,
        credentials: Credentials | None = None,
        refresh: int = 300,
    ) -> None:
        if not isinstance(event, str) or not is_token(event):
            raise ValueError(f"event must be an event package name, not {event!r}")
        if event not in Engine().events:
            raise ValueError(f"unknown event {event!r}: add it with Engine().add_event() first")
        if isinstance(refresh, bool) or not isinstance(refresh, int) or refresh <= 0:
            raise ValueError(f"refresh must be a positive number of seconds, not {refresh!r}")
        super().__init__(event, credentials)
        self.request_uri = frozen_uri(request_uri, "request_uri")
        self.from_header = frozen_header(FrozenFromHeader, from_header, "from_header")
        self.to_header = frozen_header(FrozenToHeader, to_header, "to_header")
        self.contact_header = frozen_header(FrozenContactHeader, contact_header, "contact_header")
        self.route_header = frozen_header(
            FrozenRouteHeader, route_header, "route_header", optional=True
        )
        self.refresh = refresh
        self.content_type: str | None = None
        self.body: str | bytes | None = None
        self._subscribed = False

    def __repr__(self) -> str:
        return f"<Subscription {self.event} of {self.to_header.uri} {self.state}>"

    def subscribe(
        self,
        extra_headers: Iterable[Any] | None = None,
        content_type: str | None = None,
        body: str | bytes | None = None,
        timeout: float | None = None,
    ) -> None:
        if (content_type is None) != (body is None):
            raise ValueError("content_type and body go together")
        if content_type is not None:
            check_content_type(content_type)
        data = body_bytes(body) if body is not None else None
        extra = list(extra_headers or ())
        extra_header_pairs(extra)
        check_timeout(timeout)
        engine = running_engine()
        with self._lock:
            if self.state == "TERMINATED":
                raise RequestStateError("the subscription has ended: make a new Subscription")
            first = not self._subscribed
            self._subscribed = True
        on_sip_thread(self._subscribe, engine, first, extra, content_type, data, timeout)

    def end(self, timeout: float | None = None) -> None:
        check_timeout(timeout)
        with self._lock:
            if not self._subscribed:
                raise RequestStateError("subscribe() was not called: there is nothing to end")
        on_sip_thread(self._end, timeout)

    def _subscribe(
        self,
        engine: Engine,
        first: bool,
        extra: list[Any],
        content_type: str | None,
        body: bytes | None,
        timeout: float | None,
    ) -> None:
        if self.state == "TERMINATED" or self._want_end:
            return
        self.extra_headers = extra
        self.content_type = content_type
        self.body = body
        if first:
            self._start(engine, timeout)
        else:
            self._timeout = timeout
            self._request("refresh")

    def _initial_request(self) -> SIPRequest:
        engine = self._engine
        assert engine is not None
        self.from_header = with_tag(self.from_header, engine.new_tag)
        self.call_id = engine.new_call_id()
        headers: list[tuple[str, Any]] = [
            ("From", self.from_header),
            ("To", without_tag(self.to_header, FrozenToHeader)),
            ("Call-ID", self.call_id),
            ("CSeq", CSeq(1, "SUBSCRIBE")),
            ("Contact", self.contact_header),
        ]
        if self.route_header is not None:
            headers.append(("Route", loose_route(self.route_header)))
        headers.append(("Event", self.event))
        headers.append(("Expires", str(self.refresh)))
        extra, content_type, body = self._refresh_extra()
        headers += extra
        if content_type is not None:
            headers.append(("Content-Type", content_type))
        return SIPRequest("SUBSCRIBE", self.request_uri, headers, body)

    def _accepted_hook(self, response: SIPResponse) -> bool:
        self._schedule_refresh(self._granted_expires(response))
        return True

    def _refresh_expires(self) -> int:
        return self.refresh

    def _refresh_extra(self) -> tuple[list[tuple[str, Any]], str | None, bytes]:
        headers = extra_header_pairs(self.extra_headers)
        accept = self._engine.events.get(self.event) if self._engine is not None else None
        if accept:
            headers.append(("Accept", ", ".join(accept)))
        body = self.body if isinstance(self.body, bytes) else body_bytes(self.body)
        return headers, self.content_type, body


# -- the notifier ------------------------------------------------------------------------


class NotifierUsage:
    """The notifier side: the answer to the request that made the subscription, the
    NOTIFYs, refreshes and unsubscribes, the expiry.

    The base of :class:`IncomingSubscription` and of
    :class:`~sipsimple.core.referral.IncomingReferral`. Subclasses set ``_prefix``,
    ``max_expires`` and ``default_expires``. ``dialog`` is given when the subscription
    lives in a dialog that exists already (a REFER in a call); else the 2xx makes one.
    """

    _prefix: ClassVar[str]
    answer_timeout: ClassVar[float] = 32.0
    max_expires: ClassVar[int] = 3600
    default_expires: ClassVar[int] = 3600

    def __init__(
        self, server: ServerRequest, event: str, event_id: str | None, dialog: Dialog | None
    ) -> None:
        request = server.request
        self.event = event
        self.request_uri = request.request_uri
        self.from_header = request.from_header
        self.to_header = request.to_header
        self.call_id = request.call_id
        self.state = "incoming"
        self._lock = threading.Lock()
        self._engine = server.engine
        self._server: ServerRequest | None = server
        self._event_id = event_id
        self._dialog = dialog
        self._owns_dialog = dialog is None
        self._usage_key: tuple[str, str] | None = None
        self._expires = self.default_expires
        self._expires_at: float | None = None
        self._content_type: str | None = None
        self._content: bytes | None = None
        self._notify_client: ClientRequest | None = None
        self._notify_needed = False
        self._final: tuple[str | None, int | None] | None = None
        self._final_sent = False
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._timers["answer"] = server.engine.loop.call_later(
            self.answer_timeout, self._not_answered
        )

    @property
    def dialog_id(self) -> DialogID | None:
        return self._dialog.id if self._dialog is not None else None

    def _requested_expires(self, request: SIPRequest) -> int:
        """The Expires a SUBSCRIBE asks for, capped."""
        expires = request.expires
        if expires is None:
            return self.default_expires
        return min(expires, self.max_expires)

    # -- answering the request that makes the subscription

    def _answer(self, code: int, headers: list[tuple[str, Any]]) -> bool:
        """Answer the initial request; for a 2xx make the dialog and listen to it.
        False when the answer could not be given (the subscription is then over)."""
        server = self._server
        self._server = None
        self._cancel_timer("answer")
        if server is None or server.answered:
            return False
        if 200 <= code < 300 and self._owns_dialog:
            try:
                contact = local_contact(server)
            except (SIPCoreError, EngineError, ValueError) as e:
                log.warning("%r: cannot make our Contact: %s", self, e)
                server.answer(500)
                return False
            headers = [*headers, ("Contact", contact)]
        response = server.create_response(code, headers=headers)
        server.send_response(response)
        if not 200 <= code < 300:
            return True
        if self._owns_dialog:
            try:
                self._dialog = self._engine.dialog_layer.create_uas_dialog(server.request, response)
            except (DialogError, SIPParseError) as e:
                log.info("%r: no dialog: %s", self, e)
                return False
        dialog = self._dialog
        assert dialog is not None
        self._usage_key = (dialog.id.call_id, dialog.id.local_tag)
        self._engine.register_dialog_usage(*self._usage_key, self)
        return True

    def _not_answered(self) -> None:
        self._timers.pop("answer", None)
        if self.state == "incoming":
            self._answer(500, [])
            self._ended(originator="local", reason=None)

    # -- NOTIFYs

    def _substate(self) -> FrozenSubscriptionStateHeader:
        if self.state == "terminated":
            reason, retry_after = self._final or (None, None)
            parameters: dict[str, str | None] = {}
            if reason is not None:
                parameters["reason"] = reason
            if retry_after is not None:
                parameters["retry-after"] = str(retry_after)
            return FrozenSubscriptionStateHeader("terminated", parameters)
        left = 0 if self._expires_at is None else self._expires_at - self._engine.loop.time()
        return FrozenSubscriptionStateHeader(self.state, {"expires": str(max(0, math.ceil(left)))})

    def _notify(self) -> None:
        """Send the current state now, or after the NOTIFY in flight."""
        if self._final_sent:
            return
        if self._notify_client is not None:
            self._notify_needed = True
            return
        self._notify_needed = False
        dialog = self._dialog
        if dialog is None:
            return
        event = FrozenEventHeader(
            self.event, {"id": self._event_id} if self._event_id is not None else None
        )
        headers: list[tuple[str, Any]] = [
            ("Event", event),
            ("Subscription-State", self._substate()),
        ]
        body = b""
        if self._content is not None and self.state != "pending":
            headers.append(("Content-Type", self._content_type))
            body = self._content
        final = self.state == "terminated"
        try:
            request = dialog.create_request("NOTIFY", headers=headers, body=body)
        except DialogError as e:
            log.info("%r: no NOTIFY: %s", self, e)
            self._final_sent = True
            self._release()
            return
        if final:
            self._final_sent = True
            self._release()
        try:
            self._notify_client = self._engine.send_request(
                request, self._on_notify_response, dialog=dialog
            )
        except (SIPCoreError, EngineError, ValueError) as e:
            self._notify_client = None
            self._on_notify_response(None, request.make_response(503, reason_phrase(str(e))))

    def _on_notify_response(self, client: ClientRequest | None, response: SIPResponse) -> None:
        if client is not self._notify_client or response.code < 200:
            return
        self._notify_client = None
        code = response.code
        if 200 <= code < 300:
            self._post("NotifyDidSucceed", code=code, reason=response.reason)
        else:
            self._post("NotifyDidFail", code=code, reason=response.reason)
            lost = code == 481 or (client is None or client.failure is not None)
            if lost and self.state != "terminated":
                self._terminate(reason=None, retry_after=None, originator="remote", notify=False)
                return
        if self._notify_needed:
            self._notify()

    # -- the dialog's requests: refreshes and unsubscribes

    def handle_request(self, server: ServerRequest) -> bool:
        """The dialog usage entry point (see :mod:`sipsimple.core.usage`)."""
        request = server.request
        if request.method != "SUBSCRIBE" or server.dialog is not self._dialog:
            return False
        problem = check_request(request, "Expires")
        if problem is not None:
            server.answer(400, problem)
            return True
        if not _event_matches(request.get_header("Event"), self.event, self._event_id):
            if not self._owns_dialog:
                return False
            server.answer(489)
            return True
        if self.state == "terminated":
            server.answer(481, "Subscription Does Not Exist")
            return True
        expires = self._requested_expires(request)
        fields = request_fields(request)
        response = server.create_response(200, headers=[("Expires", str(expires))])
        if self._dialog is not None and self._dialog.local_contact is not None:
            response.headers.add("Contact", self._dialog.local_contact)
        server.send_response(response)
        if self._dialog is not None:
            self._dialog.response_sent(request, response)
        if expires == 0:
            self._post("GotUnsubscribe", **fields)
            self._terminate(reason="timeout", retry_after=None, originator="remote")
        else:
            self._set_expiry(expires)
            self._post("GotRefreshingSubscribe", **fields)
            self._notify()
        return True

    # -- life

    def _set_expiry(self, expires: int) -> None:
        self._expires = expires
        self._expires_at = self._engine.loop.time() + expires
        self._set_timer("expire", expires, self._expired)

    def _expired(self) -> None:
        self._timers.pop("expire", None)
        self._terminate(reason="timeout", retry_after=None, originator="local")

    def _terminate(
        self,
        *,
        reason: str | None,
        retry_after: int | None,
        originator: str,
        notify: bool = True,
    ) -> None:
        if self.state == "terminated":
            return
        for name in list(self._timers):
            self._cancel_timer(name)
        self._final = (reason, retry_after)
        had_dialog = self._dialog is not None and self.state in ("pending", "active")
        self._set_state("terminated")
        if notify and had_dialog:
            self._notify()
        else:
            self._final_sent = True
            self._release()
        self._ended(originator=originator, reason=reason if notify and had_dialog else None)

    def _ended(self, *, originator: str, reason: str | None) -> None:
        if self.state != "terminated":
            self._set_state("terminated")
        self._post("DidEnd", originator=originator, reason=reason)

    def _release(self) -> None:
        """Forget the dialog (its later requests get 481); the final NOTIFY is built."""
        if self._usage_key is not None:
            self._engine.unregister_dialog_usage(*self._usage_key, self)
            self._usage_key = None
        if self._owns_dialog and self._dialog is not None:
            self._engine.remove_dialog(self._dialog)

    def _check_state(self, what: str, states: tuple[str, ...]) -> None:
        with self._lock:
            if self.state not in states:
                raise RequestStateError(
                    f"{what} needs the states {', '.join(states)}, not {self.state}"
                )

    def _set_timer(self, name: str, delay: float, callback: Any) -> None:
        self._cancel_timer(name)
        self._timers[name] = self._engine.loop.call_later(delay, callback)

    def _cancel_timer(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def _set_state(self, state: str) -> None:
        previous = self.state
        self.state = state
        if previous != state:
            self._post("ChangedState", prev_state=previous, state=state)

    def _post(self, what: str, /, **fields: Any) -> None:
        post(self, self._prefix + what, **fields)


class IncomingSubscription(NotifierUsage):
    """A SUBSCRIBE received for one of the Engine's ``incoming_events`` (spec: core
    IncomingSubscription; RFC 6665 notifier). See the module docstring for the rules.

    Announced by SIPIncomingSubscriptionGotSubscribe (request_uri, from_header,
    to_header, headers, body, content_type, event) in state "incoming". Then:
    ``reject(code)`` (300-699), ``accept_pending()`` (200, NOTIFY pending),
    ``accept(content_type=None, content=None)`` (from incoming or pending: 200 when
    not answered yet, NOTIFY active with the content), ``push_content(content_type,
    content)`` (active: a NOTIFY with new content), ``end(reason=None,
    retry_after=None)`` (pending or active: a final NOTIFY "terminated" with that reason,
    e.g. one of TERMINATED_REASONS, and retry-after). A SUBSCRIBE with Expires 0 (a
    fetch) gets one NOTIFY "terminated;reason=timeout" with the content. A SUBSCRIBE
    left unanswered for ``answer_timeout`` seconds is answered 500.

    Notifications: SIPIncomingSubscriptionChangedState (prev_state, state),
    SIPIncomingSubscriptionNotifyDidSucceed / NotifyDidFail (code, reason),
    SIPIncomingSubscriptionGotRefreshingSubscribe and GotUnsubscribe (the request's
    fields, as GotSubscribe), SIPIncomingSubscriptionDidEnd (originator "local" or
    "remote", reason: that of the final NOTIFY, None when none was sent).
    """

    _prefix = "SIPIncomingSubscription"

    def __init__(self, server: ServerRequest, expires: int) -> None:
        event = server.request.get_header("Event")
        super().__init__(server, event.event, event.id, None)
        self._expires = expires

    def __repr__(self) -> str:
        return f"<IncomingSubscription {self.event} from {self.from_header} {self.state}>"

    @property
    def content_type(self) -> str | None:
        return self._content_type

    @property
    def content(self) -> bytes | None:
        return self._content

    @classmethod
    def _received(cls, server: ServerRequest) -> bool:
        """The Engine's SUBSCRIBE handler: every new SUBSCRIBE it lets through."""
        request = server.request
        problem = check_request(request, "Expires")
        if problem is not None:
            server.answer(400, problem)
            return True
        if not request.contact or request.contact[0].is_wildcard:
            server.answer(400, "Missing Contact header")
            return True
        expires = request.expires
        expires = cls.default_expires if expires is None else min(expires, cls.max_expires)
        subscription = cls(server, expires)
        subscription._post("GotSubscribe", **request_fields(request))
        return True

    def reject(self, code: int) -> None:
        if isinstance(code, bool) or not isinstance(code, int) or not 300 <= code <= 699:
            raise ValueError(f"code must be a final non-2xx code (300-699), not {code!r}")
        self._check_state("reject()", ("incoming",))
        on_sip_thread(self._reject, code)

    def accept_pending(self) -> None:
        self._check_state("accept_pending()", ("incoming",))
        on_sip_thread(self._accept, "pending", None, None)

    def accept(self, content_type: str | None = None, content: str | bytes | None = None) -> None:
        if (content_type is None) != (content is None):
            raise ValueError("content_type and content go together")
        data = None
        if content_type is not None:
            check_content_type(content_type)
            data = body_bytes(content)
        self._check_state("accept()", ("incoming", "pending"))
        on_sip_thread(self._accept, "active", content_type, data)

    def push_content(self, content_type: str, content: str | bytes) -> None:
        check_content_type(content_type)
        data = body_bytes(content)
        self._check_state("push_content()", ("active",))
        on_sip_thread(self._push, content_type, data)

    def end(self, reason: str | None = None, retry_after: int | None = None) -> None:
        if reason is not None and not is_token(reason):
            raise ValueError(f"reason must be a token, not {reason!r}")
        if retry_after is not None and (
            isinstance(retry_after, bool) or not isinstance(retry_after, int) or retry_after < 0
        ):
            raise ValueError(f"retry_after must be seconds (an int >= 0), not {retry_after!r}")
        with self._lock:
            if self.state == "terminated":
                return
        self._check_state("end()", ("pending", "active"))
        on_sip_thread(self._end, reason, retry_after)

    def _reject(self, code: int) -> None:
        if self.state != "incoming":
            return
        self._answer(code, [])
        self._ended(originator="local", reason=None)

    def _accept(self, state: str, content_type: str | None, content: bytes | None) -> None:
        if self.state == "terminated" or (self.state == "active" and state == "pending"):
            return
        if content_type is not None:
            self._content_type = content_type
            self._content = content
        if self.state == "incoming":
            if not self._answer(200, [("Expires", str(self._expires))]):
                self._ended(originator="local", reason=None)
                return
            if self._expires == 0:
                self._set_state(state)
                self._terminate(reason="timeout", retry_after=None, originator="local")
                return
            self._set_expiry(self._expires)
        self._set_state(state)
        self._notify()

    def _push(self, content_type: str, content: bytes) -> None:
        if self.state != "active":
            return
        self._content_type = content_type
        self._content = content
        self._notify()

    def _end(self, reason: str | None, retry_after: int | None) -> None:
        if self.state in ("pending", "active"):
            self._terminate(reason=reason, retry_after=retry_after, originator="local")


def _install(engine: Engine) -> None:
    """SUBSCRIBEs outside dialogs (for the ``incoming_events``) become
    IncomingSubscriptions; a handler added later by the application is asked first."""
    engine.register_request_handler("SUBSCRIBE", IncomingSubscription._received)


_install(Engine())
