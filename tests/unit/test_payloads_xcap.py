"""The XCAP documents: RFC examples parse, read as the RFC says and survive a round
trip; the helpers change only what they are asked to; bad input raises the parse
error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipsimple.payloads.commonpolicy import IdentityMany
from sipsimple.payloads.dialogrules import DialogRulesDocument
from sipsimple.payloads.pidf import PIDFDocument
from sipsimple.payloads.prescontent import PresContent
from sipsimple.payloads.presrules import PresRulesDocument, pr
from sipsimple.payloads.resourcelists import ResourceListsDocument
from sipsimple.payloads.rlsservices import RLSServicesDocument
from sipsimple.payloads.xcapcaps import XCAPCapabilities
from sipsimple.payloads.xcapdiff import XCAPDiff
from sipsimple.payloads.xmldoc import XMLDocumentParseError

DATA = Path(__file__).parents[1] / "data" / "xcap"


def example(name: str) -> bytes:
    return (DATA / name).read_bytes()


def test_resource_lists_rfc4826_example():
    document = ResourceListsDocument.parse(example("rfc4826-resource-lists.xml"))
    friends = document.find_list("friends")
    assert friends is not None
    close = document.find_list("close-friends", friends)
    assert document.display_name(close) == "Close Friends"
    found = [(e.get("uri"), [a.get("name") for a in path]) for e, path in document.iter_entries()]
    assert found == [
        ("sip:bill@example.com", ["friends"]),
        ("sip:joe@example.com", ["friends", "close-friends"]),
        ("sip:nancy@example.com", ["friends", "close-friends"]),
    ]
    assert (
        document.display_name(document.find_entry(close, "sip:nancy@example.com")) == "Nancy Gross"
    )
    again = ResourceListsDocument.parse(document.build())
    assert again == document


def test_resource_lists_helpers_keep_what_they_do_not_manage():
    document = ResourceListsDocument.parse(example("rfc4826-resource-lists.xml"))
    buddies = document.add_list("oma_buddylist")
    group = document.add_list("g1", "Work", parent=buddies)
    entry = document.add_entry(group, "sip:carol@example.com", "Carol")
    document.set_entry_attributes(entry, {"icon": "x.png", "note": "met at IETF"})
    again = ResourceListsDocument.parse(document.build())
    entry = again.find_entry(
        again.find_list("g1", again.find_list("oma_buddylist")), "sip:carol@example.com"
    )
    assert again.entry_attributes(entry) == {"icon": "x.png", "note": "met at IETF"}
    assert again.display_name(entry) == "Carol"
    # the RFC's entry-ref and external survive untouched
    friends = again.find_list("friends")
    assert friends.find(again.tag("entry-ref")) is not None
    assert again.find_list("close-friends", friends).find(again.tag("external")) is not None
    again.set_entry_attributes(entry, {})
    assert again.entry_attributes(entry) == {}
    again.set_display_name(entry, None)
    assert again.display_name(entry) is None


@pytest.mark.parametrize(
    "data",
    [
        b"<resource-lists xmlns='urn:ietf:params:xml:ns:resource-lists'><list/></resource-lists>",
        b"<resource-lists xmlns='urn:ietf:params:xml:ns:resource-lists'><list name='a'/>"
        b"<list name='a'/></resource-lists>",
        b"<resource-lists xmlns='urn:ietf:params:xml:ns:resource-lists'><list name='a'><entry/>"
        b"</list></resource-lists>",
        b"<resource-lists xmlns='urn:other'/>",
        b"<resource-lists",
        b"<!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><resource-lists "
        b"xmlns='urn:ietf:params:xml:ns:resource-lists'>&e;</resource-lists>",
    ],
)
def test_resource_lists_bad_input(data):
    with pytest.raises(XMLDocumentParseError):
        ResourceListsDocument.parse(data)


def test_rls_services_rfc4826_example():
    document = RLSServicesDocument.parse(example("rfc4826-rls-services.xml"))
    first, second = document.services()
    assert first.get("uri") == "sip:mybuddies@example.com"
    assert document.resource_list(first).endswith("list%5b@name=%22l1%22%5d")
    assert document.packages(first) == ["presence"]
    assert document.inline_entries(second) == ["sip:joe@example.com", "sip:sudhir@example.com"]
    assert RLSServicesDocument.parse(document.build()) == document
    service = document.add_service("sip:alice+dialog@example.com", ["dialog"])
    document.add_entry(service, "sip:bob@example.com")
    document.add_entry(service, "sip:bob@example.com")
    again = RLSServicesDocument.parse(document.build())
    service = again.find_service("sip:alice+dialog@example.com")
    assert again.inline_entries(service) == ["sip:bob@example.com"]
    assert again.packages(service) == ["dialog"]
    assert again.remove_entry(service, "sip:bob@example.com")
    assert again.inline_entries(service) == []
    with pytest.raises(ValueError, match="resource-list"):
        again.add_entry(again.find_service("sip:mybuddies@example.com"), "sip:x@example.com")


def test_rls_services_needs_a_list():
    data = (
        b"<rls-services xmlns='urn:ietf:params:xml:ns:rls-services'>"
        b"<service uri='sip:a@b'><packages/></service></rls-services>"
    )
    with pytest.raises(XMLDocumentParseError, match="no list"):
        RLSServicesDocument.parse(data)


def test_pres_rules_rfc5025_example():
    document = PresRulesDocument.parse(example("rfc5025-pres-rules.xml"))
    a = document.find_rule("a")
    assert document.identity_ones(a) == ["sip:user@example.com"]
    assert document.sphere(a) == "work"
    plus_one = timezone(timedelta(hours=1))
    assert document.validity(a) == [
        (datetime(2003, 12, 24, 17, tzinfo=plus_one), datetime(2003, 12, 24, 19, tzinfo=plus_one))
    ]
    assert document.sub_handling(a) == "allow"
    assert document.transformation(a, "provide-user-input").text == "bare"
    schemes = document.transformation(a, "provide-services").findall(pr("service-uri-scheme"))
    assert [s.text for s in schemes] == ["sip", "mailto"]
    b = document.find_rule("b")
    assert document.identity_many(b) == [
        IdentityMany(domain="example.com", except_ids=["sip:spam@example.com"])
    ]
    assert document.sub_handling(b) == "polite-block"
    assert PresRulesDocument.parse(document.build()) == document


def test_pres_rules_helpers():
    document = PresRulesDocument()
    rule = document.add_rule("r1")
    document.set_sub_handling(rule, "block")
    document.add_identity_one(rule, "sip:x@example.com")
    document.add_identity_one(rule, "sip:x@example.com")
    document.set_identity_many(rule, [IdentityMany(except_domains=["evil.example"])])
    document.set_external_lists(rule, ["http://xcap/resource-lists/users/u/index/~~/x"])
    document.set_flag_condition(rule, "other-identity", True)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    document.set_validity(rule, [(start, start + timedelta(hours=2))])
    document.set_sphere(rule, "home")
    again = PresRulesDocument.parse(document.build())
    rule = again.find_rule("r1")
    assert [child.tag.split("}")[1] for child in rule] == ["conditions", "actions"]
    assert again.identity_ones(rule) == ["sip:x@example.com"]
    assert again.identity_many(rule) == [IdentityMany(except_domains=["evil.example"])]
    assert again.external_lists(rule) == ["http://xcap/resource-lists/users/u/index/~~/x"]
    assert again.flag_condition(rule, "other-identity")
    assert not again.flag_condition(rule, "anonymous-request")
    assert again.validity(rule) == [(start, start + timedelta(hours=2))]
    assert again.sphere(rule) == "home"
    assert again.sub_handling(rule) == "block"
    assert again.remove_identity_one(rule, "sip:x@example.com")
    again.set_identity_many(rule, [])
    assert not again.has_identity(rule)
    again.set_external_lists(rule, [])
    again.set_flag_condition(rule, "other-identity", False)
    again.set_validity(rule, None)
    again.set_sphere(rule, None)
    assert again.is_empty_conditions(rule)


def test_ruleset_rejects_duplicate_ids():
    data = (
        b"<ruleset xmlns='urn:ietf:params:xml:ns:common-policy'><rule id='a'/><rule id='a'/>"
        b"</ruleset>"
    )
    with pytest.raises(XMLDocumentParseError, match="duplicate"):
        PresRulesDocument.parse(data)


def test_dialog_rules_round_trip():
    document = DialogRulesDocument()
    rule = document.add_rule("d1")
    document.set_sub_handling(rule, "confirm")
    document.add_identity_one(rule, "sip:bob@example.com")
    again = DialogRulesDocument.parse(document.build())
    assert again.sub_handling(again.find_rule("d1")) == "confirm"
    assert b"http://openxcap.org/ns/dialog-rules" in again.build()


def test_xcap_caps_rfc4825_example():
    caps = XCAPCapabilities.parse(example("rfc4825-xcap-caps.xml"))
    assert caps.auids == [
        "xcap-caps",
        "resource-lists",
        "rls-services",
        "org.openmobilealliance.pres-rules",
    ]
    assert caps.extensions == ["urn:ietf:params:xml:ns:xcap-error"]
    assert "urn:ietf:params:xml:ns:resource-lists" in caps.namespaces
    assert XCAPCapabilities.parse(caps.build()) == caps
    with pytest.raises(XMLDocumentParseError):
        XCAPCapabilities.parse(b"<xcap-caps xmlns='urn:ietf:params:xml:ns:xcap-caps'/>")


def test_xcap_diff_rfc5874_example():
    diff = XCAPDiff.parse(example("rfc5874-xcap-diff.xml"))
    assert diff.xcap_root == "http://xcap.example.com/root/"
    first, second, third = diff.documents
    assert (first.previous_etag, first.new_etag, first.body_not_changed) == ("6", "7", True)
    assert second.patched and not second.body_not_changed
    assert third.new_etag is None and third.previous_etag == "xyz"
    assert [e.exists for e in diff.elements] == [False]
    assert diff.attributes[0].value == "friends"
    again = XCAPDiff.parse(diff.build())
    assert again.documents[0] == first and again.documents[2] == third
    assert again.elements == diff.elements and again.attributes == diff.attributes
    with pytest.raises(XMLDocumentParseError, match="xcap-root"):
        XCAPDiff.parse(b"<xcap-diff xmlns='urn:ietf:params:xml:ns:xcap-diff'/>")


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=2048), st.sampled_from(["image/png", "image/gif", None]), st.text())
def test_pres_content_round_trip(data, mime_type, description):
    description = "".join(c for c in description if c.isprintable() and c.strip()) or None
    content = PresContent(data, mime_type, description)
    assert PresContent.parse(content.build()) == content


def test_pres_content_bad_data():
    with pytest.raises(XMLDocumentParseError, match="base64"):
        PresContent.parse(
            b"<content xmlns='urn:oma:xml:prs:pres-content'><data>!!</data></content>"
        )


def test_pidf_offline_status():
    document = PIDFDocument(entity="sip:alice@example.com")
    document.set_person("offline", "away", "Back on Monday")
    again = PIDFDocument.parse(document.build())
    assert again.entity == "sip:alice@example.com"
    assert (again.activities(), again.note()) == (["away"], "Back on Monday")
    again.set_person("offline", "surfing", None)
    third = PIDFDocument.parse(again.build())
    assert (third.activities(), third.note()) == (["surfing"], None)
    with pytest.raises(XMLDocumentParseError, match="entity"):
        PIDFDocument.parse(b"<presence xmlns='urn:ietf:params:xml:ns:pidf'/>")


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_raises_only_the_parse_error(data):
    for kind in (ResourceListsDocument, RLSServicesDocument, PresRulesDocument, PIDFDocument):
        try:
            kind.parse(data)
        except XMLDocumentParseError:
            pass
    for model in (XCAPCapabilities, XCAPDiff, PresContent):
        try:
            model.parse(data)
        except XMLDocumentParseError:
            pass
