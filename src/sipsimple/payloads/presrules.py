"""Presence authorization rules (RFC 5025, pres-rules and the OMA variant
org.openmobilealliance.pres-rules): a common-policy ruleset whose actions say how a
watcher's subscription is handled and whose transformations say what it may see.

OMA adds conditions (namespace ``urn:oma:xml:xdm:common-policy``): ``external-list``
(the watcher is in a resource-lists list, given by XCAP URI), ``anonymous-request``
and ``other-identity`` (no other rule matched).
"""

from __future__ import annotations

from lxml import etree

from sipsimple.payloads.commonpolicy import COMMON_POLICY_NAMESPACE, RulesetDocument, cp
from sipsimple.payloads.xmldoc import qname

__all__ = [
    "OMA_COMMON_POLICY_NAMESPACE",
    "PRES_RULES_NAMESPACE",
    "SUB_HANDLING_VALUES",
    "PresRulesDocument",
    "cp",
    "oma",
    "pr",
]

PRES_RULES_NAMESPACE = "urn:ietf:params:xml:ns:pres-rules"
OMA_COMMON_POLICY_NAMESPACE = "urn:oma:xml:xdm:common-policy"
SUB_HANDLING_VALUES = ("block", "confirm", "polite-block", "allow")


def oma(name: str) -> str:
    return qname(OMA_COMMON_POLICY_NAMESPACE, name)


def pr(name: str) -> str:
    return qname(PRES_RULES_NAMESPACE, name)


class PresRulesDocument(RulesetDocument):
    actions_namespace = PRES_RULES_NAMESPACE
    nsmap = {
        "cp": COMMON_POLICY_NAMESPACE,
        "pr": PRES_RULES_NAMESPACE,
        "ocp": OMA_COMMON_POLICY_NAMESPACE,
    }

    def external_lists(self, rule: etree._Element) -> list[str]:
        """The anchors (XCAP URIs of resource-lists lists) of the rule's external-list."""
        conditions = self.section(rule, "conditions")
        if conditions is None:
            return []
        return [
            entry.get("anc", "")
            for entry in conditions.iterfind(f"{oma('external-list')}/{oma('entry')}")
        ]

    def set_external_lists(self, rule: etree._Element, anchors: list[str]) -> None:
        conditions = self.section(rule, "conditions", create=bool(anchors))
        if conditions is None:
            return
        for element in conditions.findall(oma("external-list")):
            conditions.remove(element)
        if anchors:
            element = etree.SubElement(conditions, oma("external-list"))
            for anchor in anchors:
                etree.SubElement(element, oma("entry")).set("anc", anchor)

    def flag_condition(self, rule: etree._Element, name: str) -> bool:
        """Whether the OMA condition ``anonymous-request`` or ``other-identity`` is set."""
        conditions = self.section(rule, "conditions")
        return conditions is not None and conditions.find(oma(name)) is not None

    def set_flag_condition(self, rule: etree._Element, name: str, value: bool) -> None:
        conditions = self.section(rule, "conditions", create=value)
        if conditions is None:
            return
        element = conditions.find(oma(name))
        if value and element is None:
            etree.SubElement(conditions, oma(name))
        elif not value and element is not None:
            conditions.remove(element)

    def is_empty_conditions(self, rule: etree._Element) -> bool:
        conditions = self.section(rule, "conditions")
        return conditions is None or len(conditions) == 0

    def transformations(self, rule: etree._Element) -> etree._Element:
        element = self.section(rule, "transformations", create=True)
        assert element is not None
        return element
