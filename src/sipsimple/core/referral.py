"""REFER (RFC 3515) with its implicit subscription, and RFC 4488's norefersub.

A REFER asks its recipient to send a request to the Refer-To URI (transfer a call,
invite a conference participant) and subscribes the sender to how that goes: the
recipient sends NOTIFYs with Event "refer" whose message/sipfrag bodies give the status
line of its request ("SIP/2.0 100 Trying", then "SIP/2.0 200 OK"...). The subscription
runs on the machinery of :mod:`sipsimple.core.subscription` (its rules for dialogs,
refreshes, forks, Timer N and 481 apply); NOTIFYs carry ``id`` = the REFER's CSeq
number in their Event header.

Referral (the REFER-issuer)
    ``Referral(request_uri, from_header, to_header, refer_to_header, contact_header,
    route_header=None, credentials=None)`` sends the REFER outside any dialog (its 2xx
    makes one); ``Referral.in_dialog(dialog_id, refer_to_header, credentials=None)``
    sends it in a dialog that exists (an Invitation's call: ``dialog_id`` is anything with
    ``call_id``, ``local_tag`` and ``remote_tag``, e.g. ``invitation.dialog_id``); the
    subscription then shares that dialog, which it never ends.
    ``send_refer(create_subscription=True, extra_headers=None, timeout=None)`` once;
    with ``create_subscription=False`` the REFER carries "Refer-Sub: false" (RFC 4488),
    and when the 2xx echoes it there is no subscription (DidStart then DidEnd).
    ``refresh(contact_header=None, extra_headers=None, timeout=None)`` extends the
    subscription (SUBSCRIBE, Event refer); ``end(timeout=None)`` ends it.
    States NULL -> SENT -> ACCEPTED -> PENDING / ACTIVE -> TERMINATED.

    Notifications: SIPReferralWillStart, SIPReferralDidStart, SIPReferralChangedState
    (prev_state, state), SIPReferralGotNotify (request_uri, from_header, to_header,
    headers, body, content_type, event), SIPReferralWillEnd, SIPReferralDidEnd,
    SIPReferralDidFail (code, reason, min_expires, retry_after). How it ends: the final
    NOTIFY with a 2xx sipfrag, end(), or a 2xx without subscription give DidEnd; a
    rejected REFER gives DidFail with its code; a final sipfrag of 300 or more gives
    DidFail with the sipfrag's code and reason; a final NOTIFY without a final sipfrag
    gives DidFail with code 0 and the Subscription-State reason.

IncomingReferral (the REFER-recipient)
    A REFER outside any dialog becomes an IncomingReferral when "REFER" is in the
    Engine's ``incoming_requests``; in a dialog, when a :class:`ReferralListener` listens
    to that dialog (``ReferralListener(dialog_id)``, ``close()``). A REFER without
    exactly one valid Refer-To, or (outside a dialog) without Contact, is answered 400.
    Announced by SIPIncomingReferralGotRefer (request_uri, from_header, to_header,
    headers, body, content_type, event, refer_to, create_subscription) in state
    "incoming". Then ``accept(code=202, duration=180)`` (a 2xx; NOTIFY active with
    "SIP/2.0 100 Trying"; without subscription when the REFER asked for none: the 2xx
    carries "Refer-Sub: false" and the referral ends), ``reject(code)`` (300-699),
    ``send_notify(code, reason=None)`` (active: the progress of the referred request),
    ``end(code, reason=None)`` (active: the final NOTIFY, "terminated;reason=noresource",
    with that status). States incoming -> active -> terminated. A subscription not
    refreshed within ``duration`` ends with "terminated;reason=timeout" and the last
    status.

    Notifications: SIPIncomingReferralChangedState (prev_state, state),
    SIPIncomingReferralNotifyDidSucceed / NotifyDidFail (code, reason),
    SIPIncomingReferralGotRefreshingSubscribe and GotUnsubscribe (the SUBSCRIBE's
    fields), SIPIncomingReferralDidEnd (originator, reason).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from sipsimple.core.engine import Engine
from sipsimple.core.request import (
    RequestStateError,
    extra_header_pairs,
    frozen_header,
    frozen_uri,
    loose_route,
    on_sip_thread,
    running_engine,
    with_tag,
    without_tag,
)
from sipsimple.core.sip.auth import Credentials
from sipsimple.core.sip.dialog import Dialog, DialogError, DialogID
from sipsimple.core.sip.headers import (
    CSeq,
    FrozenContactHeader,
    FrozenFromHeader,
    FrozenReferToHeader,
    FrozenRouteHeader,
    FrozenToHeader,
)
from sipsimple.core.sip.message import REASON_PHRASES, SIPRequest, SIPResponse
from sipsimple.core.subscription import (
    NotifierUsage,
    SubscriberUsage,
    check_request,
    check_timeout,
    dialog_of,
    request_fields,
)
from sipsimple.core.usage import ServerRequest

__all__ = ["IncomingReferral", "Referral", "ReferralListener", "parse_sipfrag"]

SIPFRAG_TYPE = "message/sipfrag;version=2.0"
_STATUS_LINE = re.compile(rb"\s*SIP/2\.0[ \t]+([1-6][0-9]{2})[ \t]*([^\r\n]*)")


def parse_sipfrag(body: bytes) -> tuple[int, str] | None:
    """The (code, reason) of a message/sipfrag body's status line, or None."""
    m = _STATUS_LINE.match(body)
    if m is None:
        return None
    return int(m.group(1)), m.group(2).decode(errors="replace").strip()


