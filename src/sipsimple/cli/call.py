"""``sipsimple call URI`` and ``sipsimple listen``: sessions with configured accounts.

Both run a whole SIPApplication on the configuration in ``--config-dir`` (default
``~/.sipsimple``; see ``sipsimple settings``) and print a timeline of the session:
ringing, acceptance, each stream (codec, SRTP, ICE of the audio; chat messages; file
transfers), its end and why, and the audio's RTCP figures. Audio goes through the
sound devices the settings name (a silent dummy device when there is no sound card).

``call`` places one session with the default account (or ``--account``): audio
unless ``--no-audio``, a chat with ``--chat`` (each line read from stdin is sent,
each message received printed), a file transfer with ``--file PATH``. It hangs up on
Ctrl-C (or SIGTERM), after ``--duration`` seconds, or, without ``--duration``, when
stdin ends (once the lines read are delivered and the file is sent).

``listen`` answers the sessions for its accounts (ringing first for ``--ring``
seconds) with every stream offered, one at a time (a second caller gets 486), or
rejects them all with ``--reject CODE``. Lines read from stdin go to the chat of the
current session; received files are saved in ``file_transfer.directory``. It runs
until Ctrl-C or SIGTERM, or until ``--count`` sessions have come and gone. Accounts
that register (``registration.enabled``) are reported when they do.

Exit status: 0 when the call took place (and the file, if any, was sent), 1 when it
failed (a SIP error such as 486 or 404, no answer in time, a stream that failed), 2
for problems before any call (no usable account, a bad URI or configuration).
"""

from __future__ import annotations

import argparse
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from sipsimple.account import Account, AccountManager, BonjourAccount
from sipsimple.application import SIPApplication
from sipsimple.cli.settings import add_config_dir_argument
from sipsimple.configuration import ConfigurationError
from sipsimple.configuration.settings import SIPSimpleSettings
from sipsimple.core import SIPURI, Engine, SIPCoreError, ToHeader
from sipsimple.notification import Notification, NotificationCenter
from sipsimple.session import Session
from sipsimple.storage import FileStorage
from sipsimple.streams import AudioStream, IMediaStream
from sipsimple.streams.msrp import ChatStream, FileSelector, FileTransferStream

__all__ = ["add_call_parsers", "describe"]

EXIT_FAILED = 1
EXIT_USAGE = 2
_START_STOP_TIMEOUT = 20.0  # seconds for the application to start, or to stop
_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_APPLICATION = ("SIPApplicationDidStart", "SIPApplicationDidEnd")
_REGISTRATION = ("SIPAccountRegistrationDidSucceed", "SIPAccountRegistrationDidFail")
_SESSION = (
    "SIPSessionNewIncoming",
    "SIPSessionGotProvisionalResponse",
    "SIPSessionDidStart",
    "SIPSessionDidFail",
    "SIPSessionDidEnd",
    "SIPSessionDidChangeHoldState",
    "SIPSessionGotProposal",
    "SIPSessionDidRenegotiateStreams",
)
_STREAMS = (
    "ChatStreamGotMessage",
    "ChatStreamDidDeliverMessage",
    "ChatStreamDidNotDeliverMessage",
    "FileTransferStreamDidFinish",
)
_OBSERVED = (
    *_APPLICATION,
    *_REGISTRATION,
    *_SESSION,
    *_STREAMS,
    "MediaStreamWillEnd",
    "MediaStreamDidEnd",
)


def describe(stream: AudioStream) -> list[str]:
    """The negotiated media and the RTCP figures of an audio stream, as lines of text."""
    lines = [
        f"{stream!r}: codec {stream.codec} at {stream.sample_rate} Hz, "
        f"SRTP {stream.srtp_cipher if stream.srtp_active else 'off'}, "
        f"ICE {'on' if stream.ice_active else 'off'}, RTP {stream.local_rtp_address}:"
        f"{stream.local_rtp_port} <-> {stream.remote_rtp_address_received}:"
        f"{stream.remote_rtp_port_received}"
    ]
    statistics = stream.statistics
    if statistics is not None:
        rx, tx, rtt = statistics.rx, statistics.tx, statistics.rtt_ms
        lines.append(
            f"RTCP: received {rx.packets} packets, {rx.packets_lost} lost, jitter "
            f"{rx.jitter_ms:.1f} ms; sent {tx.packets}, the peer reports {tx.packets_lost} "
            f"lost, jitter {tx.jitter_ms:.1f} ms; "
            + (f"round trip {rtt.mean:.2f} ms" if rtt.count else "no round trip measured yet")
        )
    return lines


