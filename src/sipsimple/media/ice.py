"""ICE (RFC 8445) for one RTP stream through aioice, and its SDP attributes (RFC 8839).

aioice runs the connectivity checks, nomination, consent freshness and STUN/TURN gathering.
This module adds what a SIP user agent needs around it: candidates as a=candidate values and
back, the peer's ICE description read from its SDP, host candidates on addresses we choose
(aioice's own list leaves out loopback), a bound on the negotiation time, the states and
results the RTPTransport turns into its ICE notifications, and the fallback of sending to the
peer's c=/m= address from our default candidate's socket when the peer does no ICE (or ICE
failed), which is what a SIP peer without ICE expects.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import aioice
from aioice.candidate import candidate_foundation, candidate_priority
from aioice.ice import CandidatePair, StunProtocol, relayed_candidate, server_reflexive_candidate
from aioice.turn import UDP_SOCKET_BUFFER_SIZE

from sipsimple.core.sdp.model import BaseSDPMediaStream, BaseSDPSession, SDPAttribute
from sipsimple.media.errors import MediaError

__all__ = [
    "DEFAULT_TIMEOUT",
    "ICE_STATES",
    "RTCP_COMPONENT",
    "RTP_COMPONENT",
    "ICECandidate",
    "ICECheck",
    "ICEDatagram",
    "ICEDescription",
    "ICEError",
    "ICEEvent",
    "ICENegotiationDidFail",
    "ICENegotiationDidSucceed",
    "ICENegotiationStateDidChange",
    "ICEParseError",
    "ICESession",
    "ICEStateError",
    "candidate_from_sdp",
    "candidate_to_sdp",
    "parse_remote_candidates",
]

logger = logging.getLogger(__name__)

RTP_COMPONENT = 1
RTCP_COMPONENT = 2
# The states of the original core's ICE transport, in the order a session goes through them;
# CLOSED comes from close() and is not announced.
ICE_STATES = ("NULL", "GATHERING", "GATHERING_COMPLETE", "NEGOTIATING", "RUNNING", "FAILED")
DEFAULT_TIMEOUT = 20.0
# Datagrams received and not yet read; past this many, new ones are dropped.
MAX_QUEUED_DATAGRAMS = 512
_BIND_ATTEMPTS = 20

_ICE_CHARS = re.compile(r"[A-Za-z0-9+/]+")
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")
_ADDRESS = re.compile(r"[0-9A-Za-z.:\-_%]+")


class ICEParseError(ValueError):
    """An a=candidate or a=remote-candidates value against RFC 8839 section 5."""


class ICEError(MediaError):
    """ICE cannot go on: no local candidate could be gathered."""


class ICEStateError(RuntimeError):
    """An ICESession method was called in a state that does not allow it."""


def _port(text: str, what: str) -> int:
    if not text.isdigit() or len(text) > 5 or int(text) > 65535:
        raise ICEParseError(f"{what} {text[:20]!r} is not a port number")
    return int(text)


def _address(text: str, what: str) -> str:
    if _ADDRESS.fullmatch(text) is None:
        raise ICEParseError(f"{what} {text[:40]!r} is not an address")
    return text


def candidate_from_sdp(value: str) -> aioice.Candidate:
    """Parse the value of an a=candidate line (what follows ``candidate:``).

    Unknown transports, types and extensions are kept, so the caller can decide what to skip.
    """
    fields = value.split()
    if len(fields) < 8:
        raise ICEParseError(
            "a=candidate needs foundation, component, transport, priority, "
            "address, port and 'typ <type>'"
        )
    foundation, component, transport, priority, address, port, typ, kind, *rest = fields
    if len(foundation) > 32 or _ICE_CHARS.fullmatch(foundation) is None:
        raise ICEParseError(f"candidate foundation {foundation[:40]!r} is not 1 to 32 ice-chars")
    if not component.isdigit() or not 1 <= int(component) <= 256 or len(component) > 3:
        raise ICEParseError(f"candidate component {component[:10]!r} is not 1 to 256")
    if _TOKEN.fullmatch(transport) is None:
        raise ICEParseError(f"candidate transport {transport[:20]!r} is not a token")
    if not priority.isdigit() or len(priority) > 10 or not 1 <= int(priority) < 1 << 31:
        raise ICEParseError(f"candidate priority {priority[:20]!r} is not 1 to 2^31-1")
    if typ != "typ" or _TOKEN.fullmatch(kind) is None:
        raise ICEParseError("candidate has no 'typ <type>' after its port")
    if len(rest) % 2:
        raise ICEParseError("candidate extensions must come as name and value pairs")
    extensions = dict(zip(rest[::2], rest[1::2], strict=True))
    raddr = extensions.get("raddr")
    rport = extensions.get("rport")
    generation = extensions.get("generation")
    if generation is not None and (not generation.isdigit() or len(generation) > 10):
        raise ICEParseError(f"candidate generation {generation[:20]!r} is not a number")
    return aioice.Candidate(
        foundation=foundation,
        component=int(component),
        transport=transport,
        priority=int(priority),
        host=_address(address, "candidate address"),
        port=_port(port, "candidate port"),
        type=kind,
        related_address=_address(raddr, "raddr") if raddr is not None else None,
        related_port=_port(rport, "rport") if rport is not None else None,
        tcptype=extensions.get("tcptype"),
        generation=int(generation) if generation is not None else None,
    )


def candidate_to_sdp(candidate: aioice.Candidate) -> str:
    """The value of an a=candidate line for ``candidate`` (the transport written as UDP/TCP)."""
    value = (
        f"{candidate.foundation} {candidate.component} {candidate.transport.upper()} "
        f"{candidate.priority} {candidate.host} {candidate.port} typ {candidate.type}"
    )
    if candidate.related_address is not None:
        value += f" raddr {candidate.related_address}"
    if candidate.related_port is not None:
        value += f" rport {candidate.related_port}"
    if candidate.tcptype is not None:
        value += f" tcptype {candidate.tcptype}"
    if candidate.generation is not None:
        value += f" generation {candidate.generation}"
    return value


def parse_remote_candidates(value: str) -> tuple[tuple[int, str, int], ...]:
    """Parse a=remote-candidates: (component, address, port) for each selected remote candidate."""
    fields = value.split()
    if not fields or len(fields) % 3:
        raise ICEParseError("a=remote-candidates needs component, address and port triples")
    result = []
    for component, address, port in zip(fields[::3], fields[1::3], fields[2::3], strict=True):
        if not component.isdigit() or not 1 <= int(component) <= 256 or len(component) > 3:
            raise ICEParseError(f"remote candidate component {component[:10]!r} is not 1 to 256")
        result.append((int(component), _address(address, "address"), _port(port, "port")))
    return tuple(result)


@dataclass(frozen=True)
class ICEDescription:
    """The ICE part of a peer's SDP for one m= section (session-level values filled in).

    Candidate lines that do not parse are logged and left out: one bad line from the network
    does not cost the whole negotiation.
    """

    ufrag: str
    pwd: str
    candidates: tuple[aioice.Candidate, ...] = ()
    lite: bool = False
    remote_candidates: tuple[tuple[int, str, int], ...] = ()
    options: tuple[str, ...] = ()

    @classmethod
    def from_sdp(
        cls, media: BaseSDPMediaStream, session: BaseSDPSession | None = None
    ) -> ICEDescription | None:
        """The peer's ICE description, or None when the m= section has no ufrag and pwd."""
        session_attributes = session.attributes if session is not None else None

        def lookup(name: str) -> str | None:
            value = media.attributes.getfirst(name)
            if value is None and session_attributes is not None:
                value = session_attributes.getfirst(name)
            return value

        ufrag, pwd = lookup("ice-ufrag"), lookup("ice-pwd")
        if not ufrag or not pwd:
            return None
        candidates = []
        for value in media.attributes.getall("candidate"):
            try:
                candidates.append(candidate_from_sdp(value))
            except ICEParseError as exc:
                logger.info("ignoring a=candidate:%s (%s)", value[:120], exc)
        remote_candidates: tuple[tuple[int, str, int], ...] = ()
        value = media.attributes.getfirst("remote-candidates")
        if value is not None:
            try:
                remote_candidates = parse_remote_candidates(value)
            except ICEParseError as exc:
                logger.info("ignoring a=remote-candidates:%s (%s)", value[:120], exc)
        lite = session_attributes is not None and "ice-lite" in session_attributes
        options = tuple((lookup("ice-options") or "").split())
        return cls(ufrag, pwd, tuple(candidates), lite, remote_candidates, options)


