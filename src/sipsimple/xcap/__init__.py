"""XCAP support (spec: sipsimple.xcap): the XCAPManager and the objects of its API.

The documents themselves are in :mod:`sipsimple.payloads`; the HTTP client in
:mod:`sipsimple.xcap.client`; how operations change the documents in
:mod:`sipsimple.xcap.documents`.
"""

from sipsimple.xcap.manager import XCAPManager, XCAPManagerError
from sipsimple.xcap.model import (
    CatchAllCondition,
    Class,
    Contact,
    DeviceID,
    DialoginfoPolicy,
    DomainCondition,
    DomainException,
    Icon,
    OccurenceID,
    OfflineStatus,
    Policy,
    PresencePolicy,
    Service,
    ServiceURI,
    ServiceURIScheme,
    StatusIcon,
    UserException,
)

__all__ = [
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
    "XCAPManager",
    "XCAPManagerError",
]
