"""RTPTransport: the network side of one RTP stream, on the SIP thread's asyncio loop.

It binds a UDP port pair (RTP on an even port, RTCP on the next one) in the configured
range, or gathers ICE candidates; writes its part of our SDP m= line (port, c=, a=rtcp,
a=rtcp-mux, a=crypto, ICE attributes); reads the peer's (SDES keys, ICE description or plain
address); then carries RTP and RTCP: SRTP protect/unprotect, symmetric RTP that follows the
address media really comes from (RTPLatch), and a filter that drops - and counts - garbage,
packets that fail SRTP authentication, and packets from a foreign address or SSRC.  Nothing
that arrives from the network raises.

States, as in the original core: NULL -> (WAIT_STUN while ICE gathers) -> INIT -> LOCAL (we
offer) or REMOTE (we answer) -> ESTABLISHED -> ENDED; INVALID when initialization failed.
Methods that need the network to finish their work start it on the loop and return an
awaitable (a Task) that completes when it is done; they never raise through it: the outcome
is the state and the notifications (RTPTransportDidInitialize, RTPTransportDidFail, and the
three ICE notifications whose data fields are those of the media.ice events).

All methods must be called on the loop that runs the transport (the SIP thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import random
import socket
import struct
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, fields, replace
from typing import Any, Protocol

from sipsimple.configuration.settings import default_local_ip
from sipsimple.core.errors import SIPCoreError
from sipsimple.core.media import poller
from sipsimple.core.sdp import SDPAttribute, SDPConnection, SDPMediaStream, SDPNegotiationError
from sipsimple.core.sdp.model import BaseSDPMediaStream, BaseSDPSession
from sipsimple.media.errors import RTPParseError
from sipsimple.media.ice import (
    DEFAULT_TIMEOUT,
    RTCP_COMPONENT,
    RTP_COMPONENT,
    ICECheck,
    ICEDescription,
    ICEError,
    ICEEvent,
    ICENegotiationDidFail,
    ICENegotiationDidSucceed,
    ICENegotiationStateDidChange,
    ICESession,
    ICEStateError,
)
from sipsimple.media.latch import RTPLatch
from sipsimple.media.rtp import RTPPacket
from sipsimple.media.srtp import (
    CryptoAttribute,
    SDESNegotiationError,
    SDESNegotiator,
    SDESOffer,
    SDESParseError,
    SRTPAuthenticationError,
    SRTPError,
    SRTPParameters,
    SRTPReplayError,
    SRTPSession,
)
from sipsimple.notification import NotificationCenter, NotificationData

__all__ = ["RTPReceiver", "RTPTransport", "RTPTransportCounters", "RTPTransportError"]

logger = logging.getLogger(__name__)

ENCRYPTIONS = (None, "opportunistic", "sdes_optional", "sdes_mandatory")
STATES = ("NULL", "WAIT_STUN", "INIT", "LOCAL", "REMOTE", "ESTABLISHED", "ENDED", "INVALID")
# A new SSRC from the address we follow is believed after this many packets in sequence.
SSRC_THRESHOLD = 3
# Packets waiting for the ICE writer; beyond this the oldest are dropped (ICE is stuck).
MAX_ICE_BACKLOG = 64
RECEIVE_SIZE = 65536  # a datagram larger than this (none is) would be cut short
_RTP_HEADER = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, sequence number, timestamp, SSRC
_RTP_PROFILES = ("RTP/AVP", "RTP/SAVP", "RTP/AVPF", "RTP/SAVPF")


class RTPTransportError(SIPCoreError):
    """A method was called in a state that does not allow it, or with a bad argument."""


class RTPReceiver(Protocol):
    """What an RTPTransport hands valid packets to (the AudioTransport)."""

    def rtp_received(self, packet: RTPPacket, now: float) -> None: ...

    def rtcp_received(self, data: bytes, now: float) -> None: ...


@dataclass(slots=True)
class RTPTransportCounters:
    """Datagrams seen by the transport; the drop counters say why packets were refused."""

    rtp_received: int = 0  # RTP packets handed to the receiver
    rtp_sent: int = 0
    rtcp_received: int = 0
    rtcp_sent: int = 0
    garbage: int = 0  # neither RTP nor RTCP, or not parsable
    wrong_address: int = 0  # from an address we do not follow (yet)
    wrong_ssrc: int = 0  # from the right address but another, unconfirmed SSRC
    srtp_authentication_failures: int = 0
    srtp_replays: int = 0
    srtp_errors: int = 0  # other SRTP failures (too short, too long, unknown key)
    send_errors: int = 0  # nowhere to send yet, or the socket refused
    latch_changes: int = 0  # times we switched to a new source address


Address = tuple[str, int]


def _usable_address(host: str | None, port: int) -> Address | None:
    """(host, port) if we can send there: an IP address, not unspecified, and a port."""
    if host is None or not port:
        return None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None  # a name in c= (rare): we learn the address from what arrives
    return None if ip.is_unspecified else (str(ip), port)


def _remote_addresses(session: BaseSDPSession, index: int) -> tuple[Address | None, Address | None]:
    """The RTP and RTCP destinations the peer's m= line ``index`` gives (a=rtcp, RFC 3605)."""
    media = session.media[index]
    connection = media.connection if media.connection is not None else session.connection
    host = connection.address if connection is not None else None
    rtp = _usable_address(host, media.port)
    rtcp_port, rtcp_host = media.port + 1 if media.port else 0, host
    value = media.attributes.getfirst("rtcp")
    if value is not None:
        parts = value.split()
        if parts and parts[0].isdigit() and int(parts[0]) <= 65535:
            rtcp_port = int(parts[0])
            if len(parts) == 4:
                rtcp_host = parts[3]
    return rtp, _usable_address(rtcp_host, rtcp_port)


