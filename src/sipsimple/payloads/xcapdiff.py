"""XCAP diff (RFC 5874, application/xcap-diff+xml): which documents, elements and
attributes of an XCAP server changed, sent in NOTIFYs of the xcap-diff event.

Only what a client needs to decide what to fetch is kept: the document selectors
with their etags, and the selectors of changed elements and attributes. Patches inside
a ``<document>`` are not applied here (a client fetches the document instead).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from sipsimple.payloads.xmldoc import XMLDocument, XMLDocumentParseError

__all__ = [
    "XCAP_DIFF_CONTENT_TYPE",
    "XCAP_DIFF_NAMESPACE",
    "AttributeChange",
    "DocumentChange",
    "ElementChange",
    "XCAPDiff",
]

XCAP_DIFF_NAMESPACE = "urn:ietf:params:xml:ns:xcap-diff"
XCAP_DIFF_CONTENT_TYPE = "application/xcap-diff+xml"


class _DiffDocument(XMLDocument):
    namespace = XCAP_DIFF_NAMESPACE
    root_name = "xcap-diff"
    content_type = XCAP_DIFF_CONTENT_TYPE
    nsmap = {None: XCAP_DIFF_NAMESPACE}


@dataclass(slots=True)
class DocumentChange:
    """``sel`` is the document's path below the XCAP root; an etag of None means the
    document did not exist before (previous) or does not any more (new)."""

    sel: str
    new_etag: str | None = None
    previous_etag: str | None = None
    body_not_changed: bool = False
    patched: bool = False


@dataclass(slots=True)
class ElementChange:
    sel: str
    exists: bool = True


@dataclass(slots=True)
class AttributeChange:
    sel: str
    exists: bool = True
    value: str | None = None


@dataclass(slots=True)
class XCAPDiff:
    xcap_root: str
    documents: list[DocumentChange] = field(default_factory=list)
    elements: list[ElementChange] = field(default_factory=list)
    attributes: list[AttributeChange] = field(default_factory=list)

    content_type = XCAP_DIFF_CONTENT_TYPE

    @classmethod
    def parse(cls, data: bytes | str) -> XCAPDiff:
        document = _DiffDocument.parse(data)
        root = document.root
        xcap_root = root.get("xcap-root")
        if not xcap_root:
            raise XMLDocumentParseError("xcap-diff without an xcap-root attribute")
        diff = cls(xcap_root=xcap_root)
        for child in root:
            if not isinstance(child.tag, str):
                continue
            sel = child.get("sel")
            if (
                child.tag
                in (document.tag("document"), document.tag("element"), document.tag("attribute"))
                and not sel
            ):
                raise XMLDocumentParseError(f"<{etree.QName(child).localname}> without sel")
            exists = child.get("exists", "1") in ("1", "true")
            if child.tag == document.tag("document"):
                diff.documents.append(
                    DocumentChange(
                        sel=sel,
                        new_etag=child.get("new-etag"),
                        previous_etag=child.get("previous-etag"),
                        body_not_changed=child.find(document.tag("body-not-changed")) is not None,
                        patched=any(
                            isinstance(c.tag, str) and c.tag != document.tag("body-not-changed")
                            for c in child
                        ),
                    )
                )
            elif child.tag == document.tag("element"):
                diff.elements.append(ElementChange(sel=sel, exists=exists))
            elif child.tag == document.tag("attribute"):
                diff.attributes.append(AttributeChange(sel=sel, exists=exists, value=child.text))
        return diff

    def build(self) -> bytes:
        document = _DiffDocument()
        root = document.root
        root.set("xcap-root", self.xcap_root)
        for change in self.documents:
            element = etree.SubElement(root, document.tag("document"))
            element.set("sel", change.sel)
            if change.previous_etag is not None:
                element.set("previous-etag", change.previous_etag)
            if change.new_etag is not None:
                element.set("new-etag", change.new_etag)
            if change.body_not_changed:
                etree.SubElement(element, document.tag("body-not-changed"))
        for change in self.elements:
            element = etree.SubElement(root, document.tag("element"))
            element.set("sel", change.sel)
            if not change.exists:
                element.set("exists", "0")
        for change in self.attributes:
            element = etree.SubElement(root, document.tag("attribute"))
            element.set("sel", change.sel)
            if not change.exists:
                element.set("exists", "0")
            if change.value is not None:
                element.text = change.value
        return document.build()
