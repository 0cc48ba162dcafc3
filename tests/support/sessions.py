"""Sessions for tests: a media stream written on IMediaStream as an application would,
and functions that drive sessions in a RemoteSDK child.

:class:`DatagramStream` (type "datagram") is a real, small stream: an ``m=application
<port> udp x-sipsimple-datagram`` line, a UDP socket on 127.0.0.1 opened by
initialize(), and datagrams sent to the port the peer's SDP gives once started.
It honours hold (its offer says sendonly; it sends nothing while on hold) and learns
from the peer's SDP when the peer holds it. ``fail`` makes it fail at "initialize",
"start" or "update" (validate_update refuses), to drive the failure paths; the
streams a child creates for incoming offers take the failures set with
:func:`set_stream_failures`.

In a child (``remote.call("tests.support.sessions:start_endpoint", ...)``) the
functions start the SDK's start order by hand (the child's SIP thread is taken
already): configuration, Engine, AccountManager, SessionManager. Sessions are kept
by name: outgoing ones under the name the test gives, incoming ones as "in1",
"in2"... in order of arrival. ``answer_mode`` makes the child answer new sessions
by itself ("ring", "accept", "reject:486", "ring+accept"...).
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.support.application import loopback_configuration

from sipsimple.account import AccountManager
from sipsimple.application import engine_options
from sipsimple.configuration import ConfigurationManager
from sipsimple.configuration.backend.memory import MemoryBackend
from sipsimple.configuration.settings import SIPSimpleSettings
from sipsimple.core import SIPURI, Engine, SDPAttribute, SDPMediaStream, ToHeader
from sipsimple.core.sdp import effective_direction
from sipsimple.notification import Any as AnySender
from sipsimple.notification import Notification, NotificationCenter, NotificationData
from sipsimple.session import Session, SessionManager
from sipsimple.streams import IMediaStream, MediaStreamRegistrar
from sipsimple.util import Route

__all__ = [
    "DatagramStream",
    "SessionLog",
    "act",
    "answer_mode",
    "connect",
    "latest_incoming",
    "set_stream_failures",
    "start_endpoint",
    "state",
    "stop_endpoint",
]

FORMAT = "x-sipsimple-datagram"
_failures: set[str] = set()


def set_stream_failures(*failures: str) -> None:
    """Make the DatagramStreams created for incoming offers fail at these steps."""
    _failures.clear()
    _failures.update(failures)


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, stream: DatagramStream) -> None:
        self.stream = stream

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.stream.received.append(data)


class DatagramStream(IMediaStream, metaclass=MediaStreamRegistrar):
    """A UDP datagram stream; see the module docstring."""

    type = "datagram"
    priority = 1
    hold_supported = True

    def __init__(self, account: Any = None, *, fail: set[str] | None = None) -> None:
        self.account = account
        self.fail = set(fail or ())
        self.session: Any = None
        self.direction: str | None = None
        self.on_hold_by_local = False
        self.on_hold_by_remote = False
        self.port = 0
        self.remote: tuple[str, int] | None = None
        self.received: list[bytes] = []
        self.calls: list[str] = []
        self.deactivated = False
        self._transport: asyncio.DatagramTransport | None = None
        self._ended = False

    def __repr__(self) -> str:
        return f"<DatagramStream :{self.port}>"

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its repr: how a RemoteSDK child's notifications carry streams."""
        return (str, (repr(self),))

    def _post(self, name: str, **data: Any) -> None:
        NotificationCenter().post_notification(name, sender=self, data=NotificationData(**data))

    @classmethod
    def new_from_sdp(
        cls, account: Any, remote_sdp: Any, stream_index: int
    ) -> DatagramStream | None:
        media = remote_sdp.media[stream_index]
        if media.media != "application" or media.transport.lower() != "udp":
            return None
        if FORMAT not in media.formats:
            return None
        return cls(account, fail=_failures)

    def get_local_media(self, for_offer: bool) -> SDPMediaStream:
        direction = "sendonly" if self.on_hold_by_local else "sendrecv"
        return SDPMediaStream(
            "application", self.port, "udp", formats=[FORMAT], attributes=[SDPAttribute(direction)]
        )

    def initialize(self, session: Any, direction: str) -> None:
        self.calls.append("initialize")
        self.session = session
        self.direction = direction
        asyncio.get_running_loop().create_task(self._open())

    async def _open(self) -> None:
        if "initialize" in self.fail:
            self._post("MediaStreamDidFail", reason="failing at initialize, as told")
            return
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Socket(self), local_addr=("127.0.0.1", 0)
        )
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        self._post("MediaStreamDidInitialize")

    def start(self, local_sdp: Any, remote_sdp: Any, stream_index: int) -> None:
        self.calls.append("start")
        if "start" in self.fail:
            self._post("MediaStreamDidFail", reason="failing at start, as told")
            return
        self._learn(remote_sdp, stream_index)
        self.send(b"hello")
        self._post("MediaStreamDidStart")

    def _learn(self, remote_sdp: Any, index: int) -> None:
        media = remote_sdp.media[index]
        connection = media.connection or remote_sdp.connection
        self.remote = (connection.address, media.port)
        direction = effective_direction(remote_sdp, index)
        self.on_hold_by_remote = direction in ("sendonly", "inactive")

    def validate_update(self, remote_sdp: Any, stream_index: int) -> bool:
        self.calls.append("validate_update")
        media = remote_sdp.media[stream_index]
        return "update" not in self.fail and media.media == "application"

    def update(self, local_sdp: Any, remote_sdp: Any, stream_index: int) -> None:
        self.calls.append("update")
        self._learn(remote_sdp, stream_index)

    def hold(self) -> None:
        self.calls.append("hold")
        self.on_hold_by_local = True

    def unhold(self) -> None:
        self.calls.append("unhold")
        self.on_hold_by_local = False

    def deactivate(self) -> None:
        self.calls.append("deactivate")
        self.deactivated = True

    def end(self) -> None:
        self.calls.append("end")
        if self._ended:
            return
        self._ended = True
        self._post("MediaStreamWillEnd")
        if self._transport is not None:
            self._transport.close()
        self._post("MediaStreamDidEnd")

    def send(self, data: bytes) -> bool:
        """Send a datagram to the peer unless on hold or not started."""
        if self._transport is None or self.remote is None or self.on_hold:
            return False
        self._transport.sendto(data, self.remote)
        return True

    def info(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "remote": self.remote,
            "received": list(self.received),
            "calls": list(self.calls),
            "on_hold_by_local": self.on_hold_by_local,
            "on_hold_by_remote": self.on_hold_by_remote,
            "deactivated": self.deactivated,
        }


