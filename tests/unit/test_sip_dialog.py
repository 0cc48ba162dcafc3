"""Dialogs (RFC 3261 sections 12, 13.2.2.4, 14; RFC 3262 RSeq/RAck): creation on both
sides, route sets, loose and strict routing, target refresh, CSeq rules, forking."""

import random

import pytest

from sipsimple.core.errors import SIPParseError
from sipsimple.core.sip.dialog import (
    Dialog,
    DialogError,
    DialogID,
    DialogLayer,
    DialogSet,
    DialogState,
    RAck,
)
from sipsimple.core.sip.headers import FrozenContactHeader, ViaHeader
from sipsimple.core.sip.message import SIPRequest, parse_message
from sipsimple.core.sip.transaction import (
    AckReceived,
    RequestReceived,
    ResponseReceived,
    TransactionLayer,
)


def wire(message):
    return parse_message(bytes(message))


def invite(
    uri="sip:bob@biloxi.example.com",
    record_route=(),
    cseq=314159,
    contact="<sip:alice@pc33.atlanta.example.com>",
) -> SIPRequest:
    headers = [
        ("Via", "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8"),
        ("Max-Forwards", "70"),
        ("From", '"Alice" <sip:alice@atlanta.example.com>;tag=1928301774'),
        ("To", '"Bob" <sip:bob@biloxi.example.com>'),
        ("Call-ID", "a84b4c76e66710"),
        ("CSeq", f"{cseq} INVITE"),
        ("Contact", contact),
        *(("Record-Route", rr) for rr in record_route),
    ]
    return wire(SIPRequest("INVITE", uri, headers))


def answer(request, code, tag="a6c85cf", contact="<sip:bob@192.0.2.4>", record_route=None):
    headers = [("Contact", contact)] if contact else []
    if record_route is not None:
        headers += [("Record-Route", rr) for rr in record_route]
    elif code > 100:  # a UAS copies the Record-Route of the request
        headers += [("Record-Route", rr) for rr in request.headers.getall("Record-Route")]
    return wire(request.make_response(code, to_tag=tag if code > 100 else None, headers=headers))


RR = ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]  # as the UAS receives them


# -- creation -------------------------------------------------------------------------------


def test_uac_dialog_from_a_2xx():
    request = invite(record_route=RR)
    dialog = Dialog.from_uac(request, answer(request, 200))
    assert dialog.id == DialogID("a84b4c76e66710", "1928301774", "a6c85cf")
    assert dialog.state is DialogState.CONFIRMED and dialog.is_uac
    assert [str(r.uri) for r in dialog.route_set] == [
        "sip:p1.example.com;lr",
        "sip:p2.example.com;lr",
    ]  # reversed for the UAC
    assert str(dialog.remote_target) == "sip:bob@192.0.2.4"
    assert dialog.local_seq == 314159 and dialog.remote_seq is None
    assert dialog.local_identity.tag is None and dialog.local_identity.display_name == "Alice"
    assert str(dialog.remote_identity.uri) == "sip:bob@biloxi.example.com"
    assert dialog.remote_identity.tag is None and not dialog.secure
    assert str(dialog.local_contact.uri) == "sip:alice@pc33.atlanta.example.com"


def test_uas_dialog_from_our_response():
    request = invite(record_route=RR)
    response = answer(request, 180, contact="<sip:bob@192.0.2.4;transport=tcp>")
    dialog = Dialog.from_uas(request, response, initial_cseq=100)
    assert dialog.id == DialogID("a84b4c76e66710", "a6c85cf", "1928301774")
    assert dialog.state is DialogState.EARLY and not dialog.is_uac
    assert [str(r.uri) for r in dialog.route_set] == [
        "sip:p2.example.com;lr",
        "sip:p1.example.com;lr",
    ]  # in order for the UAS
    assert str(dialog.remote_target) == "sip:alice@pc33.atlanta.example.com"
    assert dialog.remote_seq == 314159 and dialog.local_seq is None
    assert str(dialog.local_identity.uri) == "sip:bob@biloxi.example.com"
    assert dialog.remote_identity.display_name == "Alice"
    bye = dialog.create_request("BYE")
    assert bye.cseq == (100, "BYE")
    assert bye.from_header.tag == "a6c85cf" and bye.to_header.tag == "1928301774"
    assert str(bye.from_header.uri) == "sip:bob@biloxi.example.com"
    assert str(bye.request_uri) == "sip:alice@pc33.atlanta.example.com"
    assert [str(r.uri) for r in bye.route] == ["sip:p2.example.com;lr", "sip:p1.example.com;lr"]


