"""RLS services (RFC 4826 section 4, application/rls-services+xml): URIs a Resource
List Server answers SUBSCRIBEs for, each with its list of resources (given inline or
as a reference to a resource-lists list) and the event packages it serves."""

from __future__ import annotations

from lxml import etree

from sipsimple.payloads.resourcelists import RESOURCE_LISTS_NAMESPACE
from sipsimple.payloads.xmldoc import XMLDocument, XMLDocumentParseError, qname

__all__ = ["RLS_SERVICES_CONTENT_TYPE", "RLS_SERVICES_NAMESPACE", "RLSServicesDocument"]

RLS_SERVICES_NAMESPACE = "urn:ietf:params:xml:ns:rls-services"
RLS_SERVICES_CONTENT_TYPE = "application/rls-services+xml"

_ENTRY = qname(RESOURCE_LISTS_NAMESPACE, "entry")
_ENTRIES_BELOW = etree.XPath(".//rl:entry[@uri=$uri]", namespaces={"rl": RESOURCE_LISTS_NAMESPACE})


class RLSServicesDocument(XMLDocument):
    """An ``<rls-services>`` document; services are found by their ``uri``."""

    namespace = RLS_SERVICES_NAMESPACE
    root_name = "rls-services"
    content_type = RLS_SERVICES_CONTENT_TYPE
    nsmap = {None: RLS_SERVICES_NAMESPACE, "rl": RESOURCE_LISTS_NAMESPACE}

    def check(self) -> None:
        uris = []
        for service in self.services():
            uri = service.get("uri")
            if not uri:
                raise XMLDocumentParseError("a <service> without a uri attribute")
            uris.append(uri)
            if (
                service.find(self.tag("list")) is None
                and service.find(self.tag("resource-list")) is None
            ):
                raise XMLDocumentParseError(f"service {uri} has no list and no resource-list")
        if len(set(uris)) != len(uris):
            raise XMLDocumentParseError("duplicate service URIs")

    def services(self) -> list[etree._Element]:
        return self.children(self.root, "service")

    def find_service(self, uri: str) -> etree._Element | None:
        for service in self.services():
            if service.get("uri") == uri:
                return service
        return None

    def add_service(self, uri: str, packages: list[str]) -> etree._Element:
        """The service ``uri`` with an inline (empty) list, made when missing."""
        service = self.find_service(uri)
        if service is None:
            service = etree.SubElement(self.root, self.tag("service"))
            service.set("uri", uri)
            etree.SubElement(service, self.tag("list"))
            self.set_packages(service, packages)
        return service

    def packages(self, service: etree._Element) -> list[str]:
        container = service.find(self.tag("packages"))
        if container is None:
            return []
        return [(p.text or "").strip() for p in container.findall(self.tag("package"))]

    def set_packages(self, service: etree._Element, packages: list[str]) -> None:
        container = service.find(self.tag("packages"))
        if container is not None:
            service.remove(container)
        if packages:
            container = etree.SubElement(service, self.tag("packages"))
            for package in packages:
                etree.SubElement(container, self.tag("package")).text = package

    def resource_list(self, service: etree._Element) -> str | None:
        """The URI of the resource-lists list the service refers to, if it does."""
        element = service.find(self.tag("resource-list"))
        return None if element is None else (element.text or "").strip()

    def inline_list(self, service: etree._Element) -> etree._Element | None:
        return service.find(self.tag("list"))

    def inline_entries(self, service: etree._Element) -> list[str]:
        """The entry URIs of the service's inline list, nested lists included."""
        element = self.inline_list(service)
        if element is None:
            return []
        return [entry.get("uri", "") for entry in element.iter(_ENTRY)]

    def add_entry(self, service: etree._Element, uri: str) -> None:
        element = self.inline_list(service)
        if element is None:
            raise ValueError(f"service {service.get('uri')} refers to a resource-list")
        if not _ENTRIES_BELOW(element, uri=uri):
            etree.SubElement(element, _ENTRY).set("uri", uri)

    def has_entry(self, service: etree._Element, uri: str) -> bool:
        """Whether the service's inline list holds ``uri``."""
        element = self.inline_list(service)
        return element is not None and bool(_ENTRIES_BELOW(element, uri=uri))

    def remove_entry(self, service: etree._Element, uri: str) -> bool:
        element = self.inline_list(service)
        removed = False
        if element is not None:
            for entry in _ENTRIES_BELOW(element, uri=uri):
                entry.getparent().remove(entry)
                removed = True
        return removed
