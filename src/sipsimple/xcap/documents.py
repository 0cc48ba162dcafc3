"""The XCAP documents of one account and the operations of the journal applied to
them, without any I/O: a :class:`Workspace` parses the documents as the server has
them, applies operations (each idempotent, so that after a 412 they can all be applied
again to the fresh documents), says which documents changed, and extracts the objects
of :mod:`sipsimple.xcap.model` for XCAPManagerDidReloadData.

Where things live:

- contacts with a group: entries of a list (named ``g-<id>``, its display-name the
  group's name) inside the ``oma_buddylist`` list of resource-lists; contacts without a
  group: the ``sipsimple_ungrouped`` list. Their display-name is the contact's name,
  their attributes an AG Projects extension element.
- subscribe_to_presence / subscribe_to_dialoginfo: the contact's URI is in the inline
  list of the rls-services service ``sip:<user>+presence@<domain>`` (package presence)
  or ``sip:<user>+dialog@<domain>`` (package dialog).
- policies: rules of pres-rules / dialog-rules; a contact is in a policy through an
  identity ``<one>`` or, for the OMA rules with an external-list (wp_prs_grantedcontacts,
  wp_prs_blockedcontacts), through an entry of the resource-lists list it names.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any as AnyType
from urllib.parse import unquote

from lxml import etree

from sipsimple.payloads.commonpolicy import IdentityMany, RulesetDocument
from sipsimple.payloads.dialogrules import DialogRulesDocument
from sipsimple.payloads.pidf import PIDFDocument
from sipsimple.payloads.prescontent import PresContent
from sipsimple.payloads.presrules import PresRulesDocument, pr
from sipsimple.payloads.resourcelists import ResourceListsDocument
from sipsimple.payloads.rlsservices import RLSServicesDocument
from sipsimple.payloads.xmldoc import XMLDocumentParseError
from sipsimple.util import All
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
    UserException,
)

__all__ = [
    "APPLICATIONS",
    "OMA_PRES_RULES",
    "Application",
    "Operation",
    "ReloadData",
    "StoredDocument",
    "Workspace",
    "choose_applications",
]

BUDDYLIST = "oma_buddylist"
UNGROUPED = "sipsimple_ungrouped"
GRANTED = "oma_grantedcontacts"
BLOCKED = "oma_blockedcontacts"
OMA_RESERVED = frozenset(
    ("wp_prs_unlisted", "wp_prs_allow_unlisted", "wp_prs_block_anonymous", "wp_prs_allow_own")
)
OMA_UNREMOVABLE = OMA_RESERVED | {"wp_prs_grantedcontacts", "wp_prs_blockedcontacts"}
OMA_PRES_RULES = "org.openmobilealliance.pres-rules"
_AGP_CP = "urn:ag-projects:xml:ns:common-policy"
_POLICY_NAME = f"{{{_AGP_CP}}}name"
_OFFLINE_PERSON = "offline-status"


@dataclass(frozen=True, slots=True)
class Application:
    """One XCAP application the manager keeps a document of."""

    key: str
    auid: str
    content_type: str
    filename: str = "index"


APPLICATIONS: dict[str, tuple[Application, ...]] = {
    "resource_lists": (
        Application("resource_lists", "resource-lists", "application/resource-lists+xml"),
    ),
    "rls_services": (Application("rls_services", "rls-services", "application/rls-services+xml"),),
    "pres_rules": (
        Application("pres_rules", OMA_PRES_RULES, "application/auth-policy+xml"),
        Application("pres_rules", "pres-rules", "application/auth-policy+xml"),
    ),
    "dialog_rules": (
        Application("dialog_rules", "org.openxcap.dialog-rules", "application/auth-policy+xml"),
    ),
    "status_icon": (
        Application(
            "status_icon",
            "org.openmobilealliance.pres-content",
            "application/vnd.oma.pres-content+xml",
            "oma_status-icon/index",
        ),
    ),
    "offline_status": (Application("offline_status", "pidf-manipulation", "application/pidf+xml"),),
}
"""Per document, the applications that can hold it, preferred first (OMA before IETF)."""


def choose_applications(auids: list[str]) -> dict[str, Application]:
    """The applications to use with a server supporting ``auids`` (xcap-caps)."""
    chosen = {}
    for key, candidates in APPLICATIONS.items():
        for application in candidates:
            if application.auid in auids:
                chosen[key] = application
                break
    return chosen


@dataclass(slots=True)
class StoredDocument:
    """A document as the server has it: its bytes (None: there is none) and ETag;
    ``location`` is the server's X-AGP-Alternative-Location (the status icon)."""

    content: bytes | None = None
    etag: str | None = None
    location: str | None = None


