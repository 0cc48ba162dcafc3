"""Request, IncomingRequest, Message and the usage API between two SDK endpoints.

The test's own Engine runs on the test loop; the other endpoint is a RemoteSDK child.
"""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest
from tests.support.remote import RemoteSDK
from tests.support.sip import LOOPBACK, local_engine, route_to

from sipsimple.core import (
    Credentials,
    Engine,
    IncomingRequest,
    Message,
    Request,
    RequestStateError,
)
from sipsimple.core.sip.headers import FromHeader, Header, ToHeader
from sipsimple.core.sip.message import SIPRequest, parse_message
from sipsimple.core.sip.uri import SIPURI
from sipsimple.core.transport import PacketLoss
from sipsimple.core.usage import failover
from sipsimple.notification import NotificationQueue
from sipsimple.util import Route

ALICE = SIPURI(user="alice", host="example.test")
BOB = SIPURI(user="bob", host="example.test")


@pytest.fixture(scope="module")
def remote():
    with RemoteSDK() as sdk:
        sdk.ports = sdk.call("tests.support.sip:start_engine", udp_port=0, tcp_port=0)
        yield sdk


@pytest.fixture
async def engine():
    async with local_engine(udp_port=0, tcp_port=0, T1=0.05) as engine:
        yield engine


def silent_udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOOPBACK, 0))
    return sock


async def wait(queue: NotificationQueue, name: str, timeout: float = 5.0):
    return await queue.wait_for(name, timeout=timeout)


# -- Message ---------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_a_message_reaches_the_other_endpoint(engine, remote, transport):
    remote.clear()
    message = Message(
        FromHeader(ALICE, "Alice"),
        ToHeader(BOB),
        route_to(remote.ports[transport], transport),
        "text/plain",
        "héllo",
    )
    with NotificationQueue(sender=message) as queue:
        message.send()
        note = await wait(queue, "SIPMessageDidSucceed")
    assert note.data.code == 200
    got = await remote.async_wait_for("SIPEngineGotMessage", timeout=5)
    assert got.data["body"] == "héllo".encode()
    assert got.data["content_type"] == "text/plain"
    assert got.data["from_header"].display_name == "Alice"
    assert str(got.data["to_header"].uri) == "sip:bob@example.test"
    with pytest.raises(RequestStateError):
        message.send()


async def test_a_large_message_to_a_udp_only_peer_falls_back_to_udp(engine):
    """RFC 3261 section 18.1.1: too large for UDP, so TCP first; TCP refused, so UDP."""
    udp = silent_udp()
    udp.setblocking(False)
    port = udp.getsockname()[1]
    closed_tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    closed_tcp.bind((LOOPBACK, port))  # bound, not listening: a connection is refused
    loop = asyncio.get_running_loop()

    async def answer() -> SIPRequest:
        data, source = await loop.sock_recvfrom(udp, 65536)
        request = parse_message(data)
        assert isinstance(request, SIPRequest)
        await loop.sock_sendto(udp, bytes(request.make_response(200, "OK")), source)
        return request

    body = "x" * 2000  # well over the 1300 bytes of the size rule
    message = Message(FromHeader(ALICE), ToHeader(BOB), route_to(port, "udp"), "text/plain", body)
    try:
        with NotificationQueue(sender=message) as queue:
            answering = asyncio.ensure_future(answer())
            message.send()
            request = await asyncio.wait_for(answering, 5)
            note = await wait(queue, "SIPMessageDidSucceed")
    finally:
        udp.close()
        closed_tcp.close()
    assert note.data.code == 200
    assert request.body == body.encode()
    assert request.headers.get("Via").startswith("SIP/2.0/UDP ")


async def test_a_message_from_the_other_endpoint_is_posted_here(engine, remote):
    with NotificationQueue("SIPEngineGotMessage") as queue:
        await remote.async_call(
            "tests.support.sip:send_message",
            "sip:bob@example.test",
            "sip:alice@example.test",
            "hi there",
            route_port=engine.tcp_port,
            transport="tcp",
        )
        note = await wait(queue, "SIPEngineGotMessage")
    assert note.data.body == b"hi there"
    assert (await remote.async_wait_for("SIPMessageDidSucceed", timeout=5)).data["code"] == 200


async def test_a_message_nobody_answers_fails_with_a_local_408(engine):
    with silent_udp() as sock:
        message = Message(
            FromHeader(ALICE), ToHeader(BOB), route_to(sock.getsockname()[1]), "text/plain", "x"
        )
        with NotificationQueue(sender=message) as queue:
            message.send()
            note = await wait(queue, "SIPMessageDidFail")  # timer F: 64*T1 = 3.2 s
    assert (note.data.code, note.data.reason) == (408, "Request Timeout")


async def test_a_message_without_the_engine_is_refused():
    message = Message(FromHeader(ALICE), ToHeader(BOB), None, "text/plain", "x")
    with pytest.raises(RuntimeError, match="not running"):
        message.send()


