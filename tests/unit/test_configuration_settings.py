"""Setting, SettingsGroup, SettingsObject: coercion, tracking, persistence, notifications."""

import pytest

from sipsimple.configuration import (
    ConfigurationManager,
    CorrelatedSetting,
    DefaultValue,
    DuplicateIDError,
    ModifiedValue,
    RuntimeSetting,
    Setting,
    SettingsGroup,
    SettingsObject,
    SettingsObjectExtension,
    SettingsObjectID,
)
from sipsimple.configuration.backend.memory import MemoryBackend
from sipsimple.configuration.datatypes import (
    NonNegativeInteger,
    PortRange,
    SIPAddress,
    SIPTransportList,
)
from sipsimple.notification import NotificationCenter


@pytest.fixture
def notifications():
    received = []
    observer = received.append
    NotificationCenter().add_observer(observer)
    yield received
    NotificationCenter().remove_observer(observer)


def names(notifications):
    return [notification.name for notification in notifications]


@pytest.fixture
def backend():
    return MemoryBackend()


@pytest.fixture
def manager(backend):
    configuration = ConfigurationManager()
    configuration.start(backend)
    yield configuration
    configuration.stop()


def restart(manager, backend):
    assert manager.flush(timeout=5)
    manager.stop()
    manager.start(backend)


def _check_ports(port, sibling):
    if port == sibling != 0:
        raise ValueError("ports must differ")


class Inner(SettingsGroup):
    depth = Setting(type=NonNegativeInteger, default=3)


class Middle(SettingsGroup):
    flag = Setting(type=bool, default=False)
    inner = Inner


class Things(SettingsObject):
    __id__ = "Things"

    name = Setting(type=str, default="thing")
    count = Setting(type=NonNegativeInteger, default=1)
    optional = Setting(type=SIPAddress, default=None, nillable=True)
    ports = Setting(type=PortRange, default=PortRange(1000, 2000))
    transports = Setting(type=SIPTransportList, default=SIPTransportList(["udp"]))
    volatile = RuntimeSetting(type=bool, default=False)
    first = CorrelatedSetting(type=int, sibling="second", validator=_check_ports, default=0)
    second = CorrelatedSetting(type=int, sibling="first", validator=_check_ports, default=0)
    middle = Middle


class Person(SettingsObject):
    __group__ = "People"
    __id__ = SettingsObjectID(type=SIPAddress)

    id = __id__
    nickname = Setting(type=str, default=None, nillable=True)
    middle = Middle


# Setting


def test_setting_needs_a_default_unless_nillable():
    with pytest.raises(TypeError):
        Setting(type=int)
    assert Setting(type=int, nillable=True).default is None


def test_defaults_are_coerced_and_checked():
    assert Setting(type=SIPTransportList, default="tls, tcp").default == ["tls", "tcp"]
    with pytest.raises(ValueError):
        Setting(type=PortRange, default="2000-1000")


def test_values_are_coerced_with_the_type(manager):
    things = Things()
    things.count = "7"
    assert things.count == 7 and type(things.count) is NonNegativeInteger
    things.ports = (3000, 4000)
    assert things.ports == PortRange(3000, 4000)
    things.transports = "tls,tcp"
    assert things.transports == ["tls", "tcp"]
    things.middle.flag = "yes"
    assert things.middle.flag is True
    things.middle.flag = 0
    assert things.middle.flag is False


@pytest.mark.parametrize(
    ("attribute", "value", "fragment"),
    [
        ("count", -1, "Things.count"),
        ("count", "seven", "Things.count"),
        ("count", 2.5, "integer"),
        ("count", True, "number"),
        ("first", True, "number"),
        ("first", "1x", "integer"),
        ("name", 5, "string"),
        ("transports", ["udp", "sctp"], "expected one of: udp, tcp, tls"),
        ("ports", "1-0", "Things.ports"),
        ("optional", "no-at-sign", "user@domain"),
    ],
)
def test_invalid_values_name_the_setting_and_what_is_allowed(manager, attribute, value, fragment):
    things = Things()
    before = getattr(things, attribute)
    with pytest.raises(ValueError, match=fragment):
        setattr(things, attribute, value)
    assert getattr(things, attribute) == before


def test_bool_setting_refuses_words_it_does_not_know(manager):
    with pytest.raises(ValueError, match=r"Things\.middle\.flag.*boolean"):
        Things().middle.flag = "maybe"


