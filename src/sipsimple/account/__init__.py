"""SIP accounts: Account, BonjourAccount and the AccountManager (spec: SIP Accounts).

An :class:`Account` is both the stored settings of a SIP account (see
:mod:`sipsimple.account.settings`) and the object that acts for it: it registers
(:mod:`sipsimple.account.registration`) and subscribes to its voicemail summary
(:mod:`sipsimple.account.mwi`). The :class:`BonjourAccount` (id ``bonjour@local``)
publishes our contact with mDNS and finds neighbours (:mod:`sipsimple.account.bonjour`).

Life cycle. The :class:`AccountManager` loads the accounts when it starts and starts
each of them; a started account is *active* while its ``enabled`` flag is set (as
saved) and the Engine runs, and deactivates when either stops being true or when it
is stopped. Activation posts SIPAccountWillActivate / SIPAccountDidActivate; the
functions with flags of their own (``registration.enabled``,
``message_summary.enabled``) then run in the background and report through their
own notifications. Deactivation posts SIPAccountWillDeactivate, ends those
functions (unregistering, within a bounded time whatever the network does) and
posts SIPAccountDidDeactivate.

Threads. Everything runs on the SIP thread. Public methods may be called from any
thread: ``start()``, ``stop()`` and ``delete()`` return at once with what to wait
on (an :class:`asyncio.Task` on the SIP thread, a :class:`concurrent.futures.Future`
elsewhere). Settings may be saved from any thread: the accounts react on the SIP
thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import string
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, ClassVar

from sipsimple.account.bonjour import BonjourServiceDescription, BonjourServices
from sipsimple.account.mwi import MWISubscriber
from sipsimple.account.registration import AccountRegistrar
from sipsimple.account.settings import AccountSettings, BonjourAccountSettings
from sipsimple.configuration import ConfigurationManager
from sipsimple.configuration.datatypes import SIPAddress
from sipsimple.configuration.settings import SIPSimpleSettings
from sipsimple.core import SIPURI, Credentials, Engine
from sipsimple.notification import Notification, NotificationCenter, NotificationData
from sipsimple.threading import SIPThread, call_in_sip_thread, is_sip_thread, sip_loop, spawn

__all__ = [
    "Account",
    "AccountManager",
    "BonjourAccount",
    "BonjourServiceDescription",
    "ContactURI",
]

log = logging.getLogger(__name__)

_TRANSPORTS = ("udp", "tcp", "tls")

Awaitable = asyncio.Task[None] | concurrent.futures.Future[None]


def _post(sender: object, name: str, /, **data: Any) -> None:
    NotificationCenter().post_notification(name, sender=sender, data=NotificationData(**data))


def _on_sip_thread(function: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Run ``function(*args, **kwargs)`` on the SIP thread: now when called there (or
    when no SIP thread runs), else soon."""
    if is_sip_thread() or not SIPThread().is_running:
        function(*args, **kwargs)
        return
    try:
        call_in_sip_thread(function, *args, **kwargs)
    except RuntimeError:  # the SIP thread stopped meanwhile
        function(*args, **kwargs)


def _sip_task(coroutine_function: Callable[[], Coroutine[Any, Any, None]]) -> Awaitable:
    """Run a coroutine on the SIP thread: a Task there, a Future from elsewhere."""
    if is_sip_thread():
        task = sip_loop().create_task(coroutine_function())
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)
        return task
    return asyncio.run_coroutine_threadsafe(coroutine_function(), sip_loop())


_tasks: set[asyncio.Task[None]] = set()  # tasks nobody may be waiting for: kept alive here


def _random_user() -> str:
    return "".join(random.sample(string.ascii_lowercase, 8))