def test_message_arguments_are_checked():
    with pytest.raises(TypeError):
        Message(ToHeader(ALICE), ToHeader(BOB), None, "text/plain", "x")
    with pytest.raises(ValueError):
        Message(FromHeader(ALICE), ToHeader(BOB), None, "plain", "x")
    with pytest.raises(TypeError):
        Message(FromHeader(ALICE), ToHeader(BOB), None, "text/plain", 42)


# -- Request and IncomingRequest ---------------------------------------------------------


def make_request(method: str, port: int, **kwargs) -> Request:
    return Request(
        method,
        SIPURI(user="bob", host=LOOPBACK, port=port),
        FromHeader(ALICE),
        ToHeader(BOB),
        None,
        **kwargs,
    )


async def test_a_request_succeeds_and_ends(engine, remote):
    request = make_request("OPTIONS", remote.ports["udp"])
    assert request.state == "INIT"
    with NotificationQueue(sender=request) as queue:
        request.send()
        assert request.state == "IN_PROGRESS"
        note = await wait(queue, "SIPRequestDidSucceed")
        assert note.data.code == 200 and note.data.expires is None
        assert "OPTIONS" in note.data.headers["Allow"]
        await wait(queue, "SIPRequestDidEnd")
    assert request.state == "TERMINATED"


async def test_a_request_with_expires_expires(engine, remote):
    await remote.async_call("tests.support.sip:serve", "DOIT", [(200, [("Expires", "2")])])
    request = make_request(
        "DOIT",
        remote.ports["udp"],
        extra_headers=[Header("X-Test", "1")],
        content_type="text/plain",
        body="b",
    )
    request.expire_warning_time = 1
    with NotificationQueue(sender=request) as queue:
        request.send()
        note = await wait(queue, "SIPRequestDidSucceed")
        assert note.data.expires == 2
        assert request.state == "EXPIRING"
        assert (await wait(queue, "SIPRequestWillExpire")).data.expires == 1
        await wait(queue, "SIPRequestDidEnd")
    assert request.state == "TERMINATED"
    (served,) = await remote.async_call("tests.support.sip:served", "DOIT")
    assert served["headers"]["X-Test"] == "1" and served["body"] == b"b"


async def test_ending_an_expiring_request_ends_it_now(engine, remote):
    await remote.async_call("tests.support.sip:serve", "LEASE", [(200, [("Expires", "60")])])
    request = make_request("LEASE", remote.ports["udp"])
    with NotificationQueue(sender=request) as queue:
        request.send()
        await wait(queue, "SIPRequestDidSucceed")
        request.end()
        await wait(queue, "SIPRequestDidEnd", timeout=1)
    assert request.state == "TERMINATED"


async def test_a_rejected_request_fails_and_provisional_responses_are_posted(engine, remote):
    await remote.async_call("tests.support.sip:serve", "NOPE", [(486, [])])
    request = make_request("NOPE", remote.ports["udp"])
    with NotificationQueue(sender=request) as queue:
        request.send()
        note = await wait(queue, "SIPRequestDidFail")
        assert (note.data.code, note.data.reason) == (486, "Busy Here")
        await wait(queue, "SIPRequestDidEnd")


async def test_a_request_answers_a_challenge_with_its_credentials(engine, remote):
    challenge = 'Digest realm="example.test", nonce="abc123", qop="auth"'
    await remote.async_call(
        "tests.support.sip:serve",
        "AUTHME",
        [(401, [("WWW-Authenticate", challenge)]), (200, [])],
    )
    request = make_request("AUTHME", remote.ports["udp"], credentials=Credentials("alice", "pw"))
    with NotificationQueue(sender=request) as queue:
        request.send()
        assert (await wait(queue, "SIPRequestDidSucceed")).data.code == 200
    first, second = await remote.async_call("tests.support.sip:served", "AUTHME")
    assert "Authorization" not in first["headers"]
    assert 'username="alice"' in second["headers"]["Authorization"]
    assert second["headers"]["CSeq"] == "2 AUTHME"
    assert first["headers"]["Call-ID"] == second["headers"]["Call-ID"]


async def test_a_request_with_a_timeout_gives_up_in_time(engine):
    with silent_udp() as sock:
        request = make_request("OPTIONS", sock.getsockname()[1])
        with NotificationQueue(sender=request) as queue:
            request.send(timeout=0.3)
            note = await wait(queue, "SIPRequestDidFail", timeout=2)
    assert note.data.code == 408


