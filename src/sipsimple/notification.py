"""Notifications: how every part of the SDK tells the application what happened.

A sender posts a named notification; every observer registered for that name
(or for ``Any`` name) and that sender (or ``Any`` sender) is called with a
:class:`Notification`.  The spec's notifications carry their fields in
``notification.data`` (a :class:`NotificationData`), e.g. ``data.code``; the
sender fills them, ``data.timestamp`` included (``notification.timestamp`` is
set by the center).

Delivery model
    * Synchronous, on the posting thread, in the order notifications are posted.
    * Never re-entrant: a notification posted while the same thread is
      delivering another one is queued on that thread and delivered, to all its
      observers, once the current one has been delivered to all of its own.
    * Each matching observer is called once per notification, in the order the
      observers first registered.
    * The set of observers of a notification is taken when its delivery starts:
      an observer added during a delivery does not get that notification (it does
      get those delivered after, including ones already queued); an observer
      removed during a delivery is not called from then on.
    * Different threads deliver concurrently.  Registrations are changed under a
      lock and copied on write, so delivery reads a snapshot and never holds the
      lock while it calls observers.
    * An observer that raises is logged (logger ``sipsimple.notification``, with
      the traceback) and delivery goes on to the other observers; the poster
      never sees the exception.

Observers are objects with a ``handle_notification(notification)`` method or
plain callables (functions, bound methods) taking the notification.  They are
identified by identity (a bound method by its object and function), so
``remove_observer(obj.method)`` finds ``add_observer(obj.method)``.  Senders are
matched by identity too; a registration holds its sender strongly.  With
``weak=True`` the center holds the observer weakly and drops its registrations
once it is collected.

Helpers
    :class:`ObserverOnLoop`
        ``add_observer(ObserverOnLoop(observer, loop), name)`` delivers on an
        asyncio loop (``call_soon_threadsafe``), e.g. the application's own loop.
    :class:`ObserverOnThread`
        ``ObserverOnThread(observer, call_soon)`` hands each delivery to
        ``call_soon`` (``executor.submit``, ``queue.put``, a GUI toolkit's
        "call after"), which runs it on the thread it owns.
    Wrappers compare equal when they wrap the same observer for the same target,
    so ``remove_observer(ObserverOnLoop(observer, loop), name)`` removes the
    registration made with another such wrapper.  Notifications already handed
    to the target are still delivered after the removal.
    :class:`NotificationQueue`
        For asyncio code: register at once, act, then await what arrives::

            with NotificationQueue(sender=session) as queue:
                session.connect(...)
                notification = await queue.wait_for("SIPSessionDidStart", timeout=5)
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from itertools import count
from types import BuiltinMethodType, MethodType
from typing import Final, Protocol

__all__ = [
    "Any",
    "IObserver",
    "Notification",
    "NotificationCenter",
    "NotificationData",
    "NotificationQueue",
    "ObserverOnLoop",
    "ObserverOnThread",
]

log = logging.getLogger("sipsimple.notification")


class _AnyType:
    """The wildcard: matches every name or every sender."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Any"

    def __reduce__(self) -> str:
        return "Any"


Any: Final = _AnyType()


class IObserver(Protocol):
    def handle_notification(self, notification: Notification) -> None: ...


ObserverType = IObserver | Callable[["Notification"], object]


class NotificationData:
    """The fields of a notification, as attributes: ``NotificationData(code=200).code``."""

    def __init__(self, **fields: object) -> None:
        self.__dict__.update(fields)

    def __repr__(self) -> str:
        fields = ", ".join(f"{key}={value!r}" for key, value in self.__dict__.items())
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NotificationData):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # mutable, like a dict


class Notification:
    """One posted notification; ``timestamp`` is when it was posted (UTC).

    The spec gives every notification a ``timestamp`` data field: it is filled in
    here from the posting time unless the sender set one itself.
    """

    __slots__ = ("data", "name", "sender", "timestamp")

    def __init__(self, name: str, sender: object, data: NotificationData) -> None:
        self.name = name
        self.sender = sender
        self.data = data
        self.timestamp = datetime.now(UTC)
        data.__dict__.setdefault("timestamp", self.timestamp)

    def __repr__(self) -> str:
        return f"Notification({self.name!r}, sender={self.sender!r}, data={self.data!r})"