def test_dialog_creation_refuses_what_does_not_make_a_dialog():
    request = invite()
    for code in (100, 302, 486):
        with pytest.raises(DialogError):
            Dialog.from_uac(request, answer(request, code))
        with pytest.raises(DialogError):
            Dialog.from_uas(request, answer(request, code))
    with pytest.raises(DialogError, match="To tag"):
        Dialog.from_uas(request, answer(request, 200, tag=None))
    no_contact = invite()
    del no_contact.headers["Contact"]
    with pytest.raises(DialogError, match="Contact"):
        Dialog.from_uas(no_contact, answer(no_contact, 200))
    no_tag = invite()
    no_tag.headers.set("From", "<sip:alice@atlanta.example.com>")
    with pytest.raises(DialogError, match="From tag"):
        Dialog.from_uac(wire(no_tag), answer(no_tag, 200))
    with pytest.raises(DialogError, match="From tag"):
        DialogSet(wire(no_tag))
    bad_contact = invite(contact="<sip:alice@host>;;;")
    with pytest.raises(SIPParseError):
        Dialog.from_uas(bad_contact, answer(bad_contact, 200))


def test_uac_without_contact_in_a_1xx_targets_the_request_uri_and_rfc2543_peer_without_tag():
    request = invite()
    early = Dialog.from_uac(request, answer(request, 183, contact=None))
    assert early.remote_target == request.request_uri
    old = Dialog.from_uac(request, answer(request, 200, tag=None))
    assert old.id.remote_tag is None
    assert old.create_request("BYE").to_header.tag is None  # the tag is omitted


def test_secure_flag_needs_tls_and_a_sips_request_uri():
    sips = invite(uri="sips:bob@biloxi.example.com", contact="<sips:alice@pc33.example.com>")
    assert Dialog.from_uac(sips, answer(sips, 200), secure_transport=True).secure
    assert not Dialog.from_uac(sips, answer(sips, 200), secure_transport=False).secure
    plain = invite()
    assert not Dialog.from_uas(plain, answer(plain, 200), secure_transport=True).secure
    assert Dialog.from_uas(sips, answer(sips, 200), secure_transport=True).secure


# -- requests in the dialog --------------------------------------------------------------


def dialog_with_routes(routes, target="sip:user@remoteua"):
    request = invite(contact=f"<{target}>")
    response = answer(request, 200)
    response.headers.set("Record-Route", [f"<{r}>" for r in reversed(routes)])
    response.headers.set("Contact", f"<{target}>")
    return Dialog.from_uac(request, wire(response))


def test_no_route_set_sends_to_the_remote_target_without_route():
    dialog = dialog_with_routes([])
    bye = dialog.create_request("BYE")
    assert str(bye.request_uri) == "sip:user@remoteua" and "Route" not in bye.headers
    assert bye.max_forwards == 70 and bye.call_id == "a84b4c76e66710"
    assert "Via" not in bye.headers  # the Engine adds it


def test_loose_routing_keeps_the_remote_target_in_the_request_uri():
    dialog = dialog_with_routes(["sip:p1.example.com;lr", "sip:p2.example.com;lr;foo=bar"])
    bye = dialog.create_request("BYE")
    assert str(bye.request_uri) == "sip:user@remoteua"
    assert bye.headers.getall("Route") == [
        "<sip:p1.example.com;lr>",
        "<sip:p2.example.com;lr;foo=bar>",
    ]


def test_strict_routing_example_of_section_12_2_1_1():
    dialog = dialog_with_routes(["sip:proxy1", "sip:proxy2", "sip:proxy3;lr", "sip:proxy4"])
    bye = dialog.create_request("BYE")
    assert str(bye.request_uri) == "sip:proxy1"
    assert bye.headers.getall("Route") == [
        "<sip:proxy2>",
        "<sip:proxy3;lr>",
        "<sip:proxy4>",
        "<sip:user@remoteua>",
    ]


