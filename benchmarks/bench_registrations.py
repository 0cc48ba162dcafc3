"""Registrations per second against Kamailio: the Engine beside SIPp, in the same run.

One Kamailio (digest authentication, one worker, usrloc in memory) serves both. A
registration is the whole exchange a new client makes: REGISTER, 401, REGISTER with
credentials, 200. The Engine runs ``WINDOW`` Registration objects at a time (each a
new Call-ID, as SIPp's calls are) for ``TOTAL`` registrations; SIPp runs its digest
REGISTER scenario with the same window (-l) and total (-m) as fast as it can. SIPp's
figure is taken from two runs (TOTAL and 2*TOTAL calls) so that its start-up time
cancels out. The ratio (SIPp / Engine) is what pure Python costs against SIPp's C++,
with Kamailio's own work in both. The Engine runs with ``tune_gc``; its line also says
how many messages a registration took (4 when nothing was retransmitted: on a busy
machine Kamailio falls behind, T1 expires and both sides handle the retransmissions).

Run it in a loopback-only network namespace (scripts/bench.sh does), as root:
    unshare -n sh -c 'ip link set lo up; PYTHONPATH=src python benchmarks/bench_registrations.py'
"""

from __future__ import annotations

import asyncio
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.interop.peers import Kamailio, Sipp, scenario_file

from sipsimple.core import Credentials, Engine, Registration
from sipsimple.core.sip.headers import ContactHeader, FromHeader, RouteHeader
from sipsimple.core.sip.uri import SIPURI
from sipsimple.notification import NotificationCenter
from sipsimple.threading import SIPThread

DOMAIN = "example.test"
TOTAL = 2000
WINDOW = 50
REPEATS = 2


async def engine_rate(proxy: Kamailio, total: int, window: int) -> tuple[float, float, int, float]:
    """Registrations per second with ``window`` in flight, CPU seconds of this process
    per registration, how many failed, and the messages sent and received per
    registration (4 without retransmissions: more says Kamailio fell behind)."""
    loop = asyncio.get_running_loop()
    engine = Engine()
    contact = ContactHeader(SIPURI(user="alice", host="127.0.0.1", port=engine.udp_port))
    route = RouteHeader(SIPURI(host="127.0.0.1", port=proxy.ports["udp"]))
    pending: dict[Registration, asyncio.Future[bool]] = {}

    def finished(notification) -> None:
        future = pending.pop(notification.sender, None)
        if future is not None:
            future.set_result(notification.name == "SIPRegistrationDidSucceed")

    center = NotificationCenter()
    center.add_observer(finished, "SIPRegistrationDidSucceed")
    center.add_observer(finished, "SIPRegistrationDidFail")
    slots = asyncio.Semaphore(window)

    async def one() -> bool:
        async with slots:
            registration = Registration(
                FromHeader(SIPURI(user="alice", host=DOMAIN)),
                credentials=Credentials("alice", "secret"),
                duration=300,
            )
            future = pending[registration] = loop.create_future()
            registration.register(contact, route)
            return await future

    statistics = engine.transport.statistics  # type: ignore[union-attr]
    messages = statistics.messages_sent + statistics.messages_received
    try:
        start, cpu = time.perf_counter(), time.process_time()
        results = await asyncio.gather(*(one() for _ in range(total)))
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        messages = statistics.messages_sent + statistics.messages_received - messages
    finally:
        center.remove_observer(finished, "SIPRegistrationDidSucceed")
        center.remove_observer(finished, "SIPRegistrationDidFail")
    return total / elapsed, cpu / total, results.count(False), messages / total


def sipp_seconds(proxy: Kamailio, calls: int, window: int) -> tuple[float, float]:
    """Wall and CPU seconds (SIPp's own, from the children's usage) of one SIPp run."""
    sipp = Sipp(
        scenario_file("register"),
        proxy.address(),
        service="alice",
        auth_username="alice",
        auth_password="secret",
        keys={"domain": DOMAIN},
        calls=calls,
        rate=100_000,
        limit=window,
        timeout=120,
    )
    start, cpu = time.perf_counter(), _children_cpu()
    result = sipp.run()
    elapsed, cpu = time.perf_counter() - start, _children_cpu() - cpu
    if not result.ok:
        raise RuntimeError(result.describe())
    return elapsed, cpu


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def sipp_rate(proxy: Kamailio, total: int, window: int) -> tuple[float, float]:
    """SIPp's registrations per second and CPU seconds per registration, its start-up
    cancelled by taking the difference of two run lengths."""
    short, short_cpu = sipp_seconds(proxy, total, window)
    long, long_cpu = sipp_seconds(proxy, 2 * total, window)
    return total / max(long - short, 1e-6), max(long_cpu - short_cpu, 0.0) / total


async def run(proxy: Kamailio) -> tuple[tuple[float, float, float], int]:
    SIPThread().start(asyncio.get_running_loop())
    try:
        await Engine().start(ip_address="127.0.0.1", udp_port=0, tcp_port=None, tune_gc=True)
        results = [await engine_rate(proxy, TOTAL, WINDOW) for _ in range(REPEATS)]
        await Engine().stop()
    finally:
        SIPThread().stop()
    best = max(results)
    return (best[0], best[1], best[3]), sum(result[2] for result in results)


def main() -> None:
    with Kamailio(domain=DOMAIN) as proxy:
        proxy.add_user("alice", "secret")
        sipp, sipp_cpu = max(sipp_rate(proxy, TOTAL, WINDOW) for _ in range(REPEATS))
        (engine, engine_cpu, messages), failures = asyncio.run(run(proxy))
    print(f"REGISTER with digest (401 + 200) against Kamailio, {WINDOW} in flight, UDP")
    print(f"(best of {REPEATS}; CPU is the client's own, per registration):")
    print(
        f"  Engine {engine:7.0f} registrations/s {engine_cpu * 1e3:6.2f} ms CPU ({failures} failed,"
        f" {messages:.1f} messages per registration: 4 without retransmissions)"
    )
    print(f"  SIPp   {sipp:7.0f} registrations/s {sipp_cpu * 1e3:6.2f} ms CPU")
    cpu_ratio = engine_cpu / max(sipp_cpu, 1e-9)
    print(f"  ratio SIPp / Engine: {sipp / engine:.2f} (rate), {cpu_ratio:.1f} (CPU)")


if __name__ == "__main__":
    main()
