"""RFC 3264 offer/answer: the negotiator's states and every answering rule."""

from pathlib import Path

import pytest

from sipsimple.core import SIPCoreError
from sipsimple.core.sdp import (
    FrozenSDPSession,
    SDPAttribute,
    SDPConnection,
    SDPMediaStream,
    SDPNegotiationError,
    SDPNegotiator,
    SDPNegotiatorStateError,
    SDPSession,
    answer_direction,
    answer_media,
    effective_direction,
    reject_media,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "sdp"


def read(name: str) -> SDPSession:
    return SDPSession.parse((DATA / name).read_text())


def sdp(*media: str, origin: str = "- 100 100 IN IP4 192.0.2.1", session: str = "") -> SDPSession:
    """A session around the given media sections (each "m=..." plus its lines, LF-separated)."""
    head = f"v=0\no={origin}\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\n{session}"
    return SDPSession.parse(head + "".join(m if m.endswith("\n") else m + "\n" for m in media))


def audio(port: int, formats: str, *attributes: str, transport: str = "RTP/AVP") -> str:
    lines = [f"m=audio {port} {transport} {formats}", *(f"a={a}" for a in attributes)]
    return "\n".join(lines) + "\n"


def summary(session: FrozenSDPSession) -> list[tuple[str, int, list[str], str]]:
    return [
        (m.media, m.port, list(m.formats), effective_direction(session, i))
        for i, m in enumerate(session.media)
    ]


def exchange(offer: SDPSession, answer: SDPSession) -> SDPNegotiator:
    """Answer ``offer`` with ``answer`` as the answerer would."""
    negotiator = SDPNegotiator.create_with_remote_offer(offer)
    negotiator.set_local_answer(answer)
    negotiator.negotiate()
    return negotiator


# --- RFC 3264 section 10 ------------------------------------------------------------------------


def test_rfc3264_10_1_as_the_answerer_then_the_offerer_of_a_change():
    bob = exchange(read("rfc3264_10_1_offer.sdp"), read("rfc3264_10_1_answer.sdp"))
    assert bob.state == "done"
    assert bob.active_remote == read("rfc3264_10_1_offer.sdp")
    assert summary(bob.active_local) == [
        ("audio", 49920, ["0"], "sendrecv"),
        ("video", 0, ["31"], "inactive"),
        ("video", 53000, ["32"], "sendrecv"),
    ]
    assert (bob.active_local.user, bob.active_local.version) == ("bob", 2890844730)

    offer = bob.set_local_offer(read("rfc3264_10_1_reoffer.sdp"))
    assert bob.state == "local_offer" and bob.proposed_local == offer
    assert (offer.id, offer.version) == (2890844730, 2890844731)
    bob.set_remote_answer(read("rfc3264_10_1_reanswer.sdp"))
    assert bob.state == "waiting_negotiation"
    bob.negotiate()
    assert summary(bob.active_local) == [
        ("audio", 65422, ["0"], "sendrecv"),
        ("video", 0, ["31"], "inactive"),
        ("video", 53000, ["32"], "sendrecv"),
        ("audio", 51434, ["110"], "recvonly"),
    ]
    assert bob.active_remote == read("rfc3264_10_1_reanswer.sdp")
    assert bob.proposed_local is None and bob.proposed_remote is None


def test_rfc3264_10_1_as_the_offerer_then_the_answerer_of_a_change():
    alice = SDPNegotiator.create_with_local_offer(read("rfc3264_10_1_offer.sdp"))
    alice.set_remote_answer(read("rfc3264_10_1_answer.sdp"))
    alice.negotiate()
    assert summary(alice.active_local) == [
        ("audio", 49170, ["0"], "sendrecv"),
        ("video", 0, ["31"], "inactive"),
        ("video", 53000, ["32"], "sendrecv"),
    ]
    alice.set_remote_offer(read("rfc3264_10_1_reoffer.sdp"))
    # Alice's capabilities, built afresh by her streams with a new o= line and a sendrecv wish.
    capabilities = sdp(
        audio(49170, "0", "rtpmap:0 PCMU/8000"),
        "m=video 0 RTP/AVP 31",
        "m=video 53000 RTP/AVP 32\na=rtpmap:32 MPV/90000",
        audio(53122, "110", "rtpmap:110 telephone-events/8000"),
        origin="alice 1 1 IN IP4 host.anywhere.com",
    )
    alice.set_local_answer(capabilities)
    alice.negotiate()
    answer = alice.active_local
    expected = read("rfc3264_10_1_reanswer.sdp")
    assert (answer.user, answer.id, answer.version) == ("alice", 2890844526, 2890844527)
    assert summary(answer) == summary(FrozenSDPSession.new(expected))
    assert answer.media[3].direction == "sendonly"


def test_rfc3264_10_2_one_of_n_codec_selection():
    alice = SDPNegotiator.create_with_local_offer(read("rfc3264_10_2_offer.sdp"))
    bob = SDPNegotiator.create_with_remote_offer(alice.proposed_local)
    bob_capabilities = sdp(
        audio(54344, "0 4", "rtpmap:0 PCMU/8000", "rtpmap:4 G723/8000"),
        origin="bob 2890844730 2890844731 IN IP4 host.example.com",
    )
    bob.set_local_answer(bob_capabilities)
    bob.negotiate()
    assert summary(bob.active_local) == summary(
        FrozenSDPSession.new(read("rfc3264_10_2_answer.sdp"))
    )
    alice.set_remote_answer(bob.active_local)
    alice.negotiate()
    # The offerer's view narrows to what the answer kept.
    assert summary(alice.active_local) == [("audio", 62986, ["0", "4"], "inactive")]
    assert "rtpmap" in alice.active_local.media[0].attributes
    assert alice.active_local.media[0].attributes.getall("rtpmap") == ["0 PCMU/8000", "4 G723/8000"]

    offer = alice.set_local_offer(read("rfc3264_10_2_reoffer.sdp"))
    assert offer.version == 2890844527
    bob.set_remote_offer(offer)
    bob.set_local_answer(bob_capabilities)
    bob.negotiate()
    reanswer = bob.active_local
    assert reanswer.version == 2890844732  # as in the RFC: one more than Bob's last answer
    assert summary(reanswer) == summary(FrozenSDPSession.new(read("rfc3264_10_2_reanswer.sdp")))
    alice.set_remote_answer(reanswer)
    alice.negotiate()
    assert summary(alice.active_local) == [("audio", 62986, ["4"], "sendrecv")]


# --- payload types ----------------------------------------------------------------------------


def test_static_payload_types_match_by_number_in_the_answerers_order():
    offer = sdp(audio(4000, "0 8 9 18"))
    local = sdp(audio(5000, "9 8 3", "rtpmap:9 G722/8000", "rtpmap:8 PCMA/8000"))
    answer = exchange(offer, local).active_local.media[0]
    assert answer.formats == ("9", "8")
    assert answer.attributes.getall("rtpmap") == ["9 G722/8000", "8 PCMA/8000"]


def test_dynamic_payload_types_match_by_name_rate_and_channels_and_keep_the_offers_numbers():
    offer = sdp(
        audio(
            4000,
            "96 97 98 99 100",
            "rtpmap:96 L16/8000/2",
            "rtpmap:97 SPEEX/16000",
            "rtpmap:98 iLBC/8000",
            "rtpmap:99 OPUS/48000/2",
            "rtpmap:100 telephone-event/8000",
            "fmtp:99 useinbandfec=1",
        )
    )
    local = sdp(
        audio(
            5000,
            "111 96 102 103 101",
            "rtpmap:111 opus/48000/2",
            "fmtp:111 minptime=10",
            "rtcp-fb:111 transport-cc",
            "rtcp-fb:* nack",
            "rtpmap:96 speex/8000",
            "rtpmap:102 speex/16000",
            "rtpmap:103 L16/8000",
            "rtpmap:101 telephone-event/8000",
            "fmtp:101 0-16",
            "ptime:20",
        )
    )
    answer = exchange(offer, local).active_local.media[0]
    # opus -> 99, speex/16000 -> 97, telephone-event -> 100; speex/8000 and mono L16 do not match
    assert answer.formats == ("99", "97", "100")
    assert [(a.name, a.value) for a in answer.attributes] == [
        ("rtpmap", "99 opus/48000/2"),
        ("fmtp", "99 minptime=10"),
        ("rtcp-fb", "99 transport-cc"),
        ("rtpmap", "97 speex/16000"),
        ("rtpmap", "100 telephone-event/8000"),
        ("fmtp", "100 0-16"),
        ("rtcp-fb", "* nack"),
        ("ptime", "20"),
        ("sendrecv", ""),
    ]


def test_the_same_number_is_preferred_when_the_offer_lists_a_codec_twice():
    offer = sdp(audio(4000, "0 96", "rtpmap:96 PCMU/8000"))
    local = sdp(audio(5000, "96", "rtpmap:96 PCMU/8000"))
    assert exchange(offer, local).active_local.media[0].formats == ("96",)
    local = sdp(audio(5000, "0"))
    assert exchange(offer, local).active_local.media[0].formats == ("0",)


def test_same_dynamic_number_for_a_different_codec_does_not_match():
    offer = sdp(audio(4000, "96 0", "rtpmap:96 iLBC/8000"))
    local = sdp(audio(5000, "96 0", "rtpmap:96 speex/8000"))
    assert exchange(offer, local).active_local.media[0].formats == ("0",)


def test_telephone_event_is_kept_only_when_both_sides_have_it():
    local = sdp(audio(5000, "0 101", "rtpmap:101 telephone-event/8000", "fmtp:101 0-15"))
    with_events = sdp(audio(4000, "0 8 120", "rtpmap:120 telephone-event/8000"))
    without_events = sdp(audio(4000, "0 8"))
    answer = exchange(with_events, local).active_local.media[0]
    assert answer.formats == ("0", "120") and answer.fmtp("120") == "0-15"
    answer = exchange(without_events, local).active_local.media[0]
    assert answer.formats == ("0",) and "fmtp" not in answer.attributes


def test_sharing_only_telephone_event_is_nothing_in_common():
    offer = sdp(audio(4000, "0 101", "rtpmap:101 telephone-event/8000"))
    local = sdp(audio(5000, "8 101", "rtpmap:101 telephone-event/8000"))
    negotiator = SDPNegotiator.create_with_remote_offer(offer)
    negotiator.set_local_answer(local)
    with pytest.raises(SDPNegotiationError, match=r"m-line 0 \(audio\): no codec in common"):
        negotiator.negotiate()
    assert negotiator.state == "null" and negotiator.active_local is None


def test_an_events_only_stream_is_accepted():
    offer = sdp(audio(4000, "0"), audio(4002, "110", "rtpmap:110 telephone-event/8000", "recvonly"))
    local = sdp(audio(5000, "0"), audio(5002, "0 101", "rtpmap:101 telephone-event/8000"))
    answer = exchange(offer, local).active_local
    assert summary(answer)[1] == ("audio", 5002, ["110"], "sendonly")


def test_offerer_matches_an_answer_that_renumbered_a_dynamic_type():
    negotiator = SDPNegotiator.create_with_local_offer(
        sdp(audio(4000, "96 0 101", "rtpmap:96 opus/48000/2", "rtpmap:101 telephone-event/8000"))
    )
    negotiator.set_remote_answer(
        sdp(audio(5000, "109 0", "rtpmap:109 OPUS/48000/2"), origin="- 7 7 IN IP4 192.0.2.7")
    )
    negotiator.negotiate()
    local = negotiator.active_local.media[0]
    assert local.formats == ("96", "0")
    assert local.attributes.getall("rtpmap") == ["96 opus/48000/2"]


def test_an_answer_without_a_common_codec_is_a_negotiation_error():
    negotiator = SDPNegotiator.create_with_local_offer(sdp(audio(4000, "0")))
    negotiator.set_remote_answer(sdp(audio(5000, "8")))
    with pytest.raises(SDPNegotiationError, match="no codec in common"):
        negotiator.negotiate()
    assert negotiator.state == "null"


# --- directions and hold ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offered", "local", "answered"),
    [
        ("sendrecv", "sendrecv", "sendrecv"),
        ("sendonly", "sendrecv", "recvonly"),
        ("recvonly", "sendrecv", "sendonly"),
        ("inactive", "sendrecv", "inactive"),
        ("sendrecv", "sendonly", "sendonly"),
        ("sendrecv", "recvonly", "recvonly"),
        ("sendonly", "sendonly", "inactive"),
        ("recvonly", "recvonly", "inactive"),
        ("sendrecv", "inactive", "inactive"),
    ],
)
def test_answer_direction(offered, local, answered):
    assert answer_direction(offered, local) == answered


