"""Keeping an Account registered (spec: Account.registration.enabled).

A *round* registers from scratch: it finds the registrar (the outbound proxy if one is
set, else the account's domain) with an RFC 3263 lookup
(:meth:`sipsimple.lookup.DNSLookup.lookup_sip_proxy`), then sends the REGISTER of one
core :class:`~sipsimple.core.Registration` to each route in turn until one answers: a
local timeout or a 503 moves on to the next route (RFC 3263 section 4.3), any other
answer ends the round. Every answer is posted as SIPAccountRegistrationGotAnswer
(code, reason, registration, registrar).

After a success (SIPAccountRegistrationDidSucceed: contact_header,
contact_header_list, expires, registrar) the core Registration refreshes the binding
by itself on the same route, and each refresh is reported the same way. A refresh
that fails, or a binding about to lapse, starts a new round
(SIPAccountRegistrationWillRefresh), so a dead registrar is left for the next route.

A failed round (SIPAccountRegistrationDidFail: ``error`` and ``timeout``, the seconds
until the next round, plus ``code`` and ``reason`` of the last answer when there was
one) is retried after an exponential back-off with jitter (:class:`Backoff`), reset
by a success. Rejected credentials (401, 407, 403) back off from a minute on, so that
a wrong password does not hammer the server.

Deactivation removes the binding (Expires 0) within ``end_timeout`` seconds (plus a
margin) whatever the network does: SIPAccountRegistrationDidEnd, or
SIPAccountRegistrationDidNotEnd (code, reason) when the registrar refused or did not
answer in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from sipsimple.configuration.settings import SIPSimpleSettings
from sipsimple.core import SIPURI, ContactHeader, Engine, FromHeader, Registration, RouteHeader
from sipsimple.core.usage import FAILOVER_CODES
from sipsimple.lookup import DNSLookup, DNSLookupError
from sipsimple.notification import Notification, NotificationCenter, NotificationData
from sipsimple.util import Route

if TYPE_CHECKING:
    from sipsimple.account import Account

__all__ = ["AccountRegistrar", "Backoff"]

log = logging.getLogger(__name__)

_AUTH_FAILURES = frozenset((401, 403, 407))


@dataclass
class Backoff:
    """Retry delays that double after each failure up to ``maximum``, with jitter.

    ``next()`` returns a delay drawn from ``[wait, 2 * wait]`` (at most ``maximum``)
    where ``wait`` starts at ``initial`` and doubles each time; ``reset()`` starts over.
    Jitter keeps clients that failed together from retrying together.
    """

    initial: float = 1.0
    maximum: float = 120.0
    rng: random.Random = field(default_factory=random.Random, repr=False)
    _wait: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise ValueError(f"need 0 < initial <= maximum, got {self.initial}, {self.maximum}")
        self._wait = self.initial

    def next(self) -> float:
        wait = self._wait
        self._wait = min(2 * wait, self.maximum)
        return min(self.rng.uniform(wait, 2 * wait), self.maximum)

    def reset(self) -> None:
        self._wait = self.initial


class _RoundFailed(Exception):
    def __init__(self, error: str, timeout: float, code: int | None, reason: str | None):
        super().__init__(error)
        self.error = error
        self.timeout = timeout
        self.code = code
        self.reason = reason


class AccountRegistrar:
    """Registers one Account while active; see the module docstring. SIP thread only.

    ``attempt_timeout`` bounds the REGISTER sent to one route, ``round_timeout`` all
    the routes of a round, ``end_timeout`` the un-REGISTER.
    """

    attempt_timeout: ClassVar[float] = 10.0
    round_timeout: ClassVar[float] = 30.0
    end_timeout: ClassVar[float] = 2.0

    def __init__(self, account: Account) -> None:
        self.account = account
        self.registered = False
        self.backoff = Backoff(1.0, 120.0)
        self.auth_backoff = Backoff(60.0, 3600.0)
        self._active = False
        self._registration: Registration | None = None
        self._route: Route | None = None
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._renew = False
        self._attempt: asyncio.Future[Notification] | None = None
        self._ending: asyncio.Future[Notification] | None = None

    @property
    def active(self) -> bool:
        return self._active

    def activate(self) -> None:
        if self._active:
            return
        self._active = True
        self._renew = False
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def deactivate(self) -> None:
        """Stop registering and remove the binding (bounded in time)."""
        if not self._active:
            return
        self._active = False
        await self._cancel()
        await self._unregister()

    def reregister(self) -> None:
        """Remove the binding and register again from scratch (the settings changed)."""
        if self._active:
            self._renew = True
            self._wakeup.set()

    # -- the rounds

    async def _run(self) -> None:
        while True:
            if self._renew:
                self._renew = False
                await self._unregister()
            self._wakeup.clear()
            timeout = await self._round()
            if self._renew:
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wakeup.wait()

    async def _round(self) -> float | None:
        """One round; None on success, else the seconds until the next one."""
        try:
            await self._register()
        except _RoundFailed as failure:
            registration = self._registration
            if registration is not None and not registration.is_registered:
                self._forget_registration()
            self.registered = registration is not None and registration.is_registered
            data: dict[str, Any] = {"error": failure.error, "timeout": failure.timeout}
            if failure.code is not None:
                data.update(code=failure.code, reason=failure.reason)
            self._post("SIPAccountRegistrationDidFail", **data)
            return failure.timeout
        return None

    async def _register(self) -> None:
        account = self.account
        settings = SIPSimpleSettings()
        engine = Engine()
        if self._registration is None:
            self._new_registration()
            self._post("SIPAccountWillRegister")
        else:
            self._post("SIPAccountRegistrationWillRefresh")
        registration = self._registration
        assert registration is not None
        transports = [t for t in settings.sip.transport_list if t in engine.transports]
        if not transports:
            raise self._failure("none of the SIP transports in use is enabled")
        try:
            routes = await DNSLookup().lookup_sip_proxy(self._registrar_uri(), transports)  # type: ignore[misc]
        except DNSLookupError as e:
            raise self._failure(f"DNS lookup failed: {e}") from None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.round_timeout
        last: tuple[int, str] | None = None
        for route in routes:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                contact = ContactHeader(account.contact[route.transport])
            except KeyError:
                continue
            timeout = max(1.0, min(remaining, self.attempt_timeout))
            notification = await self._attempt_on(registration, contact, route, timeout)
            data = notification.data
            self._post(
                "SIPAccountRegistrationGotAnswer",
                code=data.code,
                reason=data.reason,
                registration=registration,
                registrar=route,
            )
            if notification.name == "SIPRegistrationDidSucceed":
                self._succeeded(data, route)
                self.backoff.reset()
                self.auth_backoff.reset()
                return
            last = (data.code, data.reason)
            if data.code in _AUTH_FAILURES:
                raise self._failure(
                    f"authentication failed ({data.code} {data.reason})",
                    data.code,
                    data.reason,
                    timeout=self.auth_backoff.next(),
                )
            if data.code not in FAILOVER_CODES:
                raise self._failure(f"{data.code} {data.reason}", data.code, data.reason)
        if last is None:
            raise self._failure("no route to the registrar could be used")
        raise self._failure(f"no more routes to try (last: {last[0]} {last[1]})", *last)

    async def _attempt_on(
        self, registration: Registration, contact: ContactHeader, route: Route, timeout: float
    ) -> Notification:
        """Send the REGISTER to one route; the core's DidSucceed or DidFail for it."""
        attempt = self._attempt = asyncio.get_running_loop().create_future()
        try:
            try:
                registration.register(contact, RouteHeader(route.get_uri()), timeout=timeout)
            except Exception as e:
                raise self._failure(f"cannot send the REGISTER: {e}") from None
            async with asyncio.timeout(timeout + 5):  # the core answers locally before this
                return await attempt
        except TimeoutError:
            raise self._failure("the REGISTER got no answer, not even a local one") from None
        finally:
            self._attempt = None

    def _failure(
        self,
        error: str,
        code: int | None = None,
        reason: str | None = None,
        *,
        timeout: float | None = None,
    ) -> _RoundFailed:
        return _RoundFailed(
            error, timeout if timeout is not None else self.backoff.next(), code, reason
        )

    def _registrar_uri(self) -> SIPURI:
        account = self.account
        proxy = account.sip.outbound_proxy
        if proxy is None:
            return SIPURI(host=account.id.domain)
        parameters = {"transport": str(proxy.transport)} if proxy.transport else {}
        return SIPURI(host=proxy.host, port=proxy.port, parameters=parameters)

    def _new_registration(self) -> None:
        account = self.account
        registration = Registration(
            FromHeader(account.uri, account.display_name),
            credentials=account.credentials,
            duration=int(account.sip.register_interval),
        )
        self._registration = registration
        NotificationCenter().add_observer(self._core, sender=registration)

    def _forget_registration(self) -> None:
        registration, self._registration = self._registration, None
        if registration is not None:
            NotificationCenter().discard_observer(self._core, sender=registration)
        self.registered = False
        self._route = None

    def _succeeded(self, data: Any, route: Route) -> None:
        self.registered = True
        self._route = route
        self._post(
            "SIPAccountRegistrationDidSucceed",
            contact_header=data.contact_header,
            contact_header_list=data.contact_header_list,
            expires=data.expires_in,
            registrar=route,
        )

    # -- what the core Registration reports

    def _core(self, notification: Notification) -> None:
        """Observer of the core Registration (on the SIP thread, where it posts)."""
        if notification.sender is not self._registration:
            return
        name = notification.name
        ending = self._ending
        if ending is not None:
            finished = name in ("SIPRegistrationDidEnd", "SIPRegistrationDidNotEnd") or (
                name == "SIPRegistrationDidFail" and not notification.sender.is_registered
            )
            if finished and not ending.done():
                ending.set_result(notification)
            return
        attempt = self._attempt
        if name in ("SIPRegistrationDidSucceed", "SIPRegistrationDidFail"):
            if attempt is not None and not attempt.done():
                attempt.set_result(notification)
                return
            self._refreshed(notification)
        elif name == "SIPRegistrationWillExpire":
            self._wakeup.set()
        elif name == "SIPRegistrationDidEnd" and notification.data.expired:
            self.registered = False
            self._wakeup.set()

    def _refreshed(self, notification: Notification) -> None:
        """The result of a refresh the core Registration sent by itself."""
        data = notification.data
        self._post(
            "SIPAccountRegistrationGotAnswer",
            code=data.code,
            reason=data.reason,
            registration=notification.sender,
            registrar=self._route,
        )
        if notification.name == "SIPRegistrationDidSucceed":
            self._succeeded(data, self._route)  # type: ignore[arg-type]
        elif self._active:
            self._wakeup.set()  # a new round: lookup again, maybe another route

    # -- ending

    async def _cancel(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        attempt = self._attempt
        if attempt is not None and not attempt.done():
            attempt.cancel()

    async def _unregister(self) -> None:
        registration = self._registration
        if registration is None:
            return
        try:
            if registration.state == "unregistered" and not registration.is_registered:
                return
            ending = self._ending = asyncio.get_running_loop().create_future()
            registration.end(timeout=self.end_timeout)
            try:
                async with asyncio.timeout(self.end_timeout + 2):
                    notification: Notification | None = await ending
            except TimeoutError:
                notification = None
            if notification is None:
                self._post(
                    "SIPAccountRegistrationDidNotEnd",
                    code=408,
                    reason="Request Timeout",
                    registration=registration,
                )
            elif notification.name == "SIPRegistrationDidEnd":
                self._post("SIPAccountRegistrationDidEnd", registration=registration)
            elif notification.name == "SIPRegistrationDidNotEnd":
                self._post(
                    "SIPAccountRegistrationDidNotEnd",
                    code=notification.data.code,
                    reason=notification.data.reason,
                    registration=registration,
                )
        finally:
            self._ending = None
            self._forget_registration()

    def _post(self, name: str, /, **data: Any) -> None:
        NotificationCenter().post_notification(
            name, sender=self.account, data=NotificationData(**data)
        )
