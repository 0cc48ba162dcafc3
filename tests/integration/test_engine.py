"""The Engine: life cycle, options, hooks, and the answers it gives by itself.

Crafted requests come from raw sockets; the Engine under test runs either on the
test's loop (``local_engine``) or in a child process (``RemoteSDK``) when the test
itself blocks on a socket.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket

import pytest
from tests.support.remote import RemoteSDK
from tests.support.sip import LOOPBACK, RawSIP, local_engine

from sipsimple.core import Engine, EngineError
from sipsimple.core.engine import GC_THRESHOLDS
from sipsimple.core.sip.message import SIPRequest
from sipsimple.core.usage import ServerRequest
from sipsimple.notification import NotificationCenter, NotificationQueue


@pytest.fixture(scope="module")
def remote():
    with RemoteSDK() as sdk:
        sdk.ports = sdk.call(
            "tests.support.sip:start_engine", udp_port=0, tcp_port=0, incoming_requests=["HOLD"]
        )
        yield sdk


@pytest.fixture
def udp(remote):
    with RawSIP("udp", (LOOPBACK, remote.ports["udp"])) as raw:
        yield raw


# -- life cycle and options --------------------------------------------------------------


async def test_start_and_stop_post_their_notifications_and_give_the_ports():
    with NotificationQueue(sender=Engine()) as queue:
        async with local_engine(udp_port=0, tcp_port=0) as engine:
            assert engine.is_running and engine.state == "started"
            assert engine.udp_port and engine.udp_port == engine.tcp_port
            assert engine.tls_port is None
            assert engine.transports == ["udp", "tcp"]
            assert (await queue.get(1)).name == "SIPEngineWillStart"
            assert (await queue.get(1)).name == "SIPEngineDidStart"
        assert not engine.is_running and engine.transport is None
        assert (await queue.get(1)).name == "SIPEngineWillEnd"
        assert (await queue.get(1)).name == "SIPEngineDidEnd"


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"udp_prot": 0}, TypeError),
        ({"udp_port": 70000}, ValueError),
        ({"udp_port": None, "tcp_port": None}, ValueError),
        ({"tls_cert_file": "/x.pem"}, ValueError),
        ({"T1": 0}, ValueError),
        ({"T1": 2.0, "T2": 1.0}, ValueError),
        ({"trace_sip": "yes"}, TypeError),
        ({"tune_gc": 1}, TypeError),
        ({"ip_address": "example.com"}, ValueError),
        ({"incoming_requests": "MESSAGE"}, TypeError),
    ],
)
def test_bad_options_are_refused_at_once(options, error):
    with pytest.raises(error):
        Engine().start(**options)
    assert Engine().state == "stopped"


async def test_tune_gc_sets_the_collector_while_running_and_restores_it():
    before = gc.get_threshold()
    assert before != GC_THRESHOLDS
    frozen = gc.get_freeze_count()
    async with local_engine(udp_port=0, tcp_port=None, tune_gc=True):
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > frozen
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    async with local_engine(udp_port=0, tcp_port=None):
        assert gc.get_threshold() == before


async def test_a_port_in_use_fails_the_start_and_leaves_it_stopped():
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind((LOOPBACK, 0))
    port = taken.getsockname()[1]
    try:
        with NotificationQueue("SIPEngineDidFail") as queue:
            with pytest.raises(Exception, match=str(port)):
                async with local_engine(udp_port=port, tcp_port=None):
                    pass
            assert "error" in vars((await queue.get(1)).data)
        assert Engine().state == "stopped"
    finally:
        taken.close()
    async with local_engine(udp_port=port, tcp_port=None) as engine:
        assert engine.udp_port == port


async def test_start_twice_is_refused_and_options_are_readable_at_runtime():
    async with local_engine(udp_port=0, tcp_port=None, user_agent="UA/1", T1=0.25) as engine:
        with pytest.raises(EngineError):
            engine.start()
        assert engine.user_agent == "UA/1"
        assert engine.T1 == 0.25
        assert engine.transaction_layer.timers.t1 == 0.25
        assert engine.rtp_port_range == (50000, 50500)
        assert "presence" in engine.events
        engine.user_agent = "UA/2"
        assert engine.user_agent == "UA/2"


async def test_set_port_moves_a_transport_and_keeps_the_others():
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind((LOOPBACK, 0))
    async with local_engine(udp_port=0, tcp_port=0) as engine:
        udp = engine.udp_port
        await engine.set_tcp_port(None)
        assert engine.tcp_port is None and engine.transports == ["udp"]
        assert engine.udp_port == udp  # rebound at once on the same port
        with pytest.raises(Exception, match="in use"):
            await engine.set_udp_port(taken.getsockname()[1])
        assert engine.udp_port == udp  # the old settings were restored
        with RawSIP("udp", (LOOPBACK, udp)) as raw:
            response = await asyncio.to_thread(raw.exchange, raw.request("OPTIONS"))
        assert response.code == 200
    taken.close()


async def test_trace_and_connection_notifications_between_two_engines(remote):
    async with local_engine(udp_port=0, tcp_port=0) as engine:
        engine.trace_sip = True
        with NotificationQueue(sender=engine) as queue:
            done = asyncio.get_running_loop().create_future()
            request = SIPRequest(
                "OPTIONS",
                f"sip:{LOOPBACK}:{remote.ports['tcp']};transport=tcp",
                [("From", "<sip:a@127.0.0.1>;tag=1"), ("To", "<sip:b@127.0.0.1>"),
                 ("Call-ID", "trace-1"), ("CSeq", "1 OPTIONS")],
            )  # fmt: skip
            engine.send_request(request, lambda c, r: r.code >= 200 and done.set_result(r))
            assert (await asyncio.wait_for(done, 5)).code == 200
            connected = await queue.wait_for("SIPEngineTransportDidConnect", timeout=1)
            assert connected.data.transport == "tcp"
            assert connected.data.remote_address == (LOOPBACK, remote.ports["tcp"])
            sent = await queue.wait_for("SIPEngineSIPTrace", lambda n: not n.data.received, 1)
            assert sent.data.data.startswith(b"OPTIONS ")
            assert sent.data.destination_port == remote.ports["tcp"]
            assert sent.data.transport == "tcp"
            got = await queue.wait_for("SIPEngineSIPTrace", lambda n: n.data.received, 1)
            assert got.data.data.startswith(b"SIP/2.0 200")
            assert got.data.source_ip == LOOPBACK
            engine.trace_sip = False
            await engine.stop()
            disconnected = await queue.wait_for("SIPEngineTransportDidDisconnect", timeout=5)
            assert disconnected.data.transport == "tcp"


async def test_a_handler_that_raises_is_reported_and_its_request_answered_500():
    async with local_engine(udp_port=0, tcp_port=None) as engine:

        def broken(request: ServerRequest) -> bool:
            raise RuntimeError("handler bug")

        engine.register_request_handler("BREAK", broken)
        with NotificationQueue("SIPEngineGotException") as queue:
            raw = RawSIP("udp", (LOOPBACK, engine.udp_port))
            try:
                response = await asyncio.to_thread(raw.exchange, raw.request("BREAK"))
            finally:
                raw.close()
            assert response.code == 500
            note = await queue.get(1)
            assert note.data.type is RuntimeError and "handler bug" in note.data.traceback
        engine.unregister_request_handler("BREAK", broken)


async def test_a_server_request_hears_that_its_transaction_ended():
    async with local_engine(udp_port=0, tcp_port=0) as engine:
        ended = asyncio.get_running_loop().create_future()

        def handler(request: ServerRequest) -> bool:
            request.on_terminated = ended.set_result
            request.answer(202)
            return True

        engine.register_request_handler("DOIT", handler)
        with RawSIP("tcp", (LOOPBACK, engine.tcp_port)) as raw:
            response = await asyncio.to_thread(raw.exchange, raw.request("DOIT"))
        assert response.code == 202
        server = await asyncio.wait_for(ended, 5)  # at once on TCP: no timer J
        assert server.final_response.code == 202
        engine.unregister_request_handler("DOIT", handler)


async def test_core_log_records_are_posted_as_sipenginelog():
    async with local_engine(udp_port=0, tcp_port=0, log_level=logging.INFO) as engine:
        with NotificationQueue("SIPEngineLog") as queue:
            request = SIPRequest(
                "OPTIONS",
                f"sip:{LOOPBACK}:9;transport=tcp",
                [("From", "<sip:a@127.0.0.1>;tag=1"), ("To", "<sip:b@127.0.0.1>"),
                 ("Call-ID", "log-1"), ("CSeq", "1 OPTIONS")],
            )  # fmt: skip
            engine.send_request(request, lambda c, r: None)
            note = await queue.wait_for(
                "SIPEngineLog", lambda n: "cannot send" in n.data.message, timeout=5
            )
    assert note.data.level == logging.INFO and note.data.sender_name == "sipsimple.core.engine"
    assert engine.codecs == engine.available_codecs and "PCMU" in engine.codecs


async def test_stop_is_bounded_with_a_peer_that_never_answers():
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind((LOOPBACK, 0))
    silent.listen()
    port = silent.getsockname()[1]
    try:
        async with local_engine(
            udp_port=0, tcp_port=0, tls_port=0, tls_timeout=60, stop_timeout=1
        ) as engine:
            results = []
            request = SIPRequest(
                "OPTIONS",
                f"sip:{LOOPBACK}:{port};transport=tls",
                [("From", "<sip:a@127.0.0.1>;tag=1"), ("To", "<sip:b@127.0.0.1>"),
                 ("Call-ID", "stop-1"), ("CSeq", "1 OPTIONS")],
            )  # fmt: skip
            engine.send_request(request, lambda c, r: results.append((r.code, c.failure)))
            await asyncio.sleep(0.2)  # the TLS handshake hangs
            await asyncio.wait_for(engine.stop(), 10)
            assert results == [(503, "stopped")]
    finally:
        silent.close()


def test_notification_observers_see_the_remote_start(remote):
    assert remote.ports["udp"] and remote.ports["tcp"] == remote.ports["udp"]
    assert any(n.name == "SIPEngineDidStart" for n in remote.notifications)
    assert NotificationCenter() is NotificationCenter()


# -- built-in answers --------------------------------------------------------------------


def test_options_is_answered_with_allow_accept_and_supported(udp):
    response = udp.exchange(udp.request("OPTIONS"))
    assert response.code == 200
    assert {"OPTIONS", "MESSAGE", "ACK", "CANCEL", "HOLD"} <= set(response.allow)
    assert "text/plain" in response.headers.getall("Accept")
    assert "Supported" in response.headers
    assert response.to_header.tag


def test_options_over_tcp(remote):
    with RawSIP("tcp", (LOOPBACK, remote.ports["tcp"])) as tcp:
        assert tcp.exchange(tcp.request("OPTIONS")).code == 200


def test_an_unknown_method_gets_405_with_allow(udp):
    response = udp.exchange(udp.request("FROBNICATE"))
    assert response.code == 405
    assert "OPTIONS" in response.allow and "FROBNICATE" not in response.allow


@pytest.mark.parametrize(
    ("method", "to_tag"), [("INFO", "nosuchdialog"), ("BYE", None), ("OPTIONS", "x")]
)
def test_requests_for_unknown_dialogs_get_481(udp, method, to_tag):
    assert udp.exchange(udp.request(method, to_tag=to_tag)).code == 481


def test_a_cancel_that_matches_nothing_gets_481(udp):
    assert udp.exchange(udp.request("CANCEL", branch="z9hG4bK-lonely")).code == 481


def test_an_ack_is_never_answered(udp):
    udp.send(udp.request("ACK", to_tag="nosuchdialog", cseq_method="ACK"))
    with pytest.raises(TimeoutError):
        udp.receive(1.0)


def test_a_looped_request_gets_482(udp):
    udp.send(udp.request("HOLD", branch="z9hG4bK-first", call_id="loop-1"))
    response = udp.exchange(udp.request("HOLD", branch="z9hG4bK-second", call_id="loop-1"))
    assert response.code == 482
    # the same branch is a retransmission, not a loop: absorbed without a new answer
    udp.send(udp.request("HOLD", branch="z9hG4bK-first", call_id="loop-1"))
    with pytest.raises(TimeoutError):
        udp.receive(0.5)


def test_a_subscribe_for_an_event_nobody_serves_gets_489(udp):
    response = udp.exchange(udp.request("SUBSCRIBE", headers=(("Event", "presence"),)))
    assert response.code == 489


def test_a_notify_of_an_unknown_event_gets_489(udp):
    response = udp.exchange(
        udp.request("NOTIFY", to_tag="t", headers=(("Event", "no-such-package"),))
    )
    assert response.code == 489
    assert "presence" in response.headers.getall("Allow-Events")


def test_an_in_dialog_subscribe_is_left_to_its_dialog(udp):
    # a refresh of a REFER's subscription may name an event nobody serves out of dialog
    response = udp.exchange(udp.request("SUBSCRIBE", to_tag="t", headers=(("Event", "refer"),)))
    assert response.code == 481


def test_a_subscribe_without_event_gets_400(udp):
    assert udp.exchange(udp.request("SUBSCRIBE")).code == 400


def test_an_unknown_require_gets_420_with_unsupported(udp):
    response = udp.exchange(udp.request("OPTIONS", headers=(("Require", "foo, bar"),)))
    assert response.code == 420
    assert response.unsupported == ["foo", "bar"]


def test_a_malformed_request_gets_400_with_a_warning(udp):
    data = udp.request("OPTIONS").replace(b"Max-Forwards: 70", b"Max-Forwards: many")
    response = udp.exchange(data)
    assert response.code == 400
    assert "Max-Forwards" in response.headers.get("Warning")


def test_a_malformed_header_read_later_gets_400_with_a_warning(udp):
    response = udp.exchange(udp.request("OPTIONS", headers=(("Require", "a b c"),)))
    assert response.code == 400
    assert "Require" in response.headers.get("Warning")


def test_a_malformed_event_gets_400(udp):
    response = udp.exchange(udp.request("SUBSCRIBE", headers=(("Event", "@@@"),)))
    assert (response.code, response.reason) == (400, "Bad Event header")


def test_a_tel_request_uri_gets_416(udp):
    assert udp.exchange(udp.request("OPTIONS", uri="tel:+15551234567")).code == 416


def test_another_sip_version_gets_505(udp):
    assert udp.exchange(udp.request("OPTIONS", version="SIP/3.0")).code == 505


def test_an_out_of_dialog_message_is_answered_200_and_posted(udp, remote):
    remote.clear()
    response = udp.exchange(
        udp.request("MESSAGE", headers=(("Content-Type", "text/plain"),), body=b"hello")
    )
    assert response.code == 200
    note = remote.wait_for("SIPEngineGotMessage", timeout=5)
    assert note.data["body"] == b"hello"
    assert note.data["content_type"] == "text/plain"
    assert str(note.data["from_header"].uri) == "sip:raw@127.0.0.1"
