"""SIP dialogs (RFC 3261 sections 12, 13.2.2.4 and 14; RFC 3262's RSeq/RAck), sans-IO.

A :class:`Dialog` holds the state section 12 lists: its id (Call-ID, local tag, remote
tag), local and remote sequence numbers, local and remote identity (the From/To values
without tags), remote target, route set and the secure flag, and builds the requests
sent in it. It is made

- on the UAC side by a :class:`DialogSet`, which takes the responses to one request of
  ours (INVITE, SUBSCRIBE) and keeps one dialog per remote tag: a 101-199 with a To tag
  makes an early dialog, a 2xx confirms it (recomputing the route set, section
  13.2.2.4) or makes a confirmed one; a second 2xx with another tag (a forked INVITE)
  makes a second confirmed dialog, which the TU acknowledges and ends with BYE; a
  non-2xx final response ends every early dialog;
- on the UAS side by ``Dialog.from_uas(request, response)`` (or the DialogLayer's
  ``create_uas_dialog``) when the TU answers a request with a 1xx carrying a To tag or
  a 2xx.

Requests are built without a Via: the Engine adds the top Via (with a new branch)
when it picks the transport. ``create_request`` follows section 12.2.1.1 (loose and
strict routing, CSeq incremented for every request but ACK and CANCEL);
``create_ack`` builds the ACK for a 2xx (same CSeq number, method ACK).

The :class:`DialogLayer` maps incoming in-dialog requests to dialogs and checks their
CSeq; it answers nothing itself but says what to answer (481, 500) in a
:class:`DialogMatch`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from sipsimple.core.errors import SIPCoreError, SIPParseError
from sipsimple.core.sip.grammar import iter_pairs
from sipsimple.core.sip.headers import (
    CSeq,
    FrozenContactHeader,
    FrozenFromHeader,
    FrozenRouteHeader,
    FrozenToHeader,
)
from sipsimple.core.sip.message import SIPRequest, SIPResponse
from sipsimple.core.sip.uri import BaseSIPURI, FrozenSIPURI, OpaqueURI

__all__ = [
    "TARGET_REFRESH_METHODS",
    "Dialog",
    "DialogError",
    "DialogID",
    "DialogLayer",
    "DialogMatch",
    "DialogSet",
    "DialogState",
    "RAck",
]

TARGET_REFRESH_METHODS = frozenset(("INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY"))
"""Requests that replace the remote target (RFC 3261 section 12.2, RFC 3311, RFC 6665)."""

_SYSTEM_RANDOM = random.SystemRandom()
_HeadersArg = Mapping[str, Any] | Iterable[tuple[str, Any]] | None


class DialogError(SIPCoreError):
    """A dialog cannot be made from these messages, or cannot do what was asked."""


class DialogState(StrEnum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class DialogID(NamedTuple):
    """A dialog as seen from this side: the remote tag is None for an RFC 2543 peer."""

    call_id: str
    local_tag: str
    remote_tag: str | None


class RAck(NamedTuple):
    """The RAck header of a PRACK (RFC 3262 section 7.2)."""

    rseq: int
    cseq: int
    method: str

    @property
    def body(self) -> str:
        return f"{self.rseq} {self.cseq} {self.method}"

    @classmethod
    def parse(cls, text: str) -> RAck:
        m = _RACK.fullmatch(text)
        if m is None:
            raise SIPParseError(f"invalid RAck header: {text!r}")
        return cls(_uint32("RAck", m.group(1)), _uint32("RAck", m.group(2)), m.group(3))


_RACK = re.compile(r"[ \t]*([0-9]+)[ \t]+([0-9]+)[ \t]+([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*")


def _uint32(what: str, text: str) -> int:
    text = text.strip(" \t")
    if not text.isdigit() or not text.isascii() or int(text) > 2**32 - 1:
        raise SIPParseError(f"invalid {what} header: {text!r}")
    return int(text)


def _without_tag(parameters: Mapping[str, str | None]) -> dict[str, str | None]:
    return {name: value for name, value in parameters.items() if name.lower() != "tag"}


def _route_set(record_route: Iterable[Any]) -> list[FrozenRouteHeader]:
    return [FrozenRouteHeader(rr.uri, rr.display_name, rr.parameters) for rr in record_route]


def _has_lr(uri: Any) -> bool:
    return isinstance(uri, BaseSIPURI) and any(name.lower() == "lr" for name in uri.parameters)


def _request_uri(uri: Any) -> Any:
    """A route URI as a Request-URI: without ``method`` and URI headers (19.1.1)."""
    if not isinstance(uri, BaseSIPURI):
        return uri
    parameters = {k: v for k, v in uri.parameters.items() if k.lower() != "method"}
    return FrozenSIPURI(uri.host, uri.user, uri.password, uri.port, uri.secure, parameters)


def _remote_target(message: SIPRequest | SIPResponse) -> FrozenSIPURI | OpaqueURI | None:
    contacts = message.contact
    if not contacts or contacts[0].uri is None:
        return None
    return contacts[0].uri  # type: ignore[no-any-return]


class Dialog:
    """One dialog (RFC 3261 section 12); see the module docstring.

    ``local_seq`` is None until the first request we send in it (UAS side);
    ``remote_seq`` is None until the first request the peer sends in it (UAC side).
    ``local_contact`` is the Contact we gave, sent again in target refresh requests.
    """

    __slots__ = (
        "_creating_cseq",
        "_from",
        "_initial_cseq",
        "_rack",
        "_rng",
        "_rseq",
        "_to",
        "id",
        "is_uac",
        "local_contact",
        "local_identity",
        "local_seq",
        "remote_identity",
        "remote_seq",
        "remote_target",
        "route_set",
        "secure",
        "state",
    )

    def __init__(
        self,
        id: DialogID,
        *,
        state: DialogState,
        local_identity: FrozenFromHeader,
        remote_identity: FrozenToHeader,
        remote_target: FrozenSIPURI | OpaqueURI,
        route_set: list[FrozenRouteHeader],
        local_seq: int | None,
        remote_seq: int | None,
        secure: bool = False,
        is_uac: bool = True,
        local_contact: FrozenContactHeader | None = None,
        initial_cseq: int = 1,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 <= initial_cseq < 2**31:
            raise ValueError(f"initial_cseq must be in 0..2**31-1, not {initial_cseq!r}")
        self.id = id
        self.state = state
        self.local_identity = local_identity
        self.remote_identity = remote_identity
        self.remote_target = remote_target
        self.route_set = route_set
        self.local_seq = local_seq
        self.remote_seq = remote_seq
        self.secure = secure
        self.is_uac = is_uac
        self.local_contact = local_contact
        self._initial_cseq = initial_cseq
        self._rng = rng if rng is not None else _SYSTEM_RANDOM
        self._creating_cseq = local_seq if is_uac else remote_seq
        self._rseq: int | None = None
        self._rack: tuple[int, int] | None = None
        # From and To of the requests we send, made with the first one (many dialogs,
        # answered calls ended by the peer, never send any)
        self._from: FrozenFromHeader | None = None
        self._to: FrozenToHeader | None = None

    def __repr__(self) -> str:
        return f"<Dialog {self.id.call_id} {self.id.local_tag}/{self.id.remote_tag} {self.state}>"

    # -- creation -----------------------------------------------------------------

    @classmethod
    def from_uac(
        cls,
        request: SIPRequest,
        response: SIPResponse,
        *,
        secure_transport: bool = False,
        rng: random.Random | None = None,
    ) -> Dialog:
        """The dialog a 101-299 response to our request makes (RFC 3261 section 12.1.2).

        ``secure_transport``: the request went over TLS (with a SIPS Request-URI the
        dialog is then secure). Raises DialogError for other responses or a request
        without a From tag, SIPParseError for a malformed Contact or Record-Route.
        """
        if not 101 <= response.code < 300:
            raise DialogError(f"a {response.code} response does not create a dialog")
        local_tag = request.from_header.tag  # type: ignore[union-attr]
        if local_tag is None:
            raise DialogError("a request that creates a dialog needs a From tag")
        sender, receiver = request.from_header, request.to_header
        contacts = request.contact
        return cls(
            DialogID(request.call_id, local_tag, response.to_header.tag),  # type: ignore[arg-type, union-attr]
            state=DialogState.EARLY if response.code < 200 else DialogState.CONFIRMED,
            local_identity=FrozenFromHeader(
                sender.uri,  # type: ignore[union-attr]
                sender.display_name,  # type: ignore[union-attr]
                _without_tag(sender.parameters),  # type: ignore[union-attr]
            ),
            remote_identity=FrozenToHeader(
                receiver.uri,  # type: ignore[union-attr]
                receiver.display_name,  # type: ignore[union-attr]
                _without_tag(receiver.parameters),  # type: ignore[union-attr]
            ),
            remote_target=_remote_target(response) or request.request_uri,
            route_set=_route_set(reversed(response.record_route)),
            local_seq=request.cseq.number,  # type: ignore[union-attr]
            remote_seq=None,
            secure=secure_transport and _is_sips(request.request_uri),
            is_uac=True,
            local_contact=contacts[0] if contacts else None,
            rng=rng,
        )

    @classmethod
    def from_uas(
        cls,
        request: SIPRequest,
        response: SIPResponse,
        *,
        secure_transport: bool = False,
        initial_cseq: int = 1,
        rng: random.Random | None = None,
    ) -> Dialog:
        """The dialog our 101-299 response (with a To tag) to ``request`` makes
        (RFC 3261 section 12.1.1).

        ``secure_transport``: the request came over TLS. ``initial_cseq`` is the CSeq
        of the first request we send in the dialog. Raises DialogError for another
        response, a response without a To tag or a request without a Contact (answer
        it with 400 first), SIPParseError for a malformed Contact or Record-Route.
        """
        if not 101 <= response.code < 300:
            raise DialogError(f"a {response.code} response does not create a dialog")
        local_tag = response.to_header.tag  # type: ignore[union-attr]
        if local_tag is None:
            raise DialogError("a response that creates a dialog needs a To tag")
        target = _remote_target(request)
        if target is None:
            raise DialogError(f"a {request.method} that creates a dialog needs a Contact")
        sender, receiver = request.from_header, request.to_header
        contacts = response.contact
        return cls(
            DialogID(request.call_id, local_tag, sender.tag),  # type: ignore[arg-type, union-attr]
            state=DialogState.EARLY if response.code < 200 else DialogState.CONFIRMED,
            local_identity=FrozenFromHeader(
                receiver.uri,  # type: ignore[union-attr]
                receiver.display_name,  # type: ignore[union-attr]
                _without_tag(receiver.parameters),  # type: ignore[union-attr]
            ),
            remote_identity=FrozenToHeader(
                sender.uri,  # type: ignore[union-attr]
                sender.display_name,  # type: ignore[union-attr]
                _without_tag(sender.parameters),  # type: ignore[union-attr]
            ),
            remote_target=target,
            route_set=_route_set(request.record_route),
            local_seq=None,
            remote_seq=request.cseq.number,  # type: ignore[union-attr]
            secure=secure_transport and _is_sips(request.request_uri),
            is_uac=False,
            local_contact=contacts[0] if contacts else None,
            initial_cseq=initial_cseq,
            rng=rng,
        )

    # -- requests we send ---------------------------------------------------------

    def create_request(
        self,
        method: str,
        *,
        contact: FrozenContactHeader | None = None,
        headers: _HeadersArg = None,
        body: bytes = b"",
    ) -> SIPRequest:
        """A new request in the dialog (RFC 3261 section 12.2.1.1), without a Via.

        The local CSeq goes up by one. Target refresh requests carry ``contact`` or the
        dialog's local Contact; a ``contact`` given becomes the dialog's local Contact.
        ``headers`` are added after the dialog's own.
        """
        if method in ("ACK", "CANCEL"):
            raise ValueError(f"a {method} is not a new request: use create_ack or build_cancel")
        if self.state is DialogState.TERMINATED:
            raise DialogError(f"cannot send a {method} in a terminated dialog")
        number = self._initial_cseq if self.local_seq is None else self.local_seq + 1
        if number >= 2**32:
            raise DialogError("the local CSeq has reached 2**32-1")
        self.local_seq = number
        if contact is not None:
            self.local_contact = contact
        elif method in TARGET_REFRESH_METHODS:
            contact = self.local_contact
        return self._request(method, number, contact, headers, body)

    def create_ack(
        self, cseq: int, *, headers: _HeadersArg = None, body: bytes = b""
    ) -> SIPRequest:
        """The ACK for a 2xx to the INVITE with CSeq number ``cseq`` (section 13.2.2.4),
        without a Via; the credentials of the INVITE go in ``headers``."""
        return self._request("ACK", cseq, None, headers, body)

    def create_prack(
        self, response: SIPResponse, *, headers: _HeadersArg = None, body: bytes = b""
    ) -> SIPRequest:
        """The PRACK for a reliable provisional response (RFC 3262 section 4)."""
        rseq = _rseq_of(response)
        cseq = response.cseq
        rack = RAck(rseq, cseq.number, cseq.method)  # type: ignore[union-attr]
        return self.create_request(
            "PRACK", headers=[("RAck", rack), *iter_pairs(headers)], body=body
        )

    def _request(
        self,
        method: str,
        number: int,
        contact: FrozenContactHeader | None,
        headers: _HeadersArg,
        body: bytes,
    ) -> SIPRequest:
        request_uri, routes = self._target()
        if self._from is None or self._to is None:
            self._from, self._to = self._identities()
        pairs: list[tuple[str, Any]] = [
            ("Max-Forwards", "70"),
            ("From", self._from),
            ("To", self._to),
            ("Call-ID", self.id.call_id),
            ("CSeq", CSeq(number, method)),
        ]
        pairs += [("Route", route) for route in routes]
        if contact is not None:
            pairs.append(("Contact", contact))
        pairs += iter_pairs(headers)
        return SIPRequest(method, request_uri, pairs, body)

    def _identities(self) -> tuple[FrozenFromHeader, FrozenToHeader]:
        """From and To of our requests: the identities with the dialog's tags."""
        local, remote, id = self.local_identity, self.remote_identity, self.id
        parameters = dict(local.parameters)
        parameters["tag"] = id.local_tag
        sender = FrozenFromHeader(local.uri, local.display_name, parameters)
        parameters = dict(remote.parameters)
        if id.remote_tag is not None:
            parameters["tag"] = id.remote_tag
        return sender, FrozenToHeader(remote.uri, remote.display_name, parameters)

    def _target(self) -> tuple[Any, list[FrozenRouteHeader]]:
        """(Request-URI, Route values) from the route set and the remote target."""
        route_set = self.route_set
        if not route_set:
            return self.remote_target, []
        first = route_set[0].uri
        if _has_lr(first):
            return self.remote_target, route_set
        return _request_uri(first), [*route_set[1:], FrozenRouteHeader(self.remote_target)]

    # -- what we receive and answer -----------------------------------------------

    def receive_request(self, request: SIPRequest) -> int | None:
        """Check and record the CSeq of a request the peer sent in the dialog
        (RFC 3261 section 12.2.2): 500 when it is lower than the last one (answer the
        request with it; nothing changed), else None. ACK and CANCEL are not checked."""
        if request.method in ("ACK", "CANCEL"):
            return None
        number = request.cseq.number  # type: ignore[union-attr]
        if self.remote_seq is not None and number < self.remote_seq:
            return 500
        self.remote_seq = number
        return None

    def response_sent(self, request: SIPRequest, response: SIPResponse) -> None:
        """We answered ``request`` in this dialog with ``response`` (UAS side).

        A 2xx to a target refresh request replaces the remote target with its Contact
        (accepted requests only: section 12.2.2 makes them atomic). For the request
        that made an early dialog, a 2xx confirms it and a final non-2xx ends it.
        """
        code = response.code
        if code < 200:
            return
        if code < 300:
            if request.method in TARGET_REFRESH_METHODS:
                self.remote_target = _remote_target(request) or self.remote_target
            if self._is_creating(request):
                self.state = DialogState.CONFIRMED
        elif self._is_creating(request) and self.state is DialogState.EARLY:
            self.state = DialogState.TERMINATED

    def receive_response(self, request: SIPRequest, response: SIPResponse) -> None:
        """A response to ``request``, which we sent in this dialog (UAC side).

        A 2xx to a target refresh request replaces the remote target with its Contact.
        (Responses to the request that made the dialog go to its DialogSet.)
        """
        if 200 <= response.code < 300 and request.method in TARGET_REFRESH_METHODS:
            self.remote_target = _remote_target(response) or self.remote_target

    def _is_creating(self, request: SIPRequest) -> bool:
        return (
            request.method == "INVITE"
            and self.state is not DialogState.TERMINATED
            and request.cseq.number == self._creating_cseq  # type: ignore[union-attr]
            and self.is_uac == (request.from_header.tag == self.id.local_tag)  # type: ignore[union-attr]
        )

    def _confirm(self, response: SIPResponse) -> None:
        """A 2xx to the INVITE that made this early dialog (UAC side, 13.2.2.4)."""
        self.state = DialogState.CONFIRMED
        self.route_set = _route_set(reversed(response.record_route))
        self.remote_target = _remote_target(response) or self.remote_target

    def terminate(self) -> None:
        self.state = DialogState.TERMINATED

    # -- reliable provisional responses (RFC 3262) ---------------------------------

    def receive_reliable_provisional(self, response: SIPResponse) -> bool:
        """Whether a provisional response with RSeq is new and in order (RFC 3262
        section 4, errata 4604): True means process it and send a PRACK; False means a
        retransmission or a gap, to be ignored. SIPParseError for a malformed RSeq."""
        rseq = _rseq_of(response)
        number = response.cseq.number  # type: ignore[union-attr]
        last = self._rack
        if last is not None and last[0] == number and rseq != last[1] + 1:
            return False
        self._rack = (number, rseq)
        return True

    def next_rseq(self) -> int:
        """The RSeq for our next reliable provisional response: random in 1..2**31-1
        for the first (RFC 3262 section 3), one more each time after."""
        self._rseq = self._rng.randint(1, 2**31 - 1) if self._rseq is None else self._rseq + 1
        return self._rseq


