"""Temporary stand-in for sipsimple.notification (the real module replaces it at merge).

Only the API the configuration code relies on: a singleton NotificationCenter that
delivers synchronously, NotificationData(**fields) and Notification.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["Any", "Notification", "NotificationCenter", "NotificationData"]


class NotificationData:
    """A bag of named fields."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in self.__dict__.items())
        return f"{type(self).__name__}({fields})"


@dataclass
class Notification:
    name: str
    sender: Any
    data: NotificationData
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))


class NotificationCenter:
    """Process-wide singleton; observers are called synchronously in the posting thread."""

    _instance: NotificationCenter | None = None
    _instance_lock = threading.Lock()

    def __new__(cls) -> NotificationCenter:
        with cls._instance_lock:
            if cls._instance is None:
                instance = super().__new__(cls)
                instance._observers = []
                instance._lock = threading.Lock()
                cls._instance = instance
            return cls._instance

    _observers: list[tuple[Any, Any, Any]]
    _lock: threading.Lock

    def add_observer(self, observer: Any, name: Any = Any, sender: Any = Any) -> None:
        with self._lock:
            self._observers.append((observer, name, sender))

    def remove_observer(self, observer: Any, name: Any = Any, sender: Any = Any) -> None:
        with self._lock:
            self._observers.remove((observer, name, sender))

    def post_notification(
        self, name: str, sender: Any = None, data: NotificationData | None = None
    ) -> None:
        notification = Notification(name, sender, data if data is not None else NotificationData())
        with self._lock:
            observers = list(self._observers)
        for observer, wanted_name, wanted_sender in observers:
            if wanted_name is not Any and wanted_name != name:
                continue
            if wanted_sender is not Any and wanted_sender is not sender:
                continue
            handler: Callable[[Notification], None] = getattr(
                observer, "handle_notification", observer
            )
            handler(notification)