def test_strict_router_uri_loses_what_a_request_uri_may_not_carry():
    dialog = dialog_with_routes(["sip:proxy1;method=INVITE;transport=tcp"])
    bye = dialog.create_request("BYE")
    assert str(bye.request_uri) == "sip:proxy1;transport=tcp"


def test_cseq_rules_for_new_requests_ack_and_cancel():
    request = invite()
    dialog = Dialog.from_uac(request, answer(request, 200))
    ack = dialog.create_ack(314159)
    assert ack.cseq == (314159, "ACK") and ack.method == "ACK"
    assert str(ack.request_uri) == "sip:bob@192.0.2.4" and "Contact" not in ack.headers
    assert [dialog.create_request(m).cseq for m in ("INFO", "INVITE", "BYE")] == [
        (314160, "INFO"),
        (314161, "INVITE"),
        (314162, "BYE"),
    ]
    assert dialog.local_seq == 314162
    for method in ("ACK", "CANCEL"):
        with pytest.raises(ValueError):
            dialog.create_request(method)
    dialog.terminate()
    with pytest.raises(DialogError, match="terminated"):
        dialog.create_request("BYE")
    dialog.local_seq = 2**32 - 1
    dialog.state = DialogState.CONFIRMED
    with pytest.raises(DialogError, match="2\\*\\*32"):
        dialog.create_request("BYE")


def test_target_refresh_requests_carry_the_contact():
    request = invite()
    dialog = Dialog.from_uac(request, answer(request, 200))
    assert "Contact" not in dialog.create_request("BYE").headers
    reinvite = dialog.create_request("INVITE", headers=[("Content-Type", "application/sdp")])
    assert str(reinvite.contact[0].uri) == "sip:alice@pc33.atlanta.example.com"
    assert reinvite.headers["Content-Type"] == "application/sdp"
    moved = FrozenContactHeader.parse("<sip:alice@198.51.100.1>")
    update = dialog.create_request("UPDATE", contact=moved, body=b"v=0\r\n")
    assert update.contact == [moved] and update.body == b"v=0\r\n"
    assert dialog.local_contact == moved
    assert dialog.create_request("INVITE").contact == [moved]


# -- requests from the peer ----------------------------------------------------------------


def in_dialog(dialog, method, cseq, contact=None):
    """A request the peer sends in ``dialog``."""
    headers = [
        ("Via", "SIP/2.0/UDP 192.0.2.4;branch=z9hG4bKpeer"),
        ("From", f"<sip:bob@biloxi.example.com>;tag={dialog.id.remote_tag}"),
        ("To", f"<sip:alice@atlanta.example.com>;tag={dialog.id.local_tag}"),
        ("Call-ID", dialog.id.call_id),
        ("CSeq", f"{cseq} {method}"),
    ]
    if contact:
        headers.append(("Contact", contact))
    return wire(SIPRequest(method, "sip:alice@pc33.atlanta.example.com", headers))


def test_remote_cseq_is_set_checked_and_may_jump():
    request = invite()
    dialog = Dialog.from_uac(request, answer(request, 200))
    assert dialog.receive_request(in_dialog(dialog, "INFO", 10)) is None
    assert dialog.remote_seq == 10
    assert dialog.receive_request(in_dialog(dialog, "INFO", 15)) is None  # a gap is fine
    assert dialog.receive_request(in_dialog(dialog, "INFO", 12)) == 500
    assert dialog.remote_seq == 15  # the rejected request changed nothing
    assert dialog.receive_request(in_dialog(dialog, "ACK", 1)) is None