def _negotiated(stream: AudioStream) -> str:
    return (
        f"audio: codec {stream.codec} at {stream.sample_rate} Hz, "
        f"SRTP {stream.srtp_cipher if stream.srtp_active else 'off'}, "
        f"ICE {'on' if stream.ice_active else 'off'}, "
        f"to {stream.remote_rtp_address_sdp}:{stream.remote_rtp_port_sdp}"
    )


def _stream_names(streams: list[IMediaStream] | None) -> str:
    return ", ".join(stream.type for stream in streams or []) or "no streams"


class _Program:
    """What call and listen share: the application on the configuration directory, a
    timeline on stdout, stdin read by a thread, and one queue on which the SIP thread's
    notifications and stdin's lines reach the main thread, which does all the work."""

    name = ""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.start = time.monotonic()
        # SimpleQueue: its put() is reentrant, so the signal handlers may use it too
        self.events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self.app = SIPApplication()
        self.timers: list[tuple[float, Callable[[], None]]] = []
        self.ending: set[Any] = set()  # streams between MediaStreamWillEnd and DidEnd
        self.stopping = False

    # -- output

    def say(self, text: str) -> None:
        print(f"{time.monotonic() - self.start:8.3f}s  {text}", flush=True)

    def error(self, text: str) -> None:
        print(f"sipsimple {self.name}: {text}", file=sys.stderr, flush=True)

    # -- events

    def _notified(self, notification: Notification) -> None:
        """On the SIP thread: what must be read now (the audio figures before the
        stream goes) is read here; the rest goes to the main thread."""
        if notification.name == "MediaStreamDidEnd":
            self.ending.discard(notification.sender)
            self.events.put(("stream ended", notification.sender))
            return
        if notification.name == "MediaStreamWillEnd":
            self.ending.add(notification.sender)
            if isinstance(notification.sender, AudioStream):
                self.events.put(("say", describe(notification.sender)))
            return
        if notification.name == "SIPSessionDidStart":
            for stream in notification.data.streams:
                if isinstance(stream, AudioStream):
                    self.events.put(("say", [_negotiated(stream)]))
        self.events.put(("notification", notification))

    def _interrupted(self, signum: int, frame: Any) -> None:
        """Ctrl-C or SIGTERM: the main thread hangs up (a second time: leaves)."""
        self.events.put(("stop", signum))

    def _read_stdin(self) -> None:
        for line in sys.stdin:
            self.events.put(("line", line.rstrip("\r\n")))
        self.events.put(("eof", None))

    def later(self, delay: float, function: Callable[[], None]) -> None:
        self.timers.append((time.monotonic() + delay, function))

    def next_event(self) -> tuple[str, Any] | None:
        """The next event, or None after a short while (timers run meanwhile)."""
        now = time.monotonic()
        for due in [timer for timer in self.timers if timer[0] <= now]:
            self.timers.remove(due)
            due[1]()
        try:
            return self.events.get(timeout=0.1)
        except queue.Empty:
            return None

    # -- life cycle

    def run(self) -> int:
        center = NotificationCenter()
        for name in _OBSERVED:
            center.add_observer(self._notified, name=name)
        stop = self._interrupted
        previous = {signum: signal.signal(signum, stop) for signum in _SIGNALS}
        try:
            try:
                storage = FileStorage(self.args.config_dir)
                self.app.start(storage)
            except (OSError, ConfigurationError) as error:
                self.error(f"cannot load the configuration: {error}")
                return EXIT_USAGE
            try:
                if not self._wait_for_start():
                    return EXIT_USAGE
                threading.Thread(target=self._read_stdin, daemon=True).start()
                return self.work()
            finally:
                self._stop_application()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            for name in _OBSERVED:
                center.discard_observer(self._notified, name=name)

    def _wait_for_start(self) -> bool:
        deadline = time.monotonic() + _START_STOP_TIMEOUT
        while time.monotonic() < deadline:
            event = self.next_event()
            if event is not None and event[0] == "stop":
                self.error("interrupted while starting")
                return False
            if event is None or event[0] != "notification":
                continue
            if event[1].name == "SIPApplicationDidStart":
                return True
            if event[1].name == "SIPApplicationDidEnd":
                break
        self.error("the SIP application did not start (see the log above)")
        return False

    def _stop_application(self) -> None:
        """Let the streams that are ending end (a received file is saved then), then
        stop the application."""
        streams_deadline = time.monotonic() + _START_STOP_TIMEOUT / 2
        deadline = time.monotonic() + _START_STOP_TIMEOUT
        stopped = False
        while time.monotonic() < deadline:
            if not stopped and (not self.ending or time.monotonic() > streams_deadline):
                self.app.stop()
                stopped = True
            event = self.next_event()
            if event is None:
                continue
            kind, value = event
            if kind == "say":
                for text in value:
                    self.say(text)
            elif kind == "notification" and value.name in _STREAMS:
                self.show(value)  # a file written to disk after the session ended
            elif kind == "notification" and value.name == "SIPApplicationDidEnd":
                return
        self.error("the SIP application did not stop in time")

    def work(self) -> int:
        raise NotImplementedError

    def account(self) -> Account | BonjourAccount | None:
        """The account to use: --account, else the default (a SIP account, not the
        Bonjour one unless named); None after saying why there is none."""
        manager = AccountManager()
        if self.args.account is not None:
            try:
                account = manager.get_account(self.args.account)
            except KeyError:
                self.error(f"no account {self.args.account} (see: sipsimple settings account list)")
                return None
            if not account.enabled:
                self.error(f"the account {account.id} is disabled")
                return None
            return account
        account = manager.default_account
        if account is None or isinstance(account, BonjourAccount):
            self.error(
                "no SIP account configured: add one with"
                " `sipsimple settings account add user@domain --password ...`"
                " (or choose one with --account)"
            )
            return None
        return account

    # -- what both print

    def show(self, notification: Notification) -> None:
        """Print a notification of the session, its streams or the accounts."""
        name, data = notification.name, notification.data
        if name == "SIPAccountRegistrationDidSucceed":
            account = notification.sender.id
            self.say(f"registered {account} for {data.expires} s at {data.registrar}")
        elif name == "SIPAccountRegistrationDidFail":
            self.say(
                f"registration of {notification.sender.id} failed: {data.error}"
                f" (next try in {data.timeout:.0f} s)"
            )
        elif name == "SIPSessionGotProvisionalResponse":
            self.say("ringing" if data.code == 180 else f"{data.code} {data.reason}")
        elif name == "SIPSessionDidStart":
            self.say(f"session started with {_stream_names(data.streams)}")
        elif name == "SIPSessionDidChangeHoldState":
            state = "on hold" if data.on_hold else "off hold"
            self.say(f"{state} ({'by us' if data.originator == 'local' else 'by the peer'})")
        elif name == "SIPSessionGotProposal" and data.originator == "remote":
            self.say(f"the peer proposes {_stream_names(data.streams)}")
        elif name == "SIPSessionDidRenegotiateStreams":
            self.say(
                f"streams {'added' if data.action == 'add' else 'removed'}: "
                f"{_stream_names(data.streams)}"
            )
        elif name == "ChatStreamGotMessage":
            message = data.message
            sender = message.sender or "the peer"
            body = message.body if isinstance(message.body, str) else f"<{len(message.body)} bytes>"
            self.say(f"chat from {sender}: {body}")
        elif name == "ChatStreamDidNotDeliverMessage":
            self.say(f"chat message not delivered: {data.code} {data.reason}")
        elif name == "FileTransferStreamDidFinish":
            stream = notification.sender
            if data.error:
                self.say(f"file transfer failed: {data.reason}")
            elif stream.outgoing:
                self.say(f"file sent: {data.filename}")
            else:
                size = os.path.getsize(data.filename)
                self.say(f"file received: {data.filename} ({size} bytes)")

    @staticmethod
    def ended(notification: Notification) -> str:
        """How a session that started ended, or why one that did not failed."""
        data = notification.data
        if notification.name == "SIPSessionDidEnd":
            who = "us" if data.originator == "local" else "the peer"
            return f"session ended by {who} ({data.end_reason})"
        answer = f"{data.code} {data.reason}" if data.code else data.failure_reason
        return f"session failed: {answer} ({data.originator}, {data.failure_reason})"


