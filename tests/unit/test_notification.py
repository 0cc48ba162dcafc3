import asyncio
import copy
import gc
import logging
import pickle
import queue
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from sipsimple.notification import (
    Any,
    Notification,
    NotificationCenter,
    NotificationData,
    NotificationQueue,
    ObserverOnLoop,
    ObserverOnThread,
)


class Recorder:
    """An observer object that records what it is given."""

    def __init__(self, label="recorder", log=None):
        self.label = label
        self.received = []
        self.log = log

    def handle_notification(self, notification):
        self.received.append(notification)
        if self.log is not None:
            self.log.append((self.label, notification.name))

    @property
    def names(self):
        return [n.name for n in self.received]


class Sender:
    pass


@pytest.fixture
def center():
    """The center, with every observer a test registers through it purged afterwards."""
    nc = NotificationCenter()
    registered = []
    original = nc.add_observer

    class Tracking:
        def __getattr__(self, attr):
            return getattr(nc, attr)

        def add_observer(self, observer, *args, **kwargs):
            if not kwargs.get("weak"):  # weak ones go away with the test's locals
                registered.append(observer)
            original(observer, *args, **kwargs)

    yield Tracking()
    for observer in registered:
        nc.purge_observer(observer)


def test_center_is_a_singleton():
    assert NotificationCenter() is NotificationCenter()


def test_any_is_a_named_singleton_that_survives_copies():
    assert repr(Any) == "Any"
    assert copy.copy(Any) is Any
    assert copy.deepcopy(Any) is Any
    assert pickle.loads(pickle.dumps(Any)) is Any


def test_notification_data_is_an_attribute_bag():
    data = NotificationData(code=200, reason="OK")
    assert (data.code, data.reason) == (200, "OK")
    assert data.__dict__ == {"code": 200, "reason": "OK"}
    assert repr(data) == "NotificationData(code=200, reason='OK')"
    assert data == NotificationData(reason="OK", code=200)
    assert data != NotificationData(code=486, reason="OK")
    assert data != {"code": 200, "reason": "OK"}
    with pytest.raises(TypeError):
        hash(data)


def test_notification_carries_name_sender_data_and_a_timestamp(center):
    sender = Sender()
    recorder = Recorder()
    center.add_observer(recorder, "Ping", sender)
    data = NotificationData(code=1)
    before = datetime.now(UTC)
    center.post_notification("Ping", sender, data)
    center.post_notification("Ping", sender)
    after = datetime.now(UTC)
    first, second = recorder.received
    assert isinstance(first, Notification)
    assert (first.name, first.sender, first.data) == ("Ping", sender, data)
    assert before <= first.timestamp <= second.timestamp <= after
    assert second.data == NotificationData(timestamp=second.timestamp)
    assert "Ping" in repr(first) and "code=1" in repr(first)


def test_filtering_by_name_sender_and_any(center):
    a, b = Sender(), Sender()
    observers = {
        key: Recorder(str(key))
        for key in [("X", a), ("X", Any), (Any, a), (Any, Any), ("Y", a), ("X", b)]
    }
    for (name, sender), recorder in observers.items():
        center.add_observer(recorder, name, sender)
    center.post_notification("X", a)
    center.post_notification("Y", b)
    center.post_notification("Z", None)

    def got(key):
        return [(n.name, n.sender) for n in observers[key].received]

    assert got(("X", a)) == [("X", a)]
    assert got(("X", Any)) == [("X", a)]
    assert got((Any, a)) == [("X", a)]
    assert got(("Y", a)) == []
    assert got(("X", b)) == []
    # The wildcard observer sees everything, including other tests' traffic: check ours.
    assert [g for g in got((Any, Any)) if g[1] in (a, b, None)][-3:] == [
        ("X", a),
        ("Y", b),
        ("Z", None),
    ]


def test_senders_are_matched_by_identity(center):
    class Equal:
        def __eq__(self, other):
            return isinstance(other, Equal)

        def __hash__(self):
            return 1

    first, second = Equal(), Equal()
    recorder = Recorder()
    center.add_observer(recorder, "E", first)
    center.post_notification("E", second)
    center.post_notification("E", first)
    assert [n.sender for n in recorder.received] == [first]
    assert recorder.received[0].sender is first


def test_an_observer_matching_several_registrations_gets_each_notification_once(center):
    sender = Sender()
    recorder = Recorder()
    center.add_observer(recorder, "Once", sender)
    center.add_observer(recorder, "Once", Any)
    center.add_observer(recorder, Any, sender)
    center.post_notification("Once", sender)
    assert recorder.names == ["Once"]