def test_nested_group_errors_name_the_full_path(manager):
    with pytest.raises(ValueError, match=r"Things\.middle\.inner\.depth"):
        Things().middle.inner.depth = -5


def test_only_nillable_settings_take_none(manager):
    things = Things()
    with pytest.raises(ValueError, match="None is not allowed"):
        things.count = None
    things.optional = "bob@example.com"
    things.optional = None
    assert things.optional is None


def test_default_value_resets(manager):
    things = Things()
    things.count = 5
    things.count = DefaultValue
    assert things.count == 1


def test_unknown_names_on_groups_are_refused(manager):
    with pytest.raises(AttributeError, match=r"Things\.middle\.flga"):
        Things().middle.flga = True
    with pytest.raises(AttributeError):
        Things().middle = Middle()


def test_correlated_settings(manager):
    things = Things()
    things.first = 5060
    with pytest.raises(ValueError, match="ports must differ"):
        things.second = 5060
    things.second = 5061
    things.first = 0
    things.second = 0


def test_class_access_gives_descriptors_and_group_classes():
    assert isinstance(Things.count, Setting)
    assert Things.middle is Middle
    assert Things.middle.inner.depth.default == 3


def test_each_object_has_its_own_group_instances(manager):
    alice, bob = Person("alice@example.com"), Person("bob@example.com")
    alice.middle.inner.depth = 9
    assert bob.middle.inner.depth == 3
    assert alice.middle is alice.middle


# Modified tracking


def test_get_modified_reports_dotted_names_old_and_new(manager):
    things = Things()
    assert things.get_modified() == {}
    things.count = 4
    things.middle.inner.depth = 8
    things.volatile = True
    assert things.get_modified() == {
        "count": ModifiedValue(1, 4),
        "middle.inner.depth": ModifiedValue(3, 8),
        "volatile": ModifiedValue(False, True),
    }
    things.count = 1
    assert "count" not in things.get_modified()


def test_save_clears_modified_and_posts_did_change(manager, notifications):
    things = Things()
    things.count = 4
    things.middle.flag = True
    things.save().result(timeout=5)
    change = [n for n in notifications if n.name == "CFGSettingsObjectDidChange"]
    assert len(change) == 1
    assert change[0].sender is things
    assert change[0].data.modified == {
        "count": ModifiedValue(1, 4),
        "middle.flag": ModifiedValue(False, True),
    }
    assert things.get_modified() == {}
    notifications.clear()
    things.save()
    assert notifications == []


def test_runtime_settings_change_without_being_stored(manager, backend, notifications):
    things = Things()
    things.volatile = True
    things.save().result(timeout=5)
    assert names(notifications).count("CFGSettingsObjectDidChange") == 1
    assert manager.get_names("Things") == []
    restart(manager, backend)
    assert Things().volatile is False


# Persistence


def test_values_survive_a_restart_and_defaults_are_not_stored(manager, backend):
    things = Things()
    things.count = 9
    things.optional = "carol@example.com"
    things.middle.inner.depth = 0
    things.save()
    restart(manager, backend)
    assert manager.get("Things") == {
        "count": "9",
        "optional": "carol@example.com",
        "middle": {"inner": {"depth": "0"}},
    }
    again = Things()
    assert again is not things
    assert (again.count, again.optional, again.middle.inner.depth) == (9, "carol@example.com", 0)
    assert again.name == "thing"
    assert again.get_modified() == {}


def test_explicit_none_is_stored_and_reset_removes(manager, backend):
    person = Person("dave@example.com")
    person.nickname = "Dave"
    person.save()
    person.nickname = None
    person.save()
    assert manager.get(["People", "dave@example.com"]) == {"nickname": None}
    person.nickname = DefaultValue
    person.save()
    assert manager.get(["People", "dave@example.com"]) == {}


def test_values_this_version_cannot_read_are_reported_and_stay_stored(backend, notifications):
    backend.save({"Things": {"count": "many", "name": "kept", "future_setting": "x"}})
    manager = ConfigurationManager()
    manager.start(backend)
    try:
        things = Things()
        assert things.count == 1 and things.name == "kept"
        failed = [n for n in notifications if n.name == "CFGManagerLoadFailed"]
        assert len(failed) == 1
        assert failed[0].data.attribute == "count"
        assert failed[0].data.container is things
        assert "many" in str(failed[0].data.error)
        things.name = "changed"
        things.save()
        assert manager.get("Things") == {"count": "many", "name": "changed", "future_setting": "x"}
    finally:
        manager.stop()


