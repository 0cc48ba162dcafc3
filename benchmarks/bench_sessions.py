"""Session set-up time and rate between two SDK endpoints on loopback, against the
bare Invitation (the core's INVITE dialog usage) measured in the same run.

Alice runs a SIPApplication in this process; Bob is a RemoteSDK child (the SDK's start
order, tests/support/sessions.py) that answers at once. Both use NullStream, a stream
that needs no socket, so the figures are the middleware's own work (stream
initialization and start, SDP building, the notifications) on top of the SIP exchange.

- latency: Session.connect() to SIPSessionDidStart, one session at a time, then BYE
  (median and p99 over ``--sessions``, default 1000);
- rate: sessions set up and torn down per second with ``--window`` (default 20) in
  flight at once;
- CPU time per session of each process (caller: this one; callee: Bob's child, read
  with time.process_time() there), the figure to compare across runs on a busy machine;
- the same figures for bare Invitations (send_invite to connected, end), Bob
  answering 200 at the Invitation level; the ratio session / Invitation is the
  middleware's overhead.

Run it in a loopback-only network namespace (scripts/bench.sh does), as root:
    unshare -n sh -c 'ip link set lo up; PYTHONPATH=src python benchmarks/bench_sessions.py'
``--profile PREFIX`` writes cProfile statistics (CPU time of the SIP thread) of the
latency runs of both processes to PREFIX.{session,invitation}.{caller,callee} (pstats).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.application import loopback_storage, running_application
from tests.support.remote import DEFAULT_EXCLUDE, RemoteSDK

from sipsimple.account import AccountManager
from sipsimple.core import (
    SIPURI,
    ContactHeader,
    FromHeader,
    Invitation,
    RouteHeader,
    SDPConnection,
    SDPMediaStream,
    SDPSession,
    ToHeader,
)
from sipsimple.notification import Notification, NotificationCenter, NotificationData
from sipsimple.session import Session, SessionManager
from sipsimple.streams import IMediaStream, MediaStreamRegistrar
from sipsimple.util import Route

SESSIONS = "tests.support.sessions"
T = TypeVar("T")
HERE = "benchmarks.bench_sessions"  # what the child imports (this file runs as __main__)
ACCOUNT = {"enabled": "true", "registration": {"enabled": "false"}}
FORMAT = "x-sipsimple-null"
PER_CALL = (
    "SIPInvitationChangedState",
    "SIPInvitationGotSDPUpdate",
    "SIPInvitationDidProcessTransaction",
    "SIPSessionNewIncoming",
    "SIPSessionWillStart",
    "SIPSessionDidStart",
    "SIPSessionDidProcessTransaction",
    "SIPSessionWillEnd",
    "SIPSessionDidEnd",
    "MediaStreamDidInitialize",
    "MediaStreamDidStart",
    "MediaStreamWillEnd",
    "MediaStreamDidEnd",
)


class NullStream(IMediaStream, metaclass=MediaStreamRegistrar):
    """A stream with nothing to carry: it reports each step done at once."""

    type = "null"
    priority = 100

    def _post(self, name: str) -> None:
        NotificationCenter().post_notification(name, sender=self, data=NotificationData())

    @classmethod
    def new_from_sdp(cls, account: Any, remote_sdp: Any, stream_index: int) -> NullStream | None:
        return cls() if FORMAT in remote_sdp.media[stream_index].formats else None

    def get_local_media(self, for_offer: bool) -> SDPMediaStream:
        return _media()

    def initialize(self, session: Any, direction: str) -> None:
        self._post("MediaStreamDidInitialize")

    def start(self, local_sdp: Any, remote_sdp: Any, stream_index: int) -> None:
        self._post("MediaStreamDidStart")

    def validate_update(self, remote_sdp: Any, stream_index: int) -> bool:
        return True

    def update(self, local_sdp: Any, remote_sdp: Any, stream_index: int) -> None:
        pass

    def hold(self) -> None:
        pass

    def unhold(self) -> None:
        pass

    def deactivate(self) -> None:
        pass

    def end(self) -> None:
        self._post("MediaStreamWillEnd")
        self._post("MediaStreamDidEnd")


def _media() -> SDPMediaStream:
    return SDPMediaStream("application", 9, "udp", formats=[FORMAT])


def _sdp() -> SDPSession:
    return SDPSession("127.0.0.1", connection=SDPConnection("127.0.0.1"), media=[_media()])


# -- what Bob's child runs ---------------------------------------------------------------


def _answer_invitation(notification: Notification) -> None:
    data = notification.data
    if data.state == "incoming" and data.prev_state is None:
        notification.sender.send_response(200, sdp=_sdp())


def _accept_session(notification: Notification) -> None:
    session = notification.sender
    session.accept(session.proposed_streams)


def answer_sessions() -> None:
    """Sessions: the SessionManager takes INVITEs, Bob accepts each at once (with his
    own observer: the test endpoint's keeps every session it sees)."""
    from tests.support import sessions

    center = NotificationCenter()
    center.discard_observer(sessions._incoming, name="SIPSessionNewIncoming")
    center.discard_observer(_answer_invitation, name="SIPInvitationChangedState")
    center.add_observer(_accept_session, name="SIPSessionNewIncoming")
    SessionManager().start()


def answer_invitations() -> None:
    """Bare Invitations: the SessionManager is stopped, each INVITE is answered 200."""
    SessionManager().stop()
    NotificationCenter().add_observer(_answer_invitation, name="SIPInvitationChangedState")


def cpu_time() -> float:
    """This process's CPU time (all its threads)."""
    return time.process_time()


_profile: cProfile.Profile | None = None


def profile_start() -> None:
    """Profile the SIP thread (this call runs on it) until profile_stop()."""
    global _profile
    _profile = cProfile.Profile(time.thread_time)
    _profile.enable()


def profile_stop(path: str) -> None:
    assert _profile is not None
    _profile.disable()
    _profile.dump_stats(path)


# -- Alice --------------------------------------------------------------------------------


class _Waiter:
    """Futures resolved by notification name and sender."""

    def __init__(self, *names: str) -> None:
        self.futures: dict[tuple[str, int], asyncio.Future[Notification]] = {}
        for name in names:
            NotificationCenter().add_observer(self._seen, name=name)

    def expect(self, name: str, sender: Any) -> asyncio.Future[Notification]:
        future = asyncio.get_running_loop().create_future()
        self.futures[(name, id(sender))] = future
        return future

    def _seen(self, notification: Notification) -> None:
        name = notification.name
        if name == "SIPInvitationChangedState":
            name = f"{name}:{notification.data.state}"
        future = self.futures.pop((name, id(notification.sender)), None)
        if future is not None and not future.done():
            future.set_result(notification)


def session_call(account: Any, port: int, waiter: _Waiter) -> Callable[[], Awaitable[float]]:
    target = ToHeader(SIPURI(user="bob", host="127.0.0.1", port=port))
    routes = [Route("127.0.0.1", port, "udp")]

    async def call() -> float:
        session = Session(account)
        started = waiter.expect("SIPSessionDidStart", session)
        ended = waiter.expect("SIPSessionDidEnd", session)
        began = time.perf_counter()
        session.connect(target, routes, [NullStream()])
        await started
        elapsed = time.perf_counter() - began
        session.end()
        await ended
        return elapsed

    return call


def invitation_call(account: Any, port: int, waiter: _Waiter) -> Callable[[], Awaitable[float]]:
    uri = SIPURI(user="bob", host="127.0.0.1", port=port)
    route = RouteHeader(Route("127.0.0.1", port, "udp").get_uri())

    async def call() -> float:
        invitation = Invitation()
        connected = waiter.expect("SIPInvitationChangedState:connected", invitation)
        disconnected = waiter.expect("SIPInvitationChangedState:disconnected", invitation)
        began = time.perf_counter()
        invitation.send_invite(
            uri,
            FromHeader(account.uri, account.display_name),
            ToHeader(uri),
            route,
            ContactHeader(account.contact["udp"]),
            _sdp(),
            account.credentials,
        )
        await connected
        elapsed = time.perf_counter() - began
        invitation.end()
        await disconnected
        return elapsed

    return call


async def latency(
    bob: RemoteSDK, call: Callable[[], Awaitable[float]], count: int
) -> tuple[float, float, float, float]:
    """Median and p99 of the set-up time, and the CPU time per call of each process."""
    bob_cpu = await bob.async_call(f"{HERE}:cpu_time")
    cpu = time.process_time()
    times = sorted([await call() for _ in range(count)])
    cpu = (time.process_time() - cpu) / count
    bob_cpu = (await bob.async_call(f"{HERE}:cpu_time") - bob_cpu) / count
    median, p99 = statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))]
    return median, p99, cpu, bob_cpu


