"""The receive side's fast paths agree with the code as it was before them.

tests/support/media_reference.py keeps the jitter buffer as it was (commit f39df75); the
same packet sequences - in order, reordered, duplicated, late, lost, with an SSRC change,
a sequence or timestamp wrap, a jump, delay spikes - go through both, and every frame and
every statistic must be the same.
"""

import asyncio
import random
import select
import socket
import struct
from collections import deque
from dataclasses import asdict

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.media_reference import ReferenceJitterBuffer

from sipsimple.core.media import RTPTransport
from sipsimple.media.codecs import create_codec
from sipsimple.media.codecs.base import FADE_FRAMES
from sipsimple.media.errors import RTPParseError
from sipsimple.media.jitterbuffer import QUANTILE, WINDOW, JitterBuffer
from sipsimple.media.rtp import RTPPacket
from sipsimple.media.srtp import CryptoAttribute, SRTPParameters

FRAME = 0.02
EVENTS = ("keep", "keep", "keep", "keep", "drop", "duplicate", "swap", "late", "spike")


@st.composite
def scenarios(draw):
    """(arrival time, packet) pairs of one or two sources, and how long to play them."""
    seq = draw(st.sampled_from([0, 1000, 65500, 65535]))
    ts = draw(st.sampled_from([0, 80000, 0xFFFFFFFF - 4000]))
    ssrc = 0x1234
    n = draw(st.integers(20, 160))
    events = draw(st.lists(st.sampled_from(EVENTS), min_size=n, max_size=n))
    network = draw(st.floats(0.0, 0.08))
    change = draw(st.sampled_from([None, "ssrc", "seq", "ts", "stray"]))
    at = draw(st.integers(5, n - 1))
    seed = draw(st.integers(0, 2**16))
    rng = random.Random(seed)
    arrivals = []
    for i, event in enumerate(events):
        if i == at and change is not None:
            if change == "ssrc":
                ssrc, seq, ts = 0x5678, rng.randrange(65536), rng.randrange(2**32)
            elif change == "seq":
                seq = (seq + 20000) & 0xFFFF
            elif change == "ts":
                ts = (ts + 8000 * 30) & 0xFFFFFFFF
            else:  # one packet of another source, then the stream goes on
                stray = RTPPacket(0, rng.randrange(65536), rng.randrange(2**32), 0x9999, b"s")
                arrivals.append((i * FRAME + network, stray))
        packet = RTPPacket(
            0, (seq + i) & 0xFFFF, (ts + 160 * i) & 0xFFFFFFFF, ssrc, bytes([i % 256])
        )
        sent = i * FRAME
        delay = network + rng.uniform(0, 0.004)
        if event == "drop":
            continue
        if event == "late":
            delay += 0.3
        elif event == "spike":
            delay += rng.uniform(0.03, 0.15)
        elif event == "swap":
            delay += 0.025
        arrivals.append((sent + delay, packet))
        if event == "duplicate":
            arrivals.append((sent + delay + rng.choice([0.001, 0.5]), packet))
    arrivals.sort(key=lambda a: a[0])
    return arrivals, n * FRAME + 1.0


def play(jb, arrivals, seconds):
    """Puts the arrivals and gets a frame every 20 ms; the frames and the statistics
    after each step."""
    trace = []
    i = 0
    for tick in range(round(seconds / FRAME)):
        now = 0.005 + tick * FRAME
        while i < len(arrivals) and arrivals[i][0] <= now:
            jb.put(arrivals[i][1], arrivals[i][0])
            i += 1
            trace.append(asdict(jb.statistics))
        frame = jb.get(now)
        trace.append(None if frame is None else (frame.kind, frame.timestamp, frame.samples))
        trace.append(None if frame is None else frame.packet)
        trace.append(asdict(jb.statistics))
    return trace


@settings(max_examples=150, deadline=None)
@given(scenarios(), st.sampled_from([(0.04, 0.06), (0.0, 0.0), (0.02, 0.2)]))
def test_jitter_buffer_plays_and_counts_as_before(scenario, delays):
    arrivals, seconds = scenario
    min_delay, initial = delays
    options = {"min_delay": min_delay, "initial_delay": initial, "max_delay": 0.3}
    new = play(JitterBuffer(8000, **options), arrivals, seconds)
    old = play(ReferenceJitterBuffer(8000, **options), arrivals, seconds)
    assert new == old


def test_the_delay_window_keeps_the_same_quantile_when_it_wraps():
    """Past WINDOW packets the ring replaces the oldest excess, and the top of the window
    stays the largest excesses of the last WINDOW packets."""
    rng = random.Random(7)
    arrivals = []
    for i in range(1500):
        delay = rng.choice([0.001, 0.002, 0.002, 0.004, rng.uniform(0, 0.12)])
        arrivals.append((i * FRAME + delay, RTPPacket(0, i & 0xFFFF, 160 * i, 1, b"x")))
    arrivals.sort(key=lambda a: a[0])
    new, old = JitterBuffer(8000), ReferenceJitterBuffer(8000)
    assert play(new, arrivals, 31) == play(old, arrivals, 31)
    assert new._top == old._sorted[-len(new._top) :]


class Collector:
    def __init__(self):
        self.packets = []

    def rtp_received(self, packet, now):
        self.packets.append(packet)

    def rtcp_received(self, data, now):
        raise AssertionError("no RTCP here")


