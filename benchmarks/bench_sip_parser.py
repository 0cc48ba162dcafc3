"""SIP message parser benchmark: sipsimple.core against the pure-Python sipmessage package.

Run: ``PYTHONPATH=src python benchmarks/bench_sip_parser.py [--rounds N]``

On a fixed corpus (INVITE with SDP, 180, 200 with SDP, ACK, BYE, REGISTER, 401 with a
challenge, NOTIFY with a PIDF body) it measures messages per second for

- parse: bytes to message object;
- parse + txn: parse, then read what a transaction and dialog layer reads on every
  message: top Via branch and sent-by, From and To tags, Call-ID, CSeq number and
  method, Max-Forwards, and the URI of the first Contact and Route when present;
- serialize: message object to bytes.

Both libraries run in the same process, interleaved round by round; each figure is the
best round, timed in CPU time of this process (the machine is shared, wall time is not
what one core can do). Prints a table with the ratios.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import sipmessage

from sipsimple.core import parse_message

SDP_OFFER = (
    b"v=0\r\n"
    b"o=alice 2890844526 2890844526 IN IP4 192.0.2.101\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.101\r\n"
    b"t=0 0\r\n"
    b"m=audio 49172 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=sendrecv\r\n"
)
SDP_ANSWER = SDP_OFFER.replace(b"alice", b"bob").replace(b"192.0.2.101", b"192.0.2.201")
PIDF = (
    b'<?xml version="1.0" encoding="UTF-8"?>\r\n'
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:bob@example.com">\r\n'
    b'  <tuple id="t8372">\r\n'
    b"    <status><basic>open</basic></status>\r\n"
    b'    <contact priority="0.8">sip:bob@192.0.2.201</contact>\r\n'
    b"  </tuple>\r\n"
    b"</presence>\r\n"
)


def _message(start: str, headers: list[str], body: bytes = b"") -> bytes:
    lines = [start, *headers, f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(lines).encode() + body


_DIALOG = [
    "Via: SIP/2.0/UDP 192.0.2.101:5060;branch=z9hG4bK74bf9;rport",
    "Max-Forwards: 70",
    'From: "Alice" <sip:alice@example.com>;tag=9fxced76sl',
    "To: <sip:bob@example.com>",
    "Call-ID: 3848276298220188511@192.0.2.101",
]
_RESPONSE = [
    "Via: SIP/2.0/UDP 192.0.2.101:5060;branch=z9hG4bK74bf9;rport=5060;received=192.0.2.101",
    'From: "Alice" <sip:alice@example.com>;tag=9fxced76sl',
    "To: <sip:bob@example.com>;tag=8321234356",
    "Call-ID: 3848276298220188511@192.0.2.101",
]

CORPUS: dict[str, bytes] = {
    "INVITE+SDP": _message(
        "INVITE sip:bob@example.com SIP/2.0",
        [
            *_DIALOG,
            "CSeq: 1 INVITE",
            "Contact: <sip:alice@192.0.2.101:5060;transport=udp>",
            "Route: <sip:proxy.example.com;lr>",
            "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, NOTIFY, REFER",
            "Supported: replaces, timer",
            "User-Agent: sipsimple bench",
            "Content-Type: application/sdp",
        ],
        SDP_OFFER,
    ),
    "180": _message(
        "SIP/2.0 180 Ringing",
        [*_RESPONSE, "CSeq: 1 INVITE", "Contact: <sip:bob@192.0.2.201:5060>"],
    ),
    "200+SDP": _message(
        "SIP/2.0 200 OK",
        [
            *_RESPONSE,
            "CSeq: 1 INVITE",
            "Contact: <sip:bob@192.0.2.201:5060>",
            "Record-Route: <sip:proxy.example.com;lr>",
            "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS",
            "Supported: replaces",
            "Content-Type: application/sdp",
        ],
        SDP_ANSWER,
    ),
    "ACK": _message(
        "ACK sip:bob@192.0.2.201:5060 SIP/2.0",
        [
            "Via: SIP/2.0/UDP 192.0.2.101:5060;branch=z9hG4bK74bfa;rport",
            "Max-Forwards: 70",
            'From: "Alice" <sip:alice@example.com>;tag=9fxced76sl',
            "To: <sip:bob@example.com>;tag=8321234356",
            "Call-ID: 3848276298220188511@192.0.2.101",
            "CSeq: 1 ACK",
            "Route: <sip:proxy.example.com;lr>",
        ],
    ),
    "BYE": _message(
        "BYE sip:bob@192.0.2.201:5060 SIP/2.0",
        [
            "Via: SIP/2.0/UDP 192.0.2.101:5060;branch=z9hG4bK74bfb;rport",
            "Max-Forwards: 70",
            'From: "Alice" <sip:alice@example.com>;tag=9fxced76sl',
            "To: <sip:bob@example.com>;tag=8321234356",
            "Call-ID: 3848276298220188511@192.0.2.101",
            "CSeq: 2 BYE",
            "Route: <sip:proxy.example.com;lr>",
            "User-Agent: sipsimple bench",
        ],
    ),
    "REGISTER": _message(
        "REGISTER sip:example.com SIP/2.0",
        [
            "Via: SIP/2.0/TCP 192.0.2.101:5060;branch=z9hG4bKnashds7;rport",
            "Max-Forwards: 70",
            "From: <sip:alice@example.com>;tag=a73kszlfl",
            "To: <sip:alice@example.com>",
            "Call-ID: 1j9FpLxk3uxtm8tn@192.0.2.101",
            "CSeq: 1 REGISTER",
            "Contact: <sip:alice@192.0.2.101:5060;transport=tcp>"
            ';+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";reg-id=1;expires=3600',
            "Expires: 3600",
            "Supported: path, outbound, gruu",
            "User-Agent: sipsimple bench",
        ],
    ),
    "401": _message(
        "SIP/2.0 401 Unauthorized",
        [
            "Via: SIP/2.0/TCP 192.0.2.101:5060;branch=z9hG4bKnashds7"
            ";rport=5060;received=192.0.2.101",
            "From: <sip:alice@example.com>;tag=a73kszlfl",
            "To: <sip:alice@example.com>;tag=1410948204",
            "Call-ID: 1j9FpLxk3uxtm8tn@192.0.2.101",
            "CSeq: 1 REGISTER",
            'WWW-Authenticate: Digest realm="example.com", qop="auth",'
            ' nonce="ea9c8e88df84f1cec4341ae6cbe5a359", opaque="", stale=FALSE, algorithm=MD5',
            "Server: Kamailio",
        ],
    ),
    "NOTIFY+PIDF": _message(
        "NOTIFY sip:alice@192.0.2.101:5060;transport=tcp SIP/2.0",
        [
            "Via: SIP/2.0/TCP 192.0.2.50:5060;branch=z9hG4bK.notify1",
            "Max-Forwards: 70",
            "From: <sip:bob@example.com>;tag=ffd2",
            "To: <sip:alice@example.com>;tag=xfg9",
            "Call-ID: 2010128439@192.0.2.101",
            "CSeq: 8775 NOTIFY",
            "Contact: <sip:pres.example.com:5060;transport=tcp>",
            "Event: presence",
            "Subscription-State: active;expires=599",
            "Content-Type: application/pidf+xml",
        ],
        PIDF,
    ),
}


def ours_txn(data: bytes) -> tuple[object, ...]:
    message = parse_message(data)
    via, cseq = message.top_via, message.cseq
    contact, route = message.contact, message.route
    return (
        via.branch,
        via.host,
        via.port,
        message.from_header.tag,  # type: ignore[union-attr]
        message.to_header.tag,  # type: ignore[union-attr]
        message.call_id,
        cseq.number,  # type: ignore[union-attr]
        cseq.method,  # type: ignore[union-attr]
        message.max_forwards,
        contact[0].uri if contact else None,
        route[0].uri if route else None,
    )


def theirs_txn(data: bytes) -> tuple[object, ...]:
    message = sipmessage.Message.parse(data)
    via, cseq = message.via[0], message.cseq
    contact, route = message.contact, message.route
    return (
        via.parameters.get("branch"),
        via.host,
        via.port,
        message.from_address.parameters.get("tag"),
        message.to_address.parameters.get("tag"),
        message.call_id,
        cseq.sequence,
        cseq.method,
        message.max_forwards,
        contact[0].uri if contact else None,
        route[0].uri if route else None,
    )


def _round(func: Callable[[bytes], object], messages: list[bytes], repeat: int) -> float:
    start = time.process_time()
    for _ in range(repeat):
        for data in messages:
            func(data)
    return time.process_time() - start


def _serialize_round(objects: list[object], repeat: int) -> float:
    start = time.process_time()
    for _ in range(repeat):
        for message in objects:
            bytes(message)  # type: ignore[call-overload]
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rounds", type=int, default=15, help="interleaved rounds (best one counts)"
    )
    parser.add_argument("--repeat", type=int, default=300, help="passes over the corpus per round")
    args = parser.parse_args()

    messages = list(CORPUS.values())
    for data in messages:  # both must accept the whole corpus, and agree on what it says
        ours, theirs = parse_message(data), sipmessage.Message.parse(data)
        assert ours.call_id == theirs.call_id and ours.cseq.number == theirs.cseq.sequence  # type: ignore[union-attr]
        ours_txn(data)
        theirs_txn(data)
    ours_objects = [parse_message(data) for data in messages]
    theirs_objects = [sipmessage.Message.parse(data) for data in messages]

    cases: dict[str, tuple[Callable[[int], float], Callable[[int], float]]] = {
        "parse": (
            lambda n: _round(parse_message, messages, n),
            lambda n: _round(sipmessage.Message.parse, messages, n),
        ),
        "parse + txn headers": (
            lambda n: _round(ours_txn, messages, n),
            lambda n: _round(theirs_txn, messages, n),
        ),
        "serialize": (
            lambda n: _serialize_round(ours_objects, n),  # type: ignore[arg-type]
            lambda n: _serialize_round(theirs_objects, n),  # type: ignore[arg-type]
        ),
    }
    invite = [CORPUS["INVITE+SDP"]]
    cases["INVITE: parse + txn headers"] = (
        lambda n: _round(ours_txn, invite, n * len(messages)),
        lambda n: _round(theirs_txn, invite, n * len(messages)),
    )

    print(
        f"corpus: {', '.join(CORPUS)} ({len(messages)} messages, {sum(map(len, messages))} bytes)"
    )
    print(f"{args.rounds} interleaved rounds of {args.repeat} passes; best round, CPU time\n")
    print(f"{'case':30} {'sipsimple msg/s':>16} {'sipmessage msg/s':>17} {'ratio':>7}")
    count = args.repeat * len(messages)
    for name, (ours, theirs) in cases.items():
        best_ours = best_theirs = float("inf")
        for _ in range(args.rounds):
            best_ours = min(best_ours, ours(args.repeat))
            best_theirs = min(best_theirs, theirs(args.repeat))
        rate_ours, rate_theirs = count / best_ours, count / best_theirs
        print(f"{name:30} {rate_ours:16,.0f} {rate_theirs:17,.0f} {rate_ours / rate_theirs:6.2f}x")


if __name__ == "__main__":
    main()
