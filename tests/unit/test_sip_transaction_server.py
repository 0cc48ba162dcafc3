"""Server transactions (RFC 3261 sections 17.2, 9.2, 13.3.1.4; RFC 6026 section 7.1):
states, timers, 100 Trying, absorption of retransmissions, ACK and CANCEL matching, the
RFC 2543 fallback, and what the layer reports."""

import random

import pytest

from sipsimple.core.sip.message import SIPRequest, parse_message
from sipsimple.core.sip.timers import TimerSettings
from sipsimple.core.sip.transaction import (
    AckReceived,
    CancelReceived,
    InviteServerTransaction,
    NonInviteServerTransaction,
    RequestReceived,
    TransactionLayer,
    TransactionState,
    TransactionStateError,
    TransactionTerminated,
    TransactionTimedOut,
    TransactionTransportError,
)

SOURCE = ("192.0.2.1", 5060)


def make_request(
    method: str = "INVITE",
    branch: str | None = "z9hG4bKs1",
    *,
    cseq: int = 1,
    to_tag: str | None = None,
    sent_by: str = "192.0.2.1:5060",
    uri: str = "sip:bob@example.com",
    extra=(),
) -> SIPRequest:
    via = f"SIP/2.0/UDP {sent_by}" + (f";branch={branch}" if branch else "")
    to = "<sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else "")
    cseq_method = "INVITE" if method == "ACK" and cseq == 1 else method
    headers = [
        ("Via", via),
        ("Max-Forwards", "70"),
        ("From", "<sip:alice@example.com>;tag=from1"),
        ("To", to),
        ("Call-ID", "call-s@192.0.2.1"),
        ("CSeq", f"{cseq} {'ACK' if method == 'ACK' else cseq_method}"),
        ("Contact", "<sip:alice@192.0.2.1>"),
        *extra,
    ]
    return parse_message(bytes(SIPRequest(method, uri, headers)))


def drain(layer):
    events = []
    while (event := layer.next_event()) is not None:
        events.append(event)
    return events


def sent(layer):
    return [parse_message(t.data) for t in layer.messages_to_send()]


def codes(layer):
    return [m.code for m in sent(layer)]


def receive(layer, request, now, transport="udp", source=SOURCE):
    layer.receive_message(parse_message(bytes(request)), source, transport, now)


def new_server(method="INVITE", transport="udp", timers=None, **kwargs):
    layer = TransactionLayer(rng=random.Random(3), timers=timers)
    request = make_request(method, **kwargs)
    layer.receive_message(request, SOURCE, transport, 0.0)
    (event,) = drain(layer)
    assert isinstance(event, RequestReceived) and event.request is request
    return layer, request, event.transaction


def fire(layer, until):
    fired = []
    while (deadline := layer.get_timer()) is not None and deadline <= until:
        layer.handle_timer(deadline)
        fired.append(deadline)
    return fired


# -- INVITE server transaction --------------------------------------------------------


def test_new_invite_makes_an_invite_server_transaction_in_proceeding():
    _layer, _request, txn = new_server()
    assert isinstance(txn, InviteServerTransaction)
    assert txn.state is TransactionState.PROCEEDING and txn.source == SOURCE
    assert txn.transport == "udp" and not txn.reliable and txn.method == "INVITE"


def test_100_trying_after_200_ms_without_an_answer():
    layer, _request, _txn = new_server(extra=[("Timestamp", "54")])
    assert layer.messages_to_send() == []
    assert layer.get_timer() == pytest.approx(0.2)
    layer.handle_timer(0.2)
    (trying,) = sent(layer)
    assert trying.code == 100 and trying.to_header.tag is None
    assert trying.headers["Timestamp"] == "54 0.200"  # copied, with the delay (8.2.6.1)
    assert trying.top_via.branch == "z9hG4bKs1"