async def rate(
    bob: RemoteSDK, call: Callable[[], Awaitable[float]], count: int, window: int
) -> tuple[float, float, float]:
    """Sessions per second with ``window`` in flight, and the CPU time per call of each."""
    bob_cpu = await bob.async_call(f"{HERE}:cpu_time")
    cpu = time.process_time()
    began = time.perf_counter()
    pending: set[asyncio.Task[float]] = set()
    for _ in range(count):
        if len(pending) >= window:
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        pending.add(asyncio.ensure_future(call()))
    await asyncio.gather(*pending)
    per_second = count / (time.perf_counter() - began)
    cpu = (time.process_time() - cpu) / count
    bob_cpu = (await bob.async_call(f"{HERE}:cpu_time") - bob_cpu) / count
    return per_second, cpu, bob_cpu


async def _profiled(bob: RemoteSDK, prefix: str | None, what: str, run: Awaitable[T]) -> T:
    """Await ``run``, profiled in both processes when a prefix is given."""
    if not prefix:
        return await run
    await bob.async_call(f"{HERE}:profile_start")
    caller = cProfile.Profile(time.thread_time)
    caller.enable()
    try:
        return await run
    finally:
        caller.disable()
        caller.dump_stats(f"{prefix}.{what}.caller")
        await bob.async_call(f"{HERE}:profile_stop", f"{prefix}.{what}.callee")


