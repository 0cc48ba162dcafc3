"""SIPp 3.6 runs: a built-in (uac, uas) or XML scenario, bounded in time, with counted results."""

from __future__ import annotations

import contextlib
import csv
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .ports import LOOPBACK, free_port, free_port_range, is_listening
from .process import TEMPLATES, PeerProcess

BUILT_IN = (
    "uac",
    "uas",
    "regexp",
    "3pcc-C-A",
    "3pcc-C-B",
    "3pcc-A",
    "3pcc-B",
    "branchc",
    "branchs",
)
_TRANSPORT_MODES = {"udp": "u1", "tcp": "t1"}


def scenario_file(name: str) -> Path:
    """A scenario shipped with the harness: templates/sipp-<name>.xml.

    "register" (digest: -au/-ap, keys={"domain": ...}), "options" (to the target
    itself), "message" (to -s user, keys={"text": ...}).
    """
    path = TEMPLATES / f"sipp-{name}.xml"
    if not path.exists():
        shipped = sorted(p.stem.removeprefix("sipp-") for p in TEMPLATES.glob("sipp-*.xml"))
        raise ValueError(f"no SIPp scenario {name!r}; shipped ones: {shipped}")
    return path


@dataclass(frozen=True)
class SippResult:
    """How a SIPp run ended: exit code, call counts from its statistics file, what it logged.

    `messages` is every SIP message it sent and received (-trace_msg), `errors`
    the unexpected ones (-trace_err), `log` the tail of its screen output.
    """

    returncode: int | None
    created: int
    successful: int
    failed: int
    timed_out: bool
    log: str
    errors: str
    messages: str

    @property
    def ok(self) -> bool:
        """Exit code 0 (every call succeeded), no failed call and not cut short."""
        return self.returncode == 0 and self.failed == 0 and not self.timed_out

    def describe(self) -> str:
        """A report for assertion messages."""
        return (
            f"SIPp exit code {self.returncode}, {self.created} calls: {self.successful} successful,"
            f" {self.failed} failed{', killed at its time limit' if self.timed_out else ''}\n"
            f"--- unexpected messages ---\n{_tail(self.errors, 4000)}\n"
            f"--- messages (last) ---\n{_tail(self.messages, 4000)}\n"
            f"--- log (last) ---\n{self.log}"
        )