def test_no_100_trying_when_the_tu_answers_in_time():
    layer, request, txn = new_server()
    layer.send_response(txn, request.make_response(180, to_tag="t1"), 0.1)
    assert codes(layer) == [180]
    fire(layer, 0.3)
    assert layer.messages_to_send() == []


def test_100_trying_at_once_when_configured():
    layer, _request, _txn = new_server(timers=TimerSettings(trying_delay=0))
    assert codes(layer) == [100]


def test_retransmitted_invite_is_absorbed_and_answered_with_the_last_provisional():
    layer, request, txn = new_server()
    receive(layer, request, 0.1)
    assert codes(layer) == [100]  # nothing sent yet: quench it now
    assert drain(layer) == []
    layer.handle_timer(0.2)
    assert layer.messages_to_send() == []  # no second 100
    layer.send_response(txn, request.make_response(180, to_tag="t1"), 1.0)
    layer.messages_to_send()
    receive(layer, request, 1.5)
    assert codes(layer) == [180]
    assert drain(layer) == []


def test_non_2xx_final_retransmitted_by_timer_g_until_timer_h():
    layer, request, txn = new_server()
    layer.send_response(txn, request.make_response(486, to_tag="t1"), 0.0)
    assert codes(layer) == [486] and txn.state is TransactionState.COMPLETED
    instants = []
    while (deadline := layer.get_timer()) is not None:
        layer.handle_timer(deadline)
        if layer.messages_to_send():
            instants.append(deadline)
    assert instants == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    events = drain(layer)
    assert [type(e) for e in events] == [TransactionTimedOut, TransactionTerminated]
    assert events[0].timer == "H" and len(layer) == 0


def test_timer_g_does_not_run_on_reliable_transport():
    layer, request, txn = new_server(transport="tcp")
    assert txn.reliable
    layer.send_response(txn, request.make_response(486, to_tag="t1"), 0.0)
    layer.messages_to_send()
    assert fire(layer, 100.0) == [32.0]
    assert layer.messages_to_send() == []
    assert drain(layer)[0].timer == "H"


@pytest.mark.parametrize("transport", ["udp", "tls"])
def test_ack_for_non_2xx_confirms_and_timer_i_ends(transport):
    layer, request, txn = new_server(transport=transport)
    layer.send_response(txn, request.make_response(404, to_tag="t1"), 0.0)
    layer.messages_to_send()
    receive(layer, request, 0.3, transport)
    assert codes(layer) == [404]  # a retransmitted INVITE gets the final response again
    ack = make_request("ACK", to_tag="t1")
    receive(layer, ack, 0.4, transport)
    assert drain(layer) == [] or transport == "tls"  # absorbed, not passed up
    assert txn.ack_received
    if transport == "tls":  # timer I is zero
        assert txn.state is TransactionState.TERMINATED
        return
    assert txn.state is TransactionState.CONFIRMED
    assert layer.get_timer() == pytest.approx(5.4)
    layer.handle_timer(1.0)
    assert layer.messages_to_send() == []  # timer G stopped
    receive(layer, ack, 2.0)  # absorbed again
    receive(layer, request, 2.1)  # nothing to send in confirmed
    assert layer.messages_to_send() == [] and drain(layer) == []
    layer.handle_timer(5.4)
    assert [type(e) for e in drain(layer)] == [TransactionTerminated]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_2xx_accepted_state_retransmits_until_the_ack_then_timer_l(transport):
    layer, request, txn = new_server(transport=transport)
    ok = request.make_response(200, to_tag="t1")
    layer.send_response(txn, ok, 0.0)
    assert codes(layer) == [200] and txn.state is TransactionState.ACCEPTED
    instants = []
    while (deadline := layer.get_timer()) is not None and deadline < 12:
        layer.handle_timer(deadline)
        if layer.messages_to_send():
            instants.append(deadline)
    assert instants == [0.5, 1.5, 3.5, 7.5, 11.5]  # T1 doubling to T2, on any transport
    receive(layer, request, 11.6, transport)  # a retransmitted INVITE is absorbed
    assert layer.messages_to_send() == [] and drain(layer) == []
    ack = make_request("ACK", branch="z9hG4bKack", to_tag="t1")
    receive(layer, ack, 12.0, transport)
    (event,) = drain(layer)
    assert isinstance(event, AckReceived) and event.transaction is txn and txn.ack_received
    assert fire(layer, 31.9) == []  # retransmissions stopped
    receive(layer, ack, 13.0, transport)
    assert isinstance(layer.next_event(), AckReceived)  # ACKs are passed up, never absorbed
    layer.handle_timer(32.0)
    assert [type(e) for e in drain(layer)] == [TransactionTerminated]


