"""SIPApplication: starts and stops the SDK's subsystems in the right order.

``start(storage)`` loads the configuration on the caller's thread (so a broken
settings file raises there, and the application can be started again), then
starts the SIP thread and returns at once; the rest of the start order runs on
the SIP thread and ends with SIPApplicationDidStart.  ``stop()`` returns at
once too; SIPApplicationDidEnd says when everything is down.  Unlike the
original, a stopped application can be started again in the same process.

Start order: configuration, SIP thread, SIPApplicationWillStart, the global
settings (an instance id is generated on first start), SIPApplicationDidStart.
Later layers (Engine, AccountManager, SessionManager, audio) join this order.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from enum import Enum
from typing import Protocol

from sipsimple.configuration import ConfigurationManager
from sipsimple.configuration.backend import ConfigurationBackend
from sipsimple.configuration.settings import SIPSimpleSettings
from sipsimple.notification import NotificationCenter, NotificationData
from sipsimple.threading import SIPThread, call_in_sip_thread, run_in_worker

__all__ = ["ApplicationState", "SIPApplication", "SIPApplicationError"]

log = logging.getLogger(__name__)


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


class SIPApplication:
    """The singleton that owns the SDK's subsystems (spec: SIPApplication)."""

    _instance: SIPApplication | None = None
    _instance_lock = threading.Lock()

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
                instance.storage = None
                SIPApplication._instance = instance
            return SIPApplication._instance

    _lock: threading.Lock
    _state: ApplicationState
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

    def _post(self, name: str, **data: object) -> None:
        NotificationCenter().post_notification(name, sender=self, data=NotificationData(**data))

    async def _initialize(self) -> None:
        self._post("SIPApplicationWillStart")
        settings = SIPSimpleSettings()
        if not settings.instance_id:
            settings.instance_id = f"urn:uuid:{uuid.uuid4()}"
            settings.save()
        with self._lock:
            if self._state is not ApplicationState.STARTING:
                return  # stop() came first; _shutdown reports the end
            self._state = ApplicationState.STARTED
        self._post("SIPApplicationDidStart")

    async def _shutdown(self) -> None:
        self._post("SIPApplicationWillEnd")
        try:
            await run_in_worker(ConfigurationManager().stop)
        except Exception:
            log.exception("the configuration did not stop cleanly")
        with self._lock:
            self._state = ApplicationState.STOPPED
        self._post("SIPApplicationDidEnd")
        SIPThread().stop()
