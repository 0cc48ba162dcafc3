"""The Bonjour account's mDNS side (spec: BonjourAccount), with python-zeroconf.

While the account is active, each transport the Engine listens on is published as
a DNS-SD service, named after its contact URI: ``_sipuri._udp`` for UDP and
``_sipuri._tcp`` for TCP and TLS (as the original did; TLS only with a certificate
in SIPSimpleSettings.tls.certificate, without one no peer could connect), with a TXT
record holding ``txtvers=1``, ``name`` (the display name) and ``contact``
(``<sip:user@ip:port;transport=...>``). The same service types are browsed; each
service found is resolved and reported as a neighbour unless it is our own, or its
transport is not one we use.

mDNS goes out only on the interface of SIPSimpleSettings.local_ip (the address in
our contact): pointing local_ip at 127.0.0.1 keeps it on loopback.

Notifications (sender: the BonjourAccount): BonjourAccountWillRegister,
BonjourAccountRegistrationDidSucceed (name, transport),
BonjourAccountRegistrationDidFail (reason, transport; retried every
``retry_interval`` seconds), BonjourAccountRegistrationUpdateDidFail,
BonjourAccountRegistrationDidEnd, BonjourAccountWillInitateDiscovery (sic, the
spec's name), BonjourAccountDiscoveryDidFail (reason, transport),
BonjourAccountDiscoveryFailure (error, transport: a neighbour could not be
resolved), BonjourAccountDidAddNeighbour / DidUpdateNeighbour (service_description,
display_name, host, uri) and BonjourAccountDidRemoveNeighbour (service_description).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from zeroconf import IPVersion, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from sipsimple.configuration.settings import SIPSimpleSettings
from sipsimple.core import Engine, FrozenSIPURI, SIPCoreError
from sipsimple.notification import NotificationCenter, NotificationData
from sipsimple.threading import spawn

if TYPE_CHECKING:
    from sipsimple.account import BonjourAccount

__all__ = ["BonjourServiceDescription", "BonjourServices", "service_type"]

log = logging.getLogger(__name__)

_DOMAIN = "local."


def service_type(transport: str) -> str:
    """The DNS-SD service type our contact is published under for ``transport``."""
    return f"_sipuri._{'udp' if transport == 'udp' else 'tcp'}.{_DOMAIN}"


@dataclass(frozen=True)
class BonjourServiceDescription:
    """What identifies a neighbour in mDNS: its service instance name, type and domain."""

    name: str
    type: str
    domain: str


class BonjourServices:
    """Publishes and browses for a BonjourAccount; SIP thread only.

    ``activate()`` starts in the background; ``deactivate()`` withdraws the services
    (goodbye packets), stops browsing and closes the mDNS sockets.
    """

    retry_interval: ClassVar[float] = 5.0
    resolve_timeout: ClassVar[float] = 3.0  # seconds

    def __init__(self, account: BonjourAccount) -> None:
        self.account = account
        self.neighbours: dict[BonjourServiceDescription, FrozenSIPURI] = {}
        self._zeroconf: AsyncZeroconf | None = None
        self._task: asyncio.Task[None] | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._published: dict[str, AsyncServiceInfo] = {}
        self._browsers: list[AsyncServiceBrowser] = []
        self._resolving: set[asyncio.Task[None]] = set()

    def activate(self) -> None:
        if self._task is None:
            self._task = self._run(self._start())

    def _run(self, coroutine: Any) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        task.add_done_callback(_log_failure)
        return task

    async def deactivate(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        for resolving in list(self._resolving):
            resolving.cancel()
        zeroconf, self._zeroconf = self._zeroconf, None
        browsers, self._browsers = self._browsers, []
        published, self._published = self._published, {}
        self.neighbours = {}
        if zeroconf is None:
            return
        for browser in browsers:
            with contextlib.suppress(Exception):
                await browser.async_cancel()
        for transport, info in published.items():
            try:
                await (await zeroconf.async_unregister_service(info))
            except Exception as e:
                log.info("cannot withdraw the %s service: %s", transport, e)
            self._post("BonjourAccountRegistrationDidEnd", transport=transport)
        await zeroconf.async_close()

    async def restart(self) -> None:
        """Withdraw and publish again (the contacts changed), browsing anew."""
        if self._task is not None:
            await self.deactivate()
            if self.account.active:
                self.activate()

    def update_registrations(self) -> None:
        """Publish the display name again (it is in the TXT records)."""
        if self._zeroconf is not None:
            spawn(self._update())

    # -- publishing

    async def _start(self) -> None:
        local_ip = SIPSimpleSettings().local_ip
        version = (
            IPVersion.V6Only if ipaddress.ip_address(local_ip).version == 6 else IPVersion.V4Only
        )
        self._zeroconf = AsyncZeroconf(interfaces=[str(local_ip)], ip_version=version)
        self._discover()
        await self._register()

    def _transports(self) -> list[str]:
        settings = SIPSimpleSettings()
        engine = Engine()
        return [
            transport
            for transport in settings.sip.transport_list
            if transport in engine.transports
            and (transport != "tls" or settings.tls.certificate is not None)
        ]

    def _info(self, transport: str) -> AsyncServiceInfo:
        contact = self.account.contact[transport]
        kind = service_type(transport)
        address = ipaddress.ip_address(contact.host)
        return AsyncServiceInfo(
            kind,
            f"{contact}.{kind}",
            addresses=[address.packed],
            port=contact.port,
            properties={
                "txtvers": "1",
                "name": self.account.display_name or "",
                "contact": f"<{contact}>",
            },
            server=f"{socket.gethostname().split('.')[0]}.{_DOMAIN}",
        )

    async def _register(self) -> None:
        zeroconf = self._zeroconf
        assert zeroconf is not None
        failed = False
        for transport in self._transports():
            if transport in self._published:
                continue
            self._post("BonjourAccountWillRegister", transport=transport)
            try:
                info = self._info(transport)
                await (await zeroconf.async_register_service(info))
            except Exception as e:
                failed = True
                self._post(
                    "BonjourAccountRegistrationDidFail",
                    reason=str(e) or repr(e),
                    transport=transport,
                )
                continue
            self._published[transport] = info
            self._post(
                "BonjourAccountRegistrationDidSucceed",
                name=str(self.account.contact[transport]),
                transport=transport,
            )
        if failed:
            loop = asyncio.get_running_loop()
            self._retry = loop.call_later(self.retry_interval, self._register_again)

    def _register_again(self) -> None:
        self._retry = None
        if self._zeroconf is not None and self._task is not None:
            self._task = self._run(self._register())

    async def _update(self) -> None:
        zeroconf = self._zeroconf
        for transport in list(self._published):
            if zeroconf is None:
                return
            try:
                info = self._info(transport)
                await (await zeroconf.async_update_service(info))
            except Exception as e:
                self._post(
                    "BonjourAccountRegistrationUpdateDidFail",
                    reason=str(e) or repr(e),
                    transport=transport,
                )
            else:
                self._published[transport] = info

    # -- browsing

    def _discover(self) -> None:
        zeroconf = self._zeroconf
        assert zeroconf is not None
        kinds: dict[str, str] = {}
        for transport in self._transports():
            kinds.setdefault(service_type(transport), "udp" if transport == "udp" else "tcp")
        for kind, transport in kinds.items():
            self._post("BonjourAccountWillInitateDiscovery", transport=transport)
            try:
                browser = AsyncServiceBrowser(zeroconf.zeroconf, kind, handlers=[self._changed])
            except Exception as e:
                self._post(
                    "BonjourAccountDiscoveryDidFail", reason=str(e) or repr(e), transport=transport
                )
                continue
            self._browsers.append(browser)

    def _changed(
        self,
        zeroconf: Any,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        """The browser's callback (on the loop): a service appeared, changed or left."""
        description = BonjourServiceDescription(name, service_type, _DOMAIN)
        if state_change is ServiceStateChange.Removed:
            if self.neighbours.pop(description, None) is not None:
                self._post("BonjourAccountDidRemoveNeighbour", service_description=description)
            return
        task = self._run(self._resolve(description))
        self._resolving.add(task)
        task.add_done_callback(self._resolving.discard)

    async def _resolve(self, description: BonjourServiceDescription) -> None:
        zeroconf = self._zeroconf
        if zeroconf is None:
            return
        transport = "udp" if description.type.startswith("_sipuri._udp") else "tcp"
        info = AsyncServiceInfo(description.type, description.name)
        if not await info.async_request(zeroconf.zeroconf, self.resolve_timeout * 1000):
            self._post(
                "BonjourAccountDiscoveryFailure",
                error=f"cannot resolve {description.name}",
                transport=transport,
            )
            return
        properties = info.decoded_properties
        contact = (properties.get("contact") or description.name).strip().strip("<>")
        try:
            uri = FrozenSIPURI.parse(contact)
        except (SIPCoreError, ValueError):
            self._post(
                "BonjourAccountDiscoveryFailure",
                error=f"{description.name} published a bad contact {contact!r}",
                transport=transport,
            )
            return
        if uri.transport not in self._transports() or self._is_ours(uri):
            return
        host = (info.server or "").removesuffix(".").removesuffix(".local")
        name = (
            "BonjourAccountDidUpdateNeighbour"
            if description in self.neighbours
            else "BonjourAccountDidAddNeighbour"
        )
        self.neighbours[description] = uri
        self._post(
            name,
            service_description=description,
            display_name=properties.get("name") or None,
            host=host,
            uri=uri,
        )

    def _is_ours(self, uri: FrozenSIPURI) -> bool:
        try:
            return uri == FrozenSIPURI.new(self.account.contact[uri.transport])
        except KeyError:
            return False

    def _post(self, name: str, /, **data: Any) -> None:
        NotificationCenter().post_notification(
            name, sender=self.account, data=NotificationData(**data)
        )


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("Bonjour services failed", exc_info=task.exception())