def _refer_sub_false(message: SIPRequest | SIPResponse) -> bool:
    value = message.headers.get("Refer-Sub")
    return value is not None and value.split(";")[0].strip().lower() == "false"


class Referral(SubscriberUsage):
    """A REFER and the subscription it makes; see the module docstring."""

    _prefix = "SIPReferral"
    default_duration = 180

    def __init__(
        self,
        request_uri: Any,
        from_header: Any,
        to_header: Any,
        refer_to_header: Any,
        contact_header: Any,
        route_header: Any = None,
        credentials: Credentials | None = None,
    ) -> None:
        super().__init__("refer", credentials)
        self.request_uri = frozen_uri(request_uri, "request_uri")
        self.from_header = frozen_header(FrozenFromHeader, from_header, "from_header")
        self.to_header = frozen_header(FrozenToHeader, to_header, "to_header")
        self.refer_to_header = frozen_header(FrozenReferToHeader, refer_to_header, "refer_to")
        self.contact_header = frozen_header(FrozenContactHeader, contact_header, "contact_header")
        self.route_header = frozen_header(
            FrozenRouteHeader, route_header, "route_header", optional=True
        )
        self.create_subscription = True
        self._sent = False
        self._in_dialog: Dialog | None = None
        self._refer: SIPRequest | None = None

    @classmethod
    def in_dialog(
        cls, dialog_id: Any, refer_to_header: Any, credentials: Credentials | None = None
    ) -> Referral:
        """A Referral sent in the dialog ``dialog_id`` names (ValueError when there is
        none); its From, To, Contact and route come from the dialog."""
        dialog = dialog_of(running_engine(), dialog_id)
        from_header = FrozenFromHeader(
            dialog.local_identity.uri,
            dialog.local_identity.display_name,
            {**dialog.local_identity.parameters, "tag": dialog.id.local_tag},
        )
        contact = dialog.local_contact or FrozenContactHeader(dialog.local_identity.uri)
        referral = cls(
            dialog.remote_target,
            from_header,
            dialog.remote_identity,
            refer_to_header,
            contact,
            None,
            credentials,
        )
        referral._in_dialog = dialog
        referral._owns_dialog = False
        return referral

    def __repr__(self) -> str:
        return f"<Referral of {self.to_header.uri} to {self.refer_to_header.uri} {self.state}>"

    def send_refer(
        self,
        create_subscription: bool = True,
        extra_headers: Iterable[Any] | None = None,
        timeout: float | None = None,
    ) -> None:
        extra = list(extra_headers or ())
        extra_header_pairs(extra)
        check_timeout(timeout)
        engine = running_engine()
        with self._lock:
            if self._sent:
                raise RequestStateError("a Referral sends its REFER once")
            self._sent = True
        on_sip_thread(self._send_refer, engine, bool(create_subscription), extra, timeout)

    def refresh(
        self,
        contact_header: Any = None,
        extra_headers: Iterable[Any] | None = None,
        timeout: float | None = None,
    ) -> None:
        contact = frozen_header(
            FrozenContactHeader, contact_header, "contact_header", optional=True
        )
        extra = list(extra_headers or ())
        extra_header_pairs(extra)
        check_timeout(timeout)
        with self._lock:
            if self.state not in ("ACCEPTED", "PENDING", "ACTIVE"):
                raise RequestStateError(f"a referral is refreshed once accepted, not {self.state}")
        on_sip_thread(self._refresh_now, contact, extra, timeout)

    def end(self, timeout: float | None = None) -> None:
        check_timeout(timeout)
        with self._lock:
            if not self._sent:
                raise RequestStateError("send_refer() was not called: there is nothing to end")
        on_sip_thread(self._end, timeout)

    def _send_refer(
        self, engine: Engine, create_subscription: bool, extra: list[Any], timeout: float | None
    ) -> None:
        self.create_subscription = create_subscription
        self.extra_headers = extra
        dialog = self._in_dialog
        if dialog is None:
            self._start(engine, timeout)
            return
        self._engine = engine
        self._timeout = timeout
        self._dialog = dialog
        try:
            request = dialog.create_request(
                "REFER", contact=self.contact_header, headers=self._refer_headers()
            )
        except DialogError as e:  # the call ended meanwhile
            self._post("WillStart")
            self._terminate({"code": 481, "reason": str(e)[:200], "min_expires": None})
            return
        self.call_id = dialog.id.call_id
        self._listen(dialog.id.call_id, dialog.id.local_tag)
        self._post("WillStart")
        self._set_state("SENT")
        self._send(request, "initial", dialog)

    def _refresh_now(
        self, contact: FrozenContactHeader | None, extra: list[Any], timeout: float | None
    ) -> None:
        if self.state == "TERMINATED" or self._want_end:
            return
        if contact is not None:
            self.contact_header = contact
            if self._dialog is not None:
                self._dialog.local_contact = contact
        self.extra_headers = extra
        self._timeout = timeout
        self._request("refresh")

    def _refer_headers(self) -> list[tuple[str, Any]]:
        headers: list[tuple[str, Any]] = [
            ("Refer-To", self.refer_to_header),
            ("Referred-By", f"<{self.from_header.uri}>"),
        ]
        if not self.create_subscription:
            headers += [("Refer-Sub", "false"), ("Supported", "norefersub")]
        return headers + extra_header_pairs(self.extra_headers)

    def _initial_request(self) -> SIPRequest:
        engine = self._engine
        assert engine is not None
        self.from_header = with_tag(self.from_header, engine.new_tag)
        self.call_id = engine.new_call_id()
        headers: list[tuple[str, Any]] = [
            ("From", self.from_header),
            ("To", without_tag(self.to_header, FrozenToHeader)),
            ("Call-ID", self.call_id),
            ("CSeq", CSeq(1, "REFER")),
            ("Contact", self.contact_header),
        ]
        if self.route_header is not None:
            headers.append(("Route", loose_route(self.route_header)))
        return SIPRequest("REFER", self.request_uri, headers + self._refer_headers())

    def _notify_id(self) -> str | None:
        """NOTIFYs name the REFER by its CSeq (which an authentication retry changes)."""
        refer = self._refer
        if self._operation == "initial" and self._client is not None:
            refer = self._client.request
        return str(refer.cseq.number) if refer is not None else None  # type: ignore[union-attr]

    def _accepted(self, request: SIPRequest, response: SIPResponse) -> None:
        self._refer = request
        super()._accepted(request, response)

    def _accepted_hook(self, response: SIPResponse) -> bool:
        if self.create_subscription or not _refer_sub_false(response):
            self.create_subscription = True
            return True
        self._started = True
        self._post("DidStart")
        self._terminate(None)
        return False

    def _refresh_expires(self) -> int:
        return self._granted or self.default_duration

    def _refresh_extra(self) -> tuple[list[tuple[str, Any]], str | None, bytes]:
        return extra_header_pairs(self.extra_headers), None, b""

    def _remote_end(self, request: SIPRequest, state: Any) -> dict[str, Any] | None:
        status = parse_sipfrag(request.body) if request.body else None
        if status is not None and status[0] >= 200:
            code, reason = status
            if code < 300:
                return None
            return {"code": code, "reason": reason, "min_expires": None}
        return super()._remote_end(request, state)


