"""XCAP server capabilities (RFC 4825 section 12, application/xcap-caps+xml): the
application usages (auids), extensions and namespaces a server supports."""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from sipsimple.payloads.xmldoc import XMLDocument, XMLDocumentParseError

__all__ = ["XCAP_CAPS_CONTENT_TYPE", "XCAP_CAPS_NAMESPACE", "XCAPCapabilities"]

XCAP_CAPS_NAMESPACE = "urn:ietf:params:xml:ns:xcap-caps"
XCAP_CAPS_CONTENT_TYPE = "application/xcap-caps+xml"


class _CapsDocument(XMLDocument):
    namespace = XCAP_CAPS_NAMESPACE
    root_name = "xcap-caps"
    content_type = XCAP_CAPS_CONTENT_TYPE
    nsmap = {None: XCAP_CAPS_NAMESPACE}


@dataclass(slots=True)
class XCAPCapabilities:
    auids: list[str] = field(default_factory=list)
    extensions: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)

    content_type = XCAP_CAPS_CONTENT_TYPE

    @classmethod
    def parse(cls, data: bytes | str) -> XCAPCapabilities:
        document = _CapsDocument.parse(data)
        auids = _texts(document, "auids", "auid")
        if not auids:
            raise XMLDocumentParseError("xcap-caps lists no auid")
        return cls(
            auids=auids,
            extensions=_texts(document, "extensions", "extension"),
            namespaces=_texts(document, "namespaces", "namespace"),
        )

    def build(self) -> bytes:
        document = _CapsDocument()
        for group, name, values in (
            ("auids", "auid", self.auids),
            ("extensions", "extension", self.extensions),
            ("namespaces", "namespace", self.namespaces),
        ):
            if values or group != "extensions":
                container = etree.SubElement(document.root, document.tag(group))
                for value in values:
                    etree.SubElement(container, document.tag(name)).text = value
        return document.build()


def _texts(document: _CapsDocument, group: str, name: str) -> list[str]:
    return [
        (element.text or "").strip()
        for element in document.root.iterfind(f"{document.tag(group)}/{document.tag(name)}")
        if (element.text or "").strip()
    ]
