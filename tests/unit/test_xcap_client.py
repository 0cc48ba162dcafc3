"""XCAP URIs (RFC 4825 section 6) and the client's argument checks."""

from __future__ import annotations

import asyncio

import pytest

from sipsimple.xcap.client import XCAPClient, XCAPConnectionError, document_url


def test_document_urls():
    root = "https://xcap.example.com/xcap-root/"
    assert (
        document_url(root, "sip:alice@example.com", "resource-lists")
        == "https://xcap.example.com/xcap-root/resource-lists/users/sip:alice@example.com/index"
    )
    assert (
        document_url(
            root,
            "sip:al ice@example.com",
            "org.openmobilealliance.pres-content",
            "oma_status-icon/index",
        )
        == "https://xcap.example.com/xcap-root/org.openmobilealliance.pres-content/users/"
        "sip:al%20ice@example.com/oma_status-icon/index"
    )
    assert (
        document_url(root, "sip:alice@example.com", "xcap-caps", global_tree=True)
        == "https://xcap.example.com/xcap-root/xcap-caps/global/index"
    )


async def test_client_needs_an_http_root():
    with pytest.raises(ValueError, match="http"):
        XCAPClient("ftp://xcap.example.com/", "sip:alice@example.com")
    client = XCAPClient("http://127.0.0.1:1/xcap-root", "sip:alice@example.com", "alice", "pw")
    assert client.document_url("rls-services").endswith(
        "/rls-services/users/sip:alice@example.com/index"
    )
    await client.close()


async def test_a_kept_alive_connection_the_server_closed_is_retried_once():
    """A server that answers one request per connection and then closes it without a
    response to the next one (as Kamailio's xhttp may): every GET still succeeds, and a
    server that never answers gives XCAPConnectionError, not a hang."""
    requests = 0

    async def one_answer_per_connection(reader, writer):
        nonlocal requests
        await reader.readuntil(b"\r\n\r\n")
        requests += 1
        body = b"<xcap-caps/>"
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/xcap-caps+xml\r\n"
            b'ETag: "%d"\r\nContent-Length: %d\r\n\r\n%s' % (requests, len(body), body)
        )
        await writer.drain()
        await reader.read(65536)  # the next request on this connection: no answer
        writer.close()

    server = await asyncio.start_server(one_answer_per_connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = XCAPClient(f"http://127.0.0.1:{port}/xcap-root", "sip:alice@example.com")
    try:
        for expected in (1, 2, 3):
            response = await client.get("xcap-caps", global_tree=True)
            assert response.content == b"<xcap-caps/>" and response.etag == f'"{expected}"'
    finally:
        await client.close()
        server.close()
        await server.wait_closed()

    async def never_answers(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(never_answers, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = XCAPClient(f"http://127.0.0.1:{port}/xcap-root", "sip:alice@example.com")
    try:
        with pytest.raises(XCAPConnectionError):
            await client.get("xcap-caps", global_tree=True)
    finally:
        await client.close()
        server.close()
        await server.wait_closed()
