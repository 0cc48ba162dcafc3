"""The journal's operations on the XCAP documents (sipsimple.xcap.documents), the data
read back from them, the model objects, and the on-disk cache and journal."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from sipsimple.util import All, Any
from sipsimple.xcap.cache import XCAPCache
from sipsimple.xcap.documents import (
    Operation,
    StoredDocument,
    Workspace,
    choose_applications,
)
from sipsimple.xcap.model import (
    CatchAllCondition,
    Class,
    Contact,
    DialoginfoPolicy,
    DomainCondition,
    DomainException,
    Icon,
    OfflineStatus,
    PresencePolicy,
    ServiceURIScheme,
    UserException,
    from_json,
    to_json,
)

ACCOUNT = "sip:alice@example.com"
ALL_AUIDS = [
    "xcap-caps",
    "resource-lists",
    "rls-services",
    "org.openmobilealliance.pres-rules",
    "pres-rules",
    "org.openxcap.dialog-rules",
    "org.openmobilealliance.pres-content",
    "pidf-manipulation",
]


def urls(applications):
    return {
        key: f"http://xcap.example.com/{app.auid}/users/{ACCOUNT}/{app.filename}"
        for key, app in applications.items()
    }


class Server:
    """The documents as a server would hold them, to run operations against."""

    def __init__(self, auids=ALL_AUIDS):
        self.applications = choose_applications(auids)
        self.stored = {key: StoredDocument() for key in self.applications}

    def workspace(self):
        return Workspace(ACCOUNT, self.applications, self.stored, urls(self.applications))

    def run(self, *operations):
        """Apply the operations and store what changed; the changes."""
        workspace = self.workspace()
        for operation in operations:
            workspace.apply(operation)
        changes = workspace.changes()
        for key, content in changes.items():
            self.stored[key] = StoredDocument(content, f"etag-{len(content or b'')}")
        return changes

    def data(self):
        return self.workspace().extract()


def op(name, **args):
    return Operation(name, args)


def test_choose_applications_prefers_oma():
    chosen = choose_applications(
        ["resource-lists", "pres-rules", "org.openmobilealliance.pres-rules"]
    )
    assert chosen["pres_rules"].auid == "org.openmobilealliance.pres-rules"
    assert set(chosen) == {"resource_lists", "pres_rules"}
    assert choose_applications(["pres-rules"])["pres_rules"].auid == "pres-rules"


def test_normalize_makes_the_oma_structure_once():
    server = Server()
    changes = server.run(op("normalize"))
    assert set(changes) == {"resource_lists", "pres_rules"}
    assert server.run(op("normalize")) == {}
    ids = [p.id for p in server.data().presence_policies]
    assert ids == ["wp_prs_allow_own", "wp_prs_grantedcontacts", "wp_prs_blockedcontacts"]


def test_contacts_and_groups():
    server = Server()
    server.run(op("normalize"))
    friend = Contact("Bob", "sip:bob@example.com", "Friends", note="met at IETF")
    friend.presence_policies = [PresencePolicy("wp_prs_grantedcontacts", "allow")]
    friend.dialoginfo_policies = [DialoginfoPolicy(None, "allow")]
    changes = server.run(op("add_group", group="Work"), op("add_contact", contact=friend))
    assert set(changes) == {"resource_lists", "rls_services", "dialog_rules"}
    data = server.data()
    assert data.groups == ["Work", "Friends"]
    (bob,) = data.contacts
    assert (bob.name, bob.uri, bob.group, bob.attributes) == (
        "Bob",
        "sip:bob@example.com",
        "Friends",
        {"note": "met at IETF"},
    )
    assert bob.subscribe_to_presence and bob.subscribe_to_dialoginfo
    assert [p.id for p in bob.presence_policies] == ["wp_prs_grantedcontacts"]
    assert [p.action for p in bob.dialoginfo_policies] == ["allow"]
    services = {s.uri: s for s in data.services}
    assert services["sip:alice+presence@example.com"].entries == ["sip:bob@example.com"]
    assert services["sip:alice+dialog@example.com"].packages == ["dialog"]
    # the same again changes nothing (what a journal replay after a 412 relies on)
    assert server.run(op("add_group", group="Work"), op("add_contact", contact=friend)) == {}

    server.run(op("rename_group", old_name="Friends", new_name="Pals"))
    assert server.data().contacts[0].group == "Pals"
    server.run(
        op(
            "update_contact",
            contact=friend,
            attributes={"uri": "sip:robert@example.com", "name": "Rob"},
        )
    )
    (rob,) = server.data().contacts
    assert (rob.uri, rob.name, rob.group) == ("sip:robert@example.com", "Rob", "Pals")
    assert [p.id for p in rob.presence_policies] == ["wp_prs_grantedcontacts"]
    assert len(rob.dialoginfo_policies) == 1

    server.run(op("remove_group", group="Pals"))
    data = server.data()
    assert data.contacts == [] and data.groups == ["Work"]
    # the dialog rule only Bob was in went with him: it would have matched everyone
    assert data.dialoginfo_policies == []
    assert [p.id for p in data.presence_policies][:1] == ["wp_prs_allow_own"]


def test_update_contact_adds_a_missing_one_and_flags_drop_references():
    server = Server()
    carol = Contact(None, "sip:carol@example.com", None)
    server.run(op("update_contact", contact=carol, attributes={"subscribe_to_dialoginfo": False}))
    (found,) = server.data().contacts
    assert found.group is None and found.subscribe_to_presence and not found.subscribe_to_dialoginfo
    server.run(op("remove_contact", contact=carol))
    assert server.data().contacts == []


def test_add_contact_keeps_an_existing_grouped_contact():
    server = Server()
    server.run(op("add_contact", contact=Contact("A", "sip:a@example.com", "G")))
    assert server.run(op("add_contact", contact=Contact("B", "sip:a@example.com", "H"))) == {}


def test_presence_policy_round_trip_and_oma_rules():
    server = Server()
    server.run(op("normalize"))
    start = datetime(2025, 1, 1, 8, tzinfo=UTC)
    policy = PresencePolicy(
        None,
        "allow",
        name="colleagues",
        validity=[(start, start + timedelta(hours=9))],
        sphere="work",
        multi_identity_conditions=[
            DomainCondition("example.com", [UserException("sip:boss@example.com")]),
            CatchAllCondition([DomainException("spam.example"), UserException("sip:x@y")]),
        ],
    )
    policy.provide_devices = [Class("mobile")]
    policy.provide_services = [ServiceURIScheme("sip")]
    policy.provide_activities = True
    policy.provide_mood = False
    policy.provide_user_input = "bare"
    policy.provide_all_attributes = False
    server.run(op("add_presence_policy", policy=policy))
    (stored,) = [p for p in server.data().presence_policies if p.name == "colleagues"]
    assert stored.id and stored.id.startswith("pres-")
    policy.id = stored.id
    assert stored == policy
    server.run(op("update_presence_policy", policy=stored, attributes={"action": "block"}))
    (blocked,) = [p for p in server.data().presence_policies if p.id == stored.id]
    assert blocked.action == "block" and blocked.provide_devices == []
    # an OMA id with multi-identity conditions gets an id of its own
    oma = PresencePolicy(
        "wp_prs_allow_own", "allow", multi_identity_conditions=[CatchAllCondition()]
    )
    server.run(op("add_presence_policy", policy=oma))
    assert len(server.data().presence_policies) == 5
    for rule_id in ("wp_prs_grantedcontacts", stored.id):
        server.run(op("remove_presence_policy", policy=PresencePolicy(rule_id, None)))
    ids = [p.id for p in server.data().presence_policies]
    assert "wp_prs_grantedcontacts" in ids and stored.id not in ids


def test_a_replayed_operation_makes_the_same_ids():
    """After a 412 cut an update short, some documents hold the operation's work and
    others do not: applying it again must not make a second policy or group."""
    server = Server()
    queued = [
        op("add_presence_policy", policy=PresencePolicy(None, "allow", name="once")),
        op("add_group", group="Once"),
    ]
    server.run(*queued)
    assert server.run(*queued) == {}
    data = server.data()
    assert [p.name for p in data.presence_policies] == ["once"]
    assert data.groups == ["Once"]
    fresh = Server()
    fresh.run(*queued)
    assert fresh.stored == server.stored


def test_contact_in_reserved_policy_is_ignored():
    server = Server()
    server.run(op("normalize"))
    dave = Contact(None, "sip:dave@example.com", "G")
    dave.presence_policies = [PresencePolicy("wp_prs_allow_own", "allow")]
    server.run(op("add_contact", contact=dave))
    assert server.data().contacts[0].presence_policies == []


def test_icon_and_offline_status():
    server = Server()
    icon = Icon(b"\x89PNG...", "image/png", "me")
    changes = server.run(
        op("set_status_icon", icon=icon),
        op("set_offline_status", status=OfflineStatus("away", "on holiday")),
    )
    assert set(changes) == {"status_icon", "offline_status"}
    data = server.data()
    assert (data.status_icon.data, data.status_icon.mime_type) == (icon.data, "image/png")
    assert data.status_icon.location.endswith("/oma_status-icon/index")
    assert data.offline_status == OfflineStatus("away", "on holiday")
    assert server.run(op("set_status_icon", icon=None), op("set_offline_status", status=None)) == {
        "status_icon": None,
        "offline_status": None,
    }
    with pytest.raises(ValueError, match="mime_type"):
        Icon(b"", "image/bmp")


def test_unsupported_and_broken_documents_are_left_alone():
    server = Server(["resource-lists"])
    server.run(op("add_contact", contact=Contact(None, "sip:e@example.com", "G")))
    contact = server.data().contacts[0]
    assert contact.presence_policies is None and contact.dialoginfo_policies is None
    server.stored["resource_lists"] = StoredDocument(b"<not xml", "e1")
    assert server.run(op("add_group", group="X")) == {}
    with pytest.raises(ValueError, match="unknown XCAP operation"):
        server.workspace().apply(op("format_disk"))


def test_check_validity():
    now = datetime(2025, 5, 1, 12, tzinfo=UTC)
    hour = timedelta(hours=1)
    policy = PresencePolicy("p", "allow", validity=[(now - hour, now + hour)], sphere="work")
    assert policy.check_validity(now)
    assert policy.check_validity(now, "work")
    assert not policy.check_validity(now, "home")
    assert not policy.check_validity(now + 2 * hour)
    assert PresencePolicy("q", "allow").check_validity(now, Any)
    with pytest.raises(TypeError):
        policy.check_validity("now")
    with pytest.raises(ValueError, match="action"):
        PresencePolicy("r", "maybe")


def test_model_json_round_trip():
    contact = Contact("Bob", "sip:bob@example.com", "G", a="1")
    policy = PresencePolicy("p", "allow", validity=[(datetime(2025, 1, 1, tzinfo=UTC),) * 2])
    contact.presence_policies = [policy]
    values = {"contact": contact, "icon": Icon(b"\x00\xff", "image/gif"), "devices": All}
    data = json.loads(json.dumps(to_json(values)))
    assert from_json(data) == values
    with pytest.raises(ValueError):
        from_json({"$": "os.system", "v": {}})
    with pytest.raises(TypeError):
        to_json(object())


def test_cache_round_trip(tmp_path):
    cache = XCAPCache(tmp_path / "alice@example.com")
    documents = {
        "resource_lists": ("resource-lists", StoredDocument(b"<x/>", '"e1"')),
        "status_icon": (
            "org.openmobilealliance.pres-content",
            StoredDocument(None, None, "http://l"),
        ),
    }
    cache.save_documents(documents)
    journal = [op("add_contact", contact=Contact("B", "sip:b@example.com", None)), op("normalize")]
    cache.save_journal(journal)
    again = XCAPCache(tmp_path / "alice@example.com")
    assert again.load_documents() == documents
    assert again.load_journal() == journal
    assert oct((tmp_path / "alice@example.com" / "journal.json").stat().st_mode & 0o777) == "0o600"
    cache.save_documents({})
    assert again.load_documents() == {}
    assert not list((tmp_path / "alice@example.com").glob("*.xml"))


def test_cache_keeps_a_corrupt_journal_aside(tmp_path):
    cache = XCAPCache(tmp_path)
    (tmp_path / "journal.json").write_text('{"version": 1, "operations": [{"name": "x"')
    assert cache.load_journal() == []
    assert (tmp_path / "journal.json.corrupt").exists()
    (tmp_path / "journal.json").write_text(
        '{"version": 1, "operations": [{"name": "x", "args": {"$": "evil"}}]}'
    )
    assert cache.load_journal() == []
