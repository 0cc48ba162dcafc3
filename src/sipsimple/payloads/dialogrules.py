"""Dialog event authorization rules (the org.openxcap.dialog-rules application of
OpenXCAP): a common-policy ruleset whose ``sub-handling`` action, like RFC 5025's,
says how a watcher's subscription to the dialog event is handled."""

from __future__ import annotations

from sipsimple.payloads.commonpolicy import COMMON_POLICY_NAMESPACE, RulesetDocument

__all__ = ["DIALOG_RULES_NAMESPACE", "DialogRulesDocument"]

DIALOG_RULES_NAMESPACE = "http://openxcap.org/ns/dialog-rules"


class DialogRulesDocument(RulesetDocument):
    actions_namespace = DIALOG_RULES_NAMESPACE
    nsmap = {"cp": COMMON_POLICY_NAMESPACE, "dr": DIALOG_RULES_NAMESPACE}
