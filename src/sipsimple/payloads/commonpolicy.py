"""Common policy (RFC 4745): a ``<ruleset>`` of rules, each with conditions (who,
when, in which sphere), actions and transformations. The presence rules (RFC 5025,
:mod:`~sipsimple.payloads.presrules`) and the dialog rules
(:mod:`~sipsimple.payloads.dialogrules`) are rulesets with their own actions.

The helpers read and write the conditions common-policy defines; actions and
transformations belong to the application's namespace and are reached with
:meth:`RulesetDocument.action` / :meth:`RulesetDocument.transformation`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from lxml import etree

from sipsimple.payloads.xmldoc import XMLDocument, XMLDocumentParseError, qname

__all__ = [
    "AUTH_POLICY_CONTENT_TYPE",
    "COMMON_POLICY_NAMESPACE",
    "IdentityMany",
    "RulesetDocument",
]

COMMON_POLICY_NAMESPACE = "urn:ietf:params:xml:ns:common-policy"
AUTH_POLICY_CONTENT_TYPE = "application/auth-policy+xml"


def cp(name: str) -> str:
    return qname(COMMON_POLICY_NAMESPACE, name)


@dataclass(slots=True)
class IdentityMany:
    """A ``<many>`` identity condition: every identity (``domain`` None) or every one
    of a domain, but for ``except_ids`` (URIs) and ``except_domains``."""

    domain: str | None = None
    except_ids: list[str] = field(default_factory=list)
    except_domains: list[str] = field(default_factory=list)


class RulesetDocument(XMLDocument):
    """A ``<cp:ruleset>``; ``actions_namespace`` is the application's own."""

    namespace = COMMON_POLICY_NAMESPACE
    root_name = "ruleset"
    content_type = AUTH_POLICY_CONTENT_TYPE
    actions_namespace: str = COMMON_POLICY_NAMESPACE

    def check(self) -> None:
        ids = [rule.get("id") for rule in self.rules()]
        if None in ids or "" in ids:
            raise XMLDocumentParseError("a <rule> without an id")
        if len(set(ids)) != len(ids):
            raise XMLDocumentParseError("duplicate rule ids")
        for rule in self.rules():
            for item in self.validity(rule):
                if item[0] is None or item[1] is None:
                    raise XMLDocumentParseError(f"rule {rule.get('id')}: bad validity")

    # -- rules

    def rules(self) -> list[etree._Element]:
        return self.root.findall(cp("rule"))

    def find_rule(self, rule_id: str) -> etree._Element | None:
        for rule in self.rules():
            if rule.get("id") == rule_id:
                return rule
        return None

    def add_rule(self, rule_id: str) -> etree._Element:
        """The rule ``rule_id`` (made empty when missing)."""
        rule = self.find_rule(rule_id)
        if rule is None:
            rule = etree.SubElement(self.root, cp("rule"))
            rule.set("id", rule_id)
        return rule

    def section(
        self, rule: etree._Element, name: str, create: bool = False
    ) -> etree._Element | None:
        """The rule's ``conditions``, ``actions`` or ``transformations`` element."""
        element = rule.find(cp(name))
        if element is None and create:
            element = etree.Element(cp(name))
            order = ("conditions", "actions", "transformations")
            position = sum(
                1 for child in rule if child.tag in {cp(n) for n in order[: order.index(name)]}
            )
            rule.insert(position, element)
        return element

    def clear_section(self, rule: etree._Element, name: str) -> etree._Element:
        element = self.section(rule, name, create=True)
        assert element is not None
        for child in list(element):
            element.remove(child)
        return element

    # -- conditions

    def identity_ones(self, rule: etree._Element) -> list[str]:
        conditions = self.section(rule, "conditions")
        if conditions is None:
            return []
        return [one.get("id", "") for one in conditions.iterfind(f"{cp('identity')}/{cp('one')}")]

    def add_identity_one(self, rule: etree._Element, uri: str) -> None:
        if uri in self.identity_ones(rule):
            return
        etree.SubElement(self._identity(rule), cp("one")).set("id", uri)

    def remove_identity_one(self, rule: etree._Element, uri: str) -> bool:
        conditions = self.section(rule, "conditions")
        removed = False
        if conditions is not None:
            for identity in conditions.findall(cp("identity")):
                for one in identity.findall(cp("one")):
                    if one.get("id") == uri:
                        identity.remove(one)
                        removed = True
                if len(identity) == 0:
                    conditions.remove(identity)
        return removed

    def identity_many(self, rule: etree._Element) -> list[IdentityMany]:
        conditions = self.section(rule, "conditions")
        if conditions is None:
            return []
        result = []
        for many in conditions.iterfind(f"{cp('identity')}/{cp('many')}"):
            item = IdentityMany(domain=many.get("domain"))
            for exception in many.findall(cp("except")):
                if exception.get("id") is not None:
                    item.except_ids.append(exception.get("id"))
                elif exception.get("domain") is not None:
                    item.except_domains.append(exception.get("domain"))
            result.append(item)
        return result

    def set_identity_many(self, rule: etree._Element, items: list[IdentityMany]) -> None:
        conditions = self.section(rule, "conditions")
        if conditions is not None:
            for identity in conditions.findall(cp("identity")):
                for many in identity.findall(cp("many")):
                    identity.remove(many)
                if len(identity) == 0:
                    conditions.remove(identity)
        if not items:
            return
        identity = self._identity(rule)
        for item in items:
            many = etree.SubElement(identity, cp("many"))
            if item.domain is not None:
                many.set("domain", item.domain)
            for uri in item.except_ids:
                etree.SubElement(many, cp("except")).set("id", uri)
            for domain in item.except_domains:
                etree.SubElement(many, cp("except")).set("domain", domain)

    def has_identity(self, rule: etree._Element) -> bool:
        conditions = self.section(rule, "conditions")
        return conditions is not None and conditions.find(cp("identity")) is not None

    def sphere(self, rule: etree._Element) -> str | None:
        conditions = self.section(rule, "conditions")
        element = None if conditions is None else conditions.find(cp("sphere"))
        return None if element is None else element.get("value")

    def set_sphere(self, rule: etree._Element, value: str | None) -> None:
        conditions = self.section(rule, "conditions", create=value is not None)
        if conditions is None:
            return
        element = conditions.find(cp("sphere"))
        if element is not None:
            conditions.remove(element)
        if value is not None:
            etree.SubElement(conditions, cp("sphere")).set("value", value)

    def validity(self, rule: etree._Element) -> list[tuple[datetime | None, datetime | None]]:
        conditions = self.section(rule, "conditions")
        element = None if conditions is None else conditions.find(cp("validity"))
        if element is None:
            return []
        starts = [_datetime(e.text) for e in element.findall(cp("from"))]
        ends = [_datetime(e.text) for e in element.findall(cp("until"))]
        if len(starts) != len(ends):
            return [(None, None)]
        return list(zip(starts, ends, strict=True))

    def has_validity(self, rule: etree._Element) -> bool:
        conditions = self.section(rule, "conditions")
        return conditions is not None and conditions.find(cp("validity")) is not None

    def set_validity(
        self, rule: etree._Element, intervals: list[tuple[datetime, datetime]] | None
    ) -> None:
        conditions = self.section(rule, "conditions", create=intervals is not None)
        if conditions is None:
            return
        element = conditions.find(cp("validity"))
        if element is not None:
            conditions.remove(element)
        if intervals is None:
            return
        element = etree.SubElement(conditions, cp("validity"))
        for start, end in intervals:
            etree.SubElement(element, cp("from")).text = start.isoformat()
            etree.SubElement(element, cp("until")).text = end.isoformat()

    # -- actions and transformations (application namespace)

    def action(self, rule: etree._Element, name: str) -> etree._Element | None:
        actions = self.section(rule, "actions")
        return None if actions is None else actions.find(qname(self.actions_namespace, name))

    def transformation(self, rule: etree._Element, name: str) -> etree._Element | None:
        transformations = self.section(rule, "transformations")
        if transformations is None:
            return None
        return transformations.find(qname(self.actions_namespace, name))

    def sub_handling(self, rule: etree._Element) -> str | None:
        element = self.action(rule, "sub-handling")
        return None if element is None else (element.text or "").strip()

    def set_sub_handling(self, rule: etree._Element, value: str) -> None:
        actions = self.section(rule, "actions", create=True)
        assert actions is not None
        element = actions.find(qname(self.actions_namespace, "sub-handling"))
        if element is None:
            element = etree.SubElement(actions, qname(self.actions_namespace, "sub-handling"))
        element.text = value

    def _identity(self, rule: etree._Element) -> etree._Element:
        conditions = self.section(rule, "conditions", create=True)
        assert conditions is not None
        identity = conditions.find(cp("identity"))
        if identity is None:
            identity = etree.SubElement(conditions, cp("identity"))
        return identity


def _datetime(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        return None
