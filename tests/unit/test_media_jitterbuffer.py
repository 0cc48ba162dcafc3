"""The adaptive jitter buffer under reordering, loss, spikes, wrap-around, jumps and drift."""

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipsimple.media.jitterbuffer import IDLE_FRAMES, FrameKind, JitterBuffer
from sipsimple.media.rtp import RTPPacket

FRAME = 0.02


def stream(n, *, seq0=1000, ts0=80000, step=160, ssrc=1, first=0):
    """n consecutive 20 ms packets; the payload holds the packet's index in the stream."""
    return [
        RTPPacket(
            0,
            (seq0 + i) & 0xFFFF,
            (ts0 + i * step) & 0xFFFFFFFF,
            ssrc,
            struct.pack("!I", first + i),
        )
        for i in range(n)
    ]


def number(packet):
    return struct.unpack("!I", packet.payload)[0]


def index(frame):
    return number(frame.packet)


def send_times(n, start=0.0):
    return [start + i * FRAME for i in range(n)]


def run(jb, arrivals, seconds, *, start=0.0, phase=0.007, targets=None):
    """Delivers (time, packet) arrivals and calls get() every 20 ms; returns the frames.

    ``targets``, if given, receives the target delay after each get()."""
    arrivals = sorted(arrivals, key=lambda a: a[0])
    frames = []
    i = 0
    for tick in range(round(seconds / FRAME)):
        now = start + phase + tick * FRAME
        while i < len(arrivals) and arrivals[i][0] <= now:
            jb.put(arrivals[i][1], arrivals[i][0])
            i += 1
        frames.append(jb.get(now))
        if targets is not None:
            targets.append(jb.statistics.target_delay_ms)
    return frames


def played(frames):
    return [index(f) for f in frames if f is not None and f.kind is FrameKind.AUDIO]


def kinds(frames):
    return "".join(
        "." if f is None else ("A" if f.kind is FrameKind.AUDIO else "L") for f in frames
    )


def playing_part(frames):
    """The kinds from the first audio frame on, expansions and all."""
    text = kinds(frames)
    return text[text.index("A") :]


def test_clean_stream_plays_everything_in_order_after_the_initial_delay():
    jb = JitterBuffer(8000, initial_delay=0.06, min_delay=0.06)
    packets = stream(200)
    frames = run(jb, [(t + 0.03, p) for t, p in zip(send_times(200), packets, strict=True)], 4.5)
    assert played(frames) == list(range(200))
    assert "L" not in playing_part(frames).rstrip("L.")
    first = kinds(frames).index("A")
    assert first * FRAME + 0.007 >= 0.03 + 0.06  # waited for the target delay
    assert jb.statistics.lost == 0 and jb.statistics.late == 0
    assert jb.statistics.delay_ms == pytest.approx(60, abs=FRAME * 1000)


def test_reordered_pairs_are_put_back_in_order():
    jb = JitterBuffer(8000)
    packets = stream(100)
    times = send_times(100)
    arrivals = []
    for i in range(0, 100, 2):  # each pair arrives swapped, the first one a frame late
        arrivals += [(times[i] + 0.021, packets[i]), (times[i + 1] + 0.001, packets[i + 1])]
    frames = run(jb, arrivals, 2.5)
    assert played(frames) == list(range(100))
    assert jb.statistics.late == 0 and jb.statistics.lost == 0


def test_duplicates_are_dropped_whenever_they_come():
    jb = JitterBuffer(8000)
    packets = stream(100)
    arrivals = [(t + 0.01, p) for t, p in zip(send_times(100), packets, strict=True)]
    arrivals += [(t + 0.012, p) for t, p in arrivals[::3]]  # while still buffered
    arrivals += [(t + 0.5, p) for t, p in arrivals[1:50:5]]  # long after being played
    frames = run(jb, arrivals, 2.5)
    assert played(frames) == list(range(100))
    assert jb.statistics.duplicates == 34 + 10


