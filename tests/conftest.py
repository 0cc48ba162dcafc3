"""Fixtures shared by the whole suite (area fixtures live beside their tests).

Every notification posted while the suite runs is recorded (tests/support/
notifications.py), those of RemoteSDK children included: a child's notifications
are taken just before it stops. tests/test_spec_notifications.py checks the record
at the end; it is moved behind every other test here.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.support.notifications import RECORDER, NotificationRecorder
from tests.support.notifications import notification_recorder as notification_recorder
from tests.support.remote import RemoteSDK

SPEC_CHECK = "test_spec_notifications.py"


@pytest.fixture(scope="session", autouse=True)
def _record_notifications(
    notification_recorder: NotificationRecorder,
) -> Iterator[NotificationRecorder]:
    stop = RemoteSDK.stop

    def stop_and_record(remote: RemoteSDK) -> None:
        if remote.returncode is None and remote._process is not None:
            RECORDER.add_remote(remote)
        stop(remote)

    RemoteSDK.stop = stop_and_record  # type: ignore[method-assign]
    try:
        yield notification_recorder
    finally:
        RemoteSDK.stop = stop  # type: ignore[method-assign]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The spec notification check goes last, once everything else has posted."""
    last = [item for item in items if item.path.name == SPEC_CHECK]
    items[:] = [item for item in items if item.path.name != SPEC_CHECK] + last
