"""OMA presence content (org.openmobilealliance.pres-content,
application/vnd.oma.pres-content+xml): one piece of content, here the status icon,
stored base64-encoded with its MIME type and a description."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from lxml import etree

from sipsimple.payloads.xmldoc import XMLDocument, XMLDocumentParseError

__all__ = ["PRES_CONTENT_CONTENT_TYPE", "PRES_CONTENT_NAMESPACE", "PresContent"]

PRES_CONTENT_NAMESPACE = "urn:oma:xml:prs:pres-content"
PRES_CONTENT_CONTENT_TYPE = "application/vnd.oma.pres-content+xml"


class _ContentDocument(XMLDocument):
    namespace = PRES_CONTENT_NAMESPACE
    root_name = "content"
    content_type = PRES_CONTENT_CONTENT_TYPE
    nsmap = {None: PRES_CONTENT_NAMESPACE}


@dataclass(slots=True)
class PresContent:
    data: bytes
    mime_type: str | None = None
    description: str | None = None

    content_type = PRES_CONTENT_CONTENT_TYPE

    @classmethod
    def parse(cls, data: bytes | str) -> PresContent:
        document = _ContentDocument.parse(data)
        values = {}
        for name in ("mime-type", "encoding", "description", "data"):
            element = document.root.find(document.tag(name))
            values[name] = None if element is None else (element.text or "").strip()
        if values["data"] is None:
            raise XMLDocumentParseError("pres-content without <data>")
        encoding = (values["encoding"] or "base64").lower()
        if encoding != "base64":
            raise XMLDocumentParseError(f"unsupported pres-content encoding {encoding!r}")
        try:
            content = base64.b64decode("".join(values["data"].split()), validate=True)
        except binascii.Error as error:
            raise XMLDocumentParseError(f"pres-content data is not base64: {error}") from None
        return cls(data=content, mime_type=values["mime-type"], description=values["description"])

    def build(self) -> bytes:
        document = _ContentDocument()
        root = document.root
        if self.mime_type is not None:
            etree.SubElement(root, document.tag("mime-type")).text = self.mime_type
        etree.SubElement(root, document.tag("encoding")).text = "base64"
        if self.description is not None:
            etree.SubElement(root, document.tag("description")).text = self.description
        etree.SubElement(root, document.tag("data")).text = base64.b64encode(self.data).decode()
        return document.build()