def test_uas_target_refresh_only_when_accepted():
    request = invite()
    dialog = Dialog.from_uas(request, answer(request, 200))
    reinvite = in_dialog(dialog, "INVITE", 314160, contact="<sip:alice@198.51.100.9>")
    dialog.receive_request(reinvite)
    dialog.response_sent(reinvite, answer(reinvite, 488, tag=dialog.id.local_tag))
    assert str(dialog.remote_target) == "sip:alice@pc33.atlanta.example.com"
    dialog.response_sent(reinvite, answer(reinvite, 100))
    bye = in_dialog(dialog, "BYE", 314161, contact="<sip:alice@198.51.100.8>")
    dialog.response_sent(bye, answer(bye, 200, tag=dialog.id.local_tag))
    assert str(dialog.remote_target) == "sip:alice@pc33.atlanta.example.com"  # not a refresh
    update = in_dialog(dialog, "UPDATE", 314162, contact="<sip:alice@198.51.100.9>")
    dialog.response_sent(update, answer(update, 200, tag=dialog.id.local_tag))
    assert str(dialog.remote_target) == "sip:alice@198.51.100.9"
    assert dialog.state is DialogState.CONFIRMED


def test_uas_early_dialog_confirmed_or_ended_by_the_final_response():
    request = invite()
    confirmed = Dialog.from_uas(request, answer(request, 180))
    confirmed.response_sent(request, answer(request, 183))
    assert confirmed.state is DialogState.EARLY
    confirmed.response_sent(request, answer(request, 200))
    assert confirmed.state is DialogState.CONFIRMED
    rejected = Dialog.from_uas(request, answer(request, 180))
    rejected.response_sent(request, answer(request, 486))
    assert rejected.state is DialogState.TERMINATED


def test_uac_target_refresh_from_the_2xx_to_a_reinvite():
    request = invite()
    dialog = Dialog.from_uac(request, answer(request, 200))
    reinvite = dialog.create_request("INVITE")
    reinvite.headers.add("Via", "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKre")
    dialog.receive_response(reinvite, answer(reinvite, 491, contact="<sip:bob@192.0.2.77>"))
    assert str(dialog.remote_target) == "sip:bob@192.0.2.4"
    dialog.receive_response(reinvite, answer(reinvite, 200, contact="<sip:bob@192.0.2.77>"))
    assert str(dialog.remote_target) == "sip:bob@192.0.2.77"
    info = dialog.create_request("INFO")
    info.headers.add("Via", "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKin")
    dialog.receive_response(info, answer(info, 200, contact="<sip:bob@192.0.2.78>"))
    assert str(dialog.remote_target) == "sip:bob@192.0.2.77"


# -- forking -------------------------------------------------------------------------------


def test_forked_invite_two_early_dialogs_and_two_2xx():
    layer = DialogLayer(rng=random.Random(5))
    request = invite(record_route=[])
    dialogs = layer.create_dialog_set(request)
    assert dialogs.receive_response(answer(request, 100)) is None
    assert dialogs.receive_response(answer(request, 180, tag=None)) is None
    a = dialogs.receive_response(answer(request, 180, tag="a", contact="<sip:a@early>"))
    b = dialogs.receive_response(answer(request, 183, tag="b", contact="<sip:b@early>"))
    assert a.state is b.state is DialogState.EARLY and a is not b and len(layer) == 2
    assert dialogs.receive_response(answer(request, 180, tag="a")) is a
    ok_a = answer(request, 200, tag="a", contact="<sip:a@final>", record_route=["<sip:p;lr>"])
    assert dialogs.receive_response(ok_a) is a
    assert a.state is DialogState.CONFIRMED and dialogs.primary is a
    assert str(a.remote_target) == "sip:a@final"
    assert [str(r.uri) for r in a.route_set] == ["sip:p;lr"]  # recomputed from the 2xx
    assert dialogs.receive_response(ok_a) is a  # a retransmission changes nothing
    c = dialogs.receive_response(answer(request, 200, tag="c", contact="<sip:c@final>"))
    assert c.state is DialogState.CONFIRMED and dialogs.primary is a and c is not a
    assert layer.get(c.id) is c
    ack, bye = c.create_ack(314159), c.create_request("BYE")  # what the TU sends to fork c
    assert ack.to_header.tag == "c" and ack.cseq == (314159, "ACK")
    assert bye.to_header.tag == "c" and bye.cseq == (314160, "BYE")
    assert str(bye.request_uri) == "sip:c@final"
    assert [d.id.remote_tag for d in dialogs.terminate_early()] == ["b"]
    assert b.state is DialogState.TERMINATED and layer.get(b.id) is None
    assert len(layer) == 2


