"""telephone-event (RFC 4733): the sender's packet sequence and the receiver's de-duplication."""

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipsimple.media.dtmf import DTMFReceiver, DTMFSender, parse_event_payload
from sipsimple.media.rtp import RTPPacket, RTPPacketizer


def run_sender(sender, packetizer, ticks, *, step=160, pt=101):
    """Drives the sender like a transport: one slot per tick, audio when no event."""
    sent = []
    for _ in range(ticks):
        event = sender.tick(packetizer.timestamp)
        if event is None:
            sent.append(packetizer.next_packet(b"audio"))
        else:
            sent.append(
                packetizer.next_packet(
                    event.payload, payload_type=pt, timestamp=event.timestamp, marker=event.marker
                )
            )
        packetizer.advance(step)
    return sent


def test_exact_packet_sequence_of_one_digit():
    sender = DTMFSender(8000, ptime=20, volume=10)
    packetizer = RTPPacketizer(0, 0x1234, sequence_number=100, timestamp=8000)
    sender.send("5", duration=0.1)
    packets = run_sender(sender, packetizer, 9)
    events = packets[:7]
    assert [p.payload_type for p in packets] == [101] * 7 + [0, 0]
    assert [p.sequence_number for p in packets] == list(range(100, 109))
    assert [p.marker for p in events] == [True] + [False] * 6
    assert {p.timestamp for p in events} == {8000}  # every packet: the event's start
    fields = [struct.unpack("!BBH", p.payload) for p in events]
    assert [f[0] for f in fields] == [5] * 7
    assert [f[1] & 0x80 for f in fields] == [0, 0, 0, 0, 0x80, 0x80, 0x80]  # 3 end packets
    assert [f[1] & 0x3F for f in fields] == [10] * 7
    assert [f[2] for f in fields] == [160, 320, 480, 640, 800, 800, 800]
    # audio resumes at the media clock, which went on during the event
    assert packets[7].timestamp == 8000 + 7 * 160 and not packets[7].marker
    assert not sender.busy


def test_duration_rounds_up_to_whole_packets_and_queued_digits_keep_a_pause():
    sender = DTMFSender(8000, ptime=20, pause=0.04)
    packetizer = RTPPacketizer(0, 1, sequence_number=0, timestamp=0)
    sender.send("1", duration=0.05)  # 400 ticks -> 480 (three packets)
    sender.send("#", duration=0.04)
    packets = run_sender(sender, packetizer, 14)
    kinds = ["E" if p.payload_type == 101 else "a" for p in packets]
    assert "".join(kinds) == "EEEEE" + "aa" + "EEEE" + "aaa"
    first = [parse_event_payload(p.payload) for p in packets[:5]]
    assert [d for *_, d in first] == [160, 320, 480, 480, 480]
    second = packets[7:11]
    assert second[0].marker and second[0].timestamp == 7 * 160
    assert parse_event_payload(second[0].payload)[0] == 11  # '#'


def test_wideband_clock_and_limits():
    sender = DTMFSender(48000, ptime=20)
    sender.send("A", duration=1.0)
    with pytest.raises(ValueError, match=r"1\.365s"):
        sender.send("A", duration=1.5)  # 72000 ticks do not fit 16 bits
    with pytest.raises(ValueError, match="digit"):
        sender.send("X")
    with pytest.raises(ValueError, match="digit"):
        sender.send("12")
    with pytest.raises(ValueError):
        DTMFSender(volume=64)
    event = sender.tick(123)
    assert parse_event_payload(event.payload) == (12, False, 10, 960)


def packet(seq, ts, event, end=False, duration=160, ssrc=1):
    payload = struct.pack("!BBH", event, (0x80 if end else 0) | 10, duration)
    return RTPPacket(101, seq, ts, ssrc, payload)


def test_receiver_reports_each_event_once():
    receiver = DTMFReceiver()
    stream = [
        packet(1, 1000, 1),
        packet(2, 1000, 1, duration=320),
        packet(3, 1000, 1, end=True, duration=480),
        packet(4, 1000, 1, end=True, duration=480),
        packet(5, 1000, 1, end=True, duration=480),
        packet(6, 2000, 1),  # the same digit again is a new event (new timestamp)
        packet(7, 2000, 1, end=True),
        packet(8, 3000, 11, end=True),  # first packets lost: still reported
    ]
    events = [receiver.receive(p) for p in stream]
    reported = [(e.digit, e.timestamp) for e in events if e is not None]
    assert reported == [("1", 1000), ("1", 2000), ("#", 3000)]


def test_receiver_ignores_late_packets_of_older_events_across_timestamp_wrap():
    receiver = DTMFReceiver()
    assert receiver.receive(packet(1, 0xFFFFFF00, 2)).digit == "2"
    assert receiver.receive(packet(3, 0x00000100, 3)).digit == "3"  # wrapped forward
    assert receiver.receive(packet(2, 0xFFFFFF00, 2, end=True)) is None  # late


def test_receiver_resets_on_new_ssrc_and_ignores_garbage_and_flash():
    receiver = DTMFReceiver()
    assert receiver.receive(packet(1, 5000, 4)).digit == "4"
    assert receiver.receive(packet(1, 100, 4, ssrc=2)).digit == "4"  # new stream
    assert receiver.receive(RTPPacket(101, 2, 200, 2, b"\x01")) is None
    assert receiver.receive(packet(3, 300, 16, ssrc=2)) is None  # flash: not a digit
    assert receiver.receive(packet(4, 300, 7, ssrc=2)).digit == "7"  # new event, same ts


def test_sender_and_receiver_together():
    sender = DTMFSender(8000)
    receiver = DTMFReceiver()
    packetizer = RTPPacketizer(0, 77)
    for digit in "0123456789*#ABCD":
        sender.send(digit, duration=0.06)
    packets = run_sender(sender, packetizer, 200)
    got = [
        receiver.receive(RTPPacket.parse(p.serialize())) for p in packets if p.payload_type == 101
    ]
    assert "".join(e.digit for e in got if e is not None) == "0123456789*#ABCD"


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(st.integers(0, 0xFFFFFFFF), st.binary(max_size=8), st.integers(1, 3)),
        max_size=30,
    )
)
def test_receiver_takes_any_payload(packets):
    receiver = DTMFReceiver()
    for timestamp, payload, ssrc in packets:
        event = receiver.receive(RTPPacket(101, 0, timestamp, ssrc, payload))
        assert event is None or event.digit in "0123456789*#ABCD"
