import asyncio
import concurrent.futures
import logging
import threading

import pytest

from sipsimple.threading import (
    SIPThread,
    call_in_sip_thread,
    is_sip_thread,
    on_sip_thread,
    run_in_sip_thread,
    run_in_worker,
    sip_loop,
    spawn,
)

# A regression here tends to be a deadlock: fail fast instead.
pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def sip_thread():
    thread = SIPThread()
    thread.start()
    yield thread
    thread.stop()


@pytest.fixture(autouse=True)
def stopped_afterwards():
    yield
    SIPThread().stop()


class Failure(Exception):
    pass


def fail(message):
    raise Failure(message)


def test_sip_thread_is_a_singleton():
    assert SIPThread() is SIPThread()


def test_start_runs_a_loop_in_a_daemon_thread(sip_thread):
    assert sip_thread.is_running and sip_thread.owns_loop
    assert sip_thread.loop is sip_loop()
    assert not is_sip_thread()
    thread = run_in_sip_thread(threading.current_thread)
    assert thread is not threading.current_thread()
    assert thread.name == "SIPThread" and thread.daemon
    assert run_in_sip_thread(is_sip_thread) is True
    assert run_in_sip_thread(asyncio.get_running_loop) is sip_thread.loop


def test_start_twice_is_refused(sip_thread):
    with pytest.raises(RuntimeError, match="already running"):
        sip_thread.start()


def test_stop_ends_the_thread_and_a_new_start_works():
    thread = SIPThread()
    thread.start()
    first_loop = thread.loop
    first_thread = run_in_sip_thread(threading.current_thread)
    thread.stop()
    assert not thread.is_running and thread.loop is None
    assert not first_thread.is_alive()
    assert first_loop.is_closed()
    thread.stop()  # stopping a stopped thread does nothing
    with pytest.raises(RuntimeError, match="not running"):
        call_in_sip_thread(print)

    thread.start()
    assert thread.loop is not first_loop
    assert run_in_sip_thread(lambda x: x * 2, 21) == 42
    thread.stop()


def test_stop_cancels_leftover_tasks():
    thread = SIPThread()
    thread.start()
    started = threading.Event()
    cancelled = threading.Event()

    async def forever():
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    future = spawn(forever())
    assert started.wait(5)
    thread.stop()
    assert cancelled.is_set()
    assert future.cancelled()


def test_run_in_sip_thread_returns_results_and_raises_exceptions(sip_thread):
    assert run_in_sip_thread(sorted, [3, 1, 2], reverse=True) == [3, 2, 1]
    with pytest.raises(Failure, match="from the SIP thread"):
        run_in_sip_thread(fail, "from the SIP thread")

    async def coroutine_function(value):
        await asyncio.sleep(0)
        assert is_sip_thread()
        return value + 1

    assert run_in_sip_thread(coroutine_function, 1) == 2


def test_run_in_sip_thread_on_the_sip_thread_raises_instead_of_deadlocking(sip_thread):
    def nested():
        return run_in_sip_thread(lambda: "never")

    with pytest.raises(RuntimeError, match="would wait for itself"):
        run_in_sip_thread(nested)


def test_call_in_sip_thread_runs_calls_in_order_and_returns_a_future(sip_thread):
    order = []
    futures = [call_in_sip_thread(order.append, index) for index in range(50)]
    assert all(isinstance(f, concurrent.futures.Future) for f in futures)
    concurrent.futures.wait(futures, timeout=5)
    assert order == list(range(50))
    assert futures[-1].result() is None
    assert call_in_sip_thread(divmod, 7, 2).result(5) == (3, 1)


def test_fire_and_forget_failures_are_logged_and_set_on_the_future(sip_thread, caplog):
    async def broken():
        await asyncio.sleep(0)
        raise Failure("spawned 42")

    with caplog.at_level(logging.ERROR, logger="sipsimple.threading"):
        called = call_in_sip_thread(fail, "called 17")
        spawned = spawn(broken())
        concurrent.futures.wait([called, spawned], timeout=5)
        run_in_sip_thread(lambda: None)  # the futures' callbacks ran on the SIP thread before
    assert isinstance(called.exception(), Failure)
    assert isinstance(spawned.exception(), Failure)
    records = [r for r in caplog.records if r.name == "sipsimple.threading"]
    assert len(records) == 2
    assert all(r.exc_info and r.exc_info[0] is Failure for r in records)
    assert "called 17" in caplog.text and "spawned 42" in caplog.text
    assert "Traceback" in caplog.text


