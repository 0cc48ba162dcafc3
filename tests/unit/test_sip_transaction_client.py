"""Client transactions (RFC 3261 sections 17.1, 9.1; RFC 6026 section 7.2): every state,
timer and retransmission schedule, on unreliable and reliable transports."""

import random

import pytest

from sipsimple.core.sip.message import SIPRequest, SIPResponse, parse_message
from sipsimple.core.sip.timers import TimerSettings
from sipsimple.core.sip.transaction import (
    ProceedingTimeout,
    ResponseReceived,
    TransactionLayer,
    TransactionState,
    TransactionTerminated,
    TransactionTimedOut,
    TransactionTransportError,
    Transmission,
)

DEST = ("192.0.2.2", 5060)
PEER = ("192.0.2.2", 5060)


def make_request(method: str = "OPTIONS", branch: str = "z9hG4bKc1", routes=()) -> SIPRequest:
    headers = [
        ("Via", f"SIP/2.0/UDP 192.0.2.1:5060;branch={branch};rport"),
        ("Max-Forwards", "70"),
        ("From", '"Alice" <sip:alice@example.com>;tag=from1'),
        ("To", "<sip:bob@example.com>"),
        ("Call-ID", "call-1@192.0.2.1"),
        ("CSeq", f"7 {method}"),
        ("Contact", "<sip:alice@192.0.2.1>"),
    ]
    headers += [("Route", route) for route in routes]
    return SIPRequest(method, "sip:bob@example.com", headers)


def wire(message):
    """The message as the peer receives it: serialized and parsed again."""
    return parse_message(bytes(message))


def respond(request: SIPRequest, code: int, tag: str | None = "to1") -> SIPResponse:
    return wire(request.make_response(code, to_tag=None if code == 100 else tag))


def drain(layer: TransactionLayer) -> list:
    events = []
    while (event := layer.next_event()) is not None:
        events.append(event)
    return events


def sent(layer: TransactionLayer) -> list:
    return [parse_message(t.data) for t in layer.messages_to_send()]


def start(method="INVITE", reliable=False, timers=None, **kwargs):
    layer = TransactionLayer(rng=random.Random(1), timers=timers)
    request = make_request(method, **kwargs)
    transaction = layer.send_request(request, DEST, reliable, 0.0)
    return layer, request, transaction


def run_timers(layer: TransactionLayer, until: float) -> list[float]:
    """Fire every timer up to ``until``; the instants at which they fired."""
    fired = []
    while (deadline := layer.get_timer()) is not None and deadline <= until:
        layer.handle_timer(deadline)
        fired.append(deadline)
    return fired


# -- INVITE client transaction --------------------------------------------------------


def test_invite_is_sent_once_to_the_destination_in_calling():
    layer, request, txn = start()
    out = layer.messages_to_send()
    assert txn.state is TransactionState.CALLING
    assert out == [Transmission(bytes(request), DEST, txn)]
    assert drain(layer) == []


def test_timer_a_doubles_until_timer_b_on_unreliable_transport():
    layer, _request, txn = start()
    layer.messages_to_send()
    instants = []
    while (deadline := layer.get_timer()) is not None:
        layer.handle_timer(deadline)
        if layer.messages_to_send():
            instants.append(deadline)
    assert instants == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # seven INVITEs in all
    events = drain(layer)
    assert [type(e) for e in events] == [TransactionTimedOut, TransactionTerminated]
    assert events[0].timer == "B" and events[0].transaction is txn
    assert txn.state is TransactionState.TERMINATED and len(layer) == 0


def test_timer_a_does_not_run_on_reliable_transport():
    layer, _request, _txn = start(reliable=True)
    layer.messages_to_send()
    assert layer.get_timer() == 32.0
    layer.handle_timer(32.0)
    assert layer.messages_to_send() == []
    assert [type(e) for e in drain(layer)] == [TransactionTimedOut, TransactionTerminated]


