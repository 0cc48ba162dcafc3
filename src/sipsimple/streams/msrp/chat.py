"""ChatStream: session-based instant messaging over MSRP (spec: ChatStream).

Outgoing messages are wrapped in Message/CPIM (RFC 3862) when both ends accept it,
and sent as they are otherwise; incoming ones are unwrapped. Is-composing indications
(RFC 3994) go both ways. Every message asks for an end-to-end success report and only
negative responses (``Success-Report: yes``, ``Failure-Report: partial``), so each
one ends with ChatStreamDidDeliverMessage or ChatStreamDidNotDeliverMessage.

Notifications (besides the MediaStream* ones), all with ``timestamp``:

ChatStreamGotMessage
    ``message``: a :class:`CPIMMessage` (it came wrapped) or a :class:`ChatMessage`.
ChatStreamDidSendMessage
    ``message``: the MSRPData of the last chunk of one of our messages.
ChatStreamDidDeliverMessage
    ``message_id``, ``code`` (200), ``reason``, ``chunk`` (the REPORT's MSRPData).
ChatStreamDidNotDeliverMessage
    ``message_id``, ``code``, ``reason``, ``chunk``: a failure REPORT or error response
    (``chunk`` is its MSRPData), or no report within ``report_timeout`` seconds, the
    connection ending first, or a message queued before start that the peer cannot
    take (code 408 or 415, ``chunk`` None).
ChatStreamGotComposingIndication
    ``state``, ``refresh``, ``last_active``, ``content_type``, ``sender``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, ClassVar

from sipsimple.msrp import (
    MessageAborted,
    MessageDeliveryFailed,
    MessageReceived,
    MessageSent,
    ReportReceived,
    make_id,
)
from sipsimple.msrp.session import content_type_matches
from sipsimple.payloads.cpim import (
    CPIM_CONTENT_TYPE,
    CPIMHeader,
    CPIMIdentity,
    CPIMParseError,
    CPIMPayload,
)
from sipsimple.payloads.iscomposing import (
    ISCOMPOSING_CONTENT_TYPE,
    IsComposingDocument,
    IsComposingParseError,
)
from sipsimple.streams.msrp.base import MSRPStreamBase, MSRPStreamError, post_library_log
from sipsimple.threading import call_in_sip_thread, is_sip_thread

__all__ = [
    "CPIMIdentity",
    "CPIMMessage",
    "ChatIdentity",
    "ChatMessage",
    "ChatStream",
    "ChatStreamError",
]


class ChatStreamError(MSRPStreamError):
    """A chat operation the stream or the peer cannot do (spec: ChatStreamError)."""


@dataclass(frozen=True)
class ChatIdentity:
    """Who sent or receives a message that came without a CPIM envelope: the SIP
    identity of a party to the session (``uri`` as text)."""

    uri: str
    display_name: str | None = None

    @classmethod
    def from_header(cls, header: Any) -> ChatIdentity | None:
        if header is None:
            return None
        return cls(str(header.uri), getattr(header, "display_name", None) or None)

    def __str__(self) -> str:
        return str(CPIMIdentity(self.uri, self.display_name))


@dataclass
class ChatMessage:
    """An incoming message. ``body`` is text for ``text/*`` types (decoded with their
    charset, UTF-8 by default), bytes otherwise; ``timestamp`` is when it arrived."""

    body: str | bytes
    content_type: str
    sender: ChatIdentity | CPIMIdentity | None
    recipients: list[ChatIdentity | CPIMIdentity] = field(default_factory=list)
    timestamp: datetime | None = None
    message_id: str | None = None


@dataclass
class CPIMMessage(ChatMessage):
    """An incoming message that came in a Message/CPIM envelope: the identities are
    CPIMIdentity objects and ``timestamp`` is its DateTime (when it has one)."""

    courtesy_recipients: list[CPIMIdentity] = field(default_factory=list)
    subject: str | None = None
    subject_translations: dict[str, str] = field(default_factory=dict)
    required: list[str] = field(default_factory=list)
    additional_headers: list[CPIMHeader] = field(default_factory=list)
    charset: str | None = None


@dataclass
class _Outgoing:
    message_id: str
    content: str | bytes
    content_type: str
    recipients: list[CPIMIdentity] | None = None
    courtesy_recipients: list[CPIMIdentity] | None = None
    subject: str | None = None
    timestamp: datetime | None = None
    required: list[str] | None = None
    additional_headers: list[CPIMHeader] | None = None
    composing: bool = False
    encoded: tuple[bytes, str] | None = None


_MEDIA_TYPE_CHARS = frozenset("!#$%&'*+-.^_`|~") | frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
)


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _check_content_type(content_type: Any) -> str:
    if not isinstance(content_type, str):
        raise TypeError(f"content_type must be a str, not {content_type!r}")
    major, slash, minor = _media_type(content_type).partition("/")
    if not slash or not major or not minor or not set(major + minor) <= _MEDIA_TYPE_CHARS:
        raise ValueError(
            f"content_type must be a MIME type such as text/plain, not {content_type!r}"
        )
    if "\r" in content_type or "\n" in content_type:
        raise ValueError("content_type cannot contain a line break")
    return content_type


def _identities(values: Iterable[Any] | None, what: str) -> list[CPIMIdentity] | None:
    if values is None:
        return None
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise TypeError(f"{what} must be a list of CPIMIdentity objects, not {values!r}")
    identities = []
    for value in values:
        if not hasattr(value, "uri"):
            raise TypeError(f"{what} must hold CPIMIdentity or ChatIdentity objects, not {value!r}")
        identities.append(CPIMIdentity(str(value.uri), getattr(value, "display_name", None)))
    return identities


def _param(content_type: str, name: str) -> str | None:
    for item in content_type.split(";")[1:]:
        key, _, value = item.partition("=")
        if key.strip().lower() == name:
            return value.strip().strip('"')
    return None


def _decode_body(data: bytes, content_type: str, charset: str | None = None) -> str | bytes:
    if not _media_type(content_type).startswith("text/"):
        return data
    try:
        return data.decode(charset or _param(content_type, "charset") or "utf-8", "replace")
    except LookupError:
        return data.decode("utf-8", "replace")


class ChatStream(MSRPStreamBase):
    """Instant messaging over MSRP (spec: ChatStream); see the module docstring.

    ``cpim_enabled`` says whether messages travel in Message/CPIM (known once the
    stream started), ``private_messages_allowed`` whether the peer announced
    ``a=chatroom:private-messages`` (only then may recipients differ from it).
    Messages given to send_message() before the stream started wait for it.
    """

    type = "chat"
    priority = 1
    media_type = "message"
    accept_types: ClassVar[list[str]] = [
        CPIM_CONTENT_TYPE,
        "text/*",
        "image/*",
        ISCOMPOSING_CONTENT_TYPE,
    ]
    accept_wrapped_types: ClassVar[list[str] | None] = ["*"]
    use_msrp_session = True
    report_timeout: ClassVar[float] = 30.0

    def __init__(self, account: Any) -> None:
        super().__init__(account, "sendrecv")
        self.cpim_enabled: bool | None = None
        self.private_messages_allowed = False
        self._queue: list[_Outgoing] = []
        self._pending: dict[str, asyncio.TimerHandle | None] = {}
        self._messages: set[str] = set()

    @classmethod
    def new_from_sdp(cls, account: Any, remote_sdp: Any, stream_index: int) -> ChatStream | None:
        media = remote_sdp.media[stream_index]
        if not cls._acceptable_offer(account, media, cls.media_type):
            return None
        if "file-selector" in media.attributes:
            return None
        accepted = media.attributes.getfirst("accept-types", "").split()
        if not (
            content_type_matches(CPIM_CONTENT_TYPE, accepted)
            or content_type_matches("text/plain", accepted)
        ):
            return None
        stream = cls(account)
        stream._take_offer(media)
        return stream

    # -- sending ------------------------------------------------------------------------

    def send_message(
        self,
        content: str | bytes,
        content_type: str = "text/plain",
        recipients: Sequence[Any] | None = None,
        courtesy_recipients: Sequence[Any] | None = None,
        subject: str | None = None,
        timestamp: datetime | None = None,
        required: Sequence[str] | None = None,
        additional_headers: Sequence[CPIMHeader] | None = None,
    ) -> str:
        """Send a message; returns its MSRP Message-ID (what the delivery notifications
        name). ``content`` is text (sent as UTF-8) or bytes. ``recipients`` and
        ``courtesy_recipients`` (CPIMIdentity objects) override the CPIM To (the
        peer) and set cc; they, ``subject``, ``required`` and ``additional_headers``
        (CPIMHeader objects) need Message/CPIM, and recipients other than the peer need
        a peer that allows private messages. ``timestamp`` (timezone-aware) is the
        CPIM DateTime, now by default. Raises ChatStreamError for what the peer cannot
        take and once the stream has ended."""
        if not isinstance(content, str | bytes):
            raise TypeError(f"content must be a str or bytes, not {content!r}")
        if timestamp is not None and (
            not isinstance(timestamp, datetime) or timestamp.tzinfo is None
        ):
            raise ValueError("timestamp must be a timezone-aware datetime")
        if subject is not None and not isinstance(subject, str):
            raise TypeError(f"subject must be a str, not {subject!r}")
        headers = list(additional_headers) if additional_headers is not None else None
        if headers is not None and not all(isinstance(h, CPIMHeader) for h in headers):
            raise TypeError("additional_headers must hold CPIMHeader objects")
        item = _Outgoing(
            make_id(),
            content,
            _check_content_type(content_type),
            _identities(recipients, "recipients"),
            _identities(courtesy_recipients, "courtesy_recipients"),
            subject,
            timestamp,
            [str(r) for r in required] if required is not None else None,
            headers,
        )
        self._submit(item)
        return item.message_id

    def send_composing_indication(
        self,
        state: str,
        refresh: int | None,
        last_active: datetime | None = None,
        recipients: Sequence[Any] | None = None,
    ) -> str:
        """Tell the peer whether we are typing (RFC 3994): ``state`` "active" or "idle",
        ``refresh`` seconds until an active state expires unless repeated. Needs a
        started stream (ChatStreamError otherwise); returns the Message-ID."""
        try:
            document = IsComposingDocument(
                state=state, last_active=last_active, content_type="text/plain", refresh=refresh
            )
        except (TypeError, ValueError) as error:
            raise ValueError(str(error)) from None
        if self.state != "started":
            raise ChatStreamError(f"cannot send an is-composing indication while {self.state}")
        item = _Outgoing(
            make_id(),
            document.build(),
            ISCOMPOSING_CONTENT_TYPE,
            _identities(recipients, "recipients"),
            composing=True,
        )
        self._submit(item)
        return item.message_id

    def _submit(self, item: _Outgoing) -> None:
        if self.state in ("ending", "ended") or self.failure is not None:
            raise ChatStreamError(f"the chat stream has {self.state or 'failed'}")
        if self.state == "started":
            item.encoded = self._encode(item)  # refuse at once what the peer cannot take
        if is_sip_thread():
            self._enqueue(item)
        else:
            call_in_sip_thread(self._enqueue, item)

    def _enqueue(self, item: _Outgoing) -> None:
        if self.state == "started":
            self._send(item)
        elif self.state in ("ending", "ended") or self.failure is not None:
            self._not_delivered(item.message_id, 408, "the chat stream ended before it started")
        else:
            self._queue.append(item)

    def _send(self, item: _Outgoing) -> None:
        try:
            data, content_type = item.encoded or self._encode(item)
        except ChatStreamError as error:
            self._not_delivered(item.message_id, 415, str(error))
            return
        assert self.msrp is not None
        if item.composing:
            self.msrp.send_message(
                data,
                content_type,
                message_id=item.message_id,
                success_report="no",
                failure_report="partial",
            )
            return
        self._messages.add(item.message_id)
        self._pending[item.message_id] = asyncio.get_running_loop().call_later(
            self.report_timeout, self._report_timed_out, item.message_id
        )
        self.msrp.send_message(
            data,
            content_type,
            message_id=item.message_id,
            success_report="yes",
            failure_report="partial",
        )

    def _encode(self, item: _Outgoing) -> tuple[bytes, str]:
        """The MSRP body and Content-Type of a message, as the peer can take it."""
        default = self._default_recipients()
        private = item.recipients is not None and [r.uri for r in item.recipients] != [
            r.uri for r in default
        ]
        if private and not self.private_messages_allowed:
            raise ChatStreamError("the peer does not allow private messages")
        if not self.cpim_enabled:
            extras = {
                "courtesy_recipients": item.courtesy_recipients,
                "subject": item.subject,
                "required": item.required,
                "additional_headers": item.additional_headers,
            }
            used = [name for name, value in extras.items() if value]
            if used:
                raise ChatStreamError(
                    f"{', '.join(used)} need Message/CPIM, which the peer does not accept"
                )
            if not content_type_matches(item.content_type, self.remote_accept_types):
                raise ChatStreamError(f"the peer does not accept {item.content_type} messages")
            content_type = item.content_type
            if isinstance(item.content, str):
                if _param(content_type, "charset") is None:
                    content_type += "; charset=utf-8"
                data = item.content.encode()
            else:
                data = item.content
        else:
            wrapped = self.remote_accept_wrapped_types
            if wrapped is None:
                wrapped = self.remote_accept_types
            if not content_type_matches(item.content_type, wrapped):
                raise ChatStreamError(f"the peer does not accept {item.content_type} messages")
            payload = CPIMPayload(
                content=item.content,
                content_type=item.content_type,
                sender=self._local_identity,
                recipients=item.recipients if item.recipients is not None else default,
                courtesy_recipients=item.courtesy_recipients or [],
                subject=item.subject,
                timestamp=item.timestamp or datetime.now(UTC),
                required=item.required or [],
                additional_headers=item.additional_headers or [],
            )
            try:
                data = payload.encode()
            except ValueError as error:
                raise ChatStreamError(f"cannot build the CPIM envelope: {error}") from None
            content_type = CPIM_CONTENT_TYPE
        limit = self._remote_max_size()
        if limit is not None and len(data) > limit:
            raise ChatStreamError(f"the message is {len(data)} bytes, the peer takes {limit}")
        return data, content_type

    def _remote_max_size(self) -> int | None:
        if self.remote_media is None:
            return None
        value = self.remote_media.attributes.getfirst("max-size")
        return int(value) if value is not None and value.strip().isdigit() else None

    @cached_property
    def _local_identity(self) -> CPIMIdentity:
        """Our CPIM From: the account's identity (the INVITE's To may name our contact)."""
        return CPIMIdentity(str(self.account.uri), self._display_name())

    @cached_property
    def _peer_identity(self) -> CPIMIdentity | None:
        header = getattr(self.session, "remote_identity", None)
        if header is None:
            return None
        return CPIMIdentity(str(header.uri), getattr(header, "display_name", None) or None)

    def _default_recipients(self) -> list[CPIMIdentity]:
        peer = self._peer_identity
        return [peer] if peer is not None else []

    # -- delivery -----------------------------------------------------------------------

    def _report_timed_out(self, message_id: str) -> None:
        if message_id in self._pending:
            self._pending[message_id] = None
            self._not_delivered(message_id, 408, "no delivery report came")

    def _not_delivered(
        self, message_id: str, code: int, reason: str | None, chunk: Any = None
    ) -> None:
        handle = self._pending.pop(message_id, None)
        if handle is not None:
            handle.cancel()
        self._post(
            "ChatStreamDidNotDeliverMessage",
            message_id=message_id,
            code=code,
            reason=reason,
            chunk=chunk,
        )

    def _handle_REPORT(self, event: ReportReceived) -> None:
        if event.message_id not in self._pending:
            return
        if event.code != 200:
            self._not_delivered(event.message_id, event.code, event.comment, event.frame)
            return
        handle = self._pending.pop(event.message_id)
        if handle is not None:
            handle.cancel()
        self._post(
            "ChatStreamDidDeliverMessage",
            message_id=event.message_id,
            code=event.code,
            reason=event.comment,
            chunk=event.frame,
        )

    def _handle_delivery(self, event: Any) -> None:
        if isinstance(event, MessageSent):
            if event.message_id in self._messages:
                self._messages.discard(event.message_id)
                self._post("ChatStreamDidSendMessage", message=event.frame)
        elif isinstance(event, MessageDeliveryFailed):
            self._messages.discard(event.message_id)
            if event.message_id in self._pending:
                self._not_delivered(event.message_id, event.code, event.comment, event.frame)

    def _connection_ended(self, error: str | None) -> None:
        for message_id in list(self._pending):
            self._not_delivered(message_id, 408, "the MSRP connection ended before a report came")

    def _NH_MediaStreamDidStart(self, notification: Any) -> None:
        remote = self.remote_accept_types
        self.cpim_enabled = content_type_matches(
            CPIM_CONTENT_TYPE, self.accept_types
        ) and content_type_matches(CPIM_CONTENT_TYPE, remote)
        chatroom = (
            self.remote_media.attributes.getfirst("chatroom", "") if self.remote_media else ""
        )
        self.private_messages_allowed = "private-messages" in chatroom.split()
        queued, self._queue = self._queue, []
        for item in queued:
            self._send(item)

    async def _cleanup(self) -> None:
        queued, self._queue = self._queue, []
        for item in queued:
            if not item.composing:
                self._not_delivered(item.message_id, 408, "the chat stream ended before it started")
        for message_id in list(self._pending):
            self._not_delivered(message_id, 408, "the chat stream ended before a report came")

    # -- receiving ----------------------------------------------------------------------

    def _handle_SEND(self, event: Any) -> None:
        if isinstance(event, MessageAborted):
            if event.code is not None:
                post_library_log(
                    f"refused chat message {event.message_id}: {event.code} {event.comment}",
                    logging.WARNING,
                )
            return
        if not isinstance(event, MessageReceived) or event.data is None:
            return
        content_type = event.content_type or "text/plain"
        try:
            if _media_type(content_type) == CPIM_CONTENT_TYPE:
                self._got_cpim(event.message_id, CPIMPayload.decode(event.data))
            elif _media_type(content_type) == ISCOMPOSING_CONTENT_TYPE:
                self._got_composing(event.data, self._remote_chat_identity())
            else:
                message = ChatMessage(
                    body=_decode_body(event.data, content_type),
                    content_type=content_type,
                    sender=self._remote_chat_identity(),
                    recipients=[ChatIdentity(str(self.account.uri), self._display_name())],
                    timestamp=datetime.now(UTC),
                    message_id=event.message_id,
                )
                self._post("ChatStreamGotMessage", message=message)
        except (CPIMParseError, IsComposingParseError) as error:
            post_library_log(
                f"unreadable chat message {event.message_id}: {error}", logging.WARNING
            )

    def _got_cpim(self, message_id: str, payload: CPIMPayload) -> None:
        if _media_type(payload.content_type) == ISCOMPOSING_CONTENT_TYPE:
            self._got_composing(payload.body, payload.sender)
            return
        message = CPIMMessage(
            body=_decode_body(payload.body, payload.content_type, payload.charset),
            content_type=payload.content_type,
            sender=payload.sender,
            recipients=list(payload.recipients),
            timestamp=payload.timestamp,
            message_id=message_id,
            courtesy_recipients=list(payload.courtesy_recipients),
            subject=payload.subject,
            subject_translations=dict(payload.subject_translations),
            required=list(payload.required),
            additional_headers=list(payload.additional_headers),
            charset=payload.charset,
        )
        self._post("ChatStreamGotMessage", message=message)

    def _got_composing(self, data: bytes, sender: Any) -> None:
        document = IsComposingDocument.parse(data)
        self._post(
            "ChatStreamGotComposingIndication",
            state=document.state,
            refresh=document.refresh,
            last_active=document.last_active,
            content_type=document.content_type,
            sender=sender,
        )

    def _remote_chat_identity(self) -> ChatIdentity | None:
        return ChatIdentity.from_header(getattr(self.session, "remote_identity", None))

    def _display_name(self) -> str | None:
        return getattr(self.account, "display_name", None) or None
