"""The XCAPManager (spec: XCAPManager): keeps an account's XCAP documents, applies the
journal's operations to them and tells the application what they hold.

States: stopped -> initializing (XCAP root from the settings or DNS, xcap-caps) ->
fetching (GET every document with If-None-Match) -> updating (apply the journal to
the documents, PUT/DELETE each changed one with If-Match / If-None-Match: *) -> insync;
stop() goes through stopping to stopped. A 412 while updating sends it back to
fetching with every operation of the journal to be applied again; any other failure
is retried after a back-off in the same state. Remote changes are learnt from the
xcap-diff subscription or, while there is none, by fetching every ``poll_interval``
seconds (120).

Runs on the SIP thread: its methods may be called from any thread and hand their work
over. The cache and journal are written by a worker thread
(:class:`~sipsimple.xcap.cache.XCAPCache`), so queued operations survive a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from sipsimple.account.registration import Backoff
from sipsimple.configuration.settings import SIPSimpleSettings
from sipsimple.core import (
    SIPURI,
    ContactHeader,
    Engine,
    FromHeader,
    RouteHeader,
    Subscription,
    ToHeader,
)
from sipsimple.lookup import DNSLookup, DNSLookupError
from sipsimple.notification import Notification, NotificationCenter, NotificationData
from sipsimple.payloads.resourcelists import ResourceListsDocument
from sipsimple.payloads.xcapcaps import XCAPCapabilities
from sipsimple.payloads.xcapdiff import XCAPDiff
from sipsimple.payloads.xmldoc import XMLDocumentParseError
from sipsimple.threading import call_in_sip_thread, is_sip_thread, sip_loop
from sipsimple.xcap.cache import XCAPCache
from sipsimple.xcap.client import (
    XCAPClient,
    XCAPConnectionError,
    XCAPError,
    XCAPNotFound,
    XCAPPreconditionFailed,
    document_url,
)
from sipsimple.xcap.documents import (
    Application,
    Operation,
    StoredDocument,
    Workspace,
    choose_applications,
)
from sipsimple.xcap.model import (
    ICON_MIME_TYPES,
    Contact,
    DialoginfoPolicy,
    Icon,
    OfflineStatus,
    PresencePolicy,
)

if TYPE_CHECKING:
    from sipsimple.account import Account

__all__ = ["XCAPManager", "XCAPManagerError"]

log = logging.getLogger(__name__)

STATES = ("stopped", "initializing", "fetching", "updating", "insync", "stopping")
_RESTART_SETTINGS = frozenset(
    ("__id__", "xcap.xcap_root", "xcap.enabled", "auth.username", "auth.password")
)
_RESUBSCRIBE_SETTINGS = frozenset(
    ("xcap.xcap_diff", "sip.subscribe_interval", "sip.outbound_proxy")
)
_CONTACT_ATTRIBUTES = frozenset(
    (
        "name",
        "uri",
        "group",
        "subscribe_to_presence",
        "subscribe_to_dialoginfo",
        "presence_policies",
        "dialoginfo_policies",
        "attributes",
    )
)
_POLICY_ATTRIBUTES = frozenset(
    ("id", "action", "name", "validity", "sphere", "multi_identity_conditions")
)
_PRESENCE_POLICY_ATTRIBUTES = _POLICY_ATTRIBUTES | frozenset(
    (
        "provide_devices",
        "provide_persons",
        "provide_services",
        "provide_user_input",
        *PresencePolicy.boolean_transformations,
    )
)


class XCAPManagerError(RuntimeError):
    """A call in the wrong state (start before load, ...)."""


class XCAPManager:
    """One per account (``XCAPManager(account)`` gives the same one while it lives)."""

    poll_interval: ClassVar[float] = 120.0
    """Seconds between fetches while there is no xcap-diff subscription."""
    subscribe_retry_interval: ClassVar[float] = 120.0
    retry_backoff: ClassVar[tuple[float, float]] = (2.0, 60.0)
    stop_timeout: ClassVar[float] = 3.0

    _instances: ClassVar[weakref.WeakValueDictionary[str, XCAPManager]] = (
        weakref.WeakValueDictionary()
    )

    def __new__(cls, account: Account) -> XCAPManager:
        key = str(account.id)
        instance = cls._instances.get(key)
        if instance is None or instance.account is not account:
            instance = super().__new__(cls)
            cls._instances[key] = instance
        return instance

    def __init__(self, account: Account) -> None:
        if getattr(self, "account", None) is not None:
            return
        self.account = account
        self._state = "stopped"
        self._cache: XCAPCache | None = None
        self._stored: dict[str, tuple[str, StoredDocument]] = {}
        self._journal: list[Operation] = []
        self._transaction_depth = 0
        self._applications: dict[str, Application] = {}
        self._client: XCAPClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None
        self._fetched = False
        self._fetch_wanted = False
        # A fetch that stored a changed document and then failed: its retry sees 304 for
        # that document and must still reload.
        self._fetch_changed = False
        self._restart_wanted = False
        self._journal_lock: asyncio.Lock | None = None
        self._writes: set[asyncio.Task[None]] = set()
        self._subscriber: _DiffSubscriber | None = None
        self._backoff = Backoff(*self.retry_backoff)
        self._cached_data_posted = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.account.id)!r}, state={self._state!r})"

    @property
    def state(self) -> str:
        return self._state

    # -- the spec's methods

    def load(self, cache_directory: str | Path) -> None:
        """Read the cache and journal kept under ``cache_directory``/<account id>."""
        if self._state != "stopped":
            raise XCAPManagerError("load() is for a stopped XCAPManager")
        self._cache = XCAPCache(Path(cache_directory) / str(self.account.id))
        self._stored = self._cache.load_documents()
        self._journal = self._cache.load_journal()

    def start(self) -> asyncio.Task[None] | Any:
        """Start; returns a Task (on the SIP thread) or Future done once started."""
        if self._cache is None:
            raise XCAPManagerError("call load(cache_directory) before start()")
        return self._in_sip_thread(self._start)

    def stop(self) -> asyncio.Task[None] | Any:
        """Stop; returns a Task or Future done once any xcap-diff subscription ended."""
        return self._in_sip_thread(self._stop)

    def start_transaction(self) -> None:
        self._on_sip_thread(self._begin)

    def commit_transaction(self) -> None:
        self._on_sip_thread(self._commit)

    def add_group(self, group: str) -> None:
        self._queue("add_group", group=_text(group, "group"))

    def rename_group(self, old_name: str, new_name: str) -> None:
        self._queue(
            "rename_group",
            old_name=_text(old_name, "old_name"),
            new_name=_text(new_name, "new_name"),
        )

    def remove_group(self, group: str) -> None:
        self._queue("remove_group", group=_text(group, "group"))

    def add_contact(self, contact: Contact) -> None:
        self._queue("add_contact", contact=_checked(contact, Contact))

    def update_contact(self, contact: Contact, **attributes: Any) -> None:
        _check_attributes(attributes, _CONTACT_ATTRIBUTES)
        self._queue("update_contact", contact=_checked(contact, Contact), attributes=attributes)

    def remove_contact(self, contact: Contact) -> None:
        self._queue("remove_contact", contact=_checked(contact, Contact))

    def add_presence_policy(self, policy: PresencePolicy) -> None:
        self._queue("add_presence_policy", policy=_checked(policy, PresencePolicy))

    def update_presence_policy(self, policy: PresencePolicy, **attributes: Any) -> None:
        _check_attributes(attributes, _PRESENCE_POLICY_ATTRIBUTES)
        self._queue(
            "update_presence_policy",
            policy=_checked(policy, PresencePolicy),
            attributes=attributes,
        )

    def remove_presence_policy(self, policy: PresencePolicy) -> None:
        self._queue("remove_presence_policy", policy=_checked(policy, PresencePolicy))

    def add_dialoginfo_policy(self, policy: DialoginfoPolicy) -> None:
        self._queue("add_dialoginfo_policy", policy=_checked(policy, DialoginfoPolicy))

    def update_dialoginfo_policy(self, policy: DialoginfoPolicy, **attributes: Any) -> None:
        _check_attributes(attributes, _POLICY_ATTRIBUTES)
        self._queue(
            "update_dialoginfo_policy",
            policy=_checked(policy, DialoginfoPolicy),
            attributes=attributes,
        )

    def remove_dialoginfo_policy(self, policy: DialoginfoPolicy) -> None:
        self._queue("remove_dialoginfo_policy", policy=_checked(policy, DialoginfoPolicy))

    def set_status_icon(self, icon: Icon | None) -> None:
        if icon is not None:
            _checked(icon, Icon)
            if icon.mime_type not in ICON_MIME_TYPES:
                raise ValueError(f"icon mime_type must be one of {', '.join(ICON_MIME_TYPES)}")
        self._queue("set_status_icon", icon=icon)

    def set_offline_status(self, status: OfflineStatus | None) -> None:
        if status is not None:
            _checked(status, OfflineStatus)
        self._queue("set_offline_status", status=status)

    # -- threads

    def _in_sip_thread(self, coroutine_function: Any) -> Any:
        if is_sip_thread():
            return sip_loop().create_task(coroutine_function())
        return asyncio.run_coroutine_threadsafe(coroutine_function(), sip_loop())

    def _on_sip_thread(self, function: Any, *args: Any) -> None:
        if is_sip_thread():
            function(*args)
        else:
            call_in_sip_thread(function, *args)

    # -- journal

    def _queue(self, name: str, **args: Any) -> None:
        self._on_sip_thread(self._append, Operation(name, args))

    def _append(self, operation: Operation) -> None:
        self._journal.append(operation)
        self._save_journal_soon()
        self._wake()

    def _begin(self) -> None:
        self._transaction_depth += 1

    def _commit(self) -> None:
        if self._transaction_depth > 0:
            self._transaction_depth -= 1
            self._wake()

    def _save_journal_soon(self) -> None:
        if self._cache is None:
            return
        operations = [op for op in self._journal if op.name != "normalize"]
        task = asyncio.get_running_loop().create_task(
            self._write(self._cache.save_journal, operations)
        )
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, function: Any, *args: Any) -> None:
        """Run a cache write in a worker, one at a time and in order."""
        if self._journal_lock is None:
            self._journal_lock = asyncio.Lock()
        async with self._journal_lock:
            try:
                await asyncio.to_thread(function, *args)
            except OSError as error:
                log.error("%r: cannot write the XCAP cache: %s", self, error)

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    # -- start and stop

    async def _start(self) -> None:
        if self._state != "stopped":
            return
        center = NotificationCenter()
        self._post("XCAPManagerWillStart")
        self._wakeup = asyncio.Event()
        self._fetched = False
        self._backoff = Backoff(*self.retry_backoff)
        self._cached_data_posted = False
        center.add_observer(
            self._settings_changed, name="CFGSettingsObjectDidChange", sender=self.account
        )
        self._set_state("initializing")
        self._task = asyncio.get_running_loop().create_task(self._run())
        self._post("XCAPManagerDidStart")

    async def _stop(self) -> None:
        if self._state in ("stopped", "stopping"):
            return
        self._post("XCAPManagerWillEnd")
        self._set_state("stopping")
        NotificationCenter().discard_observer(
            self._settings_changed, name="CFGSettingsObjectDidChange", sender=self.account
        )
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._disconnect()
        if self._journal_lock is not None:
            async with self._journal_lock:
                pass
        self._set_state("stopped")
        self._post("XCAPManagerDidEnd")

    async def _disconnect(self) -> None:
        subscriber, self._subscriber = self._subscriber, None
        if subscriber is not None:
            await subscriber.stop(self.stop_timeout)
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    def _settings_changed(self, notification: Notification) -> None:
        modified = set(notification.data.modified)
        if modified & _RESTART_SETTINGS:
            self._restart_wanted = True
            self._wake()
        elif modified & _RESUBSCRIBE_SETTINGS and self._subscriber is not None:
            self._subscriber.restart(self._subscription_wanted())

    # -- the states

    async def _run(self) -> None:
        while True:
            if self._restart_wanted:
                self._restart_wanted = False
                self._fetched = False  # maybe another server: its data is news
                await self._disconnect()
                self._set_state("initializing")
            try:
                if self._state == "initializing":
                    await self._initialize()
                elif self._state == "fetching":
                    await self._fetch()
                elif self._state == "updating":
                    await self._update()
                else:
                    await self._wait_in_sync()
                    continue
                self._backoff.reset()
            except Exception as e:
                delay = self._backoff.next()
                expected = (XCAPConnectionError, XCAPError, DNSLookupError, XMLDocumentParseError)
                log.log(
                    logging.INFO if isinstance(e, expected) else logging.ERROR,
                    "%r: %s failed (%r): again in %.1f s",
                    self,
                    self._state,
                    e,
                    delay,
                    exc_info=not isinstance(e, expected),
                )
                if self._state == "initializing":
                    self._post_cached_data()
                await self._sleep(delay)

    async def _sleep(self, delay: float) -> None:
        assert self._wakeup is not None
        self._wakeup.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._wakeup.wait()

    async def _initialize(self) -> None:
        account = self.account
        root = account.xcap.xcap_root
        if root is None:
            roots = await DNSLookup().lookup_xcap_server(account.uri)  # type: ignore[misc]
            root = roots[0]
        if self._client is not None:
            await self._client.close()
        self._client = XCAPClient(
            str(root),
            _xui(account),
            account.auth.username or account.id.username,
            account.auth.password,
        )
        response = await self._client.get("xcap-caps", global_tree=True)
        capabilities = XCAPCapabilities.parse(response.content or b"")
        self._applications = choose_applications(capabilities.auids)
        chosen = self._applications
        self._stored = {
            key: value
            for key, value in self._stored.items()
            if key in chosen and chosen[key].auid == value[0]
        }
        self._post(
            "XCAPManagerDidDiscoverServerCapabilities",
            contactlist_supported="resource_lists" in chosen and "rls_services" in chosen,
            presence_policies_supported="pres_rules" in chosen,
            dialoginfo_policies_supported="dialog_rules" in chosen,
            status_icon_supported="status_icon" in chosen,
            offline_status_supported="offline_status" in chosen,
        )
        if not account.xcap.discovered:
            account.xcap.discovered = True
            with contextlib.suppress(Exception):
                account.save()
        self._subscriber = _DiffSubscriber(self)
        self._subscriber.restart(self._subscription_wanted())
        self._set_state("fetching")

    def _subscription_wanted(self) -> bool:
        return bool(self.account.xcap.xcap_diff) and Engine().is_running

    async def _fetch(self) -> None:
        assert self._client is not None
        self._fetch_wanted = False
        for key, application in self._applications.items():
            _, stored = self._stored.get(key, (application.auid, StoredDocument()))
            etag = stored.etag if stored.content is not None else None
            try:
                response = await self._client.get(application.auid, etag, application.filename)
            except XCAPNotFound:
                if stored.content is not None or stored.etag is not None:
                    self._fetch_changed = True
                self._stored[key] = (application.auid, StoredDocument())
                continue
            if response.not_modified and stored.content is not None:
                continue
            self._fetch_changed = True
            self._stored[key] = (
                application.auid,
                StoredDocument(response.content, response.etag, response.location),
            )
        changed = self._fetch_changed
        if changed:
            await self._save_documents()
            self._fetch_changed = False
        first, self._fetched = not self._fetched, True
        if not changed and not first:
            self._set_state("updating" if self._journal_ready() else "insync")
            return
        if not self._journal or self._journal[0].name != "normalize":
            self._journal.insert(0, Operation("normalize"))
        self._set_state("updating")

    async def _update(self) -> None:
        assert self._client is not None
        operations = (
            list(self._journal)
            if self._transaction_depth == 0
            else [op for op in self._journal if op.name == "normalize"]
        )
        # Applying a long journal to big documents costs CPU: a worker does it, on
        # copies, and the operations are marked here.
        changes = await asyncio.to_thread(self._apply, self._workspace(), operations)
        for operation in operations:
            operation.applied = True
        try:
            for key, content in changes.items():
                await self._push(self._applications[key], content)
        except XCAPPreconditionFailed as error:
            log.info("%r: %s changed meanwhile: fetching it again", self, error.url)
            for operation in self._journal:
                operation.applied = False
            self._set_state("fetching")
            return
        except BaseException:
            for operation in self._journal:
                operation.applied = False
            raise
        self._journal = [op for op in self._journal if not op.applied]
        if operations:
            self._save_journal_soon()
        data = await asyncio.to_thread(Workspace.extract, self._workspace())
        self._post("XCAPManagerDidReloadData", **data.as_dict())
        if self._fetch_wanted:
            self._set_state("fetching")
        elif self._journal_ready():
            self._set_state("updating")
        else:
            self._set_state("insync")

    def _apply(self, workspace: Workspace, operations: list[Operation]) -> dict[str, bytes | None]:
        """The documents the operations change (worker thread)."""
        for operation in operations:
            try:
                workspace.apply(operation)
            except (TypeError, ValueError, AttributeError) as error:
                # an operation from a journal written by another version: dropped
                log.error("%r: dropping the operation %s: %s", self, operation.name, error)
        return workspace.changes()

    async def _push(self, application: Application, content: bytes | None) -> None:
        assert self._client is not None
        key = application.key
        _, stored = self._stored.get(key, (application.auid, StoredDocument()))
        if content is None:
            await self._client.delete(application.auid, stored.etag, application.filename)
            self._stored[key] = (application.auid, StoredDocument())
        else:
            response = await self._client.put(
                application.auid,
                content,
                application.content_type,
                stored.etag,
                application.filename,
            )
            if response.etag is None:  # a server that gives no ETag: read it back
                self._fetch_wanted = True
            location = response.location or stored.location
            self._stored[key] = (application.auid, StoredDocument(content, response.etag, location))
        await self._save_documents()

    async def _wait_in_sync(self) -> None:
        assert self._wakeup is not None
        self._wakeup.clear()
        if self._journal_ready():
            self._set_state("updating")
            return
        if self._fetch_wanted:
            self._set_state("fetching")
            return
        subscribed = self._subscriber is not None and self._subscriber.active
        timeout = None if subscribed else self.poll_interval
        try:
            async with asyncio.timeout(timeout):
                await self._wakeup.wait()
        except TimeoutError:
            self._fetch_wanted = True

    def _post_cached_data(self) -> None:
        """While the server cannot be reached at start, the application gets the data
        of the documents as they were last seen (once)."""
        if self._cached_data_posted or not self._stored:
            return
        self._cached_data_posted = True
        applications = choose_applications([auid for auid, _ in self._stored.values()])
        root = str(self.account.xcap.xcap_root or "http://xcap.invalid")
        xui = _xui(self.account)
        urls = {k: document_url(root, xui, a.auid, a.filename) for k, a in applications.items()}
        stored = {key: value[1] for key, value in self._stored.items()}
        workspace = Workspace(xui, applications, stored, urls)
        self._post("XCAPManagerDidReloadData", **workspace.extract().as_dict())

    def _journal_ready(self) -> bool:
        return bool(self._journal) and self._transaction_depth == 0

    def _workspace(self) -> Workspace:
        assert self._client is not None
        stored = {key: value[1] for key, value in self._stored.items()}
        urls = {
            key: self._client.document_url(app.auid, app.filename)
            for key, app in self._applications.items()
        }
        return Workspace(_xui(self.account), self._applications, stored, urls)

    async def _save_documents(self) -> None:
        if self._cache is not None:
            await self._write(self._cache.save_documents, dict(self._stored))

    # -- xcap-diff

    def document_selectors(self) -> list[str]:
        """The documents' paths below the XCAP root (what xcap-diff names them by)."""
        if self._client is None:
            return []
        root = self._client.xcap_root + "/"
        return [
            self._client.document_url(app.auid, app.filename)[len(root) :]
            for app in self._applications.values()
        ]

    def _got_diff(self, diff: XCAPDiff) -> None:
        if self._client is None:
            return
        selectors = {
            self._client.document_url(app.auid, app.filename)[
                len(self._client.xcap_root) + 1 :
            ]: key
            for key, app in self._applications.items()
        }
        for change in diff.documents:
            key = selectors.get(change.sel.lstrip("/"))
            if key is None:
                continue
            stored = self._stored.get(key, ("", StoredDocument()))[1]
            if change.new_etag != stored.etag:
                self._fetch_wanted = True
        if self._fetch_wanted:
            self._wake()

    # -- notifications

    def _set_state(self, state: str) -> None:
        previous, self._state = self._state, state
        if previous != state:
            self._post("XCAPManagerDidChangeState", prev_state=previous, state=state)

    def _post(self, name: str, **data: Any) -> None:
        NotificationCenter().post_notification(name, sender=self, data=NotificationData(**data))