@dataclass(slots=True)
class Operation:
    """One change asked of the manager: ``name`` is the XCAPManager method, ``args``
    its arguments (model objects, JSON-able with :func:`sipsimple.xcap.model.to_json`)."""

    name: str
    args: dict[str, AnyType] = field(default_factory=dict)
    applied: bool = False
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    """Seeds the ids the operation makes, so that applying it again (after a 412 cut
    an update short) makes the same ones: operations stay idempotent."""


@dataclass(slots=True)
class ReloadData:
    """The data of XCAPManagerDidReloadData."""

    contacts: list[Contact]
    groups: list[str]
    services: list[Service]
    presence_policies: list[PresencePolicy]
    dialoginfo_policies: list[DialoginfoPolicy]
    status_icon: Icon | None
    offline_status: OfflineStatus | None

    def as_dict(self) -> dict[str, AnyType]:
        return {name: getattr(self, name) for name in self.__slots__}


_DOCUMENT_TYPES: dict[str, AnyType] = {
    "resource_lists": ResourceListsDocument,
    "rls_services": RLSServicesDocument,
    "dialog_rules": DialogRulesDocument,
    "status_icon": PresContent,
    "offline_status": PIDFDocument,
}


class Workspace:
    """Parsed copies of the documents, for applying operations and reading data.

    ``urls`` maps each key to its document's XCAP URI (anchors of OMA external lists
    point into the resource-lists one). A document that does not parse is left out and
    never written: another client's data is not ours to replace.
    """

    def __init__(
        self,
        account_uri: str,
        applications: dict[str, Application],
        stored: dict[str, StoredDocument],
        urls: dict[str, str],
    ) -> None:
        self.account_uri = account_uri
        self.applications = applications
        self.urls = urls
        self.stored = stored
        self.documents: dict[str, AnyType] = {}
        self.broken: set[str] = set()
        for key in applications:
            content = stored.get(key, StoredDocument()).content
            if content is None:
                self.documents[key] = None
                continue
            kind = PresRulesDocument if key == "pres_rules" else _DOCUMENT_TYPES[key]
            try:
                self.documents[key] = kind.parse(content)
            except XMLDocumentParseError:
                self.broken.add(key)
        user, _, domain = account_uri.partition(":")[2].partition("@")
        self.presence_service = f"sip:{user}+presence@{domain}"
        self.dialog_service = f"sip:{user}+dialog@{domain}"
        self.oma = applications.get("pres_rules", Application("", "", "")).auid == OMA_PRES_RULES
        self._token, self._made = "", 0

    # -- results

    def changes(self) -> dict[str, bytes | None]:
        """The documents that differ from the stored ones: new bytes, None to delete."""
        result = {}
        for key, document in self.documents.items():
            if key in self.broken:
                continue
            content = self.stored.get(key, StoredDocument()).content
            if document is None:
                if content is not None:
                    result[key] = None
                continue
            built = document.build()
            if content is None or built != type(document).parse(content).build():
                result[key] = built
        return result

    def apply(self, operation: Operation) -> None:
        method = getattr(self, f"_op_{operation.name}", None)
        if method is None:
            raise ValueError(f"unknown XCAP operation {operation.name!r}")
        self._token, self._made = operation.token, 0
        method(**operation.args)

    def _new_id(self, prefix: str) -> str:
        """An id for something the current operation makes (the same on a replay)."""
        self._made += 1
        digest = uuid.uuid5(uuid.NAMESPACE_OID, f"{self._token}.{self._made}").hex
        return f"{prefix}-{digest[:16]}"

    # -- the documents, made when missing

    def _available(self, key: str) -> bool:
        return key in self.applications and key not in self.broken

    def _resource_lists(self) -> ResourceListsDocument | None:
        return self._document("resource_lists", ResourceListsDocument)

    def _rls(self) -> RLSServicesDocument | None:
        return self._document("rls_services", RLSServicesDocument)

    def _pres_rules(self) -> PresRulesDocument | None:
        return self._document("pres_rules", PresRulesDocument)

    def _dialog_rules(self) -> DialogRulesDocument | None:
        return self._document("dialog_rules", DialogRulesDocument)

    def _document(self, key: str, kind: type) -> AnyType:
        if not self._available(key):
            return None
        if self.documents.get(key) is None:
            self.documents[key] = kind()
        return self.documents[key]

    def _list_anchor(self, name: str) -> str:
        return (
            f"{self.urls.get('resource_lists', '')}/~~/resource-lists/list%5B@name=%22{name}%22%5D"
        )

    # -- operations

    def _op_normalize(self) -> None:
        lists = self._resource_lists()
        if lists is not None:
            lists.add_list(BUDDYLIST)
            if self.oma:
                lists.add_list(GRANTED)
                lists.add_list(BLOCKED)
        rules = self._pres_rules()
        if rules is not None and self.oma and lists is not None:
            defaults = (
                ("wp_prs_allow_own", "allow", None),
                ("wp_prs_grantedcontacts", "allow", GRANTED),
                ("wp_prs_blockedcontacts", "block", BLOCKED),
            )
            for rule_id, action, listed in defaults:
                if rules.find_rule(rule_id) is not None:
                    continue
                rule = rules.add_rule(rule_id)
                if listed is None:
                    rules.add_identity_one(rule, self.account_uri)
                else:
                    rules.set_external_lists(rule, [self._list_anchor(listed)])
                rules.set_sub_handling(rule, action)
                if action == "allow":
                    _write_transformations(rules, rule, PresencePolicy(rule_id, action))

    def _op_add_group(self, group: str) -> None:
        lists = self._resource_lists()
        if lists is not None and self._group_list(lists, group) is None:
            buddies = lists.add_list(BUDDYLIST)
            lists.add_list(self._new_id("g"), group, parent=buddies)

    def _op_rename_group(self, old_name: str, new_name: str) -> None:
        lists = self._resource_lists()
        element = None if lists is None else self._group_list(lists, old_name)
        if element is not None:
            lists.set_display_name(element, new_name)

    def _op_remove_group(self, group: str) -> None:
        lists = self._resource_lists()
        element = None if lists is None else self._group_list(lists, group)
        if element is None:
            return
        uris = [entry.get("uri") for entry, _ in lists.iter_entries(element)]
        lists.remove(element)
        for uri in uris:
            self._op_remove_contact(Contact(None, uri, None))

    def _op_add_contact(self, contact: Contact) -> None:
        existing = self._find_contact(contact.uri)
        if existing is not None and existing.group is not None:
            return
        self._write_contact(contact)

    def _op_update_contact(self, contact: Contact, attributes: dict[str, AnyType]) -> None:
        current = self._find_contact(contact.uri) or contact
        updated = Contact(current.name, current.uri, current.group, **current.attributes)
        for name in ("subscribe_to_presence", "subscribe_to_dialoginfo"):
            setattr(updated, name, getattr(current, name))
        updated.presence_policies = current.presence_policies
        updated.dialoginfo_policies = current.dialoginfo_policies
        for name, value in attributes.items():
            setattr(updated, name, value)
        if updated.uri != contact.uri:
            self._op_remove_contact(contact)
        self._write_contact(updated)

    def _op_remove_contact(self, contact: Contact) -> None:
        uri = contact.uri
        lists = self._resource_lists()
        if lists is not None:
            for entry in lists.find_entries(uri):
                lists.remove(entry)
        rls = self._rls()
        if rls is not None:
            for service in rls.services():
                rls.remove_entry(service, uri)
        for rules in (self._pres_rules(), self._dialog_rules()):
            if rules is not None:
                for rule in rules.rules():
                    _remove_identity(rules, rule, uri)

    def _op_add_presence_policy(self, policy: PresencePolicy) -> None:
        self._add_policy(self._pres_rules(), policy, "pres")

    def _op_update_presence_policy(self, policy: PresencePolicy, attributes: dict) -> None:
        self._update_policy(self._pres_rules(), policy, attributes, PresencePolicy, "pres")

    def _op_remove_presence_policy(self, policy: PresencePolicy) -> None:
        if policy.id not in OMA_UNREMOVABLE:
            _remove_policy(self._pres_rules(), policy)

    def _op_add_dialoginfo_policy(self, policy: DialoginfoPolicy) -> None:
        self._add_policy(self._dialog_rules(), policy, "dialog")

    def _op_update_dialoginfo_policy(self, policy: DialoginfoPolicy, attributes: dict) -> None:
        self._update_policy(self._dialog_rules(), policy, attributes, DialoginfoPolicy, "dialog")

    def _op_remove_dialoginfo_policy(self, policy: DialoginfoPolicy) -> None:
        _remove_policy(self._dialog_rules(), policy)

    def _add_policy(self, rules: RulesetDocument | None, policy: Policy, prefix: str) -> None:
        if rules is None:
            return
        rule_id = self._policy_id(policy, prefix)
        if rules.find_rule(rule_id) is None:
            _write_policy(rules, rules.add_rule(rule_id), policy)

    def _op_set_status_icon(self, icon: Icon | None) -> None:
        if not self._available("status_icon"):
            return
        self.documents["status_icon"] = (
            None if icon is None else PresContent(icon.data, icon.mime_type, icon.description)
        )

    def _op_set_offline_status(self, status: OfflineStatus | None) -> None:
        if not self._available("offline_status"):
            return
        if status is None:
            self.documents["offline_status"] = None
            return
        document = self.documents.get("offline_status") or PIDFDocument(entity=self.account_uri)
        document.set_person(_OFFLINE_PERSON, status.activity, status.note)
        self.documents["offline_status"] = document

    # -- helpers of the operations

    def _policy_id(self, policy: Policy, prefix: str) -> str:
        rule_id = policy.id
        oma_defined = rule_id is not None and rule_id.startswith("wp_prs_")
        if rule_id is None or (oma_defined and policy.multi_identity_conditions):
            rule_id = self._new_id(prefix)
        return rule_id

    def _update_policy(
        self,
        rules: RulesetDocument | None,
        policy: Policy,
        attributes: dict,
        kind: type,
        prefix: str,
    ) -> None:
        if rules is None or policy.id is None:
            return
        rule = rules.find_rule(policy.id)
        base = policy if rule is None else _read_policy(rules, rule, kind)
        merged = _copy_policy(base, kind)
        for name, value in attributes.items():
            setattr(merged, name, value)
        if rule is None:
            if merged.action is not None:
                _write_policy(rules, rules.add_rule(self._policy_id(merged, prefix)), merged)
            return
        external = isinstance(rules, PresRulesDocument) and rules.external_lists(rule)
        if external and "multi_identity_conditions" in attributes:
            merged.id = None
            _write_policy(rules, rules.add_rule(self._policy_id(merged, prefix)), merged)
            return
        _write_policy(rules, rule, merged)

    def _group_list(self, lists: ResourceListsDocument, group: str) -> etree._Element | None:
        buddies = lists.find_list(BUDDYLIST)
        if buddies is None:
            return None
        for element in lists.lists(buddies):
            if lists.display_name(element) == group:
                return element
        return None

    def _find_contact(self, uri: str) -> Contact | None:
        """The contact ``uri`` as :meth:`extract` would give it (None when no document
        names it), found without reading every contact."""
        lists = self.documents.get("resource_lists")
        contact = None
        named = False
        if lists is not None:
            for name in (BUDDYLIST, UNGROUPED, GRANTED, BLOCKED):
                top = lists.find_list(name)
                entries = [] if top is None else lists.find_entries(uri, top)
                if entries and name in (BUDDYLIST, UNGROUPED) and contact is None:
                    entry = entries[0]
                    group = _group(lists, _lists_between(lists, top, entry))
                    group = group if name == BUDDYLIST else None
                    attributes = lists.entry_attributes(entry)
                    contact = Contact(lists.display_name(entry), uri, group, **attributes)
                named = named or bool(entries)
        packages: set[str] = set()
        rls = self.documents.get("rls_services")
        if rls is not None:
            for service in rls.services():
                reference = rls.resource_list(service)
                if reference is None:
                    found = rls.has_entry(service, uri)
                else:
                    target = None if lists is None else _resolve_anchor(lists, reference)
                    found = target is not None and bool(lists.find_entries(uri, target))
                if found:
                    packages.update(rls.packages(service))
                    named = True
        policies = {}
        for key, kind in (("pres_rules", PresencePolicy), ("dialog_rules", DialoginfoPolicy)):
            rules = self.documents.get(key)
            policies[key] = [
                _read_policy(rules, rule, kind)
                for rule in rules_of(rules)
                if self._names(rules, rule, uri)
            ]
            named = named or bool(policies[key])
        if contact is None:
            if not named or uri == self.account_uri:
                return None
            contact = Contact(None, uri, None)
        contact.subscribe_to_presence = "presence" in packages
        contact.subscribe_to_dialoginfo = "dialog" in packages
        if "pres_rules" in self.applications:
            contact.presence_policies = policies["pres_rules"]
        if "dialog_rules" in self.applications:
            contact.dialoginfo_policies = policies["dialog_rules"]
        return contact

    def _names(self, rules: RulesetDocument, rule: etree._Element, uri: str) -> bool:
        """Whether the rule names ``uri`` (see :meth:`_members`)."""
        if uri in rules.identity_ones(rule):
            return True
        lists = self.documents.get("resource_lists")
        if not isinstance(rules, PresRulesDocument) or lists is None:
            return False
        for anchor in rules.external_lists(rule):
            target = _resolve_anchor(lists, anchor)
            if target is not None and lists.find_entries(uri, target):
                return True
        return False

    def _write_contact(self, contact: Contact) -> None:
        self._op_remove_contact(contact)
        lists = self._resource_lists()
        if lists is not None:
            if contact.group is not None:
                self._op_add_group(contact.group)
                parent = self._group_list(lists, contact.group)
            else:
                parent = lists.add_list(UNGROUPED)
            entry = lists.add_entry(parent, contact.uri, contact.name)
            lists.set_entry_attributes(entry, dict(contact.attributes))
        rls = self._rls()
        if rls is not None:
            for wanted, service_uri, package in (
                (contact.subscribe_to_presence, self.presence_service, "presence"),
                (contact.subscribe_to_dialoginfo, self.dialog_service, "dialog"),
            ):
                if wanted:
                    rls.add_entry(rls.add_service(service_uri, [package]), contact.uri)
        rules = self._pres_rules()
        for policy in (contact.presence_policies or []) if rules is not None else []:
            self._add_to_policy(rules, policy, contact.uri, PresencePolicy, "pres")
        rules = self._dialog_rules()
        for policy in (contact.dialoginfo_policies or []) if rules is not None else []:
            self._add_to_policy(rules, policy, contact.uri, DialoginfoPolicy, "dialog")

    def _add_to_policy(
        self, rules: RulesetDocument, policy: Policy, uri: str, kind: type, prefix: str
    ) -> None:
        if policy.id in OMA_RESERVED:
            return
        rule = None if policy.id is None else rules.find_rule(policy.id)
        if rule is None:
            if policy.action is None:
                return
            rule = rules.add_rule(self._policy_id(policy, prefix))
            _write_policy(rules, rule, _copy_policy(policy, kind))
        anchors = rules.external_lists(rule) if isinstance(rules, PresRulesDocument) else []
        lists = self._resource_lists()
        for anchor in anchors:
            target = None if lists is None else _resolve_anchor(lists, anchor)
            if target is not None:
                lists.add_entry(target, uri)
                return
        rules.add_identity_one(rule, uri)

    # -- extraction

    def extract(self) -> ReloadData:
        """The data the documents hold."""
        lists = self.documents.get("resource_lists")
        rls = self.documents.get("rls_services")
        pres_rules = self.documents.get("pres_rules")
        dialog_rules = self.documents.get("dialog_rules")
        contacts: dict[str, Contact] = {}
        groups: list[str] = []

        if lists is not None:
            buddies = lists.find_list(BUDDYLIST)
            if buddies is not None:
                for element in lists.lists(buddies):
                    name = lists.display_name(element)
                    if name is not None and name not in groups:
                        groups.append(name)
                for entry, path in lists.iter_entries(buddies):
                    _add_contact(contacts, lists, entry, _group(lists, path))
            ungrouped = lists.find_list(UNGROUPED)
            if ungrouped is not None:
                for entry, _ in lists.iter_entries(ungrouped):
                    _add_contact(contacts, lists, entry, None)
        services = []
        if rls is not None:
            for element in rls.services():
                reference = rls.resource_list(element)
                if reference is None:
                    entries = rls.inline_entries(element)
                else:
                    target = None if lists is None else _resolve_anchor(lists, reference)
                    entries = [] if target is None else _list_uris(lists, target)
                services.append(Service(element.get("uri"), rls.packages(element), entries))
        presence = [
            (_read_policy(pres_rules, rule, PresencePolicy), self._members(pres_rules, rule))
            for rule in rules_of(pres_rules)
        ]
        dialoginfo = [
            (_read_policy(dialog_rules, rule, DialoginfoPolicy), self._members(dialog_rules, rule))
            for rule in rules_of(dialog_rules)
        ]
        referenced = [uri for service in services for uri in service.entries]
        referenced += [uri for _, members in presence + dialoginfo for uri in members]
        if lists is not None:
            for name in (GRANTED, BLOCKED):
                element = lists.find_list(name)
                if element is not None:
                    referenced += _list_uris(lists, element)
        for uri in referenced:
            if uri and uri != self.account_uri and uri not in contacts:
                contacts[uri] = Contact(None, uri, None)
        presence_uris = set().union(*(s.entries for s in services if "presence" in s.packages))
        dialog_uris = set().union(*(s.entries for s in services if "dialog" in s.packages))
        for contact in contacts.values():
            contact.subscribe_to_presence = contact.uri in presence_uris
            contact.subscribe_to_dialoginfo = contact.uri in dialog_uris
            if "pres_rules" in self.applications:
                contact.presence_policies = [p for p, uris in presence if contact.uri in uris]
            if "dialog_rules" in self.applications:
                contact.dialoginfo_policies = [p for p, uris in dialoginfo if contact.uri in uris]
        return ReloadData(
            list(contacts.values()),
            groups,
            services,
            [policy for policy, _ in presence],
            [policy for policy, _ in dialoginfo],
            self._status_icon(),
            self._offline_status(),
        )

    def _members(self, rules: RulesetDocument, rule: etree._Element) -> set[str]:
        """The URIs a rule names: its identity ``<one>``s and the entries of the lists
        its OMA external-list points at."""
        members = set(rules.identity_ones(rule))
        lists = self.documents.get("resource_lists")
        if isinstance(rules, PresRulesDocument) and lists is not None:
            for anchor in rules.external_lists(rule):
                target = _resolve_anchor(lists, anchor)
                if target is not None:
                    members.update(_list_uris(lists, target))
        return members

    def _status_icon(self) -> Icon | None:
        content = self.documents.get("status_icon")
        if content is None:
            return None
        stored = self.stored.get("status_icon", StoredDocument())
        location = stored.location or self.urls.get("status_icon")
        try:
            return Icon(
                content.data, content.mime_type or "image/png", content.description, location
            )
        except ValueError:  # a MIME type the spec does not allow for an icon
            return None

    def _offline_status(self) -> OfflineStatus | None:
        document = self.documents.get("offline_status")
        if document is None:
            return None
        activities = document.activities()
        return OfflineStatus(activities[0] if activities else None, document.note())


