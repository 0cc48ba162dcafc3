"""The is-composing indication document (RFC 3994), sent by chat peers while typing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from lxml import etree

__all__ = [
    "ISCOMPOSING_CONTENT_TYPE",
    "ISCOMPOSING_NAMESPACE",
    "IsComposingDocument",
    "IsComposingParseError",
]

ISCOMPOSING_CONTENT_TYPE = "application/im-iscomposing+xml"
ISCOMPOSING_NAMESPACE = "urn:ietf:params:xml:ns:im-iscomposing"

_STATES = ("active", "idle")
_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, remove_blank_text=True, huge_tree=False
)


class IsComposingParseError(ValueError):
    """An is-composing document that could not be parsed."""


def _tag(name: str) -> str:
    return f"{{{ISCOMPOSING_NAMESPACE}}}{name}"


@dataclass(frozen=True, slots=True)
class IsComposingDocument:
    """``state`` is ``"active"`` or ``"idle"``; ``last_active`` when the composer was
    last active, ``content_type`` what is being composed, ``refresh`` in seconds how
    often an active state is repeated (past it the receiver reverts to idle)."""

    state: str
    last_active: datetime | None = None
    content_type: str | None = None
    refresh: int | None = None

    mime_type: ClassVar[str] = ISCOMPOSING_CONTENT_TYPE

    def __post_init__(self) -> None:
        if self.state not in _STATES:
            raise ValueError(f"is-composing state must be 'active' or 'idle', not {self.state!r}")
        if self.refresh is not None and self.refresh < 1:
            raise ValueError(f"refresh must be a positive number of seconds, not {self.refresh}")
        if self.last_active is not None and self.last_active.tzinfo is None:
            raise ValueError("last_active needs a timezone-aware datetime")

    @classmethod
    def parse(cls, data: bytes | str) -> IsComposingDocument:
        if isinstance(data, str):
            data = data.encode()
        try:
            root = etree.fromstring(data, _PARSER)
        except etree.XMLSyntaxError as error:
            raise IsComposingParseError(f"invalid XML: {error}") from None
        if root.tag != _tag("isComposing"):
            raise IsComposingParseError(f"root element is {root.tag}, not isComposing")
        values: dict[str, str] = {}
        for child in root:
            if not isinstance(child.tag, str) or not child.tag.startswith(_tag("")):
                continue  # comments, processing instructions, extension elements
            name = child.tag[len(_tag("")) :]
            if name in values:
                raise IsComposingParseError(f"duplicate <{name}> element")
            values[name] = (child.text or "").strip()
        state = values.get("state")
        if state not in _STATES:
            raise IsComposingParseError(f"state must be 'active' or 'idle', not {state!r}")
        refresh = values.get("refresh")
        if refresh is not None and (not refresh.isdigit() or int(refresh) < 1):
            raise IsComposingParseError(f"refresh must be a positive integer, not {refresh!r}")
        return cls(
            state=state,
            last_active=_parse_datetime(values["lastactive"]) if "lastactive" in values else None,
            content_type=values.get("contenttype") or None,
            refresh=int(refresh) if refresh is not None else None,
        )

    def build(self) -> bytes:
        root = etree.Element(_tag("isComposing"), nsmap={None: ISCOMPOSING_NAMESPACE})
        etree.SubElement(root, _tag("state")).text = self.state
        if self.last_active is not None:
            etree.SubElement(root, _tag("lastactive")).text = self.last_active.isoformat()
        if self.content_type is not None:
            etree.SubElement(root, _tag("contenttype")).text = self.content_type
        if self.refresh is not None:
            etree.SubElement(root, _tag("refresh")).text = str(self.refresh)
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _parse_datetime(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise IsComposingParseError(f"invalid lastactive {text!r}") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