def test_provisional_moves_to_proceeding_and_stops_retransmissions_and_timer_b():
    layer, request, txn = start()
    layer.messages_to_send()
    layer.handle_timer(0.5)
    layer.receive_message(respond(request, 100), PEER, "udp", 0.7)
    layer.receive_message(respond(request, 180), PEER, "udp", 0.8)
    assert txn.state is TransactionState.PROCEEDING
    events = drain(layer)
    assert [e.response.code for e in events] == [100, 180]
    assert layer.get_timer() is None  # no timer in proceeding: the TU cancels or waits
    layer.handle_timer(100.0)
    assert layer.messages_to_send() == [Transmission(bytes(request), DEST, txn)]  # at 0.5 only
    assert txn.state is TransactionState.PROCEEDING


@pytest.mark.parametrize("reliable", [False, True])
def test_non_2xx_final_is_acknowledged_by_the_transaction(reliable):
    layer, request, txn = start(reliable=reliable, routes=["<sip:p1.example.com;lr>"])
    layer.messages_to_send()
    layer.receive_message(respond(request, 180), PEER, "udp", 0.1)
    response = respond(request, 486)
    layer.receive_message(response, PEER, "udp", 0.2)
    (ack,) = sent(layer)
    assert ack.method == "ACK" and ack.request_uri == request.request_uri
    assert ack.top_via.branch == request.top_via.branch and len(ack.via) == 1
    assert ack.to_header.tag == "to1"
    assert ack.from_header == request.from_header and ack.call_id == request.call_id
    assert tuple(ack.cseq) == (7, "ACK")
    assert [str(r.uri) for r in ack.route] == ["sip:p1.example.com;lr"]
    events = drain(layer)
    assert isinstance(events[1], ResponseReceived) and events[1].response.code == 486
    if reliable:  # timer D is zero
        assert isinstance(events[-1], TransactionTerminated) and len(layer) == 0
        return
    assert txn.state is TransactionState.COMPLETED and layer.get_timer() == 32.2
    layer.receive_message(respond(request, 486), PEER, "udp", 1.0)
    assert [m.method for m in sent(layer)] == ["ACK"]  # the ACK again, nothing for the TU
    assert drain(layer) == []
    layer.handle_timer(32.2)
    assert [type(e) for e in drain(layer)] == [TransactionTerminated]


def test_final_response_in_calling_completes_directly():
    layer, request, txn = start()
    layer.messages_to_send()
    layer.receive_message(respond(request, 603), PEER, "udp", 0.1)
    assert txn.state is TransactionState.COMPLETED
    assert [m.method for m in sent(layer)] == ["ACK"]
    layer.handle_timer(10.0)
    assert layer.messages_to_send() == []  # timer A is gone


@pytest.mark.parametrize("reliable", [False, True])
def test_2xx_moves_to_accepted_and_timer_m_ends_it(reliable):
    layer, request, txn = start(reliable=reliable)
    layer.messages_to_send()
    ok = respond(request, 200)
    layer.receive_message(ok, PEER, "udp", 1.0)
    assert txn.state is TransactionState.ACCEPTED
    assert layer.messages_to_send() == []  # the ACK for a 2xx is the TU's
    (event,) = drain(layer)
    assert event.response is ok and event.retransmission is False
    assert layer.get_timer() == 33.0
    layer.handle_timer(33.0)
    assert [type(e) for e in drain(layer)] == [TransactionTerminated]
    layer.receive_message(respond(request, 200), PEER, "udp", 34.0)
    assert type(layer.next_event()).__name__ == "StrayResponse"