class Caller(_Program):
    name = "call"

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.session: Session | None = None
        self.chat: ChatStream | None = None
        self.transfer: FileTransferStream | None = None
        self.pending_lines: list[str] = []
        self.undelivered: set[str] = set()
        self.eof = False
        self.started = False
        self.file_done = args.file is None
        self.status = 0
        self.failure: str | None = None

    def target(self, account: Account | BonjourAccount) -> SIPURI | None:
        text = self.args.uri
        if "@" not in text and not text.startswith(("sip:", "sips:")):
            text = f"{text}@{account.id.domain}"
        if not text.startswith(("sip:", "sips:")):
            text = f"sip:{text}"
        try:
            return SIPURI.parse(text)
        except SIPCoreError as error:
            self.error(f"bad URI {self.args.uri!r}: {error}")
            return None

    def streams(self, account: Account | BonjourAccount) -> list[IMediaStream] | None:
        streams: list[IMediaStream] = []
        if not self.args.no_audio:
            streams.append(AudioStream(account))
        if self.args.chat:
            self.chat = ChatStream(account)
            streams.append(self.chat)
        if self.args.file is not None:
            try:
                selector = FileSelector.for_file(self.args.file)
            except OSError as error:
                self.error(f"cannot send {self.args.file}: {error.strerror}")
                return None
            self.transfer = FileTransferStream(account, selector)
            streams.append(self.transfer)
        if not streams:
            self.error("nothing to offer: --no-audio needs --chat or --file")
            return None
        return streams

    def work(self) -> int:
        account = self.account()
        if account is None:
            return EXIT_USAGE
        uri = self.target(account)
        streams = self.streams(account) if uri is not None else None
        if uri is None or streams is None:
            return EXIT_USAGE
        self.session = Session(account)
        self.say(f"calling {uri} as {account.id} with {_stream_names(streams)}")
        self.session.connect(ToHeader(uri), None, streams)
        if self.args.timeout:
            self.later(self.args.timeout, self._no_answer)
        while True:
            event = self.next_event()
            if event is not None and self._handle(*event):
                return self.status

    def _handle(self, kind: str, value: Any) -> bool:
        """Handle one event; True when the session is over."""
        if kind == "say":
            for text in value:
                self.say(text)
        elif kind == "line":
            self._send(value)
        elif kind == "eof":
            self.eof = True
            self._maybe_done()
        elif kind == "stop":
            if self.stopping:
                self.error("interrupted again: leaving without waiting for the end")
                self.status = EXIT_FAILED
                return True
            self._hang_up("interrupted")
        elif kind == "gone":
            self.error("the session did not end in time")
            self.status = EXIT_FAILED
            return True
        elif kind == "notification":
            return self._notification(value)
        return False

    def _notification(self, notification: Notification) -> bool:
        name = notification.name
        sender = notification.sender
        if name.startswith("SIPSession") and sender is not self.session:
            return False
        self.show(notification)
        if name == "SIPSessionDidStart":
            self.started = True
            self.timers = []
            if self.args.duration is not None:
                self.later(self.args.duration, lambda: self._hang_up("duration reached"))
            for line in self.pending_lines:
                self._send(line)
            self.pending_lines = []
            self._maybe_done()
        elif name in ("SIPSessionDidFail", "SIPSessionDidEnd"):
            outcome = self.ended(notification)
            self.say(outcome)
            if name == "SIPSessionDidFail" and not self.stopping:
                self.status = EXIT_FAILED
            if not self.file_done:
                self.status = EXIT_FAILED
                outcome += "; the file was not sent"
            if self.status:
                self.error(self.failure or outcome)
            return True
        elif name in ("ChatStreamDidDeliverMessage", "ChatStreamDidNotDeliverMessage"):
            self.undelivered.discard(notification.data.message_id)
            self._maybe_done()
        elif name == "FileTransferStreamDidFinish" and sender is self.transfer:
            self.file_done = not notification.data.error
            if notification.data.error:
                self.status = EXIT_FAILED
                self.failure = f"the file transfer failed: {notification.data.reason}"
                self.file_done = True
                self._hang_up("the file transfer failed")
            self._maybe_done()
        return False

    def _send(self, line: str) -> None:
        if self.chat is None:
            self.say("no chat in this call (use --chat): line ignored")
        elif not self.started:
            self.pending_lines.append(line)
        elif line:
            self.undelivered.add(self.chat.send_message(line))

    def _maybe_done(self) -> None:
        """Without --duration, the end of stdin hangs up once everything is sent."""
        if (
            self.eof
            and self.args.duration is None
            and self.started
            and not self.undelivered
            and self.file_done
        ):
            self._hang_up("end of input")

    def _no_answer(self) -> None:
        if not self.started and not self.stopping:
            self.failure = f"no answer within {self.args.timeout:g} s"
            self.say(self.failure)
            self.status = EXIT_FAILED
            self._hang_up("giving up")

    def _hang_up(self, why: str) -> None:
        if self.stopping or self.session is None:
            return
        self.stopping = True
        if not self.started and self.status == 0:
            self.status = EXIT_FAILED  # the call never took place
        self.say(f"hanging up: {why}")
        self.session.end()
        self.later(_START_STOP_TIMEOUT, lambda: self.events.put(("gone", None)))


