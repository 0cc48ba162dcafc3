"""An XCAP client (RFC 4825) over httpx: whole documents only, always conditional.

Every read may name the ETag the caller holds (``If-None-Match``: a 304 costs no
body); every write names the ETag it replaces (``If-Match``) or that it expects no
document (``If-None-Match: *``), so a change made meanwhile by another client is never
overwritten: the server answers 412 and the caller fetches again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import quote

import httpx

__all__ = [
    "XCAPClient",
    "XCAPConnectionError",
    "XCAPError",
    "XCAPNotFound",
    "XCAPPreconditionFailed",
    "XCAPResponse",
    "document_url",
]

log = logging.getLogger(__name__)

ALTERNATIVE_LOCATION_HEADER = "X-AGP-Alternative-Location"


def document_url(
    xcap_root: str, xui: str, auid: str, filename: str = "index", global_tree: bool = False
) -> str:
    """The XCAP URI of a document (RFC 4825 section 6): in the user's tree, or global."""
    root = xcap_root.rstrip("/")
    if global_tree:
        return f"{root}/{auid}/global/{quote(filename)}"
    return f"{root}/{auid}/users/{quote(xui, safe=':@')}/{quote(filename)}"


class XCAPError(Exception):
    """The XCAP server answered with an error status."""

    def __init__(self, code: int, reason: str, url: str) -> None:
        super().__init__(f"{code} {reason} ({url})")
        self.code = code
        self.reason = reason
        self.url = url


class XCAPNotFound(XCAPError):
    """404: no such document."""


class XCAPPreconditionFailed(XCAPError):
    """412: the document is not the version the request named (someone changed it)."""


class XCAPConnectionError(Exception):
    """The XCAP server could not be reached or did not answer in time."""


@dataclass(frozen=True, slots=True)
class XCAPResponse:
    """What a GET or PUT gave. ``content`` is None for 304 (the caller's copy is
    current) and after a PUT; ``location`` is the server's X-AGP-Alternative-Location."""

    code: int
    etag: str | None
    content: bytes | None = None
    content_type: str | None = None
    location: str | None = None

    @property
    def not_modified(self) -> bool:
        return self.code == 304


class XCAPClient:
    """The documents of one user (``xui``, e.g. ``sip:alice@example.com``) below
    ``xcap_root``; ``username``/``password`` answer HTTP digest challenges.

    Only coroutines: run it on the SIP thread's loop. ``close()`` when done.
    """

    def __init__(
        self,
        xcap_root: str,
        xui: str,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        verify: bool | str = True,
    ) -> None:
        if not xcap_root.startswith(("http://", "https://")):
            raise ValueError(f"xcap_root must be an http(s) URI, not {xcap_root!r}")
        self.xcap_root = xcap_root.rstrip("/")
        self.xui = xui
        auth = httpx.DigestAuth(username, password or "") if username else None
        self._http = httpx.AsyncClient(
            auth=auth, timeout=timeout, verify=verify, follow_redirects=False, trust_env=False
        )

    def document_url(self, auid: str, filename: str = "index", global_tree: bool = False) -> str:
        return document_url(self.xcap_root, self.xui, auid, filename, global_tree)

    async def get(
        self, auid: str, etag: str | None = None, filename: str = "index", global_tree: bool = False
    ) -> XCAPResponse:
        """The document (or 304 when ``etag`` is still current); XCAPNotFound if none."""
        headers = {"If-None-Match": etag} if etag else {}
        response = await self._request(
            "GET", self.document_url(auid, filename, global_tree), headers
        )
        if response.status_code == 304:
            return XCAPResponse(304, response.headers.get("ETag", etag))
        return XCAPResponse(
            response.status_code,
            response.headers.get("ETag"),
            response.content,
            response.headers.get("Content-Type"),
            response.headers.get(ALTERNATIVE_LOCATION_HEADER),
        )

    async def put(
        self,
        auid: str,
        content: bytes,
        content_type: str,
        etag: str | None,
        filename: str = "index",
    ) -> XCAPResponse:
        """Store the document, replacing version ``etag`` (None: there must be none)."""
        headers = {"Content-Type": content_type}
        headers.update({"If-Match": etag} if etag else {"If-None-Match": "*"})
        response = await self._request(
            "PUT", self.document_url(auid, filename), headers, content=content
        )
        return XCAPResponse(
            response.status_code,
            response.headers.get("ETag"),
            location=response.headers.get(ALTERNATIVE_LOCATION_HEADER),
        )

    async def delete(self, auid: str, etag: str | None, filename: str = "index") -> None:
        """Remove the document (version ``etag`` when given); absent already is fine."""
        headers = {"If-Match": etag} if etag else {}
        try:
            await self._request("DELETE", self.document_url(auid, filename), headers)
        except XCAPNotFound:
            pass

    async def close(self) -> None:
        await self._http.aclose()

    async def _request(
        self, method: str, url: str, headers: dict[str, str], content: bytes | None = None
    ) -> httpx.Response:
        try:
            try:
                response = await self._http.request(method, url, headers=headers, content=content)
            except httpx.RemoteProtocolError:
                # The server closed a kept-alive connection as we reused it (Kamailio's
                # xhttp does): GET, PUT and DELETE are idempotent, so once more on a new one.
                response = await self._http.request(method, url, headers=headers, content=content)
        except httpx.HTTPError as error:
            raise XCAPConnectionError(f"{method} {url}: {error!r}") from None
        code = response.status_code
        log.debug("XCAP %s %s -> %d", method, url, code)
        if code == 304 or 200 <= code < 300:
            return response
        kind = {404: XCAPNotFound, 412: XCAPPreconditionFailed}.get(code, XCAPError)
        raise kind(code, response.reason_phrase, url)
