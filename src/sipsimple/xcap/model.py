"""The objects the XCAP API speaks in (spec: Contact, Service, Policy and its kinds,
the identity conditions, Icon, OfflineStatus): plain values, compared by value, and
turned to and from JSON for the journal kept on disk."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any as AnyType

from sipsimple.util import All, Any

__all__ = [
    "ACTIONS",
    "CatchAllCondition",
    "Class",
    "Contact",
    "DeviceID",
    "DialoginfoPolicy",
    "DomainCondition",
    "DomainException",
    "Icon",
    "OccurenceID",
    "OfflineStatus",
    "Policy",
    "PresencePolicy",
    "Service",
    "ServiceURI",
    "ServiceURIScheme",
    "StatusIcon",
    "UserException",
    "from_json",
    "to_json",
]

ACTIONS = ("allow", "confirm", "polite-block", "block")
USER_INPUT_VALUES = ("false", "bare", "thresholds", "full")
ICON_MIME_TYPES = ("image/jpeg", "image/gif", "image/png")


class _Value:
    """Equality and repr by attributes."""

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in vars(self).items())
        return f"{type(self).__name__}({fields})"


class Contact(_Value):
    def __init__(self, name: str | None, uri: str, group: str | None, **attributes: str) -> None:
        if not isinstance(uri, str) or not uri:
            raise ValueError(f"a contact needs a URI, not {uri!r}")
        self.name = name
        self.uri = uri
        self.group = group
        self.subscribe_to_presence = True
        self.subscribe_to_dialoginfo = True
        self.presence_policies: list[PresencePolicy] | None = None
        self.dialoginfo_policies: list[DialoginfoPolicy] | None = None
        self.attributes: dict[str, str] = dict(attributes)


class Service(_Value):
    def __init__(self, uri: str, packages: list[str], entries: list[str] | None = None) -> None:
        self.uri = uri
        self.packages = list(packages)
        self.entries = list(entries or [])


class DomainException(_Value):
    def __init__(self, domain: str) -> None:
        self.domain = domain


class UserException(_Value):
    def __init__(self, uri: str) -> None:
        self.uri = uri


class CatchAllCondition(_Value):
    def __init__(self, exceptions: list[DomainException | UserException] | None = None) -> None:
        self.exceptions = list(exceptions or [])


class DomainCondition(_Value):
    def __init__(self, domain: str, exceptions: list[UserException] | None = None) -> None:
        self.domain = domain
        self.exceptions = list(exceptions or [])


class Policy(_Value):
    def __init__(
        self,
        id: str | None,
        action: str | None,
        name: str | None = None,
        validity: list[tuple[datetime, datetime]] | None = None,
        sphere: str | None = None,
        multi_identity_conditions: list[CatchAllCondition | DomainCondition] | None = None,
    ) -> None:
        if action is not None and action not in ACTIONS:
            raise ValueError(f"action must be one of {', '.join(ACTIONS)}, not {action!r}")
        self.id = id
        self.action = action
        self.name = name
        self.validity = None if validity is None else [tuple(item) for item in validity]
        self.sphere = sphere
        self.multi_identity_conditions = (
            None if multi_identity_conditions is None else list(multi_identity_conditions)
        )

    def check_validity(self, timestamp: datetime, sphere: AnyType = Any) -> bool:
        """Whether the policy applies at ``timestamp`` (a datetime) in ``sphere``."""
        if not isinstance(timestamp, datetime):
            raise TypeError(f"timestamp must be a datetime, not {type(timestamp).__name__}")
        if sphere is not Any and self.sphere is not None and sphere != self.sphere:
            return False
        if self.validity is None:
            return True
        return any(_within(timestamp, start, end) for start, end in self.validity)


class _Single(_Value):
    """One value: the provide_* items of a PresencePolicy (spec: Class, DeviceID, ...)."""

    def __init__(self, value: str) -> None:
        self.value = value


class Class(_Single):
    """A <class> value (RFC 4480) a presence policy provides."""


class OccurenceID(_Single):
    """An <occurence-id> a presence policy provides."""


class DeviceID(_Single):
    """A device id a presence policy provides."""


class ServiceURI(_Single):
    """A service URI a presence policy provides."""


class ServiceURIScheme(_Single):
    """A service URI scheme a presence policy provides."""


_BOOLEAN_TRANSFORMATIONS = (
    "provide_activities",
    "provide_class",
    "provide_device_id",
    "provide_mood",
    "provide_place_is",
    "provide_place_type",
    "provide_privacy",
    "provide_relationship",
    "provide_status_icon",
    "provide_sphere",
    "provide_time_offset",
    "provide_unknown_attributes",
    "provide_all_attributes",
)


class PresencePolicy(Policy):
    boolean_transformations = _BOOLEAN_TRANSFORMATIONS

    def __init__(
        self,
        id: str | None,
        action: str | None,
        name: str | None = None,
        validity: list[tuple[datetime, datetime]] | None = None,
        sphere: str | None = None,
        multi_identity_conditions: list[CatchAllCondition | DomainCondition] | None = None,
    ) -> None:
        super().__init__(id, action, name, validity, sphere, multi_identity_conditions)
        self.provide_devices: AnyType = All
        self.provide_persons: AnyType = All
        self.provide_services: AnyType = All
        for attribute in _BOOLEAN_TRANSFORMATIONS:
            setattr(self, attribute, None)
        self.provide_user_input: str | None = None
        self.provide_all_attributes: bool | None = True


class DialoginfoPolicy(Policy):
    pass


class Icon(_Value):
    def __init__(
        self,
        data: bytes,
        mime_type: str,
        description: str | None = None,
        location: str | None = None,
    ) -> None:
        if mime_type not in ICON_MIME_TYPES:
            raise ValueError(f"mime_type must be one of {', '.join(ICON_MIME_TYPES)}")
        self.data = data
        self.mime_type = mime_type
        self.description = description
        self.location = location


StatusIcon = Icon
"""The name the spec's XCAPManagerDidReloadData gives the Icon it carries."""


