"""Property tests: whatever responses arrive and however time passes, a transaction never
raises, reports each thing once, and ends terminated with the layer empty."""

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipsimple.core.errors import SIPParseError
from sipsimple.core.sip.headers import ViaHeader
from sipsimple.core.sip.message import SIPRequest, parse_message
from sipsimple.core.sip.timers import TimerSettings
from sipsimple.core.sip.transaction import (
    AckReceived,
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    TransactionLayer,
    TransactionState,
    TransactionStateError,
    TransactionTerminated,
)

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PEER = ("192.0.2.2", 5060)

codes = st.sampled_from([100, 180, 183, 200, 202, 302, 401, 404, 486, 487, 500, 503, 603])
tags = st.sampled_from(["a", "b", None])
actions = st.lists(
    st.one_of(
        st.tuples(st.just("response"), codes, tags),
        st.tuples(st.just("wait"), st.floats(min_value=0, max_value=40)),
        st.tuples(st.just("error")),
        st.tuples(st.just("cancel")),
    ),
    max_size=25,
)


def make_request(layer, method):
    return SIPRequest(
        method,
        "sip:bob@192.0.2.2",
        [
            ("Via", ViaHeader("UDP", "192.0.2.1", 5060, {"branch": layer.new_branch()})),
            ("From", "<sip:alice@example.com>;tag=a1"),
            ("To", "<sip:bob@example.com>"),
            ("Call-ID", "prop"),
            ("CSeq", f"1 {method}"),
        ],
    )


def drain(layer):
    events = []
    while (event := layer.next_event()) is not None:
        events.append(event)
    return events


def settle(layer, now):
    """Run the timers until none is left (each at its deadline); the time reached."""
    for _ in range(1000):
        deadline = layer.get_timer()
        if deadline is None:
            return now
        now = max(now, deadline)
        layer.handle_timer(now)
    raise AssertionError("the timers never stopped")


@PROPERTY
@given(
    method=st.sampled_from(["INVITE", "OPTIONS"]),
    reliable=st.booleans(),
    timer_c=st.sampled_from([None, 60.0]),
    steps=actions,
)
def test_client_transactions_always_end(method, reliable, timer_c, steps):
    layer = TransactionLayer(rng=random.Random(0), timers=TimerSettings(timer_c=timer_c))
    request = make_request(layer, method)
    txn = layer.send_request(request, PEER, reliable, 0.0)
    now = 0.0
    finals = 0
    for step in steps:
        if step[0] == "response":
            code, tag = step[1], step[2]
            response = request.make_response(code, to_tag=None if code == 100 else tag)
            layer.receive_message(parse_message(bytes(response)), PEER, "udp", now)
        elif step[0] == "wait":
            now += step[1]
            layer.handle_timer(now)
        elif step[0] == "error":
            layer.transport_error(txn, now)
        elif method == "INVITE":
            layer.cancel(txn, now)
        layer.messages_to_send()
        for event in drain(layer):
            if isinstance(event, ResponseReceived) and event.response.code >= 200:
                finals += 1
                assert not event.retransmission or event.response.code < 300
    if txn.state is TransactionState.PROCEEDING and method == "INVITE" and timer_c is None:
        layer.cancel(txn, now)  # an INVITE in proceeding waits for the TU (RFC 3261 17.1.1.2)
    settle(layer, now)
    events = drain(layer)
    assert txn.state is TransactionState.TERMINATED
    assert len(layer) == 0 and layer.get_timer() is None
    terminated = [e for e in events if isinstance(e, TransactionTerminated)]
    assert len(terminated) <= 1  # none if it had already ended during the steps
    if method != "INVITE":
        assert finals + sum(isinstance(e, ResponseReceived) for e in events) <= 1


server_actions = st.lists(
    st.one_of(
        st.tuples(st.just("respond"), codes),
        st.tuples(st.just("retransmit")),
        st.tuples(st.just("ack"), st.booleans()),
        st.tuples(st.just("wait"), st.floats(min_value=0, max_value=40)),
        st.tuples(st.just("error")),
    ),
    max_size=25,
)


