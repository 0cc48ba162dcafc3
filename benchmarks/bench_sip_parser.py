"""SIP message parser benchmark: sipsimple.core against the pure-Python sipmessage package.

Run: ``PYTHONPATH=src python benchmarks/bench_sip_parser.py [--rounds N] [--dialogs N]``

The corpus is the traffic of one call and its neighbours: INVITE with SDP, 180, 200
with SDP, ACK, BYE, REGISTER, 401 with a challenge, NOTIFY with a PIDF body. Each
"dialog" is that corpus with its own Call-IDs, tags and branches, and every round
parses dialogs never seen before: the same bytes are never parsed twice, so a parser
that remembers what it parsed (sipsimple shares the immutable values of header text it
has already seen, as SIP repeats them: responses copy the request's Via, From, To,
Call-ID and CSeq) gains only what real traffic would give it. Cases:

- parse: bytes to message object;
- parse + txn: parse, then read what a transaction and dialog layer reads on every
  message: top Via branch and sent-by, From and To tags, Call-ID, CSeq number and
  method, Max-Forwards, and the URI of the first Contact and Route when present;
- the same for messages that share nothing (every message has its own identifiers);
- INVITEs alone (each a new call), parse + txn;
- serialize, parsed: bytes() of a message just parsed and not changed (what a proxy or a
  retransmission sends: sipsimple gives back the bytes it parsed when the message is
  in canonical form, as the corpus is);
- serialize, built: bytes() of a message just built from its start line and (name, text
  value) header pairs (what a UA sends: everything is written out).

The serialize rows use fresh objects every round (made outside the timing), each
serialized once.

Both libraries parse the same bytes in the same process, interleaved round by round;
each figure is the best round, timed in CPU time of this process (the machine is
shared: wall time is not what one core can do). Prints a table with the ratios.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import sipmessage

from sipsimple.core import SIPRequest, SIPResponse, parse_message

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
    "Via: SIP/2.0/UDP 192.0.2.101:5060;branch=z9hG4bK{b1};rport",
    "Max-Forwards: 70",
    'From: "Alice" <sip:alice@example.com>;tag={f1}',
    "To: <sip:bob@example.com>",
    "Call-ID: {c1}@192.0.2.101",
]
_RESPONSE = [
    "Via: SIP/2.0/UDP 192.0.2.101:5060;branch=z9hG4bK{b1};rport=5060;received=192.0.2.101",
    'From: "Alice" <sip:alice@example.com>;tag={f1}',
    "To: <sip:bob@example.com>;tag={t1}",
    "Call-ID: {c1}@192.0.2.101",
]

TEMPLATES: dict[str, tuple[str, list[str], bytes]] = {
    "INVITE+SDP": (
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
    "180": (
        "SIP/2.0 180 Ringing",
        [*_RESPONSE, "CSeq: 1 INVITE", "Contact: <sip:bob@192.0.2.201:5060>"],
        b"",
    ),
    "200+SDP": (
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
    "ACK": (
        "ACK sip:bob@192.0.2.201:5060 SIP/2.0",
        [
            "Via: SIP/2.0/UDP 192.0.2.101:5060;branch=z9hG4bK{b2};rport",
            "Max-Forwards: 70",
            'From: "Alice" <sip:alice@example.com>;tag={f1}',
            "To: <sip:bob@example.com>;tag={t1}",
            "Call-ID: {c1}@192.0.2.101",
            "CSeq: 1 ACK",
            "Route: <sip:proxy.example.com;lr>",
        ],
        b"",
    ),
    "BYE": (
        "BYE sip:bob@192.0.2.201:5060 SIP/2.0",
        [
            "Via: SIP/2.0/UDP 192.0.2.101:5060;branch=z9hG4bK{b3};rport",
            "Max-Forwards: 70",
            'From: "Alice" <sip:alice@example.com>;tag={f1}',
            "To: <sip:bob@example.com>;tag={t1}",
            "Call-ID: {c1}@192.0.2.101",
            "CSeq: 2 BYE",
            "Route: <sip:proxy.example.com;lr>",
            "User-Agent: sipsimple bench",
        ],
        b"",
    ),
    "REGISTER": (
        "REGISTER sip:example.com SIP/2.0",
        [
            "Via: SIP/2.0/TCP 192.0.2.101:5060;branch=z9hG4bK{b4};rport",
            "Max-Forwards: 70",
            "From: <sip:alice@example.com>;tag={f2}",
            "To: <sip:alice@example.com>",
            "Call-ID: {c2}@192.0.2.101",
            "CSeq: 1 REGISTER",
            "Contact: <sip:alice@192.0.2.101:5060;transport=tcp>"
            ';+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";reg-id=1;expires=3600',
            "Expires: 3600",
            "Supported: path, outbound, gruu",
            "User-Agent: sipsimple bench",
        ],
        b"",
    ),
    "401": (
        "SIP/2.0 401 Unauthorized",
        [
            "Via: SIP/2.0/TCP 192.0.2.101:5060;branch=z9hG4bK{b4};rport=5060;received=192.0.2.101",
            "From: <sip:alice@example.com>;tag={f2}",
            "To: <sip:alice@example.com>;tag={t2}",
            "Call-ID: {c2}@192.0.2.101",
            "CSeq: 1 REGISTER",
            'WWW-Authenticate: Digest realm="example.com", qop="auth",'
            ' nonce="{c2}ea9c8e88df84f1ce", opaque="", stale=FALSE, algorithm=MD5',
            "Server: Kamailio",
        ],
        b"",
    ),
    "NOTIFY+PIDF": (
        "NOTIFY sip:alice@192.0.2.101:5060;transport=tcp SIP/2.0",
        [
            "Via: SIP/2.0/TCP 192.0.2.50:5060;branch=z9hG4bK{b5}",
            "Max-Forwards: 70",
            "From: <sip:bob@example.com>;tag={f3}",
            "To: <sip:alice@example.com>;tag={t3}",
            "Call-ID: {c3}@192.0.2.101",
            "CSeq: 8775 NOTIFY",
            "Contact: <sip:pres.example.com:5060;transport=tcp>",
            "Event: presence",
            "Subscription-State: active;expires=599",
            "Content-Type: application/pidf+xml",
        ],
        PIDF,
    ),
}
_KEYS = ("b1", "b2", "b3", "b4", "b5", "f1", "f2", "f3", "t1", "t2", "t3", "c1", "c2", "c3")


def _ids(n: int) -> dict[str, str]:
    return {key: f"{key}{n:x}x{(n * 2654435761) % 2**32:08x}" for key in _KEYS}


def dialog(n: int) -> list[bytes]:
    """The corpus with the identifiers of dialog ``n`` (shared by its messages)."""
    ids = _ids(n)
    return [
        _message(start, [h.format(**ids) for h in headers], body)
        for start, headers, body in TEMPLATES.values()
    ]


def unrelated(n: int) -> list[bytes]:
    """The corpus where every message has identifiers of its own."""
    return [dialog(n * 8 + i)[i] for i in range(len(TEMPLATES))]


CORPUS: dict[str, bytes] = dict(zip(TEMPLATES, dialog(0), strict=True))


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


def _round(func: Callable[[bytes], object], messages: list[bytes]) -> float:
    start = time.process_time()
    for data in messages:
        func(data)
    return time.process_time() - start


def _serialize_round(objects: list[object]) -> float:
    start = time.process_time()
    for message in objects:
        bytes(message)  # type: ignore[call-overload]
    return time.process_time() - start


def _parts(data: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    start, *lines = head.decode().split("\r\n")
    return (
        start,
        [(name, value) for name, _, value in (line.partition(": ") for line in lines)],
        body,
    )


def build_ours(data: bytes) -> SIPRequest | SIPResponse:
    """Our message built from the parts of ``data`` (Content-Length comes from the body)."""
    start, headers, body = _parts(data)
    headers = [(name, value) for name, value in headers if name != "Content-Length"]
    first, second, third = start.split(" ", 2)
    if first == "SIP/2.0":
        return SIPResponse(int(second), third, headers, body)
    return SIPRequest(first, second, headers, body)


def build_theirs(data: bytes) -> sipmessage.Request | sipmessage.Response:
    """sipmessage's message built from the parts of ``data``."""
    start, headers, body = _parts(data)
    first, second, third = start.split(" ", 2)
    message: sipmessage.Request | sipmessage.Response
    if first == "SIP/2.0":
        message = sipmessage.Response(int(second), third, body)
    else:
        message = sipmessage.Request(first, sipmessage.URI.parse(second), body)
    for name, value in headers:
        message.headers.add(name, value)
    return message


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rounds", type=int, default=30, help="interleaved rounds (best one counts)"
    )
    parser.add_argument(
        "--dialogs", type=int, default=25, help="dialogs (8 messages each) per round"
    )
    args = parser.parse_args()

    for data in CORPUS.values():  # both must accept the corpus and agree on what it says
        ours, theirs = ours_txn(data), theirs_txn(data)
        assert (ours[0], ours[5], ours[6]) == (theirs[0], theirs[5], theirs[6]), (ours, theirs)
        # and write the same bytes, parsed or built
        assert bytes(parse_message(data)) == bytes(sipmessage.Message.parse(data)) == data
        assert bytes(build_ours(data)) == bytes(build_theirs(data)) == data
    counter = iter(range(1, 10**9))

    def fresh(kind: str) -> list[bytes]:
        n = args.dialogs
        if kind == "dialogs":
            return [data for _ in range(n) for data in dialog(next(counter))]
        if kind == "unrelated":
            return [data for _ in range(n) for data in unrelated(next(counter))]
        return [dialog(next(counter))[0] for _ in range(n * len(TEMPLATES))]

    cases: list[tuple[str, str, Callable[[bytes], object], Callable[[bytes], object]]] = [
        ("parse", "dialogs", parse_message, sipmessage.Message.parse),
        ("parse + txn headers", "dialogs", ours_txn, theirs_txn),
        ("parse + txn, nothing shared", "unrelated", ours_txn, theirs_txn),
        ("INVITE (new call): parse + txn", "invites", ours_txn, theirs_txn),
    ]
    print(f"corpus: {', '.join(CORPUS)}; {args.dialogs} fresh dialogs per round")
    print(f"{args.rounds} interleaved rounds; best round, CPU time\n")
    print(f"{'case':32} {'sipsimple msg/s':>16} {'sipmessage msg/s':>17} {'ratio':>7}")
    count = args.dialogs * len(TEMPLATES)
    for name, kind, ours, theirs in cases:
        best_ours = best_theirs = float("inf")
        for _ in range(args.rounds):
            messages = fresh(kind)
            best_ours = min(best_ours, _round(ours, messages))
            best_theirs = min(best_theirs, _round(theirs, messages))
        _report(name, count / best_ours, count / best_theirs)
    serialize_cases: list[tuple[str, Callable[[bytes], object], Callable[[bytes], object]]] = [
        ("serialize, parsed (unchanged)", parse_message, sipmessage.Message.parse),
        ("serialize, built", build_ours, build_theirs),
    ]
    for name, make_ours, make_theirs in serialize_cases:
        best_ours = best_theirs = float("inf")
        for _ in range(args.rounds):
            messages = fresh("dialogs")
            best_ours = min(best_ours, _serialize_round([make_ours(data) for data in messages]))
            best_theirs = min(
                best_theirs, _serialize_round([make_theirs(data) for data in messages])
            )
        _report(name, count / best_ours, count / best_theirs)


def _report(name: str, ours: float, theirs: float) -> None:
    print(f"{name:32} {ours:16,.0f} {theirs:17,.0f} {ours / theirs:6.2f}x")


if __name__ == "__main__":
    main()
