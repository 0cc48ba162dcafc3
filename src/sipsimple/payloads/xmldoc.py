"""What the XML documents of XCAP share: a safe parser, a parse error, and a document
that keeps its lxml tree whole.

XCAP documents are edited by several clients, each knowing its own extensions. So a
document here is its element tree, not a model of it: the typed helpers of each module
read and change the parts this SDK manages and leave everything else as it was.
"""

from __future__ import annotations

import functools
from typing import ClassVar, Self

from lxml import etree

__all__ = ["XMLDocument", "XMLDocumentParseError", "qname"]

MAX_DOCUMENT_SIZE = 4 * 1024 * 1024
_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    remove_blank_text=True,
    huge_tree=False,
    load_dtd=False,
    remove_comments=False,
)


class XMLDocumentParseError(ValueError):
    """Bytes that are not the XML document expected."""


@functools.cache
def qname(namespace: str, name: str) -> str:
    """The Clark name ``{namespace}name`` lxml uses for tags."""
    return f"{{{namespace}}}{name}"


class XMLDocument:
    """A document of one XCAP application: ``root`` is its lxml root element.

    Subclasses set ``namespace``, ``root_name`` and ``content_type``; ``nsmap`` is
    what a new document declares.
    """

    namespace: ClassVar[str]
    root_name: ClassVar[str]
    content_type: ClassVar[str]
    nsmap: ClassVar[dict[str | None, str]] = {}

    def __init__(self, root: etree._Element | None = None) -> None:
        if root is None:
            root = etree.Element(self.tag(self.root_name), nsmap=self.nsmap or None)
        elif root.tag != self.tag(self.root_name):
            raise ValueError(f"{type(self).__name__} needs a {self.root_name} root, not {root.tag}")
        self.root = root

    @classmethod
    def tag(cls, name: str) -> str:
        return qname(cls.namespace, name)

    @classmethod
    def parse(cls, data: bytes | str) -> Self:
        """The document in ``data``; XMLDocumentParseError when it is not one."""
        if isinstance(data, str):
            data = data.encode()
        if not isinstance(data, bytes):
            raise TypeError(f"expected bytes or str, not {type(data).__name__}")
        if len(data) > MAX_DOCUMENT_SIZE:
            raise XMLDocumentParseError(f"document larger than {MAX_DOCUMENT_SIZE} bytes")
        try:
            root = etree.fromstring(data, _PARSER)
        except etree.XMLSyntaxError as error:
            raise XMLDocumentParseError(f"invalid XML: {error}") from None
        if root.getroottree().docinfo.doctype:
            raise XMLDocumentParseError("a document type declaration is not allowed")
        if root.tag != cls.tag(cls.root_name):
            raise XMLDocumentParseError(f"root element is {root.tag}, not {cls.tag(cls.root_name)}")
        document = cls(root)
        document.check()
        return document

    def check(self) -> None:
        """Raise XMLDocumentParseError for what the application's schema forbids and the
        helpers rely on; subclasses extend it."""

    def build(self) -> bytes:
        return etree.tostring(self.root, xml_declaration=True, encoding="UTF-8")

    def copy(self) -> Self:
        return type(self)(etree.fromstring(etree.tostring(self.root), _PARSER))

    def canonical(self) -> bytes:
        """The C14N form, to compare two documents."""
        return etree.tostring(self.root, method="c14n")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, XMLDocument):
            return NotImplemented
        return type(self) is type(other) and self.canonical() == other.canonical()

    __hash__ = None  # type: ignore[assignment]

    def children(self, parent: etree._Element, name: str) -> list[etree._Element]:
        """The children of ``parent`` named ``name`` in this document's namespace."""
        return parent.findall(self.tag(name))
