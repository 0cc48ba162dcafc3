"""The is-composing document (RFC 3994)."""

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipsimple.payloads.iscomposing import (
    ISCOMPOSING_CONTENT_TYPE,
    IsComposingDocument,
    IsComposingParseError,
)

RFC_ACTIVE = b"""<?xml version="1.0" encoding="UTF-8"?>
<isComposing xmlns="urn:ietf:params:xml:ns:im-iscomposing"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="urn:ietf:params:xml:ns:im-composing iscomposing.xsd">
  <state>active</state>
  <contenttype>text/plain</contenttype>
  <refresh>90</refresh>
</isComposing>
"""

RFC_IDLE = b"""<?xml version="1.0" encoding="UTF-8"?>
<isComposing xmlns="urn:ietf:params:xml:ns:im-iscomposing">
  <state>idle</state>
  <lastactive>2003-01-27T10:43:00Z</lastactive>
  <contenttype>audio</contenttype>
  <ext:mood xmlns:ext="urn:example:ext">happy</ext:mood>
</isComposing>
"""


def test_rfc3994_examples():
    assert IsComposingDocument.parse(RFC_ACTIVE) == IsComposingDocument(
        "active", content_type="text/plain", refresh=90
    )
    idle = IsComposingDocument.parse(RFC_IDLE.decode())
    assert idle.state == "idle" and idle.refresh is None
    assert idle.last_active == datetime(2003, 1, 27, 10, 43, tzinfo=UTC)
    assert idle.content_type == "audio"
    assert IsComposingDocument.mime_type == ISCOMPOSING_CONTENT_TYPE


def test_build_and_parse():
    document = IsComposingDocument(
        "active", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), "text/html", 60
    )
    xml = document.build()
    assert xml.startswith(b"<?xml") and b"<refresh>60</refresh>" in xml
    assert IsComposingDocument.parse(xml) == document
    minimal = IsComposingDocument("idle").build()
    assert b"refresh" not in minimal and IsComposingDocument.parse(minimal).state == "idle"


@pytest.mark.parametrize(
    "data",
    [
        b"<not xml",
        b'<other xmlns="urn:ietf:params:xml:ns:im-iscomposing"><state>active</state></other>',
        b'<isComposing xmlns="urn:wrong"><state>active</state></isComposing>',
        b'<isComposing xmlns="urn:ietf:params:xml:ns:im-iscomposing"/>',
        b'<isComposing xmlns="urn:ietf:params:xml:ns:im-iscomposing">'
        b"<state>typing</state></isComposing>",
        b'<isComposing xmlns="urn:ietf:params:xml:ns:im-iscomposing"><state>active</state>'
        b"<refresh>0</refresh></isComposing>",
        b'<isComposing xmlns="urn:ietf:params:xml:ns:im-iscomposing"><state>active</state>'
        b"<lastactive>never</lastactive></isComposing>",
        b'<isComposing xmlns="urn:ietf:params:xml:ns:im-iscomposing"><state>active</state>'
        b"<state>idle</state></isComposing>",
        b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b'<isComposing xmlns="urn:ietf:params:xml:ns:im-iscomposing">'
        b"<state>&e;</state></isComposing>",
    ],
)
def test_invalid(data):
    with pytest.raises(IsComposingParseError):
        IsComposingDocument.parse(data)


def test_argument_errors():
    with pytest.raises(ValueError):
        IsComposingDocument("typing")
    with pytest.raises(ValueError):
        IsComposingDocument("active", refresh=0)
    with pytest.raises(ValueError):
        IsComposingDocument("active", last_active=datetime(2024, 1, 1))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_the_parse_error(data):
    try:
        IsComposingDocument.parse(data)
    except IsComposingParseError:
        pass
