"""The Engine: the SIP user agent core that every core object runs on.

``Engine()`` is a singleton. ``Engine().start(**options)`` checks the options at once
(TypeError / ValueError) and starts on the SIP thread (:mod:`sipsimple.threading`;
started here when it is not running): SIPEngineWillStart, then the transports bind,
then SIPEngineDidStart, or SIPEngineDidFail (``data.error``) and the Engine is stopped
again. ``stop()`` ends it (SIPEngineWillEnd, SIPEngineDidEnd) within ``stop_timeout``
seconds whatever the network does: client requests still running get a local 503.
Both return at once: a :class:`concurrent.futures.Future` when called from another
thread, an :class:`asyncio.Task` on the SIP thread (``await Engine().start(...)``).

Inside, three layers are wired in a line::

    TransportManager --on_message--> TransactionLayer --events--> Engine dispatch
          ^                                |                       (usages, built-in
          '---- Transmissions (bytes) -----'                        answers, dialogs)

The transport parses, stamps ``received``/``rport`` on requests and drops responses
whose Via is not ours (RFC 3261 sections 18.1.2 and 18.2.1; nothing else repeats
those steps). The transaction layer is sans-IO: after every input the Engine drains
its events and transmissions, then arms one loop timer at ``get_timer()`` (a single
handle, never polling). The handle moves only when the deadline comes earlier: one
that moved later (the transaction whose timer was first has ended) is left to fire
early and rearm, which costs one wake-up where a message costs a cancelled handle.

What the Engine answers by itself (RFC 3261 section 8.2): 505 to other SIP versions,
416 to Request-URIs that are not sip/sips, 482 to a loop when ``detect_sip_loops`` (a
request with the From tag, Call-ID and CSeq of a server transaction in progress but
another branch, section 8.2.2.2), 420 with Unsupported to a Require it does not
support, 489 to an out-of-dialog SUBSCRIBE for an event not in ``incoming_events``
(the usage of a dialog judges the SUBSCRIBEs in it: a refresh of the subscription of
a REFER) and to NOTIFY for an event not in ``events``, 481 to requests for unknown
dialogs (never to ACK), 200 to OPTIONS (Allow, Accept, Supported), 200 to an out-of-dialog MESSAGE
(SIPEngineGotMessage), 405 with Allow to methods nobody handles. The transport
answers 400 with a Warning to malformed requests. Methods listed in
``incoming_requests`` become :class:`~sipsimple.core.request.IncomingRequest` objects.

The usages (Request, Registration, Invitation, Subscription...) use the internal API
of :mod:`sipsimple.core.usage`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import logging
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from sipsimple import __version__
from sipsimple.core.errors import SIPParseError
from sipsimple.core.sip.dialog import Dialog, DialogLayer
from sipsimple.core.sip.headers import FrozenViaHeader
from sipsimple.core.sip.message import SIPRequest, SIPResponse
from sipsimple.core.sip.timers import TimerSettings
from sipsimple.core.sip.transaction import (
    AckReceived,
    CancelReceived,
    ClientTransaction,
    InviteClientTransaction,
    ProceedingTimeout,
    RequestReceived,
    RequestRejected,
    ResponseDestination,
    ResponseReceived,
    ServerTransaction,
    StrayResponse,
    TransactionEvent,
    TransactionLayer,
    TransactionLimitError,
    TransactionTerminated,
    TransactionTimedOut,
    TransactionTransportError,
    Transmission,
)
from sipsimple.core.sip.uri import BaseSIPURI
from sipsimple.core.transport import (
    TraceRecord,
    TransportAddress,
    TransportError,
    TransportFailure,
    TransportManager,
    TransportSettings,
)
from sipsimple.core.usage import (
    ClientRequest,
    DialogUsage,
    RequestHandler,
    ResponseCallback,
    ServerRequest,
    reason_phrase,
    request_target,
    route_destination,
    uri_destination,
)
from sipsimple.notification import NotificationCenter, NotificationData
from sipsimple.threading import SIPThread, is_sip_thread, sip_loop

__all__ = ["DEFAULT_EVENTS", "GC_THRESHOLDS", "Engine", "EngineError"]

log = logging.getLogger("sipsimple.core.engine")

DEFAULT_EVENTS: dict[str, list[str]] = {
    "conference": ["application/conference-info+xml"],
    "dialog": ["multipart/related", "application/rlmi+xml", "application/dialog-info+xml"],
    "message-summary": ["application/simple-message-summary"],
    "presence": ["multipart/related", "application/rlmi+xml", "application/pidf+xml"],
    "presence.winfo": ["application/watcherinfo+xml"],
    "dialog.winfo": ["application/watcherinfo+xml"],
    "refer": ["message/sipfrag;version=2.0"],
    "xcap-diff": ["application/xcap-diff+xml"],
}

_BASE_METHODS = ("ACK", "CANCEL", "MESSAGE", "NOTIFY", "OPTIONS")
_ACCEPT = ("application/sdp", "message/sipfrag", "text/plain")
_IN_DIALOG_ONLY = frozenset(("BYE", "PRACK", "UPDATE", "INFO"))


class EngineError(RuntimeError):
    """A call the Engine's state does not allow (start twice, use before start...)."""