def test_answer_direction_rejects_unknown_names():
    with pytest.raises(ValueError, match="direction must be one of"):
        answer_direction("hold")


def test_hold_and_resume_by_direction_attributes():
    caller = SDPNegotiator.create_with_local_offer(sdp(audio(4000, "0", "sendrecv")))
    callee = SDPNegotiator.create_with_remote_offer(caller.proposed_local)
    callee_caps = sdp(audio(5000, "0", "sendrecv"), origin="- 9 9 IN IP4 192.0.2.9")
    callee.set_local_answer(callee_caps)
    callee.negotiate()
    caller.set_remote_answer(callee.active_local)
    caller.negotiate()
    for held, answered in [
        ("sendonly", "recvonly"),
        ("inactive", "inactive"),
        ("sendrecv", "sendrecv"),
    ]:
        offer = caller.set_local_offer(sdp(audio(4000, "0", held)))
        callee.set_remote_offer(offer)
        callee.set_local_answer(callee_caps)
        callee.negotiate()
        assert callee.active_local.media[0].direction == answered
        caller.set_remote_answer(callee.active_local)
        caller.negotiate()
        assert caller.active_local.media[0].direction == held


def test_rfc2543_hold_with_a_null_connection_address():
    offer = sdp(audio(4000, "0", "sendrecv"))
    offer.connection = SDPConnection("0.0.0.0")
    assert effective_direction(offer, 0) == "sendonly"
    answer = exchange(offer, sdp(audio(5000, "0"))).active_local
    assert answer.media[0].direction == "recvonly"
    offer.media[0].connection = SDPConnection("192.0.2.1")  # media level wins over session level
    assert effective_direction(offer, 0) == "sendrecv"
    offer.media[0].connection = SDPConnection("0.0.0.0")
    offer.media[0].direction = "recvonly"
    assert effective_direction(offer, 0) == "inactive"