class IncomingReferral(NotifierUsage):
    """A REFER received; see the module docstring."""

    _prefix = "SIPIncomingReferral"
    default_expires = Referral.default_duration

    def __init__(
        self,
        server: ServerRequest,
        refer_to: FrozenReferToHeader,
        create_subscription: bool,
        dialog: Dialog | None,
    ) -> None:
        cseq = server.request.cseq
        super().__init__(server, "refer", str(cseq.number), dialog)  # type: ignore[union-attr]
        self.refer_to_header = refer_to
        self.create_subscription = create_subscription
        self._content_type = SIPFRAG_TYPE

    def __repr__(self) -> str:
        return f"<IncomingReferral to {self.refer_to_header.uri} {self.state}>"

    @classmethod
    def _received(cls, server: ServerRequest) -> bool:
        """The Engine's REFER handler: REFERs outside dialogs, when "REFER" is in
        ``incoming_requests``."""
        if "REFER" not in server.engine.incoming_requests:
            return False
        request = server.request
        problem = check_request(request)
        if problem is not None:
            server.answer(400, problem)
            return True
        if not request.contact or request.contact[0].is_wildcard:
            server.answer(400, "Missing Contact header")
            return True
        cls._make(server, None)
        return True

    @classmethod
    def _make(cls, server: ServerRequest, dialog: Dialog | None) -> None:
        request = server.request
        problem = check_request(request, "Refer-To")
        if problem is not None:
            server.answer(400, problem)
            return
        refer_to = request.get_header("Refer-To")
        if refer_to is None:
            server.answer(400, "Missing Refer-To header")
            return
        create_subscription = not _refer_sub_false(request)
        referral = cls(server, refer_to, create_subscription, dialog)
        referral._post(
            "GotRefer",
            refer_to=refer_to,
            create_subscription=create_subscription,
            **request_fields(request),
        )

    def accept(self, code: int = 202, duration: int = 180) -> None:
        if isinstance(code, bool) or not isinstance(code, int) or not 200 <= code <= 299:
            raise ValueError(f"code must be a 2xx code, not {code!r}")
        if isinstance(duration, bool) or not isinstance(duration, int) or duration <= 0:
            raise ValueError(f"duration must be a positive number of seconds, not {duration!r}")
        self._check_state("accept()", ("incoming",))
        on_sip_thread(self._accept, code, duration)

    def reject(self, code: int) -> None:
        if isinstance(code, bool) or not isinstance(code, int) or not 300 <= code <= 699:
            raise ValueError(f"code must be a final non-2xx code (300-699), not {code!r}")
        self._check_state("reject()", ("incoming",))
        on_sip_thread(self._reject, code)

    def send_notify(self, code: int, reason: str | None = None) -> None:
        content = _sipfrag(code, reason)
        self._check_state("send_notify()", ("active",))
        on_sip_thread(self._send_notify, content)

    def end(self, code: int, reason: str | None = None) -> None:
        content = _sipfrag(code, reason)
        with self._lock:
            if self.state == "terminated":
                return
        self._check_state("end()", ("active",))
        on_sip_thread(self._end, content)

    def _accept(self, code: int, duration: int) -> None:
        if self.state != "incoming":
            return
        headers = [] if self.create_subscription else [("Refer-Sub", "false")]
        if not self._answer(code, headers):
            self._ended(originator="local", reason=None)
            return
        if not self.create_subscription:
            self._terminate(reason=None, retry_after=None, originator="local", notify=False)
            return
        self.max_expires = duration
        self._content = _sipfrag(100, None)
        self._set_expiry(duration)
        self._set_state("active")
        self._notify()

    def _reject(self, code: int) -> None:
        if self.state == "incoming":
            self._answer(code, [])
            self._ended(originator="local", reason=None)

    def _send_notify(self, content: bytes) -> None:
        if self.state == "active":
            self._content = content
            self._notify()

    def _end(self, content: bytes) -> None:
        if self.state == "active":
            self._content = content
            self._terminate(reason="noresource", retry_after=None, originator="local")