def _port(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 65536:
        raise ValueError(f"{name} must be None (off), 0 (any free port) or a port, not {value!r}")
    return value


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, not {value!r}")
    return value


def _seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
    return float(value)


def _optional_path(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str | Path):
        raise TypeError(f"{name} must be a path or None, not {value!r}")
    return str(value)


def _optional_str(name: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a str or None, not {value!r}")
    return value


def _ip_address(name: str, value: Any) -> str | None:
    if value is None:
        return None
    TransportSettings(ip_address=value)  # validates
    return value  # type: ignore[no-any-return]


def _port_range(name: str, value: Any) -> tuple[int, int]:
    try:
        start, end = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (start, end) pair, not {value!r}") from None
    if not (isinstance(start, int) and isinstance(end, int) and 0 < start < end < 65536):
        raise ValueError(f"{name} must be two ports, start < end, not {value!r}")
    return (start, end)


def _names(name: str, value: Any) -> list[str]:
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"{name} must be a list of str, not {value!r}")
    return list(value)


def _methods(name: str, value: Any) -> set[str]:
    return {method.upper() for method in _names(name, value)}


def _events(name: str, value: Any) -> dict[str, list[str]]:
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must map event packages to lists of content types")
    return {str(event): _names(f"{name}[{event!r}]", types) for event, types in value.items()}


def _log_level(name: str, value: Any) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"{name} must be a logging level (int) or None, not {value!r}")
    return value


_OPTIONS: dict[str, tuple[Callable[[str, Any], Any], Any]] = {
    "ip_address": (_ip_address, None),
    "udp_port": (_port, 0),
    "tcp_port": (_port, 0),
    "tls_port": (_port, None),
    "tls_verify_server": (_bool, False),
    "tls_ca_file": (_optional_path, None),
    "tls_cert_file": (_optional_path, None),
    "tls_privkey_file": (_optional_path, None),
    "tls_timeout": (_seconds, 3.0),
    "user_agent": (_optional_str, f"sipsimple {__version__}"),
    "trace_sip": (_bool, False),
    "detect_sip_loops": (_bool, True),
    "rtp_port_range": (_port_range, (50000, 50500)),
    "codecs": (_names, None),
    "events": (_events, DEFAULT_EVENTS),
    "incoming_events": (lambda n, v: set(_names(n, v)), set()),
    "incoming_requests": (_methods, set()),
    "T1": (_seconds, 0.5),
    "T2": (_seconds, 4.0),
    "T4": (_seconds, 5.0),
    "log_level": (_log_level, logging.WARNING),
    "stop_timeout": (_seconds, 3.0),
    "tune_gc": (_bool, False),
}
"""option -> (validator, default). T1/T2/T4 are the transaction timers (RFC 3261
section 17); ``log_level`` is the least level of the core's log records (logger
``sipsimple.core``, lowered to it while the Engine runs if needed) posted as
SIPEngineLog (None: none); ``stop_timeout`` bounds stop(); ``tune_gc`` sets the
garbage collector for a busy SIP core while the Engine runs (see :data:`GC_THRESHOLDS`)."""

GC_THRESHOLDS = (700, 100, 10)
"""The collector's thresholds while an Engine started with ``tune_gc`` runs.

Every call leaves objects that live a while (the dialog, the Invitation, the
transactions that absorb retransmissions for 64*T1): with the default second threshold
(10) most of them are moved to the oldest generation, whose collections walk every
object of the process, before they die. A hundred young collections between two of
the middle generation let most of them die there; what ``tune_gc`` also does, freezing
(:func:`gc.freeze`) the objects that exist when the Engine has started (modules,
classes, the application's set-up), keeps those out of every later collection. Stop
restores the thresholds and unfreezes. Collecting the middle generation less often
keeps cyclic garbage a little longer; an answered call (Invitation, its dialog and
transactions) leaves none: all of it is freed by reference counting."""

_TRANSPORT_OPTIONS = (
    "ip_address",
    "udp_port",
    "tcp_port",
    "tls_port",
    "tls_verify_server",
    "tls_ca_file",
    "tls_cert_file",
    "tls_privkey_file",
    "tls_timeout",
)


def _check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise TypeError(f"unknown Engine option(s): {', '.join(unknown)}")
    checked = {}
    for name, (validate, default) in _OPTIONS.items():
        value = options.get(name, default)
        if name == "codecs" and value is None:
            checked[name] = None
            continue
        checked[name] = validate(name, value)
    if (checked["tls_cert_file"] is None) != (checked["tls_privkey_file"] is None):
        raise ValueError("tls_cert_file and tls_privkey_file go together")
    if checked["udp_port"] is None and checked["tcp_port"] is None and checked["tls_port"] is None:
        raise ValueError("at least one of udp_port, tcp_port and tls_port must not be None")
    TimerSettings(t1=checked["T1"], t2=checked["T2"], t4=checked["T4"])
    return checked


