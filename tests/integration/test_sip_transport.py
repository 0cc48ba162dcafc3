"""Two TransportManagers (and raw sockets as odd peers) talking over loopback, v4 and v6.

Run inside a loopback-only network namespace:
    unshare -n sh -c 'ip link set lo up; PYTHONPATH=src python -m pytest tests/integration -q'
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.interop.peers.certs import Certificates, make_certificates

from sipsimple.core.errors import SIPParseError
from sipsimple.core.sip.headers import FrozenViaHeader, ViaHeader
from sipsimple.core.sip.message import SIPRequest, SIPResponse, parse_message
from sipsimple.core.transport import (
    PacketLoss,
    TraceRecord,
    TransportAddress,
    TransportError,
    TransportFailure,
    TransportManager,
    TransportSettings,
)
from sipsimple.core.transport.routing import (
    response_destination,
    sent_by,
    stamp_received,
    stamp_sent_by,
)

LOOPBACKS = ("127.0.0.1", "::1")
DOMAIN = "example.test"


def host_uri(host: str, port: int | None = None) -> str:
    host = f"[{host}]" if ":" in host else host
    return f"sip:{host}" + (f":{port}" if port else "")


def make_request(
    host: str = "127.0.0.1",
    method: str = "OPTIONS",
    *,
    body: bytes = b"",
    via: str | ViaHeader | None = None,
    extra: list[tuple[str, Any]] | None = None,
) -> SIPRequest:
    """A request whose top Via is a placeholder (the transport fills it) unless given."""
    tag = uuid.uuid4().hex
    return SIPRequest(
        method,
        host_uri(host),
        [
            ("Via", via or ViaHeader("UDP", "invalid.invalid", None, {"branch": f"z9hG4bK{tag}"})),
            ("Max-Forwards", "70"),
            ("From", f"<sip:alice@{DOMAIN}>;tag={tag[:8]}"),
            ("To", f"<sip:bob@{DOMAIN}>"),
            ("Call-ID", tag),
            ("CSeq", f"1 {method}"),
            *(extra or []),
        ],
        body,
    )


class Peer:
    """A TransportManager with an inbox; answers requests with ``answer`` when set."""

    def __init__(self, answer: int | None = None, **settings: Any) -> None:
        settings.setdefault("ip_address", LOOPBACKS)
        self.settings = TransportSettings(**settings)
        self.inbox: asyncio.Queue[tuple[SIPRequest | SIPResponse, TransportAddress]] = (
            asyncio.Queue()
        )
        self.answer = answer
        self.traces: list[TraceRecord] = []
        self.events: list[tuple[str, TransportAddress, TransportError | None]] = []
        self.answered: list[asyncio.Task[TransportAddress]] = []
        self.manager = TransportManager(
            self.settings,
            self._on_message,
            on_connected=lambda address: self.events.append(("connected", address, None)),
            on_disconnected=lambda address, error: self.events.append(
                ("disconnected", address, error)
            ),
        )

    def _on_message(
        self, message: SIPRequest | SIPResponse, source: TransportAddress, now: float
    ) -> None:
        assert now > 0
        self.inbox.put_nowait((message, source))
        if self.answer and isinstance(message, SIPRequest) and message.method != "ACK":
            response = message.make_response(self.answer, to_tag="b0b")
            self.answered.append(asyncio.ensure_future(self.manager.send(response, source)))

    def address(self, transport: str, host: str = "127.0.0.1") -> TransportAddress:
        return TransportAddress(transport, host, self.manager.ports[transport])

    async def receive(self, timeout: float = 3.0) -> tuple[Any, TransportAddress]:
        return await asyncio.wait_for(self.inbox.get(), timeout)

    async def nothing(self, wait: float = 0.3) -> None:
        with pytest.raises(TimeoutError):
            await self.receive(wait)

    async def __aenter__(self) -> Peer:
        await self.manager.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.manager.stop()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"), DOMAIN)


def tls_settings(certificates: Certificates, **extra: Any) -> dict[str, Any]:
    return {
        "tls_port": 0,
        "tls_cert_file": certificates.server.cert,
        "tls_privkey_file": certificates.server.key,
        "tls_ca_file": certificates.ca_cert,
        "tls_verify_server": True,
        **extra,
    }


@pytest.fixture
async def pair(certificates: Certificates) -> AsyncIterator[tuple[Peer, Peer]]:
    async with (
        Peer(**tls_settings(certificates)) as a,
        Peer(200, **tls_settings(certificates)) as b,
    ):
        yield a, b


# -- exchanges over every transport and family


@pytest.mark.parametrize("host", LOOPBACKS)
@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_request_and_response(pair: tuple[Peer, Peer], transport: str, host: str) -> None:
    a, b = pair
    request = make_request(host)
    used = await a.manager.send(request, b.address(transport, host), server_name=DOMAIN)
    assert used.transport == transport and used.host == host
    assert used.local is not None and used.local[0] == host
    got, source = await b.receive()
    assert isinstance(got, SIPRequest) and got.call_id == request.call_id
    assert source.transport == transport and source.host == host
    via = got.top_via
    assert via.transport == transport.upper()
    assert (via.host, via.port) == (host, a.manager.ports[transport])
    assert via.received == host and via.rport == source.port
    response, response_source = await a.receive()
    assert isinstance(response, SIPResponse) and response.code == 200
    assert response.call_id == request.call_id
    assert response_source == b.address(transport, host)
    if transport != "udp":
        assert response_source.connection is used.connection  # back on the same connection


async def test_ports_and_listeners() -> None:
    async with Peer(udp_port=0, tcp_port=0, tls_port=None) as peer:
        ports = peer.manager.ports
        assert set(ports) == {"udp", "tcp"} and ports["udp"] == ports["tcp"]
        listed = {(a.transport, a.host, a.port) for a in peer.manager.local_addresses}
        assert listed == {(t, h, ports[t]) for t in ("udp", "tcp") for h in LOOPBACKS}
        with pytest.raises(TransportError) as info:
            await peer.manager.send(make_request(), TransportAddress("tls", "127.0.0.1", 5061))
        assert info.value.failure is TransportFailure.DISABLED
    async with Peer(udp_port=None, tcp_port=0, ip_address="127.0.0.1") as peer:
        assert set(peer.manager.ports) == {"tcp"}
        with pytest.raises(TransportError) as info:
            await peer.manager.send(make_request(), TransportAddress("udp", "127.0.0.1", 5060))
        assert info.value.failure is TransportFailure.DISABLED
        with pytest.raises(TransportError) as info:
            await peer.manager.send(make_request("::1"), TransportAddress("tcp", "::1", 5060))
        assert info.value.failure is TransportFailure.UNREACHABLE


async def test_wildcard_listener_fills_the_routed_address() -> None:
    async with Peer(ip_address=None, tls_port=None) as a, Peer(200) as b:
        assert {h for h in (x.host for x in a.manager.local_addresses)} <= {"0.0.0.0", "::"}
        await a.manager.send(make_request(), b.address("udp"))
        got, _ = await b.receive()
        assert got.top_via.host == "127.0.0.1"
        response, _ = await a.receive()
        assert response.code == 200


async def test_port_in_use_is_reported() -> None:
    async with Peer(tls_port=None, ip_address="127.0.0.1") as a:
        taken = a.manager.ports["udp"]
        clash = TransportManager(
            TransportSettings(ip_address="127.0.0.1", udp_port=taken, tcp_port=None),
            lambda *args: None,
        )
        with pytest.raises(TransportError) as info:
            await clash.start()
        assert info.value.failure is TransportFailure.BIND_FAILED
        assert str(taken) in str(info.value)
        assert not clash.is_running


# -- response routing (RFC 3261 section 18.2, RFC 3581)


def raw_udp(host: str = "127.0.0.1") -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.setblocking(False)
    return sock


async def recv_datagram(sock: socket.socket, timeout: float = 3.0) -> bytes:
    return await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 65535), timeout)


@pytest.mark.parametrize("host", LOOPBACKS)
async def test_udp_response_goes_to_rport_and_received(host: str) -> None:
    """The client's Via names another host and port: rport sends the answer back to the
    source address and port; received and rport are filled in (RFC 3581 section 4)."""
    async with Peer(200, tls_port=None) as b:
        with raw_udp(host) as sock:
            via = ViaHeader("UDP", "192.0.2.1", 5999, {"branch": "z9hG4bKrp1", "rport": None})
            sock.sendto(bytes(make_request(host, via=via)), (host, b.manager.ports["udp"]))
            request, source = await b.receive()
            assert (source.host, source.port) == sock.getsockname()[:2]
            assert request.top_via.received == host
            assert request.top_via.rport == source.port
            response = parse_message(await recv_datagram(sock))
            assert response.code == 200
            assert response.top_via.received == host and response.top_via.rport == source.port


async def test_udp_response_without_rport_goes_to_sent_by_port() -> None:
    async with Peer(200, tls_port=None, ip_address="127.0.0.1") as b:
        with raw_udp() as listener, raw_udp() as sender:
            port = listener.getsockname()[1]
            via = ViaHeader("UDP", "localhost", port, {"branch": "z9hG4bKrp2"})
            sender.sendto(bytes(make_request(via=via)), ("127.0.0.1", b.manager.ports["udp"]))
            request, _ = await b.receive()
            # A name as sent-by: received is added, and rport is not (it was not asked for).
            assert request.top_via.received == "127.0.0.1" and request.top_via.rport is None
            response = parse_message(await recv_datagram(listener))
            assert response.code == 200


def udp_socket_of(peer: Peer) -> socket.socket:
    sock = peer.manager._udp[0].socket
    assert sock is not None
    return sock


async def test_udp_receive_buffer_absorbs_a_burst() -> None:
    """A burst that arrives while the loop does not read waits in the receive buffer
    (udp_receive_buffer, capped by the system), rather than being dropped."""
    try:
        with open("/proc/sys/net/core/rmem_max") as limit:
            rmem_max = int(limit.read())
    except OSError:
        pytest.skip("needs Linux's net.core.rmem_max")
    asked = 1 << 20
    burst = 400  # ~1 KB datagrams: past a 212 KB default buffer, within 1 MB
    async with (
        Peer(tls_port=None, tcp_port=None, ip_address="127.0.0.1", udp_receive_buffer=asked) as b,
        Peer(tls_port=None, tcp_port=None, ip_address="127.0.0.1", udp_receive_buffer=None) as c,
    ):
        default = udp_socket_of(c).getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        size = udp_socket_of(b).getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        assert size >= min(asked, rmem_max) and (rmem_max <= default or size > default)
        if size < 2 * burst * 1500:
            pytest.skip(f"the system caps the receive buffer at {size} bytes")
        padding = [("Subject", "x" * 600)]
        with raw_udp() as sock:
            for _ in range(burst):  # no await in between: the loop reads none of them yet
                sock.sendto(
                    bytes(make_request(extra=padding)), ("127.0.0.1", b.manager.ports["udp"])
                )
        for _ in range(burst):
            await b.receive()
        assert b.manager.statistics.messages_received == burst


async def test_tcp_response_reopens_a_connection_when_the_first_is_gone() -> None:
    """18.2.2: the request's connection is closed, so the response goes on a new
    connection to received and the sent-by port."""
    async with Peer(tls_port=None) as a, Peer(tls_port=None) as b:
        await a.manager.send(make_request(), b.address("tcp"))
        request, source = await b.receive()
        assert source.connection is not None
        source.connection.close()
        await asyncio.sleep(0.05)
        used = await b.manager.send(request.make_response(200), source)
        assert used.port == a.manager.ports["tcp"] and used.connection is not source.connection
        response, _ = await a.receive()
        assert response.code == 200


async def test_response_routed_by_via_alone_and_bytes_resent_as_they_are() -> None:
    async with Peer(tls_port=None) as a, Peer(tls_port=None) as b:
        used = await a.manager.send(make_request("::1"), b.address("udp", "::1"))
        request, _ = await b.receive()
        # No source given: the Via (received, rport) alone says where the response goes.
        back = await b.manager.send(request.make_response(180), None)
        assert (back.transport, back.host, back.port) == ("udp", "::1", used.local[1])  # type: ignore[index]
        response, _ = await a.receive()
        assert response.code == 180
        # A retransmission: the same bytes to the same place, no Via processing.
        data = bytes(request.make_response(200))
        assert await b.manager.send(data, back) == back
        response, _ = await a.receive()
        assert response.code == 200
        with pytest.raises(ValueError):
            await b.manager.send(data)
        with pytest.raises(TypeError):
            await b.manager.send("text", back)  # type: ignore[arg-type]


async def test_response_with_foreign_via_is_dropped() -> None:
    """18.1.2: a response whose top Via sent-by is not ours never reaches on_message."""
    async with Peer(tls_port=None) as a:
        with raw_udp() as sock:
            request = make_request(via="SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKx")
            sock.sendto(bytes(request.make_response(200)), ("127.0.0.1", a.manager.ports["udp"]))
            await a.nothing()
            assert a.manager.statistics.responses_dropped == 1


async def test_mapped_address_learned_from_responses() -> None:
    async with Peer(tls_port=None) as a, Peer(200, tls_port=None) as b:
        destination = b.address("udp")
        assert a.manager.mapped_address(destination) is None
        used = await a.manager.send(make_request(), destination)
        await b.receive()
        await a.receive()
        assert used.local is not None
        assert a.manager.mapped_address(destination) == used.local


# -- the size rule (RFC 3261 section 18.1.1)


@pytest.mark.parametrize("host", LOOPBACKS)
async def test_large_request_moves_from_udp_to_tcp(host: str) -> None:
    async with Peer(tls_port=None) as a, Peer(200, tls_port=None) as b:
        small = make_request(host, "MESSAGE", body=b"x" * 600)
        large = make_request(host, "MESSAGE", body=b"x" * 1400)
        destination = b.address("udp", host)
        assert a.manager.prepare_request(small, destination) == destination
        assert small.top_via.transport == "UDP"
        prepared = a.manager.prepare_request(large, destination)
        assert prepared == b.address("tcp", host)
        assert large.top_via.transport == "TCP"
        assert (large.top_via.host, large.top_via.port) == (host, a.manager.ports["tcp"])
        assert a.manager.prepare_request(large, destination) == prepared  # idempotent
        used = await a.manager.send(large, destination)
        assert used.transport == "tcp" and used.connection is not None
        got, source = await b.receive()
        assert source.transport == "tcp" and got.body == large.body
        response, _ = await a.receive()
        assert response.code == 200


async def test_threshold_follows_path_mtu() -> None:
    async with Peer(tls_port=None, path_mtu=1000) as a, Peer(tls_port=None) as b:
        request = make_request(body=b"y" * 750)
        assert len(bytes(request)) > 800
        assert a.manager.prepare_request(request, b.address("udp")).transport == "tcp"
    async with Peer(tls_port=None, tcp_port=None) as a, Peer(tls_port=None) as b:
        request = make_request(body=b"y" * 3000)
        # Without TCP the request stays on UDP (there is nothing to switch to).
        assert a.manager.prepare_request(request, b.address("udp")).transport == "udp"


# -- connection reuse


async def test_one_connection_per_peer_both_ways() -> None:
    async with Peer(tls_port=None) as a, Peer(200, tls_port=None) as b:
        connections = set()
        for _ in range(5):
            used = await a.manager.send(make_request(), b.address("tcp"))
            connections.add(id(used.connection))
            await b.receive()
            await a.receive()
        assert len(connections) == 1
        assert len(a.manager.connections) == 1 and len(b.manager.connections) == 1
        # b sends a request to the address a's connection came from: the same connection.
        inbound = b.manager.connections[0]
        b.answer = None
        used = await b.manager.send(make_request(), inbound)
        assert used.connection is inbound.connection
        got, got_source = await a.receive()
        assert isinstance(got, SIPRequest) and got_source.connection is not None
        assert len(a.manager.connections) == 1


async def test_concurrent_sends_share_one_new_connection() -> None:
    async with Peer(tls_port=None) as a, Peer(tls_port=None) as b:
        used = await asyncio.gather(
            *(a.manager.send(make_request(), b.address("tcp")) for _ in range(10))
        )
        assert len({id(u.connection) for u in used}) == 1
        for _ in range(10):
            await b.receive()
        assert [e[0] for e in a.events] == ["connected"]


async def test_send_nowait_sends_unless_a_connection_must_be_opened() -> None:
    async with Peer(tls_port=None) as a, Peer(tls_port=None) as b:
        request = make_request()
        data, prepared = a.manager.prepare_request_data(request, b.address("udp"))
        assert prepared == b.address("udp") and data == bytes(request)
        assert a.manager.send_nowait(data, prepared) is True
        got, _ = await b.receive()
        assert got.call_id == request.call_id
        tcp = b.address("tcp")
        data, _ = a.manager.prepare_request_data(make_request(), tcp)
        assert a.manager.send_nowait(data, tcp) is False  # nothing open: send() connects
        await b.nothing(0.1)
        assert a.manager.statistics.messages_sent == 1
        opened = await a.manager.send(data, tcp)
        await b.receive()
        again = make_request()
        data, _ = a.manager.prepare_request_data(again, tcp)
        assert a.manager.send_nowait(data, tcp) is True  # on the connection kept for the peer
        got, source = await b.receive()
        assert got.call_id == again.call_id and source.connection is not None
        assert len(a.manager.connections) == 1 and opened.connection is not None
        with pytest.raises(TransportError) as info:
            a.manager.send_nowait(data, TransportAddress("tls", "127.0.0.1", 5061))
        assert info.value.failure is TransportFailure.DISABLED
    with pytest.raises(RuntimeError):
        a.manager.send_nowait(data, tcp)


async def test_prepare_with_a_branch_makes_the_whole_via() -> None:
    async with Peer(tls_port=None, ip_address="127.0.0.1") as a, Peer(200, tls_port=None) as b:
        request = make_request()
        del request.headers["Via"]  # no Via at all: the transport adds ours
        data, _ = a.manager.prepare_request_data(request, b.address("udp"), branch="z9hG4bKone")
        via = parse_message(data).top_via
        assert (via.transport, via.host, via.port) == ("UDP", "127.0.0.1", a.manager.ports["udp"])
        assert via.branch == "z9hG4bKone" and via.rport is True
        assert len(parse_message(data).via) == 1
        # a request sent before (a retry): its top Via is replaced, not added to
        data, _ = a.manager.prepare_request_data(request, b.address("tcp"), branch="z9hG4bKtwo")
        vias = parse_message(data).via
        assert [(v.transport, v.branch) for v in vias] == [("TCP", "z9hG4bKtwo")]
        assert a.manager.send_nowait(data, b.address("udp")) is True
        response, _ = await a.receive()  # the response is ours: its Via names us
        assert response.code == 200


async def test_connect_refused_and_timeout() -> None:
    async with Peer(tls_port=None, ip_address="127.0.0.1", connect_timeout=0.5) as a:
        with socket.socket() as closed_port:
            closed_port.bind(("127.0.0.1", 0))
            port = closed_port.getsockname()[1]
        with pytest.raises(TransportError) as info:
            await a.manager.send(make_request(), TransportAddress("tcp", "127.0.0.1", port))
        assert info.value.failure is TransportFailure.CONNECTION_REFUSED
        assert str(port) in str(info.value)
        # A listener whose accept queue is full: the kernel drops further SYNs.
        with socket.socket() as full:
            full.bind(("127.0.0.1", 0))
            full.listen(0)
            fillers = []
            try:
                for _ in range(4):
                    filler = socket.socket()
                    filler.setblocking(False)
                    fillers.append(filler)
                    try:
                        filler.connect(full.getsockname())
                    except BlockingIOError:
                        pass
                await asyncio.sleep(0.1)
                destination = TransportAddress("tcp", "127.0.0.1", full.getsockname()[1])
                with pytest.raises(TransportError) as info:
                    await a.manager.send(make_request(), destination)
                assert info.value.failure is TransportFailure.CONNECT_TIMEOUT
            finally:
                for filler in fillers:
                    filler.close()


# -- keep-alives and idle connections (RFC 5626 section 3.5.1)


async def tcp_client(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def test_ping_is_answered_with_pong() -> None:
    async with Peer(tls_port=None) as b:
        reader, writer = await tcp_client(b.manager.ports["tcp"])
        writer.write(b"\r\n\r\n")
        assert await asyncio.wait_for(reader.readexactly(2), 2) == b"\r\n"
        writer.write(bytes(make_request()))  # a message after the ping still parses
        got, _ = await b.receive()
        assert isinstance(got, SIPRequest)
        writer.close()


async def test_keepalive_pings_keep_a_live_peer_and_drop_a_dead_one() -> None:
    settings = {"tls_port": None, "keepalive_interval": 0.1, "keepalive_timeout": 0.3}
    async with Peer(**settings) as a, Peer(tls_port=None) as b:
        used = await a.manager.send(make_request(), b.address("tcp"))
        await b.receive()
        await asyncio.sleep(0.8)  # several pings, each answered by b
        assert used.connection is not None and used.connection.is_open
        # A server that reads but never answers pings.
        silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = silent.sockets[0].getsockname()[1]
        try:
            dead = await a.manager.send(make_request(), TransportAddress("tcp", "127.0.0.1", port))
            assert dead.connection is not None
            await asyncio.sleep(0.7)
            assert not dead.connection.is_open
            assert dead.connection.error is not None
            assert dead.connection.error.failure is TransportFailure.KEEPALIVE_TIMEOUT
            assert ("disconnected", dead, dead.connection.error) in a.events
        finally:
            silent.close()


async def test_idle_connections_are_closed() -> None:
    async with Peer(tls_port=None, idle_timeout=0.6) as a, Peer(tls_port=None) as b:
        used = await a.manager.send(make_request(), b.address("tcp"))
        await b.receive()
        assert used.connection is not None
        await asyncio.sleep(0.3)
        await a.manager.send(make_request(), b.address("tcp"))  # activity postpones it
        await asyncio.sleep(0.4)
        assert used.connection.is_open
        await asyncio.sleep(0.8)
        assert not used.connection.is_open and used.connection.error is None
        assert a.manager.connections == []


# -- hooks


async def test_trace_sees_every_datagram_and_chunk() -> None:
    async with Peer(tls_port=None) as a, Peer(200, tls_port=None) as b:
        a.manager.trace = a.traces.append
        for transport in ("udp", "tcp"):
            request = make_request()
            used = await a.manager.send(request, b.address(transport))
            await a.receive()
            sent, received = a.traces[-2], a.traces[-1]
            assert not sent.received and received.received
            assert sent.transport == received.transport == transport
            assert sent.data == bytes(request)
            assert (sent.destination_ip, sent.destination_port) == (used.host, used.port)
            assert (received.source_ip, received.source_port) == (used.host, used.port)
            assert used.local is not None
            assert (received.destination_ip, received.destination_port) == used.local
            assert parse_message(received.data).code == 200


async def test_a_failing_callback_or_hook_is_isolated(caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("observer bug")

    async with Peer(tls_port=None) as a, Peer(tls_port=None) as b:
        b.manager.on_message = broken
        b.manager.trace = broken
        await a.manager.send(make_request(), b.address("udp"))
        await a.manager.send(make_request(), b.address("tcp"))
        await asyncio.sleep(0.2)
        assert b.manager.statistics.messages_received == 2
        assert "on_message failed" in caplog.text and "trace hook failed" in caplog.text
        assert b.manager.connections[0].connection.is_open  # type: ignore[union-attr]


async def test_packet_loss_hook_is_seeded() -> None:
    def survivors(seed: int) -> list[int]:
        loss = PacketLoss(send=0.2, receive=0.2, seed=seed)
        return [i for i in range(200) if not loss.drop_sent() and not loss.drop_received()]

    assert survivors(7) == survivors(7) != survivors(8)
    async with Peer(tls_port=None) as a, Peer(tls_port=None) as b:
        a.manager.packet_loss = PacketLoss(send=0.5, seed=1)
        for _ in range(40):
            await a.manager.send(make_request(), b.address("udp"))
        await asyncio.sleep(0.3)
        arrived = b.inbox.qsize()
        assert 8 < arrived < 32
        a.manager.packet_loss = None
        b.manager.packet_loss = PacketLoss(receive=1.0)
        await a.manager.send(make_request(), b.address("udp"))
        await asyncio.sleep(0.2)
        assert b.inbox.qsize() == arrived


# -- the Via rules as plain functions


def test_stamp_sent_by_keeps_the_callers_parameters() -> None:
    request = make_request(via="SIP/2.0/UDP placeholder;branch=z9hG4bKabc;x=1")
    request.headers.add("Via", "SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKlower")
    stamp_sent_by(request, "tls", "::1", 5061, add_rport=True)
    top, lower = request.via
    assert (top.transport, top.host, top.port) == ("TLS", "::1", 5061)
    assert top.branch == "z9hG4bKabc" and top.parameters["x"] == "1" and top.rport is True
    assert lower.branch == "z9hG4bKlower"
    assert str(top) == "Via: SIP/2.0/TLS [::1]:5061;branch=z9hG4bKabc;x=1;rport"


@pytest.mark.parametrize(
    ("via", "source", "received", "rport"),
    [
        ("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1", ("192.0.2.1", 4000), "192.0.2.1", None),
        ("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1", ("192.0.2.1", 4000), None, None),
        ("SIP/2.0/UDP 192.0.2.1;rport;branch=z9hG4bK1", ("192.0.2.1", 4000), "192.0.2.1", 4000),
        ("SIP/2.0/UDP [::1];branch=z9hG4bK1", ("::1", 4000), None, None),
        ("SIP/2.0/UDP [0:0::1];branch=z9hG4bK1", ("::1", 4000), None, None),
        ("SIP/2.0/UDP host.example;branch=z9hG4bK1", ("::1", 4000), "::1", None),
        ("SIP/2.0/UDP h;received=1.2.3.4;rport=9;branch=z9hG4bK1", ("::1", 4000), "::1", 9),
    ],
)
def test_stamp_received(
    via: str, source: tuple[str, int], received: str | None, rport: int | None
) -> None:
    request = make_request(via=via)
    stamp_received(request, *source)
    top = request.top_via
    assert top.received == received
    assert top.rport == rport
    assert top.branch == "z9hG4bK1"
    assert parse_message(bytes(request)).top_via == top  # still well-formed on the wire


@pytest.mark.parametrize(
    ("via", "expected"),
    [
        ("SIP/2.0/UDP 10.0.0.1:5070;received=192.0.2.1;rport=4000", ("udp", "192.0.2.1", 4000)),
        ("SIP/2.0/UDP 10.0.0.1:5070;received=192.0.2.1", ("udp", "192.0.2.1", 5070)),
        ("SIP/2.0/UDP 10.0.0.1;rport=4000", ("udp", "10.0.0.1", 5060)),
        ("SIP/2.0/TCP 10.0.0.1:5070;received=192.0.2.1;rport=4000", ("tcp", "192.0.2.1", 5070)),
        ("SIP/2.0/TLS [::1];received=::2", ("tls", "::2", 5061)),
        (
            "SIP/2.0/UDP 10.0.0.1:5070;maddr=192.0.2.9;received=192.0.2.1",
            ("udp", "192.0.2.9", 5070),
        ),
    ],
)
def test_response_destination(via: str, expected: tuple[str, str, int]) -> None:
    source = TransportAddress("udp", "192.0.2.1", 4000, ("127.0.0.1", 5060))
    destination = response_destination(FrozenViaHeader.parse(via), source)
    assert (destination.transport, destination.host, destination.port) == expected
    assert destination.local == ("127.0.0.1", 5060)


def test_response_destination_needs_an_address() -> None:
    with pytest.raises(SIPParseError):
        response_destination(FrozenViaHeader.parse("SIP/2.0/UDP host.example"), None)
    with pytest.raises(SIPParseError):
        response_destination(FrozenViaHeader.parse("SIP/2.0/SCTP 10.0.0.1"), None)


def test_sent_by_defaults_the_port() -> None:
    assert sent_by(FrozenViaHeader.parse("SIP/2.0/TLS [0::1]")) == ("::1", 5061)
    assert sent_by(FrozenViaHeader.parse("SIP/2.0/UDP Host.Example:5070")) == ("host.example", 5070)


def test_transport_address_and_settings_validate() -> None:
    assert TransportAddress("udp", "[0:0::1]", 5060).host == "::1"
    assert TransportAddress("tcp", "::1", 1, ("::1", 2)) == TransportAddress("tcp", "::1", 1)
    assert str(TransportAddress("tls", "::1", 5061)) == "tls:[::1]:5061"
    for bad in [("sctp", "::1", 1), ("udp", "host.example", 1), ("udp", "::1", 0)]:
        with pytest.raises(ValueError):
            TransportAddress(*bad)  # type: ignore[arg-type]
    for bad_settings in [
        {"udp_port": 70000},
        {"ip_address": "localhost"},
        {"tls_cert_file": "x.pem"},
        {"idle_timeout": 0},
        {"max_connections": 0},
        {"path_mtu": 100},
        {"udp_receive_buffer": 0},
    ]:
        with pytest.raises(ValueError):
            TransportSettings(**bad_settings)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        PacketLoss(send=1.5)