class SessionLog:
    """Everything one sender (by default: any) posts, in order, for assertions on
    sequences in the test's own process; ``await log.wait(name)`` returns the next one
    not taken yet."""

    def __init__(self, sender: Any = AnySender) -> None:
        self.sender = sender
        self.notifications: list[Notification] = []
        self._taken = 0
        self._event = asyncio.Event()
        NotificationCenter().add_observer(self._add, sender=sender)

    def _add(self, notification: Notification) -> None:
        self.notifications.append(notification)
        self._event.set()

    def close(self) -> None:
        NotificationCenter().discard_observer(self._add, sender=self.sender)

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.notifications]

    async def wait(self, name: str, timeout: float = 5.0) -> Notification:
        return await self.wait_any(name, timeout=timeout)

    async def wait_any(self, *names: str, timeout: float = 5.0) -> Notification:
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for index in range(self._taken, len(self.notifications)):
                        if self.notifications[index].name in names:
                            self._taken = index + 1
                            return self.notifications[index]
                    self._event.clear()
                    await self._event.wait()
        except TimeoutError:
            raise TimeoutError(f"no {names} within {timeout} s; got {self.names}") from None


# -- driving sessions in a child ----------------------------------------------------------

_sessions: dict[str, Session] = {}
_answer_mode: str | None = None
_proposal_mode: str | None = None


def _incoming(notification: Notification) -> None:
    session = notification.sender
    _sessions[f"in{sum(name.startswith('in') for name in _sessions) + 1}"] = session
    mode = _answer_mode
    if mode is None:
        return
    for step in mode.split("+"):
        if step == "ring":
            session.send_ring_indication()
        elif step == "accept":
            session.accept(session.proposed_streams)
        elif step.startswith("reject:"):
            session.reject(int(step.split(":")[1]))