def test_a_group_stored_as_a_value_is_reported(backend, notifications):
    backend.save({"Things": {"middle": "oops"}})
    manager = ConfigurationManager()
    manager.start(backend)
    try:
        assert Things().middle.flag is False
    finally:
        manager.stop()
    assert [n.data.attribute for n in notifications if n.name == "CFGManagerLoadFailed"] == [
        "middle"
    ]


# Object identity, lifecycle and notifications


def test_fixed_id_objects_are_singletons_and_active_at_once(manager, notifications):
    things = Things()
    assert Things() is things
    assert names(notifications) == ["CFGSettingsObjectWasActivated"]
    assert notifications[0].sender is things
    with pytest.raises(TypeError):
        Things("other")
    with pytest.raises(TypeError):
        things.delete()


def test_new_object_is_created_and_activated_on_first_save(manager, notifications):
    person = Person("erin@example.com")
    assert notifications == []
    assert Person("erin@example.com") is person
    person.save().result(timeout=5)
    assert names(notifications) == ["CFGSettingsObjectWasActivated", "CFGSettingsObjectWasCreated"]
    assert all(n.sender is person for n in notifications)
    assert manager.get(["People", "erin@example.com"]) == {}


def test_loaded_object_is_activated_on_construction(manager, backend, notifications):
    Person("frank@example.com").save()
    restart(manager, backend)
    notifications.clear()
    person = Person("frank@example.com")
    assert names(notifications) == ["CFGSettingsObjectWasActivated"]
    assert notifications[0].sender is person


def test_ids_are_coerced_and_required(manager):
    with pytest.raises(ValueError, match="invalid id for Person"):
        Person("not-an-address")
    with pytest.raises(TypeError):
        Person()
    assert isinstance(Person(id="gina@example.com").id, SIPAddress)


def test_delete(manager, backend, notifications):
    person = Person("hank@example.com")
    person.nickname = "H"
    person.save()
    notifications.clear()
    person.delete().result(timeout=5)
    assert names(notifications) == ["CFGSettingsObjectWasDeleted"]
    assert notifications[0].sender is person
    assert not manager.contains("People")
    notifications.clear()
    person.delete()
    person.save()
    assert notifications == []
    restart(manager, backend)
    assert Person("hank@example.com").nickname is None


def test_a_deleted_id_can_be_used_again(manager):
    person = Person("ivy@example.com")
    person.save()
    person.delete()
    fresh = Person("ivy@example.com")
    assert fresh is not person


def test_rename(manager, backend, notifications):
    person = Person("jack@example.com")
    person.nickname = "J"
    person.save()
    notifications.clear()
    person.id = "jacques@example.com"
    assert isinstance(person.id, SIPAddress)
    assert manager.get_names("People") == ["jack@example.com"]
    person.save().result(timeout=5)
    assert manager.get_names("People") == ["jacques@example.com"]
    assert names(notifications) == ["CFGSettingsObjectDidChange"]
    assert notifications[0].data.modified == {
        "__id__": ModifiedValue("jack@example.com", "jacques@example.com")
    }
    assert Person("jacques@example.com") is person
    restart(manager, backend)
    assert Person("jacques@example.com").nickname == "J"


def test_rename_back_before_saving_is_no_change(manager, notifications):
    person = Person("kim@example.com")
    person.save()
    person.id = "kimberly@example.com"
    person.id = "kim@example.com"
    notifications.clear()
    person.save()
    assert notifications == []


def test_rename_conflicts(manager):
    first, second = Person("leo@example.com"), Person("lea@example.com")
    first.save()
    second.save()
    with pytest.raises(DuplicateIDError):
        first.id = "lea@example.com"
    manager.update(["People", "stored@example.com"], {})
    with pytest.raises(DuplicateIDError):
        first.id = "stored@example.com"
    first.id = "leon@example.com"
    with pytest.raises(DuplicateIDError):
        Person("leo@example.com")


def test_renaming_a_new_object_just_changes_its_id(manager):
    person = Person("mia@example.com")
    person.id = "maya@example.com"
    person.save()
    assert manager.get_names("People") == ["maya@example.com"]