def _group(lists: ResourceListsDocument, path: list[etree._Element]) -> str | None:
    """A contact's group: the innermost display-name of the lists holding its entry."""
    names = (lists.display_name(element) for element in reversed(path))
    return next((name for name in names if name), None)


def _lists_between(
    lists: ResourceListsDocument, top: etree._Element, entry: etree._Element
) -> list[etree._Element]:
    """The lists from ``top`` down to the one holding ``entry`` (outermost first)."""
    path = []
    element = entry.getparent()
    while element is not None and element is not top:
        path.append(element)
        element = element.getparent()
    return [top, *reversed(path)]


def _list_uris(lists: ResourceListsDocument, element: etree._Element) -> list[str]:
    return [entry.get("uri") for entry, _ in lists.iter_entries(element)]


# -- policies <-> rules

_LIST_STEP = re.compile(r'list\[@name="([^"]*)"\]')


def rules_of(rules: RulesetDocument | None) -> list[etree._Element]:
    return [] if rules is None else rules.rules()


def _resolve_anchor(lists: ResourceListsDocument, anchor: str) -> etree._Element | None:
    """The list of ``lists`` an XCAP URI (an external-list anchor, an rls-services
    resource-list) selects, if it is one of ours."""
    _, separator, selector = unquote(anchor).partition("/~~/")
    if not separator or not selector.startswith("resource-lists/"):
        return None
    element = None
    for step in selector.split("/")[1:]:
        match = _LIST_STEP.fullmatch(step)
        if match is None:
            return None
        element = lists.find_list(match.group(1), element)
        if element is None:
            return None
    return element


