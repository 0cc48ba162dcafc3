"""PIDF (RFC 3863, application/pidf+xml) with the data model's ``<person>`` (RFC 4479)
and RPID activities (RFC 4480), as far as a stored offline status needs: the
pidf-manipulation application (RFC 4827) keeps one such document per user."""

from __future__ import annotations

from lxml import etree

from sipsimple.payloads.xmldoc import XMLDocument, XMLDocumentParseError, qname

__all__ = [
    "DATA_MODEL_NAMESPACE",
    "PIDF_CONTENT_TYPE",
    "PIDF_NAMESPACE",
    "RPID_NAMESPACE",
    "PIDFDocument",
]

PIDF_NAMESPACE = "urn:ietf:params:xml:ns:pidf"
DATA_MODEL_NAMESPACE = "urn:ietf:params:xml:ns:pidf:data-model"
RPID_NAMESPACE = "urn:ietf:params:xml:ns:pidf:rpid"
PIDF_CONTENT_TYPE = "application/pidf+xml"

_PERSON = qname(DATA_MODEL_NAMESPACE, "person")
_NOTE = qname(DATA_MODEL_NAMESPACE, "note")
_ACTIVITIES = qname(RPID_NAMESPACE, "activities")


class PIDFDocument(XMLDocument):
    """A ``<presence>`` document; the helpers read and write its first person."""

    namespace = PIDF_NAMESPACE
    root_name = "presence"
    content_type = PIDF_CONTENT_TYPE
    nsmap = {None: PIDF_NAMESPACE, "dm": DATA_MODEL_NAMESPACE, "rpid": RPID_NAMESPACE}

    def __init__(self, root: etree._Element | None = None, entity: str | None = None) -> None:
        super().__init__(root)
        if entity is not None:
            self.root.set("entity", entity)

    def check(self) -> None:
        if not self.root.get("entity"):
            raise XMLDocumentParseError("<presence> without an entity attribute")
        for element in self.root.iter(_PERSON, self.tag("tuple")):
            if not element.get("id"):
                raise XMLDocumentParseError(f"<{etree.QName(element).localname}> without an id")

    @property
    def entity(self) -> str:
        return self.root.get("entity", "")

    def person(self, create_id: str | None = None) -> etree._Element | None:
        person = self.root.find(_PERSON)
        if person is None and create_id is not None:
            person = etree.SubElement(self.root, _PERSON)
            person.set("id", create_id)
        return person

    def activities(self) -> list[str]:
        """The local names of the first person's activities (``other`` gives its text)."""
        person = self.person()
        container = None if person is None else person.find(_ACTIVITIES)
        if container is None:
            return []
        result = []
        for child in container:
            if not isinstance(child.tag, str) or etree.QName(child).namespace != RPID_NAMESPACE:
                continue
            name = etree.QName(child).localname
            result.append((child.text or "").strip() if name == "other" else name)
        return result

    def note(self) -> str | None:
        person = self.person()
        element = None if person is None else person.find(_NOTE)
        return None if element is None else (element.text or "")

    def set_person(self, person_id: str, activity: str | None, note: str | None) -> None:
        """Make the first person carry just ``activity`` (an RPID activity name, else
        ``<other>``) and ``note``."""
        person = self.person(create_id=person_id)
        assert person is not None
        for element in person.findall(_ACTIVITIES) + person.findall(_NOTE):
            person.remove(element)
        if activity is not None:
            container = etree.SubElement(person, _ACTIVITIES)
            if activity in RPID_ACTIVITIES:
                etree.SubElement(container, qname(RPID_NAMESPACE, activity))
            else:
                etree.SubElement(container, qname(RPID_NAMESPACE, "other")).text = activity
        if note is not None:
            etree.SubElement(person, _NOTE).text = note


RPID_ACTIVITIES = frozenset(
    [
        "appointment",
        "away",
        "breakfast",
        "busy",
        "dinner",
        "holiday",
        "in-transit",
        "looking-for-work",
        "meal",
        "meeting",
        "on-the-phone",
        "performance",
        "permanent-absence",
        "playing",
        "presentation",
        "shopping",
        "sleeping",
        "spectator",
        "steering",
        "travel",
        "tv",
        "unknown",
        "vacation",
        "working",
        "worship",
    ]
)
"""The activity elements of RFC 4480 section 3.2 (``other`` aside)."""
