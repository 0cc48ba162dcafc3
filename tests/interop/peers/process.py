"""What every peer shares: its own temp directory, a log file, a bounded start, a sure stop.

A peer runs in its own session (process group), so stop() reaches the children
a daemon forks.  It is stopped at interpreter exit if a test forgot, and - when
started from the main thread - it gets SIGTERM from the kernel if the Python
process dies without running atexit (prctl PR_SET_PDEATHSIG; that signal
follows the thread that forked, so it is only asked for from the main thread).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Self

TEMPLATES = Path(__file__).with_name("templates")

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
_live: set[PeerProcess] = set()
_root: Path | None = None


class PeerStartError(RuntimeError):
    """A peer did not come up in time; the message holds its command line and log."""


def peers_root() -> Path:
    """The directory holding every peer's own directory for this Python process."""
    global _root
    if _root is None:
        _root = Path(tempfile.mkdtemp(prefix="sipsimple-peers-"))
    return _root


def render_template(name: str, values: Mapping[str, object]) -> str:
    """templates/<name> with each {{KEY}} replaced; a key missing from `values` is an error."""
    text = (TEMPLATES / name).read_text()

    def substitute(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"template {name} needs a value for {{{{{key}}}}}")
        return str(values[key])

    return re.sub(r"\{\{(\w+)\}\}", substitute, text)


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll `condition` until it is true (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _die_with_parent() -> None:
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class PeerProcess:
    """A third-party program started in its own directory with its output in `log_path`.

    Subclasses give `command()`, may write their configuration in `prepare()`,
    and say in `is_ready()` when the program serves.  start() waits at most
    `start_timeout` seconds for that, else stops it and raises PeerStartError
    with the log; a peer that fails to start keeps its directory until
    interpreter exit.  Usable as a context manager.
    """

    name = "peer"
    log_tail_chars = 6000

    def __init__(self, *, start_timeout: float = 10.0) -> None:
        self.start_timeout = start_timeout
        self.directory = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=peers_root()))
        self.log_path = self.directory / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    # -- for subclasses

    def command(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Write configuration files into self.directory before the program starts."""

    def is_ready(self) -> bool:
        """Whether the started program serves; polled until start_timeout."""
        return True

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    # -- lifecycle

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> Self:
        if self.process is not None:
            raise RuntimeError(f"{self.name} was already started")
        self.prepare()
        command = self.command()
        in_main_thread = threading.current_thread() is threading.main_thread()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=self.directory,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if in_main_thread else None,
            )
        _live.add(self)
        try:
            up = wait_for(lambda: not self.running or self.is_ready(), self.start_timeout)
        except BaseException:
            self._stop_process()
            raise
        if not up or not self.running:
            code = self.process.poll()
            self._stop_process()
            state = "did not come up" if code is None else f"exited with code {code}"
            raise PeerStartError(
                f"{self.name} {state} within {self.start_timeout:g} s\n"
                f"command: {' '.join(command)}\ndirectory: {self.directory}\n"
                f"--- log ---\n{self.log_tail()}"
            )
        return self

    def stop(self) -> None:
        """Terminate the program and its process group, then remove its directory."""
        self._stop_process()
        if not _keep_directories():
            shutil.rmtree(self.directory, ignore_errors=True)

    def _stop_process(self) -> None:
        """SIGTERM to the process group, SIGKILL after 3 s, and SIGKILL to any straggler."""
        process, self.process = self.process, None
        _live.discard(self)
        if process is None:
            return
        if process.returncode is None:
            _signal_group(process.pid, signal.SIGTERM)
            if not _exited(process.pid, 3.0):
                _signal_group(process.pid, signal.SIGKILL)
                _exited(process.pid, None)
        # Children a daemon forked may outlive the leader.  An unreaped leader
        # (or any member left) keeps the group id from being anyone else's.
        _signal_group(process.pid, signal.SIGKILL)
        process.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- diagnostics

    def log_text(self) -> str:
        """Everything the program wrote to stdout and stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, chars: int | None = None) -> str:
        text = self.log_text()
        limit = self.log_tail_chars if chars is None else chars
        return text if len(text) <= limit else "[...]\n" + text[-limit:]

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {state} in {self.directory}>"


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _exited(pid: int, timeout: float | None) -> bool:
    """Wait (at most `timeout` s, None: for ever) for `pid` to exit, leaving it unreaped."""
    flags = os.WEXITED | os.WNOWAIT
    deadline = None if timeout is None else time.monotonic() + timeout
    while os.waitid(os.P_PID, pid, flags | os.WNOHANG) is None:
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


@atexit.register
def _stop_all() -> None:
    for peer in list(_live):
        peer.stop()
    if _root is not None and not _keep_directories():
        shutil.rmtree(_root, ignore_errors=True)


def _keep_directories() -> bool:
    """SIPSIMPLE_KEEP_PEER_DIRS=1 keeps every peer's directory (configuration, logs) for a look."""
    return bool(os.environ.get("SIPSIMPLE_KEEP_PEER_DIRS"))