def test_timer_l_without_ack_reports_the_missing_ack():
    layer, request, txn = new_server()
    layer.send_response(txn, request.make_response(200, to_tag="t1"), 0.0)
    fire(layer, 100.0)
    events = drain(layer)
    assert [type(e) for e in events] == [TransactionTimedOut, TransactionTerminated]
    assert events[0].timer == "L"
    late_ack = make_request("ACK", branch="z9hG4bKack", to_tag="t1")
    receive(layer, late_ack, 101.0)
    (event,) = drain(layer)
    assert isinstance(event, AckReceived) and event.transaction is None


def test_tu_may_resend_the_2xx_in_accepted_but_nothing_else():
    layer, request, txn = new_server()
    ok = request.make_response(200, to_tag="t1")
    layer.send_response(txn, ok, 0.0)
    layer.send_response(txn, ok, 0.1)
    assert codes(layer) == [200, 200]
    for code in (180, 486):
        with pytest.raises(TransactionStateError):
            layer.send_response(txn, request.make_response(code, to_tag="t1"), 0.2)


def test_no_response_after_a_non_2xx_final():
    layer, request, txn = new_server()
    layer.send_response(txn, request.make_response(486, to_tag="t1"), 0.0)
    for code in (180, 200, 500):
        with pytest.raises(TransactionStateError, match="completed"):
            layer.send_response(txn, request.make_response(code, to_tag="t1"), 0.1)


def test_transport_error_keeps_a_server_transaction_in_its_state():
    layer, request, txn = new_server()
    layer.send_response(txn, request.make_response(486, to_tag="t1"), 0.0)
    layer.transport_error(txn, 0.1)
    (event,) = drain(layer)
    assert isinstance(event, TransactionTransportError)
    assert txn.state is TransactionState.COMPLETED  # RFC 6026 section 8.8
    fire(layer, 100.0)
    assert txn.state is TransactionState.TERMINATED


# -- non-INVITE server transaction ---------------------------------------------------


def test_non_invite_states_retransmissions_and_timer_j():
    layer, request, txn = new_server("OPTIONS")
    assert isinstance(txn, NonInviteServerTransaction) and txn.state is TransactionState.TRYING
    receive(layer, request, 0.1)
    assert layer.messages_to_send() == [] and drain(layer) == []  # absorbed in trying
    assert layer.get_timer() is None  # no automatic 100 for non-INVITE
    layer.send_response(txn, request.make_response(100), 0.2)
    assert txn.state is TransactionState.PROCEEDING and codes(layer) == [100]
    receive(layer, request, 0.3)
    assert codes(layer) == [100]
    layer.send_response(txn, request.make_response(200, to_tag="t1"), 0.4)
    assert txn.state is TransactionState.COMPLETED and codes(layer) == [200]
    receive(layer, request, 5.0)
    assert codes(layer) == [200]
    with pytest.raises(TransactionStateError):
        layer.send_response(txn, request.make_response(500, to_tag="t1"), 6.0)
    assert layer.get_timer() == pytest.approx(32.4)
    layer.handle_timer(32.4)
    assert [type(e) for e in drain(layer)] == [TransactionTerminated]
    receive(layer, request, 33.0)  # a new transaction now
    assert isinstance(layer.next_event(), RequestReceived)