def test_accepted_passes_retransmitted_and_forked_2xx_up_and_resends_the_tus_ack():
    layer, request, txn = start()
    layer.messages_to_send()
    layer.receive_message(respond(request, 200, "fork1"), PEER, "udp", 1.0)
    drain(layer)
    ack = SIPRequest(
        "ACK",
        "sip:bob@192.0.2.2",
        [
            ("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKack1"),
            ("From", request.headers["From"]),
            ("To", "<sip:bob@example.com>;tag=fork1"),
            ("Call-ID", request.call_id),
            ("CSeq", "7 ACK"),
        ],
    )
    layer.send_ack(txn, ack, ("192.0.2.9", 5060))
    assert layer.messages_to_send() == [Transmission(bytes(ack), ("192.0.2.9", 5060), None)]
    layer.receive_message(respond(request, 200, "fork1"), PEER, "udp", 1.5)
    assert layer.messages_to_send() == [Transmission(bytes(ack), ("192.0.2.9", 5060), None)]
    (event,) = drain(layer)
    assert event.retransmission is True
    layer.receive_message(respond(request, 200, "fork2"), PEER, "udp", 2.0)
    assert layer.messages_to_send() == []  # no ACK yet for the new fork
    (event,) = drain(layer)
    assert event.retransmission is False and event.response.to_header.tag == "fork2"
    ack2 = SIPRequest(
        "ACK",
        "sip:bob@192.0.2.8",
        [
            ("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKack2"),
            ("From", request.headers["From"]),
            ("To", "<sip:bob@example.com>;tag=fork2"),
            ("Call-ID", request.call_id),
            ("CSeq", "7 ACK"),
        ],
    )
    layer.send_ack(txn, ack2, ("192.0.2.8", 5060))
    layer.messages_to_send()
    layer.receive_message(respond(request, 200, "fork2"), PEER, "udp", 2.2)
    layer.receive_message(respond(request, 200, "fork1"), PEER, "udp", 2.3)
    assert layer.messages_to_send() == [  # each fork's ACK goes where its dialog leads
        Transmission(bytes(ack2), ("192.0.2.8", 5060), None),
        Transmission(bytes(ack), ("192.0.2.9", 5060), None),
    ]
    assert [e.retransmission for e in drain(layer)] == [True, True]
    layer.receive_message(respond(request, 180, "fork3"), PEER, "udp", 2.5)
    layer.receive_message(respond(request, 486, "fork3"), PEER, "udp", 2.6)
    assert drain(layer) == [] and layer.messages_to_send() == []
    assert txn.state is TransactionState.ACCEPTED


def test_responses_after_a_non_2xx_final_are_ignored():
    layer, request, _txn = start()
    layer.messages_to_send()
    layer.receive_message(respond(request, 404), PEER, "udp", 0.1)
    drain(layer)
    layer.messages_to_send()
    layer.receive_message(respond(request, 180), PEER, "udp", 0.2)
    layer.receive_message(respond(request, 200), PEER, "udp", 0.3)
    assert drain(layer) == [] and layer.messages_to_send() == []


@pytest.mark.parametrize("state_code", [None, 180, 486, 200])
def test_transport_error_terminates_a_client_transaction(state_code):
    layer, request, txn = start()
    layer.messages_to_send()
    if state_code is not None:
        layer.receive_message(respond(request, state_code), PEER, "udp", 0.1)
    drain(layer)
    layer.transport_error(txn, 0.2)
    events = drain(layer)
    assert [type(e) for e in events] == [TransactionTransportError, TransactionTerminated]
    assert txn.state is TransactionState.TERMINATED and layer.get_timer() is None
    layer.transport_error(txn, 0.3)
    assert drain(layer) == []


# -- CANCEL ------------------------------------------------------------------------------