def _add_contact(
    contacts: dict[str, Contact],
    lists: ResourceListsDocument,
    entry: etree._Element,
    group: str | None,
) -> None:
    uri = entry.get("uri")
    if uri in contacts:
        return
    contacts[uri] = Contact(lists.display_name(entry), uri, group, **lists.entry_attributes(entry))


def _remove_identity(rules: RulesetDocument, rule: etree._Element, uri: str) -> None:
    """Take ``uri`` out of the rule's identity condition; a rule left with no identity
    it had would match everyone, so it goes (the OMA ones stay)."""
    had_many = bool(rules.identity_many(rule))
    if not rules.remove_identity_one(rule, uri):
        return
    if rules.has_identity(rule) or had_many or rule.get("id") in OMA_UNREMOVABLE:
        return
    rules.root.remove(rule)


def _copy_policy(policy: Policy, kind: type) -> Policy:
    copy = kind(policy.id, policy.action)
    for name, value in vars(policy).items():
        if hasattr(copy, name):
            setattr(copy, name, value)
    return copy


def _read_policy(rules: RulesetDocument, rule: etree._Element, kind: type) -> Policy:
    validity = rules.validity(rule) if rules.has_validity(rule) else None
    many = rules.identity_many(rule)
    conditions = None
    if many:
        conditions = []
        for item in many:
            users = [UserException(uri) for uri in item.except_ids]
            if item.domain is None:
                domains = [DomainException(d) for d in item.except_domains]
                conditions.append(CatchAllCondition(domains + users))
            else:
                conditions.append(DomainCondition(item.domain, users))
    name_element = rules.section(rule, "actions")
    name_element = None if name_element is None else name_element.find(_POLICY_NAME)
    policy = kind(
        rule.get("id"),
        _action(rules.sub_handling(rule)),
        None if name_element is None else name_element.text,
        validity,
        rules.sphere(rule),
        conditions,
    )
    if isinstance(policy, PresencePolicy) and isinstance(rules, PresRulesDocument):
        _read_transformations(rules, rule, policy)
    return policy


