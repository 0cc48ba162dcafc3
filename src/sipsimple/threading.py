"""The SIP thread: the one asyncio event loop that owns all core and middleware state.

Model
    * :class:`SIPThread` (a singleton) runs the loop.  ``SIPThread().start()``
      creates a loop in a dedicated daemon thread; ``SIPThread().start(loop)``
      adopts the application's own loop instead (no thread; the application
      keeps running it).  ``stop()`` ends it and ``start()`` may be called again.
    * Core and middleware objects are only touched on that loop.  Public methods,
      callable from any thread, check their arguments at once and hand the work
      over with :func:`call_in_sip_thread` (fire and forget) or the
      :func:`on_sip_thread` decorator; results arrive as notifications.
    * :func:`run_in_sip_thread` waits for the result, for code outside the SIP
      thread that needs it.  Called on the SIP thread it raises RuntimeError: the
      loop would wait for itself.
    * Blocking work (disk, hashing large files) never runs on the loop:
      ``await run_in_worker(function, ...)`` runs it in a worker thread.
    * Failures of fire-and-forget work are logged (logger ``sipsimple.threading``,
      with the traceback) and set on the returned future: never lost silently.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

__all__ = [
    "SIPThread",
    "call_in_sip_thread",
    "is_sip_thread",
    "on_sip_thread",
    "run_in_sip_thread",
    "run_in_worker",
    "sip_loop",
    "spawn",
]

log = logging.getLogger("sipsimple.threading")

P = ParamSpec("P")
T = TypeVar("T")


class SIPThread:
    """Runs (or adopts) the SIP event loop (``SIPThread() is SIPThread()``)."""

    _instance: SIPThread | None = None
    _instance_lock = threading.Lock()

    def __new__(cls) -> SIPThread:
        instance = cls._instance
        if instance is None:
            with cls._instance_lock:
                instance = cls._instance
                if instance is None:
                    instance = super().__new__(cls)
                    instance._lock = threading.Lock()
                    instance._loop = None
                    instance._thread = None
                    instance._tasks = set()
                    cls._instance = instance
        return instance

    _lock: threading.Lock
    _loop: asyncio.AbstractEventLoop | None
    _thread: threading.Thread | None
    _tasks: set[asyncio.Task[Any]]

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The SIP loop, or None when stopped."""
        return self._loop

    @property
    def is_running(self) -> bool:
        return self._loop is not None

    @property
    def owns_loop(self) -> bool:
        """True when the loop runs in our own thread, False when adopted (or stopped)."""
        return self._thread is not None

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start the SIP loop in a new daemon thread, or adopt ``loop`` (no thread)."""
        with self._lock:
            if self._loop is not None:
                raise RuntimeError("the SIP thread is already running; stop() it first")
            if loop is not None:
                if loop.is_closed():
                    raise ValueError("cannot adopt a closed event loop")
                self._loop = loop
                return
            loop = asyncio.new_event_loop()
            started = threading.Event()
            thread = threading.Thread(
                target=self._run, args=(loop, started), name="SIPThread", daemon=True
            )
            thread.start()
            started.wait()
            self._loop = loop
            self._thread = thread

    def stop(self) -> None:
        """Stop the SIP loop.

        For our own loop: cancel the tasks left on it, close it and join the
        thread (called on the SIP thread itself it only asks the loop to stop).
        For an adopted loop: cancel the tasks we started on it and let it go; the
        application keeps its loop.
        """
        with self._lock:
            loop, thread = self._loop, self._thread
            if loop is None:
                return
            self._loop = self._thread = None
            tasks, self._tasks = self._tasks, set()
        if thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            if thread is not threading.current_thread():
                thread.join()
        elif asyncio._get_running_loop() is loop or not loop.is_running():
            for task in tasks:
                task.cancel()
        else:
            asyncio.run_coroutine_threadsafe(_cancel(tasks), loop).result()

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(started.set)
        try:
            loop.run_forever()
            # Tasks may start others while they are cancelled: a few rounds end them all.
            for _ in range(3):
                if tasks := asyncio.all_tasks(loop):
                    loop.run_until_complete(_cancel(tasks))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _cancel(tasks: set[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


_sip_thread = SIPThread()


def sip_loop() -> asyncio.AbstractEventLoop:
    """The running SIP loop; RuntimeError when the SIP thread is not started."""
    loop = _sip_thread.loop
    if loop is None:
        raise RuntimeError("the SIP thread is not running: call SIPThread().start() first")
    return loop


def is_sip_thread() -> bool:
    """True when called from code running on the SIP loop."""
    loop = _sip_thread.loop
    return loop is not None and asyncio._get_running_loop() is loop


def spawn(coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Run ``coroutine`` as a task on the SIP loop, from any thread; failures are logged."""
    future = _submit(coroutine)
    future.add_done_callback(_log_failure)
    return future