def test_non_invite_on_reliable_transport_ends_with_the_final_response():
    layer, request, txn = new_server("MESSAGE", transport="tcp")
    layer.send_response(txn, request.make_response(200, to_tag="t1"), 0.0)
    assert [type(e) for e in drain(layer)] == [TransactionTerminated]
    assert len(layer) == 0 and layer.get_timer() is None


# -- ACK and CANCEL matching ---------------------------------------------------------


def test_ack_matching_needs_branch_and_sent_by():
    layer, request, txn = new_server()
    layer.send_response(txn, request.make_response(486, to_tag="t1"), 0.0)
    receive(layer, make_request("ACK", to_tag="t1", sent_by="192.0.2.99:5060"), 0.1)
    (event,) = drain(layer)
    assert isinstance(event, AckReceived) and event.transaction is None
    assert txn.state is TransactionState.COMPLETED


def test_stray_ack_goes_to_the_tu():
    layer = TransactionLayer()
    receive(layer, make_request("ACK", branch="z9hG4bKnone", to_tag="x"), 0.0)
    (event,) = drain(layer)
    assert isinstance(event, AckReceived) and event.transaction is None
    assert len(layer) == 0


def test_cancel_matches_its_invite_and_gets_its_own_transaction():
    layer, request, txn = new_server()
    cancel = make_request("CANCEL")
    layer.receive_message(cancel, SOURCE, "udp", 1.0)
    (event,) = drain(layer)
    assert isinstance(event, CancelReceived)
    assert event.target is txn and txn.cancelled and event.request is cancel
    assert isinstance(event.transaction, NonInviteServerTransaction)
    assert event.transaction.method == "CANCEL"
    layer.send_response(event.transaction, cancel.make_response(200, to_tag="t1"), 1.0)
    layer.send_response(txn, request.make_response(487, to_tag="t1"), 1.0)
    assert codes(layer) == [200, 487]
    receive(layer, cancel, 1.5)  # a retransmitted CANCEL gets its 200 again
    assert codes(layer) == [200]
    assert drain(layer) == []


def test_cancel_without_matching_transaction():
    layer, _request, txn = new_server()
    for cancel in (
        make_request("CANCEL", branch="z9hG4bKother"),
        make_request("CANCEL", sent_by="192.0.2.50:5060"),
    ):
        receive(layer, cancel, 1.0)
        (event,) = drain(layer)
        assert isinstance(event, CancelReceived) and event.target is None
    assert not txn.cancelled


def test_cancel_after_the_invite_ended_has_no_target():
    layer, request, txn = new_server(transport="tcp")
    layer.send_response(txn, request.make_response(200, to_tag="t1"), 0.0)
    fire(layer, 40.0)
    drain(layer)
    receive(layer, make_request("CANCEL"), 41.0, "tcp")
    assert drain(layer)[0].target is None


def test_transactions_with_the_same_branch_but_other_method_are_distinct():
    layer, _request, txn = new_server("INVITE")
    receive(layer, make_request("BYE", cseq=2), 0.1)
    (event,) = drain(layer)
    assert isinstance(event, RequestReceived) and event.transaction is not txn
    assert len(layer) == 2


# -- RFC 2543 fallback ---------------------------------------------------------------


def test_rfc2543_invite_retransmission_and_ack_matching():
    layer, request, txn = new_server(branch=None)
    receive(layer, request, 0.1)
    assert drain(layer) == [] and codes(layer) == [100]  # matched as a retransmission
    layer.send_response(txn, request.make_response(486, to_tag="t2543"), 0.2)
    layer.messages_to_send()
    receive(layer, make_request("ACK", branch=None, to_tag="other"), 0.3)
    (event,) = drain(layer)  # another To tag: not this transaction's ACK
    assert isinstance(event, AckReceived) and event.transaction is None
    receive(layer, make_request("ACK", branch=None, to_tag="t2543"), 0.4)
    assert drain(layer) == [] and txn.state is TransactionState.CONFIRMED