def test_cancel_waits_for_a_provisional_response():
    layer, request, txn = start(routes=["<sip:p1.example.com;lr>"])
    layer.messages_to_send()
    assert layer.cancel(txn, 0.1) is True
    assert layer.messages_to_send() == [] and txn.cancelled
    assert layer.cancel(txn, 0.15) is False  # once
    layer.receive_message(respond(request, 180), PEER, "udp", 0.2)
    (transmission,) = layer.messages_to_send()
    assert transmission.destination == DEST
    cancel = parse_message(transmission.data)
    assert cancel.method == "CANCEL" and cancel.request_uri == request.request_uri
    assert cancel.top_via.branch == request.top_via.branch
    assert tuple(cancel.cseq) == (7, "CANCEL")
    assert cancel.to_header == request.to_header and cancel.from_header == request.from_header
    assert [str(r.uri) for r in cancel.route] == ["sip:p1.example.com;lr"]
    assert "Contact" not in cancel.headers
    drain(layer)
    layer.receive_message(wire(cancel.make_response(200, to_tag="to1")), PEER, "udp", 0.3)
    assert drain(layer) == []  # the CANCEL's own transaction is the layer's business
    layer.receive_message(respond(request, 487), PEER, "udp", 0.4)
    assert [m.method for m in sent(layer)] == ["ACK"]
    events = drain(layer)
    assert events[0].response.code == 487
    run_timers(layer, 100.0)
    assert len(layer) == 0


def test_cancel_in_proceeding_is_sent_at_once_and_retransmitted():
    layer, request, txn = start()
    layer.messages_to_send()
    layer.receive_message(respond(request, 183), PEER, "udp", 0.2)
    assert layer.cancel(txn, 1.0) is True
    assert [m.method for m in sent(layer)] == ["CANCEL"]
    layer.handle_timer(1.5)
    assert [m.method for m in sent(layer)] == ["CANCEL"]


def test_cancel_without_final_response_times_out_after_64_t1():
    layer, request, txn = start()
    layer.messages_to_send()
    layer.receive_message(respond(request, 180), PEER, "udp", 0.2)
    layer.cancel(txn, 1.0)
    drain(layer)
    run_timers(layer, 100.0)
    events = [e for e in drain(layer) if e.transaction is txn]
    assert [type(e) for e in events] == [TransactionTimedOut, TransactionTerminated]
    assert events[0].timer == "cancel"
    assert len(layer) == 0


def test_pending_cancel_is_dropped_when_a_final_response_comes_first():
    layer, request, txn = start()
    layer.messages_to_send()
    layer.cancel(txn, 0.1)
    layer.receive_message(respond(request, 200), PEER, "udp", 0.2)
    assert layer.messages_to_send() == []
    assert layer.cancel(txn, 0.3) is False
    layer.receive_message(respond(request, 180), PEER, "udp", 0.4)
    assert layer.messages_to_send() == []


def test_cancel_needs_an_invite_client_transaction():
    layer, _request, txn = start("OPTIONS")
    with pytest.raises(TypeError):
        layer.cancel(txn, 0.0)


def test_timer_c_cancels_an_invite_stuck_in_proceeding():
    layer, request, txn = start(timers=TimerSettings(timer_c=180.0))
    layer.messages_to_send()
    layer.receive_message(respond(request, 180), PEER, "udp", 10.0)
    layer.receive_message(respond(request, 180), PEER, "udp", 70.0)  # resets timer C
    drain(layer)
    assert layer.get_timer() == 250.0
    layer.handle_timer(250.0)
    assert [type(e) for e in drain(layer)] == [ProceedingTimeout]
    assert [m.method for m in sent(layer)] == ["CANCEL"]
    assert txn.cancelled and txn.state is TransactionState.PROCEEDING
    layer.receive_message(respond(request, 487), PEER, "udp", 251.0)
    assert drain(layer)[0].response.code == 487


def test_timer_c_in_calling_on_reliable_transport_times_the_invite_out():
    timers = TimerSettings(t1=10.0, t2=10.0, timer_c=100.0)  # timer B at 640 s
    layer, _request, _txn = start(reliable=True, timers=timers)
    layer.messages_to_send()
    assert run_timers(layer, 1000.0) == [100.0]
    events = drain(layer)
    assert [type(e) for e in events] == [TransactionTimedOut, TransactionTerminated]
    assert events[0].timer == "C" and layer.messages_to_send() == []


