"""Symmetric RTP latching."""

import pytest

from sipsimple.media.latch import RTPLatch

SDP = ("192.0.2.1", 4000)
NAT = ("198.51.100.7", 61000)
OTHER = ("203.0.113.9", 5000)


def test_first_packet_latches_at_once():
    latch = RTPLatch(SDP)
    assert latch.address == SDP and not latch.latched
    assert latch.observe(NAT, 1) is True
    assert latch.address == NAT and latch.latched and latch.ssrc == 1


def test_first_packet_from_the_sdp_address_is_not_a_change():
    latch = RTPLatch(SDP)
    assert latch.observe(SDP, 1) is False and latch.latched


def test_new_address_needs_consecutive_packets_with_the_same_ssrc():
    latch = RTPLatch(SDP, threshold=3)
    latch.observe(NAT, 1)
    assert [latch.observe(OTHER, 1) for _ in range(2)] == [False, False]
    assert latch.observe(NAT, 1) is False  # the current address speaks: start over
    assert [latch.observe(OTHER, 1) for _ in range(3)] == [False, False, True]
    assert latch.address == OTHER


def test_stray_packets_with_another_ssrc_need_many_more():
    latch = RTPLatch(SDP, threshold=3, new_ssrc_threshold=10)
    latch.observe(NAT, 1)
    results = [latch.observe(OTHER, 2) for _ in range(10)]
    assert results == [False] * 9 + [True]
    assert latch.address == OTHER and latch.ssrc == 2


def test_alternating_candidates_never_latch():
    latch = RTPLatch(SDP, threshold=2)
    latch.observe(NAT, 1)
    for _ in range(10):
        assert latch.observe(OTHER, 1) is False
        assert latch.observe(("203.0.113.10", 5000), 1) is False
    assert latch.address == NAT


def test_ssrc_change_on_the_current_address_is_followed():
    latch = RTPLatch(SDP, threshold=2)
    latch.observe(NAT, 1)
    latch.observe(NAT, 5)
    assert latch.ssrc == 5
    assert [latch.observe(OTHER, 5) for _ in range(2)] == [False, True]


def test_reset_returns_to_the_signalled_address():
    latch = RTPLatch(SDP)
    latch.observe(NAT, 1)
    latch.reset(OTHER)
    assert latch.address == OTHER and not latch.latched and latch.ssrc is None


def test_thresholds_must_be_positive():
    with pytest.raises(ValueError):
        RTPLatch(SDP, threshold=0)
