"""The TransactionLayer as a whole: its API contract, limits, identifiers, timer heap,
and two layers wired back to back in memory (a UAC and a UAS talking SIP)."""

import random

import pytest

from sipsimple.core.sip.headers import ViaHeader
from sipsimple.core.sip.message import SIPRequest, parse_message
from sipsimple.core.sip.timers import TimerSettings
from sipsimple.core.sip.transaction import (
    DEFAULT_MAX_TRANSACTIONS,
    MAGIC_COOKIE,
    AckReceived,
    CancelReceived,
    RequestReceived,
    RequestRejected,
    ResponseReceived,
    TransactionLayer,
    TransactionLimitError,
    TransactionState,
    TransactionStateError,
    TransactionTerminated,
    build_ack,
    build_cancel,
    is_reliable,
)

UAC_ADDR = ("192.0.2.1", 5060)
UAS_ADDR = ("192.0.2.2", 5060)


def make_request(layer, method="OPTIONS", cseq=1, call_id="c1", to_tag=None):
    to = "<sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else "")
    return SIPRequest(
        method,
        "sip:bob@192.0.2.2",
        [
            ("Via", ViaHeader("UDP", "192.0.2.1", 5060, {"branch": layer.new_branch()})),
            ("Max-Forwards", "70"),
            ("From", "<sip:alice@example.com>;tag=a1"),
            ("To", to),
            ("Call-ID", call_id),
            ("CSeq", f"{cseq} {method}"),
            ("Contact", "<sip:alice@192.0.2.1>"),
        ],
    )


def drain(layer):
    events = []
    while (event := layer.next_event()) is not None:
        events.append(event)
    return events


# -- API contract ----------------------------------------------------------------------


def test_send_request_checks_its_arguments():
    layer = TransactionLayer()
    with pytest.raises(TypeError):
        layer.send_request("OPTIONS sip:x SIP/2.0", UAS_ADDR, False, 0.0)  # type: ignore[arg-type]
    ack = make_request(layer, "ACK")
    with pytest.raises(ValueError, match="send_ack"):
        layer.send_request(ack, UAS_ADDR, False, 0.0)
    old = make_request(layer)
    old.headers.set("Via", "SIP/2.0/UDP 192.0.2.1;branch=1234")
    with pytest.raises(ValueError, match=MAGIC_COOKIE):
        layer.send_request(old, UAS_ADDR, False, 0.0)
    request = make_request(layer)
    layer.send_request(request, UAS_ADDR, False, 0.0)
    with pytest.raises(ValueError, match="already used"):
        layer.send_request(request, UAS_ADDR, False, 0.0)
    assert len(layer) == 1


def test_bytes_given_with_a_request_or_ack_are_sent_as_they_are():
    """The caller's serialisation (the transport's, made as it stamped the Via) is what
    goes out and what is retransmitted: the layer does not serialise again."""
    layer = TransactionLayer()
    invite = make_request(layer, "INVITE")
    data = bytes(invite)
    client = layer.send_request(invite, UAS_ADDR, False, 0.0, data=data)
    assert [t.data for t in layer.messages_to_send()] == [data]
    assert layer.messages_to_send() == []
    layer.handle_timer(layer.get_timer())  # timer A
    (retransmission,) = layer.messages_to_send()
    assert retransmission.data is data
    layer.receive_message(
        parse_message(bytes(invite.make_response(200, to_tag="b1"))), UAS_ADDR, "udp", 0.1
    )
    ack = build_ack(invite, invite.make_response(200, to_tag="b1"))
    ack_data = bytes(ack)
    layer.send_ack(client, ack, UAS_ADDR, data=ack_data)
    assert [t.data for t in layer.messages_to_send()] == [ack_data]
    layer.receive_message(
        parse_message(bytes(invite.make_response(200, to_tag="b1"))), UAS_ADDR, "udp", 0.2
    )
    (again,) = layer.messages_to_send()  # the 2xx again: the ACK again, the same bytes
    assert again.data is ack_data


