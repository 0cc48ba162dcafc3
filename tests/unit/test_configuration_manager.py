"""ConfigurationManager: the stored tree, the writer thread, start / stop."""

import threading

import pytest

from sipsimple.configuration import (
    ConfigurationError,
    ConfigurationManager,
    DefaultValue,
    DuplicateIDError,
    ObjectNotFoundError,
)
from sipsimple.configuration.backend.memory import MemoryBackend
from sipsimple.notification import NotificationCenter


@pytest.fixture
def notifications():
    received = []
    observer = received.append
    NotificationCenter().add_observer(observer)
    yield received
    NotificationCenter().remove_observer(observer)


@pytest.fixture
def manager():
    configuration = ConfigurationManager()
    configuration.start(MemoryBackend())
    yield configuration
    configuration.stop()


class RecordingBackend:
    """Records each save with the thread it ran in; `gate` can hold the writer."""

    def __init__(self, data=None, fail=False):
        self.data = data or {}
        self.saves = []
        self.threads = []
        self.fail = fail
        self.gate = threading.Event()
        self.gate.set()

    def load(self):
        return dict(self.data)

    def save(self, data):
        self.gate.wait(10)
        self.threads.append(threading.current_thread())
        if self.fail:
            raise OSError(28, "No space left on device")
        self.saves.append(data)


def test_is_a_singleton():
    assert ConfigurationManager() is ConfigurationManager()


def test_update_get_and_copies(manager):
    manager.update(["Accounts", "alice@example.com"], {"enabled": "true", "sip": {"a": ["x"]}})
    stored = manager.get(["Accounts", "alice@example.com"])
    assert stored == {"enabled": "true", "sip": {"a": ["x"]}}
    stored["enabled"] = "false"
    assert manager.get(["Accounts", "alice@example.com", "enabled"]) == "true"
    assert manager.get_names("Accounts") == ["alice@example.com"]
    assert manager.get_names("Nothing") == []


def test_get_missing_raises_object_not_found(manager):
    with pytest.raises(ObjectNotFoundError, match="Accounts/bob"):
        manager.get(["Accounts", "bob"])
    manager.update("top", {"leaf": "x"})
    with pytest.raises(ObjectNotFoundError):
        manager.get(["top", "leaf", "deeper"])


def test_update_merges_and_default_value_removes(manager):
    manager.update("obj", {"a": "1", "group": {"b": "2", "c": "3"}})
    manager.update("obj", {"a": DefaultValue, "group": {"b": DefaultValue}, "d": None})
    assert manager.get("obj") == {"group": {"c": "3"}, "d": None}
    manager.update("obj", {"group": {"c": DefaultValue}})
    assert manager.get("obj") == {"d": None}


def test_update_keeps_the_object_itself_even_when_empty(manager):
    manager.update(["Accounts", "alice@example.com"], {})
    assert manager.get(["Accounts", "alice@example.com"]) == {}


@pytest.mark.parametrize("value", [1, 1.5, True, ["a", 2], object()])
def test_update_refuses_values_outside_the_model(manager, value):
    with pytest.raises(TypeError):
        manager.update("obj", {"name": value})
    assert manager.get_names("obj") == []


@pytest.mark.parametrize("key", [[], "", ["a", ""], ["a", 3]])
def test_bad_keys(manager, key):
    with pytest.raises((ValueError, TypeError)):
        manager.get(key)


def test_delete_prunes_empty_parents(manager):
    manager.update(["Accounts", "a@x.org"], {"enabled": "true"})
    manager.update(["Accounts", "b@x.org"], {"enabled": "true"})
    manager.delete(["Accounts", "a@x.org"])
    assert manager.get_names("Accounts") == ["b@x.org"]
    manager.delete(["Accounts", "b@x.org"])
    assert not manager.contains("Accounts")
    manager.delete(["Accounts", "nobody@x.org"])


def test_rename(manager):
    manager.update(["Accounts", "a@x.org"], {"enabled": "true"})
    manager.update(["Accounts", "b@x.org"], {})
    with pytest.raises(DuplicateIDError):
        manager.rename(["Accounts", "a@x.org"], ["Accounts", "b@x.org"])
    with pytest.raises(ObjectNotFoundError):
        manager.rename(["Accounts", "c@x.org"], ["Accounts", "d@x.org"])
    manager.rename(["Accounts", "a@x.org"], ["Accounts", "c@x.org"])
    assert manager.get(["Accounts", "c@x.org"]) == {"enabled": "true"}
    assert manager.get_names("Accounts") == ["b@x.org", "c@x.org"]


