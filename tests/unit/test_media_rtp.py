"""RTP packets (RFC 3550 section 5), header extensions (RFC 8285), the packetizer."""

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipsimple.media.errors import RTPParseError
from sipsimple.media.rtp import RTPHeaderExtension, RTPPacket, RTPPacketizer


def test_parse_minimal_packet_by_hand():
    data = bytes([0x80, 0x00]) + struct.pack("!HII", 1234, 160000, 0xDEADBEEF) + b"\xff" * 160
    packet = RTPPacket.parse(data)
    assert packet == RTPPacket(0, 1234, 160000, 0xDEADBEEF, b"\xff" * 160)
    assert packet.serialize() == data


def test_marker_csrc_extension_padding_by_hand():
    data = (
        bytes([0x80 | 0x20 | 0x10 | 2, 0x80 | 111])
        + struct.pack("!HII", 65535, 0xFFFFFFFF, 7)
        + struct.pack("!II", 11, 22)
        + struct.pack("!HH", 0xBEDE, 1)
        + bytes([0x10, 0xAA, 0x00, 0x00])
        + b"opus"
        + b"\x00\x00\x03"
    )
    packet = RTPPacket.parse(data)
    assert packet.marker and packet.payload_type == 111
    assert packet.sequence_number == 65535 and packet.timestamp == 0xFFFFFFFF
    assert packet.csrc == (11, 22)
    assert packet.extension == RTPHeaderExtension(0xBEDE, bytes([0x10, 0xAA, 0, 0]))
    assert packet.extension.elements() == [(1, b"\xaa")]
    assert packet.payload == b"opus" and packet.padding == 3
    assert packet.serialize() == data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "shorter than 12"),
        (b"\x80\x00" + bytes(9), "shorter than 12"),
        (b"\x40\x00" + bytes(10), "version is 1"),
        (b"\x83\x00" + bytes(10) + bytes(8), "CSRC"),
        (b"\x90\x00" + bytes(10) + b"\xbe\xde", "header extension"),
        (b"\x90\x00" + bytes(10) + b"\xbe\xde\x00\x02" + bytes(4), "overruns"),
        (b"\xa0\x00" + bytes(10), "padding count 0"),
        (b"\xa0\x00" + bytes(10) + b"ab\x00", "padding count 0"),
        (b"\xa0\x00" + bytes(10) + b"ab\x04", "padding count 4"),
        (b"\x80\xc8" + bytes(10), "collides with RTCP"),
    ],
)
def test_malformed_packets_raise_rtp_parse_error(data, message):
    with pytest.raises(RTPParseError, match=message):
        RTPPacket.parse(data)


@pytest.mark.parametrize(
    "packet",
    [
        RTPPacket(128, 0, 0, 0),
        RTPPacket(72, 0, 0, 0),
        RTPPacket(0, 65536, 0, 0),
        RTPPacket(0, 0, 1 << 32, 0),
        RTPPacket(0, 0, 0, 0, csrc=tuple(range(16))),
        RTPPacket(0, 0, 0, 0, padding=256),
        RTPPacket(0, 0, 0, 0, extension=RTPHeaderExtension(1, b"abc")),
    ],
)
def test_serialize_rejects_out_of_range_fields(packet):
    with pytest.raises(ValueError):
        packet.serialize()


def test_two_byte_extension_elements_round_trip():
    elements = [(1, b""), (200, b"x" * 20)]
    extension = RTPHeaderExtension.from_elements(elements)
    assert extension.profile == 0x1000
    assert len(extension.data) % 4 == 0
    assert extension.elements() == elements
    packet = RTPPacket(0, 1, 2, 3, b"p", extension=extension)
    assert RTPPacket.parse(packet.serialize()).extension.elements() == elements


def test_one_byte_extension_skips_padding_and_stops_at_id_15():
    extension = RTPHeaderExtension(0xBEDE, bytes([0, 0x21, 1, 2, 0xF0, 0x11, 0, 0]))
    assert extension.elements() == [(2, b"\x01\x02")]


@pytest.mark.parametrize(
    "extension",
    [
        RTPHeaderExtension(0xBEDE, bytes([0x13, 1, 2, 3])),
        RTPHeaderExtension(0x1000, bytes([5, 9, 1, 2])),
        RTPHeaderExtension(0x1234, bytes(4)),
    ],
)
def test_bad_extension_elements_raise_parse_error(extension):
    with pytest.raises(RTPParseError):
        extension.elements()


