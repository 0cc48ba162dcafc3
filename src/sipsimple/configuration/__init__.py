"""Typed settings that persist through a configuration backend.

Declaring settings::

    class RTPSettings(SettingsGroup):
        port_range = Setting(type=PortRange, default=PortRange(50000, 50500))
        timeout = Setting(type=NonNegativeInteger, default=30)

    class SIPSimpleSettings(SettingsObject):
        __id__ = "SIPSimpleSettings"     # a fixed id: the class is a singleton
        rtp = RTPSettings                # a group nests by naming its class

    class Account(SettingsObject):
        __group__ = "Accounts"           # stored under Accounts/<id>
        __id__ = SettingsObjectID(type=SIPAddress)   # one instance per id
        id = __id__

Using them (after ``ConfigurationManager().start(backend)``)::

    settings = SIPSimpleSettings()       # loaded from the backend on construction
    settings.rtp.timeout = "45"          # coerced with the setting's type, validated
    settings.rtp.timeout = DefaultValue  # back to the default
    settings.save()                      # CFGSettingsObjectDidChange, then written to disk

A setting's type is called with the assigned value unless the value already has that
type; it must accept its own stored text form (see `sipsimple.configuration.datatypes`).

Extensions add settings to an existing class (also after instances exist)::

    class AudioExtension(SettingsObjectExtension):
        agc = Setting(type=bool, default=True)

    AudioSettings.register_extension(AudioExtension)    # settings.audio.agc

Writes happen in one worker thread, never in the caller's thread: `save()` returns a
`concurrent.futures.Future`; `ConfigurationManager().flush()` waits for every pending
write and failures are posted as CFGManagerSaveFailed.
"""

from __future__ import annotations

import concurrent.futures
import copy
import logging
import queue
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final, Generic, Self, TypeVar, overload

from sipsimple.configuration.datatypes import state_of
from sipsimple.notification import NotificationCenter, NotificationData

if TYPE_CHECKING:
    from sipsimple.configuration.backend import ConfigurationBackend