def _is_sips(uri: Any) -> bool:
    return isinstance(uri, BaseSIPURI) and uri.secure


def _rseq_of(response: SIPResponse) -> int:
    text = response.headers.get("RSeq")
    if text is None:
        raise DialogError(f"the {response.code} response has no RSeq: it is not reliable")
    return _uint32("RSeq", text)


class DialogSet:
    """The dialogs made by the responses to one request of ours (UAC side).

    ``dialogs`` maps remote tags to dialogs; ``primary`` is the first dialog a 2xx
    confirmed (the call); any other that a 2xx confirms belongs to another fork.
    """

    __slots__ = ("_layer", "_rng", "_secure", "dialogs", "primary", "request")

    def __init__(
        self,
        request: SIPRequest,
        *,
        secure_transport: bool = False,
        rng: random.Random | None = None,
        layer: DialogLayer | None = None,
    ) -> None:
        if request.from_header.tag is None:  # type: ignore[union-attr]
            raise DialogError("a request that creates a dialog needs a From tag")
        self.request = request
        self.dialogs: dict[str | None, Dialog] = {}
        self.primary: Dialog | None = None
        self._secure = secure_transport
        self._rng = rng
        self._layer = layer

    def receive_response(self, response: SIPResponse) -> Dialog | None:
        """The dialog a response to the request belongs to, made or updated; None for
        100, a 1xx without a To tag and final non-2xx responses (which end every early
        dialog, RFC 3261 section 12.3)."""
        code = response.code
        if code >= 300:
            self.terminate_early()
            return None
        tag = response.to_header.tag  # type: ignore[union-attr]
        if code < 200 and (code == 100 or tag is None):
            return None
        dialog = self.dialogs.get(tag)
        if dialog is None:
            dialog = Dialog.from_uac(
                self.request, response, secure_transport=self._secure, rng=self._rng
            )
            self.dialogs[tag] = dialog
            if self._layer is not None:
                self._layer.add(dialog)
        elif code >= 200 and dialog.state is DialogState.EARLY:
            dialog._confirm(response)
        if code >= 200 and self.primary is None and dialog.state is DialogState.CONFIRMED:
            self.primary = dialog
        return dialog

    def terminate_early(self) -> list[Dialog]:
        """End the early dialogs (a non-2xx final response came, or 64*T1 passed
        after the first 2xx: section 13.2.2.4) and return them."""
        ended = [d for d in self.dialogs.values() if d.state is DialogState.EARLY]
        for dialog in ended:
            dialog.terminate()
            if self._layer is not None:
                self._layer.remove(dialog)
        return ended


