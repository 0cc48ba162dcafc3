"""XCAP URIs (RFC 4825 section 6) and the client's argument checks."""

from __future__ import annotations

import pytest

from sipsimple.xcap.client import XCAPClient, document_url


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
