"""The `sipsimple` console program run as the user runs it, in subprocesses.

``sipsimple(home, "settings", ...)`` runs one command to its end. ``Program(home,
"listen", ...)`` starts one in the background: a thread collects its stdout lines,
``expect(pattern)`` waits for a line matching a regular expression, ``send(line)``
writes to its stdin. Every program gets ``HOME=home`` so that a test can check that
nothing is written outside the configuration directory it names.

``loopback_endpoint(home, config_dir, user, ...)`` configures an endpoint through
``sipsimple settings`` only: on 127.0.0.1, no DNS, no Bonjour, MSRP over TCP
straight to the peer, files received into ``config_dir/downloads``.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

__all__ = ["Program", "loopback_endpoint", "sipsimple"]

PROGRAM = [sys.executable, "-m", "sipsimple.cli.main"]


def _environment(home: Path) -> dict[str, str]:
    environment = dict(os.environ, HOME=str(home), PYTHONUNBUFFERED="1")
    source = str(Path(__file__).resolve().parents[2] / "src")
    environment["PYTHONPATH"] = os.pathsep.join(
        [source, *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    return environment


def sipsimple(home: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``sipsimple args...`` to its end."""
    return subprocess.run(
        [*PROGRAM, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_environment(home),
        stdin=subprocess.DEVNULL,
    )


def loopback_endpoint(
    home: Path,
    config_dir: Path,
    user: str,
    *,
    register: bool = False,
    outbound_proxy: str | None = None,
    password: str | None = None,
) -> None:
    """Configure ``user@example.test`` in ``config_dir`` with ``sipsimple settings``."""
    directory = str(config_dir)
    commands = [
        [
            "set",
            "local_ip",
            "127.0.0.1",
            "sip.transport_list",
            "udp,tcp",
            "dns.nameservers",
            "127.0.0.1:9",
            "dns.fallback_nameservers",
            "",
            "file_transfer.directory",
            str(config_dir / "downloads"),
            "audio.recordings_directory",
            str(config_dir / "recordings"),
            "--none",
            "dns.probe_domain",
        ],
        ["account", "set", "bonjour@local", "enabled", "false"],
        [
            "account",
            "add",
            f"{user}@example.test",
            *(["--password", password] if password else []),
            *(["--outbound-proxy", outbound_proxy] if outbound_proxy else []),
            *([] if register else ["--no-register"]),
        ],
        [
            "account",
            "set",
            f"{user}@example.test",
            "msrp.transport",
            "tcp",
            "msrp.connection_model",
            "acm",
        ],
    ]
    for command in commands:
        result = sipsimple(home, "settings", "--config-dir", directory, *command)
        assert result.returncode == 0, (command, result.stdout, result.stderr)


class Program:
    """A `sipsimple` program running in the background."""

    def __init__(self, home: Path, *args: str) -> None:
        self.args = args
        self.process = subprocess.Popen(
            [*PROGRAM, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_environment(home),
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.stderr = ""

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def expect(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        """The first line from now on that matches ``pattern`` (AssertionError if none
        comes in time or the program ends first)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._queue.get(timeout=max(remaining, 0.01))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r}:\n{self.output}") from None
            if line is None:
                self._queue.put(None)
                raise AssertionError(
                    f"the program ended before a line matching {pattern!r}:\n{self.output}"
                    f"\n{self._stderr()}"
                )
            self.lines.append(line)
            match = re.search(pattern, line)
            if match is not None:
                return match

    def _stderr(self) -> str:
        if self.process.poll() is not None and self.process.stderr is not None:
            self.stderr += self.process.stderr.read()
        return self.stderr

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def close_stdin(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()

    def wait(self, timeout: float = 30) -> int:
        """Wait for the end; the rest of stdout goes into ``lines``, stderr into
        ``stderr``."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"{self.args} did not end:\n{self.output}") from None
        self._reader.join(5)
        while (line := self._queue.get_nowait() if not self._queue.empty() else None) is not None:
            self.lines.append(line)
        self._stderr()
        return code

    def stop(self) -> int:
        """SIGTERM (the program hangs up and stops cleanly), then wait."""
        if self.process.poll() is None:
            self.process.terminate()
        return self.wait()

    def __enter__(self) -> Program:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