def test_observers_are_called_in_registration_order_across_registrations(center):
    sender = Sender()
    log = []
    r1, r2, r3, r4 = (Recorder(label, log) for label in ("r1", "r2", "r3", "r4"))
    center.add_observer(r1, Any, sender)
    center.add_observer(r2, "Order", sender)
    center.add_observer(r3, "Order", Any)
    center.add_observer(r4, "Order", sender)
    center.post_notification("Order", sender)
    assert log == [("r1", "Order"), ("r2", "Order"), ("r3", "Order"), ("r4", "Order")]


def test_functions_and_bound_methods_are_observers(center):
    sender = Sender()
    got = []

    def function(notification):
        got.append(("function", notification.name))

    class Holder:
        def method(self, notification):
            got.append(("method", notification.name))

    holder = Holder()
    center.add_observer(function, "F", sender)
    center.add_observer(holder.method, "F", sender)
    center.post_notification("F", sender)
    # A fresh bound method of the same object and function is the same observer.
    center.remove_observer(holder.method, "F", sender)
    center.remove_observer(function, "F", sender)
    center.post_notification("F", sender)
    assert got == [("function", "F"), ("method", "F")]


def test_registering_twice_is_idempotent(center):
    sender = Sender()
    recorder = Recorder()
    center.add_observer(recorder, "Twice", sender)
    center.add_observer(recorder, "Twice", sender)
    center.post_notification("Twice", sender)
    assert recorder.names == ["Twice"]
    center.remove_observer(recorder, "Twice", sender)
    center.post_notification("Twice", sender)
    assert recorder.names == ["Twice"]


def test_remove_raises_for_an_absent_registration_and_discard_does_not(center):
    sender = Sender()
    recorder = Recorder()
    center.add_observer(recorder, "R", sender)
    with pytest.raises(KeyError):
        center.remove_observer(recorder, "R", Any)  # registered for sender, not Any
    with pytest.raises(KeyError):
        center.remove_observer(recorder, "Other", sender)
    with pytest.raises(KeyError):
        center.remove_observer(Recorder(), "R", sender)
    center.discard_observer(recorder, "Other", sender)
    center.post_notification("R", sender)
    assert recorder.names == ["R"]
    center.remove_observer(recorder, "R", sender)
    with pytest.raises(KeyError):
        center.remove_observer(recorder, "R", sender)
    center.discard_observer(recorder, "R", sender)


def test_purge_removes_every_registration_of_an_observer(center):
    sender = Sender()
    recorder, other = Recorder(), Recorder()
    center.add_observer(recorder, "P1", sender)
    center.add_observer(recorder, "P2", Any)
    center.add_observer(recorder, Any, sender)
    center.add_observer(other, "P1", sender)
    center.purge_observer(recorder)
    center.purge_observer(recorder)  # nothing left: silent
    center.post_notification("P1", sender)
    center.post_notification("P2", sender)
    assert recorder.names == []
    assert other.names == ["P1"]
    with pytest.raises(KeyError):
        center.remove_observer(recorder, "P1", sender)


def test_registrations_apply_to_the_next_post(center):
    sender = Sender()
    first, second = Recorder(), Recorder()
    center.post_notification("Next", sender)  # nobody listens yet
    center.add_observer(first, "Next", sender)
    center.post_notification("Next", sender)
    center.add_observer(second, Any, Any)
    center.post_notification("Next", sender)
    center.remove_observer(first, "Next", sender)
    center.post_notification("Next", sender)
    assert first.names == ["Next", "Next"]
    assert [n.name for n in second.received if n.sender is sender] == ["Next", "Next"]


def test_cached_matches_follow_every_kind_of_registration_change(center):
    """What a name and a sender matched is cached: each change of registrations (by
    name, by sender, by both, wildcard) must show at the next post, for a sender seen
    before and for one never seen."""
    seen, fresh = Sender(), Sender()
    by_name, by_sender, by_both, everything = Recorder(), Recorder(), Recorder(), Recorder()
    center.post_notification("CacheTest", sender=seen)  # cached: nobody
    center.add_observer(by_name, "CacheTest")
    center.post_notification("CacheTest", sender=seen)
    center.add_observer(by_sender, sender=seen)
    center.post_notification("CacheTest", sender=seen)
    center.post_notification("CacheTest", sender=fresh)
    center.add_observer(by_both, "CacheTest", sender=fresh)
    center.post_notification("CacheTest", sender=fresh)
    center.add_observer(everything)
    center.post_notification("CacheTest", sender=seen)
    center.post_notification("Other", sender=fresh)
    center.remove_observer(by_sender, sender=seen)
    center.remove_observer(by_name, "CacheTest")
    center.post_notification("CacheTest", sender=seen)
    center.remove_observer(by_both, "CacheTest", sender=fresh)
    center.post_notification("CacheTest", sender=fresh)
    center.remove_observer(everything)
    center.post_notification("CacheTest", sender=fresh)
    assert [n.sender for n in by_name.received] == [seen, seen, fresh, fresh, seen]
    assert [n.sender for n in by_sender.received] == [seen, seen]
    assert [n.sender for n in by_both.received] == [fresh]
    assert [(n.name, n.sender) for n in everything.received] == [
        ("CacheTest", seen),
        ("Other", fresh),
        ("CacheTest", seen),
        ("CacheTest", fresh),
    ]