def test_session_level_direction_and_disabled_lines():
    offer = sdp(
        audio(4000, "0"), audio(0, "0"), audio(4004, "0", "sendrecv"), session="a=sendonly\n"
    )
    assert [effective_direction(offer, i) for i in range(3)] == ["sendonly", "inactive", "sendrecv"]
    answer = exchange(offer, sdp(audio(5000, "0"), audio(5002, "0"), audio(5004, "0"))).active_local
    assert summary(answer) == [
        ("audio", 5000, ["0"], "recvonly"),
        ("audio", 0, ["0"], "inactive"),
        ("audio", 5004, ["0"], "sendrecv"),
    ]


def test_a_session_level_direction_in_our_answer_is_honoured():
    local = sdp(audio(5000, "0"), session="a=sendonly\n")
    answer = exchange(sdp(audio(4000, "0")), local).active_local
    assert answer.media[0].direction == "sendonly"


def test_offerer_direction_follows_the_answer():
    negotiator = SDPNegotiator.create_with_local_offer(
        sdp(audio(4000, "0"), audio(4002, "0"), audio(4004, "0", "recvonly"))
    )
    answer = sdp(audio(5000, "0", "recvonly"), audio(5002, "0"), audio(5004, "0", "sendonly"))
    answer.media[1].connection = SDPConnection("0.0.0.0")
    negotiator.set_remote_answer(answer)
    negotiator.negotiate()
    assert [m.direction for m in negotiator.active_local.media] == [
        "sendonly",
        "recvonly",
        "recvonly",
    ]


