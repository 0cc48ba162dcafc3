"""Resource lists (RFC 4826 section 3, application/resource-lists+xml): named lists
of URIs, nested, with display names; the XCAP contact list lives in one.

An AG Projects extension element, ``<agp-rl:attributes>`` inside an ``<entry>``, keeps
the name/value pairs an application stores about a contact.
"""

from __future__ import annotations

from collections.abc import Iterator

from lxml import etree

from sipsimple.payloads.xmldoc import XMLDocument, XMLDocumentParseError, qname

__all__ = [
    "AGP_RESOURCE_LISTS_NAMESPACE",
    "RESOURCE_LISTS_CONTENT_TYPE",
    "RESOURCE_LISTS_NAMESPACE",
    "ResourceListsDocument",
]

RESOURCE_LISTS_NAMESPACE = "urn:ietf:params:xml:ns:resource-lists"
RESOURCE_LISTS_CONTENT_TYPE = "application/resource-lists+xml"
AGP_RESOURCE_LISTS_NAMESPACE = "urn:ag-projects:xml:ns:resource-lists"

_NAMESPACES = {"rl": RESOURCE_LISTS_NAMESPACE}
_CHILD_ENTRY = etree.XPath("rl:entry[@uri=$uri]", namespaces=_NAMESPACES)
_ENTRIES_BELOW = etree.XPath(".//rl:entry[@uri=$uri]", namespaces=_NAMESPACES)
_ATTRIBUTES = qname(AGP_RESOURCE_LISTS_NAMESPACE, "attributes")
_ATTRIBUTE = qname(AGP_RESOURCE_LISTS_NAMESPACE, "attribute")


class ResourceListsDocument(XMLDocument):
    """A ``<resource-lists>`` document; lists are found by their ``name`` attribute."""

    namespace = RESOURCE_LISTS_NAMESPACE
    root_name = "resource-lists"
    content_type = RESOURCE_LISTS_CONTENT_TYPE
    nsmap = {None: RESOURCE_LISTS_NAMESPACE, "agp-rl": AGP_RESOURCE_LISTS_NAMESPACE}

    def check(self) -> None:
        for element in self.root.iter(self.tag("list"), self.tag("entry")):
            if element.tag == self.tag("entry") and not element.get("uri"):
                raise XMLDocumentParseError("an <entry> without a uri attribute")
        for parent in self.root.iter(self.tag("resource-lists"), self.tag("list")):
            names = [child.get("name") for child in self.children(parent, "list")]
            if None in names:
                raise XMLDocumentParseError("a <list> without a name attribute")
            if len(set(names)) != len(names):
                raise XMLDocumentParseError(f"duplicate list names under {parent.get('name')}")

    # -- lists

    def lists(self, parent: etree._Element | None = None) -> list[etree._Element]:
        return self.children(self.root if parent is None else parent, "list")

    def find_list(self, name: str, parent: etree._Element | None = None) -> etree._Element | None:
        for element in self.lists(parent):
            if element.get("name") == name:
                return element
        return None

    def add_list(
        self, name: str, display_name: str | None = None, parent: etree._Element | None = None
    ) -> etree._Element:
        """The list ``name`` under ``parent`` (the root when None), made when missing."""
        element = self.find_list(name, parent)
        if element is None:
            element = etree.SubElement(self.root if parent is None else parent, self.tag("list"))
            element.set("name", name)
            if display_name is not None:
                self.set_display_name(element, display_name)
        return element

    def display_name(self, element: etree._Element) -> str | None:
        child = element.find(self.tag("display-name"))
        return None if child is None else (child.text or "")

    def set_display_name(self, element: etree._Element, value: str | None) -> None:
        child = element.find(self.tag("display-name"))
        if value is None:
            if child is not None:
                element.remove(child)
            return
        if child is None:
            child = etree.Element(self.tag("display-name"))
            element.insert(0, child)
        child.text = value

    # -- entries

    def entries(self, parent: etree._Element) -> list[etree._Element]:
        return self.children(parent, "entry")

    def find_entry(self, parent: etree._Element, uri: str) -> etree._Element | None:
        found = _CHILD_ENTRY(parent, uri=uri)
        return found[0] if found else None

    def find_entries(self, uri: str, parent: etree._Element | None = None) -> list[etree._Element]:
        """The entries for ``uri`` anywhere under ``parent`` (the root when None)."""
        return _ENTRIES_BELOW(self.root if parent is None else parent, uri=uri)

    def add_entry(
        self, parent: etree._Element, uri: str, display_name: str | None = None
    ) -> etree._Element:
        """The entry for ``uri`` in ``parent``, made when missing."""
        entry = self.find_entry(parent, uri)
        if entry is None:
            entry = etree.SubElement(parent, self.tag("entry"))
            entry.set("uri", uri)
        if display_name is not None:
            self.set_display_name(entry, display_name)
        return entry

    def iter_entries(
        self, parent: etree._Element | None = None
    ) -> Iterator[tuple[etree._Element, list[etree._Element]]]:
        """Every entry under ``parent`` (document order) reached through lists only, with
        its ancestor lists from ``parent`` down (innermost last)."""
        start = self.root if parent is None else parent
        list_tag = self.tag("list")
        for entry in start.iter(self.tag("entry")):
            path = []
            ancestor = entry.getparent()
            while ancestor is not start and ancestor is not None and ancestor.tag == list_tag:
                path.append(ancestor)
                ancestor = ancestor.getparent()
            if ancestor is not start:
                continue  # inside an element that is not a list (an extension)
            if parent is not None:
                path.append(parent)
            path.reverse()
            yield entry, path

    def entry_attributes(self, entry: etree._Element) -> dict[str, str]:
        container = entry.find(_ATTRIBUTES)
        if container is None:
            return {}
        return {
            item.get("name", ""): item.text or ""
            for item in container.findall(_ATTRIBUTE)
            if item.get("name")
        }

    def set_entry_attributes(self, entry: etree._Element, attributes: dict[str, str]) -> None:
        container = entry.find(_ATTRIBUTES)
        if container is not None:
            entry.remove(container)
        if not attributes:
            return
        container = etree.SubElement(entry, _ATTRIBUTES)
        for name, value in attributes.items():
            item = etree.SubElement(container, _ATTRIBUTE)
            item.set("name", name)
            item.text = value

    @staticmethod
    def remove(element: etree._Element) -> None:
        parent = element.getparent()
        if parent is not None:
            parent.remove(element)