def call_in_sip_thread(
    function: Callable[P, T | Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
) -> concurrent.futures.Future[T]:
    """Call ``function`` on the SIP loop soon (awaiting it if it returns an awaitable).

    Returns at once with a future the caller may ignore: a failure is logged and
    set on it.  Calls made from one thread run in the order they were made.
    """
    return spawn(_call(function, args, kwargs))


def run_in_sip_thread(
    function: Callable[P, T | Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
) -> T:
    """Call ``function`` on the SIP loop and wait for its result (or exception)."""
    if is_sip_thread():
        raise RuntimeError(
            f"run_in_sip_thread({function!r}) called on the SIP thread would wait for itself:"
            " call the function directly, or use call_in_sip_thread"
        )
    return _submit(_call(function, args, kwargs)).result()


def on_sip_thread(method: Callable[P, T]) -> Callable[P, T | concurrent.futures.Future[T]]:
    """Decorator: run ``method`` on the SIP thread.

    On the SIP thread the call is direct and returns the method's result;
    elsewhere it is handed over with :func:`call_in_sip_thread` and returns its
    future.
    """

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T | concurrent.futures.Future[T]:
        if is_sip_thread():
            return method(*args, **kwargs)
        return call_in_sip_thread(method, *args, **kwargs)  # type: ignore[arg-type]

    return wrapper


async def run_in_worker(function: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run blocking ``function`` in a worker thread and await its result."""
    return await asyncio.to_thread(function, *args, **kwargs)


async def _call(
    function: Callable[..., T | Awaitable[T]], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> T:
    result = function(*args, **kwargs)
    if inspect.isawaitable(result):
        return await result
    return result


def _submit(coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Start ``coroutine`` as a task on the SIP loop; its outcome goes to the returned future.

    Cancelling the future cancels the task; cancelling the task (``stop()``)
    cancels the future.
    """
    try:
        loop = sip_loop()
    except RuntimeError:
        coroutine.close()
        raise
    future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def start() -> None:
        if future.cancelled():
            coroutine.close()
            return
        task = loop.create_task(coroutine)
        _sip_thread._track(task)
        task.add_done_callback(functools.partial(_copy_outcome, future))
        future.add_done_callback(functools.partial(_cancel_task, loop, task))

    loop.call_soon_threadsafe(start)
    return future


def _copy_outcome(future: concurrent.futures.Future[T], task: asyncio.Task[T]) -> None:
    if task.cancelled():
        future.cancel()
        return
    if not future.set_running_or_notify_cancel():
        return
    exception = task.exception()
    if exception is None:
        future.set_result(task.result())
    else:
        future.set_exception(exception)


def _cancel_task(
    loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any], future: concurrent.futures.Future[Any]
) -> None:
    if future.cancelled() and not task.done():
        try:
            loop.call_soon_threadsafe(task.cancel)
        except RuntimeError:  # the loop is closed: its tasks are gone already
            pass


def _log_failure(future: concurrent.futures.Future[Any]) -> None:
    if future.cancelled():
        return
    exception = future.exception()
    if exception is not None:
        log.error("work handed to the SIP thread failed", exc_info=exception)
