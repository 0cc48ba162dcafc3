"""SRTP keyed by SDES: a=crypto parsing, the offer/answer negotiator and the libsrtp wrapper."""

from __future__ import annotations

import base64
import itertools
import re
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipsimple.core.sdp import SDPAttribute, SDPMediaStream, SDPSession
from sipsimple.media.srtp import (
    DEFAULT_SUITES,
    MAX_PROTECT_SIZE,
    SUITES,
    CryptoAttribute,
    KeyParameter,
    SDESNegotiationError,
    SDESNegotiator,
    SDESParseError,
    SDESStateError,
    SRTPAuthenticationError,
    SRTPError,
    SRTPReplayError,
    SRTPSession,
)

ALL_SUITES = list(SUITES)


def rtp_packet(sequence: int, payload: bytes = b"\x55" * 160, ssrc: int = 0x1234ABCD) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, sequence & 0xFFFF, sequence * 160, ssrc) + payload


def rtcp_packet(ssrc: int = 0x1234ABCD) -> bytes:
    # A receiver report with no report blocks, then an SDES CNAME chunk.
    report = struct.pack("!BBHI", 0x80, 201, 1, ssrc)
    cname = b"\x01\x05alice\x00\x00"
    sdes = struct.pack("!BBHI", 0x81, 202, (4 + len(cname)) // 4, ssrc) + cname
    return report + sdes


def key_pair(suite: str) -> tuple[bytes, bytes]:
    length = SUITES[suite].key_salt_length
    return bytes(range(length)), bytes(range(100, 100 + length))


def session_pair(suite: str) -> tuple[SRTPSession, SRTPSession]:
    alice_key, bob_key = key_pair(suite)
    return SRTPSession(suite, alice_key, bob_key), SRTPSession(suite, bob_key, alice_key)


def media(transport: str, *crypto: str) -> SDPMediaStream:
    attributes = [SDPAttribute("rtpmap", "0 PCMU/8000")]
    attributes += [SDPAttribute("crypto", value) for value in crypto]
    return SDPMediaStream("audio", 40000, transport, formats=["0"], attributes=attributes)


def counter_bytes():
    """Distinct, deterministic 'random' bytes so tests can tell keys apart."""
    counter = itertools.count(1)
    return lambda size: bytes([next(counter) % 256]) * size


# --- SRTPSession -------------------------------------------------------------------------


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_rtp_round_trip_both_ways(suite):
    alice, bob = session_pair(suite)
    for sequence in range(1, 20):
        packet = rtp_packet(sequence)
        protected = alice.protect(packet)
        assert protected != packet and len(protected) > len(packet)
        assert bob.unprotect(protected) == packet
        answer = rtp_packet(sequence, b"\xaa" * 1200, ssrc=0x0BADCAFE)
        assert alice.unprotect(bob.protect(answer)) == answer


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_rtcp_round_trip(suite):
    alice, bob = session_pair(suite)
    packet = rtcp_packet()
    protected = alice.protect_rtcp(packet)
    assert protected != packet
    assert bob.unprotect_rtcp(protected) == packet


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_tampered_packet_fails_authentication(suite):
    alice, bob = session_pair(suite)
    protected = bytearray(alice.protect(rtp_packet(7)))
    protected[20] ^= 0x01
    with pytest.raises(SRTPAuthenticationError):
        bob.unprotect(bytes(protected))


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_wrong_key_fails_authentication(suite):
    alice, _ = session_pair(suite)
    alice_key, _ = key_pair(suite)
    stranger = SRTPSession(suite, alice_key, bytes(len(alice_key)))
    with pytest.raises(SRTPAuthenticationError):
        stranger.unprotect(alice.protect(rtp_packet(1)))
    with pytest.raises(SRTPAuthenticationError):
        stranger.unprotect_rtcp(alice.protect_rtcp(rtcp_packet()))


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_replayed_packet_is_refused(suite):
    alice, bob = session_pair(suite)
    protected = alice.protect(rtp_packet(3))
    bob.unprotect(protected)
    with pytest.raises(SRTPReplayError):
        bob.unprotect(protected)
    protected_rtcp = alice.protect_rtcp(rtcp_packet())
    bob.unprotect_rtcp(protected_rtcp)
    with pytest.raises(SRTPReplayError):
        bob.unprotect_rtcp(protected_rtcp)


def test_packet_older_than_the_window_is_refused():
    alice, bob = session_pair("AES_CM_128_HMAC_SHA1_80")
    old = alice.protect(rtp_packet(1))
    for sequence in range(2, 200):
        bob.unprotect(alice.protect(rtp_packet(sequence)))
    with pytest.raises(SRTPReplayError):
        bob.unprotect(old)


def test_window_size_hint_widens_the_replay_window():
    local, remote = key_pair("AES_CM_128_HMAC_SHA1_80")
    sender = SRTPSession("AES_CM_128_HMAC_SHA1_80", remote, local)
    receiver = SRTPSession("AES_CM_128_HMAC_SHA1_80", local, remote, window_size=1024)
    late = sender.protect(rtp_packet(1))
    for sequence in range(2, 600):
        receiver.unprotect(sender.protect(rtp_packet(sequence)))
    assert receiver.unprotect(late) == rtp_packet(1)


def test_sending_the_same_packet_twice_is_allowed():
    alice, bob = session_pair("AES_CM_128_HMAC_SHA1_80")
    packet = rtp_packet(9)  # an RFC 4733 end-of-event packet is sent three times
    first, second = alice.protect(packet), alice.protect(packet)
    assert first == second
    assert bob.unprotect(first) == packet


def test_bytearray_and_memoryview_are_accepted():
    alice, bob = session_pair("AEAD_AES_128_GCM")
    packet = rtp_packet(4)
    protected = alice.protect(bytearray(packet))
    assert bob.unprotect(memoryview(protected)) == packet


def test_oversized_packets_raise_srtp_error():
    alice, bob = session_pair("AES_CM_128_HMAC_SHA1_80")
    alice.protect(rtp_packet(1, b"x" * (MAX_PROTECT_SIZE - 12)))
    with pytest.raises(SRTPError, match="too long"):
        alice.protect(rtp_packet(2, b"x" * 1500))
    with pytest.raises(SRTPError):
        bob.unprotect(b"\x80" * 4000)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=1600), st.sampled_from(ALL_SUITES))