def test_two_classes_cannot_share_a_storage_key(manager):
    class Other(SettingsObject):
        __group__ = "People"
        __id__ = "ned@example.com"

    Other()
    with pytest.raises(DuplicateIDError):
        Person("ned@example.com")


def test_a_restart_detaches_old_objects(manager, backend):
    things = Things()
    things.count = 3
    things.save()
    restart(manager, backend)
    with pytest.raises(RuntimeError, match="construct it again"):
        things.save()
    assert Things() is not things
    assert Things().count == 3


def test_objects_need_a_started_manager():
    with pytest.raises(RuntimeError, match="not started"):
        Things()


def test_subclass_init_runs_once_per_object(manager):
    calls = []

    class Account(SettingsObject):
        __group__ = "Accounts"
        __id__ = SettingsObjectID(type=SIPAddress)
        id = __id__

        def __init__(self, id):
            calls.append(id)

    account = Account("olga@example.com")
    assert Account("olga@example.com") is account
    assert calls == ["olga@example.com"]


def test_save_failure_notification_names_the_object(notifications):
    class FullDisk(MemoryBackend):
        def save(self, data):
            raise OSError(28, "No space left on device")

    manager = ConfigurationManager()
    manager.start(FullDisk())
    try:
        person = Person("pat@example.com")
        person.save()
        person.nickname = "P"
        future = person.save()
        person.delete()
        assert manager.flush(timeout=5)
        assert isinstance(future.exception(), OSError)
    finally:
        manager.stop()
    failed = [n.data for n in notifications if n.name == "CFGManagerSaveFailed"]
    assert [data.operation for data in failed] == ["save", "save", "delete"]
    assert all(data.object is person for data in failed)
    assert failed[1].modified == {"nickname": ModifiedValue(None, "P")}
    assert all(isinstance(data.exception, OSError) for data in failed)


# Extensions


def test_register_extension_on_an_object_and_on_a_group(manager, backend):
    class Gadget(SettingsObject):
        __id__ = "Gadget"
        size = Setting(type=int, default=1)
        middle = Middle

    class Widening(SettingsObjectExtension):
        width = Setting(type=NonNegativeInteger, default=10)

    backend_data = {"Gadget": {"width": "42", "size": "2", "middle": {"inner": {"color": "red"}}}}
    restart(manager, backend)
    manager.update("Gadget", backend_data["Gadget"])
    gadget = Gadget()
    assert gadget.size == 2

    Gadget.register_extension(Widening)
    assert gadget.width == 42
    gadget.width = 11
    assert gadget.get_modified() == {"width": ModifiedValue(42, 11)}

    class Coloring(SettingsObjectExtension):
        color = Setting(type=str, default="blue")

    Inner.register_extension(Coloring)
    try:
        assert gadget.middle.inner.color == "red"
        assert Things().middle.inner.color == "blue"
        gadget.middle.inner.color = "green"
        gadget.save()
        assert manager.get(["Gadget", "middle", "inner", "color"]) == "green"
    finally:
        del Inner.color


def test_extension_can_replace_a_group_with_a_subclass(manager):
    class RicherMiddle(Middle):
        extra = Setting(type=bool, default=True)

    class Gizmo(SettingsObject):
        __id__ = "Gizmo"
        middle = Middle

    gizmo = Gizmo()
    gizmo.middle.flag = True

    class Enrich(SettingsObjectExtension):
        middle = RicherMiddle

    Gizmo.register_extension(Enrich)
    assert gizmo.middle.extra is True
    assert gizmo.middle.flag is True


def test_extensions_are_declarations_only():
    class Extension(SettingsObjectExtension):
        pass

    with pytest.raises(TypeError):
        Extension()
    with pytest.raises(TypeError):
        Things.register_extension(Middle)


def test_an_observer_that_raises_does_not_keep_the_change_from_disk(manager, backend, caplog):
    def broken_observer(notification):
        raise RuntimeError("observer bug")

    center = NotificationCenter()
    center.add_observer(broken_observer, name="CFGSettingsObjectDidChange")
    things = Things()
    things.count = 6
    try:
        things.save()
    finally:
        center.remove_observer(broken_observer, name="CFGSettingsObjectDidChange")
    assert "observer bug" in caplog.text
    assert manager.flush(timeout=5)
    assert backend.load() == {"Things": {"count": "6"}}