class _LogHandler(logging.Handler):
    """Posts the core's log records as SIPEngineLog while the Engine runs."""

    def __init__(self, engine: Engine, level: int) -> None:
        super().__init__(level)
        self.engine = engine
        self.previous_level = logging.NOTSET

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        self.engine._post(
            "SIPEngineLog",
            level=record.levelno,
            level_name=record.levelname,
            message=message,
            sender_name=record.name,
        )


class Engine:
    """The SIP core (a singleton); see the module docstring."""

    _instance: Engine | None = None
    _instance_lock = threading.Lock()

    def __new__(cls) -> Engine:
        with cls._instance_lock:
            if cls._instance is None:
                instance = super().__new__(cls)
                instance._init()
                cls._instance = instance
            return cls._instance

    def _init(self) -> None:
        self._state = "stopped"
        self._options: dict[str, Any] = _check_options({})
        self._loop: asyncio.AbstractEventLoop | None = None
        self.transport: TransportManager | None = None
        self.transaction_layer: TransactionLayer | None = None
        self.dialog_layer = DialogLayer()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline: float | None = None
        self._pumping = False
        self._clients: dict[ClientTransaction, ClientRequest] = {}
        self._servers: dict[ServerTransaction, ServerRequest] = {}
        self._ongoing: dict[tuple[Any, ...], ServerTransaction] = {}
        self._handlers: dict[str, list[RequestHandler]] = {}
        self._dialog_usages: dict[tuple[str, str], list[DialogUsage]] = {}
        self._allowed: set[str] = set(_BASE_METHODS)
        self._supported: set[str] = set()
        self._received: tuple[SIPRequest | SIPResponse, TransportAddress] | None = None
        self._server_names: dict[tuple[str, int], str] = {}
        self._log_handler: _LogHandler | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._gc_thresholds: tuple[int, int, int] | None = None

    # -- life cycle ----------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        return self._state == "started"

    @property
    def state(self) -> str:
        """ "stopped", "starting", "started" or "stopping"."""
        return self._state

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise EngineError("the Engine is not running")
        return self._loop

    def start(self, **options: Any) -> asyncio.Task[None] | concurrent.futures.Future[None]:
        """Start with ``options`` (see the module docstring); returns at once."""
        checked = _check_options(options)
        if self._state != "stopped":
            raise EngineError(f"the Engine is {self._state}: stop() it before starting again")
        self._state = "starting"
        self._options = checked
        try:
            if not SIPThread().is_running:
                SIPThread().start()
            return self._on_sip_thread(self._start)
        except BaseException:
            self._state = "stopped"
            raise

    def stop(self) -> asyncio.Task[None] | concurrent.futures.Future[None]:
        """Stop; returns at once (a no-op when already stopped)."""
        return self._on_sip_thread(self._stop)

    def _on_sip_thread(
        self, coroutine_function: Callable[[], Any]
    ) -> asyncio.Task[None] | concurrent.futures.Future[None]:
        if is_sip_thread():
            task = sip_loop().create_task(coroutine_function())
            self._tasks.add(task)
            task.add_done_callback(_retrieve)
            return task
        return asyncio.run_coroutine_threadsafe(coroutine_function(), sip_loop())

    async def _start(self) -> None:
        options = self._options
        self._loop = asyncio.get_running_loop()
        self._post("SIPEngineWillStart")
        try:
            self.transaction_layer = TransactionLayer(
                timers=TimerSettings(t1=options["T1"], t2=options["T2"], t4=options["T4"])
            )
            self.dialog_layer = DialogLayer()
            self.transport = self._new_transport()
            await self.transport.start()
        except Exception as e:
            self._post("SIPEngineDidFail", error=e)
            self._reset()
            raise
        level = options["log_level"]
        if level is not None:
            core_log = logging.getLogger("sipsimple.core")
            self._log_handler = _LogHandler(self, level)
            self._log_handler.previous_level = core_log.level
            core_log.addHandler(self._log_handler)
            if core_log.getEffectiveLevel() > level:
                core_log.setLevel(level)
        if options["tune_gc"]:
            self._gc_thresholds = gc.get_threshold()
            gc.collect()
            gc.freeze()
            gc.set_threshold(*GC_THRESHOLDS)
        self._state = "started"
        self._post("SIPEngineDidStart")

    def _new_transport(self) -> TransportManager:
        options = self._options
        settings = TransportSettings(**{name: options[name] for name in _TRANSPORT_OPTIONS})
        return TransportManager(
            settings,
            self._on_message,
            trace=self._on_trace if options["trace_sip"] else None,
            on_connected=self._on_connected,
            on_disconnected=self._on_disconnected,
        )

    async def _stop(self) -> None:
        if self._state in ("stopped", "stopping"):
            return
        if self._state == "starting":
            raise EngineError("the Engine is starting: stop it once SIPEngineDidStart came")
        self._state = "stopping"
        self._post("SIPEngineWillEnd")
        for client in list(self._clients.values()):
            client._last_error = "the Engine stopped"
            client._transaction_failed(None, "stopped")
        self._cancel_timer()
        transport = self.transport
        if transport is not None:
            try:
                async with asyncio.timeout(self._options["stop_timeout"]):
                    await transport.stop()
            except TimeoutError:
                log.warning(
                    "the transports did not close within %s s", self._options["stop_timeout"]
                )
        self._reset()
        self._post("SIPEngineDidEnd")

    def _reset(self) -> None:
        if self._log_handler is not None:
            core_log = logging.getLogger("sipsimple.core")
            core_log.removeHandler(self._log_handler)
            core_log.setLevel(self._log_handler.previous_level)
            self._log_handler = None
        if self._gc_thresholds is not None:
            gc.set_threshold(*self._gc_thresholds)
            gc.unfreeze()
            self._gc_thresholds = None
        self._cancel_timer()
        self.transport = None
        self.transaction_layer = None
        self._clients.clear()
        self._servers.clear()
        self._dialog_usages.clear()
        self._ongoing.clear()
        self._received = None
        self._state = "stopped"

    # -- options and runtime attributes ---------------------------------------------

    def set_udp_port(self, port: int | None) -> Any:
        """Listen on another UDP port (0: any free one, None: UDP off); see set_tls_options."""
        return self._set_transport_options({"udp_port": port})

    def set_tcp_port(self, port: int | None) -> Any:
        return self._set_transport_options({"tcp_port": port})

    def set_tls_port(self, port: int | None) -> Any:
        return self._set_transport_options({"tls_port": port})

    def set_tls_options(self, **options: Any) -> Any:
        """Change ``tls_port``, ``tls_verify_server``, ``tls_ca_file``, ``tls_cert_file``,
        ``tls_privkey_file`` or ``tls_timeout``.

        Like every transport change this restarts the transports (open connections
        close) and returns at once with a Task or Future; if the new settings cannot be
        used the old ones are restored and the Task/Future fails.
        """
        unknown = sorted(set(options) - {n for n in _TRANSPORT_OPTIONS if n.startswith("tls")})
        if unknown:
            raise TypeError(f"not TLS options: {', '.join(unknown)}")
        return self._set_transport_options(options)

    def _set_transport_options(
        self, changes: dict[str, Any]
    ) -> asyncio.Task[None] | concurrent.futures.Future[None]:
        if self._state != "started":
            raise EngineError("the Engine is not running")
        actual = {f"{name}_port": self._port_of(name) for name in ("udp", "tcp", "tls")}
        new = _check_options({**self._options, **actual, **changes})
        return self._on_sip_thread(lambda: self._restart_transport(new))

    async def _restart_transport(self, new: dict[str, Any]) -> None:
        transport = self.transport
        old = dict(self._options)
        if transport is not None:
            old.update({f"{name}_port": port for name, port in transport.ports.items()})
            await transport.stop()
        self._options = {**old, **{name: new[name] for name in _TRANSPORT_OPTIONS}}
        self.transport = self._new_transport()
        try:
            await self.transport.start()
        except Exception:
            self._options = old
            self.transport = self._new_transport()
            await self.transport.start()
            raise

    def __getattr__(self, name: str) -> Any:
        options = self.__dict__.get("_options")
        if options is not None and name in options:
            return options[name]
        raise AttributeError(f"'Engine' object has no attribute {name!r}")

    def _port_of(self, transport: str) -> int | None:
        manager = self.transport
        if manager is not None and manager.is_running:
            return manager.port(transport)
        return self._options[f"{transport}_port"]  # type: ignore[no-any-return]

    @property
    def udp_port(self) -> int | None:
        """The UDP port listened on (the actual one once started), None when off."""
        return self._port_of("udp")

    @property
    def tcp_port(self) -> int | None:
        return self._port_of("tcp")

    @property
    def tls_port(self) -> int | None:
        return self._port_of("tls")

    @property
    def transports(self) -> list[str]:
        """The transports that are on, in the order udp, tcp, tls."""
        return [t for t in ("udp", "tcp", "tls") if self._port_of(t) is not None]

    @property
    def user_agent(self) -> str | None:
        return self._options["user_agent"]  # type: ignore[no-any-return]

    @user_agent.setter
    def user_agent(self, value: str | None) -> None:
        self._options["user_agent"] = _optional_str("user_agent", value)

    @property
    def trace_sip(self) -> bool:
        return self._options["trace_sip"]  # type: ignore[no-any-return]

    @trace_sip.setter
    def trace_sip(self, value: bool) -> None:
        self._options["trace_sip"] = _bool("trace_sip", value)
        if self.transport is not None:  # no trace records are made while it is off
            self.transport.trace = self._on_trace if value else None

    @property
    def detect_sip_loops(self) -> bool:
        return self._options["detect_sip_loops"]  # type: ignore[no-any-return]

    @detect_sip_loops.setter
    def detect_sip_loops(self, value: bool) -> None:
        self._options["detect_sip_loops"] = _bool("detect_sip_loops", value)

    @property
    def available_codecs(self) -> list[str]:
        """The audio codecs this installation can encode and decode, best first."""
        from sipsimple.media.codecs import available_codecs

        return list(available_codecs())

    @property
    def codecs(self) -> list[str]:
        """The audio codec preference list (the ``codecs`` option; default: all available)."""
        codecs = self._options["codecs"]
        return list(codecs) if codecs is not None else self.available_codecs

    @property
    def events(self) -> dict[str, list[str]]:
        return {event: list(types) for event, types in self._options["events"].items()}

    @property
    def incoming_events(self) -> set[str]:
        return set(self._options["incoming_events"])

    @property
    def incoming_requests(self) -> set[str]:
        return set(self._options["incoming_requests"])

    def add_event(self, event: str, accept_types: Iterable[str]) -> None:
        """Accept NOTIFYs of ``event`` with these content types."""
        self._options["events"][event] = _names("accept_types", accept_types)

    def add_incoming_event(self, event: str) -> None:
        self._options["incoming_events"].add(event)

    def remove_incoming_event(self, event: str) -> None:
        self._options["incoming_events"].discard(event)

    def add_incoming_request(self, method: str) -> None:
        self._options["incoming_requests"].add(method.upper())

    def remove_incoming_request(self, method: str) -> None:
        self._options["incoming_requests"].discard(method.upper())

    # -- the internal API for usages (see sipsimple.core.usage) ---------------------

    def new_tag(self) -> str:
        return self._layer.new_tag()

    def new_call_id(self) -> str:
        return self._layer.new_call_id()

    def new_branch(self) -> str:
        return self._layer.new_branch()

    def new_via(self, request: SIPRequest) -> None:
        """Give ``request`` a top Via of its own: a new branch (a new transaction); the
        transport fills in the rest when it sends."""
        via = FrozenViaHeader("UDP", "0.0.0.0", None, {"branch": self.new_branch()})
        request.headers.set("Via", via)

    @property
    def _layer(self) -> TransactionLayer:
        layer = self.transaction_layer
        if layer is None:
            raise EngineError("the Engine is not running")
        return layer

    @property
    def allowed_methods(self) -> list[str]:
        """The Allow header's methods: the built-in ones and those usages handle."""
        return sorted(self._allowed | self._options["incoming_requests"])

    @property
    def supported(self) -> list[str]:
        return sorted(self._supported)

    def add_allowed_methods(self, *methods: str) -> None:
        self._allowed.update(method.upper() for method in methods)

    def add_supported(self, *options: str) -> None:
        self._supported.update(options)

    def register_request_handler(self, method: str, handler: RequestHandler) -> None:
        """Offer new out-of-dialog ``method`` requests to ``handler`` (newest first)."""
        method = method.upper()
        self._handlers.setdefault(method, []).insert(0, handler)
        self._allowed.add(method)

    def unregister_request_handler(self, method: str, handler: RequestHandler) -> None:
        handlers = self._handlers.get(method.upper(), [])
        if handler in handlers:
            handlers.remove(handler)

    def register_dialog_usage(self, call_id: str, local_tag: str, usage: DialogUsage) -> None:
        """Route the requests of the dialogs (call_id, local_tag, *) to ``usage``."""
        self._dialog_usages.setdefault((call_id, local_tag), []).insert(0, usage)

    def unregister_dialog_usage(self, call_id: str, local_tag: str, usage: DialogUsage) -> None:
        key = (call_id, local_tag)
        usages = self._dialog_usages.get(key)
        if usages is not None and usage in usages:
            usages.remove(usage)
            if not usages:
                del self._dialog_usages[key]

    def remove_dialog(self, dialog: Dialog) -> None:
        """Forget a dialog: its requests get 481 from now on."""
        dialog.terminate()
        self.dialog_layer.remove(dialog)

    def send_request(
        self,
        request: SIPRequest,
        on_response: ResponseCallback,
        *,
        authenticator: Any = None,
        dialog: Dialog | None = None,
        routes: Any = None,
        timeout: float | None = None,
    ) -> ClientRequest:
        """Send a request in a new client transaction; see :mod:`sipsimple.core.usage`."""
        if self._state != "started":
            raise EngineError("the Engine is not running")
        headers = request.headers
        if "Max-Forwards" not in headers:
            headers.add("Max-Forwards", "70")
        if self.user_agent and "User-Agent" not in headers:
            headers.add("User-Agent", self.user_agent)
        client = ClientRequest(
            self,
            request,
            on_response,
            authenticator=authenticator,
            dialog=dialog,
            routes=routes,
            timeout=timeout,
        )
        client.start()
        return client

    def send_ack(self, ack: SIPRequest, transaction: InviteClientTransaction | None = None) -> None:
        """Send an ACK for a 2xx (to its Route or Request-URI, IP addresses only: an ACK
        follows the INVITE's dialog, whose targets a usage has already resolved)."""
        destination = uri_destination(request_target(ack), self.transports)
        if destination is None:
            if transaction is None:
                raise ValueError("an ACK needs an IP address in its Route or Request-URI")
            destination = transaction.destination
        if "Max-Forwards" not in ack.headers:
            ack.headers.add("Max-Forwards", "70")
        data, actual = self._transport.prepare_request_data(
            ack, destination, branch=self.new_branch()
        )
        self._layer.send_ack(transaction, ack, actual, data=data)
        self._pump()

    async def lookup_destinations(self, uri: Any) -> list[TransportAddress]:
        """RFC 3263: the destinations of a URI whose host is a name."""
        from sipsimple.lookup import DNSLookup

        if not isinstance(uri, BaseSIPURI):
            raise ValueError(f"cannot send a request towards {uri!r}")
        routes = await DNSLookup().lookup_sip_proxy(uri, self.transports)  # type: ignore[misc]
        destinations = []
        for route in routes:
            destination = route_destination(route)
            if destination.transport == "tls":
                self._server_names[(destination.host, destination.port)] = uri.host
            destinations.append(destination)
        return destinations

    # -- plumbing the usage objects call ------------------------------------------

    @property
    def _transport(self) -> TransportManager:
        if self.transport is None:
            raise EngineError("the Engine is not running")
        return self.transport

    def _start_client(
        self,
        request: SIPRequest,
        destination: TransportAddress,
        client: ClientRequest,
        *,
        size_rule: bool = True,
    ) -> ClientTransaction:
        """Start a client transaction for ``request``: a new top Via (a new branch), made
        whole by the transport as it serialises the request, once."""
        if self._state != "started":
            raise TransportError(TransportFailure.DISABLED, "the Engine is not running")
        layer = self._layer
        branch = layer.new_branch()
        try:
            data, actual = self._transport.prepare_request_data(
                request, destination, branch=branch, size_rule=size_rule
            )
        except TransportError:
            self.new_via(request)  # the request (and a local answer to it) has its own Via
            raise
        try:
            transaction = layer.send_request(
                request, actual, actual.is_reliable, self.loop.time(), data=data, branch=branch
            )
        except TransactionLimitError as e:
            raise TransportError(TransportFailure.UNREACHABLE, str(e), destination) from None
        self._clients[transaction] = client
        self._pump()
        return transaction

    def _send_response(self, transaction: ServerTransaction, response: SIPResponse) -> None:
        self._layer.send_response(transaction, response, self.loop.time())
        self._pump()

    def _cancel(self, transaction: InviteClientTransaction) -> bool:
        result = self._layer.cancel(transaction, self.loop.time())
        self._pump()
        return result

    # -- driving the transaction layer ---------------------------------------------

    def _on_message(
        self, message: SIPRequest | SIPResponse, source: TransportAddress, now: float
    ) -> None:
        layer = self.transaction_layer
        if layer is None:
            return
        self._received = (message, source)
        try:
            layer.receive_message(message, (source.host, source.port), source.transport, now)
        except Exception:
            self._exception()
        self._pump()
        self._received = None

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_deadline = None
        layer = self.transaction_layer
        if layer is None:
            return
        layer.handle_timer(self.loop.time())
        self._pump()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_deadline = None

    def _pump(self) -> None:
        """Drain the layer's events and transmissions, then arm the timer if the next
        deadline came earlier (see the module docstring)."""
        layer = self.transaction_layer
        if self._pumping or layer is None:
            return
        self._pumping = True
        try:
            while True:
                event = layer.next_event()
                if event is not None:
                    try:
                        self._dispatch(event)
                    except SIPParseError as e:
                        self._bad_request(event, e)
                    except Exception:
                        self._exception()
                        self._answer_after_exception(event)
                    continue
                transmissions = layer.messages_to_send()
                if not transmissions:
                    break
                for transmission in transmissions:
                    self._transmit(transmission)
        finally:
            self._pumping = False
        deadline = layer.get_timer()
        armed = self._timer_deadline
        if deadline is not None and (armed is None or deadline < armed):
            if self._timer is not None:
                self._timer.cancel()
            self._timer_deadline = deadline
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def _bad_request(self, event: TransactionEvent, error: SIPParseError) -> None:
        """A header parsed on demand was malformed: 400 with a Warning saying which."""
        log.info("bad request from the network: %s", error)
        if isinstance(event, RequestReceived):
            server = self._servers.get(event.transaction)
            if server is not None and not server.answered:
                agent = f"{server.source.local[0] if server.source.local else 'sipsimple'}"
                warning = f'399 {agent} "{reason_phrase(str(error)).replace(chr(34), chr(39))}"'
                server.answer(400, headers=[("Warning", warning)])

    def _answer_after_exception(self, event: TransactionEvent) -> None:
        """A request whose handling raised gets 500 rather than no answer at all."""
        if isinstance(event, RequestReceived):
            server = self._servers.get(event.transaction)
            if server is not None and not server.answered:
                try:
                    server.answer(500)
                except Exception:
                    log.exception("cannot answer 500 after an exception")

    def _transmit(self, transmission: Transmission) -> None:
        """Send at once (UDP, open connections); a task only to open a connection."""
        data, destination, transaction = transmission
        transport = self.transport
        if transport is None:
            return
        if isinstance(destination, ResponseDestination):
            server = self._servers.get(transaction) if transaction is not None else None  # type: ignore[arg-type]
            destination = self._response_target(destination, server.source if server else None)
        server_name = (
            self._server_names.get((destination.host, destination.port))
            if destination.transport == "tls"
            else None
        )
        try:
            if transport.send_nowait(data, destination, server_name=server_name):
                return
        except TransportError as e:
            # reported on the next turn, as a failed send task would: the caller that
            # started the transaction has not even been handed it yet
            self.loop.call_soon(self._send_failed, transaction, destination, e)
            return
        task = self.loop.create_task(self._send(data, destination, transaction, server_name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    def _response_target(
        destination: ResponseDestination, origin: TransportAddress | None
    ) -> TransportAddress:
        if origin is not None:
            connection = origin.connection
            if connection is not None:
                if connection.is_open:
                    return origin
            elif (
                origin.transport == destination.transport
                and (origin.host, origin.port) == destination.address
            ):
                return origin  # a datagram back to its source, from the same socket
        host, port = destination.address
        return TransportAddress(
            destination.transport, host, port, origin.local if origin is not None else None
        )

    async def _send(
        self,
        data: bytes,
        destination: TransportAddress,
        transaction: Any,
        server_name: str | None,
    ) -> None:
        transport = self.transport
        if transport is None:
            return
        try:
            await transport.send(data, destination, server_name=server_name)
        except TransportError as e:
            self._send_failed(transaction, destination, e)

    def _send_failed(
        self, transaction: Any, destination: TransportAddress, error: Exception
    ) -> None:
        log.info("cannot send to %s: %s", destination, error)
        layer = self.transaction_layer
        if transaction is not None and layer is not None:
            client = self._clients.get(transaction)
            if client is not None:
                client._last_error = str(error)
                client._last_failure = getattr(error, "failure", None)
            layer.transport_error(transaction, self.loop.time())
            self._pump()

    # -- events ----------------------------------------------------------------------

    def _dispatch(self, event: TransactionEvent) -> None:
        if isinstance(event, ResponseReceived):
            client = self._clients.get(event.transaction)
            if client is not None:
                client._response(event.transaction, event.response, event.retransmission)
        elif isinstance(event, RequestReceived):
            self._request_received(event.transaction, event.request)
        elif isinstance(event, AckReceived):
            self._ack_received(event.request)
        elif isinstance(event, CancelReceived):
            self._cancel_received(event)
        elif isinstance(event, TransactionTimedOut):
            self._timed_out(event.transaction, event.timer)
        elif isinstance(event, TransactionTransportError):
            client = self._clients.get(event.transaction)  # type: ignore[call-overload]
            if client is not None:
                client._transaction_failed(event.transaction, "transport")
        elif isinstance(event, TransactionTerminated):
            self._terminated(event.transaction)
        elif isinstance(event, StrayResponse):
            log.debug("stray %d response from %s", event.response.code, event.source)
        elif isinstance(event, RequestRejected):
            log.warning("too many transactions: answered 503 to %s", event.source)
        elif isinstance(event, ProceedingTimeout):
            pass

    def _timed_out(self, transaction: Any, timer: str) -> None:
        if isinstance(transaction, ClientTransaction):
            client = self._clients.get(transaction)
            if client is not None:
                client._transaction_failed(transaction, "timeout")
            return
        server = self._servers.get(transaction)
        if server is not None and server.on_timeout is not None:
            server.on_timeout(server, timer)

    def _terminated(self, transaction: Any) -> None:
        if isinstance(transaction, ClientTransaction):
            self._clients.pop(transaction, None)
            return
        server = self._servers.pop(transaction, None)
        key = _loop_key(transaction.request)
        if self._ongoing.get(key) is transaction:
            del self._ongoing[key]
        if server is not None and server.on_terminated is not None:
            server.on_terminated(server)

    def _source_of(
        self, request: SIPRequest, transaction: ServerTransaction | None
    ) -> TransportAddress:
        received = self._received
        if received is not None and received[0] is request:
            return received[1]
        assert transaction is not None
        host, port = transaction.source
        return TransportAddress(transaction.transport, host, port)

    def _request_received(self, transaction: ServerTransaction, request: SIPRequest) -> None:
        server = ServerRequest(self, request, transaction, self._source_of(request, transaction))
        self._servers[transaction] = server
        code, reason, headers = self._check_request(request, transaction)
        if code is not None:
            server.answer(code, reason, headers=headers)
            return
        match = self.dialog_layer.receive_request(request)
        if match.in_dialog:
            if match.code == 500:
                server.answer(500, "CSeq Out Of Order")
                return
            server.dialog = match.dialog
            if not self._offer_to_usages(server, request):
                server.answer(481)
            return
        self._out_of_dialog(server)

    def _check_request(
        self, request: SIPRequest, transaction: ServerTransaction
    ) -> tuple[int | None, str | None, list[tuple[str, Any]]]:
        """The RFC 3261 section 8.2 checks: (code, reason, headers) of the answer, or Nones."""
        if request.version != "SIP/2.0":
            return 505, None, []
        if not isinstance(request.request_uri, BaseSIPURI):
            return 416, None, []
        method = request.method
        if self.detect_sip_loops and request.to_header.tag is None:  # type: ignore[union-attr]
            key = _loop_key(request)
            ongoing = self._ongoing.get(key)
            if ongoing is not None and ongoing is not transaction:
                return 482, None, []
            self._ongoing[key] = transaction
        unsupported = [option for option in request.require if option not in self._supported]
        if unsupported and method not in ("CANCEL", "ACK"):
            return 420, None, [("Unsupported", ", ".join(unsupported))]
        if method in ("SUBSCRIBE", "NOTIFY"):
            try:
                event = request.get_header("Event")
            except SIPParseError:
                return 400, "Bad Event header", []
            if event is None:
                return 400, "Missing Event header", []
            known = self.incoming_events if method == "SUBSCRIBE" else self._options["events"]
            refresh = method == "SUBSCRIBE" and request.to_header.tag is not None  # type: ignore[union-attr]
            if event.event not in known and not refresh:
                allow = ", ".join(sorted(known))
                return 489, None, [("Allow-Events", allow)] if allow else []
        return None, None, []

    def _offer_to_usages(self, server: ServerRequest, request: SIPRequest) -> bool:
        local_tag = request.to_header.tag  # type: ignore[union-attr]
        for usage in list(self._dialog_usages.get((request.call_id, local_tag), ())):  # type: ignore[arg-type]
            if usage.handle_request(server):
                return True
        return False

    def _out_of_dialog(self, server: ServerRequest) -> None:
        method = server.method
        for handler in list(self._handlers.get(method, ())):
            if handler(server):
                return
        if method == "OPTIONS":
            server.answer(200, headers=self._capabilities())
        elif method == "MESSAGE":
            self._message_received(server)
        elif method in self._options["incoming_requests"]:
            from sipsimple.core.request import IncomingRequest

            IncomingRequest._received(server)
        elif method in _IN_DIALOG_ONLY or method == "NOTIFY":
            server.answer(481)
        else:
            server.answer(405, headers=[("Allow", ", ".join(self.allowed_methods))])

    def _capabilities(self) -> list[tuple[str, Any]]:
        headers: list[tuple[str, Any]] = [
            ("Allow", ", ".join(self.allowed_methods)),
            ("Accept", ", ".join(_ACCEPT)),
        ]
        headers.append(("Supported", ", ".join(self.supported)))
        if self.incoming_events:
            headers.append(("Allow-Events", ", ".join(sorted(self.incoming_events))))
        return headers

    def _message_received(self, server: ServerRequest) -> None:
        request = server.request
        server.answer(200)
        content_type = request.content_type
        self._post(
            "SIPEngineGotMessage",
            request_uri=request.request_uri,
            from_header=request.from_header,
            to_header=request.to_header,
            headers=request.header_dict(),
            body=request.body,
            content_type=content_type.content_type if content_type is not None else None,
        )

    def _ack_received(self, request: SIPRequest) -> None:
        match = self.dialog_layer.receive_request(request)
        if not match.in_dialog:
            return
        server = ServerRequest(self, request, None, self._source_of(request, None), match.dialog)
        self._offer_to_usages(server, request)

    def _cancel_received(self, event: CancelReceived) -> None:
        cancel = ServerRequest(
            self,
            event.request,
            event.transaction,
            self._source_of(event.request, event.transaction),
        )
        target = self._servers.get(event.target) if event.target is not None else None
        if target is None:
            cancel.answer(481)
            return
        cancel.answer(200)
        if target.on_cancel is not None and not target.answered:
            target.on_cancel(target, event.request)

    # -- hooks of the transport ----------------------------------------------------

    def _on_trace(self, record: TraceRecord) -> None:
        self._post(
            "SIPEngineSIPTrace",
            received=record.received,
            source_ip=record.source_ip,
            source_port=record.source_port,
            destination_ip=record.destination_ip,
            destination_port=record.destination_port,
            data=record.data,
            transport=record.transport,
        )

    def _on_connected(self, address: TransportAddress) -> None:
        self._post(
            "SIPEngineTransportDidConnect",
            transport=address.transport,
            remote_address=(address.host, address.port),
            local_address=address.local,
        )

    def _on_disconnected(self, address: TransportAddress, error: TransportError | None) -> None:
        self._post(
            "SIPEngineTransportDidDisconnect",
            transport=address.transport,
            remote_address=(address.host, address.port),
            local_address=address.local,
            reason=str(error) if error is not None else None,
        )

    # -- notifications ----------------------------------------------------------------

    def _post(self, name: str, **fields: Any) -> None:
        NotificationCenter().post_notification(name, sender=self, data=NotificationData(**fields))

    def _exception(self) -> None:
        kind, value, tb = sys.exc_info()
        log.error("exception in the SIP core", exc_info=True)
        self._post(
            "SIPEngineGotException",
            type=kind,
            value=value,
            traceback="".join(traceback.format_exception(kind, value, tb)),
        )


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a start/stop task's failure as seen: SIPEngineDidFail has reported it."""
    Engine()._tasks.discard(task)
    if not task.cancelled():
        task.exception()


def _loop_key(request: SIPRequest) -> tuple[Any, ...]:
    from_header = request.from_header
    return (
        from_header.tag if from_header is not None else None,
        request.call_id,
        request.cseq,
    )