def test_non_2xx_final_ends_every_early_dialog():
    layer = DialogLayer()
    request = invite()
    dialogs = layer.create_dialog_set(request)
    early = [dialogs.receive_response(answer(request, 180, tag=t)) for t in ("x", "y")]
    assert dialogs.receive_response(answer(request, 486, tag="x")) is None
    assert all(d.state is DialogState.TERMINATED for d in early) and len(layer) == 0
    assert dialogs.primary is None


def test_a_dialog_set_without_layer():
    request = invite()
    dialogs = DialogSet(request, secure_transport=False)
    dialog = dialogs.receive_response(answer(request, 200))
    assert dialogs.dialogs == {"a6c85cf": dialog} and dialogs.primary is dialog


# -- the dialog layer -----------------------------------------------------------------------


def test_dialog_layer_matches_in_dialog_requests():
    layer = DialogLayer(rng=random.Random(9))
    request = invite()
    dialog = layer.create_uas_dialog(request, answer(request, 200))
    assert 1 <= dialog.create_request("BYE").cseq.number < 2**31
    assert layer.get(dialog.id) is dialog
    outside = layer.receive_request(invite())
    assert outside.dialog is None and outside.code is None and not outside.in_dialog

    def peer(method, cseq, to_tag=dialog.id.local_tag):
        headers = [
            ("Via", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx"),
            ("From", "<sip:alice@atlanta.example.com>;tag=1928301774"),
            ("To", f"<sip:bob@biloxi.example.com>;tag={to_tag}"),
            ("Call-ID", "a84b4c76e66710"),
            ("CSeq", f"{cseq} {method}"),
        ]
        return wire(SIPRequest(method, "sip:bob@192.0.2.4", headers))

    match = layer.receive_request(peer("INFO", 314160))
    assert match.dialog is dialog and match.code is None and match.in_dialog
    assert layer.receive_request(peer("INFO", 5)).code == 500
    assert layer.receive_request(peer("ACK", 314159)).dialog is dialog
    unknown = layer.receive_request(peer("BYE", 314161, to_tag="nope"))
    assert unknown.dialog is None and unknown.code == 481 and unknown.in_dialog
    stray_ack = layer.receive_request(peer("ACK", 1, to_tag="nope"))
    assert stray_ack.dialog is None and stray_ack.code is None
    assert layer.receive_request(peer("CANCEL", 314161)).dialog is None
    dialog.terminate()
    assert layer.receive_request(peer("BYE", 314162)).code == 481
    layer.remove(dialog)
    assert len(layer) == 0 and layer.get(dialog.id) is None
    layer.remove(dialog)


def test_dialog_layer_refuses_two_dialogs_with_one_id():
    layer = DialogLayer()
    request = invite()
    layer.create_uas_dialog(request, answer(request, 200))
    with pytest.raises(DialogError, match="another dialog"):
        layer.create_uas_dialog(request, answer(request, 200))


# -- RFC 3262 ----------------------------------------------------------------------------------


def reliable(request, rseq, cseq=None):
    response = answer(request, 183)
    response.headers.set("RSeq", str(rseq))
    response.headers.set("Require", "100rel")
    if cseq is not None:
        response.headers.set("CSeq", f"{cseq} INVITE")
    return wire(response)


def test_reliable_provisional_responses_in_order():
    request = invite()
    dialog = Dialog.from_uac(request, answer(request, 180))
    assert dialog.receive_reliable_provisional(reliable(request, 7)) is True
    assert dialog.receive_reliable_provisional(reliable(request, 7)) is False  # again
    assert dialog.receive_reliable_provisional(reliable(request, 9)) is False  # a gap
    assert dialog.receive_reliable_provisional(reliable(request, 8)) is True
    assert dialog.receive_reliable_provisional(reliable(request, 1, cseq=9)) is True  # new space
    prack = dialog.create_prack(reliable(request, 8))
    assert prack.method == "PRACK" and prack.headers["RAck"] == "8 314159 INVITE"
    assert RAck.parse(prack.headers["RAck"]) == RAck(8, 314159, "INVITE")
    with pytest.raises(SIPParseError):
        RAck.parse("8 INVITE")
    with pytest.raises(SIPParseError):
        dialog.receive_reliable_provisional(reliable(request, "x"))
    with pytest.raises(SIPParseError):
        dialog.receive_reliable_provisional(reliable(request, 2**32))
    with pytest.raises(DialogError, match="RSeq"):
        dialog.create_prack(answer(request, 180))


def test_rseq_of_our_reliable_provisionals():
    request = invite()
    dialog = Dialog.from_uas(request, answer(request, 180), rng=random.Random(4))
    first = dialog.next_rseq()
    assert 1 <= first <= 2**31 - 1
    assert [dialog.next_rseq(), dialog.next_rseq()] == [first + 1, first + 2]


# -- a call through two transaction layers and two dialog layers ---------------------------


def test_call_setup_and_teardown_through_transactions_and_dialogs():
    alice, bob = TransactionLayer(rng=random.Random(1)), TransactionLayer(rng=random.Random(2))
    alice_dialogs, bob_dialogs = DialogLayer(), DialogLayer()
    alice_addr, bob_addr = ("192.0.2.1", 5060), ("192.0.2.4", 5060)

    def deliver(sender, receiver, source, now):
        for transmission in sender.messages_to_send():
            receiver.receive_message(parse_message(transmission.data), source, "udp", now)

    def via(layer):
        return ViaHeader("UDP", "192.0.2.1" if layer is alice else "192.0.2.4", 5060,
                         {"branch": layer.new_branch()})  # fmt: skip

    request = SIPRequest(
        "INVITE",
        "sip:bob@192.0.2.4",
        [
            ("Via", via(alice)),
            ("Max-Forwards", "70"),
            ("From", f"<sip:alice@atlanta.example.com>;tag={alice.new_tag()}"),
            ("To", "<sip:bob@biloxi.example.com>"),
            ("Call-ID", alice.new_call_id()),
            ("CSeq", "1 INVITE"),
            ("Contact", "<sip:alice@192.0.2.1>"),
        ],
    )
    client = alice.send_request(request, bob_addr, False, 0.0)
    dialog_set = alice_dialogs.create_dialog_set(request)
    deliver(alice, bob, alice_addr, 0.0)
    (event,) = [bob.next_event()]
    assert isinstance(event, RequestReceived)
    assert bob_dialogs.receive_request(event.request).in_dialog is False
    server, incoming = event.transaction, event.request
    tag = bob.new_tag()
    contact = [("Contact", "<sip:bob@192.0.2.4>")]
    ringing = incoming.make_response(180, to_tag=tag, headers=contact)
    bob_dialog = bob_dialogs.create_uas_dialog(incoming, ringing)
    bob.send_response(server, ringing, 0.1)
    ok = incoming.make_response(200, to_tag=tag, headers=contact)
    bob.send_response(server, ok, 0.2)
    bob_dialog.response_sent(incoming, ok)
    assert bob_dialog.state is DialogState.CONFIRMED
    deliver(bob, alice, bob_addr, 0.2)
    responses = [alice.next_event(), alice.next_event()]
    assert [type(e) for e in responses] == [ResponseReceived, ResponseReceived]
    for event in responses:
        alice_dialog = dialog_set.receive_response(event.response)
    assert alice_dialog.state is DialogState.CONFIRMED and dialog_set.primary is alice_dialog
    ack = alice_dialog.create_ack(request.cseq.number)
    ack.headers.add("Via", via(alice), first=True)
    alice.send_ack(client, ack, bob_addr)
    deliver(alice, bob, alice_addr, 0.3)
    event = bob.next_event()
    assert isinstance(event, AckReceived) and event.transaction is server
    assert bob_dialogs.receive_request(event.request).dialog is bob_dialog
    bye = bob_dialog.create_request("BYE")
    bye.headers.add("Via", via(bob), first=True)
    bye_client = bob.send_request(bye, alice_addr, False, 1.0)
    deliver(bob, alice, bob_addr, 1.0)
    event = alice.next_event()
    match = alice_dialogs.receive_request(event.request)
    assert match.dialog is alice_dialog and match.code is None
    alice.send_response(event.transaction, event.request.make_response(200), 1.1)
    alice_dialog.terminate()
    deliver(alice, bob, alice_addr, 1.1)
    event = bob.next_event()
    assert event.transaction is bye_client and event.response.code == 200