def test_extension_elements_out_of_range_are_refused():
    with pytest.raises(ValueError):
        RTPHeaderExtension.from_elements([(0, b"x" * 300)])


def test_packetizer_counts_sequence_and_timestamp_with_wrap():
    packetizer = RTPPacketizer(0, 0x1234, sequence_number=65535, timestamp=0xFFFFFF60)
    first = packetizer.next_packet(b"a", marker=True)
    packetizer.advance(160)
    second = packetizer.next_packet(b"b")
    packetizer.advance(160)
    event = packetizer.next_packet(b"e", payload_type=101, timestamp=first.timestamp)
    assert (first.sequence_number, first.timestamp, first.marker) == (65535, 0xFFFFFF60, True)
    assert (second.sequence_number, second.timestamp, second.marker) == (0, 0, False)
    assert (event.sequence_number, event.payload_type, event.timestamp) == (1, 101, 0xFFFFFF60)
    assert packetizer.timestamp == 160


def test_packetizer_picks_random_initial_values():
    values = {
        (p.ssrc, p.sequence_number, p.timestamp) for p in (RTPPacketizer(0) for _ in range(5))
    }
    assert len(values) == 5


payload_types = st.integers(0, 127).filter(lambda pt: not 72 <= pt <= 76)
extensions = st.builds(
    RTPHeaderExtension,
    st.integers(0, 0xFFFF),
    st.integers(0, 8).flatmap(lambda n: st.binary(min_size=4 * n, max_size=4 * n)),
)
packets = st.builds(
    RTPPacket,
    payload_type=payload_types,
    sequence_number=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=200),
    marker=st.booleans(),
    csrc=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    extension=st.none() | extensions,
    padding=st.integers(0, 255),
)


@settings(max_examples=300)
@given(packets)
def test_round_trip(packet):
    data = packet.serialize()
    assert RTPPacket.parse(data) == packet
    assert RTPPacket.parse(data).serialize() == data


@settings(max_examples=500)
@given(st.binary(max_size=100))
def test_garbage_raises_only_parse_error(data):
    try:
        packet = RTPPacket.parse(data)
    except RTPParseError:
        return
    reparsed = RTPPacket.parse(packet.serialize())
    assert reparsed == packet


@settings(max_examples=300)
@given(st.binary(max_size=60))
def test_extension_garbage_raises_only_parse_error(data):
    for profile in (0xBEDE, 0x1000):
        try:
            RTPHeaderExtension(profile, data).elements()
        except RTPParseError:
            pass


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(st.integers(1, 255), st.binary(max_size=255)),
        max_size=6,
    )
)
def test_extension_elements_round_trip(elements):
    assert RTPHeaderExtension.from_elements(elements).elements() == elements


def test_packetizer_header_is_the_header_of_the_packet_it_would_make():
    ours, theirs = (RTPPacketizer(96, 0xCAFE, sequence_number=65535, timestamp=7) for _ in "ab")
    for marker, payload_type, timestamp in (
        (True, None, None),
        (False, 101, 99),
        (False, None, None),
    ):
        packet = theirs.next_packet(
            b"x", marker=marker, payload_type=payload_type, timestamp=timestamp
        )
        assert ours.next_header(marker, payload_type, timestamp) + b"x" == packet.serialize()
    assert ours.sequence_number == theirs.sequence_number == 2


def test_media_packet_is_the_header_then_the_payload_then_an_advance():
    ours, theirs = (
        RTPPacketizer(0, 0xCAFE, sequence_number=65534, timestamp=0xFFFFFF00) for _ in "ab"
    )
    rows = np.arange(3 * 160, dtype=np.uint32).astype(np.uint8).reshape(3, 160)
    for marker, row in zip((True, False, False), rows, strict=True):
        expected = theirs.next_packet(row.tobytes(), marker=marker).serialize()
        theirs.advance(160)
        assert ours.media_packet(row, marker, 160) == expected  # a row of uint8 as payload
    assert ours.media_packet(b"abc", False, 160) == theirs.next_header() + b"abc"
    theirs.advance(160)
    assert (ours.sequence_number, ours.timestamp) == (theirs.sequence_number, theirs.timestamp)
    assert (ours.sequence_number, ours.timestamp) == (2, 0x180)  # both wrapped