def _connection(address: str) -> SDPConnection:
    return SDPConnection(address, address_type="IP6" if ":" in address else "IP4")


def _event_data(event: ICEEvent) -> NotificationData:
    return NotificationData(**{f.name: getattr(event, f.name) for f in fields(event)})


class RTPTransport:
    """One RTP stream's network side; see the module docstring for the life cycle.

    ``encryption``: None, "opportunistic", "sdes_optional" or "sdes_mandatory" (SDES-keyed
    SRTP, see media.srtp).  ``use_ice``: gather candidates and run ICE with peers that do it
    (a STUN server adds server reflexive candidates).  ``local_address``: the address to bind
    and advertise (None: the machine's outgoing address; with ICE, None gathers host
    candidates on every interface but loopback).  ``port_range``: inclusive, where our ports
    are taken from.  ``ice_timeout``: seconds ICE may take before it is declared failed.
    """

    def __init__(
        self,
        encryption: str | None = None,
        use_ice: bool = False,
        ice_stun_address: str | None = None,
        ice_stun_port: int = 3478,
        *,
        local_address: str | None = None,
        port_range: tuple[int, int] = (50000, 50500),
        ice_timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if encryption not in ENCRYPTIONS:
            raise ValueError(f"encryption must be one of {ENCRYPTIONS}, got {encryption!r}")
        low, high = port_range
        if not 1 <= low < high <= 65535:
            raise ValueError(f"port_range {port_range}: need 1 <= low < high <= 65535")
        if local_address is not None:
            try:
                local_address = str(ipaddress.ip_address(local_address))
            except ValueError:
                raise ValueError(f"local_address {local_address!r} is not an IP address") from None
        if not 1 <= ice_stun_port <= 65535:
            raise ValueError(f"ice_stun_port {ice_stun_port} is not a port number")
        self.encryption = encryption
        self.use_ice = use_ice
        self.ice_stun_address = ice_stun_address
        self.ice_stun_port = ice_stun_port
        self.port_range = (low, high)
        self.ice_timeout = ice_timeout
        self.state = "NULL"
        self.counters = RTPTransportCounters()
        self.receiver: RTPReceiver | None = None
        self._explicit_address = local_address is not None
        self._local_address = local_address
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set_INIT
        self._tasks: set[asyncio.Task[Any]] = set()
        # Plain sockets, non-blocking, read from loop readers and written to directly: a
        # datagram costs a few calls less than through asyncio's datagram transports.
        self._rtp_socket: socket.socket | None = None
        self._rtcp_socket: socket.socket | None = None
        self._local_port = 0
        # ICE
        self._ice: ICESession | None = None
        self._ice_connected = False  # a pair (checked or not) carries media
        self._ice_running = False  # the pairs ICE selected carry media
        self._ice_sending_to: Address | None = None  # without ICE checks: the peer's address
        self._ice_peers: frozenset[Address] = frozenset()
        self._ice_backlog: deque[tuple[bytes, int]] = deque(maxlen=MAX_ICE_BACKLOG)
        self._ice_wakeup = asyncio.Event()
        self._ice_reader: asyncio.Task[None] | None = None
        self._controlling = False
        # SDES
        self._sdes = SDESNegotiator(encryption) if encryption is not None else None
        self._sdes_offer: SDESOffer | None = None
        self._srtp_parameters: SRTPParameters | None = None
        self._srtp: SRTPSession | None = None
        # the peer
        self._profile = "RTP/AVP"
        self._offered_mux = False
        self.rtcp_mux = False
        self.remote_rtp_address: str | None = None
        self.remote_rtp_port: int | None = None
        self._latch: RTPLatch[Address | None] = RTPLatch(None)
        self._rtcp_latch: RTPLatch[Address | None] = RTPLatch(None)
        self._sdp_rtp: Address | None = None
        self._remote_ssrc: int | None = None
        self._ssrc_candidate: tuple[int, int, int] | None = None  # (ssrc, last seq, count)
        # set_inbox(): where the usual datagrams of one size go, instead of the receiver
        self._inbox: list[tuple[int, float, bytes]] | None = None
        self._inbox_tag = 0
        self._inbox_size = 0

    def __repr__(self) -> str:
        return f"<RTPTransport {self.state} {self.local_rtp_address}:{self.local_rtp_port}>"

    # -- attributes -----------------------------------------------------------------------

    @property
    def local_rtp_address(self) -> str | None:
        if self._ice is not None and self.state not in ("NULL", "WAIT_STUN", "INVALID"):
            with contextlib.suppress(ICEError, ICEStateError):
                return self._ice.default_candidate(RTP_COMPONENT).address
            return None
        return self._local_address if self._rtp_socket is not None else None

    @property
    def local_rtp_port(self) -> int | None:
        if self._ice is not None and self.state not in ("NULL", "WAIT_STUN", "INVALID"):
            with contextlib.suppress(ICEError, ICEStateError):
                return self._ice.default_candidate(RTP_COMPONENT).port
            return None
        return self._local_port if self._rtp_socket is not None else None

    @property
    def remote_rtp_address_received(self) -> str | None:
        """Where media really comes from (the address we send to), once something arrived."""
        address = self._received_from()
        return address[0] if address is not None else None

    @property
    def remote_rtp_port_received(self) -> int | None:
        address = self._received_from()
        return address[1] if address is not None else None

    def _received_from(self) -> Address | None:
        pair = self._selected_pair()
        if pair is not None:
            return pair.remote_candidate.address, pair.remote_candidate.port
        return self._latch.address if self._latch.latched else None

    @property
    def srtp_active(self) -> bool:
        return self._srtp is not None

    @property
    def srtp_cipher(self) -> str | None:
        """The SRTP crypto suite in use, e.g. AES_CM_128_HMAC_SHA1_80."""
        return self._srtp.suite if self._srtp is not None else None

    @property
    def ice_active(self) -> bool:
        """True while pairs that ICE checked and selected carry the media."""
        return self._ice is not None and self._ice.ice_active

    @property
    def local_rtp_candidate_type(self) -> str | None:
        """The type (host, srflx, relay) of our candidate in the pair ICE selected, or None."""
        pair = self._selected_pair()
        return pair.local_candidate.type if pair is not None else None

    @property
    def remote_rtp_candidate_type(self) -> str | None:
        pair = self._selected_pair()
        return pair.remote_candidate.type if pair is not None else None

    def _selected_pair(self) -> ICECheck | None:
        pairs = self._ice.selected_pairs if self._ice is not None else ()
        return pairs[0] if pairs else None

    # -- life cycle -----------------------------------------------------------------------

    def set_INIT(self) -> asyncio.Task[None]:
        """Bind the sockets or gather ICE candidates; RTPTransportDidInitialize or DidFail."""
        self._require("set_INIT", "NULL")
        self._loop = asyncio.get_running_loop()
        if self.use_ice:
            self.state = "WAIT_STUN"
        return self._spawn(self._initialize())

    async def _initialize(self) -> None:
        try:
            if self.use_ice:
                await self._gather()
            else:
                await self._bind()
        except (OSError, ICEError) as exc:
            if self.state == "ENDED":
                return
            self.state = "INVALID"
            reason = str(exc) or type(exc).__name__
            self._post("RTPTransportDidFail", reason=reason)
            return
        if self.state == "ENDED":  # stopped while initializing
            await self._close()
            return
        self.state = "INIT"
        self._post("RTPTransportDidInitialize")

    async def _bind(self) -> None:
        if self._local_address is None:
            self._local_address = str(default_local_ip())
        rtp_sock, rtcp_sock = self._bind_pair(self._local_address)
        poller.add_reader(self._loop, rtp_sock.fileno(), self._rtp_readable)
        poller.add_reader(self._loop, rtcp_sock.fileno(), self._rtcp_readable)
        self._rtp_socket, self._rtcp_socket = rtp_sock, rtcp_sock
        self._local_port = rtp_sock.getsockname()[1]

    def _bind_pair(self, address: str) -> tuple[socket.socket, socket.socket]:
        """An even RTP port and the odd RTCP port after it: from a random pair on, in turn."""
        low, high = self.port_range
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        ports = range(low + low % 2, high, 2)
        first = random.randrange(len(ports)) if ports else 0
        for index in range(len(ports)):
            port = ports[(first + index) % len(ports)]
            pair = []
            try:
                for offset in (0, 1):
                    sock = socket.socket(family, socket.SOCK_DGRAM)
                    pair.append(sock)
                    sock.bind((address, port + offset))
            except OSError as exc:
                for sock in pair:
                    sock.close()
                if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                    raise  # not a taken (or reserved) port: trying the others will not help
                continue
            for sock in pair:
                sock.setblocking(False)
            return pair[0], pair[1]
        raise OSError(f"no free RTP/RTCP port pair in {low}-{high} on {address}")

    async def _gather(self) -> None:
        stun = None
        if self.ice_stun_address is not None:
            stun = (self.ice_stun_address, self.ice_stun_port)
        self._ice = ICESession(
            self._ice_event,
            local_addresses=[self._local_address] if self._explicit_address else None,
            stun_server=stun,
            port_range=self.port_range,
            timeout=self.ice_timeout,
        )
        await self._ice.gather()
        self._spawn(self._ice_writer())

    def set_LOCAL(self) -> None:
        """We are about to offer: make the SDES offer; we will control ICE."""
        self._require("set_LOCAL", "INIT")
        if self._sdes is not None:
            self._sdes_offer = self._sdes.make_offer()
            self._profile = self._sdes_offer.transport
        self._controlling = True
        self._offered_mux = True
        self.state = "LOCAL"

    def set_REMOTE(self, remote_sdp: BaseSDPSession, sdp_index: int) -> None:
        """The peer offered: choose SDES keys from its a=crypto lines; ICE is controlled.

        Raises SDPNegotiationError (answer 488) when the offer's security cannot be met.
        """
        self._require("set_REMOTE", "INIT")
        media = self._media(remote_sdp, sdp_index)
        if media.transport.upper() not in _RTP_PROFILES:
            raise SDPNegotiationError(f"{media.transport} is not an RTP profile we can answer")
        if self._sdes is not None:
            try:
                self._srtp_parameters = self._sdes.answer_offer(media)
            except SDESNegotiationError as exc:
                raise SDPNegotiationError(str(exc)) from None
        elif media.transport.upper() in ("RTP/SAVP", "RTP/SAVPF"):
            raise SDPNegotiationError(f"the offer requires SRTP ({media.transport}), ours is off")
        self._profile = media.transport
        self._offered_mux = "rtcp-mux" in media.attributes
        self._controlling = False
        self.state = "REMOTE"

    def update_local_media(self, media: SDPMediaStream) -> None:
        """Write our transport part into ``media``: port, c=, profile, a=rtcp, a=rtcp-mux,
        a=crypto and ICE attributes (for an offer in LOCAL, an answer in REMOTE, and what was
        agreed in ESTABLISHED)."""
        self._require("update_local_media", "LOCAL", "REMOTE", "ESTABLISHED")
        attributes: list[SDPAttribute] = []
        if self._ice is not None:
            rtp = self._ice.default_candidate(RTP_COMPONENT)
            rtp_address, rtp_port = rtp.address, rtp.port
            rtcp = self._ice.default_candidate(RTCP_COMPONENT)
            rtcp_address, rtcp_port = rtcp.address, rtcp.port
        else:
            rtp_address, rtp_port = self._local_address, self._local_port  # type: ignore[assignment]
            rtcp_address, rtcp_port = rtp_address, rtp_port + 1
        address_type = "IP6" if ":" in rtcp_address else "IP4"
        attributes.append(SDPAttribute("rtcp", f"{rtcp_port} IN {address_type} {rtcp_address}"))
        if self.rtcp_mux if self.state == "ESTABLISHED" else self._offered_mux:
            attributes.append(SDPAttribute("rtcp-mux"))
        if self.state == "LOCAL" and self._sdes_offer is not None:
            attributes.extend(self._sdes_offer.attributes())
        elif self._srtp_parameters is not None:
            attributes.append(self._srtp_parameters.local_crypto.to_sdp_attribute())
        if self._ice is not None:
            attributes.extend(self._ice.sdp_attributes())
        media.port = rtp_port
        media.connection = _connection(rtp_address)
        media.transport = self._profile
        media.attributes.extend(attributes)

    def set_ESTABLISHED(
        self, local_sdp: BaseSDPSession, remote_sdp: BaseSDPSession, sdp_index: int
    ) -> asyncio.Future[None]:
        """The exchange is complete: key SRTP, learn the peer's addresses, start ICE.

        Also called again after a later exchange (re-INVITE): new addresses restart the
        latching, a new key from the peer re-keys what we receive.  Raises
        SDPNegotiationError when the answer's security is unacceptable.  The task completes
        once ICE checks have started (their outcome comes as notifications).
        """
        self._require("set_ESTABLISHED", "LOCAL", "REMOTE", "ESTABLISHED")
        local = self._media(local_sdp, sdp_index)
        remote = self._media(remote_sdp, sdp_index)
        first = self.state != "ESTABLISHED"
        if first:
            self._establish_srtp(remote)
            self.rtcp_mux = "rtcp-mux" in local.attributes and "rtcp-mux" in remote.attributes
        else:
            self._rekey(remote)
        rtp, rtcp = _remote_addresses(remote_sdp, sdp_index)
        if self.rtcp_mux:
            rtcp = rtp
        connection = remote.connection if remote.connection is not None else remote_sdp.connection
        self.remote_rtp_address = connection.address if connection is not None else None
        self.remote_rtp_port = remote.port
        if first or rtp != self._sdp_rtp:
            self._latch.reset(rtp)
            self._rtcp_latch.reset(rtcp)
        self._sdp_rtp = rtp
        self.state = "ESTABLISHED"
        if self._ice is None:
            return self._done()
        description = ICEDescription.from_sdp(remote, remote_sdp) if first else None
        return self._spawn(self._start_ice(description))

    def _establish_srtp(self, remote: BaseSDPMediaStream) -> None:
        if self._sdes is not None and self.state == "LOCAL":
            try:
                self._srtp_parameters = self._sdes.accept_answer(remote)
            except SDESNegotiationError as exc:
                raise SDPNegotiationError(str(exc)) from None
            if self._srtp_parameters is None:
                self._profile = remote.transport
        if self._srtp_parameters is not None:
            self._srtp = self._srtp_parameters.create_session()

    def _rekey(self, remote: BaseSDPMediaStream) -> None:
        """A later description whose a=crypto line with our tag carries a new peer key."""
        parameters = self._srtp_parameters
        if parameters is None:
            return
        for value in remote.attributes.getall("crypto"):
            try:
                crypto = CryptoAttribute.parse(value)
            except SDESParseError as exc:
                raise SDPNegotiationError(f"invalid a=crypto line: {exc}") from None
            if crypto.tag != parameters.tag:
                continue
            if crypto.suite != parameters.suite:
                raise SDPNegotiationError(
                    f"a=crypto tag {crypto.tag} changed suite from {parameters.suite} to "
                    f"{crypto.suite} (this takes a new stream)"
                )
            if crypto.key_salt != parameters.remote_key:
                self._srtp_parameters = replace(parameters, remote_key=crypto.key_salt)
                self._srtp = self._srtp_parameters.create_session()
            return

    async def _start_ice(self, description: ICEDescription | None) -> None:
        ice = self._ice
        assert ice is not None
        if ice.state == "GATHERING_COMPLETE" and description is not None:
            await ice.start(description, controlling=self._controlling)
        elif ice.state in ("GATHERING_COMPLETE", "FAILED"):
            await self._ice_fallback()

    async def _ice_fallback(self) -> None:
        """Send to the SDP (or latched) address from our default candidates' sockets."""
        ice = self._ice
        if ice is None or self.state == "ENDED" or self._latch.address is None:
            return
        self._ice_sending_to = self._latch.address
        await ice.start_without_ice(self._latch.address, self._rtcp_latch.address)
        self._ice_connected = True
        self._start_ice_reader()

    def _ice_event(self, event: ICEEvent) -> None:
        if self.state == "ENDED":
            return
        if isinstance(event, ICENegotiationStateDidChange):
            self._post("RTPTransportICENegotiationStateDidChange", _event_data(event))
        elif isinstance(event, ICENegotiationDidSucceed):
            self._ice_peers = frozenset(
                (check.remote_candidate.address, check.remote_candidate.port)
                for check in (*event.valid_pairs, *event.valid_list)
            )
            self._ice_connected = self._ice_running = True
            self._start_ice_reader()
            self._post("RTPTransportICENegotiationDidSucceed", _event_data(event))
        elif isinstance(event, ICENegotiationDidFail):
            self._ice_connected = self._ice_running = False
            self._post("RTPTransportICENegotiationDidFail", _event_data(event))
            self._spawn(self._ice_fallback())

    def _start_ice_reader(self) -> None:
        if self._ice_reader is None:
            self._ice_reader = self._spawn(self._read_ice())

    async def _read_ice(self) -> None:
        ice = self._ice
        assert ice is not None
        loop = self._loop
        while True:
            try:
                data, component, address = await ice.recv()
            except ConnectionError:
                return
            if component == RTP_COMPONENT:
                self._rtp_datagram(data, address)
            else:
                self._rtcp_datagram(data, address, loop.time(), muxed=False)

    async def _ice_writer(self) -> None:
        ice = self._ice
        assert ice is not None
        backlog = self._ice_backlog
        while True:
            await self._ice_wakeup.wait()
            self._ice_wakeup.clear()
            while backlog:
                data, component = backlog.popleft()
                try:
                    await ice.send(data, component)
                except ConnectionError:
                    self.counters.send_errors += 1

    def stop(self) -> asyncio.Future[None]:
        """Close the sockets or the ICE session; the transport is ENDED. Idempotent."""
        opened = self.state not in ("NULL", "WAIT_STUN", "ENDED")
        self.state = "ENDED"
        self.receiver = None
        self._ice_running = self._ice_connected = False
        # While initializing, _initialize() closes what it opened once it gets there.
        return self._spawn(self._close()) if opened else self._done()

    async def _close(self) -> None:
        for sock in (self._rtp_socket, self._rtcp_socket):
            if sock is not None:
                poller.remove_reader(self._loop, sock.fileno())
                sock.close()
        self._rtp_socket = self._rtcp_socket = None
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        if self._ice is not None:
            await self._ice.close()

    # -- sending ----------------------------------------------------------------------------

    def send_rtp(self, data: bytes) -> None:
        """Send a serialized RTP packet (protected if SRTP is on) to the peer."""
        srtp = self._srtp
        if srtp is not None:
            try:
                data = srtp.protect(data)
            except SRTPError:
                self.counters.srtp_errors += 1
                return
        if self._ice is None:
            sock, address = self._rtp_socket, self._latch.address
            if sock is None or address is None:
                self.counters.send_errors += 1
                return
            try:
                sock.sendto(data, address)
            except OSError:  # a full socket buffer, an ICMP error, an address of another family
                self.counters.send_errors += 1
                return
        elif not self._queue_ice(data, RTP_COMPONENT):
            return
        self.counters.rtp_sent += 1

    def send_rtcp(self, data: bytes) -> None:
        """Send a compound RTCP packet on the RTCP port, or the RTP port with rtcp-mux."""
        srtp = self._srtp
        if srtp is not None:
            try:
                data = srtp.protect_rtcp(data)
            except SRTPError:
                self.counters.srtp_errors += 1
                return
        if self._ice is None:
            if self.rtcp_mux:
                sent = self._sendto(self._rtp_socket, data, self._latch.address)
            else:
                sent = self._sendto(self._rtcp_socket, data, self._rtcp_latch.address)
            if not sent:
                return
        elif not self._queue_ice(data, RTP_COMPONENT if self.rtcp_mux else RTCP_COMPONENT):
            return
        self.counters.rtcp_sent += 1

    def _sendto(self, sock: socket.socket | None, data: bytes, address: Address | None) -> bool:
        if sock is None or address is None:
            self.counters.send_errors += 1
            return False
        try:
            sock.sendto(data, address)
        except OSError:  # a full socket buffer, an ICMP error, an address of another family
            self.counters.send_errors += 1
            return False
        return True

    def _queue_ice(self, data: bytes, component: int) -> bool:
        if not self._ice_connected:
            self.counters.send_errors += 1
            return False
        self._ice_backlog.append((data, component))
        self._ice_wakeup.set()
        return True

    # -- receiving --------------------------------------------------------------------------

    def _rtp_readable(self) -> None:
        # One datagram per call: the selector calls again while more are waiting.
        received = self._read(self._rtp_socket)
        if received is None:
            return
        data, address = received
        # The usual packet: plain RTP (not SRTP, no CSRC, extension or padding, a payload
        # type RTCP cannot be mistaken for) of the source we receive, from where we
        # receive, with no switch of either under way.  For it _rtp_datagram() would
        # parse as RTPPacket.parse() does and _accept() would change nothing: it is
        # handed over at once.  Without ICE (which reads its own sockets).
        latch = self._latch
        if len(data) >= 12 and self._srtp is None and address == latch.address:
            b0, b1, seq, timestamp, ssrc = _RTP_HEADER.unpack_from(data)
            payload_type = b1 & 0x7F
            if (
                b0 == 0x80
                and not 64 <= payload_type <= 95
                and ssrc == self._remote_ssrc
                and ssrc == latch.ssrc
                and latch.candidate is None
                and self._ssrc_candidate is None
            ):
                receiver = self.receiver
                if receiver is not None:
                    self.counters.rtp_received += 1
                    inbox = self._inbox
                    if inbox is not None and len(data) == self._inbox_size:
                        inbox.append((self._inbox_tag, self._loop.time(), data))
                        return
                    packet = RTPPacket(payload_type, seq, timestamp, ssrc, data[12:], b1 > 0x7F)
                    receiver.rtp_received(packet, self._loop.time())
                return
        self._rtp_datagram(data, address)

    @property
    def inbox_usable(self) -> bool:
        """Whether set_inbox() can take packets now: without SRTP and ICE (whose packets
        take their own way)."""
        return self._srtp is None and self._ice is None

    def set_inbox(
        self, inbox: list[tuple[int, float, bytes]] | None, tag: int = 0, size: int = 0
    ) -> None:
        """From now on the usual RTP packets of ``size`` octets - plain RTP of the source we
        receive, from where we receive it, without CSRC, extension or padding - are
        appended to ``inbox`` as (``tag``, arrival time, datagram) instead of going to the
        receiver, for a receiver that takes many streams' packets in batches; any other
        packet still goes to the receiver, after them.  None: every packet to the
        receiver again."""
        self._inbox, self._inbox_tag, self._inbox_size = inbox, tag, size

    def _rtcp_readable(self) -> None:
        received = self._read(self._rtcp_socket)
        if received is not None:
            self._rtcp_datagram(*received, self._loop.time(), muxed=False)

    def _read(self, sock: socket.socket | None) -> tuple[bytes, Address] | None:
        if sock is None:
            return None
        try:
            data, address = sock.recvfrom(RECEIVE_SIZE)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:  # an ICMP error (port unreachable while the peer is not up): not fatal
            self.counters.send_errors += 1
            return None
        return data, address if len(address) == 2 else address[:2]

    def _unprotect(self, unprotect: Callable[[bytes], bytes], data: bytes) -> bytes | None:
        """SRTP or SRTCP: the clear packet, or None once the refusal is counted."""
        counters = self.counters
        try:
            return unprotect(data)
        except SRTPAuthenticationError:
            counters.srtp_authentication_failures += 1
        except SRTPReplayError:
            counters.srtp_replays += 1
        except SRTPError:
            counters.srtp_errors += 1
        return None

    def _rtp_datagram(self, data: bytes, address: Address) -> None:
        counters = self.counters
        now = self._loop.time()
        if len(data) < 12 or data[0] & 0xC0 != 0x80:
            if len(data) >= 8 and 192 <= data[1] <= 223:  # a short RTCP packet
                self._rtcp_datagram(data, address, now, muxed=True)
            else:
                counters.garbage += 1
            return
        if 192 <= data[1] <= 223:  # RTCP on the RTP port (RFC 5761 section 4)
            self._rtcp_datagram(data, address, now, muxed=True)
            return
        srtp = self._srtp
        if srtp is not None:
            data = self._unprotect(srtp.unprotect, data)
            if data is None:
                return
        try:
            packet = RTPPacket.parse(data)
        except RTPParseError:
            counters.garbage += 1
            return
        if not self._accept(packet, address):
            return
        receiver = self.receiver
        if receiver is not None:
            counters.rtp_received += 1
            inbox = self._inbox
            if inbox is not None and len(data) == self._inbox_size and data[0] == 0x80:
                # (the usual packet after a stray one, which left the latch or the SSRC
                # filter a candidate to confirm: the inbox's receiver sorts it out)
                inbox.append((self._inbox_tag, now, data))
                return
            receiver.rtp_received(packet, now)

    def _accept(self, packet: RTPPacket, address: Address) -> bool:
        """The address and SSRC filter: follow the peer, refuse strays (and count them)."""
        ssrc = packet.ssrc
        latch = self._latch
        if self._ice_running:
            if address not in self._ice_peers:
                self.counters.wrong_address += 1
                return False
        elif not latch.latched or address != latch.address:
            switched = latch.latched
            latch.observe(address, ssrc)
            if latch.address != address:
                self.counters.wrong_address += 1
                return False
            self._followed(address, ssrc, switched)
            return True
        remote_ssrc = self._remote_ssrc
        if ssrc == remote_ssrc or remote_ssrc is None:
            self._remote_ssrc = ssrc
            self._ssrc_candidate = None
            if not self._ice_running:
                latch.observe(address, ssrc)  # a packet from where we are: no switch pending
            return True
        # Another SSRC from the address we follow: believe it after a few in sequence.
        seq = packet.sequence_number
        candidate = self._ssrc_candidate
        if candidate is not None and candidate[0] == ssrc and (candidate[1] + 1) & 0xFFFF == seq:
            count = candidate[2] + 1
        else:
            count = 1
        if count < SSRC_THRESHOLD:
            self._ssrc_candidate = (ssrc, seq, count)
            self.counters.wrong_ssrc += 1
            return False
        self._ssrc_candidate = None
        self._remote_ssrc = ssrc
        return True

    def _followed(self, address: Address, ssrc: int, switched: bool) -> None:
        """The first packet arrived from ``address``, or the latch ``switched`` to it."""
        if switched:
            self.counters.latch_changes += 1
            logger.info("RTP now follows %s:%d (SSRC %08x)", address[0], address[1], ssrc)
        self._remote_ssrc = ssrc
        self._ssrc_candidate = None
        if self._ice is not None and self._ice_connected and address != self._ice_sending_to:
            self._spawn(self._ice_fallback())

    def _rtcp_datagram(self, data: bytes, address: Address, now: float, *, muxed: bool) -> None:
        counters = self.counters
        if len(data) < 8 or data[0] & 0xC0 != 0x80:
            counters.garbage += 1
            return
        srtp = self._srtp
        if srtp is not None:
            data = self._unprotect(srtp.unprotect_rtcp, data)
            if data is None:
                return
        if self._ice_running:
            accepted = address in self._ice_peers
        elif muxed:
            accepted = address == self._latch.address
        else:
            latch = self._rtcp_latch
            ssrc = int.from_bytes(data[4:8], "big")
            accepted = latch.observe(address, ssrc) or address == latch.address
        if not accepted:
            counters.wrong_address += 1
            return
        receiver = self.receiver
        if receiver is not None:
            counters.rtcp_received += 1
            receiver.rtcp_received(data, now)

    # -- helpers ----------------------------------------------------------------------------

    def _require(self, method: str, *states: str) -> None:
        if self.state not in states:
            raise RTPTransportError(
                f"RTPTransport.{method}() needs state {' or '.join(states)}, not {self.state}"
            )

    @staticmethod
    def _media(session: BaseSDPSession, index: int) -> BaseSDPMediaStream:
        if not 0 <= index < len(session.media):
            raise RTPTransportError(f"the SDP has no m= line {index}")
        return session.media[index]

    def _done(self) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    def _spawn(self, coroutine: Coroutine[Any, Any, None] | Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("RTPTransport task failed", exc_info=task.exception())

    def _post(self, name: str, data: NotificationData | None = None, **fields: object) -> None:
        if data is None:
            data = NotificationData(**fields)
        NotificationCenter().post_notification(name, sender=self, data=data)