def _proposal(notification: Notification) -> None:
    mode = _proposal_mode
    if mode is None or notification.data.originator != "remote":
        return
    session = notification.sender
    if mode == "accept":
        session.accept_proposal(session.proposed_streams)
    elif mode.startswith("reject:"):
        session.reject_proposal(int(mode.split(":")[1]))


async def start_endpoint(
    accounts: dict[str, dict[str, Any]], settings: dict[str, Any] | None = None
) -> dict[str, int | None]:
    """The SDK's start order by hand, on 127.0.0.1; the Engine's ports."""
    configuration = loopback_configuration(accounts=accounts, settings=settings)
    ConfigurationManager().start(MemoryBackend(configuration))
    await Engine().start(**engine_options(SIPSimpleSettings()))
    await AccountManager().start()
    SessionManager().start()
    NotificationCenter().add_observer(_incoming, name="SIPSessionNewIncoming")
    NotificationCenter().add_observer(_proposal, name="SIPSessionGotProposal")
    engine = Engine()
    return {"udp": engine.udp_port, "tcp": engine.tcp_port}


async def stop_endpoint() -> None:
    NotificationCenter().discard_observer(_incoming, name="SIPSessionNewIncoming")
    NotificationCenter().discard_observer(_proposal, name="SIPSessionGotProposal")
    await SessionManager().stop()
    await AccountManager().stop()
    await Engine().stop()
    ConfigurationManager().stop()


def answer_mode(mode: str | None, proposals: str | None = None) -> None:
    """How the child answers new sessions ("ring", "accept", "reject:486", joined with
    "+") and proposals of the peer ("accept", "reject:488"); None: the test does."""
    global _answer_mode, _proposal_mode
    _answer_mode = mode
    _proposal_mode = proposals


def connect(
    name: str,
    account_id: str,
    target: str,
    route: tuple[str, int, str] | None,
    streams: int = 1,
) -> None:
    """Make session ``name`` from ``account_id`` to ``target`` (a SIP URI) with
    ``streams`` DatagramStreams, through ``route`` (address, port, transport)."""
    account = AccountManager().get_account(account_id)
    session = Session(account)
    _sessions[name] = session
    routes = [Route(*route)] if route is not None else None
    to = ToHeader(SIPURI.parse(target))
    session.connect(to, routes, [DatagramStream(account) for _ in range(streams)])


def act(name: str, method: str, *args: Any) -> Any:
    """Call a Session method; streams are given (and returned) by their index in
    ``session.streams`` or ``proposed_streams``; "new" in add_stream makes one."""
    session = _sessions[name]
    if method in ("accept", "accept_proposal"):
        proposed = session.proposed_streams or []
        indexes = args[0] if args else range(len(proposed))
        return getattr(session, method)([proposed[i] for i in indexes])
    if method == "add_stream":
        return session.add_stream(DatagramStream(session.account, fail=set(args)))
    if method == "remove_stream":
        return session.remove_stream(session.streams[args[0]])
    return getattr(session, method)(*args)


def state(name: str) -> dict[str, Any]:
    session = _sessions[name]
    return {
        "state": session.state,
        "direction": session.direction,
        "transport": session.transport,
        "on_hold": session.on_hold,
        "streams": [stream.info() for stream in session.streams],
        "proposed": len(session.proposed_streams or []),
        "remote_user_agent": session.remote_user_agent,
        "local_identity": str(session.local_identity) if session.local_identity else None,
        "remote_identity": str(session.remote_identity) if session.remote_identity else None,
        "start_time": session.start_time is not None,
        "stop_time": session.stop_time is not None,
        "manager": session in SessionManager().sessions,
    }


def send(name: str, index: int, data: bytes) -> bool:
    return _sessions[name].streams[index].send(data)


def active_sessions() -> int:
    return len(SessionManager().sessions)


def names() -> list[str]:
    return list(_sessions)


def latest_incoming() -> str:
    """The name of the newest incoming session."""
    return [name for name in _sessions if name.startswith("in")][-1]


def set_account(account_id: str, **changes: Any) -> None:
    """Change and save settings of an account (dotted names: ``sip__outbound_proxy``)."""
    account = AccountManager().get_account(account_id)
    for dotted, value in changes.items():
        target = account
        *groups, last = dotted.split("__")
        for group in groups:
            target = getattr(target, group)
        setattr(target, last, value)
    account.save()