def test_delivery_is_fifo(center):
    sender = Sender()
    recorder = Recorder()
    center.add_observer(recorder, Any, sender)
    for index in range(100):
        center.post_notification(f"N{index}", sender)
    assert recorder.names == [f"N{index}" for index in range(100)]


def test_a_notification_posted_during_delivery_is_queued_not_reentrant(center):
    sender = Sender()
    log = []

    class Poster:
        def handle_notification(self, notification):
            log.append(("poster enters", notification.name))
            if notification.name == "First":
                center.post_notification("Second", sender)
                center.post_notification("Third", sender)
            log.append(("poster leaves", notification.name))

    center.add_observer(Poster(), Any, sender)
    center.add_observer(Recorder("after", log), Any, sender)
    center.post_notification("First", sender)
    # Everything was delivered before post_notification returned, in order, one at a time.
    assert log == [
        ("poster enters", "First"),
        ("poster leaves", "First"),
        ("after", "First"),
        ("poster enters", "Second"),
        ("poster leaves", "Second"),
        ("after", "Second"),
        ("poster enters", "Third"),
        ("poster leaves", "Third"),
        ("after", "Third"),
    ]


def test_observers_added_or_removed_during_delivery(center):
    sender = Sender()
    late = Recorder("late")
    victim = Recorder("victim")

    def changer(notification):
        if notification.name == "Start":
            center.add_observer(late, Any, sender)
            center.remove_observer(victim, Any, sender)
            center.post_notification("Queued", sender)

    center.add_observer(changer, Any, sender)
    center.add_observer(victim, Any, sender)
    center.post_notification("Start", sender)
    center.post_notification("Later", sender)
    # Added: not called for the notification being delivered, called for the queued one.
    assert late.names == ["Queued", "Later"]
    # Removed: not called from the moment of removal, even for the current notification.
    assert victim.names == []


def test_a_failing_observer_is_logged_and_isolated(center, caplog):
    sender = Sender()
    before, after = Recorder(), Recorder()

    def broken(notification):
        raise ValueError("observer bug 1234")

    center.add_observer(before, "Boom", sender)
    center.add_observer(broken, "Boom", sender)
    center.add_observer(after, "Boom", sender)
    with caplog.at_level(logging.ERROR, logger="sipsimple.notification"):
        center.post_notification("Boom", sender)
    assert before.names == ["Boom"] and after.names == ["Boom"]
    [record] = [r for r in caplog.records if r.name == "sipsimple.notification"]
    assert record.levelno == logging.ERROR
    assert record.exc_info[0] is ValueError
    assert "Boom" in record.getMessage()
    assert "Traceback" in caplog.text and "observer bug 1234" in caplog.text


def test_the_delivery_state_recovers_after_a_failing_observer(center):
    sender = Sender()
    recorder = Recorder()

    def broken(notification):
        if notification.name == "A":
            center.post_notification("B", sender)
            raise RuntimeError("after posting")

    center.add_observer(broken, Any, sender)
    center.add_observer(recorder, Any, sender)
    center.post_notification("A", sender)
    center.post_notification("C", sender)
    assert recorder.names == ["A", "B", "C"]


