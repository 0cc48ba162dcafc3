"""Property tests of the SIP parser: round trips, robustness on garbage, framing splits."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipsimple.core import SIPParseError, SIPRequest, SIPResponse, parse_message
from sipsimple.core.sip.framer import KeepAlivePing, KeepAlivePong, SIPStreamFramer
from sipsimple.core.sip.headers import (
    ContactHeader,
    CSeq,
    FromHeader,
    ToHeader,
    ViaHeader,
)
from sipsimple.core.sip.uri import SIPURI

DATA = Path(__file__).parent.parent / "data" / "sip"
CORPUS = [
    path.read_bytes()
    for path in sorted((DATA / "4475").glob("*.dat")) + sorted((DATA / "5118").glob("*.dat"))
]
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
tokens = st.text(TOKEN_CHARS, min_size=1, max_size=12)
labels = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=8)
hosts = st.one_of(
    st.lists(labels, min_size=1, max_size=3).map(".".join),
    st.ip_addresses().map(str),
)
# any text a URI component or display name may carry (no CR/LF): escaped when written
texts = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=12
)
uris = st.builds(
    SIPURI,
    host=hosts,
    user=st.none() | texts.filter(bool),
    port=st.none() | st.integers(1, 65535),
    secure=st.booleans(),
    parameters=st.dictionaries(tokens, st.none() | texts, max_size=3),
    headers=st.dictionaries(tokens, texts, max_size=2),
)
params = st.dictionaries(tokens, st.none() | tokens, max_size=3)


@st.composite
def requests(draw: st.DrawFn) -> SIPRequest:
    method = draw(tokens)
    vias = draw(
        st.lists(
            st.builds(
                ViaHeader,
                st.sampled_from(["UDP", "TCP", "TLS"]),
                hosts,
                st.none() | st.integers(1, 65535),
                params,
            ),
            min_size=1,
            max_size=3,
        )
    )
    headers: list[tuple[str, object]] = [("Via", via) for via in vias]
    headers += [
        ("From", FromHeader(draw(uris), draw(st.none() | texts), {"tag": draw(tokens)})),
        ("To", ToHeader(draw(uris), draw(st.none() | texts), draw(params))),
        ("Call-ID", draw(tokens) + "@" + draw(tokens)),
        ("CSeq", CSeq(draw(st.integers(0, 2**32 - 1)), method)),
        ("Max-Forwards", draw(st.integers(0, 255))),
    ]
    headers += [
        ("Contact", ContactHeader(uri, name))
        for uri, name in draw(st.lists(st.tuples(uris, st.none() | texts), max_size=2))
    ]
    extra = st.tuples(
        st.text(TOKEN_CHARS, min_size=1, max_size=8).map("X-".__add__),
        st.text(
            st.characters(
                min_codepoint=32, blacklist_categories=("Cs",), blacklist_characters="\r\n\x7f"
            ),
            max_size=20,
        ),
    )
    headers += draw(st.lists(extra, max_size=3))
    uri = draw(uris)
    uri.headers = {}
    return SIPRequest(method, uri, headers, draw(st.binary(max_size=40)))


def _rebuilt(message: SIPRequest | SIPResponse) -> bytes:
    """bytes() of a copy that shares nothing cached with ``message``."""
    headers = message.headers.copy()
    if isinstance(message, SIPRequest):
        copy: SIPRequest | SIPResponse = SIPRequest(
            message.method, message.request_uri, headers, message.body, message.version
        )
    else:
        copy = SIPResponse(message.code, message.reason, headers, message.body, message.version)
    return bytes(copy)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_serialize_then_parse_gives_the_same_message(request: SIPRequest) -> None:
    data = bytes(request)
    parsed = parse_message(data)
    assert parsed == request
    assert bytes(parsed) == data == _rebuilt(parsed)  # kept bytes: what serializing gives
    assert parse_message(bytes(parsed)) == parsed
    assert parsed.from_header == FromHeader.new(request.from_header)  # type: ignore[arg-type]
    assert [c.uri for c in parsed.contact] == [c.uri for c in request.contact]


def _parses(data: bytes) -> bool:
    try:
        parse_message(data)
    except SIPParseError:
        return False
    return True


VALID = [data for data in CORPUS if _parses(data)]


@FAST
@given(st.sampled_from(VALID))
def test_valid_corpus_round_trips(data: bytes) -> None:
    message = parse_message(data)
    assert parse_message(bytes(message)) == message
    assert bytes(message) == _rebuilt(message)


def _exercise(message: SIPRequest | SIPResponse) -> None:
    """Touch everything a user may touch; only SIPParseError may come out."""
    for name in (
        "via", "from_header", "to_header", "call_id", "cseq", "max_forwards", "contact", "route",
        "record_route", "content_type", "content_length", "expires", "min_expires", "allow",
        "supported", "require", "proxy_require", "unsupported",
    ):  # fmt: skip
        try:
            value = getattr(message, name)
            for item in value if isinstance(value, list) else [value]:
                for attr in ("uri", "tag", "branch", "rport", "q", "expires", "parameters", "body"):
                    getattr(item, attr, None)
        except SIPParseError:
            pass
    message.header_dict()
    bytes(message)


mutations = st.lists(
    st.tuples(
        st.sampled_from(["flip", "insert", "delete", "dup"]),
        st.integers(0, 10**6),
        st.binary(min_size=1, max_size=4),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=120, deadline=None)
@given(st.sampled_from(CORPUS), mutations)
def test_mutated_messages_raise_only_parse_errors(
    data: bytes, edits: list[tuple[str, int, bytes]]
) -> None:
    buffer = bytearray(data)
    for kind, position, chunk in edits:
        at = position % (len(buffer) + 1)
        if kind == "flip" and buffer:
            buffer[at % len(buffer)] ^= chunk[0] or 1
        elif kind == "insert":
            buffer[at:at] = chunk
        elif kind == "delete":
            del buffer[at : at + len(chunk)]
        else:
            buffer[at:at] = buffer[at : at + 8 * len(chunk)]
    try:
        message = parse_message(bytes(buffer))
    except SIPParseError:
        return
    _exercise(message)


@settings(max_examples=120, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_parse_errors(data: bytes) -> None:
    try:
        message = parse_message(data)
    except SIPParseError:
        return
    _exercise(message)


@settings(max_examples=120, deadline=None)
@given(st.lists(st.text(max_size=30), max_size=8))
def test_random_header_lines_raise_only_parse_errors(lines: list[str]) -> None:
    data = "\r\n".join(["OPTIONS sip:a@b SIP/2.0", *lines, "", ""]).encode("utf-8", "surrogatepass")
    try:
        message = parse_message(data)
    except SIPParseError:
        return
    _exercise(message)


@FAST
@given(
    st.lists(st.sampled_from(VALID), min_size=1, max_size=4),
    st.lists(st.integers(1, 400), max_size=30),
    st.booleans(),
)
def test_framer_gives_the_same_messages_however_the_stream_is_split(
    messages: list[bytes], cuts: list[int], keepalives: bool
) -> None:
    parsed = [parse_message(m) for m in messages]
    stream = b"".join((b"\r\n\r\n" if keepalives else b"") + bytes(m) for m in parsed)
    framer = SIPStreamFramer()
    out = []
    position = 0
    for size in [*cuts, len(stream)]:
        framer.receive_data(stream[position : position + size])
        position += size
        while (event := framer.next_event()) is not None:
            out.append(event)
        if position >= len(stream):
            break
    got = [e for e in out if isinstance(e, SIPRequest | SIPResponse)]
    assert got == parsed
    # A ping cut between its two CRLFs is seen as two pongs (a lone CRLF is answered at
    # once): the framer documents it; every keep-alive is still seen.
    pings = sum(isinstance(e, KeepAlivePing) for e in out)
    pongs = sum(isinstance(e, KeepAlivePong) for e in out)
    assert pongs % 2 == 0 and pings + pongs // 2 == (len(parsed) if keepalives else 0)