def _observer_key(observer: object) -> object:
    """What identifies an observer: its identity, or its parts' for methods and wrappers."""
    if isinstance(observer, MethodType):
        return (id(observer.__self__), id(observer.__func__))
    if isinstance(observer, BuiltinMethodType):  # e.g. queue.put
        return (id(observer.__self__), observer.__name__)
    if isinstance(observer, _Relay):
        return observer._key
    return id(observer)


def _callback_of(observer: object) -> Callable[[Notification], object]:
    handler = getattr(observer, "handle_notification", None)
    if handler is not None:
        return handler
    if callable(observer):
        return observer
    raise TypeError(
        f"observer {observer!r} must have a handle_notification(notification) method or be callable"
    )


class _Registration:
    """One (observer, name, sender) registration; ``active`` goes False on removal."""

    __slots__ = ("active", "callback", "observer_key", "ref", "sender", "seq")

    def __init__(
        self,
        observer_key: object,
        seq: int,
        sender: object,
        callback: Callable[[Notification], object] | None,
        ref: Callable[[], Callable[[Notification], object] | None] | None,
    ) -> None:
        self.observer_key = observer_key
        self.seq = seq
        self.sender = sender  # pins id(sender) while registered
        self.callback = callback
        self.ref = ref
        self.active = True


_ANY_ID: Final = id(Any)
_MAX_CACHED_MATCHES: Final = 4096


class _DeliveryState(threading.local):
    def __init__(self) -> None:
        self.queue: deque[Notification] = deque()
        self.delivering = False