@dataclass(frozen=True)
class ICECandidate:
    """A candidate as the ICE notifications report it (component 1 is RTP, 2 RTCP)."""

    component: int
    type: str
    address: str
    port: int
    priority: int
    foundation: str
    transport: str = "UDP"
    related_address: str | None = None
    related_port: int | None = None

    @classmethod
    def from_aioice(cls, candidate: aioice.Candidate) -> ICECandidate:
        return cls(
            candidate.component,
            candidate.type,
            candidate.host,
            candidate.port,
            candidate.priority,
            candidate.foundation,
            candidate.transport.upper(),
            candidate.related_address,
            candidate.related_port,
        )

    def __str__(self) -> str:
        name = "RTP" if self.component == RTP_COMPONENT else "RTCP"
        related = f" raddr={self.related_address}" if self.related_address else ""
        return (
            f"({name}) {self.address}:{self.port}{related} "
            f"priority={self.priority} type={self.type}"
        )


@dataclass(frozen=True)
class ICECheck:
    """A candidate pair and its check state (FROZEN, WAITING, IN_PROGRESS, SUCCEEDED, FAILED)."""

    local_candidate: ICECandidate
    remote_candidate: ICECandidate
    state: str
    nominated: bool

    @classmethod
    def from_pair(cls, pair: CandidatePair) -> ICECheck:
        return cls(
            ICECandidate.from_aioice(pair.local_candidate),
            ICECandidate.from_aioice(pair.remote_candidate),
            pair.state.name,
            pair.nominated,
        )

    def __str__(self) -> str:
        local, remote = self.local_candidate, self.remote_candidate
        nominated = "nominated" if self.nominated else "not nominated"
        return (
            f"{local.address}:{local.port} -> {remote.address}:{remote.port} "
            f"({self.state.lower()}, {nominated})"
        )