def _action(value: str | None) -> str | None:
    return value if value in ("allow", "confirm", "polite-block", "block") else None


def _remove_policy(rules: RulesetDocument | None, policy: Policy) -> None:
    if rules is None or policy.id is None:
        return
    rule = rules.find_rule(policy.id)
    if rule is not None:
        rules.root.remove(rule)


def _write_policy(rules: RulesetDocument, rule: etree._Element, policy: Policy) -> None:
    """Write the policy's conditions, action and transformations into ``rule``, keeping
    its identity ``<one>``s and OMA conditions (they are the contacts in it)."""
    many = []
    for condition in policy.multi_identity_conditions or []:
        if isinstance(condition, DomainCondition):
            many.append(IdentityMany(condition.domain, [e.uri for e in condition.exceptions]))
        else:
            many.append(
                IdentityMany(
                    None,
                    [e.uri for e in condition.exceptions if isinstance(e, UserException)],
                    [e.domain for e in condition.exceptions if isinstance(e, DomainException)],
                )
            )
    rules.set_identity_many(rule, many)
    rules.set_sphere(rule, policy.sphere)
    rules.set_validity(rule, policy.validity)
    actions = rules.section(rule, "actions", create=True)
    for element in actions.findall(_POLICY_NAME):
        actions.remove(element)
    if policy.action is not None:
        rules.set_sub_handling(rule, policy.action)
    if policy.name is not None:
        etree.SubElement(actions, _POLICY_NAME, nsmap={"agp-cp": _AGP_CP}).text = policy.name
    if isinstance(policy, PresencePolicy) and isinstance(rules, PresRulesDocument):
        _write_transformations(rules, rule, policy)