class NotificationCenter:
    """The process-wide notification center (``NotificationCenter() is NotificationCenter()``)."""

    _instance: NotificationCenter | None = None
    _instance_lock = threading.Lock()

    def __new__(cls) -> NotificationCenter:
        instance = cls._instance
        if instance is None:
            with cls._instance_lock:
                instance = cls._instance
                if instance is None:
                    instance = super().__new__(cls)
                    instance._setup()
                    cls._instance = instance
        return instance

    def _setup(self) -> None:
        self._lock = threading.Lock()
        # (name or Any, id(sender) or id(Any)) -> registrations.  Tuples, replaced and never
        # mutated, so that a delivery in progress keeps its snapshot.
        self._registry: dict[tuple[object, int], tuple[_Registration, ...]] = {}
        # The registrations a notification matches, in delivery order.  Delivery reads these
        # caches without the lock; they are filled and invalidated under the lock, only where
        # a registration changed (sessions add and remove observers for each of their
        # objects all the time).  A sender no registration names (most are new objects)
        # matches what its name does: name -> registrations.
        self._by_name: dict[str, tuple[_Registration, ...]] = {}
        # The others: id(sender) -> name -> registrations; and how many registry keys name
        # each such sender (a registration pins its sender, so such an id is not reused).
        self._by_sender: dict[int, dict[str, tuple[_Registration, ...]]] = {}
        self._sender_keys: dict[int, int] = {}
        self._keys_by_observer: dict[object, set[tuple[object, int]]] = {}
        self._seq = count()
        self._dead: list[object] = []  # observer keys of collected weak observers
        self._state = _DeliveryState()

    def add_observer(
        self,
        observer: ObserverType,
        name: str | _AnyType = Any,
        sender: object = Any,
        *,
        weak: bool = False,
    ) -> None:
        """Register ``observer`` for ``name`` from ``sender``; registering twice does nothing."""
        _check_name(name)
        callback = _callback_of(observer)
        observer_key = _observer_key(observer)
        key = (name, id(sender))
        with self._lock:
            self._purge_dead()
            registrations = self._registry.get(key, ())
            if any(r.observer_key == observer_key for r in registrations):
                return
            if weak:
                ref = self._weak_ref(observer, observer_key)
                registration = _Registration(observer_key, next(self._seq), sender, None, ref)
            else:
                registration = _Registration(observer_key, next(self._seq), sender, callback, None)
            self._set(key, (*registrations, registration))
            self._keys_by_observer.setdefault(observer_key, set()).add(key)

    def remove_observer(
        self, observer: ObserverType, name: str | _AnyType = Any, sender: object = Any
    ) -> None:
        """Remove exactly this registration (``Any`` means the wildcard one); KeyError if absent."""
        if not self._remove(observer, name, sender):
            raise KeyError(f"{observer!r} is not registered for name={name!r}, sender={sender!r}")

    def discard_observer(
        self, observer: ObserverType, name: str | _AnyType = Any, sender: object = Any
    ) -> None:
        """Like :meth:`remove_observer`, silent when the registration is absent."""
        self._remove(observer, name, sender)

    def purge_observer(self, observer: ObserverType) -> None:
        """Remove every registration of ``observer``."""
        observer_key = _observer_key(observer)
        with self._lock:
            self._purge_dead()
            for key in self._keys_by_observer.pop(observer_key, ()):
                self._drop(key, observer_key)

    def post_notification(
        self, name: str, sender: object = None, data: NotificationData | None = None
    ) -> None:
        """Deliver a notification now, or after the one this thread is delivering."""
        if not isinstance(name, str):
            raise TypeError(f"notification name must be a str, not {name!r}")
        if sender is Any:
            raise ValueError("Any is a wildcard for observers, not a sender")
        state = self._state
        if state.delivering:
            data = NotificationData() if data is None else data
            state.queue.append(Notification(name, sender, data))
            return
        registrations = self._registrations(name, sender)
        if not registrations:
            return  # nobody to tell: no Notification to make
        state.delivering = True
        try:
            data = NotificationData() if data is None else data
            self._deliver(Notification(name, sender, data), registrations)
            queue = state.queue
            while queue:
                notification = queue.popleft()
                self._deliver(
                    notification, self._registrations(notification.name, notification.sender)
                )
        finally:
            state.delivering = False

    def _registrations(self, name: str, sender: object) -> tuple[_Registration, ...]:
        """The registrations a notification goes to, from the cache when it has them."""
        if self._dead:
            with self._lock:
                self._purge_dead()
        sender_id = id(sender)
        if sender_id in self._sender_keys:
            by_name = self._by_sender.get(sender_id)
            registrations = by_name.get(name) if by_name is not None else None
        else:
            registrations = self._by_name.get(name)
        if registrations is None:
            registrations = self._match(name, sender_id)
        return registrations

    def _deliver(
        self, notification: Notification, registrations: tuple[_Registration, ...]
    ) -> None:
        for registration in registrations:
            if not registration.active:
                continue
            ref = registration.ref
            callback = registration.callback if ref is None else ref()
            if callback is None:
                continue
            try:
                callback(notification)
            except Exception:
                log.exception("observer %r failed to handle %r", callback, notification)

    def _match(self, name: str, sender_id: int) -> tuple[_Registration, ...]:
        """The registrations matching (name, id(sender)), cached until registrations change."""
        with self._lock:
            get = self._registry.get
            found = [
                registrations
                for registrations in (
                    get((name, sender_id)),
                    get((name, _ANY_ID)),
                    get((Any, sender_id)),
                    get((Any, _ANY_ID)),
                )
                if registrations
            ]
            if not found:
                matched: tuple[_Registration, ...] = ()
            elif len(found) == 1:
                matched = found[0]
            else:
                matched = _merge(found)
            if sender_id in self._sender_keys:
                self._by_sender.setdefault(sender_id, {})[name] = matched
            else:
                if len(self._by_name) >= _MAX_CACHED_MATCHES:
                    self._by_name.clear()
                self._by_name[name] = matched
        return matched

    def _set(self, key: tuple[object, int], registrations: tuple[_Registration, ...]) -> None:
        """Replace the registrations under ``key`` and forget the matches they were part
        of; the lock is held."""
        existed = key in self._registry
        if registrations:
            self._registry[key] = registrations
        else:
            del self._registry[key]
        name, sender_id = key
        if sender_id != _ANY_ID:
            if not existed:
                self._sender_keys[sender_id] = self._sender_keys.get(sender_id, 0) + 1
            elif not registrations:
                left = self._sender_keys[sender_id] - 1
                if left:
                    self._sender_keys[sender_id] = left
                else:
                    del self._sender_keys[sender_id]
            by_name = self._by_sender.get(sender_id)
            if by_name is not None:
                if name is Any or sender_id not in self._sender_keys:
                    del self._by_sender[sender_id]
                else:
                    by_name.pop(name, None)  # type: ignore[call-overload]
        elif name is Any:
            self._by_name.clear()
            self._by_sender.clear()
        else:
            self._by_name.pop(name, None)  # type: ignore[call-overload]
            for by_name in self._by_sender.values():
                by_name.pop(name, None)  # type: ignore[call-overload]

    def _remove(self, observer: ObserverType, name: str | _AnyType, sender: object) -> bool:
        _check_name(name)
        observer_key = _observer_key(observer)
        key = (name, id(sender))
        with self._lock:
            self._purge_dead()
            if not self._drop(key, observer_key):
                return False
            keys = self._keys_by_observer[observer_key]
            keys.discard(key)
            if not keys:
                del self._keys_by_observer[observer_key]
            return True

    def _drop(self, key: tuple[object, int], observer_key: object, dead_only: bool = False) -> bool:
        """Remove the observer's registration under ``key``; the lock is held."""
        registrations = self._registry.get(key, ())
        index = next(
            (
                i
                for i, r in enumerate(registrations)
                if r.observer_key == observer_key and (not dead_only or _is_dead(r))
            ),
            None,
        )
        if index is None:
            return False
        registrations[index].active = False
        self._set(key, registrations[:index] + registrations[index + 1 :])
        return True

    def _weak_ref(
        self, observer: object, observer_key: object
    ) -> Callable[[], Callable[[Notification], object] | None]:
        if isinstance(observer, _Relay):
            raise ValueError(
                "a wrapper is only referenced by the center: register it with weak=False"
            )
        dead = self._dead

        def collected(_ref: object) -> None:
            # May run in any thread, even inside a locked section: only record it.
            dead.append(observer_key)

        handler = getattr(observer, "handle_notification", None)
        if handler is not None:
            return weakref.WeakMethod(handler, collected)
        if isinstance(observer, MethodType):
            return weakref.WeakMethod(observer, collected)
        return weakref.ref(observer, collected)  # type: ignore[arg-type]

    def _purge_dead(self) -> None:
        """Drop registrations of collected weak observers; the lock is held."""
        while self._dead:
            observer_key = self._dead.pop()
            keys = self._keys_by_observer.get(observer_key, set())
            for key in list(keys):
                if self._drop(key, observer_key, dead_only=True):
                    keys.discard(key)
            if not keys:
                self._keys_by_observer.pop(observer_key, None)


