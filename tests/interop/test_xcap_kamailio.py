"""The XCAPManager against Kamailio's XCAP server (xhttp + xcap_server, digest
authentication, documents in its sqlite `xcap` table).

Kamailio has no xcap-diff notifier: the SUBSCRIBE fails, so these tests also show the
fallback, fetching every ``poll_interval`` seconds (120 by default, shortened here).
The xcap-diff NOTIFY path is shown with a SIPp notifier
(tests/data/xcap/sipp-xcap-diff.xml) in front of Kamailio's XCAP server.
Run as root in a loopback-only network namespace:

    unshare -n sh -c 'ip link set lo up;
        PYTHONPATH=src python -m pytest tests/interop/test_xcap_kamailio.py -q'
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.interop.dnsmasq import Dnsmasq
from tests.interop.peers import Kamailio, Sipp
from tests.support.application import loopback_storage, running_application

from sipsimple.account import AccountManager
from sipsimple.notification import NotificationQueue
from sipsimple.payloads.presrules import PresRulesDocument
from sipsimple.payloads.resourcelists import ResourceListsDocument
from sipsimple.xcap import (
    Contact,
    DialoginfoPolicy,
    Icon,
    OfflineStatus,
    PresencePolicy,
    XCAPManager,
    XCAPManagerError,
)
from sipsimple.xcap.client import XCAPClient

pytestmark = pytest.mark.interop

USER, PASSWORD = "alice", "alice-secret"
AOR = "sip:alice@example.test"
RESOURCE_LISTS = f"/xcap-root/resource-lists/users/{AOR}/index"
PRES_RULES = f"/xcap-root/org.openmobilealliance.pres-rules/users/{AOR}/index"


@pytest.fixture
def kamailio() -> Iterator[Kamailio]:
    with Kamailio(xcap=True) as server:
        server.add_user(USER, PASSWORD)
        yield server


DATA = Path(__file__).resolve().parents[1] / "data" / "xcap"


@contextlib.asynccontextmanager
async def xcap_manager(
    kamailio: Kamailio,
    cache: Path,
    poll_interval: float = 120.0,
    start: bool = True,
    proxy_port: int | None = None,
    nameserver: str | None = None,
    xcap_root: str | None = None,
) -> AsyncIterator[tuple[XCAPManager, NotificationQueue]]:
    """A running application with alice's account and its XCAPManager (the XCAP root
    looked up in DNS when a ``nameserver`` is given)."""
    proxy = f"127.0.0.1:{proxy_port or kamailio.sip_port};transport=udp"
    xcap = {"enabled": "true"}
    if nameserver is None:
        xcap["xcap_root"] = xcap_root or kamailio.xcap_root
    account = {
        "enabled": "true",
        "auth": {"password": PASSWORD},
        "registration": {"enabled": "false"},
        "sip": {"outbound_proxy": proxy},
        "xcap": xcap,
    }
    options = {} if nameserver is None else {"nameservers": [nameserver]}
    storage = loopback_storage(
        transports=["udp"], accounts={"alice@example.test": account}, **options
    )
    async with running_application(storage):
        manager = XCAPManager(AccountManager().get_account("alice@example.test"))
        manager.poll_interval = poll_interval
        manager.subscribe_retry_interval = 600.0
        manager.retry_backoff = (0.2, 0.5)
        manager.load(cache)
        with NotificationQueue(sender=manager) as queue:
            if start:
                await manager.start()
            try:
                yield manager, queue
            finally:
                await manager.stop()


async def reloaded(queue: NotificationQueue, timeout: float = 10.0) -> Any:
    return (await queue.wait_for("XCAPManagerDidReloadData", timeout=timeout)).data


async def until(queue: NotificationQueue, check, timeout: float = 15.0) -> Any:
    """The data of the first DidReloadData for which check(data) holds."""
    async with asyncio.timeout(timeout):
        while True:
            data = await reloaded(queue, timeout)
            if check(data):
                return data


def contacts(data: Any) -> dict[str, Contact]:
    return {contact.uri: contact for contact in data.contacts}


async def test_capabilities_and_first_sync(kamailio, tmp_path):
    async with xcap_manager(kamailio, tmp_path) as (manager, queue):
        caps = (await queue.wait_for("XCAPManagerDidDiscoverServerCapabilities", timeout=10)).data
        assert caps.contactlist_supported and caps.presence_policies_supported
        assert caps.status_icon_supported and caps.offline_status_supported
        assert not caps.dialoginfo_policies_supported  # Kamailio has no dialog-rules
        data = await reloaded(queue)
        assert [p.id for p in data.presence_policies] == [
            "wp_prs_allow_own",
            "wp_prs_grantedcontacts",
            "wp_prs_blockedcontacts",
        ]
        assert data.contacts == [] and data.groups == []
        assert data.status_icon is None and data.offline_status is None
        stored = kamailio.xcap_documents()
        assert (
            ResourceListsDocument.parse(stored[RESOURCE_LISTS]).find_list("oma_buddylist")
            is not None
        )
        rules = PresRulesDocument.parse(stored[PRES_RULES])
        assert rules.identity_ones(rules.find_rule("wp_prs_allow_own")) == [AOR]
        states = []
        while True:
            notification = await queue.wait_for("XCAPManagerDidChangeState", timeout=5)
            states.append(notification.data.state)
            if notification.data.state == "insync":
                break
        assert states == ["initializing", "fetching", "updating", "insync"]
        assert manager.account.xcap.discovered
    for name in (
        "XCAPManagerWillStart",
        "XCAPManagerDidStart",
        "XCAPManagerWillEnd",
        "XCAPManagerDidEnd",
    ):
        assert (await queue.wait_for(name, timeout=1)).data.timestamp is not None


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


async def test_contacts_groups_policies_icon_and_offline_status(kamailio, tmp_path):
    async with xcap_manager(kamailio, tmp_path) as (manager, queue):
        await reloaded(queue)
        bob = Contact("Bob", "sip:bob@example.test", "Friends", note="met at IETF")
        bob.presence_policies = [PresencePolicy("wp_prs_grantedcontacts", "allow")]
        manager.start_transaction()
        manager.add_group("Work")
        manager.add_contact(bob)
        manager.commit_transaction()
        data = await until(queue, lambda d: bob.uri in contacts(d))
        assert data.groups == ["Work", "Friends"]
        got = contacts(data)[bob.uri]
        assert (got.name, got.group, got.attributes) == ("Bob", "Friends", {"note": "met at IETF"})
        assert [p.id for p in got.presence_policies] == ["wp_prs_grantedcontacts"]
        assert got.subscribe_to_presence and got.subscribe_to_dialoginfo
        services = {s.uri: s.entries for s in data.services}
        assert services["sip:alice+presence@example.test"] == [bob.uri]
        lists = ResourceListsDocument.parse(kamailio.xcap_documents()[RESOURCE_LISTS])
        granted = lists.find_list("oma_grantedcontacts")
        assert lists.find_entry(granted, bob.uri) is not None

        manager.update_contact(bob, name="Robert", group="Work", subscribe_to_dialoginfo=False)
        data = await until(queue, lambda d: contacts(d)[bob.uri].name == "Robert")
        got = contacts(data)[bob.uri]
        assert got.group == "Work" and not got.subscribe_to_dialoginfo
        assert [p.id for p in got.presence_policies] == ["wp_prs_grantedcontacts"]

        family = PresencePolicy(None, "allow", name="family")
        family.provide_mood = True
        manager.add_presence_policy(family)
        data = await until(queue, lambda d: any(p.name == "family" for p in d.presence_policies))
        (stored,) = [p for p in data.presence_policies if p.name == "family"]
        assert stored.provide_mood is True and stored.id
        manager.update_presence_policy(stored, action="block")
        await until(
            queue,
            lambda d: [p.action for p in d.presence_policies if p.id == stored.id] == ["block"],
        )
        manager.remove_presence_policy(stored)
        await until(queue, lambda d: all(p.id != stored.id for p in d.presence_policies))

        manager.rename_group("Work", "Office")
        manager.set_status_icon(Icon(PNG, "image/png", "me"))
        manager.set_offline_status(OfflineStatus("away", "back on Monday"))
        manager.add_dialoginfo_policy(DialoginfoPolicy(None, "allow"))  # not supported: no-op
        data = await until(
            queue, lambda d: d.status_icon is not None and d.offline_status is not None
        )
        assert "Office" in data.groups and contacts(data)[bob.uri].group == "Office"
        assert (data.status_icon.data, data.status_icon.mime_type) == (PNG, "image/png")
        assert data.status_icon.location.startswith(kamailio.xcap_root)
        assert data.offline_status == OfflineStatus("away", "back on Monday")
        assert data.dialoginfo_policies == []

        manager.remove_contact(bob)
        manager.remove_group("Office")
        manager.set_status_icon(None)
        manager.set_offline_status(None)
        data = await until(
            queue, lambda d: d.status_icon is None and d.offline_status is None and not d.contacts
        )
        assert "Office" not in data.groups
        documents = kamailio.xcap_documents()
        assert not any("pres-content" in uri or "pidf-manipulation" in uri for uri in documents)
        lists = ResourceListsDocument.parse(documents[RESOURCE_LISTS])
        assert all(entry.get("uri") != bob.uri for entry, _ in lists.iter_entries())


async def second_client_adds(kamailio: Kamailio, uri: str, group: str) -> None:
    """Another client of the same user adds a contact to the resource-lists document."""
    client = XCAPClient(kamailio.xcap_root, AOR, USER, PASSWORD)
    try:
        response = await client.get("resource-lists")
        lists = ResourceListsDocument.parse(response.content)
        element = lists.add_list(f"other-{group}", group, parent=lists.find_list("oma_buddylist"))
        lists.add_entry(element, uri, "added elsewhere")
        await client.put("resource-lists", lists.build(), lists.content_type, response.etag)
    finally:
        await client.close()


async def test_remote_change_is_fetched_by_polling_without_xcap_diff(kamailio, tmp_path):
    async with xcap_manager(kamailio, tmp_path, poll_interval=1.0) as (manager, queue):
        await reloaded(queue)
        await second_client_adds(kamailio, "sip:carol@example.test", "Remote")
        data = await until(queue, lambda d: "sip:carol@example.test" in contacts(d), timeout=10)
        assert contacts(data)["sip:carol@example.test"].group == "Remote"
        assert "Remote" in data.groups
        # Kamailio refused the xcap-diff SUBSCRIBE: the reload came from polling
        assert manager._subscriber is not None and not manager._subscriber.active


class FailingHalfway:
    """An HTTP pass-through in front of Kamailio's XCAP server that, once armed, answers
    500 to the first GET of ``then`` after a GET of ``first`` returned a new version: a
    server failing halfway through a fetch that has already stored a changed document."""

    def __init__(self, kamailio: Kamailio, first: str, then: str) -> None:
        self.upstream = kamailio.xcap_root.split("//")[1].split("/")[0].split(":")
        self.first, self.then = first.encode(), then.encode()
        self.armed = self.failing = self.failed = False

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/xcap-root"

    async def __aexit__(self, *exc_info: object) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                body = await reader.readexactly(_content_length(head))
                method, path = head.split(b" ", 2)[:2]
                if method == b"GET" and self.failing and self.then in path:
                    self.failing, self.failed = False, True
                    writer.write(b"HTTP/1.1 500 Injected\r\nContent-Length: 0\r\n\r\n")
                    continue
                response = await self._forward(head + body)
                if method == b"GET" and self.armed and self.first in path:
                    self.failing = response.startswith(b"HTTP/1.1 200")
                writer.write(response)
        writer.close()

    async def _forward(self, request: bytes) -> bytes:
        reader, writer = await asyncio.open_connection(self.upstream[0], int(self.upstream[1]))
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        body = await reader.readexactly(_content_length(head))
        writer.close()
        return head + body


def _content_length(head: bytes) -> int:
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


async def test_a_fetch_failing_halfway_still_reloads_the_document_it_got(kamailio, tmp_path):
    proxy = FailingHalfway(kamailio, "/resource-lists/", "/rls-services/")
    async with (
        proxy as root,
        xcap_manager(kamailio, tmp_path, poll_interval=0.5, xcap_root=root) as (_, queue),
    ):
        await reloaded(queue)
        proxy.armed = True
        await second_client_adds(kamailio, "sip:carol@example.test", "Remote")
        data = await until(queue, lambda d: "sip:carol@example.test" in contacts(d), timeout=10)
        assert proxy.failed  # the fetch that got the new resource-lists failed after it
        assert contacts(data)["sip:carol@example.test"].group == "Remote"


async def test_a_stale_etag_is_refetched_and_the_journal_applied_again(kamailio, tmp_path):
    async with xcap_manager(kamailio, tmp_path) as (manager, queue):
        await reloaded(queue)
        await second_client_adds(kamailio, "sip:carol@example.test", "Remote")
        manager.add_contact(Contact("Dave", "sip:dave@example.test", "Friends"))
        data = await until(queue, lambda d: "sip:dave@example.test" in contacts(d))
        assert "sip:carol@example.test" in contacts(data)  # the remote change is kept
        states = [n.data.state for n in queue._items if n.name == "XCAPManagerDidChangeState"]
        assert states[-4:] == ["updating", "fetching", "updating", "insync"]
        lists = ResourceListsDocument.parse(kamailio.xcap_documents()[RESOURCE_LISTS])
        uris = {entry.get("uri") for entry, _ in lists.iter_entries()}
        assert {"sip:carol@example.test", "sip:dave@example.test"} <= uris


async def test_operations_wait_in_the_journal_while_the_server_is_down(kamailio, tmp_path):
    async with xcap_manager(kamailio, tmp_path) as (manager, queue):
        await reloaded(queue)
        await asyncio.to_thread(kamailio.halt)
        manager.add_contact(Contact("Erin", "sip:erin@example.test", "Friends"))
        await asyncio.sleep(1.5)
        assert manager.state == "updating"
        journal = (tmp_path / "alice@example.test" / "journal.json").read_text()
        assert "sip:erin@example.test" in journal
        await asyncio.to_thread(kamailio.start)
        await until(queue, lambda d: "sip:erin@example.test" in contacts(d))
        await asyncio.sleep(0.2)
        journal = (tmp_path / "alice@example.test" / "journal.json").read_text()
        assert "sip:erin@example.test" not in journal


async def test_cache_and_journal_survive_a_restart(kamailio, tmp_path):
    async with xcap_manager(kamailio, tmp_path) as (manager, queue):
        await reloaded(queue)
        await asyncio.to_thread(kamailio.halt)
        manager.add_contact(Contact("Frank", "sip:frank@example.test", "Friends"))
        await asyncio.sleep(0.5)
    del manager
    async with xcap_manager(kamailio, tmp_path) as (_, queue):
        # the server is down: the data comes from the cache
        data = await reloaded(queue)
        assert [p.id for p in data.presence_policies][:1] == ["wp_prs_allow_own"]
        assert "sip:frank@example.test" not in contacts(data)
        await asyncio.to_thread(kamailio.start)
        data = await until(queue, lambda d: "sip:frank@example.test" in contacts(d))
        assert contacts(data)["sip:frank@example.test"].group == "Friends"


async def test_an_xcap_diff_notify_makes_it_fetch(kamailio, tmp_path):
    notifier = Sipp(
        DATA / "sipp-xcap-diff.xml", calls=1, timeout=30, keys={"xcap_root": kamailio.xcap_root}
    )
    await asyncio.to_thread(notifier.start)
    try:
        async with xcap_manager(kamailio, tmp_path, proxy_port=notifier.port) as (manager, queue):
            await reloaded(queue)
            async with asyncio.timeout(5):
                while not (manager._subscriber is not None and manager._subscriber.active):
                    await asyncio.sleep(0.05)
            await second_client_adds(kamailio, "sip:grace@example.test", "Remote")
            # no polling while subscribed: only the NOTIFY 3 s after the first one says
            # that resource-lists changed
            data = await until(queue, lambda d: "sip:grace@example.test" in contacts(d), timeout=10)
            assert contacts(data)["sip:grace@example.test"].group == "Remote"
            # xcap_diff turned off: the manager unsubscribes (what SIPp waits for last)
            manager.account.xcap.xcap_diff = False
            await asyncio.wrap_future(manager.account.save())
            result = await asyncio.to_thread(notifier.wait, 10)
            assert result.ok, result.describe()
            assert not manager._subscriber.active
    finally:
        notifier.stop()


async def test_the_xcap_root_is_looked_up_in_dns(kamailio, tmp_path):
    server = Dnsmasq([f"--txt-record=xcap.example.test,{kamailio.xcap_root}"])
    await asyncio.to_thread(server.start)
    try:
        async with xcap_manager(kamailio, tmp_path, nameserver=server.nameserver) as (_, queue):
            await queue.wait_for("XCAPManagerDidDiscoverServerCapabilities", timeout=10)
            data = await reloaded(queue)
            assert data.presence_policies
    finally:
        server.stop()


async def test_the_api_checks_its_arguments_and_is_one_per_account(kamailio, tmp_path):
    async with xcap_manager(kamailio, tmp_path, start=False) as (manager, queue):
        account = manager.account
        assert XCAPManager(account) is manager
        with pytest.raises(TypeError):
            manager.add_contact("sip:bob@example.test")
        with pytest.raises(TypeError, match="unknown attributes"):
            manager.update_contact(Contact(None, "sip:bob@example.test", None), colour="red")
        with pytest.raises(TypeError):
            manager.add_group("")
        with pytest.raises(TypeError):
            manager.add_presence_policy(DialoginfoPolicy(None, "allow"))
        await manager.start()
        with pytest.raises(XCAPManagerError):
            manager.load(tmp_path)
        await reloaded(queue)
        # a new XCAP root in the settings starts over from initializing
        account.xcap.xcap_root = kamailio.xcap_root + "/"
        await asyncio.wrap_future(account.save())
        await queue.wait_for(
            "XCAPManagerDidChangeState",
            lambda n: n.data.prev_state == "insync" and n.data.state == "initializing",
            timeout=10,
        )
        await reloaded(queue)


async def test_an_operation_it_cannot_apply_is_dropped(kamailio, tmp_path):
    journal = tmp_path / "alice@example.test" / "journal.json"
    journal.parent.mkdir()
    journal.write_text(
        '{"version": 1, "operations": ['
        '{"name": "format_disk", "args": {"$": "dict", "v": {}}, "token": "t1"},'
        ' {"name": "add_group", "args": {"$": "dict", "v": {"group": "Kept"}}, "token": "t2"}]}'
    )
    async with xcap_manager(kamailio, tmp_path) as (_, queue):
        data = await reloaded(queue)
        assert data.groups == ["Kept"]
        await asyncio.sleep(0.2)
        assert "format_disk" not in journal.read_text()