_BOOLEAN_ELEMENTS = {
    name: name.replace("_", "-")
    for name in PresencePolicy.boolean_transformations
    if name not in ("provide_unknown_attributes", "provide_all_attributes")
}
_SET_ITEMS: dict[str, tuple[str, dict[str, type]]] = {
    "provide_devices": (
        "all-devices",
        {"class": Class, "occurence-id": OccurenceID, "deviceID": DeviceID},
    ),
    "provide_persons": ("all-persons", {"class": Class, "occurence-id": OccurenceID}),
    "provide_services": (
        "all-services",
        {
            "class": Class,
            "occurence-id": OccurenceID,
            "service-uri": ServiceURI,
            "service-uri-scheme": ServiceURIScheme,
        },
    ),
}


def _read_transformations(
    rules: PresRulesDocument, rule: etree._Element, policy: PresencePolicy
) -> None:
    for attribute, (all_name, kinds) in _SET_ITEMS.items():
        element = rules.transformation(rule, attribute.replace("_", "-"))
        if element is None:
            setattr(policy, attribute, [])
        elif element.find(pr(all_name)) is not None:
            setattr(policy, attribute, All)
        else:
            by_tag = {pr(name): kind for name, kind in kinds.items()}
            items = [
                by_tag[child.tag]((child.text or "").strip())
                for child in element
                if child.tag in by_tag
            ]
            setattr(policy, attribute, items)
    for attribute, name in _BOOLEAN_ELEMENTS.items():
        element = rules.transformation(rule, name)
        setattr(policy, attribute, None if element is None else _boolean(element.text))
    element = rules.transformation(rule, "provide-unknown-attribute")
    policy.provide_unknown_attributes = None if element is None else _boolean(element.text)
    element = rules.transformation(rule, "provide-user-input")
    policy.provide_user_input = None if element is None else (element.text or "").strip()
    policy.provide_all_attributes = rules.transformation(rule, "provide-all-attributes") is not None