async def test_incoming_requests_are_announced_and_answered(engine, remote):
    engine.add_incoming_request("DOIT")
    with NotificationQueue("SIPIncomingRequestGotRequest") as queue:
        await remote.async_call(
            "tests.support.sip:send_request", "DOIT", f"sip:alice@{LOOPBACK}:{engine.udp_port}"
        )
        note = await wait(queue, "SIPIncomingRequestGotRequest")
    incoming = note.sender
    assert isinstance(incoming, IncomingRequest)
    assert note.data.method == "DOIT" and str(note.data.from_header.uri) == "sip:bob@example.test"
    incoming.answer(202, extra_headers=[Header("X-Answer", "yes")])
    with pytest.raises(RequestStateError):
        incoming.answer(200)
    result = await remote.async_wait_for("SIPRequestDidSucceed", timeout=5)
    assert result.data["code"] == 202
    assert result.data["headers"]["X-Answer"].body == "yes"
    engine.remove_incoming_request("DOIT")


# -- the usage API: failover, loss -------------------------------------------------------


def options(engine: Engine, uri: str) -> SIPRequest:
    return SIPRequest(
        "OPTIONS",
        uri,
        [("From", f"<{ALICE}>;tag={engine.new_tag()}"), ("To", f"<{BOB}>"),
         ("Call-ID", engine.new_call_id()), ("CSeq", "1 OPTIONS")],
    )  # fmt: skip


async def send(engine: Engine, request: SIPRequest, **kwargs):
    done = asyncio.get_running_loop().create_future()

    def on_response(client, response):
        if response.code >= 200 and not done.done():
            done.set_result((client, response))

    engine.send_request(request, on_response, **kwargs)
    return await asyncio.wait_for(done, 10)


async def test_a_timed_out_route_moves_on_to_the_next(engine, remote):
    with silent_udp() as sock:
        routes = [
            Route(LOOPBACK, sock.getsockname()[1]),
            Route(LOOPBACK, remote.ports["tcp"], "tcp"),
        ]
        client, response = await send(
            engine, options(engine, "sip:bob@example.test"), routes=routes
        )
        data, _ = sock.recvfrom(65535)
    assert parse_message(data).method == "OPTIONS"  # the first route was tried
    assert response.code == 200 and client.failure is None
    assert client.destination.transport == "tcp"


async def test_a_503_moves_on_and_the_last_answer_counts(engine, remote):
    server = silent_udp()

    def answer_503():
        data, source = server.recvfrom(65535)
        server.sendto(bytes(parse_message(data).make_response(503, to_tag="x")), source)

    thread = threading.Thread(target=answer_503)
    thread.start()
    try:
        routes = [Route(LOOPBACK, server.getsockname()[1]), Route(LOOPBACK, remote.ports["udp"])]
        _, response = await send(engine, options(engine, "sip:bob@example.test"), routes=routes)
        assert response.code == 200
        _, response = await send(
            engine, options(engine, "sip:bob@example.test"), routes=[Route(LOOPBACK, 9, "tcp")]
        )
        assert response.code == 503  # refused, no route left: a local 503
    finally:
        thread.join(5)
        server.close()


async def test_failover_helper_tries_routes_until_one_does_not_fail(engine, remote):
    tried = []

    async def attempt(route: Route) -> int:
        tried.append(route.port)
        _client, response = await send(
            engine, options(engine, "sip:bob@example.test"), routes=[route]
        )
        return response.code

    with silent_udp() as sock:
        routes = [Route(LOOPBACK, sock.getsockname()[1]), Route(LOOPBACK, remote.ports["udp"])]
        route, code = await failover(routes, attempt, lambda code: code in (408, 503))
    assert (route, code) == (routes[1], 200)
    assert tried == [r.port for r in routes]
    with pytest.raises(ValueError):
        await failover([], attempt, lambda code: True)


async def test_messages_complete_through_20_percent_udp_loss(engine, remote):
    engine.transport.packet_loss = PacketLoss(send=0.2, receive=0.2, seed=7)
    await remote.async_call("tests.support.sip:set_packet_loss", 0.2, 0.2, 11)
    remote.clear()
    try:
        messages = [
            Message(
                FromHeader(ALICE),
                ToHeader(BOB),
                route_to(remote.ports["udp"]),
                "text/plain",
                f"m{i}",
            )
            for i in range(10)
        ]
        with NotificationQueue() as queue:
            for message in messages:
                message.send()
            results = [
                await queue.wait_for(
                    "SIPMessageDidSucceed", lambda n, m=message: n.sender is m, timeout=15
                )
                for message in messages
            ]
        assert all(result.data.code == 200 for result in results)
        bodies = []
        for _ in messages:
            bodies.append((await remote.async_wait_for("SIPEngineGotMessage")).data["body"])
        bodies.sort()
        assert bodies == sorted(f"m{i}".encode() for i in range(10))  # each delivered once
        with pytest.raises(TimeoutError):
            await remote.async_wait_for("SIPEngineGotMessage", timeout=0.5)
    finally:
        engine.transport.packet_loss = None
        await remote.async_call("tests.support.sip:set_packet_loss")