@pytest.mark.parametrize("missing", [[40], [40, 41, 42, 43, 44], [10, 30, 31, 70]])
def test_lost_packets_become_lost_frames_in_their_slot(missing):
    jb = JitterBuffer(8000, min_delay=0.06)
    packets = stream(100)
    arrivals = [
        (t + 0.01, p)
        for t, p in zip(send_times(100), packets, strict=True)
        if number(p) not in missing
    ]
    frames = run(jb, arrivals, 2.4)
    body = [f for f in frames if f is not None]
    assert [index(f) if f.kind is FrameKind.AUDIO else None for f in body[:100]] == [
        None if i in missing else i for i in range(100)
    ]
    lost = [f for f in body[:100] if f.kind is FrameKind.LOST]
    assert [f.timestamp for f in lost] == [packets[i].timestamp for i in missing]
    assert all(f.samples == 160 for f in body)
    stats = jb.statistics
    assert stats.lost + stats.underruns == len(missing) + IDLE_FRAMES  # then the stream ends


def test_jitter_spike_raises_the_delay_so_the_next_spike_loses_nothing():
    jb = JitterBuffer(8000, max_delay=0.5)
    n = 500  # 10 s
    packets = stream(n)
    arrivals = []
    for i, (t, p) in enumerate(zip(send_times(n), packets, strict=True)):
        arrival = t + 0.02
        for spike in (100, 300):  # the network stalls 300 ms, then delivers at once
            if spike <= i < spike + 15:
                arrival = max(arrival, send_times(n)[spike] + 0.32)
        arrivals.append((arrival, p))
    targets = []
    frames = run(jb, arrivals, 11, targets=targets)
    first_spike, second_spike = frames[95:200], frames[295:400]
    assert "L" in kinds(first_spike)
    assert max(targets[100:150]) >= 250
    assert "L" not in kinds(second_spike)
    assert played(frames)[-200:] == list(range(n - 200, n))  # after adapting: nothing lost


def test_delay_comes_back_down_after_the_network_calms():
    jb = JitterBuffer(8000, max_delay=0.5, release=0.05)
    n = 1500  # 30 s
    packets = stream(n)
    times = send_times(n)
    arrivals = [
        (max(t, times[50] + 0.3) if 50 <= i < 65 else t, p)
        for i, (t, p) in enumerate(zip(times, packets, strict=True))
    ]
    frames = run(jb, arrivals, 30.5)
    assert jb.statistics.delay_ms < 100
    assert jb.statistics.discarded > 5  # the delay was shrunk by skipping frames
    played_indexes = played(frames)
    assert played_indexes == sorted(played_indexes)


def test_a_single_outlier_is_late_but_does_not_raise_the_delay():
    jb = JitterBuffer(8000, initial_delay=0.06)
    packets = stream(200)
    arrivals = [
        (t + (0.4 if i == 50 else 0.0), p)
        for i, (t, p) in enumerate(zip(send_times(200), packets, strict=True))
    ]
    frames = run(jb, arrivals, 4.2)
    assert 50 not in played(frames)
    assert jb.statistics.late == 1 and jb.statistics.lost == 1
    assert jb.statistics.target_delay_ms <= 60


def test_random_jitter_and_reordering_is_absorbed():
    rng = random.Random(7)
    jb = JitterBuffer(8000)
    n = 1000
    packets = stream(n)
    arrivals = [(t + rng.uniform(0, 0.06), p) for t, p in zip(send_times(n), packets, strict=True)]
    frames = run(jb, arrivals, 20.5)
    played_indexes = played(frames)
    assert played_indexes == sorted(played_indexes)
    # once adapted (the first seconds), late loss stays rare
    assert len(set(range(200, n)) - set(played_indexes)) <= 0.01 * n
    assert 50 <= jb.statistics.target_delay_ms <= 100