class Listener(_Program):
    name = "listen"

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.session: Session | None = None
        self.done = 0
        self.leaving = False

    def work(self) -> int:
        accounts = [a for a in AccountManager().get_accounts() if a.enabled]
        if not accounts:
            self.error("no enabled account: add one with `sipsimple settings account add`")
            return EXIT_USAGE
        engine = Engine()
        for transport in ("udp", "tcp", "tls"):
            port = getattr(engine, f"{transport}_port")
            if port is not None:
                address = f"{SIPSimpleSettings().local_ip}:{port}"
                self.say(f"listening on {transport} {address}")
        for account in accounts:
            self.say(f"account {account.id} (contact {account.contact})")
        while not self.leaving and (self.args.count is None or self.done < self.args.count):
            event = self.next_event()
            if event is not None:
                self._handle(*event)
        return 0

    def _handle(self, kind: str, value: Any) -> None:
        if kind == "say":
            for text in value:
                self.say(text)
        elif kind == "line":
            chats = (
                [s for s in self.session.streams if isinstance(s, ChatStream)]
                if (self.session is not None and self.session.state == "connected")
                else []
            )
            if not chats:
                self.say("no chat going on: line ignored")
            elif value:
                chats[0].send_message(value)
        elif kind == "stop":
            self.leaving = True
            if self.session is not None:
                self.session.end()
            self.say("stopped")
        elif kind == "notification":
            self._notification(value)

    def _notification(self, notification: Notification) -> None:
        name, session = notification.name, notification.sender
        if name == "SIPSessionNewIncoming":
            self._incoming(session, notification.data.streams)
            return
        if name.startswith("SIPSession") and session is not self.session:
            return
        self.show(notification)
        if name == "SIPSessionGotProposal" and notification.data.originator == "remote":
            session.accept_proposal(notification.data.streams)
        elif name in ("SIPSessionDidFail", "SIPSessionDidEnd"):
            self.say(self.ended(notification))
            self.session = None
            self.done += 1

    def _incoming(self, session: Session, streams: list[IMediaStream]) -> None:
        caller = session.remote_identity
        self.say(f"incoming session from {caller.uri} with {_stream_names(streams)}")
        if self.session is not None:
            self.say("busy: rejected with 486")
            session.reject(486)
            self.done += 1
            return
        if self.args.reject is not None:
            self.say(f"rejected with {self.args.reject}")
            session.reject(self.args.reject)
            self.done += 1
            return
        self.session = session
        session.send_ring_indication()
        self.later(self.args.ring, lambda: self._accept(session))

    def _accept(self, session: Session) -> None:
        if session is self.session and session.state == "incoming":
            session.accept(session.proposed_streams)