class Sipp(PeerProcess):
    """One SIPp process: `scenario` is a built-in name ("uac", "uas", ...) or an XML file.

    With a `target` ("host:port" or a (host, port) pair) SIPp places calls; without
    one it waits for them (start() returns when its SIP port listens).  SIPp ends
    by itself after `calls` calls (-m; default 1 when placing calls, no limit when
    waiting) or after `timeout` seconds (-timeout, which then counts as a failure).
    run() starts it and waits for the result; for a background peer call
    start(), then finish() or stop().  scenario_file() names the XML scenarios
    shipped in templates/.
    """

    name = "sipp"

    def __init__(
        self,
        scenario: str | Path = "uac",
        target: str | tuple[str, int] | None = None,
        *,
        transport: str = "udp",
        service: str = "service",
        calls: int | None = None,
        rate: float | None = None,
        limit: int | None = None,
        call_duration_ms: int | None = None,
        timeout: float = 20.0,
        recv_timeout_ms: int | None = None,
        auth_username: str | None = None,
        auth_password: str | None = None,
        keys: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        start_timeout: float = 5.0,
    ) -> None:
        super().__init__(start_timeout=start_timeout)
        if isinstance(scenario, str) and scenario not in BUILT_IN:
            raise ValueError(f"scenario must be a built-in one {BUILT_IN} or a Path to an XML file")
        if transport not in _TRANSPORT_MODES:
            raise ValueError(
                f"transport must be one of {tuple(_TRANSPORT_MODES)}, not {transport!r}"
            )
        self.scenario = scenario
        self.target = f"{target[0]}:{target[1]}" if isinstance(target, tuple) else target
        self.transport = transport
        self.service = service
        self.calls = 1 if calls is None and self.target else calls
        self.rate = rate
        self.limit = limit
        self.call_duration_ms = call_duration_ms
        self.timeout = timeout
        self.recv_timeout_ms = recv_timeout_ms
        self.auth_username = auth_username
        self.auth_password = auth_password
        self.keys = dict(keys or {})
        self.extra_args = tuple(extra_args)
        self.port = free_port()
        self.media_port = free_port_range(4)[0]  # SIPp binds media_port and media_port + 2
        self.control_port = free_port()
        self.stat_path = self.directory / "stat.csv"
        self.messages_path = self.directory / "messages.log"
        self.errors_path = self.directory / "errors.log"
        self.result: SippResult | None = None

    @property
    def address(self) -> tuple[str, int]:
        return LOOPBACK, self.port

    def contact(self, user: str | None = None) -> str:
        """A SIP URI reaching this SIPp (e.g. to register it at Kamailio as a user's contact)."""
        return f"sip:{user or self.service}@{LOOPBACK}:{self.port};transport={self.transport}"

    # -- PeerProcess

    def command(self) -> list[str]:
        args = ["sipp"]
        if self.target:
            args.append(self.target)
        if isinstance(self.scenario, Path):
            args += ["-sf", str(self.scenario)]
        else:
            args += ["-sn", self.scenario]
        args += [
            "-t", _TRANSPORT_MODES[self.transport],
            "-i", LOOPBACK,
            "-bind_local",
            "-p", str(self.port),
            "-mi", LOOPBACK,
            "-mp", str(self.media_port),
            "-ci", LOOPBACK,
            "-cp", str(self.control_port),
            "-s", self.service,
            "-nostdin",
            "-timeout", f"{self.timeout:g}s",
            "-timeout_error",
            "-trace_stat", "-stf", str(self.stat_path), "-fd", "1",
            "-trace_msg", "-message_file", str(self.messages_path),
            "-trace_err", "-error_file", str(self.errors_path),
        ]  # fmt: skip
        options = {
            "-m": self.calls,
            "-r": self.rate,
            "-l": self.limit,
            "-d": self.call_duration_ms,
            "-recv_timeout": self.recv_timeout_ms,
            "-au": self.auth_username,
            "-ap": self.auth_password,
        }
        for option, value in options.items():
            if value is not None:
                args += [option, f"{value:g}" if isinstance(value, float) else str(value)]
        for key, value in self.keys.items():
            args += ["-key", key, value]
        return [*args, *self.extra_args]

    def is_ready(self) -> bool:
        return bool(self.target) or is_listening(self.port, self.transport)

    # -- results

    def wait(self, timeout: float | None = None) -> SippResult:
        """Wait for SIPp to end (at most `timeout`, default its own timeout + 5 s) and read it."""
        if self.process is None:
            raise RuntimeError("SIPp was not started")
        limit = self.timeout + 5 if timeout is None else timeout
        try:
            code: int | None = self.process.wait(limit)
            timed_out = False
        except subprocess.TimeoutExpired:
            code, timed_out = None, True
        self._stop_process()  # SIGTERM first: SIPp then writes its statistics
        self.result = self._read_result(code, timed_out)
        return self.result

    def finish(self, timeout: float = 6.0) -> SippResult:
        """End a background SIPp and read its result.

        SIGUSR1 makes SIPp take no new call and finish the ongoing ones, which
        counts them (the built-in uas waits 4 s after each call before it does);
        what is still running after `timeout` seconds is stopped (SIGTERM, on
        which SIPp writes its statistics too, ongoing calls counted as created only).
        """
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGUSR1)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout)
        return self.wait(0)

    def run(self) -> SippResult:
        """start(), wait() and stop(): the result of a run to completion."""
        try:
            self.start()
            return self.wait()
        finally:
            self.stop()

    def _read_result(self, code: int | None, timed_out: bool) -> SippResult:
        created, successful, failed = self._call_counts()
        return SippResult(
            returncode=code,
            created=created,
            successful=successful,
            failed=failed,
            timed_out=timed_out,
            log=self.log_tail(4000),
            errors=_read(self.errors_path),
            messages=_read(self.messages_path),
        )

    def _call_counts(self) -> tuple[int, int, int]:
        """Calls created, successful and failed, from the last line of the statistics file."""
        try:
            with self.stat_path.open(newline="") as stat:
                rows = list(csv.DictReader(stat, delimiter=";"))
        except FileNotFoundError:
            return 0, 0, 0
        if not rows:
            return 0, 0, 0
        last = rows[-1]
        counts = ("TotalCallCreated", "SuccessfulCall(C)", "FailedCall(C)")
        created, successful, failed = (int(last[name]) for name in counts)
        return created, successful, failed


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _tail(text: str, chars: int) -> str:
    return text if len(text) <= chars else "[...]\n" + text[-chars:]