@pytest.mark.parametrize(("seq0", "ts0"), [(65500, 0xFFFFFFFF - 160 * 50), (65535, 0xFFFFFF00)])
def test_sequence_and_timestamp_wrap_around(seq0, ts0):
    jb = JitterBuffer(8000)
    packets = stream(200, seq0=seq0, ts0=ts0)
    arrivals = [(t + 0.01, p) for t, p in zip(send_times(200), packets, strict=True)]
    arrivals[100], arrivals[101] = (arrivals[100][0] + 0.025, arrivals[100][1]), arrivals[101]
    frames = run(jb, arrivals, 4.3)
    assert played(frames) == list(range(200))
    assert jb.statistics.resets == 0 and jb.statistics.lost == 0


def test_timestamp_jump_restarts_playout():
    jb = JitterBuffer(8000)
    before = stream(100)
    after = stream(100, seq0=1100, ts0=80000 + 9_000_000, first=100)  # the sender's clock jumped
    packets = before + after
    arrivals = [(t + 0.01, p) for t, p in zip(send_times(200), packets, strict=True)]
    frames = run(jb, arrivals, 4.5)
    assert jb.statistics.resets == 1
    indexes = played(frames)
    assert indexes[:95] == list(range(95)) and indexes[-90:] == list(range(110, 200))
    assert kinds(frames).count("L") <= 12


def test_sequence_jump_with_new_ssrc_restarts_and_plays_the_new_stream():
    jb = JitterBuffer(8000)
    old = stream(100, ssrc=1)
    new = stream(100, seq0=30000, ts0=12345, ssrc=2, first=100)
    arrivals = [(t + 0.01, p) for t, p in zip(send_times(200), old + new, strict=True)]
    frames = run(jb, arrivals, 4.5)
    assert jb.statistics.resets == 1
    assert played(frames)[-95:] == list(range(105, 200))


def test_stray_packets_do_not_restart_the_buffer():
    jb = JitterBuffer(8000)
    packets = stream(100)
    arrivals = [(t + 0.01, p) for t, p in zip(send_times(100), packets, strict=True)]
    arrivals += [
        (0.5015, RTPPacket(0, 40000, 7, 1, b"stray")),
        (0.7015, RTPPacket(0, 1040, 99999999, 1, b"stray")),
        (0.9015, RTPPacket(0, 1, 2, 9, b"other ssrc")),
    ]
    frames = run(jb, arrivals, 2.5)
    assert played(frames) == list(range(100))
    assert jb.statistics.resets == 0 and jb.statistics.discarded == 3


def test_silence_suppression_gap_goes_idle_then_resumes():
    jb = JitterBuffer(8000)
    talk1 = stream(50)
    talk2 = stream(50, seq0=1050, ts0=80000 + 100 * 160, first=50)  # 1 s of silence, no packets
    times = send_times(50) + send_times(50, start=2.0)
    frames = run(jb, [(t + 0.01, p) for t, p in zip(times, talk1 + talk2, strict=True)], 3.5)
    assert played(frames) == list(range(100))
    text = playing_part(frames)
    assert "L" * (IDLE_FRAMES + 1) not in text  # concealment stops: the buffer goes idle
    assert "." * 20 in text


def test_sender_pause_with_continuous_sequence_is_silence_not_loss():
    jb = JitterBuffer(8000)
    talk1 = stream(50)
    talk2 = stream(50, seq0=1050, ts0=80000 + 52 * 160, first=50)  # 40 ms gap, nothing missing
    times = send_times(50) + send_times(50, start=1.04)
    frames = run(jb, [(t + 0.01, p) for t, p in zip(times, talk1 + talk2, strict=True)], 2.2)
    assert played(frames) == list(range(100))
    text = playing_part(frames)
    assert "A..A" in text and "L" not in text[: text.rindex("A")]
    assert jb.statistics.lost == 0


@pytest.mark.parametrize("period", [0.01998, 0.02002])
def test_clock_drift_keeps_the_delay_bounded(period):
    jb = JitterBuffer(8000)
    n = 3000  # one minute at a sender clock 0.1 % off ours
    packets = stream(n)
    frames = run(jb, [(i * period + 0.01, p) for i, p in enumerate(packets)], 60.5)
    assert jb.statistics.delay_ms < 130
    indexes = played(frames)
    assert indexes == sorted(indexes)
    assert len(indexes) + jb.statistics.discarded >= n - 10