def test_garbage_only_raises_srtp_error(data, suite):
    _, bob = session_pair(suite)
    for unprotect in (bob.unprotect, bob.unprotect_rtcp):
        try:
            unprotect(data)
        except SRTPError:
            pass


def test_session_checks_its_arguments():
    key = bytes(30)
    with pytest.raises(ValueError, match="crypto suite"):
        SRTPSession("F8_128_HMAC_SHA1_80", key, key)
    with pytest.raises(ValueError, match="remote_key must be 30 bytes"):
        SRTPSession("AES_CM_128_HMAC_SHA1_80", key, key[:20])
    with pytest.raises(ValueError, match="window_size"):
        SRTPSession("AES_CM_128_HMAC_SHA1_80", key, key, window_size=32)


# --- a=crypto ----------------------------------------------------------------------------

# The examples of RFC 4568 (sections 4, 5.1 and 9), as they appear after "a=crypto:".
RFC_4568_EXAMPLES = [
    "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4 "
    "FEC_ORDER=FEC_SRTP",
    "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4",
    "1 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|2^20|1:32",
    "2 F8_128_HMAC_SHA1_80 inline:MTIzNDU2Nzg5QUJDREUwMTIzNDU2Nzg5QUJjZGVm|2^20|1:4;"
    "inline:QUJjZGVmMTIzNDU2Nzg5QUJDREUwMTIzNDU2Nzg5|2^20|2:4 FEC_ORDER=FEC_SRTP",
]


@pytest.mark.parametrize("value", RFC_4568_EXAMPLES)
def test_rfc_4568_examples_parse_and_round_trip(value):
    attribute = CryptoAttribute.parse(value)
    assert str(attribute) == value
    assert attribute.key_parameters[0].lifetime == 1 << 20
    assert attribute.key_parameters[0].mki[0] == 1


def test_example_fields():
    two_keys = CryptoAttribute.parse(RFC_4568_EXAMPLES[3])
    assert (two_keys.tag, two_keys.suite) == (2, "F8_128_HMAC_SHA1_80")
    assert [key.mki for key in two_keys.key_parameters] == [(1, 4), (2, 4)]
    assert two_keys.key_salt == b"123456789ABCDE0123456789ABcdef"
    assert two_keys.session_parameters == ("FEC_ORDER=FEC_SRTP",)