def transport_state(transport):
    latch = transport._latch
    return (
        transport.counters,
        transport._remote_ssrc,
        transport._ssrc_candidate,
        (latch.address, latch.latched, latch.ssrc, latch.candidate),
    )


@pytest.fixture
def senders():
    """Three loopback sockets to send from, and a receiving one (non-blocking)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    sockets[-1].setblocking(False)
    yield sockets[:-1], sockets[-1]
    for sock in sockets:
        sock.close()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2),
            st.sampled_from([1, 1, 1, 2, 3]),
            st.booleans(),
            st.sampled_from([0, 0, 0, 8, 101, 72, 90, 128, 229]),  # M bit and PT
        ),
        min_size=1,
        max_size=50,
    ),
    st.booleans(),
)
async def test_the_transport_filter_decides_as_accept_does(senders, packets, ice):
    """Datagrams through the receive path (with its shortcuts for the usual packet) are
    taken, refused and counted as _accept() alone takes, refuses and counts them."""
    sources, sock = senders
    addresses = [source.getsockname() for source in sources]
    ours, reference = RTPTransport(), RTPTransport()
    taken = []
    for transport in (ours, reference):
        transport._loop = asyncio.get_running_loop()
        transport._latch.reset(addresses[0])
        if ice:  # as ICE has it, datagrams come through _rtp_datagram()
            transport._ice_running = True
            transport._ice_peers = frozenset(addresses[:2])
    ours._rtp_socket = sock
    ours.receiver = Collector()
    sequence = {1: 100, 2: 65534, 3: 7}
    for where, ssrc, next_in_sequence, second_byte in packets:
        if next_in_sequence:
            sequence[ssrc] = (sequence[ssrc] + 1) & 0xFFFF
        seq = sequence[ssrc]
        data = struct.pack("!BBHII", 0x80, second_byte, seq, 160 * seq, ssrc) + b"\xff" * 4
        if ice:
            ours._rtp_datagram(data, addresses[where])
        else:
            sources[where].sendto(data, sock.getsockname())
            select.select([sock], [], [], 2)
            ours._rtp_readable()
        try:
            packet = RTPPacket.parse(data)
        except RTPParseError:  # a payload type RTCP could be mistaken for
            reference.counters.garbage += 1
        else:
            if reference._accept(packet, addresses[where]):
                taken.append(packet)
                reference.counters.rtp_received += 1
        assert transport_state(ours) == transport_state(reference)
    assert ours.receiver.packets == taken


@pytest.mark.parametrize("name", ["PCMU", "PCMA"])
def test_g711_decodes_many_streams_as_each_alone(name):
    """decode_many(): the rows are what decode() gives, and concealment goes on from them."""
    rng = random.Random(3)
    payloads = [rng.randbytes(160) for _ in range(5)]
    batch = [create_codec(name) for _ in payloads]
    alone = [create_codec(name) for _ in payloads]
    rows = type(batch[0]).decode_many(batch, payloads)
    for row, codec, payload in zip(rows, alone, payloads, strict=True):
        assert np.array_equal(row, codec.decode(payload))
    for _ in range(FADE_FRAMES + 1):
        for ours, theirs in zip(batch, alone, strict=True):
            assert np.array_equal(ours.conceal(), theirs.conceal())


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.sampled_from([0.0, 0.001, 0.002, 0.05]) | st.floats(0.0, 0.2),
        min_size=1,
        max_size=1200,
    )
)
def test_the_top_of_the_window_is_its_largest_excesses(excesses):
    """The marked slots hold the top, the top is the tail of the sorted window, and the
    quantile read from it (and the floor kept from it) is the one the sorted window
    gives - ties included."""
    jb = JitterBuffer(8000)
    window = deque(maxlen=WINDOW)
    for excess in excesses:
        jb._remember(excess)
        window.append(excess)
        ordered = sorted(window)
        top = jb._top
        assert top == ordered[len(ordered) - len(top) :]
        assert sorted(e for e, mark in zip(jb._excesses, jb._in_top, strict=False) if mark) == top
        quantile = ordered[int(QUANTILE * (len(ordered) - 1))]
        assert top[-jb._need] == quantile
        assert jb._floor == min(max(quantile, jb.min_delay), jb.max_delay)


async def test_plain_rtp_is_refused_once_srtp_is_on(senders):
    """The shortcut for the usual packet ends when SRTP starts: a plain packet from the
    source followed until then is an SRTP failure, not audio."""
    sources, sock = senders
    transport = RTPTransport()
    transport._loop = asyncio.get_running_loop()
    transport._latch.reset(sources[0].getsockname())
    transport._rtp_socket = sock
    transport.receiver = Collector()

    def deliver(seq):
        data = struct.pack("!BBHII", 0x80, 0, seq, 160 * seq, 1) + b"\xff" * 160
        sources[0].sendto(data, sock.getsockname())
        select.select([sock], [], [], 2)
        transport._rtp_readable()

    for seq in range(5):
        deliver(seq)
    key = bytes(range(30))
    crypto = CryptoAttribute(1, "AES_CM_128_HMAC_SHA1_80", ())
    transport._srtp_parameters = SRTPParameters(crypto.suite, 1, key, key, crypto)
    transport._establish_srtp(None)
    deliver(5)
    assert len(transport.receiver.packets) == 5
    assert transport.counters.srtp_authentication_failures == 1
