"""The SIP transports on asyncio: UDP, TCP and TLS listeners and connections (RFC 3261 section 18).

The :class:`TransportManager` is what the Engine starts. It hands every message it
received and parsed to one callback, ``on_message(message, source, now)``, and sends
messages with :meth:`TransportManager.send`. It owns what section 18 puts in the
transport:

- requests: the top Via gets our transport and sent-by (the caller sets the branch);
  a request larger than ``path_mtu - 200`` bytes goes over TCP instead of UDP, with its
  Via changed to match (18.1.1); :meth:`TransportManager.prepare_request` does that
  without sending, for a caller that needs the final Via first. Connections are reused:
  one per remote (transport, host, port), whoever opened it;
- received requests: ``received`` and ``rport`` are recorded in the top Via (18.2.1,
  RFC 3581); a malformed request is answered 400 with a Warning, or dropped when no
  response can be built;
- responses: sent back on the request's connection while it is open, else where the
  top Via says (18.2.2, RFC 3581), from the socket the request came in on; received
  responses whose top Via is not ours are dropped (18.1.2), the others teach
  :meth:`TransportManager.mapped_address` what our address looks like from the peer.

Nothing from the network raises: bad input is counted in ``statistics``, logged
(logger ``sipsimple.core.transport``, rate-limited, with the peer's address) and
dropped. Hooks, each optional and isolated (an exception in one is logged): ``trace``
sees every datagram and stream chunk sent and received, ``on_connected`` and
``on_disconnected`` every TCP/TLS connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from sipsimple.core.errors import SIPParseError
from sipsimple.core.sip.headers import FrozenViaHeader
from sipsimple.core.sip.message import (
    MalformedSIPMessageError,
    SIPRequest,
    SIPResponse,
    parse_message,
)
from sipsimple.core.transport.address import TransportAddress, canonical_ip, format_hostport
from sipsimple.core.transport.errors import (
    TransportError,
    TransportFailure,
    tls_error_from,
)
from sipsimple.core.transport.routing import (
    response_destination,
    sent_by,
    set_top_via,
    stamp_received,
    stamp_sent_by,
)
from sipsimple.core.transport.settings import (
    PacketLoss,
    TraceRecord,
    TransportSettings,
)
from sipsimple.core.transport.stream import SIPConnection
from sipsimple.core.transport.tls import client_context, server_context
from sipsimple.core.transport.udp import UDPEndpoint

__all__ = ["MessageHandler", "TransportManager", "TransportStatistics"]

log = logging.getLogger("sipsimple.core.transport")

MessageHandler = Callable[[SIPRequest | SIPResponse, TransportAddress, float], None]

_WILDCARDS = ("0.0.0.0", "::")
_BIND_ATTEMPTS = 20
_BAD_INPUT_LOGS = 20  # log records about bad input per window; the rest are counted
_BAD_INPUT_WINDOW = 10.0
_MAPPED_ADDRESSES = 1024
_ROUTE_CACHE = 256
_SOURCE_CACHE = 1024  # TransportAddresses of recent UDP peers, per socket
_KEEPALIVE_START = (b"\r", b"\n", b"")


@dataclass
class TransportStatistics:
    """Counters of what the transport did with its input (for tests and diagnostics)."""

    messages_received: int = 0
    messages_sent: int = 0
    datagrams_dropped: int = 0
    malformed_answered: int = 0
    malformed_dropped: int = 0
    responses_dropped: int = 0
    connections_refused: int = 0
    connections_closed_for_errors: int = 0


class TransportManager:
    """UDP, TCP and TLS transports for the Engine, on the running asyncio loop.

    ``await start()`` binds the listeners (TransportError BIND_FAILED or
    TLS_CONFIGURATION when it cannot); ``await stop()`` closes everything. ``ports``
    gives the port of each transport that is on (the same port on every address).
    ``packet_loss`` (a :class:`PacketLoss` or None) simulates UDP loss for tests.
    """

    def __init__(
        self,
        settings: TransportSettings,
        on_message: MessageHandler,
        *,
        trace: Callable[[TraceRecord], None] | None = None,
        on_connected: Callable[[TransportAddress], None] | None = None,
        on_disconnected: Callable[[TransportAddress, TransportError | None], None] | None = None,
    ) -> None:
        self.settings = settings
        self.on_message = on_message
        self.trace = trace
        self.on_connected = on_connected
        self.on_disconnected = on_disconnected
        self.packet_loss: PacketLoss | None = None
        self.statistics = TransportStatistics()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._hosts: tuple[str, ...] = ()
        self._ports: dict[str, int] = {}
        self._udp: list[UDPEndpoint] = []
        self._servers: list[asyncio.Server] = []
        self._connections: dict[tuple[str, str, int, str | None], SIPConnection] = {}
        self._open: set[SIPConnection] = set()
        self._connecting: dict[tuple[str, str, int, str | None], asyncio.Task[SIPConnection]] = {}
        self._sent_by: set[tuple[str, int]] = set()
        self._mapped: dict[tuple[str, str, int], tuple[str, int]] = {}
        self._routes: dict[str, str] = {}
        self._client_ssl: ssl.SSLContext | None = None
        self._bad_input_window = 0.0
        self._bad_input_logged = 0
        self._bad_input_suppressed = 0

    # -- life cycle

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the transport manager is not running")
        return self._loop

    @property
    def is_running(self) -> bool:
        return self._loop is not None

    @property
    def ports(self) -> dict[str, int]:
        """{"udp": port, "tcp": port, "tls": port} for the transports that are on."""
        return dict(self._ports)

    def port(self, transport: str) -> int | None:
        """The port of ``transport`` ("udp", "tcp" or "tls"), None when it is off."""
        return self._ports.get(transport)

    @property
    def local_addresses(self) -> list[TransportAddress]:
        """What we listen on, one TransportAddress per transport and address."""
        return [
            TransportAddress(transport, host, port)
            for transport, port in self._ports.items()
            for host in self._hosts
        ]

    async def start(self) -> None:
        if self._loop is not None:
            raise RuntimeError("the transport manager is already running")
        loop = asyncio.get_running_loop()
        settings = self.settings
        wanted = {
            name: port
            for name, port in (
                ("udp", settings.udp_port),
                ("tcp", settings.tcp_port),
                ("tls", settings.tls_port),
            )
            if port is not None
        }
        if not wanted:
            raise ValueError("at least one of udp_port, tcp_port and tls_port must not be None")
        server_ssl = None
        if "tls" in wanted:
            self._client_ssl = client_context(settings)
            server_ssl = server_context(settings)
        hosts = settings.ip_addresses or _WILDCARDS
        sockets = _bind_all(wanted, hosts, wildcard=settings.ip_addresses is None)
        self._loop = loop
        try:
            for name, bound in sockets.items():
                self._ports[name] = bound[0].getsockname()[1]
                for sock in bound:
                    await self._serve(name, sock, server_ssl)
        except BaseException:
            for bound in sockets.values():
                for sock in bound:
                    sock.close()
            await self.stop()
            raise
        self._hosts = tuple(
            dict.fromkeys(
                canonical_ip(sock.getsockname()[0]) or ""
                for bound in sockets.values()
                for sock in bound
            )
        )
        log.info("SIP transports listening: %s", ", ".join(map(str, self.local_addresses)))

    async def _serve(
        self, name: str, sock: socket.socket, server_ssl: ssl.SSLContext | None
    ) -> None:
        loop = self.loop
        if name == "udp":
            buffer = self.settings.udp_receive_buffer
            if buffer is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
                except OSError as e:  # the system's limits: keep its default
                    log.debug("cannot set SO_RCVBUF to %d: %s", buffer, e)
            self._udp.append(UDPEndpoint(self, sock, loop))
            return
        server = await loop.create_server(
            lambda: SIPConnection(self, name, outbound=False),
            sock=sock,
            ssl=server_ssl if name == "tls" else None,
            ssl_handshake_timeout=self.settings.tls_timeout if name == "tls" else None,
        )
        self._servers.append(server)

    async def stop(self) -> None:
        """Close every listener and connection; pending sends fail."""
        for task in list(self._connecting.values()):
            task.cancel()
        for connection in list(self._open):
            connection.close()
        for server in self._servers:
            server.close()
        for endpoint in self._udp:
            endpoint.close()
        for server in self._servers:
            await server.wait_closed()
        await asyncio.sleep(0)  # closed transports release their sockets on the next turn
        if self._connecting:
            await asyncio.gather(*self._connecting.values(), return_exceptions=True)
        self._servers.clear()
        self._udp.clear()
        self._connections.clear()
        self._ports.clear()
        self._loop = None

    # -- sending

    def prepare_request(
        self, request: SIPRequest, destination: TransportAddress
    ) -> TransportAddress:
        """Choose the transport for ``request`` and finalise its top Via; the address to use.

        The top Via (which must exist and carry the caller's branch) gets our transport,
        sent-by and ``rport``; a request too large for UDP moves to TCP (RFC 3261 section
        18.1.1). ``send`` does this itself; call it first when the final Via or the
        transport (reliable or not) must be known before sending. Calling it again on
        the same request gives the same answer.
        """
        return self.prepare_request_data(request, destination)[1]

    def prepare_request_data(
        self,
        request: SIPRequest,
        destination: TransportAddress,
        *,
        branch: str | None = None,
        size_rule: bool = True,
    ) -> tuple[bytes, TransportAddress]:
        """:meth:`prepare_request`, and the request's bytes as finalised (serialised once:
        what the caller keeps for retransmissions and gives to :meth:`send_nowait`).

        With ``branch`` the top Via is made here, whole, with that branch (added, or put
        in place of the top one): the caller has no Via to make first, and nothing is
        formatted, parsed back and formatted again. ``size_rule=False`` keeps a large
        request on UDP (the retry RFC 3261 section 18.1.1 asks for when TCP was refused).
        """
        transport = destination.transport
        self._check_enabled(transport, destination)
        local_host = self._local_host(destination)
        self._stamp(request, transport, local_host, branch)
        data = bytes(request)
        if (
            size_rule
            and transport == "udp"
            and len(data) > self.settings.size_threshold
            and "tcp" in self._ports
        ):
            destination = destination.with_transport("tcp")
            self._stamp(request, "tcp", local_host, branch)
            data = bytes(request)
        return data, destination

    def _stamp(self, request: SIPRequest, transport: str, host: str, branch: str | None) -> None:
        port = self._ports[transport]
        add_rport = self.settings.add_rport
        if branch is not None:
            parameters: dict[str, str | None] = {"branch": branch}
            if add_rport:
                parameters["rport"] = None
            set_top_via(request, FrozenViaHeader(transport.upper(), host, port, parameters))
        else:
            try:
                stamp_sent_by(request, transport, host, port, add_rport=add_rport)
            except SIPParseError as e:
                raise ValueError(
                    f"the request needs a valid top Via with its branch: {e}"
                ) from None
        self._sent_by.add((host, port))

    async def send(
        self,
        message: SIPRequest | SIPResponse | bytes,
        destination: TransportAddress | None = None,
        *,
        server_name: str | None = None,
    ) -> TransportAddress:
        """Send a message; the address it actually went to (transport, local, connection).

        - A request goes to ``destination`` after :meth:`prepare_request`.
        - A response goes back on the connection of ``destination`` (the ``source`` its
          request came from) while that is open, else where its top Via says (RFC 3261
          section 18.2.2; ``destination`` may then be None).
        - Bytes go to ``destination`` exactly (retransmissions of a prepared message).

        TCP and TLS connections are reused or opened (``connect_timeout``, then
        ``tls_timeout`` for the handshake). ``server_name`` is the name a TLS server's
        certificate must carry when ``tls_verify_server`` is on (default: the
        destination's IP address). Raises TransportError (TLSError for TLS failures).
        """
        if self._loop is None:
            raise RuntimeError("the transport manager is not running")
        if isinstance(message, SIPRequest):
            if destination is None:
                raise ValueError("a request needs a destination")
            data, destination = self.prepare_request_data(message, destination)
        elif isinstance(message, SIPResponse):
            data = bytes(message)
            destination = self._response_target(message, destination)
        elif isinstance(message, bytes | bytearray | memoryview):
            if destination is None:
                raise ValueError("bytes need a destination")
            data = bytes(message)
        else:
            raise TypeError(f"cannot send a {type(message).__name__}")
        if destination.transport == "udp":
            used = _address_from(destination, self._send_datagram(data, destination))
        else:
            connection = await self._connection_for(destination, server_name)
            connection.write(data)
            assert connection.address is not None
            used = connection.address
        self.statistics.messages_sent += 1
        return used

    def send_nowait(
        self, data: bytes, destination: TransportAddress, *, server_name: str | None = None
    ) -> bool:
        """Send prepared bytes at once when no connection has to be opened for them.

        Over UDP, or over a TCP/TLS connection that is open (``destination``'s own or
        the one kept for that peer), the bytes go out now: True. Otherwise nothing is
        sent and False says that ``await send(data, destination)`` must open a
        connection. Raises TransportError as :meth:`send` does. This is the Engine's
        sending path: no task, no coroutine per message.
        """
        if self._loop is None:
            raise RuntimeError("the transport manager is not running")
        if destination.transport == "udp":
            self._send_datagram(data, destination)
        else:
            connection = self._open_connection(destination, server_name)
            if connection is None:
                return False
            connection.write(data)
        self.statistics.messages_sent += 1
        return True

    def _response_target(
        self, response: SIPResponse, source: TransportAddress | None
    ) -> TransportAddress:
        try:
            via = response.top_via
            reliable = via.transport.lower() in ("tcp", "tls")
            if (
                reliable
                and source is not None
                and source.connection is not None
                and source.connection.is_open
            ):
                return source.connection.address  # type: ignore[return-value]
            return response_destination(via, source)
        except SIPParseError as e:
            raise TransportError(TransportFailure.INVALID_DESTINATION, str(e), source) from None

    def _send_datagram(self, data: bytes, destination: TransportAddress) -> UDPEndpoint:
        """Send one datagram; the endpoint (socket) it left from."""
        if "udp" not in self._ports:
            raise TransportError(TransportFailure.DISABLED, "udp is off", destination)
        endpoint = self._endpoint_for(destination)
        if endpoint is None:
            family = "IPv6" if destination.is_ipv6 else "IPv4"
            raise TransportError(
                TransportFailure.UNREACHABLE, f"no {family} UDP socket", destination
            )
        if self.trace is not None:
            self._trace(False, "udp", endpoint.local, (destination.host, destination.port), data)
        loss = self.packet_loss
        if loss is None or not loss.drop_sent():
            endpoint.send(data, destination.host, destination.port)
        return endpoint

    def _endpoint_for(self, destination: TransportAddress) -> UDPEndpoint | None:
        udp = self._udp
        local = destination.local
        if len(udp) == 1 and (local is None or udp[0].local == local):
            endpoint = udp[0]  # the common case: one socket, of the destination's family
            return endpoint if (":" in endpoint.local[0]) == (":" in destination.host) else None
        ipv6 = destination.is_ipv6
        fallback = None
        for endpoint in udp:
            if local is not None and endpoint.local == local:
                return endpoint
            if fallback is None and (":" in endpoint.local[0]) == ipv6:
                fallback = endpoint
        return fallback

    async def _connection_for(
        self, destination: TransportAddress, server_name: str | None
    ) -> SIPConnection:
        connection = self._open_connection(destination, server_name)
        if connection is not None:
            return connection
        tls = destination.transport == "tls"
        name = (server_name or destination.host) if tls else None
        key = (destination.transport, destination.host, destination.port)
        task = self._connecting.get((*key, name))
        if task is None:
            if len(self._open) + len(self._connecting) >= self.settings.max_connections:
                raise TransportError(
                    TransportFailure.CONNECTION_LIMIT,
                    f"{self.settings.max_connections} connections open",
                    destination,
                )
            task = self.loop.create_task(self._connect(destination, name))
            self._connecting[(*key, name)] = task
            task.add_done_callback(lambda t: self._connect_done((*key, name), t))
        return await asyncio.shield(task)

    def _open_connection(
        self, destination: TransportAddress, server_name: str | None
    ) -> SIPConnection | None:
        """The open connection for ``destination``: its own, or the one kept for the peer."""
        connection = destination.connection
        if connection is not None and connection.is_open:
            return connection
        self._check_enabled(destination.transport, destination)
        tls = destination.transport == "tls"
        name = (server_name or destination.host) if tls else None
        key = (destination.transport, destination.host, destination.port)
        # Outbound TLS connections are kept per server name: each was verified for its own.
        for candidate in ((*key, name), (*key, None)) if tls else ((*key, None),):
            connection = self._connections.get(candidate)
            if connection is not None and connection.is_open:
                return connection
        return None

    def _connect_done(
        self, key: tuple[str, str, int, str | None], task: asyncio.Task[SIPConnection]
    ) -> None:
        if self._connecting.get(key) is task:
            del self._connecting[key]
        if not task.cancelled():
            task.exception()  # retrieved here too, for when every sender was cancelled

    async def _connect(
        self, destination: TransportAddress, server_name: str | None
    ) -> SIPConnection:
        loop = self.loop
        settings = self.settings
        connection = SIPConnection(
            self, destination.transport, outbound=True, server_name=server_name
        )
        local_host = self._bind_host(destination)
        try:
            raw, _ = await asyncio.wait_for(
                loop.create_connection(
                    lambda: connection,
                    destination.host,
                    destination.port,
                    local_addr=(local_host, 0) if local_host is not None else None,
                ),
                settings.connect_timeout,
            )
        except TimeoutError:
            raise TransportError(
                TransportFailure.CONNECT_TIMEOUT,
                f"no connection within {settings.connect_timeout} s",
                destination,
            ) from None
        except ConnectionRefusedError:
            raise TransportError(TransportFailure.CONNECTION_REFUSED, "", destination) from None
        except OSError as e:
            raise TransportError(
                TransportFailure.UNREACHABLE, e.strerror or str(e), destination
            ) from None
        if destination.transport == "tls":
            assert self._client_ssl is not None
            try:
                secure = await asyncio.wait_for(
                    loop.start_tls(
                        raw,
                        connection,
                        self._client_ssl,
                        server_hostname=server_name,
                        ssl_handshake_timeout=settings.tls_timeout + 1,
                    ),
                    settings.tls_timeout,
                )
            except TimeoutError:
                raw.abort()
                raise tls_error_from(
                    TimeoutError(f"no TLS handshake within {settings.tls_timeout} s"),
                    destination,
                    server_name,
                ) from None
            except (OSError, EOFError) as e:  # ssl.SSLError and ConnectionError are OSErrors
                raw.abort()
                raise tls_error_from(e, destination, server_name) from None
            assert isinstance(secure, asyncio.Transport)
            connection.start(secure)
        if not connection.is_open:
            raise connection.error or TransportError(
                TransportFailure.CONNECTION_LOST, "closed at once", destination
            )
        return connection

    # -- addresses

    def _check_enabled(self, transport: str, destination: TransportAddress | None) -> None:
        if transport not in self._ports:
            raise TransportError(TransportFailure.DISABLED, f"{transport} is off", destination)

    def _local_host(self, destination: TransportAddress) -> str:
        """Our address for a destination's family: the bound one, or the route's source."""
        ipv6 = destination.is_ipv6
        for host in self._hosts:
            if (":" in host) == ipv6:
                if host not in _WILDCARDS:
                    return host
                return self._route_source(destination.host)
        family = "IPv6" if ipv6 else "IPv4"
        raise TransportError(TransportFailure.UNREACHABLE, f"no {family} address", destination)

    def _route_source(self, host: str) -> str:
        """The source address the kernel picks for ``host`` (no packet is sent)."""
        cached = self._routes.get(host)
        if cached is not None:
            return cached
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.connect((host, 9))
                source = canonical_ip(probe.getsockname()[0]) or probe.getsockname()[0]
        except OSError as e:
            raise TransportError(TransportFailure.UNREACHABLE, str(e)) from None
        if len(self._routes) >= _ROUTE_CACHE:
            self._routes.clear()
        self._routes[host] = source
        return source

    def _bind_host(self, destination: TransportAddress) -> str | None:
        ipv6 = destination.is_ipv6
        for host in self._hosts:
            if (":" in host) == ipv6 and host not in _WILDCARDS:
                return host
        return None

    def mapped_address(self, destination: TransportAddress) -> tuple[str, int] | None:
        """Our (host, port) as the peer at ``destination`` saw it in its last response
        (``received`` and ``rport`` of the top Via), or None if it told us nothing."""
        return self._mapped.get((destination.transport, destination.host, destination.port))

    @property
    def connections(self) -> list[TransportAddress]:
        """The open TCP/TLS connections, each as its peer's address."""
        return [c.address for c in self._open if c.address is not None]

    # -- receiving (called by the endpoints and connections)

    def _datagram_received(self, endpoint: UDPEndpoint, data: bytes, addr: tuple[str, int]) -> None:
        loss = self.packet_loss
        if loss is not None and loss.drop_received():
            return
        sources = endpoint.sources
        source = sources.get(addr)
        if source is None:
            try:
                source = TransportAddress("udp", addr[0], addr[1], endpoint.local)
            except ValueError:
                self.statistics.datagrams_dropped += 1
                return
            if len(sources) >= _SOURCE_CACHE:
                sources.clear()
            sources[addr] = source
        if self.trace is not None:
            self._trace(True, "udp", (source.host, source.port), endpoint.local, data)
        if len(data) > self.settings.max_datagram_size:
            self.statistics.datagrams_dropped += 1
            self._log_bad("dropped a %d byte datagram from %s", len(data), source)
            return
        if data[:1] in _KEEPALIVE_START and not data.strip(b"\r\n"):
            return  # a CRLF keep-alive datagram
        try:
            message = parse_message(data)
        except MalformedSIPMessageError as e:
            self._reject(e, source)
            return
        except SIPParseError as e:
            self.statistics.malformed_dropped += 1
            self._log_bad("dropped a datagram from %s: %s", source, e)
            return
        except Exception:
            self.statistics.malformed_dropped += 1
            log.exception("the parser failed on a datagram from %s", source)
            return
        self._message_received(message, source)

    def _message_received(
        self, message: SIPRequest | SIPResponse, source: TransportAddress
    ) -> None:
        try:
            if isinstance(message, SIPRequest):
                stamp_received(message, source.host, source.port)
            else:
                via = message.top_via
                if sent_by(via) not in self._sent_by:
                    self.statistics.responses_dropped += 1
                    self._log_bad("dropped a response from %s for Via %s", source, via.body)
                    return
                self._learn_mapping(via, source)
        except SIPParseError as e:
            self.statistics.malformed_dropped += 1
            self._log_bad("dropped a message from %s: %s", source, e)
            return
        self.statistics.messages_received += 1
        try:
            self.on_message(message, source, self.loop.time())
        except Exception:
            log.exception("on_message failed for %r from %s", message, source)

    def _learn_mapping(self, via: FrozenViaHeader, source: TransportAddress) -> None:
        received = via.received
        rport = via.rport
        if received is None and rport in (None, True):
            return
        host = canonical_ip(received) if received else canonical_ip(via.host)
        port = rport if rport not in (None, True) else via.port
        if host is None or port is None:
            return
        key = (source.transport, source.host, source.port)
        if key not in self._mapped and len(self._mapped) >= _MAPPED_ADDRESSES:
            del self._mapped[next(iter(self._mapped))]
        self._mapped[key] = (host, port)

    def _reject(self, error: MalformedSIPMessageError, source: TransportAddress) -> None:
        """Answer a malformed request with 400 and a Warning, or drop it."""
        assert source.local is not None  # set on everything we received
        host, port = source.local
        if host in _WILDCARDS:
            with contextlib.suppress(TransportError):
                host = self._local_host(source)
        agent = format_hostport(host, port)
        try:
            response = error.make_response(400, warning_agent=agent)
            if response is not None:
                stamp_received(response, source.host, source.port)
        except (SIPParseError, ValueError):
            response = None
        if response is None:
            self.statistics.malformed_dropped += 1
            self._log_bad("dropped a malformed message from %s: %s", source, error)
            return
        self.statistics.malformed_answered += 1
        self._log_bad("answered 400 to %s: %s", source, error)
        try:
            target = self._response_target(response, source)
            data = bytes(response)
            if target.transport == "udp":
                self._send_datagram(data, target)
            elif target.connection is not None:
                target.connection.write(data)
        except TransportError as e:
            self._log_bad("cannot send 400 to %s: %s", source, e)

    # -- connections (called by SIPConnection)

    def _connection_started(self, connection: SIPConnection) -> bool:
        address = connection.address
        assert address is not None
        if not connection.outbound and len(self._open) >= self.settings.max_connections:
            self.statistics.connections_refused += 1
            self._log_bad("refused a connection from %s: connection limit", address)
            connection.close(TransportError(TransportFailure.CONNECTION_LIMIT, "", address))
            return False
        self._open.add(connection)
        self._connections[self._key(connection)] = connection
        log.debug("connection %s %s", "to" if connection.outbound else "from", address)
        if self.on_connected is not None:
            try:
                self.on_connected(address)
            except Exception:
                log.exception("on_connected failed for %s", address)
        return True

    @staticmethod
    def _key(connection: SIPConnection) -> tuple[str, str, int, str | None]:
        address = connection.address
        assert address is not None
        name = connection.server_name if connection.outbound else None
        return (address.transport, address.host, address.port, name)

    def _connection_finished(self, connection: SIPConnection, error: TransportError | None) -> None:
        if connection not in self._open:
            return
        self._open.discard(connection)
        address = connection.address
        assert address is not None
        key = self._key(connection)
        if self._connections.get(key) is connection:
            del self._connections[key]
        log.debug("connection %s closed%s", address, f": {error}" if error else "")
        if self.on_disconnected is not None:
            try:
                self.on_disconnected(address, error)
            except Exception:
                log.exception("on_disconnected failed for %s", address)

    # -- hooks and logging

    def _trace(
        self,
        received: bool,
        transport: str,
        source: tuple[str, int],
        destination: tuple[str, int],
        data: bytes,
    ) -> None:
        trace = self.trace
        if trace is None:
            return
        try:
            trace(TraceRecord(received, transport, *source[:2], *destination[:2], bytes(data)))
        except Exception:
            log.exception("the trace hook failed")

    def _trace_chunk(
        self, received: bool, peer: TransportAddress, local: tuple[str, int], data: bytes
    ) -> None:
        remote = (peer.host, peer.port)
        if received:
            self._trace(True, peer.transport, remote, local, data)
        else:
            self._trace(False, peer.transport, local, remote, data)

    def _log_bad(self, text: str, *args: object) -> None:
        """Log bad input, at most a few records per window so that a flood stays cheap."""
        now = self.loop.time() if self._loop is not None else 0.0
        if now - self._bad_input_window >= _BAD_INPUT_WINDOW:
            if self._bad_input_suppressed:
                log.info("%d more bad input records suppressed", self._bad_input_suppressed)
            self._bad_input_window = now
            self._bad_input_logged = 0
            self._bad_input_suppressed = 0
        if self._bad_input_logged < _BAD_INPUT_LOGS:
            self._bad_input_logged += 1
            log.info(text, *args)
        else:
            self._bad_input_suppressed += 1


def _bind_all(
    wanted: dict[str, int], hosts: tuple[str, ...], *, wildcard: bool
) -> dict[str, list[socket.socket]]:
    """Bound sockets per transport: one per host, one port per transport on all hosts.

    UDP and TCP share their port number when both are 0 or both name the same port, so
    that the size rule's switch from UDP to TCP reaches the same port.
    """
    groups: list[tuple[tuple[str, ...], int]] = []
    if (
        "udp" in wanted
        and "tcp" in wanted
        and (wanted["udp"] == wanted["tcp"] or 0 in (wanted["udp"], wanted["tcp"]))
    ):
        groups.append((("udp", "tcp"), wanted["udp"] or wanted["tcp"]))
    else:
        groups.extend(((name,), wanted[name]) for name in ("udp", "tcp") if name in wanted)
    if "tls" in wanted:
        groups.append((("tls",), wanted["tls"]))
    result: dict[str, list[socket.socket]] = {}
    try:
        for names, port in groups:
            result.update(_bind_group(names, hosts, port, wildcard=wildcard))
    except BaseException:
        for bound in result.values():
            for sock in bound:
                sock.close()
        raise
    return result


def _bind_group(
    names: tuple[str, ...], hosts: tuple[str, ...], port: int, *, wildcard: bool
) -> dict[str, list[socket.socket]]:
    for _ in range(_BIND_ATTEMPTS if port == 0 else 1):
        chosen = port
        result: dict[str, list[socket.socket]] = {name: [] for name in names}
        try:
            for name in names:
                for host in hosts:
                    sock = _bound_socket(name, host, chosen, optional=wildcard and ":" in host)
                    if sock is None:
                        continue
                    result[name].append(sock)
                    chosen = chosen or sock.getsockname()[1]
            return result
        except OSError as e:
            for bound in result.values():
                for sock in bound:
                    sock.close()
            if port == 0 and e.errno == errno.EADDRINUSE:
                continue
            where = ", ".join(format_hostport(host, chosen) for host in hosts)
            raise TransportError(
                TransportFailure.BIND_FAILED, f"{'/'.join(names)} on {where}: {e.strerror or e}"
            ) from None
    raise TransportError(
        TransportFailure.BIND_FAILED, f"no port free for {'/'.join(names)} on all addresses"
    )


def _bound_socket(name: str, host: str, port: int, *, optional: bool) -> socket.socket | None:
    """A socket bound to (host, port); None when ``optional`` and the host has no IPv6."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    kind = socket.SOCK_DGRAM if name == "udp" else socket.SOCK_STREAM
    try:
        sock = socket.socket(family, kind)
    except OSError:
        if optional:
            return None
        raise
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setblocking(False)
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if optional and e.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
            return None
        raise
    return sock


def _address_from(destination: TransportAddress, endpoint: UDPEndpoint) -> TransportAddress:
    """``destination`` as the address a datagram went to: with the local socket's address."""
    if destination.local == endpoint.local:
        return destination
    return TransportAddress("udp", destination.host, destination.port, endpoint.local)