# --- the shape of later offers ----------------------------------------------------------------


def established(offer: SDPSession, answer: SDPSession) -> tuple[SDPNegotiator, SDPNegotiator]:
    """An offerer and an answerer negotiator after one exchange."""
    offerer = SDPNegotiator.create_with_local_offer(offer)
    answerer = SDPNegotiator.create_with_remote_offer(offerer.proposed_local)
    answerer.set_local_answer(answer)
    answerer.negotiate()
    offerer.set_remote_answer(answerer.active_local)
    offerer.negotiate()
    return offerer, answerer


def test_rejected_streams_keep_their_position_and_new_ones_are_appended():
    video = "m=video 4010 RTP/AVP 31\n"
    offerer, answerer = established(
        sdp(audio(4000, "0"), video), sdp(audio(5000, "0"), "m=video 0 RTP/AVP 31\n")
    )
    assert [m.port for m in offerer.active_local.media] == [4000, 0]
    # The application re-offers with one more stream and the video slot still disabled.
    offer = offerer.set_local_offer(
        sdp(audio(4000, "0"), "m=video 0 RTP/AVP 31\n", "m=message 2855 TCP/TLS/MSRP *\n")
    )
    answerer.set_remote_offer(offer)
    answerer.set_local_answer(
        sdp(audio(5000, "0"), "m=video 0 RTP/AVP 31\n", "m=message 2856 TCP/TLS/MSRP *\n")
    )
    answerer.negotiate()
    assert [(m.media, m.port) for m in answerer.active_local.media] == [
        ("audio", 5000),
        ("video", 0),
        ("message", 2856),
    ]


