"""RTCP packets (RFC 3550 6.4-6.7) and compound packets."""

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipsimple.media.errors import RTCPParseError
from sipsimple.media.rtcp import (
    App,
    Bye,
    ReceiverReport,
    ReportBlock,
    SDESChunk,
    SDESItemType,
    SenderReport,
    SourceDescription,
    UnknownRTCPPacket,
    is_rtcp,
    parse_rtcp,
    serialize_rtcp,
)


def test_sender_report_layout_by_hand():
    block = ReportBlock(0xAABBCCDD, 64, -3, 0x0001FFFF, 80, 0x12345678, 65536)
    report = SenderReport(0x11111111, 0x0123456789ABCDEF, 160, 10, 1600, (block,))
    data = report.serialize()
    assert data[:4] == bytes([0x81, 200, 0, 12])  # V=2, RC=1, 13 words - 1
    assert struct.unpack_from("!IQIII", data, 4) == (0x11111111, 0x0123456789ABCDEF, 160, 10, 1600)
    assert data[28:32] == bytes.fromhex("aabbccdd")
    assert data[32:36] == bytes([64, 0xFF, 0xFF, 0xFD])  # fraction, -3 in 24 bits
    assert parse_rtcp(data) == [report]


def test_sdes_chunk_termination_and_padding_by_hand():
    sdes = SourceDescription((SDESChunk(1, ((SDESItemType.CNAME, "ab"),)),))
    data = sdes.serialize()
    # ssrc, CNAME item (1, 2, "ab"), then the null item and pad to 32 bits
    assert data == bytes([0x81, 202, 0, 3]) + struct.pack("!I", 1) + b"\x01\x02ab" + bytes(4)
    assert parse_rtcp(data) == [sdes]
    assert sdes.chunks[0].get(SDESItemType.CNAME) == "ab"
    assert sdes.chunks[0].get(SDESItemType.NAME) is None


def test_compound_report_sdes_bye_app_unknown_round_trip():
    packets = [
        ReceiverReport(5, (ReportBlock(6, 255, 0x7FFFFF, 1, 2, 3, 4),), b"ext!"),
        SourceDescription(
            (
                SDESChunk(5, ((1, "user@host"), (2, "Üser"), (6, "sipsimple"))),
                SDESChunk(7, ()),
            )
        ),
        Bye((5, 7), "bye now"),
        App(5, "TEST", b"12345678", subtype=17),
        UnknownRTCPPacket(205, 1, bytes(8)),
    ]
    data = serialize_rtcp(packets)
    assert parse_rtcp(data) == packets
    assert is_rtcp(data) and not is_rtcp(b"\x80\x00" + bytes(10))


def test_padding_bit_is_honoured():
    body = struct.pack("!I", 9) + bytes([0, 0, 0, 4])
    data = bytes([0xA0, 201, 0, 2]) + body
    assert parse_rtcp(data) == [ReceiverReport(9)]


def test_undecodable_text_survives_round_trip():
    sdes = SourceDescription(
        (SDESChunk(1, ((1, b"\xff\xfe".decode("utf-8", "surrogateescape")),)),)
    )
    assert parse_rtcp(sdes.serialize()) == [sdes]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x80\xc8", "shorter than 4"),
        (b"\x40\xc9\x00\x01" + bytes(4), "version is 1"),
        (b"\x80\xc9\x00\x05" + bytes(4), "overruns"),
        (b"\x80\xc9\x00\x01" + bytes(4) + b"\x80", "stray"),
        (b"\x80\xc8\x00\x01" + bytes(4), "shorter than 24"),
        (b"\x81\xc9\x00\x01" + bytes(4), "report blocks"),
        (b"\x80\xc9\x00\x00", "shorter than 4 bytes"),
        (b"\xa0\xc9\x00\x01" + bytes(4), "padding count 0"),
        (b"\xa0\xc9\x00\x01" + b"\x00\x00\x00\x09", "padding count 9"),
        (b"\x82\xca\x00\x02" + bytes(8), "SDES declares 2"),
        (b"\x81\xca\x00\x02" + bytes(4) + b"\x01\x09ab", "overruns"),
        (b"\x81\xca\x00\x02" + bytes(4) + b"\x01\x02ab", "not terminated"),
        (b"\x82\xcb\x00\x01" + bytes(4), "BYE declares 2"),
        (b"\x81\xcb\x00\x02" + bytes(4) + b"\x09abc", "reason overruns"),
        (b"\x80\xcc\x00\x01" + bytes(4), "APP body"),
    ],
)
def test_malformed_rtcp_raises_parse_error(data, message):
    with pytest.raises(RTCPParseError, match=message):
        parse_rtcp(data)


