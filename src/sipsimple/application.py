"""SIPApplication: starts and stops the SDK's subsystems in the right order.

``start(storage)`` loads the configuration on the caller's thread (so a broken
settings file raises there, and the application can be started again), then
starts the SIP thread and returns at once; the rest of the start order runs on
the SIP thread and ends with SIPApplicationDidStart.  ``stop()`` returns at
once too; SIPApplicationDidEnd says when everything is down.  Unlike the
original, a stopped application can be started again in the same process.

Start order: configuration, SIP thread, SIPApplicationWillStart, the global
settings (an instance id is generated on first start), the DNSManager (with
SIPSimpleSettings.dns), the Engine (with SIPSimpleSettings: local_ip, the SIP
ports of the transports in sip.transport_list, tls, user_agent, logs.trace_sip,
rtp.port_range and rtp.audio_codec_list), the AccountManager (the accounts load
and activate), the SessionManager (incoming sessions), SIPApplicationDidStart.  When
TLS cannot start (a bad certificate or CA file, its port taken) the Engine starts
without it and SIPApplicationFailedToStartTLS carries the error; any other failure
to start stops the application again (SIPApplicationWillEnd, SIPApplicationDidEnd).

Stop order, each step bounded in time so that a dead network cannot hang it:
SIPApplicationWillEnd, the SessionManager, the accounts (they unregister), the
Engine, the DNSManager, the configuration (pending writes flushed),
SIPApplicationDidEnd.

While running, changes to SIPSimpleSettings apply at once: user_agent and
logs.trace_sip to the Engine; the SIP ports, sip.transport_list and tls restart the
Engine's transports (then the active accounts register again with their new
contacts); dns restarts the DNSManager.  local_ip applies at the next start.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from enum import Enum
from typing import Any, Protocol

from sipsimple.account import AccountManager
from sipsimple.configuration import ConfigurationManager
from sipsimple.configuration.backend import ConfigurationBackend
from sipsimple.configuration.settings import SIPSimpleSettings
from sipsimple.core import Engine
from sipsimple.core.transport import TLSError, TransportError, TransportFailure
from sipsimple.lookup import DNSManager
from sipsimple.notification import Notification, NotificationCenter, NotificationData
from sipsimple.session import SessionManager
from sipsimple.threading import SIPThread, call_in_sip_thread, is_sip_thread, run_in_worker

__all__ = ["ApplicationState", "SIPApplication", "SIPApplicationError"]

log = logging.getLogger(__name__)

_TRANSPORT_SETTINGS = frozenset(
    ("sip.udp_port", "sip.tcp_port", "sip.tls_port", "sip.transport_list")
)
_TLS_SETTINGS = frozenset(("tls.ca_list", "tls.certificate", "tls.verify_server"))
_DNS_SETTINGS = frozenset(("dns.nameservers", "dns.fallback_nameservers", "dns.probe_domain"))


class SIPApplicationError(Exception):
    """A call that the application's current state does not allow."""


