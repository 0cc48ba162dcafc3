"""Which notifications a test session observed, for the "every spec notification is
posted somewhere in the suite" check.

:data:`RECORDER` observes every notification posted in this process while started
(names, how often, the class names of their senders, and their data fields: those
every instance carried and those any did). Notifications of RemoteSDK
children are added with ``RECORDER.add_remote(remote)`` (before ``remote.stop()``).
The session fixture :func:`notification_recorder` starts it for the whole session; a
conftest makes it apply everywhere with::

    from tests.support.notifications import notification_recorder  # noqa: F401

    @pytest.fixture(scope="session", autouse=True)
    def _record_notifications(notification_recorder): ...

:func:`spec_notification_names` lists the notification names the spec documents, to
compare with ``RECORDER.missing(...)`` at the end of the session;
:func:`spec_notification_fields` gives the data fields the spec lists for each
notification of chosen classes, to compare with ``RECORDER.common_fields``.
"""

from __future__ import annotations

import re
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sipsimple.notification import Notification, NotificationCenter

__all__ = [
    "RECORDER",
    "NotificationRecorder",
    "notification_recorder",
    "spec_notification_fields",
    "spec_notification_names",
]


class NotificationRecorder:
    """Counts the notifications posted while it is started; thread-safe."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.senders: defaultdict[str, set[str]] = defaultdict(set)
        self.common_fields: dict[str, set[str]] = {}  # carried by every instance
        self.any_fields: defaultdict[str, set[str]] = defaultdict(set)  # by at least one
        self._lock = threading.Lock()
        self._started = False

    def start(self) -> None:
        if not self._started:
            NotificationCenter().add_observer(self)
            self._started = True

    def stop(self) -> None:
        if self._started:
            NotificationCenter().discard_observer(self)
            self._started = False

    def handle_notification(self, notification: Notification) -> None:
        fields = vars(notification.data).keys()
        self._add(notification.name, type(notification.sender).__name__, fields)

    def add_remote(self, remote: Any) -> None:
        """Add what a RemoteSDK child posted (its ``notifications`` list)."""
        for notification in remote.notifications:
            self._add(notification.name, notification.sender_type, notification.data.keys())

    def _add(self, name: str, sender_type: str, fields: Iterable[str]) -> None:
        fields = set(fields)
        with self._lock:
            self.counts[name] += 1
            self.senders[name].add(sender_type)
            self.any_fields[name] |= fields
            common = self.common_fields.get(name)
            self.common_fields[name] = fields if common is None else common & fields

    @property
    def names(self) -> set[str]:
        with self._lock:
            return set(self.counts)

    def seen(self, name: str) -> bool:
        return name in self.names

    def missing(self, expected: Iterable[str]) -> list[str]:
        """The expected names never observed, sorted."""
        names = self.names
        return sorted(set(expected) - names)


RECORDER = NotificationRecorder()


@pytest.fixture(scope="session")
def notification_recorder() -> Iterator[NotificationRecorder]:
    """RECORDER, observing for the whole session."""
    RECORDER.start()
    yield RECORDER


_SECTION = re.compile(r"^==== ?notifications ?====", re.MULTILINE)
_NAME = re.compile(r"^'''([A-Z][A-Za-z]+)'''::", re.MULTILINE)


_HEADING = re.compile(r"^=== (.+?) ===\s*$", re.MULTILINE)
_FIELD = re.compile(r"\[\[BR\]\](?:'')?([a-z_]+)(?:'')?:\[\[BR\]\]")


def spec_notification_fields(
    spec: str | Path, classes: Iterable[str], first: str = "SIPApplication"
) -> dict[str, set[str]]:
    """The data fields the spec lists for each notification of ``classes`` (the names of
    its "=== Class ===" sections; ``first`` names the section before the first such
    heading). A name documented by several classes gets the union of their fields."""
    text = Path(spec).read_text(errors="replace")
    wanted = set(classes)
    headings = [(m.start(), m.group(1)) for m in _HEADING.finditer(text)]
    fields: dict[str, set[str]] = {}
    for match in _SECTION.finditer(text):
        owner = first
        for position, heading in headings:
            if position > match.start():
                break
            owner = heading
        if owner not in wanted:
            continue
        rest = text[match.end() :]
        heading = re.search(r"^=+ ", rest, re.MULTILINE)
        section = rest[: heading.start()] if heading else rest
        entries = list(_NAME.finditer(section))
        for index, entry in enumerate(entries):
            end = entries[index + 1].start() if index + 1 < len(entries) else len(section)
            body = section[entry.end() : end]
            fields.setdefault(entry.group(1), set()).update(_FIELD.findall(body))
    return fields


def spec_notification_names(spec: str | Path) -> set[str]:
    """The notification names the spec documents: the ``'''Name'''::`` entries of its
    "==== notifications ====" sections (each section ends at the next heading)."""
    text = Path(spec).read_text(errors="replace")
    names: set[str] = set()
    for match in _SECTION.finditer(text):
        rest = text[match.end() :]
        heading = re.search(r"^=+ ", rest, re.MULTILINE)
        section = rest[: heading.start()] if heading else rest
        names.update(_NAME.findall(section))
    return names