@PROPERTY
@given(
    method=st.sampled_from(["INVITE", "MESSAGE"]),
    transport=st.sampled_from(["udp", "tcp"]),
    steps=server_actions,
)
def test_server_transactions_always_end(method, transport, steps):
    client = TransactionLayer(rng=random.Random(1))
    layer = TransactionLayer(rng=random.Random(2))
    request = make_request(client, method)
    wire = bytes(request)
    layer.receive_message(parse_message(wire), PEER, transport, 0.0)
    (event,) = drain(layer)
    assert isinstance(event, RequestReceived)
    txn = event.transaction
    now = 0.0
    for step in steps:
        if step[0] == "respond":
            code = step[1]
            response = txn.request.make_response(code, to_tag=None if code == 100 else "s")
            try:
                layer.send_response(txn, response, now)
            except TransactionStateError:
                assert txn.state is not TransactionState.PROCEEDING or code < 200
                assert txn.state is not TransactionState.TRYING
        elif step[0] == "retransmit":
            layer.receive_message(parse_message(wire), PEER, transport, now)
        elif step[0] == "ack" and method == "INVITE":
            branch = request.top_via.branch if step[1] else client.new_branch()
            ack = SIPRequest(
                "ACK",
                request.request_uri,
                [
                    ("Via", ViaHeader("UDP", "192.0.2.1", 5060, {"branch": branch})),
                    ("From", request.headers["From"]),
                    ("To", "<sip:bob@example.com>;tag=s"),
                    ("Call-ID", "prop"),
                    ("CSeq", "1 ACK"),
                ],
            )
            layer.receive_message(parse_message(bytes(ack)), PEER, transport, now)
        elif step[0] == "wait":
            now += step[1]
            layer.handle_timer(now)
        elif step[0] == "error":
            layer.transport_error(txn, now)
        layer.messages_to_send()
        for event in drain(layer):
            if isinstance(event, RequestReceived):
                # a retransmission is absorbed while its transaction lives; once that
                # ended (at once for a final non-INVITE response on TCP) it is new
                assert txn.state is TransactionState.TERMINATED
                late = event.transaction
                layer.send_response(late, late.request.make_response(500, to_tag="s"), now)
            if isinstance(event, AckReceived) and event.transaction is not None:
                assert event.transaction is txn and txn.state is TransactionState.ACCEPTED
    if txn.state in (TransactionState.PROCEEDING, TransactionState.TRYING):
        layer.send_response(txn, txn.request.make_response(500, to_tag="s"), now)
    settle(layer, now)
    drain(layer)
    assert txn.state is TransactionState.TERMINATED
    assert len(layer) == 0 and layer.get_timer() is None


DATA = Path(__file__).resolve().parent.parent / "data" / "sip"
TORTURE = sorted(DATA.glob("*/*.dat"))


@pytest.mark.parametrize("path", TORTURE, ids=lambda path: path.stem)
def test_torture_messages_go_through_the_layer(path):
    """Every RFC 4475/5118 message that parses is taken by the layer without an error;
    a request's Via is left as it came (the transport stamps it), and its transaction
    can answer it."""
    try:
        message = parse_message(path.read_bytes())
    except SIPParseError:
        return
    layer = TransactionLayer(rng=random.Random(0))
    source = ("2001:db8::9", 6000) if "5118" in str(path) else ("198.51.100.9", 6000)
    vias = message.headers.getall("Via")
    for transport in ("udp", "tcp"):
        layer.receive_message(message, source, transport, 0.0)
    events = drain(layer)
    if not isinstance(message, SIPRequest):
        assert [type(e).__name__ for e in events] == ["StrayResponse", "StrayResponse"]
        return
    assert message.via and message.headers.getall("Via") == vias
    for event in events:
        if isinstance(event, RequestReceived | CancelReceived):
            answer = event.request.make_response(500, to_tag="t")
            layer.send_response(event.transaction, answer, 0.0)
            assert parse_message(layer.messages_to_send()[-1].data).code == 500
