"""SIP sessions (spec: SessionManager, Session): the signalling of a call whose media
are independent streams (:mod:`sipsimple.streams`).

A :class:`Session` drives one core :class:`~sipsimple.core.Invitation` (one per route
tried, for an outgoing session) and the streams negotiated in it, and tells the
application what happens with the spec's SIPSession* notifications. Its public methods
may be called from any thread: they check their arguments and the state at once
(TypeError, ValueError, :class:`IllegalStateError`), then hand the work to the SIP thread
and return; everything else runs on the SIP thread.

States (``state``): None -> "outgoing" (connect) or "incoming" (a new INVITE) ->
"accepting" (accept, incoming only) -> "connected" (SIPSessionDidStart) -> "terminating"
-> "terminated". While connected, "sending_proposal" (add_stream), "received_proposal"
(the peer offers new streams) and "accepting_proposal" (accept_proposal) come and go.
A session that never started ends with SIPSessionDidFail, a started one with
SIPSessionWillEnd and SIPSessionDidEnd.

Notification data beyond the spec's: SIPSessionDidFail and SIPSessionDidEnd give
``code`` 0 and ``reason`` None when no SIP response was involved (a stream failed, the
DNS lookup failed, end() before the INVITE went out). ``failure_reason`` and
``end_reason`` are "user_request" when a party asked for it, else what happened:
"timeout", "missing ACK", "media stream failed: ...", "DNS lookup failed: ...",
"account deactivated", the reason phrase of a rejection...

Re-INVITEs of ours (add_stream, remove_stream, hold, unhold) run one at a time, each
once the dialog is free, and build their offer when they are sent. A 491 (glare) is
retried after the RFC 3261 section 14.1 back-off with a fresh offer; an add_stream
still waiting for that retry gives way to a proposal of the peer (it is rejected with
491 to the application).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import ipaddress
import logging
import random
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from sipsimple.configuration import ConfigurationManager
from sipsimple.configuration.settings import SIPSimpleSettings
from sipsimple.core import (
    SIPURI,
    BaseHeader,
    BaseSIPURI,
    ContactHeader,
    Engine,
    FromHeader,
    FrozenSDPSession,
    Invitation,
    RouteHeader,
    SDPConnection,
    SDPMediaStream,
    SDPSession,
    SIPCoreError,
    ToHeader,
    WarningHeader,
)
from sipsimple.core.sdp import reject_media
from sipsimple.core.sip.message import REASON_PHRASES
from sipsimple.core.usage import FAILOVER_CODES
from sipsimple.lookup import DNSLookup, DNSLookupError
from sipsimple.notification import Notification, NotificationCenter, NotificationData
from sipsimple.streams import IMediaStream, MediaStreamRegistry
from sipsimple.threading import is_sip_thread, sip_loop
from sipsimple.util import Route

__all__ = ["IllegalStateError", "Session", "SessionManager"]

log = logging.getLogger(__name__)

_NOT_ACTIVE = (None, "terminated")


class IllegalStateError(RuntimeError):
    """A Session method called in a state that does not allow it."""


@dataclass
class _Failure(Exception):
    """Why a session (or what it was doing) failed: the fields of SIPSessionDidFail."""

    originator: str
    code: int
    reason: str | None
    failure_reason: str


class _Aborted(Exception):
    """The session terminated while a task of it was waiting."""


@dataclass(eq=False)
class _Operation:
    """A re-INVITE of ours waiting for its turn."""

    kind: str  # "add", "remove" or "hold"
    stream: IMediaStream | None = None
    initialized: asyncio.Future[None] | None = field(default=None, repr=False)
    withdrawn: bool = False
    task: asyncio.Task[None] | None = field(default=None, repr=False)


def _post(sender: object, name: str, **data: Any) -> None:
    NotificationCenter().post_notification(name, sender=sender, data=NotificationData(**data))


def _now() -> datetime:
    return datetime.now(UTC)


def _reason_text(disconnect_reason: str | None) -> str:
    if disconnect_reason is None or disconnect_reason == "user request":
        return "user_request"
    return disconnect_reason


def _hold_fields(streams: Iterable[IMediaStream], attribute: str) -> tuple[bool, bool]:
    """(on_hold, partial) of the spec's SIPSessionDidChangeHoldState for one party."""
    holding = [s for s in streams if s.hold_supported]
    held = [bool(getattr(s, attribute)) for s in holding]
    on_hold = any(held)
    return on_hold, on_hold and not all(held)


def _call_stream(stream: IMediaStream, method: str, *args: Any) -> Any:
    """Call a stream method (application code): an exception becomes a failure text."""
    try:
        return getattr(stream, method)(*args)
    except Exception as e:
        log.exception("%r.%s() failed", stream, method)
        raise _Failure("local", 0, None, f"media stream failed: {e}") from None


def _check_streams(streams: Any, what: str) -> list[IMediaStream]:
    if isinstance(streams, IMediaStream) or not isinstance(streams, Iterable):
        raise TypeError(f"{what} must be a list of media streams, not {streams!r}")
    streams = list(streams)
    for stream in streams:
        if not isinstance(stream, IMediaStream):
            raise TypeError(f"{what} must hold IMediaStream objects, not {stream!r}")
    if not streams:
        raise ValueError(f"{what} must not be empty")
    if len({id(s) for s in streams}) != len(streams):
        raise ValueError(f"{what} lists a stream twice")
    return streams


def _check_code(code: Any, low: int, what: str) -> int:
    if isinstance(code, bool) or not isinstance(code, int) or not low <= code <= 699:
        raise ValueError(f"{what} must be a SIP status code in {low}..699, not {code!r}")
    return code


