"""A second SDK endpoint in a subprocess, driven from a test.

The Engine (like the SIP thread and the notification center) is a singleton per
process, so a test that needs two SIP endpoints runs the second one in a child
Python process with its own SIP thread. :class:`RemoteSDK` starts that child and
talks to it over two ``multiprocessing.connection`` links on 127.0.0.1 (an
authenticated Listener with a random key):

- calls: ``remote.call("package.module:function", *args, **kwargs)`` runs the
  function in the child, on the child's SIP thread (so it may create and use core
  objects directly; a function that returns an awaitable, e.g. a coroutine function,
  is awaited there) and returns its result, or raises :class:`RemoteError` with the
  child's exception type, text and traceback. A module-level function object may be
  passed instead of the "module:function" text. Every call is bounded: ``timeout``
  (default: the RemoteSDK's ``call_timeout``) raises TimeoutError in the test while
  the child keeps going (a late result is dropped). Arguments and results travel by
  pickle: keep them to plain values, SIP headers and URIs (results that cannot be
  pickled come back as their repr).
- notifications: every notification posted in the child (except the names in
  ``exclude``, by default SIPEngineSIPTrace and SIPEngineLog) is sent back as a
  :class:`RemoteNotification` with ``name``, ``sender`` (the sender's repr),
  ``sender_type`` (its class name) and ``data`` (a dict of the data fields, each
  value itself when picklable, else its repr). ``remote.wait_for(name, condition,
  timeout)`` returns (and consumes) the first one collected that matches;
  ``remote.notifications`` lists all of them; ``clear()`` forgets them.

A test whose own Engine runs on the test's loop (``local_engine``) must not block
that loop while the child talks to it: it uses ``await remote.async_call(...)`` and
``await remote.async_wait_for(...)``, the same calls run in a worker thread.

Life cycle: ``start()`` returns when the child is connected and its SIP thread
runs; ``stop()`` asks it to stop its Engine and SIP thread and exit, waits
``stop_timeout`` seconds, then kills it. Use it as a context manager. A child whose
parent dies exits on its own (its links break). The child's output goes to a
file whose tail :meth:`RemoteSDK.log_tail` gives (put it in assertion messages); it
is removed at stop().

Example::

    with RemoteSDK() as bob:
        ports = bob.call("tests.support.sip:start_engine", udp_port=0)
        ... send something to ("127.0.0.1", ports["udp"]) ...
        note = bob.wait_for("SIPEngineGotMessage", timeout=5)
        assert note.data["body"] == b"hello"

Run the child with ``python -m tests.support.remote`` only through this class.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import pickle
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import Any

__all__ = ["RemoteError", "RemoteNotification", "RemoteSDK"]

ROOT = Path(__file__).resolve().parents[2]
_KEY_VARIABLE = "SIPSIMPLE_REMOTE_KEY"
DEFAULT_EXCLUDE = ("SIPEngineSIPTrace", "SIPEngineLog")


class RemoteError(Exception):
    """A call failed in the child; ``kind`` is the exception's class name."""

    def __init__(self, kind: str, text: str, child_traceback: str) -> None:
        super().__init__(f"{kind}: {text}\n--- in the child:\n{child_traceback}")
        self.kind = kind
        self.text = text
        self.child_traceback = child_traceback


@dataclass
class RemoteNotification:
    name: str
    sender: str
    sender_type: str
    data: dict[str, Any] = field(default_factory=dict)


def _function_path(function: str | Callable[..., Any]) -> str:
    if isinstance(function, str):
        if ":" not in function:
            raise ValueError(f"a function is named 'package.module:function', not {function!r}")
        return function
    return f"{function.__module__}:{function.__qualname__}"