class ContactURI(SIPAddress):
    """``username@local_ip``: the address other parties reach an account at.

    Indexed by a transport (``'udp'``, ``'tcp'`` or ``'tls'``) it gives the SIPURI with
    the Engine's port for it and, but for UDP, a transport parameter. KeyError when the
    Engine is not running or does not listen on that transport.
    """

    def __getitem__(self, key: Any) -> Any:
        if not isinstance(key, str):
            return super().__getitem__(key)
        transport = key.lower()
        if transport not in _TRANSPORTS:
            raise KeyError(f"unknown transport {key!r}: use one of {', '.join(_TRANSPORTS)}")
        engine = Engine()
        if not engine.is_running:
            raise KeyError(f"no {transport} contact: the Engine is not running")
        port = getattr(engine, f"{transport}_port")
        if port is None:
            raise KeyError(f"no {transport} contact: the Engine does not listen on {transport}")
        parameters = {} if transport == "udp" else {"transport": transport}
        return SIPURI(host=self.domain, user=self.username, port=port, parameters=parameters)


class _Activation:
    """What Account and BonjourAccount share: started / active and the moves between.

    ``_reconcile()`` runs at most one task that moves the account towards what it
    should be (active while started, enabled and the Engine runs), one step at a time,
    so that quick changes (disable, enable) never overlap an unfinished deactivation.
    """

    _started: bool
    _active: bool
    _reconciler: asyncio.Task[None] | None
    enabled: bool

    def _init_activation(self) -> None:
        self._started = False
        self._active = False
        self._reconciler = None

    @property
    def active(self) -> bool:
        return self._active

    def start(self) -> Awaitable:
        """Start acting for the account (activate when enabled and the Engine runs)."""
        return _sip_task(self._start)

    def stop(self) -> Awaitable:
        """Deactivate and stop acting for the account; done once deactivated."""
        return _sip_task(self._stop)

    async def _start(self) -> None:
        if not self._started:
            self._started = True
            center = NotificationCenter()
            center.add_observer(self._observe, name="CFGSettingsObjectDidChange", sender=self)
            center.add_observer(self._observe, name="SIPEngineDidStart", sender=Engine())
            center.add_observer(self._observe, name="SIPEngineWillEnd", sender=Engine())
        await self._reconcile()

    async def _stop(self) -> None:
        if self._started:
            self._started = False
            center = NotificationCenter()
            center.discard_observer(self._observe, name="CFGSettingsObjectDidChange", sender=self)
            center.discard_observer(self._observe, name="SIPEngineDidStart", sender=Engine())
            center.discard_observer(self._observe, name="SIPEngineWillEnd", sender=Engine())
        await self._reconcile()

    def _reconcile(self) -> asyncio.Task[None]:
        task = self._reconciler
        if task is None or task.done():
            task = self._reconciler = sip_loop().create_task(self._move())
        return task

    async def _move(self) -> None:
        while True:
            wanted = self._started and self.enabled and Engine().is_running
            if wanted == self._active:
                return
            if wanted:
                _post(self, "SIPAccountWillActivate")
                self._active = True
                self._activate()
                _post(self, "SIPAccountDidActivate")
            else:
                _post(self, "SIPAccountWillDeactivate")
                self._active = False
                try:
                    await self._deactivate()
                except Exception:
                    log.exception("%r did not deactivate cleanly", self)
                _post(self, "SIPAccountDidDeactivate")

    def _observe(self, notification: Notification) -> None:
        _on_sip_thread(self._handle, notification)

    def _handle(self, notification: Notification) -> None:
        if notification.name != "CFGSettingsObjectDidChange":
            if self._started:
                self._reconcile()
            return
        modified = notification.data.modified
        if "enabled" in modified:
            self._reconcile()
        elif self._active:
            self._settings_changed(modified)

    def _activate(self) -> None:
        raise NotImplementedError

    async def _deactivate(self) -> None:
        raise NotImplementedError

    def _settings_changed(self, modified: dict[str, Any]) -> None:
        raise NotImplementedError

    def _contact_changed(self) -> None:
        """The Engine's transports changed (SIPApplication calls it): our contact with
        them. SIP thread only."""
        raise NotImplementedError