def test_streams_missing_from_a_local_reoffer_stay_in_place_disabled():
    offerer, _ = established(
        sdp(audio(4000, "0"), "m=video 4010 RTP/AVP 31\n", audio(4020, "8")),
        sdp(audio(5000, "0"), "m=video 5010 RTP/AVP 31\n", audio(5020, "8")),
    )
    offer = offerer.set_local_offer(sdp(audio(4000, "0")))
    assert [(m.media, m.port, list(m.formats)) for m in offer.media] == [
        ("audio", 4000, ["0"]),
        ("video", 0, ["31"]),
        ("audio", 0, ["8"]),
    ]
    assert not offer.media[1].attributes and offer.media[1].connection is None


def test_a_remote_offer_that_drops_m_lines_is_refused():
    _, answerer = established(
        sdp(audio(4000, "0"), audio(4002, "0")), sdp(audio(5000, "0"), audio(5002, "0"))
    )
    with pytest.raises(SDPNegotiationError, match="m-lines may not be removed"):
        answerer.set_remote_offer(sdp(audio(4000, "0")))
    assert answerer.state == "done"


def test_versions_and_session_ids_over_a_dialog():
    offerer, answerer = established(
        sdp(audio(4000, "0"), origin="- 100 100 IN IP4 192.0.2.1"),
        sdp(audio(5000, "0"), origin="- 200 200 IN IP4 192.0.2.2"),
    )
    # Same content offered again (a session refresh): same version.
    same = offerer.set_local_offer(sdp(audio(4000, "0"), origin="- 555 1 IN IP4 192.0.2.1"))
    assert (same.id, same.version) == (100, 100)
    answerer.set_remote_offer(same)
    answerer.set_local_answer(sdp(audio(5000, "0"), origin="- 9 9 IN IP4 10.0.0.1"))
    answerer.negotiate()
    assert (answerer.active_local.id, answerer.active_local.version) == (200, 200)
    assert answerer.active_local.address == "192.0.2.2"
    offerer.set_remote_answer(answerer.active_local)
    offerer.negotiate()
    # A change: version + 1, the o= line otherwise unchanged even if the new SDP says otherwise.
    changed = offerer.set_local_offer(sdp(audio(4002, "0"), origin="alice 555 1 IN IP4 192.0.2.3"))
    assert (changed.user, changed.id, changed.version, changed.address) == (
        "-",
        100,
        101,
        "192.0.2.1",
    )
    # Rejected (488): the next different offer must not reuse 101.
    offerer.cancel_offer()
    assert offerer.state == "done" and offerer.active_local.version == 100
    again = offerer.set_local_offer(sdp(audio(4004, "0")))
    assert again.version == 102
    answerer.set_remote_offer(again)
    answerer.set_local_answer(sdp(audio(5002, "0")))
    answerer.negotiate()
    assert answerer.active_local.version == 201


