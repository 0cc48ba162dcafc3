"""A whole SIPApplication for one test, kept on loopback.

``loopback_storage(...)`` is a MemoryStorage whose settings keep every part of the
SDK on 127.0.0.1: the Engine listens there (UDP and TCP on free ports), the
DNSManager does not probe and asks ``nameservers`` (by default a port where nothing
answers), and the Bonjour account is disabled unless ``bonjour=True`` (then mDNS
runs on the loopback interface only, as it follows local_ip). ``accounts`` adds
stored accounts: ``{"alice@example.test": {"enabled": "true", ...}}``.

``loopback_file_storage(directory, ...)`` is the same in a FileStorage.

``async with running_application(storage) as app:`` starts the application on the
test's own loop (so the test may touch SIP-thread objects directly), waits for
SIPApplicationDidStart, and stops it at the end, waiting for SIPApplicationDidEnd.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from sipsimple.application import ApplicationState, SIPApplication
from sipsimple.configuration.backend.memory import MemoryBackend
from sipsimple.notification import NotificationQueue
from sipsimple.storage import FileStorage, MemoryStorage

__all__ = [
    "UNANSWERED_NAMESERVER",
    "loopback_configuration",
    "loopback_file_storage",
    "loopback_storage",
    "running_application",
]

UNANSWERED_NAMESERVER = "127.0.0.1:9"  # discard: nothing answers there


def loopback_configuration(
    *,
    transports: Iterable[str] = ("udp", "tcp"),
    nameservers: Iterable[str] = (UNANSWERED_NAMESERVER,),
    bonjour: bool = False,
    accounts: Mapping[str, Mapping[str, Any]] | None = None,
    settings: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The stored configuration (a dict for a backend) of a loopback-only SDK."""
    configuration: dict[str, Any] = {
        "SIPSimpleSettings": {
            "local_ip": "127.0.0.1",
            "sip": {"transport_list": list(transports)},
            "dns": {
                "probe_domain": None,
                "nameservers": list(nameservers),
                "fallback_nameservers": [],
            },
        },
        "Accounts": {"bonjour@local": {"enabled": "true" if bonjour else "false"}},
    }
    _merge(configuration["SIPSimpleSettings"], settings or {})
    for account_id, values in (accounts or {}).items():
        configuration["Accounts"][account_id] = copy.deepcopy(dict(values))
    return configuration


def loopback_storage(**options: Any) -> MemoryStorage:
    """A MemoryStorage holding loopback_configuration(**options)."""
    storage = MemoryStorage()
    storage.configuration_backend = MemoryBackend(loopback_configuration(**options))
    return storage


def loopback_file_storage(directory: str | os.PathLike[str], **options: Any) -> FileStorage:
    """A FileStorage in ``directory``, its settings file written with
    loopback_configuration(**options) unless it exists already."""
    storage = FileStorage(directory)
    if not os.path.exists(os.path.join(storage.directory, "config")):
        backend = storage.configuration_backend
        backend.load()  # a backend writes only what it has loaded (here: nothing)
        backend.save(loopback_configuration(**options))
    return storage


@contextlib.asynccontextmanager
async def running_application(
    storage: MemoryStorage | None = None, timeout: float = 10.0
) -> AsyncIterator[SIPApplication]:
    """SIPApplication started on the running loop for the duration of the block."""
    app = SIPApplication()
    with NotificationQueue(sender=app) as queue:
        app.start(storage or loopback_storage(), loop=asyncio.get_running_loop())
        try:
            await queue.wait_for("SIPApplicationDidStart", timeout=timeout)
        except BaseException:
            await _stop(app, timeout)
            raise
    try:
        yield app
    finally:
        await _stop(app, timeout)


async def _stop(app: SIPApplication, timeout: float) -> None:
    with NotificationQueue(name="SIPApplicationDidEnd", sender=app) as queue:
        app.stop()
        if app.state is not ApplicationState.STOPPED:
            await queue.wait_for("SIPApplicationDidEnd", timeout=timeout)


def _merge(target: dict[str, Any], changes: Mapping[str, Any]) -> None:
    for name, value in changes.items():
        if isinstance(value, Mapping):
            _merge(target.setdefault(name, {}), value)
        else:
            target[name] = value
