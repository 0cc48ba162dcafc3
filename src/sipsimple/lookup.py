"""DNS lookups for SIP proxies (RFC 3263), STUN servers, MSRP relays and XCAP servers.

:class:`DNSManager` chooses the nameservers (probing the system's and falling back to
public ones); :class:`DNSLookup` runs lookups with them on the SIP thread's event loop
using dnspython's asyncio resolver, and shares one TTL-honouring cache.

Two ways to get a result, neither blocking the SIP thread:

* the spec's way: call a lookup method, ignore what it returns, and observe
  DNSLookupDidSucceed (``data.result``) or DNSLookupDidFail (``data.error``) from the
  DNSLookup instance;
* awaiting: on the SIP thread every lookup method returns the :class:`asyncio.Task`
  doing the lookup, ``routes = await DNSLookup().lookup_sip_proxy(uri, ["udp"])``,
  which raises :class:`DNSLookupError` on failure. Called from another thread it
  hands the lookup to the SIP thread and returns a :class:`concurrent.futures.Future`
  (``.result()`` waits, like the spec's ``wait()``). The notifications are posted
  either way.

Lookups and probing run on the SIP thread's loop (sipsimple.threading), or, when it
is not started, on the calling thread's running loop (tests, scripts). The URI
arguments may be any object with ``host``, ``port``, ``secure`` and ``parameters``.

As the spec says, a lookup of a domain first asks for its NS records and sends the
NAPTR, SRV, A/AAAA and TXT queries to those authoritative nameservers (some home
routers answer NAPTR and SRV badly); a query they do not answer goes to the local
nameservers. ``timeout`` bounds each attempt, ``lifetime`` the whole lookup.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar
from urllib.parse import urlsplit

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from sipsimple.notification import NotificationCenter, NotificationData
from sipsimple.threading import run_in_worker, sip_loop
from sipsimple.util import Route

__all__ = [
    "DNSCache",
    "DNSLookup",
    "DNSLookupError",
    "DNSManager",
    "SRVRecord",
    "order_srv_records",
]

T = TypeVar("T")
_log = logging.getLogger(__name__)


class DNSLookupError(Exception):
    """A lookup found nothing usable; the message says what was looked up and why."""


class URILike(Protocol):
    """What the lookups read of a (Frozen)SIPURI."""

    host: str
    port: int | None
    secure: bool
    parameters: Mapping[str, Any]


_TRANSPORTS = ("udp", "tcp", "tls")
_DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}
_SRV_PREFIXES = {"udp": "_sip._udp", "tcp": "_sip._tcp", "tls": "_sips._tcp"}
_NAPTR_SERVICES = {"sip+d2u": "udp", "sip+d2t": "tcp", "sips+d2t": "tls"}
# service -> (SRV prefix, default port)
_SERVICES = {"stun": ("_stun._udp", 3478), "msrprelay": ("_msrps._tcp", 2855)}


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _target_loop() -> asyncio.AbstractEventLoop:
    """The SIP thread's loop when it runs, else the calling thread's (tests, scripts)."""
    try:
        return sip_loop()
    except RuntimeError:
        loop = _running_loop()
        if loop is None:
            raise RuntimeError(
                "the SIP thread is not running: call SIPThread().start() first"
                " (or call from a running event loop)"
            ) from None
        return loop


def _soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], object]) -> None:
    """Run callback on loop: now when called on it, else soon (thread-safe)."""
    if _running_loop() is loop:
        callback()
    else:
        loop.call_soon_threadsafe(callback)


def _nameserver(text: str, port: int = 53) -> dns.nameserver.Do53Nameserver:
    """A nameserver from '192.0.2.1', '192.0.2.1:5353', '2001:db8::1' or '[2001:db8::1]:53'."""
    address = text
    if text.startswith("["):
        address, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise ValueError(f"bad nameserver {text!r}")
            port = int(rest[1:])
    elif text.count(":") == 1:
        address, port_text = text.split(":")
        if not port_text.isdigit():
            raise ValueError(f"bad nameserver {text!r}")
        port = int(port_text)
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(f"a nameserver must be an IP address[:port], not {text!r}") from None
    if not 0 < port < 65536:
        raise ValueError(f"bad nameserver port in {text!r}")
    return dns.nameserver.Do53Nameserver(address, port)


def _nameserver_text(address: str, port: int) -> str:
    if port == 53:
        return address
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _nameserver_list(value: Iterable[str]) -> list[str]:
    if isinstance(value, str):
        raise TypeError("nameservers must be a list of strings, not one string")
    nameservers = list(value)
    for text in nameservers:
        _nameserver(text)
    return nameservers


def _system_nameservers() -> list[str]:
    """The nameservers of /etc/resolv.conf (reads a file: call it in a worker thread)."""
    try:
        resolver = dns.resolver.Resolver(configure=True)
    except dns.resolver.NoResolverConfiguration:
        return []
    return [str(nameserver) for nameserver in resolver.nameservers]


def _resolver(
    nameservers: list[str], timeout: float, lifetime: float, cache: Any
) -> dns.asyncresolver.Resolver:
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [_nameserver(text) for text in nameservers]
    resolver.timeout = timeout
    resolver.lifetime = lifetime
    resolver.cache = cache
    return resolver


class DNSCache(dns.resolver.Cache):
    """dnspython's cache (answers kept for their TTL; TTL 0 is not kept), except that a
    negative answer without an SOA record is not kept either (RFC 2308 section 5)
    instead of for dnspython's default five minutes."""

    def put(self, key: Any, value: dns.resolver.Answer) -> None:
        if value.rrset is None and not any(
            rrset.rdtype == dns.rdatatype.SOA for rrset in value.response.authority
        ):
            return
        super().put(key, value)


