"""Voicemail notifications for an Account (RFC 3842; spec: Account.message_summary).

While the account is active and ``message_summary.enabled`` is set, a core
:class:`~sipsimple.core.Subscription` to the ``message-summary`` event of the
voicemail URI (``message_summary.voicemail_uri``, else the account's own address) is
kept up. Every NOTIFY with a body is parsed
(:class:`sipsimple.payloads.messagesummary.MessageSummary`) and posted as
SIPAccountMWIDidGetSummary (``message_summary``); a body that does not parse is
logged and dropped.

The SUBSCRIBE goes where the REGISTER would (the outbound proxy, else the account's
domain), or to the voicemail URI's domain when one is set and
``sip.always_use_my_proxy`` is not, trying the routes of the RFC 3263 lookup in turn
like the registration does. A subscription that fails or ends is made again after a
back-off; rejected credentials back off from a minute on, a notifier that does not
support the event (405, 489) or refuses for good (RFC 6665 "rejected",
"noresource", "invariant") is left alone for an hour.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
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
from sipsimple.core.usage import FAILOVER_CODES
from sipsimple.lookup import DNSLookup, DNSLookupError
from sipsimple.notification import Notification, NotificationCenter, NotificationData
from sipsimple.payloads.messagesummary import MessageSummary, MessageSummaryParseError
from sipsimple.util import Route

if TYPE_CHECKING:
    from sipsimple.account import Account

__all__ = ["MWISubscriber"]

log = logging.getLogger(__name__)

EVENT = "message-summary"
_AUTH_FAILURES = frozenset((401, 403, 407))
_UNSUPPORTED = frozenset((405, 406, 489))
_FINAL_REASONS = frozenset(("rejected", "noresource", "invariant"))
_GIVE_UP_FOR = 3600.0
_OUTCOMES = frozenset(
    ("SIPSubscriptionDidStart", "SIPSubscriptionDidFail", "SIPSubscriptionDidEnd")
)


class MWISubscriber:
    """Keeps one Account subscribed to its message summary; SIP thread only.

    ``attempt_timeout`` bounds the SUBSCRIBE sent to one route, ``end_timeout`` the
    unsubscribe.
    """

    attempt_timeout: ClassVar[float] = 10.0
    round_timeout: ClassVar[float] = 30.0
    end_timeout: ClassVar[float] = 2.0

    def __init__(self, account: Account) -> None:
        self.account = account
        self.backoff = Backoff(1.0, 120.0)
        self.auth_backoff = Backoff(60.0, 3600.0)
        self._active = False
        self._subscription: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._renew = False
        self._retry_in: float | None = None
        self._attempt: asyncio.Future[Notification] | None = None
        self._ending: asyncio.Future[Notification] | None = None

    @property
    def subscribed(self) -> bool:
        subscription = self._subscription
        return subscription is not None and subscription.state in ("ACCEPTED", "PENDING", "ACTIVE")

    def activate(self) -> None:
        if self._active:
            return
        self._active = True
        self._renew = False
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def deactivate(self) -> None:
        """Stop subscribing and unsubscribe (bounded in time)."""
        if not self._active:
            return
        self._active = False
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._unsubscribe()

    def resubscribe(self) -> None:
        """Unsubscribe and subscribe again from scratch (the settings changed)."""
        if self._active:
            self._renew = True
            self._wakeup.set()

    # -- the rounds

    async def _run(self) -> None:
        delay = 0.0
        while True:
            await self._sleep(delay)
            if self._renew:
                self._renew = False
                await self._unsubscribe()
            self._retry_in = None
            delay = await self._round()
            if delay is None:  # subscribed: until it ends or the settings change
                self._wakeup.clear()
                if not self._renew and self._subscription is not None:
                    await self._wakeup.wait()
                delay = 0.0 if self._renew else (self._retry_in or 0.0)

    async def _sleep(self, delay: float) -> None:
        """Wait ``delay`` seconds, or less when the settings change."""
        if delay <= 0:
            return
        self._wakeup.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._wakeup.wait()

    async def _round(self) -> float | None:
        """Subscribe; None once subscribed, else the seconds until the next try."""
        account = self.account
        engine = Engine()
        transports = [t for t in SIPSimpleSettings().sip.transport_list if t in engine.transports]
        if not transports:
            return self.backoff.next()
        try:
            routes = await DNSLookup().lookup_sip_proxy(self._proxy_uri(), transports)  # type: ignore[misc]
        except DNSLookupError as e:
            log.info("%r: message summary: DNS lookup failed: %s", account, e)
            return self.backoff.next()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.round_timeout
        for route in routes:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                contact = ContactHeader(account.contact[route.transport])
            except KeyError:
                continue
            timeout = max(1.0, min(remaining, self.attempt_timeout))
            outcome = await self._attempt_on(contact, route, timeout)
            if outcome.name == "SIPSubscriptionDidStart":
                self.backoff.reset()
                self.auth_backoff.reset()
                return None
            code = outcome.data.code
            reason = outcome.data.reason
            log.info("%r: message summary subscription failed: %s %s", account, code, reason)
            if code in _AUTH_FAILURES:
                return self.auth_backoff.next()
            if code in _UNSUPPORTED:
                return _GIVE_UP_FOR
            if code not in FAILOVER_CODES:
                return self.backoff.next()
        return self.backoff.next()

    async def _attempt_on(
        self, contact: ContactHeader, route: Route, timeout: float
    ) -> Notification:
        account = self.account
        target = self._target_uri()
        subscription = Subscription(
            target,
            FromHeader(account.uri, account.display_name),
            ToHeader(target),
            contact,
            EVENT,
            RouteHeader(route.get_uri()),
            credentials=account.credentials,
            refresh=int(account.sip.subscribe_interval),
        )
        self._subscription = subscription
        NotificationCenter().add_observer(self._core, sender=subscription)
        attempt = self._attempt = asyncio.get_running_loop().create_future()
        try:
            subscription.subscribe(timeout=timeout)
            async with asyncio.timeout(timeout + 5):  # the core answers locally before this
                outcome = await attempt
        except TimeoutError:
            outcome = _failure(subscription, 408, "Request Timeout")
        except Exception as e:  # the Engine stopped meanwhile
            outcome = _failure(subscription, 503, str(e))
        finally:
            self._attempt = None
        if outcome.name != "SIPSubscriptionDidStart":
            self._forget(subscription)
        return outcome

    def _proxy_uri(self) -> SIPURI:
        account = self.account
        proxy = account.sip.outbound_proxy
        voicemail = account.message_summary.voicemail_uri
        if proxy is not None:
            parameters = {"transport": str(proxy.transport)} if proxy.transport else {}
            return SIPURI(host=proxy.host, port=proxy.port, parameters=parameters)
        if voicemail is not None and not account.sip.always_use_my_proxy:
            return SIPURI(host=voicemail.domain)
        return SIPURI(host=account.id.domain)

    def _target_uri(self) -> SIPURI:
        voicemail = self.account.message_summary.voicemail_uri
        if voicemail is not None:
            return SIPURI(host=voicemail.domain, user=voicemail.username)
        return self.account.uri

    def _forget(self, subscription: Subscription) -> None:
        NotificationCenter().discard_observer(self._core, sender=subscription)
        if self._subscription is subscription:
            self._subscription = None

    # -- what the core Subscription reports

    def _core(self, notification: Notification) -> None:
        subscription = notification.sender
        if subscription is not self._subscription:
            return
        name = notification.name
        if name == "SIPSubscriptionGotNotify":
            self._got_notify(notification.data)
            return
        if name not in _OUTCOMES:
            return
        ending = self._ending
        if ending is not None:
            if name != "SIPSubscriptionDidStart" and not ending.done():
                ending.set_result(notification)
            return
        attempt = self._attempt
        if attempt is not None and not attempt.done():
            attempt.set_result(notification)
            return
        if name == "SIPSubscriptionDidStart":
            return
        # The subscription we had ended: subscribe again when its end allows.
        self._forget(subscription)
        self._retry_in = self._retry_after(notification)
        self._wakeup.set()

    def _retry_after(self, notification: Notification) -> float:
        data = notification.data
        if notification.name == "SIPSubscriptionDidEnd":
            return self.backoff.next()
        reason = getattr(data, "reason", None)
        if data.code == 0 and reason in _FINAL_REASONS:
            return _GIVE_UP_FOR
        retry_after = getattr(data, "retry_after", None)
        if retry_after:
            return float(retry_after)
        if data.code == 0 and reason in ("deactivated", "timeout"):
            return 0.01  # RFC 6665 section 4.1.3: at once
        return self.backoff.next()

    def _got_notify(self, data: Any) -> None:
        if data.event != EVENT or not data.body:
            return
        try:
            summary = MessageSummary.parse(data.body)
        except MessageSummaryParseError as e:
            log.warning("%r: a bad message summary from %s: %s", self.account, data.from_header, e)
            return
        NotificationCenter().post_notification(
            "SIPAccountMWIDidGetSummary",
            sender=self.account,
            data=NotificationData(message_summary=summary),
        )

    # -- ending

    async def _unsubscribe(self) -> None:
        subscription = self._subscription
        if subscription is None:
            return
        try:
            if subscription.state in ("NULL", "TERMINATED"):
                return
            ending = self._ending = asyncio.get_running_loop().create_future()
            subscription.end(timeout=self.end_timeout)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.end_timeout + 2):
                    await ending
        finally:
            self._ending = None
            self._forget(subscription)


def _failure(subscription: Subscription, code: int, reason: str) -> Notification:
    """A local DidFail, for an attempt that got no outcome from the core."""
    data = NotificationData(code=code, reason=reason, min_expires=None, retry_after=None)
    return Notification("SIPSubscriptionDidFail", subscription, data)
