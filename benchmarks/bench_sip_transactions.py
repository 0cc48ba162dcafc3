"""SIP transaction layer benchmark: whole transaction lifecycles against parse_message.

Run: ``PYTHONPATH=src python benchmarks/bench_sip_transactions.py [--rounds N] [--count N]``

Everything runs in memory (sans-IO); figures are the best of interleaved rounds, in CPU
time of this process. Two cases, each beside its peer, the cost of parse_message alone
on the very bytes the case parses, measured in the same rounds:

- non-INVITE server: a MESSAGE (with ``rport``) is parsed and received (a server
  transaction is made, the Via stamped), the TU answers 200 (make_response,
  send_response), the response bytes are taken, and timer J ends the transaction;
- INVITE pair: a client layer sends an INVITE, a server layer receives it and answers
  200, the client receives the 200, builds the ACK with a Dialog and sends it, the
  server receives the ACK; timers L and M end both transactions. Three messages are
  parsed per call (INVITE, 200, ACK).

A third figure separates the layer from the message work a TU does anyway: the same
steps with every message parsed, built and serialized but no transaction layer
("messages only"). "layer" is the difference, the cost of the transactions
themselves (matching, state, timers, events, Via stamping); "case/parse" compares the
whole lifecycle with parsing alone.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from sipsimple.core.sip.dialog import Dialog
from sipsimple.core.sip.headers import ViaHeader
from sipsimple.core.sip.message import SIPRequest, parse_message
from sipsimple.core.sip.transaction import (
    AckReceived,
    RequestReceived,
    ResponseReceived,
    TransactionLayer,
)

UAC = ("192.0.2.101", 5060)
UAS = ("192.0.2.201", 5060)
SDP = (
    b"v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.101\r\ns=-\r\n"
    b"c=IN IP4 192.0.2.101\r\nt=0 0\r\nm=audio 49172 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
)


def make_request(method: str, branch: str, call_id: str, body: bytes = b"") -> SIPRequest:
    headers = [
        ("Via", ViaHeader("UDP", UAC[0], UAC[1], {"branch": branch, "rport": None})),
        ("Max-Forwards", "70"),
        ("From", f'"Alice" <sip:alice@example.com>;tag={call_id[:8]}'),
        ("To", "<sip:bob@example.com>"),
        ("Call-ID", call_id),
        ("CSeq", f"1 {method}"),
        ("Contact", f"<sip:alice@{UAC[0]}:{UAC[1]}>"),
        ("User-Agent", "sipsimple-bench"),
    ]
    if body:
        headers.append(("Content-Type", "application/sdp" if method == "INVITE" else "text/plain"))
    return SIPRequest(method, "sip:bob@example.com", headers, body)


# -- non-INVITE server transactions ---------------------------------------------------------


def message_corpus(count: int) -> list[bytes]:
    rng = random.Random(1)
    return [
        bytes(make_request("MESSAGE", f"z9hG4bK{rng.getrandbits(64):016x}", f"{i:08x}m", b"hi"))
        for i in range(count)
    ]


def server_round(corpus: list[bytes]) -> float:
    layer = TransactionLayer(rng=random.Random(2), max_transactions=len(corpus) + 1)
    start = time.process_time()
    now = 0.0
    for data in corpus:
        layer.receive_message(parse_message(data), UAC, "udp", now)
        event = layer.next_event()
        assert type(event) is RequestReceived
        response = event.request.make_response(200, to_tag="b0b")
        layer.send_response(event.transaction, response, now)
        layer.messages_to_send()
        now += 1e-5
    layer.handle_timer(now + 100.0)
    terminated = 0
    while layer.next_event() is not None:
        terminated += 1
    elapsed = time.process_time() - start
    assert terminated == len(corpus) and len(layer) == 0
    return elapsed


# -- INVITE client + server pairs -------------------------------------------------------------


def invite_requests(count: int) -> list[SIPRequest]:
    rng = random.Random(3)
    return [
        make_request("INVITE", f"z9hG4bK{rng.getrandbits(64):016x}", f"{i:08x}i", SDP)
        for i in range(count)
    ]


def pair_round(invites: list[SIPRequest], record: list[bytes] | None = None) -> float:
    count = len(invites)
    uac = TransactionLayer(rng=random.Random(4), max_transactions=count + 1)
    uas = TransactionLayer(rng=random.Random(5), max_transactions=count + 1)
    acks = [f"z9hG4bK{i:016x}a" for i in range(count)]
    contact = [("Contact", f"<sip:bob@{UAS[0]}:{UAS[1]}>")]
    start = time.process_time()
    now = 0.0
    for invite, ack_branch in zip(invites, acks, strict=True):
        client = uac.send_request(invite, UAS, False, now)
        (sent,) = uac.messages_to_send()
        if record is not None:
            record.append(sent.data)
        uas.receive_message(parse_message(sent.data), UAC, "udp", now)
        event = uas.next_event()
        assert type(event) is RequestReceived
        ok = event.request.make_response(200, to_tag="b0b", headers=contact, body=SDP)
        uas.send_response(event.transaction, ok, now)
        (sent,) = uas.messages_to_send()
        if record is not None:
            record.append(sent.data)
        uac.receive_message(parse_message(sent.data), UAS, "udp", now)
        event = uac.next_event()
        assert type(event) is ResponseReceived and event.response.code == 200
        ack = Dialog.from_uac(invite, event.response).create_ack(1)
        ack.headers.add("Via", ViaHeader("UDP", UAC[0], UAC[1], {"branch": ack_branch}), first=True)
        uac.send_ack(client, ack, UAS)
        (sent,) = uac.messages_to_send()
        if record is not None:
            record.append(sent.data)
        uas.receive_message(parse_message(sent.data), UAC, "udp", now)
        assert type(uas.next_event()) is AckReceived
        now += 1e-5
    uac.handle_timer(now + 100.0)
    uas.handle_timer(now + 100.0)
    ended = 0
    while uac.next_event() is not None:
        ended += 1
    while uas.next_event() is not None:
        ended += 1
    elapsed = time.process_time() - start
    assert ended == 2 * count and len(uac) == len(uas) == 0
    return elapsed


def server_messages_round(corpus: list[bytes]) -> float:
    """The non-INVITE case without the layer: parse, make the 200, serialize it; the
    messages are kept until the end of the round, as the transactions keep them."""
    kept = []
    start = time.process_time()
    for data in corpus:
        request = parse_message(data)
        response = request.make_response(200, to_tag="b0b")
        bytes(response)
        kept.append((request, response))
    kept.clear()
    return time.process_time() - start


def pair_messages_round(invites: list[SIPRequest]) -> float:
    """The INVITE case without the layers: every message built, serialized, parsed and
    kept until the end of the round."""
    contact = [("Contact", f"<sip:bob@{UAS[0]}:{UAS[1]}>")]
    kept = []
    start = time.process_time()
    for i, invite in enumerate(invites):
        request = parse_message(bytes(invite))
        ok = request.make_response(200, to_tag="b0b", headers=contact, body=SDP)
        response = parse_message(bytes(ok))
        ack = Dialog.from_uac(invite, response).create_ack(1)
        via = ViaHeader("UDP", UAC[0], UAC[1], {"branch": f"z9hG4bK{i:016x}a"})
        ack.headers.add("Via", via, first=True)
        kept.append((request, ok, response, ack, parse_message(bytes(ack))))
    kept.clear()
    return time.process_time() - start


def parse_round(corpus: list[bytes]) -> float:
    start = time.process_time()
    for data in corpus:
        parse_message(data)
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds (best counts)")
    parser.add_argument("--count", type=int, default=1000, help="transactions or calls per round")
    args = parser.parse_args()

    messages = message_corpus(args.count)
    invites = invite_requests(args.count)
    call_wire: list[bytes] = []
    pair_round(invites, call_wire)  # the INVITE, 200 and ACK bytes of every call

    Round = Callable[[], float]
    cases: dict[str, tuple[Round, Round, Round]] = {
        "non-INVITE server lifecycle": (
            lambda: server_round(messages),
            lambda: server_messages_round(messages),
            lambda: parse_round(messages),
        ),
        "INVITE client+server pair": (
            lambda: pair_round(invites),
            lambda: pair_messages_round(invites),
            lambda: parse_round(call_wire),
        ),
    }
    print(f"{args.rounds} interleaved rounds of {args.count}; best round, CPU time")
    print("(the INVITE pair parses 3 messages per call: INVITE, 200, ACK)\n")
    print(
        f"{'case':28} {'per second':>10} {'us each':>8} {'messages':>9} {'layer':>7} "
        f"{'parse':>7} {'case/parse':>10} {'layer/parse':>11}"
    )
    for name, runs in cases.items():
        best = [float("inf")] * 3
        for _ in range(args.rounds):
            for i, run in enumerate(runs):
                best[i] = min(best[i], run())
        whole, bare, parsing = (t / args.count * 1e6 for t in best)
        print(
            f"{name:28} {1e6 / whole:10,.0f} {whole:8.1f} {bare:9.1f} {whole - bare:7.1f} "
            f"{parsing:7.1f} {whole / parsing:9.2f}x {(whole - bare) / parsing:10.2f}x"
        )
    print("\nus each: the whole lifecycle; messages: the same steps without the layer;")
    print("layer: the difference; parse: parse_message alone on the same bytes.")


if __name__ == "__main__":
    main()