class SessionManager:
    """Keeps the active sessions and turns new incoming INVITEs into Sessions; a
    singleton (spec: SessionManager). SIPApplication starts and stops it.

    An INVITE is answered 404 when no enabled account is found for its Request-URI
    (AccountManager.find_account), 488 when no m-line of its offer is one a registered
    stream class accepts; otherwise a Session in state "incoming" is announced with
    SIPSessionNewIncoming.  An INVITE without an offer (a "late offer", RFC 3261 section
    13.2.1, as some PBXs and gateways send) proposes an audio stream: accepting it puts
    our offer in the 200 OK, and the ACK carries the answer.  ``stop()`` ends every
    session and is done once all of them terminated and every stream that was ending
    posted MediaStreamDidEnd (a file transfer still writing and checking its file, say),
    or ``stop_timeout`` seconds passed.
    """

    _instance: ClassVar[SessionManager | None] = None
    _instance_lock: ClassVar[threading.Lock] = threading.Lock()
    stop_timeout: ClassVar[float] = 5.0

    _sessions: dict[Session, None]  # an ordered set
    _ending: dict[object, None]  # streams between MediaStreamWillEnd and MediaStreamDidEnd
    _ended: asyncio.Future[None] | None  # what _stop waits on while streams are ending
    _lock: threading.Lock
    _started: bool

    def __new__(cls) -> SessionManager:
        instance = cls._instance
        if instance is not None:
            return instance
        with cls._instance_lock:
            if cls._instance is None:
                instance = super().__new__(cls)
                instance._sessions = {}
                instance._ending = {}
                instance._ended = None
                instance._lock = threading.Lock()
                instance._started = False
                cls._instance = instance
            return cls._instance

    @property
    def sessions(self) -> list[Session]:
        """The sessions that are neither new (None) nor terminated, a copy."""
        with self._lock:
            return [s for s in self._sessions if s.state not in _NOT_ACTIVE]

    def start(self) -> None:
        """Take incoming sessions from now on."""
        with self._lock:
            if self._started:
                return
            self._started = True
        center = NotificationCenter()
        center.add_observer(self._invitation_changed, name="SIPInvitationChangedState")
        center.add_observer(self._stream_ending, name="MediaStreamWillEnd")
        center.add_observer(self._stream_ending, name="MediaStreamDidEnd")

    def stop(self) -> asyncio.Task[None] | concurrent.futures.Future[None]:
        """Stop taking incoming sessions and end every session; returns what to wait on
        (an asyncio.Task on the SIP thread, a Future elsewhere)."""
        with self._lock:
            self._started = False
        NotificationCenter().discard_observer(
            self._invitation_changed, name="SIPInvitationChangedState"
        )
        if is_sip_thread():
            return sip_loop().create_task(self._stop())
        return asyncio.run_coroutine_threadsafe(self._stop(), sip_loop())

    async def _stop(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.stop_timeout
        waiters = []
        for session in self.sessions:
            waiters.append(session._terminated)
            session._end("user_request")
        if waiters:
            await asyncio.wait(waiters, timeout=self.stop_timeout)
        with self._lock:
            if self._ending:
                self._ended = loop.create_future()
            ended = self._ended
        if ended is not None:
            await asyncio.wait([ended], timeout=max(0.0, deadline - loop.time()))
        with self._lock:
            self._ended = None
            self._ending.clear()
        center = NotificationCenter()
        center.discard_observer(self._stream_ending, name="MediaStreamWillEnd")
        center.discard_observer(self._stream_ending, name="MediaStreamDidEnd")

    def _stream_ending(self, notification: Notification) -> None:
        """Keep the streams that are still ending, for ``stop()`` to wait on."""
        with self._lock:
            if notification.name == "MediaStreamWillEnd":
                self._ending[notification.sender] = None
                return
            self._ending.pop(notification.sender, None)
            ended = self._ended if not self._ending else None
        if ended is not None:
            ended.get_loop().call_soon_threadsafe(_resolve, ended)

    def _add(self, session: Session) -> None:
        with self._lock:
            self._sessions[session] = None

    def _remove(self, session: Session) -> None:
        with self._lock:
            self._sessions.pop(session, None)

    def _invitation_changed(self, notification: Notification) -> None:
        data = notification.data
        if data.state != "incoming" or data.prev_state is not None:
            return
        invitation = notification.sender
        if not isinstance(invitation, Invitation):
            return
        try:
            self._take(invitation, data)
        except Exception:
            log.exception("cannot take the incoming session %r", invitation)
            _answer(invitation, 500)

    def _take(self, invitation: Invitation, data: NotificationData) -> None:
        account = self._account_for(invitation.request_uri)
        if account is None:
            _answer(invitation, 404)
            return
        offer = invitation.sdp.proposed_remote
        if offer is None:  # a late offer: ours goes in the 200 OK
            audio = next((cls for cls in MediaStreamRegistry() if cls.type == "audio"), None)
            if audio is None:
                _answer(invitation, 488, warning="no audio stream to offer")
                return
            Session(account)._incoming(invitation, [(0, audio(account))])  # type: ignore[call-arg]
            return
        streams: list[tuple[int, IMediaStream]] = []
        for index, media in enumerate(offer.media):
            if media.port == 0:
                continue
            stream = _stream_for(account, offer, index)
            if stream is not None:
                streams.append((index, stream))
        if not streams:
            _answer(invitation, 488, warning="no acceptable media stream")
            return
        Session(account)._incoming(invitation, streams)

    @staticmethod
    def _account_for(uri: Any) -> Any:
        from sipsimple.account import AccountManager

        manager = AccountManager()
        if isinstance(uri, BaseSIPURI):
            account = manager.find_account(uri)
            if account is not None:
                return account
        return None


def _answer(invitation: Invitation, code: int, warning: str | None = None) -> None:
    extra = [WarningHeader(399, "-", warning)] if warning else None
    try:
        invitation.send_response(code, extra_headers=extra)
    except SIPCoreError as e:
        log.info("cannot answer %r with %d: %s", invitation, code, e)


def _stream_for(account: Any, offer: FrozenSDPSession, index: int) -> IMediaStream | None:
    """The first registered stream class (by priority) that takes m-line ``index``."""
    for cls in MediaStreamRegistry():
        try:
            stream = cls.new_from_sdp(account, offer, index)
        except Exception:
            log.exception("%s.new_from_sdp() failed on m-line %d", cls.__qualname__, index)
            continue
        if stream is not None:
            return stream
    return None


class Session:
    """One SIP session with its streams (spec: Session); see the module docstring.

    ``stream_timeout`` bounds how long a stream may take to initialize or start,
    ``end_timeout`` how long the BYE (or CANCEL) may take, and ``glare_backoff`` the
    random wait before a re-INVITE that met a 491 is sent again: (low, high) seconds for
    the session that owns the Call-ID (the caller) and for the other one.
    """

    stream_timeout: ClassVar[float] = 30.0
    end_timeout: ClassVar[float] = 5.0
    glare_backoff: ClassVar[dict[str, tuple[float, float]]] = {
        "outgoing": (2.1, 4.0),
        "incoming": (0.0, 2.0),
    }

    def __init__(self, account: Any) -> None:
        if account is None or not all(
            hasattr(account, name) for name in ("uri", "contact", "credentials")
        ):
            raise TypeError(f"account must be an Account or a BonjourAccount, not {account!r}")
        self.account = account
        self.direction: str | None = None
        self.transport: str | None = None
        self.start_time: datetime | None = None
        self.stop_time: datetime | None = None
        self._lock = threading.RLock()
        self._state: str | None = None
        self._streams: list[IMediaStream] = []
        self._proposed: list[IMediaStream] | None = None
        self._invitation: Invitation | None = None
        self._started = False
        # On the SIP thread only:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._abort_future: asyncio.Future[None] | None = None
        self._terminated_future: asyncio.Future[None] | None = None
        self._poke: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._slots: list[IMediaStream | None] = []  # the stream of each m-line
        self._offered: dict[IMediaStream, int] = {}  # offered by the peer -> m-line
        self._pending: dict[tuple[IMediaStream, str], asyncio.Future[None]] = {}
        self._watched: set[IMediaStream] = set()
        self._initialized: list[IMediaStream] = []
        self._ended: set[IMediaStream] = set()
        self._new: set[IMediaStream] = set()  # to start at the next SDP update
        self._starting: dict[IMediaStream, asyncio.Future[None]] = {}
        self._rejected: set[IMediaStream] = set()  # refused in the peer's answer
        self._outcome: asyncio.Future[Any] | None = None
        self._initial: list[tuple[IMediaStream, asyncio.Future[None]]] | None = None
        self._provisional = False
        self._reinvite_result: asyncio.Future[tuple[int, str]] | None = None
        self._glared = False
        self._ops: deque[_Operation] = deque()
        self._runner: asyncio.Task[None] | None = None
        self._want_hold = False
        self._accept_task: asyncio.Task[None] | None = None
        self._end_reason: str | None = None
        self._lingering: Invitation | None = None  # refused, its transaction not done yet

    def __repr__(self) -> str:
        return f"<Session {self.direction} {self._state} {self.account!r}>"

    # -- attributes ------------------------------------------------------------------

    @property
    def state(self) -> str | None:
        return self._state

    @property
    def streams(self) -> list[IMediaStream]:
        """The active streams (a copy)."""
        with self._lock:
            return list(self._streams)

    @property
    def proposed_streams(self) -> list[IMediaStream] | None:
        """The streams of the proposal in progress (a copy), else None."""
        with self._lock:
            return list(self._proposed) if self._proposed is not None else None

    @property
    def on_hold(self) -> bool:
        return any(stream.on_hold for stream in self.streams)

    @property
    def remote_user_agent(self) -> str | None:
        invitation = self._invitation
        return invitation.remote_user_agent if invitation is not None else None

    @property
    def local_identity(self) -> Any:
        invitation = self._invitation
        return invitation.local_identity if invitation is not None else None

    @property
    def remote_identity(self) -> Any:
        invitation = self._invitation
        return invitation.remote_identity if invitation is not None else None

    # -- the public methods (any thread) ------------------------------------------------

    def connect(self, to_header: Any, routes: Iterable[Route] | None, streams: Any) -> None:
        """Offer ``streams`` to ``to_header``'s URI through ``routes`` (tried in order;
        None: looked up from the account's outbound proxy or the target's domain)."""
        if not isinstance(to_header, BaseHeader) or to_header._family != ToHeader._family:
            raise TypeError(f"to_header must be a ToHeader, not {to_header!r}")
        if not isinstance(to_header.uri, BaseSIPURI):
            raise ValueError(f"to_header must hold a sip or sips URI, not {to_header.uri}")
        if routes is not None:
            if isinstance(routes, Route) or not isinstance(routes, Iterable):
                raise TypeError(f"routes must be a list of Route objects or None, not {routes!r}")
            routes = list(routes)
            if not routes or not all(isinstance(route, Route) for route in routes):
                raise ValueError(f"routes must be a non-empty list of Route objects: {routes!r}")
        streams = _check_streams(streams, "streams")
        if not Engine().is_running:
            raise IllegalStateError("connect() needs the Engine running: start the SIPApplication")
        with self._lock:
            self._require("connect", None)
            self.direction = "outgoing"
            self._proposed = streams
            self._set_state("outgoing")
        self._hand(self._connect, to_header, routes, streams)

    def send_ring_indication(self) -> None:
        """Send 180 Ringing for an incoming session."""
        with self._lock:
            self._require("send_ring_indication", "incoming")
        self._hand(self._ring)

    def accept(self, streams: Any) -> None:
        """Accept an incoming session with ``streams``, a subset of proposed_streams
        (the others are refused)."""
        streams = _check_streams(streams, "streams")
        with self._lock:
            self._require("accept", "incoming")
            self._check_subset(streams)
            self._set_state("accepting")
        self._hand(self._accept, streams)

    def reject(self, code: int = 603, reason: str | None = None) -> None:
        """Refuse an incoming session with ``code`` (300..699, usually 486 or 603)."""
        _check_code(code, 300, "code")
        _check_reason(reason)
        with self._lock:
            self._require("reject", "incoming")
            self._set_state("terminating")
        self._hand(self._reject, code, reason)

    def accept_proposal(self, streams: Any) -> None:
        """Accept the peer's proposal with ``streams``, a subset of proposed_streams."""
        streams = _check_streams(streams, "streams")
        with self._lock:
            self._require("accept_proposal", "received_proposal")
            self._check_subset(streams)
            self._set_state("accepting_proposal")
        self._hand(self._accept_proposal, streams)

    def reject_proposal(self, code: int = 488, reason: str | None = None) -> None:
        """Refuse the peer's proposal with ``code`` (300..699, usually 488)."""
        _check_code(code, 300, "code")
        _check_reason(reason)
        with self._lock:
            self._require("reject_proposal", "received_proposal")
            proposed, self._proposed = self._proposed, None
            self._set_state("connected")
        self._hand(self._reject_proposal, code, reason, proposed)

    def add_stream(self, stream: IMediaStream) -> None:
        """Propose a new stream to the peer."""
        if not isinstance(stream, IMediaStream):
            raise TypeError(f"stream must be an IMediaStream, not {stream!r}")
        with self._lock:
            self._require("add_stream", "connected")
            if stream in self._streams:
                raise ValueError(f"{stream!r} is already part of the session")
            self._proposed = [stream]
            self._set_state("sending_proposal")
        self._hand(self._add_stream, stream)

    def remove_stream(self, stream: IMediaStream) -> None:
        """Stop ``stream`` and remove it from the session (the peer is told with a
        re-INVITE, or a BYE when it was the last stream)."""
        with self._lock:
            self._require("remove_stream", "connected")
            if stream not in self._streams:
                raise ValueError(f"{stream!r} is not an active stream of the session")
            self._streams.remove(stream)
        self._hand(self._remove_stream, stream, None)

    def cancel_proposal(self) -> None:
        """Withdraw our add_stream proposal (SIPSessionGotRejectProposal, code 487)."""
        with self._lock:
            self._require("cancel_proposal", "sending_proposal")
        self._hand(self._cancel_proposal)

    def hold(self) -> None:
        """Put the streams that support it on hold, as soon as the session allows."""
        self._set_hold(True)

    def unhold(self) -> None:
        """Take the streams off hold, as soon as the session allows."""
        self._set_hold(False)

    def end(self) -> None:
        """End the session: BYE once started, else CANCEL (outgoing) or 603 (incoming).
        Nothing happens when it is already ending."""
        with self._lock:
            if self._state is None:
                raise IllegalStateError("end() on a session that was never connected")
            if self._state in ("terminating", "terminated"):
                return
        self._hand(self._end, "user_request")

    def _set_hold(self, hold: bool) -> None:
        with self._lock:
            if self._state in ("terminating", "terminated"):
                return
            self._want_hold = hold
            if not self._started:
                return  # the session applies it once it starts
        self._hand(self._hold)

    def _require(self, method: str, *states: str | None) -> None:
        if self._state not in states:
            allowed = " or ".join(repr(s) for s in states)
            raise IllegalStateError(
                f"{method}() is allowed in state {allowed}, not in {self._state!r}"
            )

    def _check_subset(self, streams: list[IMediaStream]) -> None:
        proposed = self._proposed or []
        strangers = [s for s in streams if s not in proposed]
        if strangers:
            raise ValueError(f"streams must be among the proposed streams, not {strangers!r}")

    def _set_state(self, state: str) -> None:
        with self._lock:
            self._state = state
        if state == "terminated":
            SessionManager()._remove(self)
        else:
            SessionManager()._add(self)
        loop = self._loop
        if loop is not None:
            if asyncio._get_running_loop() is loop:
                loop.call_soon(self._wake)
            elif not loop.is_closed():
                loop.call_soon_threadsafe(self._wake)

    # -- the SIP thread: plumbing ------------------------------------------------------

    def _hand(self, function: Callable[..., Any], *args: Any) -> None:
        """Run ``function(*args)`` on the SIP thread soon (a coroutine as a task)."""
        loop = sip_loop()
        if asyncio._get_running_loop() is loop:
            loop.call_soon(self._run, function, args)  # no wake-up of the loop to pay for
        else:
            loop.call_soon_threadsafe(self._run, function, args)

    def _run(self, function: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self._setup()
        try:
            result = function(*args)
        except Exception:
            log.exception("%r: %s failed", self, function.__name__)
            return
        if asyncio.iscoroutine(result):
            self._spawn(result)

    def _setup(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._abort_future = self._loop.create_future()
            self._terminated_future = self._loop.create_future()

    @property
    def _terminated(self) -> asyncio.Future[None]:
        self._setup()
        assert self._terminated_future is not None
        return self._terminated_future

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(self._guard(coroutine))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _guard(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        try:
            await coroutine
        except (_Aborted, asyncio.CancelledError):
            pass
        except _Failure as failure:
            self._fail(failure)
        except Exception:
            log.exception("%r: internal error", self)
            self._fail(_Failure("local", 0, None, "internal error"))

    def _post(self, name: str, **data: Any) -> None:
        _post(self, name, **data)

    async def _wait(self, awaitable: Awaitable[Any]) -> Any:
        """Await ``awaitable`` unless the session terminates first (_Aborted)."""
        abort = self._abort_future
        assert abort is not None
        if abort.done():
            if asyncio.iscoroutine(awaitable):
                awaitable.close()
            raise _Aborted
        future = asyncio.ensure_future(awaitable)
        await _first(future, abort)
        if abort.done():
            future.cancel()
            raise _Aborted
        return future.result()

    async def _wait_all(self, futures: Iterable[asyncio.Future[None]]) -> None:
        """Wait for the streams' futures; the first failure (or the timeout) raises."""
        pending = set(futures)
        abort = self._abort_future
        assert abort is not None
        if abort.done():
            raise _Aborted
        if all(future.done() for future in pending):  # streams that answered at once
            for future in pending:
                error = future.exception()
                if error is not None:
                    raise error
            return
        deadline = asyncio.get_running_loop().time() + self.stream_timeout
        while pending:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise _Failure("local", 0, None, "media stream failed: it did not answer in time")
            done, _ = await asyncio.wait(
                (*pending, abort), timeout=left, return_when=asyncio.FIRST_COMPLETED
            )
            if abort.done():
                raise _Aborted
            for future in done:
                pending.discard(future)
                error = future.exception()
                if error is not None:
                    raise error

    async def _changed(self) -> None:
        if self._poke is None or self._poke.done():
            self._poke = asyncio.get_running_loop().create_future()
        await self._wait(asyncio.shield(self._poke))

    def _wake(self) -> None:
        if self._poke is not None and not self._poke.done():
            self._poke.set_result(None)

    # -- streams ------------------------------------------------------------------------

    def _watch(self, stream: IMediaStream) -> None:
        if stream not in self._watched:
            self._watched.add(stream)
            NotificationCenter().add_observer(self._stream_event, sender=stream)

    def _expect(self, stream: IMediaStream, name: str) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)
        self._pending[(stream, name)] = future
        return future

    def _initialize(self, stream: IMediaStream, direction: str) -> asyncio.Future[None]:
        self._watch(stream)
        future = self._expect(stream, "MediaStreamDidInitialize")
        self._initialized.append(stream)
        self._invoke(stream, future, "initialize", self, direction)
        return future

    def _start_stream(
        self, stream: IMediaStream, local: FrozenSDPSession, remote: FrozenSDPSession, index: int
    ) -> asyncio.Future[None]:
        future = self._expect(stream, "MediaStreamDidStart")
        self._invoke(stream, future, "start", local, remote, index)
        return future

    def _invoke(
        self, stream: IMediaStream, future: asyncio.Future[None], method: str, *args: Any
    ) -> None:
        try:
            _call_stream(stream, method, *args)
        except _Failure as failure:
            if not future.done():
                future.set_exception(failure)

    def _end_stream(self, stream: IMediaStream) -> None:
        if stream in self._ended or stream not in self._initialized:
            return
        self._ended.add(stream)
        for name in ("MediaStreamDidInitialize", "MediaStreamDidStart"):
            future = self._pending.pop((stream, name), None)
            if future is not None and not future.done():
                future.cancel()
        try:
            stream.end()
        except Exception:
            log.exception("%r.end() failed", stream)

    def _stream_event(self, notification: Notification) -> None:
        stream = notification.sender
        name = notification.name
        if name in ("MediaStreamDidInitialize", "MediaStreamDidStart"):
            future = self._pending.pop((stream, name), None)
            if future is not None and not future.done():
                future.set_result(None)
                if name == "MediaStreamDidStart" and self._initial is not None:
                    self._initial_started()
        elif name == "MediaStreamDidFail":
            reason = getattr(notification.data, "reason", None) or "unknown error"
            failure = _Failure("local", 0, None, f"media stream failed: {reason}")
            waited = False
            for key in ((stream, "MediaStreamDidInitialize"), (stream, "MediaStreamDidStart")):
                future = self._pending.pop(key, None)
                if future is not None and not future.done():
                    future.set_exception(failure)
                    waited = True
            if waited or self._state in ("terminating", "terminated"):
                return
            with self._lock:
                broke = stream in self._streams
                if broke:
                    self._streams.remove(stream)
            if broke:  # in use: it leaves the session
                self._remove_stream(stream, failure.failure_reason)
        elif name == "MediaStreamDidEnd":
            self._watched.discard(stream)
            NotificationCenter().discard_observer(self._stream_event, sender=stream)

    # -- SDP ----------------------------------------------------------------------------

    def _local_sdp(self, for_offer: bool, remote: FrozenSDPSession | None = None) -> SDPSession:
        """Our description: each stream's line, port 0 where there is none."""
        invitation = self._invitation
        active = invitation.sdp.active_local if invitation is not None else None
        count = max(len(self._slots), len(remote.media) if remote is not None else 0)
        media: list[SDPMediaStream] = []
        for index in range(count):
            stream = self._slots[index] if index < len(self._slots) else None
            if stream is not None:
                media.append(_call_stream(stream, "get_local_media", for_offer))
            elif remote is not None and index < len(remote.media):
                media.append(reject_media(remote.media[index]))
            elif active is not None and index < len(active.media):
                line = active.media[index]
                media.append(SDPMediaStream(line.media, 0, line.transport, formats=line.formats))
        address = _local_address()
        kind = "IP6" if ":" in address else "IP4"
        return SDPSession(
            address,
            address_type=kind,
            name="sipsimple",
            connection=SDPConnection(address, address_type=kind),
            media=media,
        )

    def _apply_sdp(self, local: FrozenSDPSession, remote: FrozenSDPSession) -> None:
        """A renegotiation succeeded: start new streams, update the others, drop the
        ones now disabled, and tell of a change in the peer's hold state."""
        before = _hold_fields(self._streams, "on_hold_by_remote")
        removed = []
        for index, stream in enumerate(self._slots):
            if stream is None:
                continue
            disabled = (
                index >= len(remote.media)
                or remote.media[index].port == 0
                or local.media[index].port == 0
            )
            if disabled:
                self._slots[index] = None
                if stream in self._new:
                    self._new.discard(stream)
                    self._rejected.add(stream)
                    self._end_stream(stream)
                elif stream in self._streams:
                    removed.append(stream)
            elif stream in self._new:
                self._new.discard(stream)
                self._starting[stream] = self._start_stream(stream, local, remote, index)
            else:
                try:
                    _call_stream(stream, "update", local, remote, index)
                except _Failure:
                    pass
        if removed:
            with self._lock:
                self._streams = [s for s in self._streams if s not in removed]
            for stream in removed:
                try:
                    stream.deactivate()
                except Exception:
                    log.exception("%r.deactivate() failed", stream)
                self._end_stream(stream)
            self._post("SIPSessionDidRenegotiateStreams", action="remove", streams=removed)
            if not self._streams and not self._new:
                self._hand(self._end, "user_request")
                return
        after = _hold_fields(self._streams, "on_hold_by_remote")
        if after != before:
            self._post(
                "SIPSessionDidChangeHoldState",
                originator="remote",
                on_hold=after[0],
                partial=after[1],
            )

    # -- the Invitation -------------------------------------------------------------------

    def _use(self, invitation: Invitation) -> None:
        self._invitation = invitation
        self._outcome = asyncio.get_running_loop().create_future()
        self._provisional = False
        NotificationCenter().add_observer(self._invitation_event, sender=invitation)

    def _invitation_event(self, notification: Notification) -> None:
        invitation = notification.sender
        name, data = notification.name, notification.data
        if self._done_with(invitation, name, data):
            NotificationCenter().discard_observer(self._invitation_event, sender=invitation)
        if invitation is not self._invitation:
            return
        if name == "SIPInvitationDidProcessTransaction":
            self._transaction_done(invitation, data)
            return
        if self._state == "terminated":
            return
        if name == "SIPInvitationGotSDPUpdate":
            if data.succeeded and self._started:
                self._apply_sdp(data.local_sdp, data.remote_sdp)
        elif name == "SIPInvitationChangedState":
            self._invitation_changed(data)
        self._wake()

    def _done_with(self, invitation: Invitation, name: str, data: NotificationData) -> bool:
        """Whether this is the last notification of ``invitation`` we need: it is
        disconnected, and an INVITE we refused has reported its transaction (that comes
        when the server transaction ends, after the ACK)."""
        if name == "SIPInvitationChangedState" and data.state == "disconnected":
            if invitation.direction == "incoming" and data.prev_state in ("incoming", "early"):
                self._lingering = invitation
                return False
            return True
        if (
            name == "SIPInvitationDidProcessTransaction"
            and data.method == "INVITE"
            and invitation is self._lingering
        ):
            self._lingering = None
            return True
        return False

    def _transaction_done(self, invitation: Invitation, data: NotificationData) -> None:
        fields = {
            "originator": data.originator,
            "method": data.method,
            "code": data.code,
            "reason": data.reason,
        }
        if hasattr(data, "ack_received"):
            fields["ack_received"] = data.ack_received
        self._post("SIPSessionDidProcessTransaction", **fields)
        pending = self._reinvite_result
        if (
            data.originator == "local"
            and data.method == "INVITE"
            and data.code == 491
            and pending is not None
            and not pending.done()
        ):
            # The Invitation would retry this offer as it was: we make a fresh one.
            self._glared = True
            try:
                invitation.cancel_reinvite()
            except SIPCoreError:
                pass

    def _invitation_changed(self, data: NotificationData) -> None:
        state = data.state
        code = getattr(data, "code", None)
        if state == "early":
            if self.direction == "outgoing" and data.originator == "remote" and code:
                self._provisional = True
                if code == 180:
                    self._post("SIPSessionGotRingIndication")
                self._post("SIPSessionGotProvisionalResponse", code=code, reason=data.reason)
        elif state == "connecting":
            if self._state in ("outgoing", "accepting"):
                self._post("SIPSessionWillStart")
        elif state == "connected":
            if data.prev_state == "connecting":
                if self._outcome is not None and not self._outcome.done():
                    self._outcome.set_result(None)
                    asyncio.get_running_loop().call_soon(self._begin_initial)
            else:
                self._sub_state_changed(data)
        elif state == "disconnected":
            if self._initial is None and self._outcome is not None and self._outcome.done():
                # Connected, then ended before _begin_initial's turn (the ACK and the BYE
                # read in one go): the session was established, so its streams start now.
                self._begin_initial()
            if self._initial is not None and not self._started and self._end_reason is None:
                # Started streams say so in notifications queued behind this one: hear
                # them first, so that an established session ends rather than fails.
                asyncio.get_running_loop().call_soon(self._disconnected, data)
                return
            self._disconnected(data)

    def _sub_state_changed(self, data: NotificationData) -> None:
        previous, sub_state = data.prev_sub_state, data.sub_state
        code = getattr(data, "code", None)
        if sub_state in ("received_proposal", "received_proposal_request"):
            if data.originator == "remote":
                self._remote_reinvite(sub_state)
        elif sub_state == "sent_proposal" and data.originator == "remote":
            if code is not None and code < 200:
                self._post("SIPSessionGotProvisionalResponse", code=code, reason=data.reason)
        elif previous == "sent_proposal" and sub_state == "normal":
            result = (491, "Request Pending") if self._glared else (code or 0, data.reason)
            self._glared = False
            self._reinvite_finished(*result)
        elif (
            previous in ("received_proposal", "received_proposal_request")
            and getattr(data, "method", None) == "CANCEL"
        ):
            self._remote_cancelled()

    def _disconnected(self, data: NotificationData) -> None:
        outcome = self._outcome
        if self._state == "outgoing" and outcome is not None and not outcome.done():
            outcome.set_result(data)  # the connect task decides: fail, or the next route
            return
        if self._started:
            self._ended_by(data)
        else:
            self._fail(self._failure_of(data))

    def _failure_of(self, data: NotificationData) -> _Failure:
        code, reason = data.code or 0, data.reason
        if self._end_reason is not None and data.originator == "local":
            if code < 300:
                code, reason = 487, "Request Terminated"
            return _Failure("local", code, reason, self._end_reason)
        return _Failure(data.originator, code, reason, _reason_text(data.disconnect_reason))

    # -- outgoing ---------------------------------------------------------------------------

    async def _connect(
        self, to_header: Any, routes: list[Route] | None, streams: list[IMediaStream]
    ) -> None:
        if self._state != "outgoing":
            return
        self._watch_account()
        self._post("SIPSessionNewOutgoing", streams=list(streams))
        initialized = [self._initialize(stream, "outgoing") for stream in streams]
        if routes is None:
            routes = await self._wait(self._lookup_routes(to_header.uri))
        await self._wait_all(initialized)
        self._slots = list(streams)
        offer = self._local_sdp(for_offer=True)
        await self._invite(to_header, routes, offer)
        invitation = self._invitation
        assert invitation is not None
        await self._start_initial(invitation)

    async def _lookup_routes(self, uri: Any) -> list[Route]:
        """RFC 3263 routes: to the outbound proxy, the account's domain
        (always_use_my_proxy) or the target's domain, in that order of choice."""
        account = self.account
        sip = getattr(account, "sip", None)
        proxy = getattr(sip, "outbound_proxy", None)
        if proxy is not None:
            parameters = {"transport": str(proxy.transport)} if proxy.transport else {}
            target = SIPURI(host=str(proxy.host), port=proxy.port, parameters=parameters)
        elif getattr(sip, "always_use_my_proxy", False):
            target = SIPURI(host=account.id.domain)
        else:
            target = uri
        engine = Engine()
        settings = _settings()
        preferred = list(settings.sip.transport_list) if settings is not None else []
        transports = [t for t in preferred if t in engine.transports] or engine.transports
        try:
            return await DNSLookup().lookup_sip_proxy(target, transports)  # type: ignore[misc,no-any-return]
        except DNSLookupError as e:
            raise _Failure("local", 0, None, f"DNS lookup failed: {e}") from None

    async def _invite(self, to_header: Any, routes: list[Route], offer: SDPSession) -> None:
        """Send the INVITE on each route in turn until one leads somewhere (RFC 3263
        section 4.3: a local timeout, a transport error or a 503 tries the next)."""
        account = self.account
        timeout = _invite_timeout()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        sender = FromHeader(account.uri, getattr(account, "display_name", None))
        failure = _Failure("local", 0, None, "no route could be used")
        for route in routes:
            try:
                contact = ContactHeader(account.contact[route.transport])
            except KeyError as e:
                failure = _Failure("local", 0, None, f"no contact for {route.transport}: {e}")
                continue
            left = deadline - loop.time() if deadline is not None else None
            if left is not None and left <= 0:
                break
            invitation = Invitation()
            self._use(invitation)
            self.transport = route.transport
            try:
                invitation.send_invite(
                    to_header.uri,
                    sender,
                    to_header,
                    RouteHeader(route.get_uri()),
                    contact,
                    offer,
                    account.credentials,
                    timeout=left,
                )
            except (SIPCoreError, ValueError, TypeError) as e:
                NotificationCenter().discard_observer(self._invitation_event, sender=invitation)
                failure = _Failure("local", 0, None, f"cannot send the INVITE: {e}")
                continue
            assert self._outcome is not None
            data = await self._wait(self._outcome)
            if data is None:
                return
            failure = self._failure_of(data)
            timed_out = deadline is not None and deadline - loop.time() <= 0.05
            if (
                self._end_reason is not None
                or timed_out
                or self._provisional
                or data.code not in FAILOVER_CODES
                or (data.originator == "remote" and data.code != 503)
            ):
                break
        raise failure

    def _begin_initial(self) -> None:
        """The INVITE transaction is done: start the streams the answer kept.

        Called soon after the Invitation tells it is connected (once it has told all it
        had to), not when the connect or accept task next runs: that is later than the
        next message read, so a BYE right after the ACK would fail a session whose
        streams start at once instead of ending it."""
        if (
            self._initial is not None
            or self._started
            or self._end_reason is not None
            or self._state not in ("outgoing", "accepting")
        ):
            return
        try:
            self._start_streams()
        except _Failure as failure:
            self._fail(failure)
            return
        self._initial_started()  # the streams that started at once

    def _start_streams(self) -> None:
        invitation = self._invitation
        assert invitation is not None
        local, remote = invitation.sdp.active_local, invitation.sdp.active_remote
        if local is None or remote is None:
            raise _Failure("local", 0, None, "the offer/answer exchange failed")
        started = []
        for index, stream in enumerate(self._slots):
            if stream is None:
                continue
            if index >= len(remote.media) or remote.media[index].port == 0:
                self._slots[index] = None
                self._end_stream(stream)
                continue
            started.append((stream, self._start_stream(stream, local, remote, index)))
        if not started:
            raise _Failure("remote", 0, None, "no stream was accepted")
        self._initial = started

    def _initial_started(self) -> None:
        """A stream of the initial offer started: the session starts with the last."""
        initial = self._initial
        assert initial is not None
        if (
            self._end_reason is None
            and self._state in ("outgoing", "accepting")
            and all(f.done() and not f.cancelled() and f.exception() is None for _, f in initial)
        ):
            self._started_with(initial)

    async def _start_initial(self, invitation: Invitation) -> None:
        """Wait for the streams of the initial offer to start (the task's side of
        _begin_initial: a stream that fails or takes too long fails the session)."""
        if self._started:
            return
        if self._initial is None:
            self._start_streams()
        initial = self._initial
        assert initial is not None
        await self._wait_all(future for _, future in initial)
        if self._end_reason is not None:
            raise _Aborted
        self._started_with(initial)

    def _started_with(self, started: list[tuple[IMediaStream, asyncio.Future[None]]]) -> None:
        if self._started:
            return
        with self._lock:
            self._streams = [stream for stream, _ in started]
            self._proposed = None
            self._started = True
            hold = self._want_hold
        self._initial = None
        self.start_time = _now()
        self._set_state("connected")
        self._post("SIPSessionDidStart", streams=list(self._streams))
        if hold:
            self._hold()
        self._next_operation()

    # -- incoming ---------------------------------------------------------------------------

    def _incoming(self, invitation: Invitation, streams: list[tuple[int, IMediaStream]]) -> None:
        """Take a new INVITE (SessionManager, on the SIP thread)."""
        self._setup()
        self.direction = "incoming"
        self._offered = {stream: index for index, stream in streams}
        self._proposed = [stream for _, stream in streams]
        self._use(invitation)
        self.transport = invitation.transport
        self._set_state("incoming")
        self._watch_account()
        self._post("SIPSessionNewIncoming", streams=list(self._proposed))

    def _ring(self) -> None:
        invitation = self._invitation
        if invitation is not None and invitation.state in ("incoming", "early"):
            try:
                invitation.send_response(180)
            except SIPCoreError as e:
                log.info("%r: no ring indication: %s", self, e)

    async def _accept(self, streams: list[IMediaStream]) -> None:
        invitation = self._invitation
        if self._state != "accepting" or invitation is None:
            return
        initialized = [self._initialize(stream, "incoming") for stream in streams]
        try:
            await self._wait_all(initialized)
        except _Failure as failure:
            raise _Failure("local", 500, "Internal Server Error", failure.failure_reason) from None
        offer = invitation.sdp.proposed_remote
        if offer is None:  # the INVITE had none: we offer in the 200, the ACK answers
            self._slots = list(streams)
            sdp = self._local_sdp(for_offer=True)
        else:
            self._slots = [None] * len(offer.media)
            for stream in streams:
                self._slots[self._offered[stream]] = stream
            sdp = self._local_sdp(for_offer=False, remote=offer)
        try:
            invitation.send_response(200, sdp=sdp)
        except SIPCoreError as e:
            raise _Failure("local", 500, "Internal Server Error", f"cannot answer: {e}") from None
        assert self._outcome is not None
        await self._wait(self._outcome)
        await self._start_initial(invitation)

    def _reject(self, code: int, reason: str | None) -> None:
        invitation = self._invitation
        if invitation is None or self._state == "terminated":
            return
        try:
            invitation.send_response(code, reason)
        except SIPCoreError as e:
            log.info("%r: cannot reject: %s", self, e)

    # -- re-INVITEs from the peer --------------------------------------------------------

    def _remote_reinvite(self, sub_state: str) -> None:
        invitation = self._invitation
        assert invitation is not None
        if self._state not in ("connected", "sending_proposal"):
            self._respond(491)  # still starting (or ending): the peer tries again later
            return
        if sub_state == "received_proposal_request":
            # No offer: ours goes in the 2xx, the answer comes with the ACK.
            self._respond(200, self._local_sdp(for_offer=True))
            return
        offer = invitation.sdp.proposed_remote
        assert offer is not None
        added = []
        for index, media in enumerate(offer.media):
            stream = self._slots[index] if index < len(self._slots) else None
            if stream is None:
                if media.port != 0:
                    added.append(index)
            elif media.port != 0 and stream in self._streams:
                try:
                    acceptable = _call_stream(stream, "validate_update", offer, index)
                except _Failure:
                    acceptable = False
                if not acceptable:
                    self._respond(488)
                    return
        streams = [(i, s) for i in added if (s := _stream_for(self.account, offer, i)) is not None]
        if streams:
            if self._state == "sending_proposal":
                self._withdraw(491, "Request Pending")
            with self._lock:
                self._offered = {stream: index for index, stream in streams}
                self._proposed = [stream for _, stream in streams]
                self._set_state("received_proposal")
            self._post("SIPSessionGotProposal", originator="remote", streams=list(self._proposed))
            return
        self._respond(200, self._local_sdp(for_offer=False, remote=offer))

    def _respond(self, code: int, sdp: SDPSession | None = None, reason: str | None = None) -> bool:
        invitation = self._invitation
        try:
            invitation.send_response(code, reason, sdp=sdp)  # type: ignore[union-attr]
        except SIPCoreError as e:
            log.info("%r: cannot answer the re-INVITE with %d: %s", self, code, e)
            return False
        return True

    def _remote_cancelled(self) -> None:
        """The peer cancelled its re-INVITE before we answered it."""
        if self._state not in ("received_proposal", "accepting_proposal"):
            return
        task = self._accept_task
        if task is not None:
            task.cancel()
        with self._lock:
            proposed, self._proposed = self._proposed or [], None
            self._set_state("connected")
        for stream in proposed:
            self._end_stream(stream)
        self._post(
            "SIPSessionGotRejectProposal",
            originator="remote",
            code=487,
            reason="Request Terminated",
            streams=list(proposed),
        )
        self._next_operation()

    def _accept_proposal(self, streams: list[IMediaStream]) -> None:
        if self._state == "accepting_proposal":
            self._accept_task = self._spawn(self._accepting_proposal(streams))

    async def _accepting_proposal(self, streams: list[IMediaStream]) -> None:
        invitation = self._invitation
        assert invitation is not None
        proposed = list(self._proposed or [])
        initialized = [self._initialize(stream, "incoming") for stream in streams]
        try:
            await self._wait_all(initialized)
        except _Failure as failure:
            for stream in streams:
                self._end_stream(stream)
            self._respond(488)
            self._proposal_failed(failure.failure_reason, proposed)
            return
        offer = invitation.sdp.proposed_remote
        if offer is None:
            return
        self._slots += [None] * (len(offer.media) - len(self._slots))
        for stream in streams:
            self._slots[self._offered[stream]] = stream
            self._new.add(stream)
        if not self._respond(200, self._local_sdp(for_offer=False, remote=offer)):
            return
        await self._proposal_started(streams, proposed, "remote")

    async def _proposal_started(
        self, streams: list[IMediaStream], proposed: list[IMediaStream], originator: str
    ) -> None:
        """Wait for the streams of an accepted proposal to start, then announce them."""
        starting = [self._starting.pop(s) for s in streams if s in self._starting]
        for stream in streams:
            self._new.discard(stream)
        accepted = [s for s in streams if s not in self._rejected]
        try:
            if len(starting) != len(accepted):
                raise _Failure("local", 0, None, "the offer/answer exchange failed")
            await self._wait_all(starting)
            if self._end_reason is not None:
                raise _Aborted
        except _Failure as failure:
            for stream in accepted:
                self._end_stream(stream)
                if stream in self._slots:
                    self._slots[self._slots.index(stream)] = None
            self._proposal_failed(failure.failure_reason, proposed)
            self._queue(_Operation("remove"))  # disable their m-lines
            return
        with self._lock:
            self._streams += accepted
            self._proposed = None
            self._set_state("connected")
        self._post(
            "SIPSessionGotAcceptProposal",
            originator=originator,
            streams=list(accepted),
            proposed_streams=list(proposed),
        )
        self._post("SIPSessionDidRenegotiateStreams", action="add", streams=list(accepted))
        self._next_operation()

    def _proposal_failed(self, failure_reason: str, streams: list[IMediaStream]) -> None:
        with self._lock:
            self._proposed = None
            if self._state in ("sending_proposal", "received_proposal", "accepting_proposal"):
                self._set_state("connected")
        self._post("SIPSessionHadProposalFailure", failure_reason=failure_reason, streams=streams)
        self._next_operation()

    def _reject_proposal(
        self, code: int, reason: str | None, proposed: list[IMediaStream] | None
    ) -> None:
        self._respond(code, reason=reason)
        self._post(
            "SIPSessionGotRejectProposal",
            originator="remote",
            code=code,
            reason=reason or _default_reason(code),
            streams=list(proposed or []),
        )
        self._next_operation()

    # -- re-INVITEs of ours ------------------------------------------------------------------

    def _add_stream(self, stream: IMediaStream) -> None:
        if self._state != "sending_proposal":
            return
        self._post("SIPSessionGotProposal", originator="local", streams=[stream])
        self._queue(_Operation("add", stream, self._initialize(stream, "outgoing")))

    def _remove_stream(self, stream: IMediaStream, failure_reason: str | None) -> None:
        """Take ``stream`` (already out of self._streams) out of the session."""
        if self._state == "terminated":
            return
        try:
            stream.deactivate()
        except Exception:
            log.exception("%r.deactivate() failed", stream)
        if stream in self._slots:
            self._slots[self._slots.index(stream)] = None
        if not self._streams:
            self._end_stream(stream)
            self._post("SIPSessionDidRenegotiateStreams", action="remove", streams=[stream])
            self._hand(self._end, failure_reason or "user_request")
            return
        self._queue(_Operation("remove", stream))

    def _hold(self) -> None:
        if not any(op.kind == "hold" and op.task is None for op in self._ops):
            self._queue(_Operation("hold"))

    def _cancel_proposal(self) -> None:
        if self._state != "sending_proposal":
            return
        operation = next((op for op in self._ops if op.kind == "add"), None)
        invitation = self._invitation
        pending = self._reinvite_result
        if (
            operation is not None
            and operation is self._ops[0]
            and pending is not None
            and not pending.done()
            and invitation is not None
        ):
            try:
                invitation.cancel_reinvite()  # the peer answers 487
                return
            except SIPCoreError:
                pass
        self._withdraw(487, "Request Terminated")

    def _withdraw(self, code: int, reason: str) -> None:
        """Give up our add_stream proposal before its re-INVITE is out."""
        operation = next((op for op in self._ops if op.kind == "add"), None)
        if operation is None or operation.stream is None:
            return
        operation.withdrawn = True
        if operation.task is not None:
            operation.task.cancel()
        stream = operation.stream
        self._end_stream(stream)
        with self._lock:
            self._proposed = None
            self._set_state("connected")
        self._post(
            "SIPSessionGotRejectProposal",
            originator="local",
            code=code,
            reason=reason,
            streams=[stream],
        )

    def _queue(self, operation: _Operation) -> None:
        self._ops.append(operation)
        self._next_operation()

    def _next_operation(self) -> None:
        if self._runner is None and self._ops and self._state != "terminated":
            self._runner = self._spawn(self._run_operations())

    async def _run_operations(self) -> None:
        try:
            while self._ops:
                operation = self._ops[0]
                if not operation.withdrawn:
                    operation.task = self._spawn(self._operation(operation))
                    await self._wait(asyncio.wait((operation.task,)))
                if self._ops and self._ops[0] is operation:
                    self._ops.popleft()
        finally:
            self._runner = None

    async def _operation(self, operation: _Operation) -> None:
        if operation.kind == "add":
            await self._run_add(operation)
        elif operation.kind == "remove":
            await self._run_remove(operation)
        else:
            await self._run_hold()

    async def _until_idle(self) -> None:
        """Until the dialog is free for a re-INVITE of ours."""
        while True:
            invitation = self._invitation
            if (
                self._state in ("connected", "sending_proposal")
                and invitation is not None
                and invitation.state == "connected"
                and invitation.sub_state == "normal"
            ):
                return
            await self._changed()

    async def _reinvite(self, build: Callable[[], SDPSession]) -> tuple[int, str]:
        """Send a re-INVITE with the offer ``build()`` makes once the dialog is free; a
        491 is retried after the back-off with a new offer."""
        while True:
            await self._until_idle()
            invitation = self._invitation
            assert invitation is not None
            offer = build()
            future = self._reinvite_result = asyncio.get_running_loop().create_future()
            self._glared = False
            invitation.send_reinvite(sdp=offer)
            code, reason = await self._wait(future)
            if code != 491:
                return code, reason
            low, high = self.glare_backoff[
                "outgoing" if self.direction == "outgoing" else "incoming"
            ]
            await self._wait(asyncio.sleep(random.uniform(low, high)))

    def _reinvite_finished(self, code: int, reason: str) -> None:
        """Our re-INVITE got its final answer: keep the m-lines consistent with what the
        negotiator now holds and, for add_stream, tell of a refusal at once (before
        anything the peer sends next), then wake the operation."""
        operation = self._ops[0] if self._ops else None
        if operation is not None and operation.kind == "add":
            stream = operation.stream
            assert stream is not None
            if stream in self._new:  # refused, or no answer came: its line is not there
                self._new.discard(stream)
                if code >= 300 and self._slots and self._slots[-1] is stream:
                    self._slots.pop()
                elif stream in self._slots:
                    self._slots[self._slots.index(stream)] = None
            if code != 491 and (code >= 300 or stream in self._rejected):  # 491: sent again
                self._rejected.discard(stream)
                operation.withdrawn = True
                self._end_stream(stream)
                with self._lock:
                    self._proposed = None
                    self._set_state("connected")
                self._post(
                    "SIPSessionGotRejectProposal",
                    originator="local",
                    code=code,
                    reason=reason,
                    streams=[stream],
                )
        future = self._reinvite_result
        if future is not None and not future.done():
            future.set_result((code, reason))

    async def _run_add(self, operation: _Operation) -> None:
        stream = operation.stream
        assert stream is not None
        try:
            assert operation.initialized is not None
            await self._wait_all([operation.initialized])
        except _Failure as failure:
            self._end_stream(stream)
            self._proposal_failed(failure.failure_reason, [stream])
            return

        def offer() -> SDPSession:
            if stream not in self._slots:
                self._slots.append(stream)
            self._new.add(stream)
            return self._local_sdp(for_offer=True)

        await self._reinvite(offer)
        if not operation.withdrawn:  # else refused: _reinvite_finished told
            await self._proposal_started([stream], [stream], "local")

    async def _run_remove(self, operation: _Operation) -> None:
        await self._reinvite(lambda: self._local_sdp(for_offer=True))
        stream = operation.stream
        if stream is not None:
            self._end_stream(stream)
            self._post("SIPSessionDidRenegotiateStreams", action="remove", streams=[stream])

    async def _run_hold(self) -> None:
        await self._until_idle()
        hold = self._want_hold
        changing = [
            s for s in self._streams if s.hold_supported and bool(s.on_hold_by_local) != hold
        ]
        if not changing:
            return
        for stream in changing:
            try:
                _call_stream(stream, "hold" if hold else "unhold")
            except _Failure:
                pass
        await self._reinvite(lambda: self._local_sdp(for_offer=True))
        on_hold, partial = _hold_fields(self._streams, "on_hold_by_local")
        self._post(
            "SIPSessionDidChangeHoldState", originator="local", on_hold=on_hold, partial=partial
        )

    # -- the end ------------------------------------------------------------------------------

    def _watch_account(self) -> None:
        NotificationCenter().add_observer(
            self._account_event, name="SIPAccountWillDeactivate", sender=self.account
        )

    def _account_event(self, notification: Notification) -> None:
        self._hand(self._end, "account deactivated")

    def _end(self, reason: str) -> None:
        if self._state in (None, "terminated") or self._end_reason is not None:
            return
        self._end_reason = reason
        invitation = self._invitation
        alive = invitation is not None and invitation.state not in (None, "disconnected")
        if not self._started:
            self._set_state("terminating")
            if alive:
                assert invitation is not None
                invitation.end(timeout=self.end_timeout)
            else:
                self._fail(_Failure("local", 487, "Request Terminated", reason))
            return
        self._abandon_proposal()
        self._set_state("terminating")
        self._post("SIPSessionWillEnd")
        for stream in self._streams:
            try:
                stream.deactivate()
            except Exception:
                log.exception("%r.deactivate() failed", stream)
        if alive:
            assert invitation is not None
            invitation.end(timeout=self.end_timeout)
        else:
            self._terminate()
            self._post("SIPSessionDidEnd", originator="local", end_reason=reason)

    def _abandon_proposal(self) -> None:
        """The session ends with a proposal pending: it failed."""
        with self._lock:
            proposed, self._proposed = self._proposed, None
        if proposed:
            self._post(
                "SIPSessionHadProposalFailure", failure_reason="the session ended", streams=proposed
            )

    def _ended_by(self, data: NotificationData) -> None:
        """The dialog of a started session ended."""
        originator = data.originator
        if originator == "local" and self._end_reason is not None:
            reason = self._end_reason
        else:
            reason = _reason_text(data.disconnect_reason)
        if self._state != "terminating":
            self._abandon_proposal()
            self._set_state("terminating")
            self._post("SIPSessionWillEnd")
            for stream in self._streams:
                try:
                    stream.deactivate()
                except Exception:
                    log.exception("%r.deactivate() failed", stream)
        self._terminate()
        self._post("SIPSessionDidEnd", originator=originator, end_reason=reason)

    def _fail(self, failure: _Failure) -> None:
        """The session failed before it started: end the dialog, tell why (a started
        session ends instead)."""
        if self._state == "terminated":
            return
        if self._started:
            self._end(failure.failure_reason)
            return
        self._terminate()  # first: what ending the dialog posts is not ours to handle
        invitation = self._invitation
        if invitation is not None and invitation.state not in (
            None,
            "disconnecting",
            "disconnected",
        ):
            try:
                if invitation.direction == "incoming" and invitation.state in ("incoming", "early"):
                    code = failure.code if failure.code >= 300 else 500
                    invitation.send_response(code, failure.reason if failure.code >= 300 else None)
                else:
                    invitation.end(timeout=self.end_timeout)
            except SIPCoreError as e:
                log.info("%r: cannot end the dialog: %s", self, e)
        self._post(
            "SIPSessionDidFail",
            originator=failure.originator,
            code=failure.code,
            reason=failure.reason,
            failure_reason=failure.failure_reason,
        )

    def _terminate(self) -> None:
        """Release everything: streams ended, tasks stopped, no longer active."""
        self._setup()
        with self._lock:
            self._proposed = None
        assert self._abort_future is not None
        if not self._abort_future.done():
            self._abort_future.set_result(None)
        for stream in list(self._initialized):
            self._end_stream(stream)
        for stream in self._watched:
            NotificationCenter().discard_observer(self._stream_event, sender=stream)
        self._watched.clear()
        for future in self._pending.values():
            if not future.done():
                future.cancel()
        self._pending.clear()
        self._ops.clear()
        NotificationCenter().discard_observer(
            self._account_event, name="SIPAccountWillDeactivate", sender=self.account
        )
        self.stop_time = _now()
        self._set_state("terminated")
        if self._terminated_future is not None and not self._terminated_future.done():
            self._terminated_future.set_result(None)


# -- helpers ------------------------------------------------------------------------------------


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _first(future: asyncio.Future[Any], other: asyncio.Future[Any]) -> None:
    """Until ``future`` or ``other`` is done: asyncio.wait for two, without its sets."""
    if future.done() or other.done():
        return
    waiter = asyncio.get_running_loop().create_future()

    def wake(_: asyncio.Future[Any]) -> None:
        if not waiter.done():
            waiter.set_result(None)

    future.add_done_callback(wake)
    other.add_done_callback(wake)
    try:
        await waiter
    finally:
        future.remove_done_callback(wake)
        other.remove_done_callback(wake)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _check_reason(reason: Any) -> None:
    if reason is not None and (not isinstance(reason, str) or "\r" in reason or "\n" in reason):
        raise ValueError(f"reason must be a one-line str or None, not {reason!r}")


def _default_reason(code: int) -> str:
    return REASON_PHRASES.get(code) or REASON_PHRASES.get(code - code % 100, "")


def _settings() -> SIPSimpleSettings | None:
    """The global settings, None when the configuration is not started."""
    if not ConfigurationManager().started:
        return None
    return SIPSimpleSettings()


def _invite_timeout() -> float | None:
    """SIPSimpleSettings.sip.invite_timeout (None or 0: no limit); 90 s without settings."""
    settings = _settings()
    if settings is None:
        return 90.0
    timeout = settings.sip.invite_timeout
    return float(timeout) if timeout else None


def _local_address() -> str:
    """The address our SDP names: the Engine's, else the configured local_ip."""
    address = Engine().ip_address
    if address and not _unspecified(str(address)):
        return str(address)
    settings = _settings()
    return str(settings.local_ip) if settings is not None else "127.0.0.1"


@functools.lru_cache(maxsize=16)
def _unspecified(address: str) -> bool:
    return ipaddress.ip_address(address).is_unspecified