class Account(_Activation, AccountSettings):
    """A SIP account at a provider (spec: Account); ``Account(id)`` makes or finds it.

    Saved with ``enabled`` set and started by the AccountManager, it activates when the
    Engine runs: it registers when ``registration.enabled`` and subscribes to its
    message summary when ``message_summary.enabled``. Changing the settings that make
    up the registration (credentials, outbound proxy, interval, display name) and
    saving registers again.
    """

    _REGISTRATION_SETTINGS: ClassVar[frozenset[str]] = frozenset(
        (
            "__id__",
            "display_name",
            "auth.username",
            "auth.password",
            "sip.outbound_proxy",
            "sip.register_interval",
        )
    )

    _MWI_SETTINGS: ClassVar[frozenset[str]] = frozenset(
        (
            "__id__",
            "display_name",
            "auth.username",
            "auth.password",
            "sip.always_use_my_proxy",
            "sip.outbound_proxy",
            "sip.subscribe_interval",
            "message_summary.voicemail_uri",
        )
    )

    def __init__(self, id: str) -> None:
        self._init_activation()
        self._contact_user = _random_user()
        self._contact: ContactURI | None = None
        self._registrar = AccountRegistrar(self)
        self._mwi = MWISubscriber(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.id)!r})"

    @property
    def contact(self) -> ContactURI:
        local_ip = str(SIPSimpleSettings().local_ip)
        contact = self._contact
        if contact is None or contact.domain != local_ip:  # made again when local_ip changes
            contact = self._contact = ContactURI(f"{self._contact_user}@{local_ip}")
        return contact

    @property
    def credentials(self) -> Credentials:
        return Credentials(self.auth.username or self.id.username, self.auth.password)

    @property
    def uri(self) -> SIPURI:
        return SIPURI(host=self.id.domain, user=self.id.username)

    @property
    def registered(self) -> bool:
        return self._registrar.registered

    def reregister(self) -> None:
        """Register again now (when active and registration is enabled)."""
        _on_sip_thread(self._reregister)

    def _reregister(self) -> None:
        if self._active and self.registration.enabled:
            self._registrar.reregister()

    def _contact_changed(self) -> None:
        if not self._active:
            return
        if self.registration.enabled:
            self._registrar.reregister()
        if self.message_summary.enabled:
            self._mwi.resubscribe()

    def delete(self) -> Awaitable | concurrent.futures.Future[None]:  # type: ignore[override]
        """Deactivate (unregistering), then remove the account from the configuration
        (SIPAccountManagerDidRemoveAccount follows)."""
        if not SIPThread().is_running:
            return AccountSettings.delete(self)
        return _sip_task(self._delete)

    async def _delete(self) -> None:
        await self._stop()
        await asyncio.wrap_future(AccountSettings.delete(self))

    def _activate(self) -> None:
        if self.registration.enabled:
            self._registrar.activate()
        if self.message_summary.enabled:
            self._mwi.activate()

    async def _deactivate(self) -> None:
        await asyncio.gather(self._mwi.deactivate(), self._registrar.deactivate())

    def _settings_changed(self, modified: dict[str, Any]) -> None:
        if "registration.enabled" in modified:
            if self.registration.enabled:
                self._registrar.activate()
            else:
                spawn(self._registrar.deactivate())
        elif self.registration.enabled and self._REGISTRATION_SETTINGS.intersection(modified):
            self._registrar.reregister()
        if "message_summary.enabled" in modified:
            if self.message_summary.enabled:
                self._mwi.activate()
            else:
                spawn(self._mwi.deactivate())
        elif self.message_summary.enabled and self._MWI_SETTINGS.intersection(modified):
            self._mwi.resubscribe()