def test_spawn_returns_the_coroutine_result(sip_thread):
    async def add(a, b):
        await asyncio.sleep(0)
        return a + b

    assert spawn(add(2, 3)).result(5) == 5


def test_cancelling_the_future_cancels_the_task(sip_thread):
    started = threading.Event()
    cancelled = threading.Event()

    async def forever():
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    future = spawn(forever())
    assert started.wait(5)
    assert future.cancel()
    assert cancelled.wait(5)


def test_handing_work_over_without_a_sip_thread_fails_clearly():
    async def never():
        pass  # pragma: no cover

    with pytest.raises(RuntimeError, match="not running"):
        spawn(never())  # the coroutine is closed: no "never awaited" warning
    with pytest.raises(RuntimeError, match="not running"):
        run_in_sip_thread(print)
    with pytest.raises(RuntimeError, match="not running"):
        sip_loop()
    assert not is_sip_thread()


def test_on_sip_thread_decorator(sip_thread):
    class Engine:
        def __init__(self):
            self.calls = []

        @on_sip_thread
        def poke(self, value):
            self.calls.append((value, is_sip_thread()))
            return value

    engine = Engine()
    future = engine.poke(1)
    assert isinstance(future, concurrent.futures.Future)
    assert future.result(5) == 1

    def on_the_sip_thread():
        # direct call: runs now and returns the method's own result
        result = engine.poke(2)
        return result, list(engine.calls)

    result, calls = run_in_sip_thread(on_the_sip_thread)
    assert result == 2
    assert calls == [(1, True), (2, True)]
    assert Engine.poke.__name__ == "poke"


def test_run_in_worker_runs_blocking_work_off_the_loop(sip_thread):
    release = threading.Event()

    def blocking(value):
        assert not is_sip_thread()
        assert release.wait(5)
        return threading.current_thread(), value

    async def use_worker():
        return await run_in_worker(blocking, "done")

    pending = spawn(use_worker())
    # The loop stays free while the worker blocks.
    assert run_in_sip_thread(lambda: "loop is free") == "loop is free"
    release.set()
    worker, value = pending.result(5)
    assert value == "done"
    assert worker is not run_in_sip_thread(threading.current_thread)

    async def failing_worker():
        return await run_in_worker(fail, "in the worker")

    with pytest.raises(Failure, match="in the worker"):
        run_in_sip_thread(failing_worker)


async def test_adopting_the_applications_running_loop():
    loop = asyncio.get_running_loop()
    thread = SIPThread()
    thread.start(loop)
    try:
        assert thread.loop is loop and not thread.owns_loop
        assert is_sip_thread()
        with pytest.raises(RuntimeError, match="would wait for itself"):
            run_in_sip_thread(print)

        # Other threads hand work to the application's loop.
        def from_other_thread():
            assert not is_sip_thread()
            return run_in_sip_thread(lambda: (asyncio.get_running_loop(), is_sip_thread()))

        assert await asyncio.to_thread(from_other_thread) == (loop, True)
        assert await asyncio.wrap_future(call_in_sip_thread(lambda: 5)) == 5
    finally:
        ours = spawn(asyncio.sleep(3600))
        applications = asyncio.ensure_future(asyncio.sleep(3600))
        await asyncio.sleep(0)
        thread.stop()
    # stop() cancels what we started there, leaves the application's loop and tasks alone.
    await asyncio.wait([asyncio.wrap_future(ours)], timeout=5)
    assert ours.cancelled()
    assert not applications.done() and not loop.is_closed()
    applications.cancel()
    assert not thread.is_running


async def test_stopping_an_adopted_loop_from_another_thread():
    loop = asyncio.get_running_loop()
    thread = SIPThread()
    thread.start(loop)
    started = asyncio.Event()

    async def ours():
        started.set()
        await asyncio.sleep(3600)

    future = spawn(ours())
    await started.wait()
    await asyncio.to_thread(thread.stop)
    assert future.cancelled()
    assert not loop.is_closed() and not thread.is_running


def test_adopting_a_closed_loop_is_refused():
    loop = asyncio.new_event_loop()
    loop.close()
    with pytest.raises(ValueError, match="closed"):
        SIPThread().start(loop)
    assert not SIPThread().is_running


def test_stop_from_the_sip_thread_itself_does_not_deadlock():
    thread = SIPThread()
    thread.start()
    sip = run_in_sip_thread(threading.current_thread)
    call_in_sip_thread(thread.stop)
    sip.join(5)
    assert not sip.is_alive()
    assert not thread.is_running
    thread.start()
    assert run_in_sip_thread(lambda: 1) == 1