# --- answering rules --------------------------------------------------------------------------


def test_nothing_acceptable_names_each_line_and_keeps_the_previous_state():
    _, answerer = established(sdp(audio(4000, "0")), sdp(audio(5000, "0")))
    before = (answerer.active_local, answerer.active_remote)
    answerer.set_remote_offer(sdp(audio(4000, "18"), "m=video 4010 RTP/AVP 31\n", audio(0, "0")))
    answerer.set_local_answer(sdp(audio(5000, "0 8"), "m=video 0 RTP/AVP 31\n"))
    with pytest.raises(SDPNegotiationError) as info:
        answerer.negotiate()
    message = str(info.value)
    assert "no acceptable media stream" in message
    assert "m-line 0 (audio): no codec in common with G729/8000" in message
    assert "m-line 1 (video): it was declined locally" in message
    assert "m-line 2" not in message  # the offer itself disabled it
    assert isinstance(info.value, SIPCoreError)
    assert answerer.state == "done" and (answerer.active_local, answerer.active_remote) == before


def test_a_local_answer_with_fewer_lines_rejects_the_rest():
    offer = sdp(audio(4000, "0"), "m=video 4010 RTP/AVP 31\n")
    answer = exchange(offer, sdp(audio(5000, "0"))).active_local
    assert [(m.media, m.port) for m in answer.media] == [("audio", 5000), ("video", 0)]
    negotiator = SDPNegotiator.create_with_remote_offer(offer)
    negotiator.set_local_answer(sdp(audio(1, "0"), audio(2, "0"), audio(3, "0")))
    with pytest.raises(SDPNegotiationError, match="answer has 3 m-lines but the offer only 2"):
        negotiator.negotiate()
    assert negotiator.state == "null"


def test_an_answer_with_another_m_line_count_is_refused():
    negotiator = SDPNegotiator.create_with_local_offer(sdp(audio(4000, "0"), audio(4002, "0")))
    negotiator.set_remote_answer(sdp(audio(5000, "0")))
    with pytest.raises(SDPNegotiationError, match="the answer has 1 m-lines but the offer had 2"):
        negotiator.negotiate()
    assert negotiator.state == "null"


def test_an_answer_with_another_media_type_is_refused():
    negotiator = SDPNegotiator.create_with_local_offer(sdp(audio(4000, "0")))
    negotiator.set_remote_answer(sdp("m=video 5000 RTP/AVP 0\n"))
    with pytest.raises(SDPNegotiationError, match="m-line 0: the answer has media 'video'"):
        negotiator.negotiate()