class BonjourAccount(_Activation, BonjourAccountSettings):
    """The peer-to-peer account (spec: BonjourAccount), id ``bonjour@local``; a singleton.

    While active it publishes its contact with mDNS on the interface of
    SIPSimpleSettings.local_ip and reports the neighbours it finds there.
    """

    def __init__(self) -> None:
        self._init_activation()
        self._contact_user = _random_user()
        self._contact: ContactURI | None = None
        self._services = BonjourServices(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    @property
    def contact(self) -> ContactURI:
        local_ip = str(SIPSimpleSettings().local_ip)
        contact = self._contact
        if contact is None or contact.domain != local_ip:  # made again when local_ip changes
            contact = self._contact = ContactURI(f"{self._contact_user}@{local_ip}")
        return contact

    @property
    def credentials(self) -> Credentials:
        return Credentials(self._contact_user, "")

    @property
    def uri(self) -> SIPURI:
        return SIPURI(host=SIPSimpleSettings().local_ip, user=self._contact_user)

    @property
    def registered(self) -> bool:
        return False

    @property
    def neighbours(self) -> dict[BonjourServiceDescription, Any]:
        """The neighbours found so far: service description -> contact FrozenSIPURI."""
        return self._services.neighbours

    def _activate(self) -> None:
        self._services.activate()

    async def _deactivate(self) -> None:
        await self._services.deactivate()

    def _settings_changed(self, modified: dict[str, Any]) -> None:
        if "display_name" in modified:
            self._services.update_registrations()

    def _contact_changed(self) -> None:
        if self._active:
            spawn(self._services.restart())


AnyAccount = Account | BonjourAccount


class AccountManager:
    """Loads and keeps track of the accounts (spec: AccountManager); a singleton.

    ``default_account`` is the account used for outgoing sessions; it is stored in
    SIPSimpleSettings.default_account and must be an enabled account (or None).
    """

    _instance: ClassVar[AccountManager | None] = None
    _instance_lock: ClassVar[threading.Lock] = threading.Lock()

    _lock: threading.RLock
    _accounts: dict[str, AnyAccount]
    _started: bool
    _loading: bool

    def __new__(cls) -> AccountManager:
        with cls._instance_lock:
            if cls._instance is None:
                instance = super().__new__(cls)
                instance._lock = threading.RLock()
                instance._accounts = {}
                instance._started = instance._loading = False
                cls._instance = instance
            return cls._instance

    # -- life cycle

    def start(self) -> Awaitable:
        """Load the accounts from the configuration and start them (SIPAccountManager-
        DidAddAccount for each); they activate when the Engine runs."""
        if not ConfigurationManager().started:
            raise RuntimeError("the AccountManager needs a started ConfigurationManager")
        return _sip_task(self._start)

    def stop(self) -> Awaitable:
        """Deactivate every account; done once all of them are (each within its bounds)."""
        return _sip_task(self._stop)

    async def _start(self) -> None:
        if self._started:
            return
        self._started = self._loading = True
        with self._lock:
            self._accounts = {}
        center = NotificationCenter()
        for name in ("CFGSettingsObjectWasActivated", "CFGSettingsObjectWasCreated"):
            center.add_observer(self._observe, name=name)
        center.add_observer(self._observe, name="CFGSettingsObjectWasDeleted")
        center.add_observer(self._observe, name="CFGSettingsObjectDidChange")
        self._add(BonjourAccount())
        for name in ConfigurationManager().get_names([AccountSettings.__group__]):
            if name == BonjourAccountSettings.__id__:
                continue
            try:
                account = Account(name)
            except (ValueError, TypeError) as e:
                log.warning("cannot load account %r: %s", name, e)
                continue
            self._add(account)
        self._loading = False
        default = self.default_account
        if default is None or not default.enabled:
            self._choose_default()
        await asyncio.gather(*(account._start() for account in self.get_accounts()))

    async def _stop(self) -> None:
        if not self._started:
            return
        self._started = False
        center = NotificationCenter()
        for name in (
            "CFGSettingsObjectWasActivated",
            "CFGSettingsObjectWasCreated",
            "CFGSettingsObjectWasDeleted",
            "CFGSettingsObjectDidChange",
        ):
            center.discard_observer(self._observe, name=name)
        with self._lock:
            accounts = list(self._accounts.values())
        await asyncio.gather(*(account._stop() for account in accounts))

    # -- queries

    def has_account(self, id: str) -> bool:
        with self._lock:
            return id in self._accounts

    def get_account(self, id: str) -> AnyAccount:
        """The account with this SIP id; KeyError when there is none."""
        with self._lock:
            return self._accounts[id]

    def get_accounts(self) -> list[AnyAccount]:
        with self._lock:
            return list(self._accounts.values())

    def iter_accounts(self) -> Iterator[AnyAccount]:
        return iter(self.get_accounts())

    def find_account(self, contact_uri: Any) -> AnyAccount | None:
        """The enabled account a request to ``contact_uri`` (a SIPURI) is for: the one
        whose contact user it names, else one whose SIP id user it names, else None."""
        user = contact_uri.user
        accounts = [account for account in self.get_accounts() if account.enabled]
        for account in accounts:
            if account.contact.username == user:
                return account
        for account in accounts:
            if account.id.username == user:
                return account
        return None

    # -- the default account

    @property
    def default_account(self) -> AnyAccount | None:
        if not ConfigurationManager().started:
            return None
        account_id = SIPSimpleSettings().default_account
        with self._lock:
            return self._accounts.get(account_id) if account_id is not None else None

    @default_account.setter
    def default_account(self, account: AnyAccount | None) -> None:
        self._set_default(account, self.default_account)

    def _set_default(self, account: AnyAccount | None, old: AnyAccount | None) -> None:
        with self._lock:
            if account is not None:
                if self._accounts.get(account.id) is not account:
                    raise ValueError(f"{account!r} is not an account of the AccountManager")
                if not account.enabled:
                    raise ValueError(f"{account!r} is not enabled: it cannot be the default")
            settings = SIPSimpleSettings()
            new_id = account.id if account is not None else None
            if settings.default_account == new_id and account is old:
                return
            settings.default_account = new_id
            settings.save()
        name = "SIPAccountManagerDidChangeDefaultAccount"
        _on_sip_thread(_post, self, name, old_account=old, account=account)

    def _choose_default(self, old: AnyAccount | None = None) -> None:
        """Make the first enabled account the default (None when there is none)."""
        with self._lock:
            enabled = [account for account in self._accounts.values() if account.enabled]
            enabled.sort(key=lambda account: isinstance(account, BonjourAccount))
            self._set_default(enabled[0] if enabled else None, old or self.default_account)

    # -- reacting to the configuration

    def _observe(self, notification: Notification) -> None:
        sender = notification.sender
        if not isinstance(sender, Account | BonjourAccount):
            return
        name = notification.name
        if name == "CFGSettingsObjectWasActivated":
            self._add(sender)
        elif name == "CFGSettingsObjectWasCreated":
            if sender.enabled and self.default_account is None:
                self.default_account = sender
        elif name == "CFGSettingsObjectWasDeleted":
            self._remove(sender)
        elif name == "CFGSettingsObjectDidChange":
            self._changed(sender, notification.data.modified)

    def _add(self, account: AnyAccount) -> None:
        with self._lock:
            if self._accounts.get(account.id) is account:
                return
            self._accounts[account.id] = account
        _on_sip_thread(self._announce, account)

    def _announce(self, account: AnyAccount) -> None:
        _post(self, "SIPAccountManagerDidAddAccount", account=account)
        if self._started and not self._loading and SIPThread().is_running:
            spawn(account._start())

    def _remove(self, account: AnyAccount) -> None:
        with self._lock:
            if self._accounts.get(account.id) is not account:
                return
            del self._accounts[account.id]
            was_default = SIPSimpleSettings().default_account == account.id
        _on_sip_thread(self._forget, account, was_default)

    def _forget(self, account: AnyAccount, was_default: bool) -> None:
        if SIPThread().is_running:
            spawn(account._stop())
        _post(self, "SIPAccountManagerDidRemoveAccount", account=account)
        if was_default:
            self._choose_default(account)

    def _changed(self, account: AnyAccount, modified: dict[str, Any]) -> None:
        renamed = modified.get("__id__")
        if renamed is not None:
            with self._lock:
                if self._accounts.get(renamed.old) is account:
                    del self._accounts[renamed.old]
                    self._accounts[renamed.new] = account
                    settings = SIPSimpleSettings()
                    if settings.default_account == renamed.old:
                        settings.default_account = renamed.new
                        settings.save()
        if "enabled" in modified:
            default = self.default_account
            if account.enabled and default is None:
                self.default_account = account
            elif not account.enabled and default is account:
                self._choose_default()