class DNSManager:
    """Chooses the nameservers every DNSLookup uses (a singleton).

    A probe asks the local nameservers (``system_nameservers``, or those of
    /etc/resolv.conf when it is None) for the NAPTR record of ``probe_domain`` and the
    SRV record of ``_sip._udp.<probe_domain>``. If they answer, they are used. If not,
    ``fallback_nameservers`` are probed and used when they answer, and the local ones
    are probed again ``probe_interval`` seconds later: local nameservers are always
    preferred. If neither answers, the local ones are kept and probed again later.
    Every setting is an attribute to change before :meth:`start` (tests point them at
    127.0.0.1); ``authoritative_port`` is the port DNSLookup uses to query the
    authoritative nameservers it finds through NS records.
    """

    _instance: ClassVar[DNSManager | None] = None

    system_nameservers: list[str] | None
    fallback_nameservers: list[str]
    probe_domain: str
    probe_interval: float
    probe_timeout: float
    probe_lifetime: float
    authoritative_port: int

    def __new__(cls) -> DNSManager:
        if cls._instance is None:
            instance = super().__new__(cls)
            instance.system_nameservers = None
            instance.fallback_nameservers = ["8.8.8.8", "8.8.4.4"]
            instance.probe_domain = "sip2sip.info"
            instance.probe_interval = 15.0
            instance.probe_timeout = 1.0
            instance.probe_lifetime = 3.0
            instance.authoritative_port = 53
            instance._nameservers = None
            instance._loop = None
            instance._task = None
            instance._wakeup = None
            cls._instance = instance
        return cls._instance

    @property
    def nameservers(self) -> list[str] | None:
        """The nameservers in use, None until the first probe has finished."""
        return None if self._nameservers is None else list(self._nameservers)

    def start(self) -> None:
        """Start probing on the SIP thread; returns at once. Callable from any thread."""
        if self._loop is not None:
            raise RuntimeError("DNSManager is already started")
        if self.system_nameservers is not None:
            self.system_nameservers = _nameserver_list(self.system_nameservers)
        self.fallback_nameservers = _nameserver_list(self.fallback_nameservers)
        try:
            dns.name.from_text(self.probe_domain)
        except dns.exception.DNSException as error:
            raise ValueError(f"bad probe_domain {self.probe_domain!r}: {error}") from None
        self._loop = _target_loop()
        self._wakeup = asyncio.Event()
        _soon(self._loop, self._begin)

    def _begin(self) -> None:
        if self._loop is not None and self._task is None:
            self._task = self._loop.create_task(self._run())

    def stop(self) -> None:
        """Stop probing (callable from any thread); the nameservers found stay in use."""
        loop, self._loop = self._loop, None
        if loop is not None and not loop.is_closed():
            _soon(loop, self._end)

    def _end(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def probe(self) -> None:
        """Probe again now, e.g. after the network changed. Needs :meth:`start` first."""
        if self._loop is None:
            raise RuntimeError("DNSManager is not started")
        _soon(self._loop, self._wakeup.set)

    async def local_nameservers(self) -> list[str]:
        """The configured local nameservers, or the system's (read in a worker thread)."""
        if self.system_nameservers is not None:
            return list(self.system_nameservers)
        return await run_in_worker(_system_nameservers)

    async def _run(self) -> None:
        while True:
            self._wakeup.clear()
            try:
                again = await self._probe()
            except Exception:
                _log.exception("probing the nameservers failed")
                again = True
            try:
                async with asyncio.timeout(self.probe_interval if again else None):
                    await self._wakeup.wait()
            except TimeoutError:
                pass

    async def _probe(self) -> bool:
        """Choose the nameservers; True when the local ones failed (probe again later)."""
        local = await self.local_nameservers()
        if local and await self._answers(local):
            self._set_nameservers(local)
            return False
        if self.fallback_nameservers and await self._answers(self.fallback_nameservers):
            self._set_nameservers(self.fallback_nameservers)
        else:
            self._set_nameservers(local)
        return True

    async def _answers(self, nameservers: list[str]) -> bool:
        resolver = _resolver(nameservers, self.probe_timeout, self.probe_lifetime, None)
        try:
            domain = dns.name.from_text(self.probe_domain)
            await resolver.resolve(domain, "NAPTR", search=False)
            await resolver.resolve(dns.name.from_text("_sip._udp", domain), "SRV", search=False)
        except dns.exception.DNSException:
            return False
        return True

    def _set_nameservers(self, nameservers: list[str]) -> None:
        previous, self._nameservers = self._nameservers, list(nameservers)
        if previous is None:
            name = "DNSResolverDidInitialize"
        elif previous != nameservers:
            name = "DNSNameserversDidChange"
        else:
            return
        NotificationCenter().post_notification(
            name,
            sender=self,
            data=NotificationData(nameservers=list(nameservers)),
        )


@dataclass(frozen=True)
class SRVRecord:
    """The fields of an SRV record that order and address a server."""

    priority: int
    weight: int
    port: int
    target: str


def order_srv_records(records: Iterable[SRVRecord], rng: random.Random) -> list[SRVRecord]:
    """Order SRV records as RFC 2782 says: by priority, weighted-random within one."""
    records = list(records)
    ordered: list[SRVRecord] = []
    for priority in sorted({record.priority for record in records}):
        # Zero weights first, so that they are chosen only when the draw is 0.
        remaining = sorted(
            (r for r in records if r.priority == priority), key=lambda r: r.weight > 0
        )
        while remaining:
            draw = rng.randint(0, sum(record.weight for record in remaining))
            running = 0
            for index, record in enumerate(remaining):
                running += record.weight
                if running >= draw:
                    ordered.append(remaining.pop(index))
                    break
    return ordered


def _describe(error: BaseException, name: str, rdtype: str) -> str:
    if isinstance(error, dns.resolver.NXDOMAIN):
        return f"{name} does not exist"
    if isinstance(error, dns.resolver.NoAnswer):
        return f"{name} has no {rdtype} record"
    if isinstance(error, dns.exception.Timeout):
        return f"no nameserver answered the {rdtype} query for {name} in time"
    if isinstance(error, dns.resolver.NoNameservers):
        return f"every nameserver failed to answer the {rdtype} query for {name}"
    return f"the {rdtype} query for {name} failed: {error}"


class _Lookup:
    """One lookup: its nameservers, deadline, errors and trace notifications."""

    def __init__(
        self,
        owner: DNSLookup,
        context: str,
        uri: URILike,
        service: str | None,
        timeout: float,
        lifetime: float,
    ) -> None:
        self.owner = owner
        self.context = context
        self.uri = uri
        self.service = service
        self.timeout = timeout
        self.lifetime = lifetime
        self.deadline = 0.0  # set when the lookup starts running
        self.local: list[str] = []
        self.authoritative: list[str] = []
        self.errors: list[tuple[BaseException, str]] = []

    async def query(
        self, name: str, rdtype: str, *, quick: bool = False, record: bool = True
    ) -> dns.resolver.Answer:
        """Query the authoritative nameservers (the local ones if they fail or are unknown).

        ``quick`` limits the query to one timeout, as is every query to authoritative
        nameservers: one that does not answer (a firewall) is dropped for the rest of
        the lookup. Failures go into the final error message unless ``record`` is False.
        """
        try:
            if self.authoritative:
                try:
                    return await self._query(self.authoritative, name, rdtype, True)
                except dns.exception.Timeout:
                    self.authoritative = []
                except dns.resolver.NoNameservers:
                    pass
            return await self._query(self.local, name, rdtype, quick)
        except dns.exception.DNSException as error:
            if record:
                self.errors.append((error, _describe(error, name, rdtype)))
            raise

    async def _query(
        self, nameservers: list[str], name: str, rdtype: str, quick: bool
    ) -> dns.resolver.Answer:
        remaining = self.deadline - asyncio.get_running_loop().time()
        answer = error = None
        try:
            if remaining <= 0:
                raise dns.exception.Timeout(timeout=self.lifetime)
            lifetime = min(remaining, self.timeout) if quick else remaining
            resolver = _resolver(
                nameservers, min(self.timeout, lifetime), lifetime, DNSLookup.cache
            )
            answer = await resolver.resolve(dns.name.from_text(name), rdtype, search=False)
            return answer
        except dns.exception.DNSException as exception:
            error = exception
            raise
        finally:
            self.trace(rdtype, name, nameservers, answer, error)

    def trace(
        self,
        rdtype: str,
        name: str,
        nameservers: list[str],
        answer: dns.resolver.Answer | None,
        error: BaseException | None,
    ) -> None:
        fields: dict[str, Any] = {
            "query_type": rdtype,
            "query_name": name,
            "answer": answer,
            "error": error,
            "context": self.context,
            "uri": self.uri,
            "nameservers": list(nameservers),
        }
        if self.service is not None:
            fields["service"] = self.service
        NotificationCenter().post_notification(
            "DNSLookupTrace", sender=self.owner, data=NotificationData(**fields)
        )

    def failure(self, what: str) -> DNSLookupError:
        timeouts = [text for error, text in self.errors if isinstance(error, dns.exception.Timeout)]
        if timeouts:
            reason = f"{timeouts[0]} (lifetime {self.lifetime:g} s)"
        elif self.errors:
            reason = self.errors[-1][1]
        else:
            reason = "no usable record"
        return DNSLookupError(f"{what}: {reason}")

    async def find_authoritative(self, domain: str) -> None:
        """Use the nameservers of the domain's NS records, when it has some."""
        try:
            answer = await self.query(domain, "NS", quick=True, record=False)
        except dns.exception.DNSException:
            return
        glue: dict[dns.name.Name, list[str]] = {}
        for rrset in answer.response.additional:
            if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                glue.setdefault(rrset.name, []).extend(rdata.address for rdata in rrset)
        port = DNSManager().authoritative_port
        servers: list[str] = []
        for record in answer:
            addresses = glue.get(record.target) or await self.addresses(
                record.target.to_text(omit_final_dot=True), record=False
            )
            servers.extend(_nameserver_text(address, port) for address in addresses)
        self.authoritative = list(dict.fromkeys(servers))

    async def addresses(self, host: str, *, record: bool = True) -> list[str]:
        """The IPv4 then IPv6 addresses of a host (A and AAAA asked at once)."""
        answers = await asyncio.gather(
            self.query(host, "A", record=record),
            self.query(host, "AAAA", record=record),
            return_exceptions=True,
        )
        addresses = []
        for answer in answers:
            if isinstance(answer, dns.exception.DNSException):
                continue
            if isinstance(answer, BaseException):
                raise answer
            addresses.extend(rdata.address for rdata in answer)
        return addresses

    async def srv_targets(self, name: str) -> list[tuple[str, int]]:
        """The (address, port) pairs of an SRV name, in RFC 2782 order."""
        try:
            answer = await self.query(name, "SRV")
        except dns.exception.DNSException:
            return []
        records = [
            SRVRecord(rdata.priority, rdata.weight, rdata.port, rdata.target.to_text(True))
            for rdata in answer
            if rdata.target != dns.name.root
        ]
        targets = []
        for record in order_srv_records(records, self.owner.rng):
            targets.extend(
                (address, record.port) for address in await self.addresses(record.target)
            )
        return targets


def _ip_literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def _domain(uri: URILike) -> str:
    """The URI's host as an absolute domain name; ValueError if it is not one."""
    host = uri.host
    if not isinstance(host, str) or not host:
        raise ValueError(f"the URI has no host: {uri!r}")
    if _ip_literal(host) is not None:
        return host
    try:
        return dns.name.from_text(host).to_text(omit_final_dot=True).lower()
    except dns.exception.DNSException as error:
        raise ValueError(f"{host!r} is not a valid domain name: {error}") from None


def _check_times(timeout: float, lifetime: float) -> None:
    if not timeout > 0 or not lifetime > 0:
        raise ValueError("timeout and lifetime must be positive numbers of seconds")


def _default_transport(transports: list[str]) -> str:
    """RFC 3263 4.1: UDP for sip (TCP, then TLS, when UDP is not supported), TLS for sips."""
    return next(transport for transport in _TRANSPORTS if transport in transports)


def _dedup(routes: list[Route]) -> list[Route]:
    unique: list[Route] = []
    for route in routes:
        if route not in unique:
            unique.append(route)
    return unique


def _consume_exception(task: asyncio.Task[Any]) -> None:
    # The failure is reported by notification; nobody has to await the task.
    if not task.cancelled():
        task.exception()


class DNSLookup:
    """Looks up SIP proxies, STUN servers, MSRP relays and XCAP servers.

    Each method validates its arguments at once (ValueError, TypeError), then returns
    the task doing the lookup (see the module's docstring); the result is posted as
    DNSLookupDidSucceed or DNSLookupDidFail and is also the task's result (or
    DNSLookupError). Every DNS query is posted as DNSLookupTrace. ``rng`` orders
    equal-priority SRV records (tests seed it). ``cache`` is shared by all lookups.
    """

    cache: ClassVar[DNSCache] = DNSCache()

    def __init__(self, *, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()

    def lookup_sip_proxy(
        self,
        uri: URILike,
        supported_transports: Iterable[str],
        timeout: float = 3.0,
        lifetime: float = 15.0,
    ) -> asyncio.Task[list[Route]] | concurrent.futures.Future[list[Route]]:
        """The routes to the SIP proxy of ``uri`` (RFC 3263), most preferred first.

        An IP address or an explicit port skips NAPTR and SRV. A transport parameter
        is used when supported (SRV of that transport, then A/AAAA). Otherwise NAPTR
        records give the order (records of equal order and preference follow
        ``supported_transports``); without usable NAPTR records SRV records are asked
        for each supported transport in the order of ``supported_transports``; without
        SRV records the host's addresses are used with the RFC 3263 default transport
        and port. A sips URI uses TLS only.
        """
        if isinstance(supported_transports, str):
            raise TypeError("supported_transports must be a list such as ['udp', 'tcp']")
        transports = [transport.lower() for transport in supported_transports]
        if not transports or any(t not in _TRANSPORTS for t in transports):
            raise ValueError(
                f"supported_transports must be a non-empty sublist of {list(_TRANSPORTS)},"
                f" not {supported_transports!r}"
            )
        host = _domain(uri)
        _check_times(timeout, lifetime)
        return self._start(
            "lookup_sip_proxy",
            uri,
            None,
            timeout,
            lifetime,
            lambda lookup: self._sip_proxy(lookup, uri, host, list(dict.fromkeys(transports))),
        )

    def lookup_service(
        self, uri: URILike, service: str, timeout: float = 3.0, lifetime: float = 15.0
    ) -> asyncio.Task[list[tuple[str, int]]] | concurrent.futures.Future[list[tuple[str, int]]]:
        """The (address, port) pairs of the "stun" or "msrprelay" servers of ``uri.host``.

        SRV records (_stun._udp, _msrps._tcp) first; without them the host's addresses
        with the service's default port (3478, 2855).
        """
        if service not in _SERVICES:
            raise ValueError(f"service must be one of {sorted(_SERVICES)}, not {service!r}")
        host = _domain(uri)
        _check_times(timeout, lifetime)
        return self._start(
            "lookup_service",
            uri,
            service,
            timeout,
            lifetime,
            lambda lookup: self._service(lookup, host, service),
        )

    def lookup_xcap_server(
        self, uri: URILike, timeout: float = 3.0, lifetime: float = 15.0
    ) -> asyncio.Task[list[str]] | concurrent.futures.Future[list[str]]:
        """The http(s) URIs among the TXT records of xcap.<uri.host>."""
        host = _domain(uri)
        _check_times(timeout, lifetime)
        return self._start(
            "lookup_xcap_server",
            uri,
            None,
            timeout,
            lifetime,
            lambda lookup: self._xcap_server(lookup, host),
        )

    def _start(
        self,
        context: str,
        uri: URILike,
        service: str | None,
        timeout: float,
        lifetime: float,
        work: Callable[[_Lookup], Awaitable[list[T]]],
    ) -> asyncio.Task[list[T]] | concurrent.futures.Future[list[T]]:
        loop = _target_loop()
        coroutine = self._run(_Lookup(self, context, uri, service, timeout, lifetime), work)
        if loop is not _running_loop():
            return asyncio.run_coroutine_threadsafe(coroutine, loop)
        task = loop.create_task(coroutine)
        task.add_done_callback(_consume_exception)
        return task

    async def _run(self, lookup: _Lookup, work: Callable[[_Lookup], Awaitable[list[T]]]) -> list[T]:
        center = NotificationCenter()
        lookup.deadline = asyncio.get_running_loop().time() + lookup.lifetime
        try:
            manager = DNSManager()
            lookup.local = manager.nameservers or await manager.local_nameservers()
            if not lookup.local:
                raise DNSLookupError("no nameservers are configured")
            result = await work(lookup)
        except asyncio.CancelledError:
            center.post_notification(
                "DNSLookupDidFail",
                sender=self,
                data=NotificationData(error="the lookup was cancelled"),
            )
            raise
        except Exception as error:
            center.post_notification(
                "DNSLookupDidFail",
                sender=self,
                data=NotificationData(error=str(error)),
            )
            raise
        center.post_notification(
            "DNSLookupDidSucceed",
            sender=self,
            data=NotificationData(result=result),
        )
        return result

    async def _sip_proxy(
        self, lookup: _Lookup, uri: URILike, host: str, supported: list[str]
    ) -> list[Route]:
        parameter = uri.parameters.get("transport")
        transport = parameter.lower() if isinstance(parameter, str) else None
        candidates = supported
        if uri.secure:
            if transport not in (None, "tls", "tcp"):
                raise DNSLookupError(f"a sips URI cannot use transport={transport}")
            if "tls" not in supported:
                raise DNSLookupError(
                    f"a sips URI needs TLS, which is not among the supported transports {supported}"
                )
            candidates = ["tls"]
            transport = transport and "tls"
        if transport is not None and transport not in supported:
            raise DNSLookupError(
                f"transport={transport} of the URI is not a supported transport {supported}"
            )
        what = f"no SIP proxy found for {uri.host}"
        ip = _ip_literal(host)
        if ip is not None or uri.port is not None:
            transport = transport or _default_transport(candidates)
            port = uri.port or _DEFAULT_PORTS[transport]
            addresses = [ip] if ip is not None else await lookup.addresses(host)
            if not addresses:
                raise lookup.failure(what)
            return [Route(address, port, transport) for address in addresses]
        await lookup.find_authoritative(host)
        if transport is not None:
            routes = await self._srv_routes(lookup, host, [transport])
        else:
            routes = await self._naptr_routes(lookup, host, candidates)
            routes = routes or await self._srv_routes(lookup, host, candidates)
            transport = _default_transport(candidates)
        if not routes:
            port = _DEFAULT_PORTS[transport]
            routes = [Route(a, port, transport) for a in await lookup.addresses(host)]
        if not routes:
            raise lookup.failure(what)
        return _dedup(routes)

    async def _naptr_routes(self, lookup: _Lookup, host: str, candidates: list[str]) -> list[Route]:
        try:
            answer = await lookup.query(host, "NAPTR")
        except dns.exception.DNSException:
            return []
        usable = []
        for rdata in answer:
            transport = _NAPTR_SERVICES.get(rdata.service.decode("ascii", "replace").lower())
            if rdata.flags.lower() == b"s" and transport in candidates:
                rank = (rdata.order, rdata.preference, candidates.index(transport))
                usable.append((rank, rdata.replacement.to_text(omit_final_dot=True), transport))
        routes = []
        for _, name, transport in sorted(usable):
            routes.extend(
                Route(address, port, transport) for address, port in await lookup.srv_targets(name)
            )
        return routes

    async def _srv_routes(self, lookup: _Lookup, host: str, transports: list[str]) -> list[Route]:
        routes = []
        for transport in transports:
            name = f"{_SRV_PREFIXES[transport]}.{host}"
            routes.extend(
                Route(address, port, transport) for address, port in await lookup.srv_targets(name)
            )
        return routes

    async def _service(self, lookup: _Lookup, host: str, service: str) -> list[tuple[str, int]]:
        prefix, default_port = _SERVICES[service]
        ip = _ip_literal(host)
        if ip is not None:
            return [(ip, default_port)]
        await lookup.find_authoritative(host)
        servers = await lookup.srv_targets(f"{prefix}.{host}")
        if not servers:
            servers = [(address, default_port) for address in await lookup.addresses(host)]
        if not servers:
            raise lookup.failure(f"no {service} server found for {host}")
        return list(dict.fromkeys(servers))

    async def _xcap_server(self, lookup: _Lookup, host: str) -> list[str]:
        what = f"no XCAP server found for {host}"
        if _ip_literal(host) is not None:
            raise DNSLookupError(f"{what}: an IP address has no xcap TXT record")
        await lookup.find_authoritative(host)
        try:
            answer = await lookup.query(f"xcap.{host}", "TXT")
        except dns.exception.DNSException:
            raise lookup.failure(what) from None
        uris = []
        for rdata in answer:
            text = b"".join(rdata.strings).decode("utf-8", "replace").strip()
            try:
                parts = urlsplit(text)
            except ValueError:
                continue
            if parts.scheme.lower() in ("http", "https") and parts.netloc:
                uris.append(text)
        if not uris:
            raise DNSLookupError(f"{what}: the TXT records of xcap.{host} hold no http(s) URI")
        return uris