@dataclass(slots=True)
class DialogMatch:
    """Where an incoming request belongs.

    ``in_dialog`` is whether it has a To tag. ``dialog`` is the dialog it matched, or
    None. ``code`` is the response the TU must answer with instead of processing it:
    481 for a request with a To tag that matches no dialog (section 12.2.2), 500 for
    one whose CSeq is out of order; None otherwise (ACKs are never answered).
    """

    dialog: Dialog | None
    code: int | None
    in_dialog: bool


class DialogLayer:
    """The dialogs of a user agent, found by their id in O(1)."""

    def __init__(self, *, rng: random.Random | None = None) -> None:
        self._rng = rng if rng is not None else _SYSTEM_RANDOM
        self._dialogs: dict[DialogID, Dialog] = {}

    def __len__(self) -> int:
        return len(self._dialogs)

    def add(self, dialog: Dialog) -> None:
        if dialog.id in self._dialogs and self._dialogs[dialog.id] is not dialog:
            raise DialogError(f"another dialog has the id {dialog.id}")
        self._dialogs[dialog.id] = dialog

    def remove(self, dialog: Dialog) -> None:
        """Forget a dialog (it stays usable as an object)."""
        if self._dialogs.get(dialog.id) is dialog:
            del self._dialogs[dialog.id]

    def get(self, id: DialogID) -> Dialog | None:
        return self._dialogs.get(id)

    def create_dialog_set(
        self, request: SIPRequest, *, secure_transport: bool = False
    ) -> DialogSet:
        """A DialogSet for a request of ours whose dialogs this layer should know."""
        return DialogSet(request, secure_transport=secure_transport, rng=self._rng, layer=self)

    def create_uas_dialog(
        self, request: SIPRequest, response: SIPResponse, *, secure_transport: bool = False
    ) -> Dialog:
        """Dialog.from_uas, with a random initial CSeq (section 8.1.1.5), added here."""
        dialog = Dialog.from_uas(
            request,
            response,
            secure_transport=secure_transport,
            initial_cseq=self._rng.randint(1, 2**31 - 1),
            rng=self._rng,
        )
        self.add(dialog)
        return dialog

    def receive_request(self, request: SIPRequest) -> DialogMatch:
        """Find the dialog of an incoming request and check its CSeq.

        CANCEL belongs to its transaction, not to a dialog: it gets no match.
        """
        remote_tag = request.from_header.tag  # type: ignore[union-attr]
        local_tag = request.to_header.tag  # type: ignore[union-attr]
        if local_tag is None or request.method == "CANCEL":
            return DialogMatch(None, None, False)
        dialog = self._dialogs.get(DialogID(request.call_id, local_tag, remote_tag))  # type: ignore[arg-type]
        if dialog is None or dialog.state is DialogState.TERMINATED:
            return DialogMatch(None, None if request.method == "ACK" else 481, True)
        return DialogMatch(dialog, dialog.receive_request(request), True)