def test_not_started_raises():
    manager = ConfigurationManager()
    assert not manager.started
    with pytest.raises(RuntimeError):
        manager.get("x")
    with pytest.raises(RuntimeError):
        manager.save()


def test_start_twice_raises(manager):
    with pytest.raises(RuntimeError):
        manager.start(MemoryBackend())


def test_start_failure_leaves_it_stopped_and_startable():
    class Broken:
        def load(self):
            raise ConfigurationError("config, line 3: broken")

        def save(self, data):
            raise AssertionError("never called")

    manager = ConfigurationManager()
    with pytest.raises(ConfigurationError, match="line 3"):
        manager.start(Broken())
    assert not manager.started
    manager.start(MemoryBackend({"x": {"y": "z"}}))
    try:
        assert manager.get(["x", "y"]) == "z"
    finally:
        manager.stop()


def test_start_refuses_data_outside_the_model():
    manager = ConfigurationManager()
    with pytest.raises(ConfigurationError):
        manager.start(MemoryBackend({"x": {"y": 5}}))
    assert not manager.started


def test_writes_happen_in_the_writer_thread_not_the_caller():
    backend = RecordingBackend()
    manager = ConfigurationManager()
    manager.start(backend)
    try:
        manager.update("obj", {"a": "1"})
        manager.save().result(timeout=5)
    finally:
        manager.stop()
    assert backend.saves == [{"obj": {"a": "1"}}]
    assert backend.threads[0] is not threading.current_thread()
    assert backend.threads[0].name == "sipsimple-configuration-writer"


def test_save_returns_before_the_write_and_flush_waits():
    backend = RecordingBackend()
    backend.gate.clear()
    manager = ConfigurationManager()
    manager.start(backend)
    try:
        manager.update("obj", {"a": "1"})
        future = manager.save()
        assert not future.done()
        assert manager.flush(timeout=0.05) is False
        backend.gate.set()
        assert manager.flush(timeout=5) is True
        assert future.done() and future.exception() is None
    finally:
        manager.stop()


def test_snapshots_are_written_in_order_and_queued_ones_collapse():
    backend = RecordingBackend()
    backend.gate.clear()
    manager = ConfigurationManager()
    manager.start(backend)
    try:
        futures = []
        for number in range(20):
            manager.update("counter", {"value": str(number)})
            futures.append(manager.save())
        backend.gate.set()
        assert manager.flush(timeout=5)
    finally:
        manager.stop()
    assert all(future.done() and future.exception() is None for future in futures)
    written = [int(save["counter"]["value"]) for save in backend.saves]
    assert written == sorted(written)
    assert written[-1] == 19
    assert len(written) < 20


def test_concurrent_saves_from_many_threads_end_with_the_final_state():
    backend = RecordingBackend()
    manager = ConfigurationManager()
    manager.start(backend)
    try:

        def work(thread_number):
            for number in range(25):
                manager.update(["threads", str(thread_number)], {"n": str(number)})
                manager.save()

        threads = [threading.Thread(target=work, args=(index,)) for index in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert manager.flush(timeout=10)
        final = manager.get("threads")
    finally:
        manager.stop()
    assert final == {str(index): {"n": "24"} for index in range(8)}
    assert backend.saves[-1] == {"threads": final}


def test_failed_write_posts_save_failed_and_fails_the_future(notifications):
    backend = RecordingBackend(fail=True)
    manager = ConfigurationManager()
    manager.start(backend)
    try:
        manager.update("obj", {"a": "1"})
        future = manager.save()
        assert manager.flush(timeout=5)
        assert isinstance(future.exception(), OSError)
        assert manager.get("obj") == {"a": "1"}
    finally:
        manager.stop()
    failures = [n for n in notifications if n.name == "CFGManagerSaveFailed"]
    assert len(failures) == 1
    assert failures[0].sender is manager
    assert isinstance(failures[0].data.exception, OSError)
    assert failures[0].data.operation == "save"
    assert failures[0].data.object is None


def test_stop_waits_for_pending_writes():
    backend = RecordingBackend()
    backend.gate.clear()
    manager = ConfigurationManager()
    manager.start(backend)
    manager.update("obj", {"a": "1"})
    manager.save()
    threading.Timer(0.05, backend.gate.set).start()
    manager.stop()
    assert backend.saves == [{"obj": {"a": "1"}}]
    assert not manager.started