@pytest.mark.parametrize(
    "kwargs",
    [{"t1": 0}, {"t2": -1}, {"t1": 5.0}, {"t4": 0}, {"trying_delay": 0.5}, {"timer_c": 0}],
)
def test_timer_settings_reject_impossible_values(kwargs):
    with pytest.raises(ValueError):
        TimerSettings(**kwargs)


# -- non-INVITE client transaction ----------------------------------------------------


def test_timer_e_doubles_up_to_t2_then_timer_f():
    layer, _request, txn = start("OPTIONS")
    assert txn.state is TransactionState.TRYING
    layer.messages_to_send()
    instants = []
    while (deadline := layer.get_timer()) is not None:
        layer.handle_timer(deadline)
        if layer.messages_to_send():
            instants.append(deadline)
    assert instants == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    events = drain(layer)
    assert events[0].timer == "F" and isinstance(events[1], TransactionTerminated)


def test_timer_e_uses_t2_in_proceeding():
    layer, request, txn = start("OPTIONS")
    layer.messages_to_send()
    layer.handle_timer(0.5)
    layer.receive_message(respond(request, 100), PEER, "udp", 0.6)
    assert txn.state is TransactionState.PROCEEDING
    layer.messages_to_send()
    instants = []
    while (deadline := layer.get_timer()) is not None and deadline < 32:
        layer.handle_timer(deadline)
        if layer.messages_to_send():
            instants.append(deadline)
    assert instants == [1.5, 5.5, 9.5, 13.5, 17.5, 21.5, 25.5, 29.5]
    layer.handle_timer(32.0)
    assert drain(layer)[-2].timer == "F"


def test_custom_t1_t2_scale_the_schedule():
    layer, _request, _txn = start("OPTIONS", timers=TimerSettings(t1=0.1, t2=0.3))
    layer.messages_to_send()
    fired = run_timers(layer, 1.0)
    assert fired == pytest.approx([0.1, 0.3, 0.6, 0.9])


@pytest.mark.parametrize("reliable", [False, True])
def test_final_response_completes_and_timer_k_ends_it(reliable):
    layer, request, txn = start("OPTIONS", reliable=reliable)
    layer.messages_to_send()
    layer.receive_message(respond(request, 200), PEER, "udp", 0.2)
    events = drain(layer)
    assert events[0].response.code == 200
    if reliable:
        assert isinstance(events[1], TransactionTerminated)
        return
    assert txn.state is TransactionState.COMPLETED and layer.get_timer() == 5.2
    layer.receive_message(respond(request, 200), PEER, "udp", 1.0)
    assert drain(layer) == [] and layer.messages_to_send() == []  # absorbed
    layer.handle_timer(5.2)
    assert [type(e) for e in drain(layer)] == [TransactionTerminated]


def test_non_invite_final_from_proceeding_and_no_ack():
    layer, request, txn = start("REGISTER")
    layer.messages_to_send()
    layer.receive_message(respond(request, 100), PEER, "udp", 0.1)
    layer.receive_message(respond(request, 401), PEER, "udp", 0.2)
    assert [e.response.code for e in drain(layer)] == [100, 401]
    assert layer.messages_to_send() == []  # never an ACK
    assert txn.state is TransactionState.COMPLETED


def test_responses_are_matched_by_branch_and_cseq_method():
    layer, request, txn = start("INVITE")
    layer.messages_to_send()
    other = make_request("INVITE", branch="z9hG4bKother")
    layer.receive_message(respond(other, 180), PEER, "udp", 0.1)
    cancel_like = wire(request.make_response(200, to_tag="x"))
    cancel_like.headers.set("CSeq", "7 CANCEL")
    layer.receive_message(wire(cancel_like), PEER, "udp", 0.2)
    events = drain(layer)
    assert [type(e).__name__ for e in events] == ["StrayResponse", "StrayResponse"]
    assert events[0].source == PEER
    assert txn.state is TransactionState.CALLING