def _is_dead(registration: _Registration) -> bool:
    return registration.ref is not None and registration.ref() is None


def _merge(found: list[tuple[_Registration, ...]]) -> tuple[_Registration, ...]:
    """Registrations from several keys, in registration order, each observer once."""
    merged = sorted((r for registrations in found for r in registrations), key=_seq_of)
    seen: set[object] = set()
    result = []
    for registration in merged:
        if registration.observer_key not in seen:
            seen.add(registration.observer_key)
            result.append(registration)
    return tuple(result)


def _seq_of(registration: _Registration) -> int:
    return registration.seq


def _check_name(name: object) -> None:
    if name is not Any and not isinstance(name, str):
        raise TypeError(f"notification name must be a str or Any, not {name!r}")


class _Relay:
    """Base of the wrappers that deliver an observer's notifications somewhere else."""

    __slots__ = ("_callback", "_key", "observer")

    def __init__(self, observer: ObserverType, target: object) -> None:
        self.observer = observer
        self._callback = _callback_of(observer)
        self._key = (type(self), _observer_key(observer), _observer_key(target))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Relay):
            return NotImplemented
        return self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def _run(self, notification: Notification) -> None:
        try:
            self._callback(notification)
        except Exception:
            log.exception("observer %r failed to handle %r", self.observer, notification)