@dataclass(frozen=True)
class ICENegotiationStateDidChange:
    prev_state: str
    state: str


@dataclass(frozen=True)
class ICENegotiationDidSucceed:
    """ICE found a pair for every component; ``valid_pairs`` holds the selected pair of each.

    ``valid_list`` is every pair whose check succeeded, best first. ``duration`` counts seconds
    from start() on.
    """

    duration: float
    local_candidates: tuple[ICECandidate, ...]
    remote_candidates: tuple[ICECandidate, ...]
    valid_pairs: tuple[ICECheck, ...]
    valid_list: tuple[ICECheck, ...]

    @property
    def selected_pair(self) -> ICECheck:
        """The RTP component's pair (local and remote candidate types, addresses)."""
        return self.valid_pairs[0]


@dataclass(frozen=True)
class ICENegotiationDidFail:
    reason: str
    duration: float


ICEEvent = ICENegotiationStateDidChange | ICENegotiationDidSucceed | ICENegotiationDidFail


class ICEDatagram(NamedTuple):
    """A datagram received on one of our candidates: its bytes, component and source."""

    data: bytes
    component: int
    address: tuple[str, int]


class _Protocol(StunProtocol):
    """aioice's socket protocol, keeping the source address of the media it receives.

    RFC 7983 demultiplexing: a first byte of 0 to 3 is STUN, anything else is media.
    """

    receiver: _Connection

    def datagram_received(self, data: bytes | str, addr: tuple[Any, ...]) -> None:
        if isinstance(data, bytes) and data and data[0] > 3:
            self.receiver.media_received(data, self.local_candidate.component, addr)
        else:
            super().datagram_received(data, addr)