async def run(count: int, window: int, profile: str | None) -> None:
    quiet = (*DEFAULT_EXCLUDE, *PER_CALL)  # Bob forwards no per-call notification
    with RemoteSDK(call_timeout=30, exclude=quiet) as bob:
        ports = await bob.async_call(f"{SESSIONS}:start_endpoint", {"bob@example.test": ACCOUNT})
        async with running_application(loopback_storage(accounts={"alice@example.test": ACCOUNT})):
            account = AccountManager().get_account("alice@example.test")
            waiter = _Waiter("SIPSessionDidStart", "SIPSessionDidEnd", "SIPInvitationChangedState")
            await bob.async_call(f"{HERE}:answer_invitations")
            bare = invitation_call(account, ports["udp"], waiter)
            await latency(bob, bare, 20)  # warm up
            bare_latency = await _profiled(bob, profile, "invitation", latency(bob, bare, count))
            bare_rate = await rate(bob, bare, count, window)
            await bob.async_call(f"{HERE}:answer_sessions")
            full = session_call(account, ports["udp"], waiter)
            await latency(bob, full, 20)
            full_latency = await _profiled(bob, profile, "session", latency(bob, full, count))
            full_rate = await rate(bob, full, count, window)
        await bob.async_call(f"{SESSIONS}:stop_endpoint")
    print(f"connect() to SIPSessionDidStart over {count} sessions on loopback (UDP):")
    for name, (median, p99, cpu, bob_cpu) in (
        ("Session", full_latency),
        ("Invitation", bare_latency),
    ):
        print(
            f"  {name + ':':<11} median {median * 1000:7.2f} ms   p99 {p99 * 1000:7.2f} ms"
            f"   CPU per call: caller {cpu * 1000:5.2f} ms, callee {bob_cpu * 1000:5.2f} ms"
        )
    print(
        f"  overhead (Session / Invitation): median {full_latency[0] / bare_latency[0]:.2f}x,"
        f" CPU caller {full_latency[2] / bare_latency[2]:.2f}x,"
        f" callee {full_latency[3] / bare_latency[3]:.2f}x"
    )
    print(f"set up and torn down per second, {window} in flight ({count} each):")
    for name, (per_second, cpu, bob_cpu) in (("Session", full_rate), ("Invitation", bare_rate)):
        print(
            f"  {name + ':':<11} {per_second:7.1f} /s"
            f"   CPU per call: caller {cpu * 1000:5.2f} ms, callee {bob_cpu * 1000:5.2f} ms"
        )
    print(f"  ratio (Invitation / Session): {bare_rate[0] / full_rate[0]:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--profile", metavar="PREFIX", help="write cProfile statistics")
    args = parser.parse_args(argv)
    asyncio.run(run(args.sessions, args.window, args.profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