def _write_transformations(
    rules: PresRulesDocument, rule: etree._Element, policy: PresencePolicy
) -> None:
    if policy.action != "allow":
        element = rules.section(rule, "transformations")
        if element is not None:
            rule.remove(element)
        return
    container = rules.clear_section(rule, "transformations")
    for attribute, (all_name, kinds) in _SET_ITEMS.items():
        value = getattr(policy, attribute)
        element = etree.SubElement(container, pr(attribute.replace("_", "-")))
        if value is All:
            etree.SubElement(element, pr(all_name))
            continue
        names = {kind: name for name, kind in kinds.items()}
        for item in value or []:
            etree.SubElement(element, pr(names[type(item)])).text = item.value
        if len(element) == 0:
            container.remove(element)
    for attribute, name in _BOOLEAN_ELEMENTS.items():
        value = getattr(policy, attribute)
        if value is not None:
            etree.SubElement(container, pr(name)).text = "true" if value else "false"
    if policy.provide_unknown_attributes is not None:
        element = etree.SubElement(container, pr("provide-unknown-attribute"))
        element.set("name", "*")
        element.set("ns", "*")
        element.text = "true" if policy.provide_unknown_attributes else "false"
    if policy.provide_user_input is not None:
        etree.SubElement(container, pr("provide-user-input")).text = policy.provide_user_input
    if policy.provide_all_attributes:
        etree.SubElement(container, pr("provide-all-attributes"))
    if len(container) == 0:
        rule.remove(container)


def _boolean(text: str | None) -> bool:
    return (text or "").strip().lower() in ("true", "1")
