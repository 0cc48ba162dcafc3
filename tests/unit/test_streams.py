"""IMediaStream, MediaStreamRegistry and MediaStreamRegistrar: what an application
writing its own stream relies on."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sipsimple.streams import (
    MEDIA_STREAM_NOTIFICATIONS,
    IMediaStream,
    InvalidStreamError,
    MediaStreamRegistrar,
    MediaStreamRegistry,
)


class _Complete(IMediaStream):
    """Every method, doing nothing: the base of the classes below."""

    @classmethod
    def new_from_sdp(cls, account: Any, remote_sdp: Any, stream_index: int) -> None:
        return None

    def get_local_media(self, for_offer: bool) -> Any:
        return None

    def initialize(self, session: Any, direction: str) -> None: ...
    def start(self, local_sdp: Any, remote_sdp: Any, stream_index: int) -> None: ...
    def validate_update(self, remote_sdp: Any, stream_index: int) -> bool:
        return True

    def update(self, local_sdp: Any, remote_sdp: Any, stream_index: int) -> None: ...
    def hold(self) -> None: ...
    def unhold(self) -> None: ...
    def deactivate(self) -> None: ...
    def end(self) -> None: ...


@pytest.fixture
def registered() -> Iterator[list[type]]:
    """Classes a test registers; removed again afterwards (the registry is global)."""
    classes: list[type] = []
    yield classes
    registry = MediaStreamRegistry()
    for cls in classes:
        if cls in list(registry):
            registry.remove(cls)


def test_the_registry_is_a_singleton():
    assert MediaStreamRegistry() is MediaStreamRegistry()


def test_defining_a_type_registers_the_class(registered):
    class ChatLike(_Complete, metaclass=MediaStreamRegistrar):
        type = "test-chat-like"
        priority = 7

    registered.append(ChatLike)
    assert ChatLike in list(MediaStreamRegistry())
    assert isinstance(ChatLike(), IMediaStream)


def test_a_class_without_a_type_of_its_own_is_left_out(registered):
    class Base(_Complete, metaclass=MediaStreamRegistrar):
        pass

    class Concrete(Base):
        type = "test-concrete"

    registered.append(Concrete)
    classes = list(MediaStreamRegistry())
    assert Base not in classes and Concrete in classes


def test_iteration_goes_by_descending_priority_keeping_the_order_of_ties(registered):
    made = []
    for name, priority in [("low", 1), ("high", 50), ("tie-a", 10), ("tie-b", 10)]:
        cls = MediaStreamRegistrar(f"Stream_{name}", (_Complete,), {"type": f"test-{name}"})
        cls.priority = priority
        MediaStreamRegistry().add(cls)  # again, now that its priority is set
        made.append(cls)
    registered.extend(made)
    ours = [cls for cls in MediaStreamRegistry() if cls in made]
    assert [cls.type for cls in ours] == ["test-high", "test-tie-a", "test-tie-b", "test-low"]
    priorities = [cls.priority for cls in MediaStreamRegistry()]
    assert priorities == sorted(priorities, reverse=True)


def test_defining_a_class_again_replaces_it(registered):
    def define(priority: int) -> type:
        class Redefined(_Complete, metaclass=MediaStreamRegistrar):
            type = "test-redefined"

        Redefined.priority = priority
        return Redefined

    first, second = define(1), define(2)
    registered.append(second)
    classes = list(MediaStreamRegistry())
    assert second in classes and first not in classes


def test_add_refuses_what_is_not_a_usable_stream_class():
    registry = MediaStreamRegistry()
    with pytest.raises(InvalidStreamError, match="not a class implementing IMediaStream"):
        registry.add(object)  # type: ignore[arg-type]
    with pytest.raises(InvalidStreamError, match="not a class"):
        registry.add(_Complete())  # type: ignore[arg-type]

    class Partial(IMediaStream):
        type = "test-partial"

        def end(self) -> None: ...

    with pytest.raises(InvalidStreamError, match=r"Partial does not implement .*get_local_media"):
        registry.add(Partial)
    with pytest.raises(InvalidStreamError, match=r"type must be a non-empty str"):
        registry.add(_Complete)
    bad_priority = type("BadPriority", (_Complete,), {"type": "test-bad", "priority": "high"})
    with pytest.raises(InvalidStreamError, match="priority must be an int"):
        registry.add(bad_priority)
    assert Partial not in list(registry) and bad_priority not in list(registry)


def test_the_registrar_refuses_an_incomplete_stream_at_definition():
    with pytest.raises(InvalidStreamError, match="does not implement"):

        class Incomplete(IMediaStream, metaclass=MediaStreamRegistrar):
            type = "test-incomplete"


def test_remove_needs_a_registered_class():
    with pytest.raises(ValueError, match="not registered"):
        MediaStreamRegistry().remove(_Complete)


def test_an_incomplete_stream_cannot_be_instantiated():
    class Partial(IMediaStream):
        pass

    with pytest.raises(TypeError, match="abstract"):
        Partial()  # type: ignore[abstract]


def test_hold_attributes_default_to_off_and_on_hold_combines_them():
    stream = _Complete()
    assert (stream.hold_supported, stream.on_hold_by_local, stream.on_hold_by_remote) == (
        False,
        False,
        False,
    )
    assert stream.on_hold is False
    stream.on_hold_by_remote = True
    assert stream.on_hold is True
    stream.on_hold_by_remote, stream.on_hold_by_local = False, True
    assert stream.on_hold is True


def test_the_notification_contract_names_the_spec_notifications():
    assert MEDIA_STREAM_NOTIFICATIONS == (
        "MediaStreamDidInitialize",
        "MediaStreamDidStart",
        "MediaStreamDidFail",
        "MediaStreamWillEnd",
        "MediaStreamDidEnd",
    )
