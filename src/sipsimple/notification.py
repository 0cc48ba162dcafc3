"""Temporary stand-in for sipsimple.notification (the real module is written elsewhere).

Only the API the lookup module uses: a singleton NotificationCenter with
post_notification / add_observer / remove_observer, NotificationData and Notification.
Delivery is synchronous and FIFO: a notification posted during delivery is queued.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any


class NotificationData(SimpleNamespace):
    """The data fields of a notification, as attributes."""


@dataclass(frozen=True)
class Notification:
    name: str
    sender: Any
    data: NotificationData


Observer = Callable[[Notification], None]
_ANY = object()


class NotificationCenter:
    """Delivers notifications to the observers registered for their name and sender."""

    _instance: NotificationCenter | None = None

    def __new__(cls) -> NotificationCenter:
        if cls._instance is None:
            instance = super().__new__(cls)
            instance._observers = []
            instance._queue = deque()
            instance._delivering = False
            cls._instance = instance
        return cls._instance

    def add_observer(self, observer: Observer, name: Any = _ANY, sender: Any = _ANY) -> None:
        self._observers.append((observer, name, sender))

    def remove_observer(self, observer: Observer, name: Any = _ANY, sender: Any = _ANY) -> None:
        self._observers.remove((observer, name, sender))

    def post_notification(
        self, name: str, sender: Any = None, data: NotificationData | None = None
    ) -> None:
        self._queue.append(Notification(name, sender, data or NotificationData()))
        if self._delivering:
            return
        self._delivering = True
        try:
            while self._queue:
                notification = self._queue.popleft()
                for observer, name_filter, sender_filter in list(self._observers):
                    if name_filter is not _ANY and name_filter != notification.name:
                        continue
                    if sender_filter is not _ANY and sender_filter is not notification.sender:
                        continue
                    try:
                        observer(notification)
                    except Exception:
                        logging.getLogger(__name__).exception("observer %r failed", observer)
        finally:
            self._delivering = False