def test_rfc2543_requests_differing_in_any_key_are_new_transactions():
    layer, request, _txn = new_server("OPTIONS", branch="old-style-branch")
    variants = [
        make_request("OPTIONS", "old-style-branch", cseq=2),
        make_request("OPTIONS", "old-style-branch", to_tag="x"),
        make_request("OPTIONS", "old-style-branch", uri="sip:carol@example.com"),
        make_request("OPTIONS", "old-style-branch", sent_by="192.0.2.1:5070"),
    ]
    for variant in variants:
        receive(layer, variant, 0.1)
    assert [type(e) for e in drain(layer)] == [RequestReceived] * 4
    receive(layer, request, 0.2)
    assert drain(layer) == []


def test_rfc2543_ack_for_2xx_in_accepted_goes_to_the_tu():
    layer, request, txn = new_server(branch=None)
    layer.send_response(txn, request.make_response(200, to_tag="t1"), 0.0)
    receive(layer, make_request("ACK", branch=None, to_tag="t1"), 0.3)
    (event,) = drain(layer)
    assert isinstance(event, AckReceived) and event.transaction is txn
    layer.messages_to_send()
    fire(layer, 10.0)
    assert layer.messages_to_send() == []


def test_rfc2543_cancel_matches_its_invite():
    layer, _request, txn = new_server(branch=None)
    receive(layer, make_request("CANCEL", branch=None), 0.5)
    (event,) = drain(layer)
    assert event.target is txn


def test_a_cookie_cancel_never_matches_a_2543_invite():
    layer, _request, _txn = new_server(branch=None)
    receive(layer, make_request("CANCEL", branch="z9hG4bKs1"), 0.5)
    assert drain(layer)[0].target is None


# -- Via stamping and where responses go ----------------------------------------------


def test_the_via_is_left_to_the_transport_and_rport_picks_the_source_port():
    # The transport stamps received/rport (it knows the source); the layer must not
    # stamp again, and a bare rport already sends the response to the source port.
    layer = TransactionLayer()
    request = make_request("OPTIONS", sent_by="host.example.com:5062;rport")
    via_before = request.headers.getall("Via")
    layer.receive_message(request, ("198.51.100.7", 40000), "udp", 0.0)
    txn = drain(layer)[0].transaction
    assert request.headers.getall("Via") == via_before
    assert request.top_via.received is None and request.top_via.rport is True
    assert txn.destination.address == ("198.51.100.7", 40000)
    response = request.make_response(200, to_tag="t")
    layer.send_response(txn, response, 0.0)
    (transmission,) = layer.messages_to_send()
    assert transmission.destination is txn.destination and transmission.transaction is txn


def test_sent_by_port_without_rport():
    layer = TransactionLayer()
    request = make_request("OPTIONS", sent_by="192.0.2.1")
    layer.receive_message(request, ("192.0.2.1", 33333), "udp", 0.0)
    txn = drain(layer)[0].transaction
    assert txn.destination.address == ("192.0.2.1", 5060)
    assert txn.destination.source == ("192.0.2.1", 33333)


def test_maddr_on_udp_and_connection_on_tls():
    layer = TransactionLayer()
    request = make_request("OPTIONS", sent_by="192.0.2.1;maddr=239.255.255.1")
    layer.receive_message(request, SOURCE, "udp", 0.0)
    assert drain(layer)[0].transaction.destination.address == ("239.255.255.1", 5060)
    request = make_request("OPTIONS", "z9hG4bKtls", sent_by="client.example.com")
    request.headers.set("Via", "SIP/2.0/TLS client.example.com;branch=z9hG4bKtls")
    layer.receive_message(request, ("192.0.2.8", 51000), "TLS", 0.0)
    destination = drain(layer)[0].transaction.destination
    assert destination.transport == "tls" and destination.source == ("192.0.2.8", 51000)
    assert destination.address == ("192.0.2.8", 5061)