def _sipfrag(code: int, reason: str | None) -> bytes:
    if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 699:
        raise ValueError(f"code must be a SIP status code, not {code!r}")
    if reason is None:
        reason = REASON_PHRASES.get(code) or REASON_PHRASES.get(code - code % 100, "")
    if not isinstance(reason, str) or any(c in reason for c in "\r\n"):
        raise ValueError(f"reason must be one line of text, not {reason!r}")
    return f"SIP/2.0 {code} {reason}\r\n".encode()


class ReferralListener:
    """Turns the REFERs received in one dialog (an Invitation's call) into
    IncomingReferrals, until ``close()``; see the module docstring."""

    def __init__(self, dialog_id: Any) -> None:
        engine = running_engine()
        self._dialog = dialog_of(engine, dialog_id)
        self._engine = engine
        self._closed = False
        on_sip_thread(self._open)

    @property
    def dialog_id(self) -> DialogID:
        return self._dialog.id

    def close(self) -> None:
        on_sip_thread(self._close)

    def _open(self) -> None:
        if not self._closed:
            self._engine.register_dialog_usage(
                self._dialog.id.call_id, self._dialog.id.local_tag, self
            )

    def _close(self) -> None:
        self._closed = True
        self._engine.unregister_dialog_usage(
            self._dialog.id.call_id, self._dialog.id.local_tag, self
        )

    def handle_request(self, server: ServerRequest) -> bool:
        if server.method != "REFER" or server.dialog is not self._dialog:
            return False
        IncomingReferral._make(server, self._dialog)
        return True


def _install(engine: Engine) -> None:
    """REFERs outside dialogs become IncomingReferrals (when asked for); norefersub is
    supported (a Require of it is accepted)."""
    engine.register_request_handler("REFER", IncomingReferral._received)
    engine.add_supported("norefersub")


_install(Engine())