class RemoteSDK:
    """The driver of one child SDK process; see the module docstring."""

    def __init__(
        self,
        *,
        call_timeout: float = 10.0,
        start_timeout: float = 20.0,
        stop_timeout: float = 10.0,
        exclude: Iterable[str] = DEFAULT_EXCLUDE,
    ) -> None:
        self.call_timeout = call_timeout
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.exclude = tuple(exclude)
        self.notifications: list[RemoteNotification] = []
        self._unread: list[RemoteNotification] = []
        self._condition = threading.Condition()
        self._process: subprocess.Popen[bytes] | None = None
        self._calls: Connection | None = None
        self._events: Connection | None = None
        self._reader: threading.Thread | None = None
        self._next_id = 0
        self._call_lock = threading.Lock()
        descriptor, name = tempfile.mkstemp(prefix="sipsimple-remote-", suffix=".log")
        os.close(descriptor)
        self._log_path = Path(name)

    # -- life cycle

    def start(self) -> RemoteSDK:
        if self._process is not None:
            raise RuntimeError("the remote SDK is already started")
        key = secrets.token_bytes(32)
        with Listener(("127.0.0.1", 0), authkey=key) as listener:
            host, port = listener.address
            environment = dict(os.environ)
            environment[_KEY_VARIABLE] = key.hex()
            paths = [str(ROOT / "src"), str(ROOT)]
            if environment.get("PYTHONPATH"):
                paths.append(environment["PYTHONPATH"])
            environment["PYTHONPATH"] = os.pathsep.join(paths)
            with self._log_path.open("wb") as log:
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "tests.support.remote", host, str(port), *self.exclude],
                    cwd=ROOT,
                    env=environment,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            self._calls = self._accept(listener)
            self._events = self._accept(listener)
        self._reader = threading.Thread(target=self._read_events, name="RemoteSDK", daemon=True)
        self._reader.start()
        self.call(_ping, timeout=self.start_timeout)
        return self

    def _accept(self, listener: Listener) -> Connection:
        deadline = time.monotonic() + self.start_timeout
        listener._listener._socket.settimeout(1.0)  # type: ignore[attr-defined]
        while True:
            try:
                return listener.accept()
            except TimeoutError:
                if self._process is not None and self._process.poll() is not None:
                    self._reap()
                    raise RuntimeError(
                        f"the remote SDK exited at start:\n{self.log_tail()}"
                    ) from None
                if time.monotonic() > deadline:
                    self._kill()
                    raise TimeoutError(
                        f"the remote SDK did not connect within {self.start_timeout} s:\n"
                        f"{self.log_tail()}"
                    ) from None

    def stop(self) -> None:
        process = self._process
        if process is None:
            return
        try:
            if self._calls is not None and process.poll() is None:
                self._calls.send(("stop",))
            process.wait(self.stop_timeout)
        except (OSError, EOFError, subprocess.TimeoutExpired):
            self._kill()
        finally:
            self._reap()
            self._log_path.unlink(missing_ok=True)

    def _kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(5)

    def _reap(self) -> None:
        for connection in (self._calls, self._events):
            if connection is not None:
                connection.close()
        if self._reader is not None:
            self._reader.join(2)
        self._process = self._calls = self._events = self._reader = None

    def __enter__(self) -> RemoteSDK:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the child's output (stdout and stderr)."""
        try:
            text = self._log_path.read_bytes().decode(errors="replace")
        except OSError:
            return ""
        return text[-chars:]

    # -- calls

    def call(
        self,
        function: str | Callable[..., Any],
        /,
        *args: Any,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run ``function(*args, **kwargs)`` on the child's SIP thread; its result."""
        if self._calls is None:
            raise RuntimeError("the remote SDK is not running")
        timeout = self.call_timeout if timeout is None else timeout
        with self._call_lock:
            self._next_id += 1
            call_id = self._next_id
            self._calls.send(("call", call_id, _function_path(function), args, kwargs))
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not self._calls.poll(left):
                    raise TimeoutError(
                        f"{_function_path(function)} did not return within {timeout} s\n"
                        f"{self.log_tail(2000)}"
                    )
                try:
                    reply = self._calls.recv()
                except EOFError:
                    raise RuntimeError(
                        f"the remote SDK is gone (exit {self.returncode}):\n{self.log_tail()}"
                    ) from None
                if reply[1] != call_id:
                    continue  # the late answer of a call that timed out
                if reply[0] == "ok":
                    return reply[2]
                raise RemoteError(*reply[2:])

    # -- notifications

    def _read_events(self) -> None:
        events = self._events
        assert events is not None
        while True:
            try:
                notification = RemoteNotification(*events.recv())
            except (EOFError, OSError):
                return
            with self._condition:
                self.notifications.append(notification)
                self._unread.append(notification)
                self._condition.notify_all()

    def wait_for(
        self,
        name: str,
        condition: Callable[[RemoteNotification], bool] | None = None,
        timeout: float = 10.0,
    ) -> RemoteNotification:
        """The first collected ``name`` notification satisfying ``condition`` (consumed)."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while True:
                for index, notification in enumerate(self._unread):
                    if notification.name == name and (condition is None or condition(notification)):
                        del self._unread[index]
                        return notification
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [n.name for n in self._unread]
                    raise TimeoutError(
                        f"no {name} from the remote SDK within {timeout} s; got {seen}"
                    )
                self._condition.wait(left)

    async def async_wait_for(
        self,
        name: str,
        condition: Callable[[RemoteNotification], bool] | None = None,
        timeout: float = 10.0,
    ) -> RemoteNotification:
        """wait_for() in a worker thread, for tests whose own loop must keep running."""
        return await asyncio.to_thread(self.wait_for, name, condition, timeout)

    async def async_call(
        self,
        function: str | Callable[..., Any],
        /,
        *args: Any,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        """call() in a worker thread, for tests whose own loop must keep running."""
        return await asyncio.to_thread(self.call, function, *args, timeout=timeout, **kwargs)

    def clear(self) -> None:
        with self._condition:
            self._unread.clear()


def _ping() -> str:
    return "pong"


# -- the child -------------------------------------------------------------------------


def _picklable(value: Any) -> Any:
    """``value`` if it survives a pickle round trip (the parent must be able to load it,
    or its reader thread would stop), else its repr."""
    try:
        pickle.loads(pickle.dumps(value))
    except Exception:
        return repr(value)
    return value


class _Forwarder:
    """Observes every notification of the child and sends it to the parent."""

    def __init__(self, connection: Connection, exclude: Iterable[str]) -> None:
        self.connection = connection
        self.exclude = frozenset(exclude)
        self.lock = threading.Lock()

    def handle_notification(self, notification: Any) -> None:
        if notification.name in self.exclude:
            return
        data = {key: _picklable(value) for key, value in vars(notification.data).items()}
        # A plain tuple: the child runs as __main__, so its classes would not unpickle.
        message = (
            notification.name,
            repr(notification.sender),
            type(notification.sender).__name__,
            data,
        )
        with self.lock:
            try:
                self.connection.send(message)
            except (OSError, ValueError):
                pass


def _resolve(path: str) -> Callable[..., Any]:
    module_name, _, qualname = path.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target  # type: ignore[no-any-return]


async def _run(function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    result = function(*args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


def _child(host: str, port: int, exclude: list[str]) -> None:
    from sipsimple.notification import NotificationCenter
    from sipsimple.threading import SIPThread, call_in_sip_thread, run_in_sip_thread

    key = bytes.fromhex(os.environ.pop(_KEY_VARIABLE))
    calls = Client((host, port), authkey=key)
    events = Client((host, port), authkey=key)
    SIPThread().start()
    NotificationCenter().add_observer(_Forwarder(events, exclude))
    reply_lock = threading.Lock()

    def reply(message: tuple[Any, ...]) -> None:
        with reply_lock:
            try:
                calls.send(message)
            except (OSError, ValueError):
                pass

    def done(call_id: int, future: Any) -> None:
        if future.cancelled():
            reply(("error", call_id, "CancelledError", "the call was cancelled", ""))
            return
        error = future.exception()
        if error is None:
            reply(("ok", call_id, _picklable(future.result())))
        else:
            text = "".join(traceback.format_exception(error))
            reply(("error", call_id, type(error).__name__, str(error), text))

    while True:
        try:
            message = calls.recv()
        except (EOFError, OSError):
            break
        if message[0] == "stop":
            break
        _, call_id, path, args, kwargs = message
        try:
            function = _resolve(path)
        except Exception as error:
            reply(("error", call_id, type(error).__name__, str(error), traceback.format_exc()))
            continue
        future = call_in_sip_thread(_run, function, args, kwargs)
        future.add_done_callback(lambda f, call_id=call_id: done(call_id, f))
    try:
        from sipsimple.core.engine import Engine

        if Engine().state == "started":
            run_in_sip_thread(Engine().stop)
    finally:
        SIPThread().stop()
        calls.close()
        events.close()


if __name__ == "__main__":
    _child(sys.argv[1], int(sys.argv[2]), sys.argv[3:])