class OfflineStatus(_Value):
    def __init__(self, activity: str | None = None, note: str | None = None) -> None:
        self.activity = activity
        self.note = note


def _within(timestamp: datetime, start: datetime, end: datetime) -> bool:
    try:
        return start <= timestamp < end
    except TypeError:  # one naive, one aware: compare as if both were local
        return (
            start.replace(tzinfo=None) <= timestamp.replace(tzinfo=None) < end.replace(tzinfo=None)
        )


# -- JSON, for the journal

_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        Contact,
        Service,
        DomainException,
        UserException,
        CatchAllCondition,
        DomainCondition,
        Policy,
        PresencePolicy,
        DialoginfoPolicy,
        Class,
        OccurenceID,
        DeviceID,
        ServiceURI,
        ServiceURIScheme,
        Icon,
        OfflineStatus,
    )
}


def to_json(value: AnyType) -> AnyType:
    """``value`` (model objects, lists, tuples, dicts, datetimes, bytes, All) as JSON data."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if value is All:
        return {"$": "All"}
    if isinstance(value, datetime):
        return {"$": "datetime", "v": value.isoformat()}
    if isinstance(value, bytes):
        return {"$": "bytes", "v": base64.b64encode(value).decode()}
    if isinstance(value, tuple):
        return {"$": "tuple", "v": [to_json(item) for item in value]}
    if isinstance(value, list):
        return [to_json(item) for item in value]
    if isinstance(value, dict):
        return {"$": "dict", "v": {str(k): to_json(v) for k, v in value.items()}}
    name = type(value).__name__
    if _TYPES.get(name) is type(value):
        return {"$": name, "v": {k: to_json(v) for k, v in vars(value).items()}}
    raise TypeError(f"cannot store {type(value).__name__} in the journal")


def from_json(data: AnyType) -> AnyType:
    """The inverse of :func:`to_json`; ValueError for data it did not make."""
    if data is None or isinstance(data, str | int | float | bool):
        return data
    if isinstance(data, list):
        return [from_json(item) for item in data]
    if not isinstance(data, dict) or "$" not in data:
        raise ValueError(f"not journal data: {data!r}")
    kind = data["$"]
    if kind == "All":
        return All
    value = data.get("v")
    if kind == "datetime":
        return datetime.fromisoformat(value)
    if kind == "bytes":
        return base64.b64decode(value)
    if kind == "tuple":
        return tuple(from_json(item) for item in value)
    if kind == "dict":
        return {k: from_json(v) for k, v in value.items()}
    cls = _TYPES.get(kind)
    if cls is None or not isinstance(value, dict):
        raise ValueError(f"unknown journal type {kind!r}")
    instance = cls.__new__(cls)
    instance.__dict__.update({k: from_json(v) for k, v in value.items()})
    return instance