def call(args: argparse.Namespace) -> int:
    return Caller(args).run()


def listen(args: argparse.Namespace) -> int:
    return Listener(args).run()


def _code(text: str) -> int:
    code = int(text)
    if not 300 <= code <= 699:
        raise argparse.ArgumentTypeError(f"{code} is not a SIP failure code (300 to 699)")
    return code


def add_call_parsers(commands: Any) -> None:
    """Add ``call`` and ``listen`` to the subparsers ``commands``."""
    caller = commands.add_parser("call", help="place a session with a configured account")
    caller.add_argument("uri", help="whom to call: sip:user@domain, user@domain or user")
    add_config_dir_argument(caller)
    caller.add_argument("--account", help="the account to use (default: the default one)")
    caller.add_argument("--no-audio", action="store_true", help="no audio stream")
    caller.add_argument("--chat", action="store_true", help="add a chat: stdin lines are sent")
    caller.add_argument("--file", metavar="PATH", help="send this file")
    caller.add_argument("--duration", type=float, help="hang up after this many seconds")
    caller.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for an answer (default 30)"
    )
    caller.set_defaults(handler=call)

    listener = commands.add_parser("listen", help="answer (or reject) incoming sessions")
    add_config_dir_argument(listener)
    listener.add_argument("--reject", type=_code, metavar="CODE", help="reject with CODE")
    listener.add_argument(
        "--ring", type=float, default=0.5, help="seconds of ringing before answering"
    )
    listener.add_argument("--count", type=int, help="leave after this many sessions")
    listener.set_defaults(handler=listen)