def test_middleware_documentation_example_in_a_whole_sdp():
    sdp = SDPSession.parse(
        "v=0\r\no=- 3467525278 3467525278 IN IP4 192.168.1.6\r\ns=blink\r\n"
        "c=IN IP4 80.101.96.20\r\nt=0 0\r\nm=audio 55328 RTP/AVP 0 8\r\n"
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:esI6DbLY1+Aceu0JNswN9Z10DcFx5cZwqJcu91jb\r\n"
        "a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:SHuEMm1BYJqOF4udKl73EaCwnsI57pO86bYKsg70\r\n"
    )
    values = sdp.media[0].attributes.getall("crypto")
    parsed = [CryptoAttribute.parse(value) for value in values]
    assert [(a.tag, a.suite) for a in parsed] == [
        (1, "AES_CM_128_HMAC_SHA1_80"),
        (2, "AES_CM_128_HMAC_SHA1_32"),
    ]
    assert all(len(a.key_salt) == 30 and a.key_parameters[0].lifetime is None for a in parsed)


def test_gcm_keys_with_and_without_base64_padding():
    key = bytes(range(28))
    padded = base64.b64encode(key).decode()
    assert padded.endswith("=")
    for text in (padded, padded.rstrip("=")):
        attribute = CryptoAttribute.parse(f"3 AEAD_AES_128_GCM inline:{text}")
        assert attribute.key_salt == key
    assert str(CryptoAttribute.parse(f"3 AEAD_AES_128_GCM inline:{padded}")).endswith(padded)


def test_decimal_lifetime_and_lowercase_method():
    key = KeyParameter.parse("INLINE:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|1048576")
    assert key.lifetime == 1 << 20
    key = KeyParameter.parse("inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|1000")
    assert str(key).endswith("|1000")