__all__ = [
    "ConfigurationError",
    "ConfigurationManager",
    "CorrelatedSetting",
    "DefaultValue",
    "DuplicateIDError",
    "ModifiedValue",
    "ObjectNotFoundError",
    "RuntimeSetting",
    "Setting",
    "SettingsGroup",
    "SettingsObject",
    "SettingsObjectExtension",
    "SettingsObjectID",
    "SettingsState",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


class ConfigurationError(Exception):
    """The configuration could not be loaded, stored or used."""


class ObjectNotFoundError(ConfigurationError):
    """No object is stored under the given key."""


class DuplicateIDError(ValueError):
    """The id is already used by another settings object."""


class _DefaultValueType:
    _instance: ClassVar[_DefaultValueType | None] = None

    def __new__(cls) -> _DefaultValueType:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "DefaultValue"

    def __reduce__(self) -> str:
        return "DefaultValue"


DefaultValue: Final = _DefaultValueType()
"""Assign it to a setting to reset the setting to its default."""


@dataclass(frozen=True, slots=True)
class ModifiedValue:
    """The value of a setting before and after a change."""

    old: Any
    new: Any


# ConfigurationManager

_settings_lock = threading.RLock()
"""Guards the ConfigurationManager's data and the values of every settings object
(one lock, so that no two locks can be taken in opposite orders; settings change rarely)."""

Key = str | Sequence[str]
StoredValue = str | list[str] | dict[str, Any] | None


def _key(key: Key) -> tuple[str, ...]:
    parts = (key,) if isinstance(key, str) else tuple(key)
    if not parts:
        raise ValueError("the key cannot be empty")
    for part in parts:
        if not isinstance(part, str) or not part:
            raise TypeError(f"key parts must be non-empty strings, got {part!r}")
    return parts


def _check_value(value: object, where: str, allow_default: bool) -> None:
    if value is None or isinstance(value, str) or (allow_default and value is DefaultValue):
        return
    if isinstance(value, list | tuple):
        if all(isinstance(item, str) for item in value):
            return
        raise TypeError(f"{where}: list items must be strings, got {value!r}")
    if isinstance(value, Mapping):
        for name, item in value.items():
            if not isinstance(name, str):
                raise TypeError(f"{where}: names must be strings, got {name!r}")
            _check_value(item, f"{where}/{name}", allow_default)
        return
    raise TypeError(f"{where}: expected a string, a list of strings, a dict or None, got {value!r}")


def _merge(target: dict[str, Any], data: Mapping[str, Any]) -> None:
    for name, value in data.items():
        if value is DefaultValue:
            target.pop(name, None)
        elif isinstance(value, Mapping):
            subtree = target.get(name)
            if not isinstance(subtree, dict):
                subtree = target[name] = {}
            _merge(subtree, value)
            if not subtree:
                del target[name]
        elif isinstance(value, list | tuple):
            target[name] = list(value)
        else:
            target[name] = value


@dataclass(slots=True)
class _SaveRequest:
    snapshot: dict[str, Any]
    future: concurrent.futures.Future[None]
    obj: Any
    operation: str
    modified: dict[str, ModifiedValue] | None


class _Writer:
    """One thread that writes snapshots in order; queued snapshots collapse into the last."""

    def __init__(self, backend: ConfigurationBackend, manager: ConfigurationManager) -> None:
        self._backend = backend
        self._manager = manager
        self._queue: queue.SimpleQueue[_SaveRequest | None] = queue.SimpleQueue()
        self.last: concurrent.futures.Future[None] | None = None
        self.thread = threading.Thread(
            target=self._run, name="sipsimple-configuration-writer", daemon=True
        )
        self.thread.start()

    def submit(self, request: _SaveRequest) -> None:
        self.last = request.future
        self._queue.put(request)

    def close(self) -> None:
        self._queue.put(None)
        if threading.current_thread() is not self.thread:
            self.thread.join()

    def _run(self) -> None:
        while True:
            request = self._queue.get()
            if request is None:
                return
            batch = [request]
            closing = False
            while True:
                try:
                    queued = self._queue.get_nowait()
                except queue.Empty:
                    break
                if queued is None:
                    closing = True
                    break
                batch.append(queued)
            self._write(batch)
            if closing:
                return

    def _write(self, batch: list[_SaveRequest]) -> None:
        try:
            self._backend.save(batch[-1].snapshot)
        except Exception as error:
            log.exception("failed to save the configuration")
            for request in batch:
                try:
                    NotificationCenter().post_notification(
                        "CFGManagerSaveFailed",
                        sender=self._manager,
                        data=NotificationData(
                            object=request.obj,
                            operation=request.operation,
                            modified=request.modified,
                            exception=error,
                        ),
                    )
                except Exception:
                    log.exception("an observer of CFGManagerSaveFailed failed")
            for request in batch:  # after the notifications, so that flush() covers them
                request.future.set_exception(error)
        else:
            for request in batch:
                request.future.set_result(None)


class ConfigurationManager:
    """The process-wide store of settings: a tree of dicts whose leaves are str,
    list[str] or None, kept in memory and written through a backend.

    Keys are paths in the tree, given as a sequence of strings (``["Accounts",
    "alice@example.com"]``) or a single string for a top-level name.
    """

    _instance: ClassVar[ConfigurationManager | None] = None
    _instance_lock: ClassVar[threading.Lock] = threading.Lock()

    _lock: threading.RLock
    _backend: ConfigurationBackend | None
    _data: dict[str, Any]
    _writer: _Writer | None
    _generation: int

    def __new__(cls) -> ConfigurationManager:
        with cls._instance_lock:
            if cls._instance is None:
                instance = super().__new__(cls)
                instance._lock = _settings_lock
                instance._backend = None
                instance._data = {}
                instance._writer = None
                instance._generation = 0
                cls._instance = instance
            return cls._instance

    @property
    def started(self) -> bool:
        return self._backend is not None

    @property
    def backend(self) -> ConfigurationBackend | None:
        return self._backend

    def start(self, backend: ConfigurationBackend) -> None:
        """Load the backend's data. A load error (ConfigurationError naming the file
        and line for a FileBackend) propagates and the manager stays stopped, so
        that start can be called again once the cause is fixed."""
        with self._lock:
            if self._backend is not None:
                raise RuntimeError("the ConfigurationManager is already started")
            data = backend.load()
            if not isinstance(data, dict):
                raise ConfigurationError(f"{backend!r} loaded {type(data).__name__}, not a dict")
            try:
                _check_value(data, "", allow_default=False)
            except TypeError as error:
                raise ConfigurationError(f"{backend!r} loaded invalid data: {error}") from None
            self._data = data
            self._backend = backend
            self._writer = _Writer(backend, self)
            self._generation += 1
            _registry.reset()

    def stop(self) -> None:
        """Wait until pending writes are done, then stop. Settings objects created
        before are detached: construct them again after the next start."""
        with self._lock:
            writer = self._writer
            self._backend = None
            self._writer = None
            self._data = {}
            self._generation += 1
            _registry.reset()
        if writer is not None:
            writer.close()

    def get(self, key: Key) -> Any:
        """A copy of the value stored under key; ObjectNotFoundError if there is none."""
        parts = _key(key)
        with self._lock:
            self._require_started()
            node: Any = self._data
            for part in parts:
                if not isinstance(node, dict) or part not in node:
                    raise ObjectNotFoundError(f"object {'/'.join(parts)} does not exist")
                node = node[part]
            return copy.deepcopy(node)

    def get_names(self, key: Key) -> list[str]:
        """The names stored under key (for example the ids in a group), sorted."""
        try:
            node = self.get(key)
        except ObjectNotFoundError:
            return []
        return sorted(node) if isinstance(node, dict) else []

    def update(self, key: Key, data: Mapping[str, Any]) -> None:
        """Merge data into the dict stored under key, creating it if needed.

        Values are str, list[str], None or nested dicts; DefaultValue removes a name
        and sub-dicts left empty are removed. The dict at key itself is kept.
        """
        parts = _key(key)
        if not isinstance(data, Mapping):
            raise TypeError(f"expected a dict of values, got {data!r}")
        _check_value(data, "/".join(parts), allow_default=True)
        with self._lock:
            self._require_started()
            node = self._data
            for part in parts:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = node[part] = {}
                node = child
            _merge(node, data)

    def delete(self, key: Key) -> None:
        """Remove what is stored under key (nothing if absent) and empty parent dicts."""
        parts = _key(key)
        with self._lock:
            self._require_started()
            self._pop(parts)

    def rename(self, old_key: Key, new_key: Key) -> None:
        """Move what is stored under old_key to new_key."""
        old_parts, new_parts = _key(old_key), _key(new_key)
        with self._lock:
            self._require_started()
            if self.contains(new_parts):
                raise DuplicateIDError(f"object {'/'.join(new_parts)} already exists")
            if not self.contains(old_parts):
                raise ObjectNotFoundError(f"object {'/'.join(old_parts)} does not exist")
            value = self._pop(old_parts)
            node = self._data
            for part in new_parts[:-1]:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = node[part] = {}
                node = child
            node[new_parts[-1]] = value

    def contains(self, key: Key) -> bool:
        try:
            self.get(key)
        except ObjectNotFoundError:
            return False
        return True

    def save(
        self,
        *,
        obj: Any = None,
        operation: str = "save",
        modified: dict[str, ModifiedValue] | None = None,
    ) -> concurrent.futures.Future[None]:
        """Queue a snapshot of the data for writing and return at once.

        The future completes when this snapshot (or a later one) is stored, or fails
        with the backend's error; a failure is also posted as CFGManagerSaveFailed
        with obj, operation and modified as its object, operation and modified.
        """
        with self._lock:
            self._require_started()
            assert self._writer is not None
            future: concurrent.futures.Future[None] = concurrent.futures.Future()
            request = _SaveRequest(copy.deepcopy(self._data), future, obj, operation, modified)
            self._writer.submit(request)
            return future

    def flush(self, timeout: float | None = None) -> bool:
        """Block until every write queued so far is done (stored or failed).

        Returns False on timeout. Do not call it on the SIP thread: from asyncio code
        use ``await asyncio.to_thread(ConfigurationManager().flush)``.
        """
        with self._lock:
            writer = self._writer
        if writer is None or writer.last is None:
            return True
        if threading.current_thread() is writer.thread:
            raise RuntimeError("flush cannot be called from the configuration writer thread")
        done, _ = concurrent.futures.wait([writer.last], timeout=timeout)
        return bool(done)

    def _require_started(self) -> None:
        if self._backend is None:
            raise RuntimeError("the ConfigurationManager is not started")

    def _pop(self, parts: tuple[str, ...]) -> Any:
        path = [self._data]
        for part in parts[:-1]:
            child = path[-1].get(part)
            if not isinstance(child, dict):
                return None
            path.append(child)
        value = path[-1].pop(parts[-1], None)
        for parent, part in zip(reversed(path[:-1]), reversed(parts[:-1]), strict=True):
            if parent[part]:
                break
            del parent[part]
        return value


# Settings descriptors

_MISSING: Final = object()
_TRUE_WORDS = frozenset({"true", "yes", "on", "1"})
_FALSE_WORDS = frozenset({"false", "no", "off", "0"})


def _coerce(kind: Callable[[Any], Any], value: object) -> Any:
    """Convert value to kind, strictly: no bool from 'false' is True, no int from 1.5."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE_WORDS | _FALSE_WORDS:
            return value.strip().lower() in _TRUE_WORDS
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueError(f"expected a boolean (true or false), got {value!r}")
    if isinstance(kind, type):
        if isinstance(value, bool) and issubclass(kind, int | float):
            raise ValueError(f"expected a number, got {value!r}")
        if isinstance(value, kind):
            return value
        if kind is str:
            raise ValueError(f"expected a string, got {value!r}")
        if issubclass(kind, int) and isinstance(value, float) and not value.is_integer():
            raise ValueError(f"expected an integer, got {value!r}")
        if kind is int and isinstance(value, str):
            try:
                return int(value.strip(), 10)
            except ValueError:
                raise ValueError(f"expected an integer, got {value!r}") from None
    return kind(value)


class Setting(Generic[T]):
    """A typed setting of a SettingsGroup or SettingsObject.

    Values are converted with `type` and validated; only a nillable setting takes
    None; assigning DefaultValue resets it. `default_factory` computes the default
    each time it is read (for defaults that depend on the machine).
    """

    persistent: ClassVar[bool] = True

    def __init__(
        self,
        type: Callable[[Any], T],
        default: T | None = None,
        nillable: bool = False,
        *,
        default_factory: Callable[[], T] | None = None,
    ) -> None:
        if default is not None and default_factory is not None:
            raise TypeError("give either default or default_factory, not both")
        if default is None and default_factory is None and not nillable:
            raise TypeError("a setting that is not nillable needs a default")
        self.type = type
        self.nillable = nillable
        self.default_factory = default_factory
        self.name = "<unnamed>"
        try:
            self.default: T | None = None if default is None else _coerce(type, default)
        except (TypeError, ValueError) as error:
            raise ValueError(f"invalid default {default!r}: {error}") from None

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> Self: ...
    @overload
    def __get__(self, obj: object, objtype: type | None = None) -> T: ...
    def __get__(self, obj: object, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        try:
            return obj._values[self.name]  # type: ignore[attr-defined]
        except KeyError:
            return self.get_default()

    def __set__(self, obj: SettingsState, value: object) -> None:
        if value is DefaultValue:
            with _settings_lock:
                obj._values.pop(self.name, None)
            return
        value = self.coerce(value, obj)
        with _settings_lock:
            obj._values[self.name] = value

    def __delete__(self, obj: object) -> None:
        raise AttributeError(f"cannot delete setting {self.name}; assign DefaultValue instead")

    def get_default(self) -> T | None:
        return self.default_factory() if self.default_factory is not None else self.default

    def coerce(self, value: object, obj: SettingsState | None = None) -> T | None:
        """The value converted to this setting's type, or ValueError naming the setting."""
        where = obj._dotted(self.name) if obj is not None else self.name
        if value is None:
            if self.nillable:
                return None
            raise ValueError(f"invalid value for {where}: None is not allowed")
        try:
            return _coerce(self.type, value)
        except (TypeError, ValueError) as error:
            raise ValueError(f"invalid value for {where}: {error}") from None

    def to_state(self, value: object) -> StoredValue:
        return None if value is None else state_of(value)


class RuntimeSetting(Setting[T]):
    """A setting that lives in memory only: never stored nor loaded."""

    persistent = False


class CorrelatedSetting(Setting[T]):
    """A setting validated against a sibling setting of the same group:
    ``validator(value, sibling_value)`` raises ValueError to refuse a value."""

    def __init__(
        self,
        type: Callable[[Any], T],
        sibling: str,
        validator: Callable[[Any, Any], None],
        default: T | None = None,
        nillable: bool = False,
    ) -> None:
        super().__init__(type, default, nillable)
        self.sibling = sibling
        self.validator = validator

    def __set__(self, obj: SettingsState, value: object) -> None:
        with _settings_lock:
            if value is not DefaultValue:
                coerced = self.coerce(value, obj)
                try:
                    self.validator(coerced, getattr(obj, self.sibling))
                except ValueError as error:
                    raise ValueError(
                        f"invalid value for {obj._dotted(self.name)}: {error}"
                    ) from None
                value = coerced
            super().__set__(obj, value)


class _GroupSlot:
    """The class attribute a SettingsGroup subclass becomes inside its container."""

    def __init__(self, name: str, group_class: type[SettingsGroup]) -> None:
        self.name = name
        self.group_class = group_class

    def __get__(self, obj: SettingsState | None, objtype: type | None = None) -> Any:
        if obj is None:
            return self.group_class
        group = obj._groups.get(self.name)
        if type(group) is self.group_class:
            return group
        with _settings_lock:
            group = obj._groups.get(self.name)
            if type(group) is not self.group_class:
                replacement = self.group_class()
                if group is not None:  # the class was replaced by an extension
                    replacement._values, replacement._saved = group._values, group._saved
                    replacement._groups = group._groups
                object.__setattr__(replacement, "_parent", obj)
                object.__setattr__(replacement, "_name", self.name)
                obj._groups[self.name] = replacement
                group = replacement
            return group

    def __set__(self, obj: object, value: object) -> None:
        raise AttributeError(f"cannot replace the settings group {self.name}")

    def __delete__(self, obj: object) -> None:
        raise AttributeError(f"cannot delete the settings group {self.name}")


Member = Setting[Any] | _GroupSlot
_LoadFailure = tuple[str, Any, Exception]
_members_version = 0


class SettingsStateMeta(type):
    """Turns SettingsGroup classes named in a class body into group slots."""

    def __init__(cls, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> None:
        super().__init__(name, bases, namespace)
        for attribute, value in namespace.items():
            if isinstance(value, SettingsStateMeta) and issubclass(value, SettingsGroup):
                type.__setattr__(cls, attribute, _GroupSlot(attribute, value))

    def __setattr__(cls, name: str, value: Any) -> None:
        global _members_version
        if isinstance(value, SettingsStateMeta) and issubclass(value, SettingsGroup):
            value = _GroupSlot(name, value)
        elif isinstance(value, Setting):
            value.__set_name__(cls, name)
        super().__setattr__(name, value)
        _members_version += 1

    def __delattr__(cls, name: str) -> None:
        global _members_version
        super().__delattr__(name)
        _members_version += 1

    def _members(cls) -> dict[str, Member]:
        cached = cls.__dict__.get("_members_cache")
        if cached is not None and cached[0] == _members_version:
            return cached[1]
        members: dict[str, Member] = {}
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                if isinstance(value, Setting | _GroupSlot):
                    members[name] = value
                elif name in members:
                    del members[name]
        type.__setattr__(cls, "_members_cache", (_members_version, members))
        return members


class SettingsState(metaclass=SettingsStateMeta):
    """What SettingsGroup and SettingsObject share: values, loading, change tracking."""

    _values: dict[str, Any]
    _saved: dict[str, Any]
    _groups: dict[str, SettingsGroup]
    _parent: SettingsState | None
    _name: str

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        instance = super().__new__(cls)
        object.__setattr__(instance, "_values", {})
        object.__setattr__(instance, "_saved", {})
        object.__setattr__(instance, "_groups", {})
        object.__setattr__(instance, "_parent", None)
        object.__setattr__(instance, "_name", "")
        return instance

    @classmethod
    def register_extension(cls, extension: type[SettingsObjectExtension]) -> None:
        """Add the settings and groups declared in extension to this class (replacing
        same-named ones). Live objects load the stored values of the new settings."""
        if not (isinstance(extension, type) and issubclass(extension, SettingsObjectExtension)):
            raise TypeError(f"expected a SettingsObjectExtension subclass, got {extension!r}")
        added: dict[str, Any] = {}
        for klass in reversed(extension.__mro__):
            for name, value in vars(klass).items():
                if isinstance(value, Setting) or (
                    isinstance(value, SettingsStateMeta) and issubclass(value, SettingsGroup)
                ):
                    added[name] = value
        for name, value in added.items():
            setattr(cls, name, value)
        _load_extension(cls, frozenset(added))

    def get_modified(self) -> dict[str, ModifiedValue]:
        """Settings changed since the last load or save: dotted name -> ModifiedValue."""
        with _settings_lock:
            return self._modified("")

    def _modified(self, prefix: str) -> dict[str, ModifiedValue]:
        modified: dict[str, ModifiedValue] = {}
        for name, member in type(self)._members().items():
            if isinstance(member, Setting):
                old = self._saved.get(name, _MISSING)
                new = self._values.get(name, _MISSING)
                if old is _MISSING and new is _MISSING:
                    continue
                if old is _MISSING or new is _MISSING:
                    default = member.get_default()
                    old = default if old is _MISSING else old
                    new = default if new is _MISSING else new
                if old != new:
                    modified[prefix + name] = ModifiedValue(old, new)
            elif name in self._groups:
                modified.update(getattr(self, name)._modified(f"{prefix}{name}."))
        return modified

    def _dotted(self, name: str) -> str:
        parts = [name]
        state: SettingsState | None = self
        while state is not None:
            parts.append(state._name or type(state).__name__)
            state = state._parent
        return ".".join(reversed(parts))

    def _getstate(self, delta: bool) -> dict[str, Any]:
        """Stored form of the explicit values; with delta, only of those changed
        since the last save (so values this version cannot parse stay stored)."""
        state: dict[str, Any] = {}
        for name, member in type(self)._members().items():
            if isinstance(member, Setting):
                if not member.persistent:
                    continue
                value = self._values.get(name, _MISSING)
                if delta and _same(value, self._saved.get(name, _MISSING)):
                    continue
                state[name] = DefaultValue if value is _MISSING else member.to_state(value)
            elif name in self._groups:
                substate = getattr(self, name)._getstate(delta)
                if substate:
                    state[name] = substate
        return state

    def _setstate(self, data: Mapping[str, Any], failures: list[_LoadFailure]) -> None:
        members = type(self)._members()
        for name, value in data.items():
            member = members.get(name)
            if isinstance(member, Setting) and member.persistent:
                self._load_setting(member, value, failures)
            elif isinstance(member, _GroupSlot):
                if isinstance(value, Mapping):
                    getattr(self, name)._setstate(value, failures)
                else:
                    error = ValueError(f"{self._dotted(name)} is a group, got {value!r}")
                    failures.append((name, self, error))

    def _load_setting(self, member: Setting[Any], value: Any, failures: list[Any]) -> None:
        try:
            parsed = member.coerce(value, self)
        except ValueError as error:
            failures.append((member.name, self, error))
        else:
            self._values[member.name] = self._saved[member.name] = parsed

    def _commit(self) -> None:
        self._saved = dict(self._values)
        for group in self._groups.values():
            group._commit()


def _same(first: object, second: object) -> bool:
    if first is _MISSING or second is _MISSING:
        return first is second
    return type(first) is type(second) and first == second


def _post(name: str, sender: object, **data: Any) -> None:
    NotificationCenter().post_notification(name, sender=sender, data=NotificationData(**data))


def _post_load_failures(failures: list[_LoadFailure]) -> None:
    for attribute, container, error in failures:
        log.warning("cannot load %s: %s", container._dotted(attribute), error)
        _post(
            "CFGManagerLoadFailed",
            ConfigurationManager(),
            attribute=attribute,
            container=container,
            error=error,
        )


class SettingsGroup(SettingsState):
    """A namespace of settings inside a SettingsObject or another group.

    Name the class in the container's body (``audio = AudioSettings``); each
    container instance gets its own group instance.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_") and name not in type(self)._members():
            raise AttributeError(f"{self._dotted(name)} is not a setting")
        super().__setattr__(name, value)


class SettingsObjectExtension:
    """Declares settings and groups to add to a class with register_extension()."""

    def __new__(cls, *args: Any, **kwargs: Any) -> SettingsObjectExtension:
        raise TypeError("SettingsObjectExtension subclasses cannot be instantiated")


class SettingsObjectID(Generic[T]):
    """The `__id__` of SettingsObject classes whose instances have their own ids.

    Assigning a new id renames the object when it is next saved.
    """

    def __init__(self, type: Callable[[Any], T]) -> None:
        self.type = type

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> Self: ...
    @overload
    def __get__(self, obj: object, objtype: type | None = None) -> T: ...
    def __get__(self, obj: object, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return obj._id  # type: ignore[attr-defined]

    def coerce(self, value: object, owner: type) -> T:
        try:
            return _coerce(self.type, value)
        except (TypeError, ValueError) as error:
            raise ValueError(f"invalid id for {owner.__name__}: {error}") from None

    def __set__(self, obj: SettingsObject, value: object) -> None:
        new_id = self.coerce(value, type(obj))
        with _settings_lock:
            if new_id == obj._id:
                return
            new_key = obj._key_for(new_id)
            if obj._cfg_state != "new" and new_id == obj._saved_id:
                _registry.live.pop(obj.__key__, None)
                _registry.renaming.pop(new_key, None)
                _registry.live[new_key] = obj
                obj._id = new_id
                return
            _registry.check_free(new_key, obj)
            if ConfigurationManager().contains(new_key):
                raise DuplicateIDError(f"an object {'/'.join(new_key)} is already stored")
            _registry.move(obj, obj.__key__, new_key)
            if obj._cfg_state == "new":
                obj._saved_id = new_id
            else:
                _registry.renaming[obj.__oldkey__] = obj
            obj._id = new_id

    def __delete__(self, obj: object) -> None:
        raise AttributeError("cannot delete the id")


class _Registry:
    """Live settings objects by storage key, so that each key has one object."""

    def __init__(self) -> None:
        self.live: weakref.WeakValueDictionary[tuple[str, ...], SettingsObject] = (
            weakref.WeakValueDictionary()
        )
        self.renaming: weakref.WeakValueDictionary[tuple[str, ...], SettingsObject] = (
            weakref.WeakValueDictionary()
        )
        self.singletons: dict[type, SettingsObject] = {}

    def reset(self) -> None:
        with _settings_lock:
            self.live = weakref.WeakValueDictionary()
            self.renaming = weakref.WeakValueDictionary()
            self.singletons = {}

    def check_free(self, key: tuple[str, ...], obj: object = None) -> None:
        for table, how in ((self.live, "used"), (self.renaming, "being renamed away from")):
            other = table.get(key)
            if other is not None and other is not obj:
                raise DuplicateIDError(f"{'/'.join(key)} is {how} by {type(other).__name__}")

    def move(self, obj: SettingsObject, old: tuple[str, ...], new: tuple[str, ...]) -> None:
        if self.live.get(old) is obj:
            del self.live[old]
        self.live[new] = obj

    def forget(self, obj: SettingsObject) -> None:
        for table in (self.live, self.renaming):
            for key in [key for key, value in table.items() if value is obj]:
                del table[key]


_registry = _Registry()


class SettingsObjectMeta(SettingsStateMeta):
    """Creates SettingsObjects: one per storage key, loaded from the ConfigurationManager."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        manager = ConfigurationManager()
        class_id = cls.__id__
        failures: list[_LoadFailure] = []
        with _settings_lock:
            manager._require_started()
            if isinstance(class_id, str):
                if args or kwargs:
                    raise TypeError(f"{cls.__name__} has a fixed id and takes no arguments")
                existing = _registry.singletons.get(cls)
                if existing is not None:
                    return existing
                object_id: Any = class_id
            elif isinstance(class_id, SettingsObjectID):
                if args:
                    raw_id = args[0]
                elif "id" in kwargs:
                    raw_id = kwargs["id"]
                else:
                    raise TypeError(f"{cls.__name__} needs an id")
                object_id = class_id.coerce(raw_id, cls)
            else:
                raise TypeError(f"{cls.__name__}.__id__ must be a str or a SettingsObjectID")
            key = cls._key_for(object_id)
            existing = _registry.live.get(key)
            if existing is not None and type(existing) is cls and not isinstance(class_id, str):
                return existing
            _registry.check_free(key)
            instance = cls.__new__(cls, *args, **kwargs)
            instance._generation = manager._generation
            instance._id = instance._saved_id = object_id
            try:
                data = manager.get(key)
            except ObjectNotFoundError:
                data = None
            if isinstance(data, Mapping):
                instance._setstate(data, failures)
                instance._cfg_state = "loaded"
            else:  # absent (or not a dict, which the first save replaces)
                instance._cfg_state = "new"
            _registry.live[key] = instance
            if isinstance(class_id, str):
                _registry.singletons[cls] = instance
        try:
            instance.__init__(*args, **kwargs)
        except BaseException:
            with _settings_lock:
                _registry.forget(instance)
                _registry.singletons.pop(cls, None)
            raise
        _post_load_failures(failures)
        if instance._cfg_state == "loaded" or isinstance(class_id, str):
            instance._cfg_state = "active"
            _post("CFGSettingsObjectWasActivated", instance)
        return instance


class SettingsObject(SettingsState, metaclass=SettingsObjectMeta):
    """A top-level settings object, stored under ``[__group__, id]`` or ``[id]``.

    `__id__` is either a str (the class is then a singleton, e.g. SIPSimpleSettings())
    or a SettingsObjectID (instances are created with their id; constructing with an
    id that is in use returns the same object). Construction loads the stored values
    and requires a started ConfigurationManager. A subclass __init__ takes the same
    arguments as the constructor.

    Notifications: CFGSettingsObjectWasActivated (loaded, or first saved),
    CFGSettingsObjectWasCreated (first saved), CFGSettingsObjectDidChange (saved with
    changes; data.modified maps dotted names, and '__id__' on a rename, to
    ModifiedValue), CFGSettingsObjectWasDeleted.
    """

    __group__: ClassVar[str | None] = None
    __id__: ClassVar[Any] = None

    _id: Any
    _saved_id: Any
    _generation: int
    _cfg_state: str  # new, loaded, active or deleted

    @classmethod
    def _key_for(cls, object_id: str) -> tuple[str, ...]:
        return (cls.__group__, str(object_id)) if cls.__group__ else (str(object_id),)

    @property
    def __key__(self) -> tuple[str, ...]:
        return self._key_for(self._id)

    @property
    def __oldkey__(self) -> tuple[str, ...]:
        return self._key_for(self._saved_id)

    def _check_usable(self, manager: ConfigurationManager) -> None:
        manager._require_started()
        if self._generation != manager._generation:
            raise RuntimeError(
                f"{type(self).__name__} {self._id} belongs to a stopped ConfigurationManager;"
                " construct it again"
            )

    def save(self) -> concurrent.futures.Future[None]:
        """Store the changes and announce them; the write itself happens in the
        configuration writer thread (the returned future says when it is done)."""
        manager = ConfigurationManager()
        notifications: list[tuple[str, dict[str, Any]]] = []
        with _settings_lock:
            self._check_usable(manager)
            if self._cfg_state == "deleted":
                return _done()
            old_key, new_key = self.__oldkey__, self.__key__
            modified = self.get_modified()
            delta = self._getstate(delta=True)
            modified_data: dict[str, ModifiedValue] | None
            if self._cfg_state == "new":
                manager.update(new_key, self._getstate(delta=False))
                self._cfg_state = "active"
                notifications = [("CFGSettingsObjectWasActivated", {})]
                notifications.append(("CFGSettingsObjectWasCreated", {}))
                modified_data, write = None, True
            else:
                if old_key == new_key and not modified and not delta:
                    return _done()
                if old_key != new_key:
                    manager.rename(old_key, new_key)
                    _registry.renaming.pop(old_key, None)
                    modified["__id__"] = ModifiedValue(self._saved_id, self._id)
                if delta:
                    manager.update(new_key, delta)
                modified_data = modified
                if modified:
                    notifications = [("CFGSettingsObjectDidChange", {"modified": modified})]
                write = old_key != new_key or bool(delta)
            self._commit()
            self._saved_id = self._id
        try:
            for name, data in notifications:
                _post(name, self, **data)
        finally:  # an observer that raises must not keep the change from being written
            future = (
                manager.save(obj=self, operation="save", modified=modified_data)
                if write
                else _done()
            )
        return future

    def delete(self) -> concurrent.futures.Future[None]:
        """Remove the object from the configuration; objects with a fixed id cannot be."""
        if isinstance(type(self).__id__, str):
            raise TypeError(f"{type(self).__name__} has a fixed id and cannot be deleted")
        manager = ConfigurationManager()
        with _settings_lock:
            self._check_usable(manager)
            if self._cfg_state == "deleted":
                return _done()
            was_stored = self._cfg_state != "new"
            self._cfg_state = "deleted"
            manager.delete(self.__oldkey__)
            _registry.forget(self)
        try:
            _post("CFGSettingsObjectWasDeleted", self)
        finally:
            future = manager.save(obj=self, operation="delete") if was_stored else _done()
        return future


def _done() -> concurrent.futures.Future[None]:
    future: concurrent.futures.Future[None] = concurrent.futures.Future()
    future.set_result(None)
    return future


def _load_extension(cls: type, names: frozenset[str]) -> None:
    """Load the stored values of settings an extension just added to live objects."""
    manager = ConfigurationManager()
    if not manager.started:
        return
    failures: list[_LoadFailure] = []
    with _settings_lock:
        for obj in list(_registry.live.values()):
            try:
                data = manager.get(obj.__oldkey__)
            except ObjectNotFoundError:
                continue
            if isinstance(data, Mapping):
                _load_new_members(obj, cls, names, data, failures)
    _post_load_failures(failures)


def _load_new_members(
    state: SettingsState,
    cls: type,
    names: Iterable[str],
    data: Mapping[str, Any],
    failures: list[_LoadFailure],
) -> None:
    extended = isinstance(state, cls)
    for name, member in type(state)._members().items():
        value = data.get(name, _MISSING)
        if value is _MISSING:
            continue
        if extended and name in names:
            if isinstance(member, Setting):
                _fill_missing(state, {name: value}, failures)
            elif isinstance(value, Mapping):
                _fill_missing(getattr(state, name), value, failures)
        elif isinstance(member, _GroupSlot) and isinstance(value, Mapping):
            _load_new_members(getattr(state, name), cls, names, value, failures)


def _fill_missing(
    state: SettingsState, data: Mapping[str, Any], failures: list[_LoadFailure]
) -> None:
    """Load the stored values of settings that have no value loaded or assigned yet."""
    members = type(state)._members()
    for name, value in data.items():
        member = members.get(name)
        if isinstance(member, Setting):
            if member.persistent and name not in state._values and name not in state._saved:
                state._load_setting(member, value, failures)
        elif isinstance(member, _GroupSlot) and isinstance(value, Mapping):
            _fill_missing(getattr(state, name), value, failures)