class ObserverOnLoop(_Relay):
    """Delivers to ``observer`` on the asyncio ``loop`` (which may run in another thread)."""

    __slots__ = ("loop",)

    def __init__(self, observer: ObserverType, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(observer, loop)
        self.loop = loop

    def handle_notification(self, notification: Notification) -> None:
        self.loop.call_soon_threadsafe(self._run, notification)

    def __repr__(self) -> str:
        return f"ObserverOnLoop({self.observer!r}, {self.loop!r})"


class ObserverOnThread(_Relay):
    """Delivers to ``observer`` through ``call_soon(function)``, run later on its own thread.

    ``call_soon`` is e.g. ``executor.submit`` (an executor with one worker keeps
    the order), ``queue.put`` for a thread that calls what it takes from the
    queue, or a GUI toolkit's "call on the main thread".
    """

    __slots__ = ("call_soon",)

    def __init__(self, observer: ObserverType, call_soon: Callable[[Callable[[], None]], object]):
        super().__init__(observer, call_soon)
        self.call_soon = call_soon

    def handle_notification(self, notification: Notification) -> None:
        self.call_soon(partial(self._run, notification))

    def __repr__(self) -> str:
        return f"ObserverOnThread({self.observer!r}, {self.call_soon!r})"


class NotificationQueue:
    """Collects matching notifications for asyncio code, from the moment it is created.

    Notifications posted on the queue's loop are added at once; those posted on
    other threads are handed to the loop.  ``get`` and ``wait_for`` take from
    what has been collected so far, then wait for more; ``wait_for`` leaves the
    notifications it skips in the queue.  Use it as a context manager (or call
    :meth:`close`) so that it stops observing.
    """

    def __init__(
        self,
        name: str | _AnyType = Any,
        sender: object = Any,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.name = name
        self.sender = sender
        self.loop = asyncio.get_running_loop() if loop is None else loop
        self._items: deque[Notification] = deque()
        self._waiters: list[asyncio.Future[None]] = []
        NotificationCenter().add_observer(self, name, sender)

    def __enter__(self) -> NotificationQueue:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop collecting; what was collected can still be taken."""
        NotificationCenter().discard_observer(self, self.name, self.sender)

    def handle_notification(self, notification: Notification) -> None:
        if asyncio._get_running_loop() is self.loop:
            self._put(notification)
        else:
            self.loop.call_soon_threadsafe(self._put, notification)

    def _put(self, notification: Notification) -> None:
        self._items.append(notification)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def get(self, timeout: float | None = None) -> Notification:
        """The oldest collected notification, waiting up to ``timeout`` seconds for one."""
        return await self.wait_for(Any, timeout=timeout)

    async def wait_for(
        self,
        name: str | _AnyType,
        condition: Callable[[Notification], bool] | None = None,
        timeout: float | None = None,
    ) -> Notification:
        """The oldest collected ``name`` notification satisfying ``condition``.

        Raises TimeoutError (naming what was collected instead) after ``timeout`` seconds.
        """
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for index, notification in enumerate(self._items):
                        if (name is Any or notification.name == name) and (
                            condition is None or condition(notification)
                        ):
                            del self._items[index]
                            return notification
                    waiter = self.loop.create_future()
                    self._waiters.append(waiter)
                    await waiter
        except TimeoutError:
            waiting = [n.name for n in self._items]
            raise TimeoutError(
                f"no {name!r} notification within {timeout}s (collected instead: {waiting})"
            ) from None