def test_a_branch_given_with_a_request_keys_its_transaction():
    """The caller that has just made the Via passes its branch: it is checked as the
    Via's would be, and responses with it match the transaction."""
    layer = TransactionLayer()
    request = make_request(layer)
    branch = request.top_via.branch
    with pytest.raises(ValueError, match=MAGIC_COOKIE):
        layer.send_request(request, UAS_ADDR, False, 0.0, branch="1234")
    client = layer.send_request(request, UAS_ADDR, False, 0.0, branch=branch)
    with pytest.raises(ValueError, match="already used"):
        layer.send_request(make_request(layer), UAS_ADDR, False, 0.0, branch=branch)
    layer.receive_message(parse_message(bytes(request.make_response(200))), UAS_ADDR, "udp", 0.1)
    (event,) = drain(layer)
    assert isinstance(event, ResponseReceived) and event.transaction is client
    layer.handle_timer(layer.get_timer())  # timer K: the transaction ends and is forgotten
    assert isinstance(drain(layer)[-1], TransactionTerminated) and len(layer) == 0


def test_send_response_checks_its_arguments():
    uac, uas = TransactionLayer(), TransactionLayer()
    request = make_request(uac)
    uas.receive_message(parse_message(bytes(request)), UAC_ADDR, "udp", 0.0)
    txn = drain(uas)[0].transaction
    client = uac.send_request(make_request(uac), UAS_ADDR, False, 0.0)
    with pytest.raises(TypeError):
        uas.send_response(client, request.make_response(200), 0.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        uac.send_response(txn, request.make_response(200), 0.0)  # another layer's
    with pytest.raises(TypeError):
        uas.send_response(txn, request, 0.0)  # type: ignore[arg-type]
    wrong = request.make_response(200)
    wrong.headers.set("CSeq", "1 INVITE")
    with pytest.raises(ValueError, match="CSeq"):
        uas.send_response(txn, wrong, 0.0)
    with pytest.raises(TypeError):
        uas.receive_message(b"OPTIONS", UAC_ADDR, "udp", 0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        uas.send_ack(None, request, UAS_ADDR)
    with pytest.raises(TypeError):
        uac.send_ack(client, make_request(uac, "ACK"), UAS_ADDR)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        uac.transport_error(txn, 0.0)


def test_responses_after_termination_are_refused():
    uac, uas = TransactionLayer(), TransactionLayer()
    request = make_request(uac)
    uas.receive_message(parse_message(bytes(request)), UAC_ADDR, "tcp", 0.0)
    txn = drain(uas)[0].transaction
    uas.send_response(txn, request.make_response(200), 0.0)
    assert txn.state is TransactionState.TERMINATED
    with pytest.raises(TransactionStateError, match="terminated"):
        uas.send_response(txn, request.make_response(200), 0.1)


def test_is_reliable():
    assert not is_reliable("udp") and not is_reliable("UDP")
    assert all(is_reliable(name) for name in ("tcp", "tls", "ws", "wss", "sctp"))


def test_build_ack_and_cancel_refuse_what_makes_no_sense():
    layer = TransactionLayer()
    with pytest.raises(ValueError):
        build_cancel(make_request(layer, "ACK"))
    request = make_request(layer, "INVITE")
    ack = build_ack(request, request.make_response(404, to_tag="z"))
    assert ack.to_header.tag == "z" and "Contact" not in ack.headers


# -- identifiers -------------------------------------------------------------------------


def test_identifiers_are_random_and_reproducible_with_a_seeded_rng():
    a, b = TransactionLayer(rng=random.Random(7)), TransactionLayer(rng=random.Random(7))
    assert [a.new_branch(), a.new_tag(), a.new_call_id()] == [
        b.new_branch(),
        b.new_tag(),
        b.new_call_id(),
    ]
    system = TransactionLayer()
    branches = {system.new_branch() for _ in range(1000)}
    assert len(branches) == 1000 and all(x.startswith(MAGIC_COOKIE) for x in branches)
    assert len(system.new_tag()) == 16 and len(system.new_call_id()) == 32


# -- limits ----------------------------------------------------------------------------


def test_default_limit_holds_the_transactions_of_300_calls_per_second():
    """Each call answered over UDP and ended by the peer leaves its INVITE (timer L) and
    BYE (timer J) server transactions for 64*T1: at 300 calls/s, with room to spare."""
    timers = TimerSettings()
    assert timers.timeout == 64 * timers.t1
    held = 300 * 2 * timers.timeout
    layer = TransactionLayer()
    assert layer.max_transactions == DEFAULT_MAX_TRANSACTIONS >= 3 * held


def test_transaction_limit_for_requests_we_send():
    layer = TransactionLayer(max_transactions=2)
    layer.send_request(make_request(layer), UAS_ADDR, False, 0.0)
    layer.send_request(make_request(layer), UAS_ADDR, False, 0.0)
    with pytest.raises(TransactionLimitError, match="max_transactions=2"):
        layer.send_request(make_request(layer), UAS_ADDR, False, 0.0)
    assert len(layer) == 2


def test_transaction_limit_for_requests_we_receive():
    uac, uas = TransactionLayer(), TransactionLayer(max_transactions=1)
    first, second = make_request(uac, cseq=1), make_request(uac, cseq=2)
    uas.receive_message(parse_message(bytes(first)), UAC_ADDR, "udp", 0.0)
    uas.receive_message(parse_message(bytes(second)), UAC_ADDR, "udp", 0.0)
    events = drain(uas)
    assert [type(e) for e in events] == [RequestReceived, RequestRejected]
    assert events[1].response.code == 503 and events[1].source == UAC_ADDR
    out = uas.messages_to_send()
    assert [parse_message(t.data).code for t in out] == [503] and out[0].transaction is None
    uas.receive_message(parse_message(bytes(first)), UAC_ADDR, "udp", 0.1)
    assert drain(uas) == []  # the retransmission still finds its transaction
    uas.receive_message(parse_message(bytes(make_request(uac, "ACK"))), UAC_ADDR, "udp", 0.1)
    assert isinstance(uas.next_event(), AckReceived)  # ACKs need no transaction
    with pytest.raises(ValueError):
        TransactionLayer(max_transactions=0)


# -- timer heap -------------------------------------------------------------------------


def test_get_timer_is_the_earliest_deadline_of_many_transactions():
    layer = TransactionLayer()
    assert layer.get_timer() is None
    transactions = [
        layer.send_request(make_request(layer), UAS_ADDR, False, start / 10) for start in range(50)
    ]
    assert layer.get_timer() == 0.5
    layer.handle_timer(0.5)
    assert layer.get_timer() == pytest.approx(0.6)
    for txn in transactions:
        layer.transport_error(txn, 0.55)
    assert layer.get_timer() is None and len(layer) == 0


def test_heap_stays_bounded_when_deadlines_move_a_lot():
    uac, uas = TransactionLayer(), TransactionLayer()
    request = make_request(uac, "INVITE")
    uas.receive_message(parse_message(bytes(request)), UAC_ADDR, "udp", 0.0)
    txn = drain(uas)[0].transaction
    for i in range(2000):  # every retransmitted INVITE is a chance to reschedule
        uas.receive_message(parse_message(bytes(request)), UAC_ADDR, "udp", i / 10000)
    assert len(uas._heap) <= 4 * len(uas) + 64
    uas.send_response(txn, request.make_response(486, to_tag="t"), 1.0)
    assert uas.get_timer() == 1.5


def test_handle_timer_late_fires_each_timer_once():
    layer = TransactionLayer()
    layer.send_request(make_request(layer, "INVITE"), UAS_ADDR, False, 0.0)
    layer.messages_to_send()
    layer.handle_timer(10.0)  # A was due at 0.5: one retransmission, not a burst
    assert len(layer.messages_to_send()) == 1
    assert layer.get_timer() == 11.0


# -- two layers back to back ----------------------------------------------------------


class Wire:
    """Carries what each layer sends to the other, re-parsed as the network would."""

    def __init__(self):
        self.uac = TransactionLayer(rng=random.Random(1))
        self.uas = TransactionLayer(rng=random.Random(2))
        self.lost = 0

    def pump(self, now, drop=lambda data: False):
        moved = True
        while moved:
            moved = False
            for sender, receiver, source in (
                (self.uac, self.uas, UAC_ADDR),
                (self.uas, self.uac, UAS_ADDR),
            ):
                for transmission in sender.messages_to_send():
                    moved = True
                    if drop(transmission.data):
                        self.lost += 1
                        continue
                    receiver.receive_message(parse_message(transmission.data), source, "udp", now)

    def run(self, until):
        for _ in range(10000):
            deadlines = [t for t in (self.uac.get_timer(), self.uas.get_timer()) if t is not None]
            if not deadlines or min(deadlines) > until:
                return
            now = min(deadlines)
            self.uac.handle_timer(now)
            self.uas.handle_timer(now)
            self.pump(now)


def test_invite_call_back_to_back_with_loss_of_the_first_invite_and_the_first_200():
    wire = Wire()
    uac, uas = wire.uac, wire.uas
    invite = make_request(uac, "INVITE")
    client = uac.send_request(invite, UAS_ADDR, False, 0.0)
    wire.pump(0.0, drop=lambda data: data.startswith(b"INVITE"))
    assert wire.lost == 1
    wire.run(0.5)  # timer A: the INVITE again
    server = drain(uas)[0].transaction
    wire.run(0.7)  # 100 Trying
    assert [e.response.code for e in drain(uac)] == [100]
    assert client.state is TransactionState.PROCEEDING
    ringing = server.request.make_response(180, to_tag="b1")
    uas.send_response(server, ringing, 1.0)
    wire.pump(1.0)
    ok = server.request.make_response(200, to_tag="b1", headers=[("Contact", "<sip:b@u2>")])
    uas.send_response(server, ok, 2.0)
    wire.pump(2.0, drop=lambda data: data.startswith(b"SIP/2.0 200"))
    events = drain(uac)
    assert [e.response.code for e in events] == [180]
    wire.run(2.5)  # the UAS retransmits its 200 (RFC 3261 13.3.1.4)
    (event,) = drain(uac)
    assert event.response.code == 200 and client.state is TransactionState.ACCEPTED
    ack = SIPRequest(
        "ACK",
        "sip:b@u2",
        [
            ("Via", ViaHeader("UDP", "192.0.2.1", 5060, {"branch": uac.new_branch()})),
            ("From", invite.headers["From"]),
            ("To", event.response.headers["To"]),
            ("Call-ID", invite.call_id),
            ("CSeq", "1 ACK"),
        ],
    )
    uac.send_ack(client, ack, UAS_ADDR)
    wire.pump(2.6)
    (event,) = drain(uas)
    assert isinstance(event, AckReceived) and event.transaction is server
    wire.run(100.0)
    assert [type(e) for e in drain(uac)] == [TransactionTerminated]
    assert [type(e) for e in drain(uas)] == [TransactionTerminated]
    assert len(uac) == len(uas) == 0


def test_non_invite_back_to_back_with_lost_response():
    wire = Wire()
    uac, uas = wire.uac, wire.uas
    request = make_request(uac, "MESSAGE")
    client = uac.send_request(request, UAS_ADDR, False, 0.0)
    wire.pump(0.0)
    server = drain(uas)[0].transaction
    uas.send_response(server, server.request.make_response(200, to_tag="m"), 0.1)
    wire.pump(0.1, drop=lambda data: data.startswith(b"SIP/2.0"))
    wire.run(0.5)  # timer E: the request again, and the 200 again from the server
    assert [e.response.code for e in drain(uac)] == [200]
    assert client.state is TransactionState.COMPLETED
    wire.run(100.0)
    assert len(uac) == len(uas) == 0


def test_cancelled_invite_back_to_back():
    wire = Wire()
    uac, uas = wire.uac, wire.uas
    client = uac.send_request(make_request(uac, "INVITE"), UAS_ADDR, False, 0.0)
    wire.pump(0.0)
    server = drain(uas)[0].transaction
    uas.send_response(server, server.request.make_response(180, to_tag="b"), 0.1)
    wire.pump(0.1)
    uac.cancel(client, 1.0)
    wire.pump(1.0)
    cancel = drain(uas)[0]
    assert isinstance(cancel, CancelReceived) and cancel.target is server
    uas.send_response(cancel.transaction, cancel.request.make_response(200, to_tag="b"), 1.1)
    uas.send_response(server, server.request.make_response(487, to_tag="b"), 1.1)
    wire.pump(1.1)
    events = drain(uac)
    assert [type(e) for e in events] == [ResponseReceived, ResponseReceived]
    assert [e.response.code for e in events] == [180, 487]
    assert server.state is TransactionState.CONFIRMED  # the ACK came back
    wire.run(100.0)
    assert len(uac) == len(uas) == 0