class _Connection(aioice.Connection):
    """aioice's Connection with our sockets and the few things it keeps private that we need.

    Written against aioice 0.13. Host sockets are bound here (on the addresses we are given,
    within a port range if one is set) with a protocol that keeps each datagram's source;
    STUN and TURN gathering use aioice's own functions. The rest: the nominated pairs and the
    check list for the success report, stopping the checks at our deadline, and a pair that
    no check selected (the peer does no ICE).
    """

    def __init__(
        self, addresses: list[str] | None, port_range: tuple[int, int] | None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._addresses = addresses
        self._port_range = port_range
        self._datagrams: asyncio.Queue[ICEDatagram | None] = asyncio.Queue()
        self.dropped = 0

    async def gather_candidates(self) -> None:
        if self._addresses is None:
            await super().gather_candidates()
            return
        if self._local_candidates_start:
            return
        self._local_candidates_start = True
        gathered = await asyncio.gather(
            *(
                self.get_component_candidates(component=component, addresses=self._addresses)
                for component in sorted(self._components)
            )
        )
        for candidates in gathered:
            self._local_candidates += candidates
        self._local_candidates_end = True

    async def get_component_candidates(
        self, component: int, addresses: list[str], timeout: int = 5
    ) -> list[aioice.Candidate]:
        candidates = []
        host_protocols = []
        for address in addresses:
            try:
                protocol = await self._bind(address)
            except OSError as exc:
                logger.info("cannot bind an ICE socket on %s: %s", address, exc)
                continue
            host, port = protocol.transport.get_extra_info("sockname")[:2]
            protocol.local_candidate = aioice.Candidate(
                foundation=candidate_foundation("host", "udp", host),
                component=component,
                transport="udp",
                priority=candidate_priority(component, "host"),
                host=host,
                port=port,
                type="host",
            )
            candidates.append(protocol.local_candidate)
            host_protocols.append(protocol)
        self._protocols += host_protocols

        tasks: list[asyncio.Task[tuple[aioice.Candidate, StunProtocol | None]]] = []
        if self.stun_server is not None:
            for protocol in host_protocols:
                if ipaddress.ip_address(protocol.local_candidate.host).version == 4:
                    coroutine = server_reflexive_candidate(protocol, self.stun_server)
                    tasks.append(asyncio.create_task(coroutine))
        if self.turn_server is not None:
            coroutine = relayed_candidate(
                component=component,
                hide_related_address=False,
                protocol_factory=lambda: _Protocol(self),
                turn_server=self.turn_server,
                turn_username=self.turn_username,
                turn_password=self.turn_password,
                turn_ssl=self.turn_ssl,
                turn_transport=self.turn_transport,
            )
            tasks.append(asyncio.create_task(coroutine))
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            for task in done:
                if task.exception() is not None:
                    logger.info("ICE server candidate not gathered: %r", task.exception())
                    continue
                candidate, relay_protocol = task.result()
                candidates.append(candidate)
                if relay_protocol is not None:
                    self._protocols.append(relay_protocol)
        return candidates

    async def _bind(self, address: str) -> _Protocol:
        if self._port_range is None:
            ports = [0]
        else:
            low, high = self._port_range
            ports = random.sample(range(low, high + 1), min(_BIND_ATTEMPTS, high - low + 1))
        loop = asyncio.get_running_loop()
        error = OSError(f"no free port in {self._port_range}")
        for port in ports:
            try:
                transport, protocol = await loop.create_datagram_endpoint(
                    lambda: _Protocol(self), local_addr=(address, port)
                )
            except OSError as exc:
                error = exc
                continue
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_SOCKET_BUFFER_SIZE)
            return protocol
        raise error

    def media_received(self, data: bytes, component: int, addr: tuple[Any, ...]) -> None:
        if self._datagrams.qsize() >= MAX_QUEUED_DATAGRAMS:
            self.dropped += 1
            return
        self._datagrams.put_nowait(ICEDatagram(data, component, (addr[0], addr[1])))

    def data_received(self, data: bytes, component: int) -> None:
        """aioice hands over what is not valid STUN among bytes starting with 0 to 3: drop it."""
        self.dropped += 1

    async def receive(self) -> ICEDatagram:
        if not self._nominated:
            raise ConnectionError("cannot receive: no candidate pair is selected")
        datagram = await self._datagrams.get()
        if datagram is None:
            raise ConnectionError("the ICE connection was closed")
        return datagram

    def protocol_lost(self, protocol: StunProtocol) -> None:
        if any(pair.protocol is protocol for pair in self._nominated.values()):
            self._datagrams.put_nowait(None)
        super().protocol_lost(protocol)

    async def close(self) -> None:
        await super().close()
        self._datagrams.put_nowait(None)

    def nominated_pairs(self) -> list[CandidatePair]:
        return [self._nominated[component] for component in sorted(self._nominated)]

    def check_list(self) -> list[CandidatePair]:
        return list(self._check_list)

    def stop_checks(self) -> None:
        self._check_list_done = True
        for pair in self._check_list:
            if pair.task is not None:
                pair.task.cancel()

    def use_pair(self, local: aioice.Candidate, address: str, port: int) -> None:
        """Send ``local``'s component to (address, port) from the socket behind ``local``."""
        for protocol in self._protocols:
            base = protocol.local_candidate
            if base.component != local.component:
                continue
            if base is local or (
                local.type == "srflx"
                and (base.host, base.port) == (local.related_address, local.related_port)
            ):
                break
        else:
            raise ICEError(f"no socket for the local candidate {local.host}:{local.port}")
        remote = aioice.Candidate("default", local.component, "udp", 1, address, port, "host")
        self._nominated[local.component] = CandidatePair(protocol, remote)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class ICESession:
    """ICE for one RTP stream: RTP is component 1 and, unless ``rtcp_mux``, RTCP component 2.

    Use: ``await gather()``; put ``sdp_attributes()`` (and ``default_candidate()`` as c=/m=/
    a=rtcp) in our SDP; once the peer's description is known ``await start(description,
    controlling=...)`` (the offerer controls), then ``send``/``recv`` once ICE succeeded; or
    ``await start_without_ice(...)`` for a peer without ICE; ``await close()`` at the end.

    ``event_handler`` gets every ICENegotiationStateDidChange, ICENegotiationDidSucceed and
    ICENegotiationDidFail, in order, on the event loop. ``local_addresses`` lists the host
    addresses to gather on (None: every interface but loopback, as aioice does);
    ``stun_server`` and ``turn_server`` are (host, port); host sockets are bound to ports in
    ``port_range`` (inclusive) if given. Negotiation that has not succeeded ``timeout`` seconds
    after start() fails. An ICE restart (the peer's ufrag or pwd changed) takes a new session.
    """

    def __init__(
        self,
        event_handler: Callable[[ICEEvent], None] | None = None,
        *,
        local_addresses: Sequence[str] | None = None,
        stun_server: tuple[str, int] | None = None,
        turn_server: tuple[str, int] | None = None,
        turn_username: str | None = None,
        turn_password: str | None = None,
        rtcp_mux: bool = False,
        port_range: tuple[int, int] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if port_range is not None and not 1 <= port_range[0] <= port_range[1] <= 65535:
            raise ValueError(f"port_range must be (low, high) within 1-65535, got {port_range}")
        if local_addresses is not None:
            bad = [address for address in local_addresses if not _is_ip(address)]
            if bad or not local_addresses:
                raise ValueError(f"local_addresses must be IP addresses, got {local_addresses}")
        if not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds")
        self._handler = event_handler
        self._timeout = timeout
        self.components = (RTP_COMPONENT,) if rtcp_mux else (RTP_COMPONENT, RTCP_COMPONENT)
        self._connection = _Connection(
            list(local_addresses) if local_addresses is not None else None,
            port_range,
            ice_controlling=True,
            components=len(self.components),
            stun_server=stun_server,
            turn_server=turn_server,
            turn_username=turn_username,
            turn_password=turn_password,
        )
        self.state = "NULL"
        self._started = False
        self._started_at = 0.0
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._result: ICENegotiationDidSucceed | None = None

    @property
    def local_username(self) -> str:
        return self._connection.local_username

    @property
    def local_password(self) -> str:
        return self._connection.local_password

    @property
    def controlling(self) -> bool | None:
        """Our role once start() was called (a role conflict may have switched it), else None."""
        return self._connection.ice_controlling if self._started else None

    @property
    def ice_active(self) -> bool:
        """True while the pairs ICE selected carry the media."""
        return self.state == "RUNNING"

    @property
    def local_candidates(self) -> tuple[ICECandidate, ...]:
        return tuple(ICECandidate.from_aioice(c) for c in self._advertised())

    @property
    def selected_pairs(self) -> tuple[ICECheck, ...]:
        """The pair of each component ICE selected; empty unless the state is RUNNING."""
        return self._result.valid_pairs if self._result is not None and self.ice_active else ()

    async def gather(self) -> None:
        """Gather host candidates, and srflx and relay ones from the servers (5 s at most)."""
        self._require("gather()", "NULL")
        self._set_state("GATHERING")
        await self._connection.gather_candidates()
        if not any(c.component == RTP_COMPONENT for c in self._connection.local_candidates):
            self._set_state("FAILED")
            raise ICEError("no local ICE candidate could be gathered for RTP")
        self._set_state("GATHERING_COMPLETE")

    def default_candidate(self, component: int = RTP_COMPONENT) -> ICECandidate:
        """The candidate for c=, m= (component 1) and a=rtcp (component 2) in our SDP.

        Before ICE succeeds, relay beats srflx beats host (RFC 8445 section 5.1.4); after, the
        local candidate of the selected pair.
        """
        self._require_gathered("default_candidate()")
        if component not in self.components:
            raise ValueError(f"component must be one of {self.components}")
        for pair in self.selected_pairs:
            if pair.local_candidate.component == component:
                return pair.local_candidate
        candidate = self._connection.get_default_candidate(component)
        if candidate is None:
            raise ICEError(f"no local candidate for component {component}")
        return ICECandidate.from_aioice(candidate)

    def sdp_attributes(self) -> list[SDPAttribute]:
        """a=ice-ufrag, a=ice-pwd and a=candidate lines for our offer or answer.

        Once ICE succeeded (RFC 8839 section 4.4.1.2.2) only the selected local candidates are
        listed and, if we are controlling, a=remote-candidates names the peer's.
        """
        self._require_gathered("sdp_attributes()")
        attributes = [
            SDPAttribute("ice-ufrag", self.local_username),
            SDPAttribute("ice-pwd", self.local_password),
        ]
        if self.ice_active:
            pairs = self._connection.nominated_pairs()
            candidates = [pair.local_candidate for pair in pairs]
            if self.controlling:
                remote = " ".join(
                    f"{p.component} {p.remote_candidate.host} {p.remote_candidate.port}"
                    for p in pairs
                )
                attributes.append(SDPAttribute("remote-candidates", remote))
        else:
            candidates = self._advertised()
        attributes[2:2] = [SDPAttribute("candidate", candidate_to_sdp(c)) for c in candidates]
        return attributes

    async def start(self, remote: ICEDescription, *, controlling: bool) -> None:
        """Take the peer's description and begin the checks; the outcome arrives as an event.

        A lite peer makes us controlling whatever ``controlling`` says (RFC 8445 section 6.1.1).
        Candidates for other components or transports than ours, and names instead of IP
        addresses (mDNS included), are left out.
        """
        self._require("start()", "GATHERING_COMPLETE")
        connection = self._connection
        self._started = True
        connection.ice_controlling = controlling or remote.lite
        connection.remote_is_lite = remote.lite
        connection.remote_username = remote.ufrag
        connection.remote_password = remote.pwd
        for candidate in remote.candidates:
            if (
                candidate.component in self.components
                and candidate.transport.upper() == "UDP"
                and _is_ip(candidate.host)
            ):
                await connection.add_remote_candidate(candidate)
        await connection.add_remote_candidate(None)
        self._started_at = asyncio.get_running_loop().time()
        self._set_state("NEGOTIATING")
        self._task = asyncio.create_task(self._negotiate())

    async def start_without_ice(
        self, rtp_address: tuple[str, int], rtcp_address: tuple[str, int] | None = None
    ) -> None:
        """Exchange media with the peer's c=/m= (and a=rtcp) addresses from our default sockets.

        For a peer whose SDP has no ICE, or after ICE failed (as SIP peers expect). Without
        ``rtcp_address`` (a=rtcp, else the RTP port + 1) RTCP has nowhere to go. The state stays
        as it was and ice_active is False.
        """
        if self.state not in ("GATHERING_COMPLETE", "FAILED"):
            raise ICEStateError(
                f"start_without_ice() needs gathered candidates and no negotiation under way "
                f"(state {self.state})"
            )
        addresses = {RTP_COMPONENT: rtp_address}
        if rtcp_address is not None and RTCP_COMPONENT in self.components:
            addresses[RTCP_COMPONENT] = rtcp_address
        for component, (address, port) in addresses.items():
            if not _is_ip(address):
                raise ValueError(f"{address!r} is not an IP address")
            local = self._connection.get_default_candidate(component)
            if local is None:
                raise ICEError(f"no local candidate for component {component}")
            self._connection.use_pair(local, address, port)

    async def send(self, data: bytes, component: int = RTP_COMPONENT) -> None:
        """Send a datagram on a component's pair; ConnectionError if there is none (yet)."""
        await self._connection.sendto(data, component)

    async def recv(self) -> ICEDatagram:
        """The next datagram with its component and source; ConnectionError if not connected.

        Up to MAX_QUEUED_DATAGRAMS wait to be read; beyond that they are dropped and counted
        in ``dropped``, as are bytes that look like STUN but are not.
        """
        return await self._connection.receive()

    @property
    def dropped(self) -> int:
        return self._connection.dropped

    async def close(self) -> None:
        """Stop the checks and consent freshness and close every socket; idempotent."""
        if self._closing:
            return
        self._closing = True
        self.state = "CLOSED"
        for task in (self._task, self._watcher):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._connection.close()

    async def _negotiate(self) -> None:
        connection = self._connection
        try:
            await asyncio.wait_for(connection.connect(), self._timeout)
        except TimeoutError:
            connection.stop_checks()
            self._fail(f"ICE negotiation did not complete within {self._timeout:g} s")
            return
        except ConnectionError:
            formed = bool(connection.check_list())
            self._fail(
                "every candidate pair failed" if formed else "no candidate pair could be formed"
            )
            return
        self._result = ICENegotiationDidSucceed(
            self._elapsed(),
            self.local_candidates,
            tuple(ICECandidate.from_aioice(c) for c in connection.remote_candidates),
            tuple(ICECheck.from_pair(pair) for pair in connection.nominated_pairs()),
            tuple(
                ICECheck.from_pair(pair)
                for pair in connection.check_list()
                if pair.state is CandidatePair.State.SUCCEEDED
            ),
        )
        self._set_state("RUNNING")
        self._emit(self._result)
        self._watcher = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        """aioice closes the connection itself when consent to send expires (RFC 7675)."""
        await self._connection.get_event()
        if not self._closing:
            self._fail("consent to send expired (the peer stopped answering checks)")

    def _fail(self, reason: str) -> None:
        self._set_state("FAILED")
        self._emit(ICENegotiationDidFail(reason, self._elapsed()))

    def _elapsed(self) -> float:
        return asyncio.get_running_loop().time() - self._started_at

    def _advertised(self) -> list[aioice.Candidate]:
        """Our candidates without server reflexive ones equal to their base (RFC 8445 5.1.3)."""
        return [
            c
            for c in self._connection.local_candidates
            if not (c.type == "srflx" and (c.host, c.port) == (c.related_address, c.related_port))
        ]

    def _set_state(self, state: str) -> None:
        previous, self.state = self.state, state
        self._emit(ICENegotiationStateDidChange(previous, state))

    def _emit(self, event: ICEEvent) -> None:
        if self._handler is None:
            return
        try:
            self._handler(event)
        except Exception:
            logger.exception("ICE event handler raised on %s", type(event).__name__)

    def _require(self, what: str, state: str) -> None:
        if self.state != state:
            raise ICEStateError(f"{what} needs state {state}, the session is {self.state}")

    def _require_gathered(self, what: str) -> None:
        if self.state in ("NULL", "GATHERING", "CLOSED") or not self._connection.local_candidates:
            raise ICEStateError(f"{what} needs gathered candidates (state {self.state})")