def test_a_rejected_answer_line_disables_ours():
    offerer, _ = established(
        sdp(audio(4000, "0"), audio(4002, "0", "ptime:20")), sdp(audio(5000, "0"), audio(0, "0"))
    )
    assert [m.port for m in offerer.active_local.media] == [4000, 0]
    assert not offerer.active_local.media[1].attributes


def test_msrp_lines_keep_local_formats_and_answer_the_direction():
    offer = sdp(
        "m=message 2855 TCP/TLS/MSRP *\na=path:msrps://192.0.2.1:2855/abc;tcp\na=sendonly\n"
        'a=file-selector:name:"x.pdf" type:application/pdf size:1\n'
    )
    local = sdp("m=message 2856 TCP/TLS/MSRP *\na=path:msrps://192.0.2.2:2856/def;tcp\n")
    answer = exchange(offer, local).active_local.media[0]
    assert answer.formats == ("*",)
    assert [(a.name, a.value) for a in answer.attributes] == [
        ("path", "msrps://192.0.2.2:2856/def;tcp"),
        ("recvonly", ""),
    ]


# --- the state machine ------------------------------------------------------------------------


def test_state_transitions_and_wrong_state_calls():
    negotiator = SDPNegotiator()
    assert negotiator.state == "null" and negotiator.active_local is None
    for call in (negotiator.negotiate, negotiator.cancel_offer):
        with pytest.raises(SDPNegotiatorStateError, match="in state 'null'"):
            call()
    with pytest.raises(SDPNegotiatorStateError):
        negotiator.set_local_answer(sdp(audio(1, "0")))
    negotiator.set_local_offer(sdp(audio(4000, "0")))
    assert negotiator.state == "local_offer"
    with pytest.raises(SDPNegotiatorStateError, match="cannot call set_remote_offer"):
        negotiator.set_remote_offer(sdp(audio(1, "0")))
    with pytest.raises(SDPNegotiatorStateError):
        negotiator.set_local_answer(sdp(audio(1, "0")))
    negotiator.cancel_offer()
    assert negotiator.state == "null" and negotiator.proposed_local is None
    negotiator.set_remote_offer(sdp(audio(4000, "0")))
    assert negotiator.state == "remote_offer" and negotiator.proposed_remote is not None
    with pytest.raises(SDPNegotiatorStateError):
        negotiator.set_remote_answer(sdp(audio(1, "0")))
    negotiator.set_local_answer(sdp(audio(5000, "0")))
    assert negotiator.state == "waiting_negotiation"
    negotiator.negotiate()
    assert negotiator.state == "done"
    assert "done" in repr(negotiator)


def test_cancelling_a_remote_reoffer_restores_the_previous_state():
    offerer, answerer = established(sdp(audio(4000, "0")), sdp(audio(5000, "0")))
    before = (answerer.active_local, answerer.active_remote)
    answerer.set_remote_offer(sdp(audio(4000, "0", "sendonly")))
    answerer.set_local_answer(sdp(audio(5000, "0")))
    answerer.cancel_offer()
    assert answerer.state == "done" and (answerer.active_local, answerer.active_remote) == before
    assert answerer.proposed_local is None and answerer.proposed_remote is None
    offerer.set_local_offer(sdp(audio(4000, "0", "inactive")))
    offerer.set_remote_answer(sdp(audio(5000, "0", "inactive")))
    offerer.cancel_offer()
    assert offerer.active_local.media[0].direction == "sendrecv"


def test_active_sessions_are_frozen():
    negotiator = exchange(sdp(audio(4000, "0")), sdp(audio(5000, "0")))
    assert isinstance(negotiator.active_local, FrozenSDPSession)
    assert isinstance(negotiator.active_remote, FrozenSDPSession)
    hash(negotiator.active_local)


# --- the answer helper for streams ------------------------------------------------------------