@pytest.mark.parametrize(
    "packet",
    [
        ReportBlock(1, fraction_lost=256),
        ReportBlock(1, packets_lost=0x800000),
        ReportBlock(1 << 32),
        ReceiverReport(1, tuple(ReportBlock(i) for i in range(32))),
        SenderReport(1, 1 << 64, 0, 0, 0),
        SourceDescription((SDESChunk(1, ((0, "x"),)),)),
        SourceDescription((SDESChunk(1, ((1, "x" * 256),)),)),
        Bye((1,), "x" * 256),
        App(1, "TOOLONG"),
        App(1, "NAME", subtype=32),
        App(1, "NAME", b"abc"),
        UnknownRTCPPacket(205, 32),
    ],
)
def test_serialize_rejects_out_of_range_fields(packet):
    with pytest.raises(ValueError):
        packet.serialize()


u32 = st.integers(0, 0xFFFFFFFF)
text = st.text(max_size=40).filter(lambda s: len(s.encode("utf-8", "surrogateescape")) <= 255)
blocks = st.builds(
    ReportBlock,
    u32,
    st.integers(0, 255),
    st.integers(-0x800000, 0x7FFFFF),
    u32,
    u32,
    u32,
    u32,
)
words = st.integers(0, 4).flatmap(lambda n: st.binary(min_size=4 * n, max_size=4 * n))
block_lists = st.lists(blocks, max_size=3).map(tuple)
rtcp_packets = st.one_of(
    st.builds(SenderReport, u32, st.integers(0, (1 << 64) - 1), u32, u32, u32, block_lists, words),
    st.builds(ReceiverReport, u32, block_lists, words),
    st.builds(
        SourceDescription,
        st.lists(
            st.builds(
                SDESChunk,
                u32,
                st.lists(st.tuples(st.integers(1, 255), text), max_size=3).map(tuple),
            ),
            max_size=3,
        ).map(tuple),
    ),
    st.builds(Bye, st.lists(u32, max_size=4).map(tuple), st.none() | text),
    st.builds(
        App,
        u32,
        st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=4, max_size=4),
        words,
        st.integers(0, 31),
    ),
    st.builds(UnknownRTCPPacket, st.integers(205, 207), st.integers(0, 31), words),
)


@settings(max_examples=300)
@given(st.lists(rtcp_packets, min_size=1, max_size=4))
def test_compound_round_trip(packets):
    data = serialize_rtcp(packets)
    assert parse_rtcp(data) == packets
    assert serialize_rtcp(parse_rtcp(data)) == data


@settings(max_examples=500)
@given(st.binary(max_size=120))
def test_garbage_raises_only_parse_error(data):
    try:
        packets = parse_rtcp(data)
    except RTCPParseError:
        return
    for packet in packets:
        assert packet.packet_type in range(256)


@settings(max_examples=300)
@given(st.lists(rtcp_packets, min_size=1, max_size=3), st.data())
def test_corrupted_valid_packets_raise_only_parse_error(packets, data):
    raw = bytearray(serialize_rtcp(packets))
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        parse_rtcp(bytes(raw[:cut]))
    except RTCPParseError:
        pass
