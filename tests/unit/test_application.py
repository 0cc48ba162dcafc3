import asyncio
import os
import threading

import pytest
from tests.support.application import loopback_file_storage, loopback_storage

from sipsimple.application import ApplicationState, SIPApplication, SIPApplicationError
from sipsimple.configuration import ConfigurationError
from sipsimple.configuration.settings import SIPSimpleSettings
from sipsimple.notification import NotificationCenter, NotificationQueue
from sipsimple.storage import FileStorage
from sipsimple.threading import SIPThread

LIFECYCLE = [
    "SIPApplicationWillStart",
    "SIPApplicationDidStart",
    "SIPApplicationWillEnd",
    "SIPApplicationDidEnd",
]


class Recorder:
    """Records the application's notifications and lets a thread wait for one."""

    def __init__(self):
        self.names = []
        self.on_sip_thread = []
        self.timestamps = []
        self._condition = threading.Condition()
        NotificationCenter().add_observer(self, sender=SIPApplication())

    def handle_notification(self, notification):
        with self._condition:
            self.names.append(notification.name)
            self.on_sip_thread.append(threading.current_thread().name == "SIPThread")
            self.timestamps.append(notification.data.timestamp)
            self._condition.notify_all()

    def wait_for(self, name, count=1, timeout=5):
        with self._condition:
            assert self._condition.wait_for(lambda: self.names.count(name) >= count, timeout), (
                f"no {name} within {timeout}s; got {self.names}"
            )

    def close(self):
        NotificationCenter().remove_observer(self, sender=SIPApplication())


@pytest.fixture
def recorder():
    recorder = Recorder()
    yield recorder
    app = SIPApplication()
    if app.state is not ApplicationState.STOPPED:
        ended = recorder.names.count("SIPApplicationDidEnd")
        app.stop()
        recorder.wait_for("SIPApplicationDidEnd", count=ended + 1)
    recorder.close()


def test_is_a_singleton():
    assert SIPApplication() is SIPApplication()


def test_start_stop_and_start_again(recorder):
    app = SIPApplication()
    for round_ in (1, 2):
        app.start(loopback_storage())
        assert app.running
        recorder.wait_for("SIPApplicationDidStart", count=round_)
        assert app.state is ApplicationState.STARTED
        assert SIPThread().is_running
        app.stop()
        assert not app.running
        recorder.wait_for("SIPApplicationDidEnd", count=round_)
        assert app.state is ApplicationState.STOPPED
    assert recorder.names == LIFECYCLE * 2
    assert all(recorder.on_sip_thread)
    assert recorder.timestamps == sorted(recorder.timestamps)


def test_start_while_running_is_refused(recorder):
    app = SIPApplication()
    app.start(loopback_storage())
    with pytest.raises(SIPApplicationError, match="stop"):
        app.start(loopback_storage())
    recorder.wait_for("SIPApplicationDidStart")


def test_stop_right_after_start_still_ends_cleanly(recorder):
    app = SIPApplication()
    app.start(loopback_storage())
    app.stop()
    app.stop()  # a second stop is harmless
    recorder.wait_for("SIPApplicationDidEnd")
    # Whether DidStart made it depends on the race; the order never does.
    assert recorder.names in (LIFECYCLE, [n for n in LIFECYCLE if n != "SIPApplicationDidStart"])
    assert app.state is ApplicationState.STOPPED


def test_broken_configuration_raises_and_leaves_it_startable(tmp_path, recorder):
    storage = FileStorage(tmp_path)
    config = os.path.join(storage.directory, "config")
    broken = b'{\n  "SIPSimpleSettings": {\n    "user_agent": "x",,\n  }\n}\n'
    with open(config, "wb") as f:
        f.write(broken)
    app = SIPApplication()
    with pytest.raises(ConfigurationError) as info:
        app.start(storage)
    assert "config" in str(info.value) and "line 3" in str(info.value)
    assert app.state is ApplicationState.STOPPED
    assert not SIPThread().is_running
    with open(config, "rb") as f:
        assert f.read() == broken  # reported, never overwritten
    os.unlink(config)
    app.start(loopback_file_storage(tmp_path))
    recorder.wait_for("SIPApplicationDidStart")


def test_instance_id_is_generated_once_and_kept(tmp_path, recorder):
    app = SIPApplication()
    app.start(loopback_file_storage(tmp_path))
    recorder.wait_for("SIPApplicationDidStart")
    first = SIPSimpleSettings().instance_id
    assert first.startswith("urn:uuid:")
    app.stop()
    recorder.wait_for("SIPApplicationDidEnd")
    app.start(loopback_file_storage(tmp_path))
    recorder.wait_for("SIPApplicationDidStart", count=2)
    assert SIPSimpleSettings().instance_id == first


async def test_runs_on_the_applications_own_loop(recorder):
    app = SIPApplication()
    with NotificationQueue(sender=app) as queue:
        app.start(loopback_storage(), loop=asyncio.get_running_loop())
        assert not SIPThread().owns_loop
        await queue.wait_for("SIPApplicationDidStart", timeout=5)
        app.stop()
        await queue.wait_for("SIPApplicationDidEnd", timeout=5)
    assert app.state is ApplicationState.STOPPED