class ApplicationState(Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    STARTED = "started"
    STOPPING = "stopping"


class _Storage(Protocol):
    @property
    def configuration_backend(self) -> ConfigurationBackend: ...


def engine_options(settings: SIPSimpleSettings) -> dict[str, Any]:
    """The Engine's start options from the global settings.

    A transport missing from sip.transport_list is off; the TLS certificate file holds
    the certificate and its private key.
    """
    sip, tls = settings.sip, settings.tls
    enabled = set(sip.transport_list)
    certificate = tls.certificate.normalized if tls.certificate is not None else None
    return {
        "ip_address": str(settings.local_ip),
        "udp_port": int(sip.udp_port) if "udp" in enabled else None,
        "tcp_port": int(sip.tcp_port) if "tcp" in enabled else None,
        "tls_port": int(sip.tls_port) if "tls" in enabled else None,
        "tls_verify_server": tls.verify_server,
        "tls_ca_file": tls.ca_list.normalized if tls.ca_list is not None else None,
        "tls_cert_file": certificate,
        "tls_privkey_file": certificate,
        "user_agent": settings.user_agent,
        "trace_sip": settings.logs.trace_sip,
        "rtp_port_range": (int(settings.rtp.port_range.start), int(settings.rtp.port_range.end)),
        "codecs": list(settings.rtp.audio_codec_list),
    }


def _is_tls_failure(error: BaseException) -> bool:
    """Whether the Engine failed to start because of its TLS transport alone."""
    if isinstance(error, TLSError):
        return True
    if not isinstance(error, TransportError):
        return False
    if error.failure is TransportFailure.TLS_CONFIGURATION:
        return True
    return error.failure is TransportFailure.BIND_FAILED and error.detail.startswith("tls ")


class SIPApplication:
    """The singleton that owns the SDK's subsystems (spec: SIPApplication).

    ``sessions_stop_timeout``, ``accounts_stop_timeout`` and ``engine_stop_timeout``
    bound those steps of stop().
    """

    _instance: SIPApplication | None = None
    _instance_lock = threading.Lock()

    sessions_stop_timeout = 10.0
    accounts_stop_timeout = 10.0
    engine_stop_timeout = 10.0

    # The audio issue fills these in; the spec lists them as attributes.
    alert_audio_mixer = None
    alert_audio_bridge = None
    alert_audio_device = None
    voice_audio_mixer = None
    voice_audio_bridge = None
    voice_audio_device = None

    def __new__(cls) -> SIPApplication:
        with cls._instance_lock:
            if SIPApplication._instance is None:
                instance = super().__new__(cls)
                instance._lock = threading.Lock()
                instance._state = ApplicationState.STOPPED
                instance._initialized = None
                instance._tasks = set()
                instance.storage = None
                SIPApplication._instance = instance
            return SIPApplication._instance

    _lock: threading.Lock
    _state: ApplicationState
    _initialized: asyncio.Event | None
    _tasks: set[asyncio.Task[None]]
    storage: _Storage | ConfigurationBackend | None

    @property
    def state(self) -> ApplicationState:
        return self._state

    @property
    def running(self) -> bool:
        """True once started and until told to stop (the spec's meaning)."""
        return self._state in (ApplicationState.STARTING, ApplicationState.STARTED)

    def start(
        self,
        storage: _Storage | ConfigurationBackend,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """Start everything; returns once the SIP thread runs (wait for SIPApplicationDidStart).

        ``storage`` is a FileStorage/MemoryStorage, or (as in the spec) a
        configuration backend.  ``loop`` makes the SDK run on the application's
        own asyncio loop instead of a thread of its own.  Errors loading the
        configuration propagate and leave the application startable again.
        """
        backend = getattr(storage, "configuration_backend", storage)
        with self._lock:
            if self._state is not ApplicationState.STOPPED:
                raise SIPApplicationError(
                    f"SIPApplication cannot start while {self._state.value}; stop() it first"
                )
            ConfigurationManager().start(backend)
            try:
                SIPThread().start(loop)
            except BaseException:
                ConfigurationManager().stop()
                raise
            self.storage = storage
            self._state = ApplicationState.STARTING
        call_in_sip_thread(self._initialize)

    def stop(self) -> None:
        """Stop everything; returns at once (wait for SIPApplicationDidEnd).

        Stopping an application that is stopped or already stopping does nothing.
        """
        with self._lock:
            if self._state not in (ApplicationState.STARTING, ApplicationState.STARTED):
                return
            self._state = ApplicationState.STOPPING
        call_in_sip_thread(self._shutdown)

    def _post(self, name: str, /, **data: object) -> None:
        NotificationCenter().post_notification(name, sender=self, data=NotificationData(**data))

    def _starting(self) -> bool:
        with self._lock:
            return self._state is ApplicationState.STARTING

    async def _initialize(self) -> None:
        initialized = self._initialized = asyncio.Event()
        try:
            self._post("SIPApplicationWillStart")
            settings = SIPSimpleSettings()
            if not settings.instance_id:
                settings.instance_id = f"urn:uuid:{uuid.uuid4()}"
                settings.save()
            self._start_dns(settings)
            if self._starting():
                await self._start_engine(settings)
            if self._starting():
                await AccountManager().start()
            if self._starting():
                SessionManager().start()  # after the accounts: incoming sessions find theirs
        except Exception:
            log.exception("SIPApplication failed to start")
            with self._lock:
                failed = self._state is ApplicationState.STARTING
                self._state = ApplicationState.STOPPING
            initialized.set()
            if failed:
                await self._shutdown()
            return
        finally:
            initialized.set()
        NotificationCenter().add_observer(
            self._settings_observer, name="CFGSettingsObjectDidChange", sender=settings
        )
        with self._lock:
            if self._state is not ApplicationState.STARTING:
                return  # stop() came first; _shutdown reports the end
            self._state = ApplicationState.STARTED
        self._post("SIPApplicationDidStart")

    def _start_dns(self, settings: SIPSimpleSettings) -> None:
        """Point the DNSManager at the configured nameservers; probe unless told not to."""
        manager = DNSManager()
        manager.stop()
        dns = settings.dns
        manager.system_nameservers = (
            [str(address) for address in dns.nameservers] if dns.nameservers is not None else None
        )
        manager.fallback_nameservers = [str(address) for address in dns.fallback_nameservers]
        if dns.probe_domain is not None:
            manager.probe_domain = str(dns.probe_domain)
            manager.start()
        else:
            # Without probing the configured ones are used as they are: forget what an
            # earlier probe chose (DNSManager has no public call for it yet).
            manager._nameservers = None

    async def _start_engine(self, settings: SIPSimpleSettings) -> None:
        options = engine_options(settings)
        engine = Engine()
        try:
            await engine.start(**options)  # type: ignore[misc]
        except Exception as error:
            if options["tls_port"] is None or not _is_tls_failure(error):
                raise
            self._post("SIPApplicationFailedToStartTLS", error=error)
            options.update(tls_port=None, tls_cert_file=None, tls_privkey_file=None)
            await engine.start(**options)  # type: ignore[misc]

    async def _shutdown(self) -> None:
        self._post("SIPApplicationWillEnd")
        initialized = self._initialized
        if initialized is not None:
            await initialized.wait()
        NotificationCenter().discard_observer(
            self._settings_observer, name="CFGSettingsObjectDidChange"
        )
        # Sessions end first, before the accounts unregister.
        await self._bounded(SessionManager().stop, self.sessions_stop_timeout, "the sessions")
        await self._bounded(AccountManager().stop, self.accounts_stop_timeout, "the accounts")
        engine = Engine()
        if engine.state == "started":
            await self._bounded(engine.stop, self.engine_stop_timeout, "the Engine")
        DNSManager().stop()
        try:
            await run_in_worker(ConfigurationManager().stop)
        except Exception:
            log.exception("the configuration did not stop cleanly")
        with self._lock:
            self._state = ApplicationState.STOPPED
        self._post("SIPApplicationDidEnd")
        SIPThread().stop()

    @staticmethod
    async def _bounded(stop: Any, timeout: float, what: str) -> None:
        try:
            async with asyncio.timeout(timeout):
                await stop()
        except TimeoutError:
            log.warning("%s did not stop within %s s", what, timeout)
        except Exception:
            log.exception("%s did not stop cleanly", what)

    # -- settings changed while running

    def _settings_observer(self, notification: Notification) -> None:
        if is_sip_thread():
            task = asyncio.get_running_loop().create_task(
                self._apply_settings(notification.data.modified)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        try:
            call_in_sip_thread(self._apply_settings, notification.data.modified)
        except RuntimeError:  # the SIP thread stopped meanwhile
            pass

    async def _apply_settings(self, modified: dict[str, Any]) -> None:
        if self._state is not ApplicationState.STARTED:
            return
        settings = SIPSimpleSettings()
        engine = Engine()
        if "user_agent" in modified:
            engine.user_agent = settings.user_agent
        if "logs.trace_sip" in modified:
            engine.trace_sip = settings.logs.trace_sip
        if _DNS_SETTINGS.intersection(modified):
            self._start_dns(settings)
        if engine.is_running and (_TRANSPORT_SETTINGS | _TLS_SETTINGS).intersection(modified):
            await self._restart_transports(engine, settings)
            for account in AccountManager().iter_accounts():
                account._contact_changed()

    async def _restart_transports(self, engine: Engine, settings: SIPSimpleSettings) -> None:
        """Bring the Engine's transports in line with the settings, one change at a time
        (each restarts the transports; a failed change leaves the previous ones)."""
        options = engine_options(settings)
        for transport in ("udp", "tcp"):
            wanted = options[f"{transport}_port"]
            current = getattr(engine, f"{transport}_port")
            if (wanted is None) != (current is None) or (wanted and wanted != current):
                try:
                    await getattr(engine, f"set_{transport}_port")(wanted)
                except Exception:
                    log.exception("cannot change the %s port to %s", transport, wanted)
        tls = {name: options[name] for name in options if name.startswith("tls_")}
        try:
            await engine.set_tls_options(**tls)
        except Exception as error:
            if tls["tls_port"] is not None and _is_tls_failure(error):
                self._post("SIPApplicationFailedToStartTLS", error=error)
            else:
                log.exception("cannot apply the TLS settings")