def test_weak_observers_are_dropped_when_collected(center):
    sender = Sender()
    sender_ref = weakref.ref(sender)
    strong = Recorder()
    weak_object = Recorder()
    received = []

    class Holder:
        def method(self, notification):
            received.append(notification.name)

    holder = Holder()

    def function(notification):
        received.append(("function", notification.name))

    center.add_observer(strong, "W", sender)
    center.add_observer(weak_object, "W", sender, weak=True)
    center.add_observer(holder.method, "W", sender, weak=True)  # the method object is temporary
    center.add_observer(function, "W", sender, weak=True)
    center.post_notification("W", sender)
    assert weak_object.names == ["W"]
    assert received == ["W", ("function", "W")]

    weak_recorder = weakref.ref(weak_object)
    del weak_object, holder, function
    gc.collect()
    assert weak_recorder() is None
    center.post_notification("W", sender)
    assert received == ["W", ("function", "W")]
    assert strong.names == ["W", "W"]

    # Once the weak registrations are dropped, only the strong one holds the sender.
    center.remove_observer(strong, "W", sender)
    strong.received.clear()
    del sender
    gc.collect()
    assert sender_ref() is None


def test_posting_from_eight_threads_delivers_each_notification_once_in_order(center):
    threads_count, per_thread = 8, 400
    sender = Sender()
    lock = threading.Lock()
    seen = {"one": [], "two": []}
    wrong_thread = []

    def make(label):
        def observer(notification):
            thread_index, seq = notification.data.thread, notification.data.seq
            if notification.data.ident != threading.get_ident():
                wrong_thread.append(notification)
            with lock:
                seen[label].append((thread_index, seq))

        return observer

    one, two = make("one"), make("two")
    center.add_observer(one, "Load", sender)
    center.add_observer(two, Any, sender)
    barrier = threading.Barrier(threads_count)

    def post(thread_index):
        barrier.wait()
        ident = threading.get_ident()
        for seq in range(per_thread):
            center.post_notification(
                "Load", sender, NotificationData(thread=thread_index, seq=seq, ident=ident)
            )

    threads = [threading.Thread(target=post, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong_thread == []  # delivered synchronously, on the posting thread
    for label in ("one", "two"):
        got = seen[label]
        assert sorted(got) == [(t, s) for t in range(threads_count) for s in range(per_thread)]
        for thread_index in range(threads_count):
            assert [s for t, s in got if t == thread_index] == list(range(per_thread))


def test_registrations_change_safely_while_other_threads_post(center):
    sender = Sender()
    stop = threading.Event()
    errors = []
    steady = Recorder()
    center.add_observer(steady, "Churn", sender)

    def churn():
        while not stop.is_set():
            recorder = Recorder()
            center.add_observer(recorder, "Churn", sender)
            center.add_observer(recorder, Any, sender)
            center.purge_observer(recorder)

    def post():
        try:
            for _ in range(2000):
                center.post_notification("Churn", sender)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    churner = threading.Thread(target=churn)
    churner.start()
    posters = [threading.Thread(target=post) for _ in range(3)]
    for thread in posters:
        thread.start()
    for thread in posters:
        thread.join()
    stop.set()
    churner.join()
    assert errors == []
    assert len(steady.received) == 6000


def test_bad_arguments_are_refused(center):
    with pytest.raises(TypeError):
        center.add_observer(object(), "N")
    with pytest.raises(TypeError):
        center.add_observer(Recorder(), b"N")
    with pytest.raises(TypeError):
        center.post_notification(Any)
    with pytest.raises(ValueError):
        center.post_notification("N", Any)


async def test_observer_on_loop_delivers_on_that_loop(center, caplog):
    sender = Sender()
    loop = asyncio.get_running_loop()
    got = []
    done = asyncio.Event()

    def observer(notification):
        got.append((notification.name, asyncio.get_running_loop() is loop))
        if notification.name == "Last":
            done.set()
        if notification.name == "Bad":
            raise KeyError("bad observer")

    center.add_observer(ObserverOnLoop(observer, loop), Any, sender)

    def post_from_thread():
        for name in ("One", "Bad", "Two", "Last"):
            center.post_notification(name, sender)

    with caplog.at_level(logging.ERROR, logger="sipsimple.notification"):
        await asyncio.to_thread(post_from_thread)
        await asyncio.wait_for(done.wait(), 5)
    assert got == [("One", True), ("Bad", True), ("Two", True), ("Last", True)]
    assert "bad observer" in caplog.text and "Traceback" in caplog.text

    # Another wrapper of the same observer for the same loop removes the registration.
    assert ObserverOnLoop(observer, loop) == ObserverOnLoop(observer, loop)
    assert hash(ObserverOnLoop(observer, loop)) == hash(ObserverOnLoop(observer, loop))
    assert ObserverOnLoop(observer, loop) != ObserverOnLoop(Recorder(), loop)
    center.remove_observer(ObserverOnLoop(observer, loop), Any, sender)
    center.post_notification("Gone", sender)
    await asyncio.sleep(0.01)
    assert [name for name, _ in got] == ["One", "Bad", "Two", "Last"]


def test_observer_on_thread_delivers_through_a_queue_consumer(center):
    sender = Sender()
    calls = queue.SimpleQueue()
    got = []

    def gui_thread():
        while (call := calls.get()) is not None:
            call()

    consumer = threading.Thread(target=gui_thread)
    consumer.start()
    recorder = Recorder()

    def observer(notification):
        got.append((notification.name, threading.current_thread() is consumer))
        recorder.handle_notification(notification)

    try:
        center.add_observer(ObserverOnThread(observer, calls.put), Any, sender)
        for name in ("A", "B", "C"):
            center.post_notification(name, sender)
        # removal with an equal wrapper (calls.put is a fresh bound method each time)
        center.remove_observer(ObserverOnThread(observer, calls.put), Any, sender)
        center.post_notification("D", sender)
    finally:
        calls.put(None)
        consumer.join()
    assert got == [("A", True), ("B", True), ("C", True)]


def test_observer_on_thread_with_an_executor(center):
    sender = Sender()
    recorder = Recorder()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="gui") as executor:
        center.add_observer(ObserverOnThread(recorder, executor.submit), "Ex", sender)
        center.post_notification("Ex", sender)
        center.purge_observer(ObserverOnThread(recorder, executor.submit))
        center.post_notification("Ex", sender)
    assert recorder.names == ["Ex"]


def test_wrappers_cannot_be_held_weakly(center):
    with pytest.raises(ValueError):
        NotificationCenter().add_observer(
            ObserverOnThread(Recorder(), queue.SimpleQueue().put), "X", weak=True
        )


async def test_notification_queue_collects_from_creation(center):
    sender = Sender()
    with NotificationQueue(sender=sender) as notifications:
        center.post_notification("A", sender, NotificationData(n=1))
        center.post_notification("B", sender)
        center.post_notification("A", Sender())  # another sender: not collected
        first = await notifications.get(timeout=1)
        second = await notifications.get(timeout=1)
        assert (first.name, first.data.n, second.name) == ("A", 1, "B")
        with pytest.raises(TimeoutError, match="no Any notification"):
            await notifications.get(timeout=0.01)


async def test_notification_queue_wait_for_keeps_what_it_skips(center):
    sender = Sender()
    with NotificationQueue(name=Any, sender=sender) as notifications:
        center.post_notification("Progress", sender, NotificationData(percent=10))
        center.post_notification("Progress", sender, NotificationData(percent=90))
        center.post_notification("Done", sender)
        done = await notifications.wait_for("Done", timeout=1)
        assert done.name == "Done"
        high = await notifications.wait_for(
            "Progress", condition=lambda n: n.data.percent > 50, timeout=1
        )
        assert high.data.percent == 90
        low = await notifications.get(timeout=1)
        assert low.data.percent == 10
        with pytest.raises(TimeoutError, match=r"'Done'.*collected instead: \[\]"):
            await notifications.wait_for("Done", timeout=0.01)


async def test_notification_queue_waits_for_notifications_from_other_threads(center):
    sender = Sender()
    with NotificationQueue("Remote", sender) as notifications:
        waiter = asyncio.ensure_future(notifications.wait_for("Remote", timeout=5))
        await asyncio.sleep(0)
        thread = threading.Thread(target=center.post_notification, args=("Remote", sender))
        thread.start()
        notification = await waiter
        thread.join()
        assert notification.name == "Remote"


async def test_notification_queue_stops_collecting_when_closed(center):
    sender = Sender()
    notifications = NotificationQueue("Closed", sender)
    center.post_notification("Closed", sender)
    notifications.close()
    center.post_notification("Closed", sender)
    assert (await notifications.get(timeout=1)).name == "Closed"
    with pytest.raises(TimeoutError):
        await notifications.get(timeout=0.01)


def test_notification_queue_needs_a_loop():
    with pytest.raises(RuntimeError):
        NotificationQueue("X")


def test_data_carries_the_posting_timestamp_unless_the_sender_set_one():
    center = NotificationCenter()
    seen = []
    center.add_observer(seen.append, name="TimestampTest")
    try:
        center.post_notification("TimestampTest", data=NotificationData(code=200))
        earlier = datetime(2020, 1, 1, tzinfo=UTC)
        center.post_notification("TimestampTest", data=NotificationData(timestamp=earlier))
    finally:
        center.remove_observer(seen.append, name="TimestampTest")
    assert seen[0].data.timestamp == seen[0].timestamp
    assert seen[0].data.code == 200
    assert seen[1].data.timestamp == earlier