@pytest.mark.parametrize(
    "value, message",
    [
        ("", "needs a tag"),
        ("1 AES_CM_128_HMAC_SHA1_80", "needs a tag"),
        ("x AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR", "tag"),
        ("1234567890 AES_CM_128_HMAC_SHA1_80 inline:AAAA", "tag"),
        ("1 AES-CM inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR", "suite"),
        ("1 AES_CM_128_HMAC_SHA1_80 PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR", "key method"),
        ("1 AES_CM_128_HMAC_SHA1_80 uri:http://example.com/key", "not supported"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:PS1u!CVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR", "base64"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVm", "30-byte"),
        ("1 AEAD_AES_256_GCM inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR", "44-byte"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^99", "range"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|0", "range"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|x", "lifetime"),
        (
            "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|1:4|2^20",
            "MKI",
        ),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|256:1", "fit"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|1:0", "fit"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|1|2|3", "more"),
    ],
)
def test_invalid_attributes(value, message):
    with pytest.raises(SDESParseError, match=message):
        CryptoAttribute.parse(value)


crypto_attributes = st.builds(
    CryptoAttribute,
    tag=st.integers(0, 999_999_999),
    suite=st.sampled_from(ALL_SUITES),
    key_parameters=st.tuples(
        st.builds(
            KeyParameter,
            st.binary(min_size=30, max_size=30),
            st.one_of(st.none(), st.integers(1, 1 << 48)),
            st.one_of(
                st.none(),
                st.integers(1, 4).flatmap(
                    lambda n: st.tuples(st.integers(0, (1 << (8 * n)) - 1), st.just(n))
                ),
            ),
        )
    ),
    session_parameters=st.lists(
        st.sampled_from(["WSH=128", "-x", "FEC_ORDER=FEC_SRTP"]), max_size=3
    ).map(tuple),
)


@settings(max_examples=150, deadline=None)
@given(crypto_attributes)
def test_written_attributes_parse_back(attribute):
    # Every suite here has a 30-byte key except the GCM ones, which then must be refused.
    suite_length = SUITES[attribute.suite].key_salt_length
    if suite_length == 30:
        assert CryptoAttribute.parse(str(attribute)) == attribute
    else:
        with pytest.raises(SDESParseError):
            CryptoAttribute.parse(str(attribute))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_arbitrary_text_only_raises_the_parse_error(text):
    try:
        CryptoAttribute.parse(text)
    except SDESParseError:
        pass


def test_keys_stay_out_of_reprs():
    attribute = CryptoAttribute.parse(RFC_4568_EXAMPLES[1])
    assert "WVNf" not in repr(attribute)
    parameters = SDESNegotiator().answer_offer(
        media("RTP/SAVP", RFC_4568_EXAMPLES[1].split("|")[0])
    )
    assert parameters is not None
    text = repr(parameters)
    assert "WVNf" not in text and repr(parameters.local_key) not in text


# --- SDESNegotiator ----------------------------------------------------------------------


def test_offer_has_one_fresh_line_per_suite_in_order():
    negotiator = SDESNegotiator()
    offer = negotiator.make_offer()
    assert offer.transport == "RTP/AVP"
    assert [(a.tag, a.suite) for a in offer.crypto] == list(enumerate(DEFAULT_SUITES, start=1))
    assert all(len(a.key_salt) == SUITES[a.suite].key_salt_length for a in offer.crypto)
    assert [a.name for a in offer.attributes()] == ["crypto"] * len(DEFAULT_SUITES)
    again = negotiator.make_offer()
    assert {a.key_salt for a in offer.crypto}.isdisjoint(a.key_salt for a in again.crypto)


@pytest.mark.parametrize(
    "policy, transport",
    [("opportunistic", "RTP/AVP"), ("sdes_optional", "RTP/AVP"), ("sdes_mandatory", "RTP/SAVP")],
)
def test_offer_transport_follows_the_policy(policy, transport):
    assert SDESNegotiator(policy).make_offer().transport == transport


@pytest.mark.parametrize("policy", ["opportunistic", "sdes_optional", "sdes_mandatory"])
@pytest.mark.parametrize("suite", ALL_SUITES)
def test_offer_answer_gives_sessions_that_talk(policy, suite):
    offerer = SDESNegotiator(policy, [suite, *[s for s in ALL_SUITES if s != suite]])
    answerer = SDESNegotiator("sdes_optional")
    offer = offerer.make_offer()
    answered = answerer.answer_offer(media(offer.transport, *map(str, offer.crypto)))
    assert answered is not None and answered.suite == suite and answered.tag == 1
    assert answered.remote_key == offer.crypto[0].key_salt
    assert answered.local_key != answered.remote_key
    accepted = offerer.accept_answer(media(offer.transport, str(answered.local_crypto)))
    assert accepted is not None
    assert (accepted.local_key, accepted.remote_key) == (answered.remote_key, answered.local_key)
    alice, bob = accepted.create_session(), answered.create_session()
    assert bob.unprotect(alice.protect(rtp_packet(1))) == rtp_packet(1)
    assert alice.unprotect_rtcp(bob.protect_rtcp(rtcp_packet())) == rtcp_packet()


def test_answerer_takes_the_first_line_it_supports():
    key30 = base64.b64encode(bytes(30)).decode()
    key44 = base64.b64encode(bytes(44)).decode()
    offer = media(
        "RTP/SAVP",
        f"5 AES_256_CM_HMAC_SHA1_80 inline:{key44}",
        f"6 AES_CM_128_HMAC_SHA1_32 inline:{key30}|2^20|1:4",
        f"7 AES_CM_128_HMAC_SHA1_80 inline:{key30} UNENCRYPTED_SRTP",
        f"8 AES_CM_128_HMAC_SHA1_80 inline:{key30} KDR=10",
        "9 AES_CM_128_HMAC_SHA1_80 inline:tooshort",
        f"10 AES_CM_128_HMAC_SHA1_32 inline:{key30} -ignored FEC_ORDER=SRTP_FEC WSH=256",
        f"11 AES_CM_128_HMAC_SHA1_80 inline:{key30}",
    )
    answered = SDESNegotiator("sdes_optional").answer_offer(offer)
    assert answered is not None
    assert (answered.tag, answered.suite, answered.window_size) == (
        10,
        "AES_CM_128_HMAC_SHA1_32",
        256,
    )
    assert answered.local_crypto.tag == 10 and answered.local_crypto.session_parameters == ()


def test_answerer_honours_its_own_suite_list():
    offer = SDESNegotiator().make_offer()
    answerer = SDESNegotiator(suites=["AES_CM_128_HMAC_SHA1_32"])
    answered = answerer.answer_offer(media(offer.transport, *map(str, offer.crypto)))
    assert answered is not None and answered.suite == "AES_CM_128_HMAC_SHA1_32"
    assert answered.tag == DEFAULT_SUITES.index("AES_CM_128_HMAC_SHA1_32") + 1


@pytest.mark.parametrize("policy", ["opportunistic", "sdes_optional"])
def test_optional_policies_answer_plain_rtp(policy):
    negotiator = SDESNegotiator(policy)
    assert negotiator.answer_offer(media("RTP/AVP")) is None
    only_unknown = media(
        "RTP/AVP", "1 F8_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR"
    )
    assert negotiator.answer_offer(only_unknown) is None


@pytest.mark.parametrize("policy", ["opportunistic", "sdes_optional", "sdes_mandatory"])
def test_savp_offer_without_usable_crypto_is_refused(policy):
    with pytest.raises(SDESNegotiationError, match="no a=crypto line") as info:
        SDESNegotiator(policy).answer_offer(media("RTP/SAVP"))
    assert info.value.code == 488
    unusable = media(
        "RTP/SAVP", "4 F8_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR", "x"
    )
    with pytest.raises(
        SDESNegotiationError, match="tag 4 F8_128_HMAC_SHA1_80: crypto suite not supported"
    ):
        SDESNegotiator(policy).answer_offer(unusable)


def test_mandatory_policy_refuses_plain_offers():
    with pytest.raises(SDESNegotiationError, match="SRTP is required"):
        SDESNegotiator("sdes_mandatory").answer_offer(media("RTP/AVP"))


def test_mandatory_policy_accepts_crypto_in_rtp_avp():
    offer = SDESNegotiator().make_offer()
    answered = SDESNegotiator("sdes_mandatory").answer_offer(
        media("RTP/AVPF", *map(str, offer.crypto))
    )
    assert answered is not None and answered.suite == DEFAULT_SUITES[0]


@pytest.mark.parametrize("transport", ["UDP/TLS/RTP/SAVPF", "TCP/MSRP", "udp"])
def test_profiles_sdes_cannot_key(transport):
    with pytest.raises(SDESNegotiationError, match=re.escape(transport)):
        SDESNegotiator().answer_offer(media(transport))


def test_plain_answer_to_an_optional_offer_means_plain_rtp():
    negotiator = SDESNegotiator("sdes_optional")
    negotiator.make_offer()
    assert negotiator.accept_answer(media("RTP/AVP")) is None


def test_plain_answer_to_a_mandatory_offer_is_an_error():
    negotiator = SDESNegotiator("sdes_mandatory")
    negotiator.make_offer()
    with pytest.raises(SDESNegotiationError, match="no a=crypto line"):
        negotiator.accept_answer(media("RTP/SAVP"))


def answer_line(tag: int, suite: str | None = None) -> str:
    """An answer's a=crypto line for tag ``tag`` of a default offer (or another suite)."""
    suite = suite or DEFAULT_SUITES[tag - 1]
    key = base64.b64encode(bytes(SUITES[suite].key_salt_length)).decode()
    return f"{tag} {suite} inline:{key}"


@pytest.mark.parametrize(
    "lines, message",
    [
        ([answer_line(9, "AES_CM_128_HMAC_SHA1_80")], "tag 9 was not offered"),
        ([answer_line(1, "AES_CM_128_HMAC_SHA1_32")], "was offered with that tag"),
        ([answer_line(1), answer_line(2)], "2 a=crypto lines"),
        (["1 AEAD_AES_256_GCM inline:!!"], "invalid"),
        ([answer_line(3) + " UNENCRYPTED_SRTCP"], "not supported"),
        ([answer_line(3) + "|1:4"], "MKI"),
    ],
)
def test_answer_mismatches(lines, message):
    negotiator = SDESNegotiator()
    negotiator.make_offer()
    with pytest.raises(SDESNegotiationError, match=message):
        negotiator.accept_answer(media("RTP/AVP", *lines))


def test_an_answer_needs_an_offer_and_consumes_it():
    negotiator = SDESNegotiator()
    with pytest.raises(SDESStateError):
        negotiator.accept_answer(media("RTP/AVP"))
    negotiator.make_offer()
    assert negotiator.accept_answer(media("RTP/AVP", answer_line(2))) is not None
    with pytest.raises(SDESStateError):
        negotiator.accept_answer(media("RTP/AVP", answer_line(2)))


def test_negotiator_checks_its_arguments():
    with pytest.raises(ValueError, match="key negotiation"):
        SDESNegotiator("zrtp")
    with pytest.raises(ValueError, match="suites"):
        SDESNegotiator(suites=["AES_256_CM_HMAC_SHA1_80"])
    with pytest.raises(ValueError, match="suites"):
        SDESNegotiator(suites=[])
    with pytest.raises(ValueError, match="suites"):
        SDESNegotiator(suites=["AEAD_AES_128_GCM", "AEAD_AES_128_GCM"])


def test_deterministic_keys_through_random_bytes():
    negotiator = SDESNegotiator(suites=["AES_CM_128_HMAC_SHA1_80"], random_bytes=counter_bytes())
    offer = negotiator.make_offer()
    assert offer.crypto[0].key_salt == b"\x01" * 30
    assert (
        str(offer.crypto[0])
        == "1 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(b"\x01" * 30).decode()
    )
