"""Property tests: the SDP parser never fails but with SDPParseError, writing is faithful, and
negotiation results are well-formed whatever the peer sends."""

import string
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipsimple.core import SDPParseError
from sipsimple.core.sdp import (
    FrozenSDPAttribute,
    FrozenSDPBandwidthInfo,
    FrozenSDPConnection,
    FrozenSDPMediaStream,
    FrozenSDPSession,
    SDPMediaStream,
    SDPNegotiationError,
    SDPNegotiator,
    SDPSession,
    answer_direction,
    answer_media,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "sdp"
SAMPLES = [path.read_text() for path in sorted(DATA.glob("*.sdp"))]
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SDP_ALPHABET = "vosicbtamkzreupxyV=:/ -*.0123456789INP46RTAVSudio\r\n\t\x0b\x85\xe9"


def check_round_trip(text: str | bytes) -> None:
    try:
        parsed = SDPSession.parse(text)
    except SDPParseError:
        return
    written = str(parsed)
    assert written.endswith("\r\n") and "\n" not in written.replace("\r\n", "")
    again = SDPSession.parse(written)
    assert again == parsed
    assert str(again) == written
    assert FrozenSDPSession.parse(text) == parsed


def check_media_round_trip(text: str) -> None:
    try:
        parsed = SDPMediaStream.parse(text)
    except SDPParseError:
        return
    assert SDPMediaStream.parse(str(parsed)) == parsed


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A documented or RFC example with random edits: the inputs a fuzzer finds bugs with."""
    text = draw(st.sampled_from(SAMPLES))
    for _ in range(draw(st.integers(1, 6))):
        lines = text.split("\n")
        operation = draw(st.sampled_from(["insert", "delete", "replace", "dup", "swap", "drop"]))
        position = draw(st.integers(0, max(len(text) - 1, 0)))
        if operation == "insert":
            text = text[:position] + draw(st.text(SDP_ALPHABET, max_size=8)) + text[position:]
        elif operation == "delete":
            text = text[:position] + text[position + draw(st.integers(1, 10)) :]
        elif operation == "replace":
            text = text[:position] + draw(st.characters()) + text[position + 1 :]
        else:
            i = draw(st.integers(0, len(lines) - 1))
            j = draw(st.integers(0, len(lines) - 1))
            if operation == "dup":
                lines.insert(j, lines[i])
            elif operation == "swap":
                lines[i], lines[j] = lines[j], lines[i]
            else:
                del lines[i]
            text = "\n".join(lines)
    return text


@PROPERTY
@given(st.text(SDP_ALPHABET, max_size=400) | st.text(max_size=200))
def test_random_text_parses_or_raises_sdp_parse_error(text):
    check_round_trip(text)
    check_media_round_trip(text)


@PROPERTY
@given(st.binary(max_size=300))
def test_random_bytes_parse_or_raise_sdp_parse_error(data):
    check_round_trip(data)


@PROPERTY
@given(mutated())
def test_mutated_examples_parse_or_raise_and_round_trip(text):
    check_round_trip(text)
    check_round_trip(text.replace("\n", "\r\n"))
    check_media_round_trip(text[text.find("m=") :] if "m=" in text else text)


# --- generated descriptions --------------------------------------------------------------------

token = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters=":"), min_size=1, max_size=8
).filter(lambda t: not any(ch.isspace() for ch in t))
free_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=20
).map(str.strip)
number = st.integers(0, 2**64)
connections = st.builds(FrozenSDPConnection, token, token, token)
attributes = st.lists(
    st.builds(FrozenSDPAttribute, free_text.filter(lambda n: ":" not in n), free_text), max_size=5
)
bandwidths = st.lists(st.builds(FrozenSDPBandwidthInfo, token, number), max_size=2)
# i= and c= would be read back into the empty field they fill; a, b, m are never extras.
extra_kinds = st.sampled_from([c for c in string.ascii_letters if c not in "abmic"])
extras = st.lists(st.tuples(extra_kinds, free_text), max_size=3)
medias = st.builds(
    FrozenSDPMediaStream,
    token,
    st.integers(0, 65535),
    token,
    st.integers(0, 4),
    st.lists(token, max_size=5),
    st.none() | free_text,
    st.none() | connections,
    attributes,
    bandwidths,
    extra_lines=extras,
)
sessions = st.builds(
    FrozenSDPSession,
    token,
    number,
    number,
    st.lists(token, min_size=1, max_size=3).map(" ".join),
    token,
    token,
    free_text,
    st.none() | free_text,
    st.none() | connections,
    number,
    number,
    attributes,
    bandwidths,
    st.lists(medias, max_size=3),
    extra_lines=extras.map(lambda lines: sorted(lines, key=lambda line: line[0] not in "uep")),
)


@PROPERTY
@given(sessions)
def test_written_sessions_parse_back_to_the_same_description(session):
    assert FrozenSDPSession.parse(str(session)) == session
    assert SDPSession.new(session) == session


@PROPERTY
@given(medias)
def test_written_media_sections_parse_back(media):
    assert FrozenSDPMediaStream.parse(str(media)) == media


# --- negotiation -------------------------------------------------------------------------------

CODECS = [
    ("PCMU", 8000, 1),
    ("PCMA", 8000, 1),
    ("G722", 8000, 1),
    ("opus", 48000, 2),
    ("speex", 16000, 1),
    ("speex", 8000, 1),
    ("telephone-event", 8000, 1),
    ("CN", 8000, 1),
]
STATIC = {("PCMU", 8000, 1): "0", ("PCMA", 8000, 1): "8", ("G722", 8000, 1): "9"}
DIRECTIONS = st.sampled_from(["sendrecv", "sendonly", "recvonly", "inactive"])


@st.composite
def rtp_lines(draw: st.DrawFn) -> FrozenSDPMediaStream:
    codecs = draw(st.lists(st.sampled_from(CODECS), unique=True, max_size=6))
    free = draw(st.permutations(range(96, 128)))
    formats, attributes = [], []
    for (name, rate, channels), pt in zip(codecs, free, strict=False):
        fmt = STATIC.get((name, rate, channels)) if draw(st.booleans()) else None
        fmt = fmt or str(pt)
        formats.append(fmt)
        suffix = f"/{channels}" if channels != 1 else ""
        if not fmt.isdigit() or int(fmt) >= 96 or draw(st.booleans()):
            attributes.append(FrozenSDPAttribute("rtpmap", f"{fmt} {name}/{rate}{suffix}"))
        if draw(st.booleans()):
            attributes.append(FrozenSDPAttribute("fmtp", f"{fmt} x={pt}"))
    attributes.append(FrozenSDPAttribute(draw(DIRECTIONS)))
    port = draw(st.sampled_from([0, 4000, 5000]))
    return FrozenSDPMediaStream("audio", port, "RTP/AVP", formats=formats, attributes=attributes)


@PROPERTY
@given(rtp_lines(), rtp_lines())
def test_answer_media_is_a_subset_of_the_offer_and_idempotent(offer, local):
    answer = answer_media(offer, local)
    assert answer_media(offer, answer) == answer
    assert set(answer.formats) <= set(offer.formats)
    if answer.port:
        assert answer.direction == answer_direction(offer.direction, local.direction)
        local_codecs = {local.rtpmap(fmt) for fmt in local.formats}
        for fmt in answer.formats:
            assert answer.rtpmap(fmt) == offer.rtpmap(fmt)
            assert answer.rtpmap(fmt) in local_codecs
        names = {answer.rtpmap(fmt).name.lower() for fmt in answer.formats}
        offered = {offer.rtpmap(fmt).name.lower() for fmt in offer.formats}
        shared = {local.rtpmap(fmt).name.lower() for fmt in local.formats}
        if names <= {"telephone-event", "cn"}:
            assert offered <= {"telephone-event", "cn"} or shared <= {"telephone-event", "cn"}
    SDPMediaStream.parse(str(answer))


@PROPERTY
@given(mutated(), mutated())
def test_negotiating_arbitrary_descriptions_fails_only_with_negotiation_errors(offer, answer):
    try:
        offer_sdp, answer_sdp = SDPSession.parse(offer), SDPSession.parse(answer)
    except SDPParseError:
        return
    for local_offer in (True, False):
        negotiator = SDPNegotiator()
        if local_offer:
            negotiator.set_local_offer(offer_sdp)
        else:
            negotiator.set_remote_offer(offer_sdp)
        try:
            if local_offer:
                negotiator.set_remote_answer(answer_sdp)
            else:
                negotiator.set_local_answer(answer_sdp)
            negotiator.negotiate()
        except SDPNegotiationError:
            assert negotiator.state == "null"
            continue
        assert negotiator.state == "done"
        assert len(negotiator.active_local.media) == len(offer_sdp.media)
        assert FrozenSDPSession.parse(str(negotiator.active_local)) == negotiator.active_local