def test_answer_media_builds_a_mutable_line_from_capabilities():
    offer = SDPMediaStream.parse(
        "m=audio 4000 RTP/SAVP 0 8 101\na=rtpmap:101 telephone-event/8000\na=sendonly\n"
    )
    capabilities = SDPMediaStream(
        "audio",
        5000,
        "RTP/SAVP",
        formats=["9", "8", "100"],
        connection=SDPConnection("192.0.2.8"),
        attributes=[
            SDPAttribute("rtpmap", "100 telephone-event/8000"),
            SDPAttribute("crypto", "1 AES_CM_128_HMAC_SHA1_80 inline:abc"),
            SDPAttribute("sendrecv"),
        ],
    )
    answer = answer_media(offer, capabilities)
    assert isinstance(answer, SDPMediaStream)
    assert str(answer) == (
        "m=audio 5000 RTP/SAVP 8 101\r\nc=IN IP4 192.0.2.8\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:abc\r\na=recvonly\r\n"
    )
    assert answer_media(offer, answer) == answer  # answering with an answer changes nothing
    assert answer_media(offer, capabilities, "inactive").direction == "inactive"


def test_answer_media_keeps_the_offers_rtpmap_when_the_capabilities_have_none():
    offer = SDPMediaStream.parse("m=audio 4000 RTP/AVP 0\na=rtpmap:0 PCMU/8000\n")
    answer = answer_media(offer, SDPMediaStream("audio", 5000, "RTP/AVP", formats=["0"]))
    assert answer.attributes.getall("rtpmap") == ["0 PCMU/8000"]


def test_answer_media_rejections():
    offer = SDPMediaStream.parse("m=audio 4000 RTP/AVP 0 8\na=ptime:20\n")
    for local in (
        SDPMediaStream("audio", 0, "RTP/AVP", formats=["0"]),
        SDPMediaStream("video", 5000, "RTP/AVP", formats=["0"]),
        SDPMediaStream("audio", 5000, "RTP/AVP", formats=["9"]),
    ):
        answer = answer_media(offer, local)
        assert answer == reject_media(offer)
        assert str(answer) == "m=audio 0 RTP/AVP 0 8\r\n"
    disabled = SDPMediaStream.parse("m=audio 0 RTP/AVP 0\n")
    assert answer_media(disabled, SDPMediaStream("audio", 5000, "RTP/AVP", formats=["0"])).port == 0


def test_the_documented_audio_offer_against_typical_capabilities():
    offer = read("spec_audio_stream.sdp")
    local = SDPSession(
        "192.0.2.20",
        connection=SDPConnection("192.0.2.20"),
        media=[
            SDPMediaStream(
                "audio",
                50000,
                "RTP/AVP",
                formats=["9", "0", "8", "101"],
                attributes=[
                    SDPAttribute("rtpmap", "9 G722/8000"),
                    SDPAttribute("rtpmap", "0 PCMU/8000"),
                    SDPAttribute("rtpmap", "8 PCMA/8000"),
                    SDPAttribute("rtpmap", "101 telephone-event/8000"),
                    SDPAttribute("fmtp", "101 0-15"),
                ],
            )
        ],
    )
    answer = exchange(offer, local).active_local.media[0]
    assert answer.formats == ("9", "0", "8", "101")
    assert answer.direction == "sendrecv"
    assert str(answer.codec_list[0]) == "G722/8000"


def test_an_rtpmap_without_an_encoding_is_answered_without_a_trailing_space():
    offer = SDPSession.parse(
        "v=0\r\no=bob 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
        "m=audio 49920 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    local = SDPSession.parse(
        "v=0\r\no=alice 2 2 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\n"
        "m=audio 49170 RTP/AVP 0\r\na=rtpmap:0\r\n"
    )
    negotiator = SDPNegotiator.create_with_remote_offer(offer)
    negotiator.set_local_answer(local)
    negotiator.negotiate()
    answer = negotiator.active_local
    assert answer.media[0].attributes.getall("rtpmap") == ["0"]
    assert FrozenSDPSession.parse(str(answer)) == answer