def test_samples_follow_the_packet_duration():
    jb = JitterBuffer(48000, ptime=20)
    packets = stream(50, step=1440)  # 30 ms Opus packets
    frames = run(jb, [(i * 0.03 + 0.01, p) for i, p in enumerate(packets)], 1.0)
    assert {f.samples for f in frames if f is not None and f.kind is FrameKind.AUDIO} == {1440}


def test_get_before_any_packet_and_bad_arguments():
    jb = JitterBuffer(8000)
    assert jb.get(0.0) is None
    with pytest.raises(ValueError):
        JitterBuffer(8000, min_delay=0.2, initial_delay=0.1)


def test_old_packets_arriving_while_idle_are_not_played_again():
    jb = JitterBuffer(8000)
    packets = stream(50)
    arrivals = [(t + 0.01, p) for t, p in zip(send_times(50), packets, strict=True)]
    arrivals += [(1.5, packets[48]), (1.501, packets[40])]  # after the buffer went idle
    later = stream(20, seq0=1050, ts0=80000 + 150 * 160, first=50)
    arrivals += [(t + 0.01, p) for t, p in zip(send_times(20, start=3.0), later, strict=True)]
    frames = run(jb, arrivals, 3.9)
    assert played(frames) == list(range(70))
    assert jb.statistics.duplicates == 2
    assert jb.statistics.target_delay_ms == 40.0  # duplicates do not count as network delay


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 40),  # sequence offset
            st.integers(-3, 3),  # timestamp wobble in frames
            st.sampled_from([1, 1, 1, 2]),  # ssrc
            st.floats(0, 0.3),  # extra delay
        ),
        max_size=120,
    ),
    st.sampled_from([0, 65520, 0xFFFFFFF0]),
)
def test_any_arrival_pattern_is_handled(arrivals, base):
    """Whatever arrives, in whatever order: no error, and no packet is played twice."""
    jb = JitterBuffer(8000)
    events = []
    for i, (offset, wobble, ssrc, extra) in enumerate(arrivals):
        seq = (base + offset) & 0xFFFF
        ts = (base + (offset + wobble) * 160) & 0xFFFFFFFF
        events.append((offset * FRAME + extra, RTPPacket(0, seq, ts, ssrc, struct.pack("!I", i))))
    frames = run(jb, events, 3.0)
    identities = [index(f) for f in frames if f is not None and f.kind is FrameKind.AUDIO]
    assert len(identities) == len(set(identities))
    stats = jb.statistics
    assert stats.played == len(identities) <= stats.received == len(arrivals)


def test_flush_after_a_pause_in_playout_starts_afresh_without_skipping():
    """Hold: neither put() nor get() runs for 0.3 s while the sender's timestamps go on.
    After flush() the stale packets are gone and playout starts from the next packet at
    the usual delay; without it the timeline kept across the pause takes the pause for
    delay and skips frames to bring it down."""
    jb = JitterBuffer(8000)
    before = stream(50)
    run(jb, [(t + 0.01, p) for t, p in zip(send_times(50), before, strict=True)], 1.0)
    held = jb.statistics.played
    jb.flush()
    assert jb.get(1.3) is None  # nothing held: silence until the next packets
    after = stream(50, seq0=1065, ts0=80000 + 65 * 160, first=65)  # 0.3 s later
    times = send_times(50, start=1.3)
    frames = run(jb, [(t + 0.01, p) for t, p in zip(times, after, strict=True)], 1.2, start=1.3)
    assert played(frames) == list(range(65, 115))
    assert "L" not in playing_part(frames)[: playing_part(frames).rindex("A")]
    assert jb.statistics.discarded == 0
    assert jb.statistics.played == held + 50  # the statistics carry on
    assert jb.statistics.delay_ms < 100
