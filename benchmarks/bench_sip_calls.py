"""Calls per second the Engine answers: SIPp's built-in uac against it, SIPp's uas as
the ceiling, in the same run.

SIPp's uac places calls (INVITE, 180/200, ACK, a short pause, BYE) at a fixed rate
for ``--duration`` seconds (30 s by default: at least 30 s per rate); the rate doubles
from ``--start-rate`` until a rate fails twice in a row, two halvings of the last
interval narrow it down, and the figure is the highest rate that ran without a failed
call. The answering Engine runs in this process on its
own SIP thread and answers every INVITE with 180 then 200 and an SDP answer:

- with Invitation (sipsimple.core.Invitation) when it exists: the figure for the
  whole core the middleware uses;
- otherwise (or with ``--answerer usage``) with tests/support/calls.CallAnswerer, a
  minimal call usage on the Engine's internal API (transactions, dialogs, ACK,
  BYE): the Engine's own ceiling.

The Engine runs with ``tune_gc`` (Engine.start's garbage collector setting for a busy
core). Each run of the Engine says the CPU time this process spent per call (the
Engine and the answerer: the figure that stays meaningful on a shared machine) and the
machine's load at the time. The ceiling is the same ramp from SIPp uac to SIPp uas.
The ratio (SIPp uas / Engine) is what answering calls in Python costs.

Run it in a loopback-only network namespace (scripts/bench.sh does), as root:
    unshare -n sh -c 'ip link set lo up; PYTHONPATH=src python benchmarks/bench_sip_calls.py'
Options: --duration S (default 30), --start-rate R (default 25), --max-rate R
(default 3200), --answerer invitation|usage.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.interop.peers import Sipp
from tests.support.calls import CallAnswerer, sdp

from sipsimple.core import Engine
from sipsimple.notification import NotificationCenter
from sipsimple.threading import run_in_sip_thread

CALL_DURATION_MS = 100
REFINE = 2


def ramp(
    place_calls: Callable[[float, float], tuple[int, int, str]],
    start: float,
    maximum: float,
    duration: float,
) -> tuple[float, list[str]]:
    """The highest rate (calls/s) whose run had no failed call, and a line per run.

    The rate doubles until a run fails; then REFINE halvings of the interval between
    the last rate that passed and the first that failed narrow the figure (a doubling
    ramp alone would say 200 for an endpoint that does 390). A run with failures is
    tried once more before it counts as failed: the machine is shared, and one busy
    moment should not decide the figure.
    """
    lines: list[str] = []

    def passes(rate: float) -> bool:
        for attempt in (1, 2):
            successful, failed, detail = place_calls(rate, duration)
            retry = " (second try)" if attempt == 2 else ""
            lines.append(
                f"    {rate:7.0f} calls/s: {successful} successful, {failed} failed{retry}{detail}"
            )
            if not failed and successful:
                return True
        return False

    best, rate = 0.0, start
    while rate <= maximum and passes(rate):
        best, rate = rate, rate * 2
    failing = rate
    for _ in range(REFINE if best and failing <= maximum else 0):
        middle = round((best + failing) / 2)
        if passes(middle):
            best = middle
        else:
            failing = middle
    return best, lines


def sipp_uac(target: tuple[str, int], rate: float, duration: float) -> tuple[int, int]:
    """SIPp's uac at ``rate`` for ``duration`` s: (successful, failed) calls."""
    calls = int(rate * duration)
    uac = Sipp(
        "uac",
        target,
        calls=calls,
        rate=rate,
        call_duration_ms=CALL_DURATION_MS,
        timeout=duration + 30,
        recv_timeout_ms=5000,
    )
    result = uac.run()
    return result.successful, result.failed + (calls - result.successful - result.failed)


def machine_load() -> str:
    """The load average and CPU pressure (PSI, the share of time some task waited for a
    CPU) over the last minute: how much of the machine the run had."""
    load = os.getloadavg()[0]
    try:
        pressure = Path("/proc/pressure/cpu").read_text().split()[2].split("=")[1]
    except (OSError, IndexError):
        return f"load {load:.1f}"
    return f"load {load:.1f}, CPU pressure {pressure}% (avg60)"


def ceiling(start: float, maximum: float, duration: float) -> tuple[float, list[str]]:
    # SIPp ends itself after -timeout seconds: the uas must outlive the whole ramp
    with Sipp("uas", timeout=24 * 3600) as uas:

        def place(rate: float, seconds: float) -> tuple[int, int, str]:
            return (*sipp_uac(uas.address, rate, seconds), f"; {machine_load()}")

        return ramp(place, start, maximum, duration)


def install_invitation_answerer(engine: Engine) -> None:
    """Answer every incoming Invitation with 180 then 200 (Invitation hangs up on BYE)."""
    from sipsimple.core import SDPSession
    from sipsimple.core.sip.headers import ContactHeader
    from sipsimple.core.sip.uri import SIPURI

    answer_sdp = SDPSession.parse(sdp())
    contact = ContactHeader(SIPURI(user="answerer", host="127.0.0.1", port=engine.udp_port))

    def answer(notification) -> None:
        if notification.data.state != "incoming":
            return
        invitation = notification.sender
        invitation.send_response(180)
        invitation.send_response(200, contact_header=contact, sdp=answer_sdp)

    NotificationCenter().add_observer(answer, "SIPInvitationChangedState")


def install_usage_answerer() -> None:
    run_in_sip_thread(lambda: CallAnswerer(Engine()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--start-rate", type=float, default=25.0)
    parser.add_argument("--max-rate", type=float, default=3200.0)
    parser.add_argument("--answerer", choices=("invitation", "usage"))
    args = parser.parse_args()
    answerer = args.answerer
    if answerer is None:
        try:
            from sipsimple.core import Invitation  # noqa: F401
        except ImportError:
            answerer = "usage"
        else:
            answerer = "invitation"

    engine = Engine()
    engine.start(ip_address="127.0.0.1", udp_port=0, tcp_port=None, tune_gc=True).result(10)
    try:
        if answerer == "invitation":
            install_invitation_answerer(engine)
        else:
            install_usage_answerer()

        def place(rate: float, seconds: float) -> tuple[int, int, str]:
            start, cpu = time.perf_counter(), time.process_time()
            successful, failed = sipp_uac(("127.0.0.1", engine.udp_port), rate, seconds)  # type: ignore[arg-type]
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
            calls = max(successful + failed, 1)
            detail = (
                f"; Engine {cpu / calls * 1e3:.2f} ms CPU per call,"
                f" {cpu / elapsed:.0%} of a core; {machine_load()}"
            )
            return successful, failed, detail

        best, engine_lines = ramp(place, args.start_rate, args.max_rate, args.duration)
    finally:
        engine.stop().result(10)
    top, sipp_lines = ceiling(args.start_rate, args.max_rate, args.duration)
    what = "Invitation" if answerer == "invitation" else "the usage API (CallAnswerer)"
    print(f"Calls answered per second, SIPp uac, {args.duration:g} s per rate, UDP:")
    print(f"  Engine answering with {what}: {best:.0f} calls/s with no failed call")
    print("\n".join(engine_lines))
    print(f"  SIPp uas (the ceiling): {top:.0f} calls/s with no failed call")
    print("\n".join(sipp_lines))
    if best:
        print(f"  ratio SIPp uas / Engine: {top / best:.1f}")


if __name__ == "__main__":
    main()