class _DiffSubscriber:
    """The xcap-diff subscription (RFC 5875) of an XCAPManager; the manager polls while
    ``active`` is false, and a failed subscription is tried again after
    ``subscribe_retry_interval``."""

    attempt_timeout: ClassVar[float] = 10.0

    def __init__(self, manager: XCAPManager) -> None:
        self.manager = manager
        self._subscription: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._outcome: asyncio.Future[Notification] | None = None
        self._ended: asyncio.Event | None = None

    @property
    def active(self) -> bool:
        subscription = self._subscription
        return subscription is not None and subscription.state in ("ACCEPTED", "PENDING", "ACTIVE")

    def restart(self, wanted: bool) -> None:
        """End the subscription there is, then (if ``wanted``) keep up a new one."""
        self._task = asyncio.get_running_loop().create_task(self._restart(self._task, wanted))

    async def _restart(self, previous: asyncio.Task[None] | None, wanted: bool) -> None:
        if previous is not None:
            previous.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await previous
        await self._end(self.manager.stop_timeout)
        if wanted:
            await self._run()

    async def stop(self, timeout: float) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._end(timeout)

    async def _run(self) -> None:
        while True:
            await self._end(self.manager.stop_timeout)
            try:
                await self._subscribe()
            except (DNSLookupError, ValueError, RuntimeError) as error:
                log.info("%r: xcap-diff subscription not possible: %s", self.manager, error)
            if self.active:
                assert self._ended is not None
                await self._ended.wait()
                self.manager._fetch_wanted = True  # we may have missed changes
                self.manager._wake()
            await asyncio.sleep(self.manager.subscribe_retry_interval)

    async def _subscribe(self) -> None:
        account = self.manager.account
        engine = Engine()
        transports = [t for t in SIPSimpleSettings().sip.transport_list if t in engine.transports]
        proxy = account.sip.outbound_proxy
        if proxy is not None:
            parameters = {"transport": str(proxy.transport)} if proxy.transport else {}
            target = SIPURI(host=proxy.host, port=proxy.port, parameters=parameters)
        else:
            target = SIPURI(host=account.id.domain)
        routes = await DNSLookup().lookup_sip_proxy(target, transports)  # type: ignore[misc]
        for route in routes:
            try:
                contact = ContactHeader(account.contact[route.transport])
            except KeyError:
                continue
            outcome = await self._attempt(contact, RouteHeader(route.get_uri()))
            if outcome.name == "SIPSubscriptionDidStart":
                return
            log.info(
                "%r: xcap-diff subscription failed: %s %s: fetching every %g s instead",
                self.manager,
                outcome.data.code,
                outcome.data.reason,
                self.manager.poll_interval,
            )
            if outcome.data.code not in (408, 503):
                return

    async def _attempt(self, contact: ContactHeader, route: RouteHeader) -> Notification:
        account = self.manager.account
        subscription = Subscription(
            account.uri,
            FromHeader(account.uri, account.display_name),
            ToHeader(account.uri),
            contact,
            "xcap-diff",
            route,
            credentials=account.credentials,
            refresh=int(account.sip.subscribe_interval),
        )
        self._subscription = subscription
        self._ended = asyncio.Event()
        NotificationCenter().add_observer(self._core, sender=subscription)
        outcome = self._outcome = asyncio.get_running_loop().create_future()
        body = _diff_request_body(self.manager.document_selectors())
        try:
            subscription.subscribe(
                content_type="application/resource-lists+xml",
                body=body,
                timeout=self.attempt_timeout,
            )
            async with asyncio.timeout(self.attempt_timeout + 5):
                result = await outcome
        except TimeoutError:
            result = Notification(
                "SIPSubscriptionDidFail", subscription, NotificationData(code=408, reason="Timeout")
            )
        finally:
            self._outcome = None
        if result.name != "SIPSubscriptionDidStart":
            self._forget(subscription)
        return result

    def _core(self, notification: Notification) -> None:
        if notification.sender is not self._subscription:
            return
        name = notification.name
        if name == "SIPSubscriptionGotNotify":
            body = notification.data.body
            if body:
                try:
                    self.manager._got_diff(XCAPDiff.parse(body))
                except XMLDocumentParseError as error:
                    log.warning("%r: a bad xcap-diff NOTIFY: %s", self.manager, error)
            return
        if name in ("SIPSubscriptionDidStart", "SIPSubscriptionDidFail", "SIPSubscriptionDidEnd"):
            if self._outcome is not None and not self._outcome.done():
                self._outcome.set_result(notification)
            if name != "SIPSubscriptionDidStart" and self._ended is not None:
                self._ended.set()

    def _forget(self, subscription: Subscription) -> None:
        NotificationCenter().discard_observer(self._core, sender=subscription)
        if self._subscription is subscription:
            self._subscription = None

    async def _end(self, timeout: float) -> None:
        subscription = self._subscription
        if subscription is None:
            return
        try:
            if subscription.state not in ("NULL", "TERMINATED"):
                assert self._ended is not None
                subscription.end(timeout=timeout)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout + 1):
                        await self._ended.wait()
        finally:
            self._forget(subscription)


def _diff_request_body(selectors: list[str]) -> bytes:
    """The SUBSCRIBE body of RFC 5875 section 4: the documents, as a resource list."""
    document = ResourceListsDocument()
    documents = document.add_list("documents")
    for selector in selectors:
        document.add_entry(documents, selector)
    return document.build()


def _xui(account: Account) -> str:
    return f"sip:{account.id.username}@{account.id.domain}"


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name} must be a non-empty str, not {value!r}")
    return value


def _checked(value: Any, kind: type) -> Any:
    if not isinstance(value, kind):
        raise TypeError(f"expected a {kind.__name__}, not {type(value).__name__}")
    return value


def _check_attributes(attributes: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(attributes) - allowed)
    if unknown:
        raise TypeError(f"unknown attributes {unknown}; allowed: {sorted(allowed)}")
