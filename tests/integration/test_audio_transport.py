"""Two AudioTransports between two mixers over loopback: tones, DTMF, hold, timeout, RTCP.

Each side has its own AudioMixer on a dummy sound device whose microphone plays a tone;
what arrives from the network is recorded in memory and its frequency found by FFT.

Run inside a private network namespace:
  unshare -n sh -c 'ip link set lo up; PYTHONPATH=src python -m pytest \\
      tests/integration/test_audio_transport.py'
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass

import numpy as np
import pytest

from sipsimple.core.media import AudioTransport, AudioTransportError, RTPTransport
from sipsimple.core.sdp import SDPConnection, SDPNegotiator, SDPSession
from sipsimple.media.codecs import available_codecs
from sipsimple.media.devices import DummyDevice
from sipsimple.media.mixer import AudioMixer, SlotPort
from sipsimple.notification import NotificationQueue

pytestmark = pytest.mark.timeout(30)

LOCAL = "127.0.0.1"
RATE = 48000
# Tones each codec carries well (G.711 stops at 3.4 kHz).
OFFERER_TONE, ANSWERER_TONE = 1000.0, 1500.0


class Recorder(SlotPort):
    """Keeps every frame the mixer gives it."""

    produces = False

    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []

    def consume(self, frame: np.ndarray | None) -> None:
        if frame is not None:
            self.frames.append(frame.copy())

    def recent(self, seconds: float) -> np.ndarray:
        count = round(seconds * 50)
        return np.concatenate(self.frames[-count:]) if self.frames else np.zeros(0)


def dominant_frequency(samples: np.ndarray, rate: int = RATE) -> float:
    window = samples.astype(float) * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(window))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


def tone_purity(samples: np.ndarray, tone: float, rate: int = RATE) -> float:
    """The share of the energy within 30 Hz of ``tone``."""
    spectrum = np.abs(np.fft.rfft(samples.astype(float) * np.hanning(len(samples)))) ** 2
    near = np.abs(np.fft.rfftfreq(len(samples), 1 / rate) - tone) < 30
    return float(spectrum[near].sum() / spectrum.sum())


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(float) ** 2))) if len(samples) else 0.0


@dataclass
class Side:
    mixer: AudioMixer
    rtp: RTPTransport
    audio: AudioTransport | None = None
    recorder: Recorder | None = None

    async def close(self) -> None:
        if self.audio is not None:
            self.audio.stop()
        self.mixer.close()
        await self.rtp.stop()


async def side(tone: float, **options) -> Side:
    mixer = AudioMixer(None, None, RATE, device=DummyDevice(tone=tone))
    mixer.start()
    rtp = RTPTransport(local_address=LOCAL, **options)
    await rtp.set_INIT()
    assert rtp.state == "INIT"
    return Side(mixer, rtp)


def written(media) -> SDPSession:
    """A description around ``media`` as the peer would parse it off the wire."""
    return SDPSession.parse(str(SDPSession(LOCAL, connection=SDPConnection(LOCAL), media=[media])))


async def call(
    offerer_codecs=None,
    answerer_codecs=None,
    start_answerer: bool = True,
    offerer_options=None,
    answerer_options=None,
    direction: str = "sendrecv",
    **transport_options,
) -> tuple[Side, Side]:
    """An offer/answer through two SDPNegotiators, then both AudioTransports started, each
    mixer's microphone (slot 0) connected to the network and the network to a recorder."""
    a = await side(OFFERER_TONE, **(offerer_options or {}))
    b = await side(ANSWERER_TONE, **(answerer_options or {}))
    a.audio = AudioTransport(a.mixer, a.rtp, codecs=offerer_codecs, **transport_options)
    offer = written(a.audio.get_local_media(direction=direction))
    b.audio = AudioTransport(b.mixer, b.rtp, offer, 0, codecs=answerer_codecs, **transport_options)
    answer = written(b.audio.get_local_media(offer, 0))
    negotiators = SDPNegotiator.create_with_local_offer(offer), SDPNegotiator()
    negotiators[1].set_remote_offer(offer)
    negotiators[1].set_local_answer(answer)
    negotiators[0].set_remote_answer(answer)
    for negotiator in negotiators:
        negotiator.negotiate()
    for peer, negotiator in zip((a, b), negotiators, strict=True):
        if peer is b and not start_answerer:
            continue
        peer.audio.start(negotiator.active_local, negotiator.active_remote, 0)
        peer.recorder = Recorder()
        recorder_slot = peer.mixer.add_port(peer.recorder)
        peer.mixer.connect_slots(0, peer.audio.slot)
        peer.mixer.connect_slots(peer.audio.slot, recorder_slot)
    return a, b


async def hang_up(*sides: Side) -> None:
    for peer in sides:
        await peer.close()


@pytest.mark.parametrize("codec", ["PCMU", "PCMA", "G722", "opus"])
async def test_a_tone_crosses_each_codec_both_ways(codec):
    if codec not in available_codecs():
        pytest.fail(f"{codec} is not available in this installation")
    a, b = await call(offerer_codecs=[codec])
    try:
        assert a.audio.codec == b.audio.codec == codec
        assert a.audio.sample_rate == {"G722": 16000, "opus": 48000}.get(codec, 8000)
        await asyncio.sleep(0.8)
        for peer, tone in ((b, OFFERER_TONE), (a, ANSWERER_TONE)):
            heard = peer.recorder.recent(0.4)
            assert len(heard) == 0.4 * RATE
            assert abs(dominant_frequency(heard) - tone) < 15, (codec, tone)
            # No gaps, clicks or noise to speak of (a frame lost to a busy machine costs ~1%).
            assert tone_purity(heard, tone) > 0.97
            # One frame of 20 may go quiet when a loaded machine delays a packet past its
            # playout (G.722 has no concealment); more would be a gap of ours.
            assert sum(rms(frame) <= 1000 for frame in peer.recorder.frames[-20:]) <= 1
        stats = b.audio.statistics
        assert stats.rx.packets >= 30 and stats.rx.packets_lost == 0
        assert a.rtp.counters.rtp_sent >= 30 and b.rtp.counters.garbage == 0
    finally:
        await hang_up(a, b)


async def test_codec_choice_follows_the_answer_and_the_sdp_lists_telephone_event():
    a, b = await call(offerer_codecs=["opus", "PCMA"], answerer_codecs=["PCMA", "opus"])
    try:
        offer = a.audio.get_local_media()
        names = [str(offer.rtpmap(fmt)) for fmt in offer.formats]
        assert names == [
            "opus/48000/2",
            "PCMA/8000",
            "telephone-event/8000",
            "telephone-event/48000",
        ]
        assert offer.fmtp("111") == "maxplaybackrate=48000;stereo=0;useinbandfec=1"
        assert offer.fmtp("101") == "0-16"
        assert offer.attributes.getfirst("ptime") == "20" and offer.direction == "sendrecv"
        # The answerer prefers PCMA: both send PCMA.
        assert a.audio.codec == b.audio.codec == "PCMA"
        assert b.audio.get_local_media(direction="sendonly").direction == "sendonly"
    finally:
        await hang_up(a, b)


async def test_srtp_audio():
    options = {"encryption": "opportunistic"}
    a, b = await call(offerer_codecs=["PCMU"], offerer_options=options, answerer_options=options)
    try:
        assert a.rtp.srtp_active and b.rtp.srtp_active
        await asyncio.sleep(0.6)
        assert abs(dominant_frequency(b.recorder.recent(0.3)) - OFFERER_TONE) < 15
        assert b.rtp.counters.srtp_authentication_failures == 0
    finally:
        await hang_up(a, b)


async def test_dtmf_both_ways():
    a, b = await call(offerer_codecs=["opus"])
    try:
        with NotificationQueue("RTPAudioStreamGotDTMF") as queue:
            a.audio.send_dtmf("5")
            a.audio.send_dtmf("*")
            b.audio.send_dtmf("#")
            got = [await queue.get(timeout=2) for _ in range(3)]
        by_sender = {}
        for notification in got:
            by_sender.setdefault(notification.sender, []).append(notification.data.digit)
        assert by_sender == {b.audio: ["5", "*"], a.audio: ["#"]}
        with pytest.raises(ValueError, match="DTMF digit"):
            a.audio.send_dtmf("x")
    finally:
        await hang_up(a, b)


async def test_hold_stops_sending_and_resumes():
    a, b = await call(offerer_codecs=["PCMU"])
    try:
        await asyncio.sleep(0.3)
        a.audio.update_direction("recvonly")  # the peer put itself on hold: we stop
        await asyncio.sleep(0.1)
        before = b.rtp.counters.rtp_received
        sent = a.rtp.counters.rtp_sent
        await asyncio.sleep(0.4)
        assert b.rtp.counters.rtp_received == before
        assert a.rtp.counters.rtp_sent == sent
        assert a.rtp.counters.rtp_received > 20  # a still receives what b sends
        assert rms(b.recorder.recent(0.2)) == 0
        a.audio.update_direction("sendrecv")
        await asyncio.sleep(0.4)
        assert b.rtp.counters.rtp_received > before + 10
        assert abs(dominant_frequency(b.recorder.recent(0.2)) - OFFERER_TONE) < 15
        assert a.audio.direction == "sendrecv"
    finally:
        await hang_up(a, b)


async def test_a_hold_offer_makes_the_answerer_listen_only():
    a, b = await call(offerer_codecs=["PCMU"], direction="sendonly")
    try:
        assert (a.audio.direction, b.audio.direction) == ("sendonly", "recvonly")
        await asyncio.sleep(0.5)
        assert b.rtp.counters.rtp_sent == 0 and a.rtp.counters.rtp_received == 0
        assert abs(dominant_frequency(b.recorder.recent(0.2)) - OFFERER_TONE) < 15
        assert rms(a.recorder.recent(0.2)) == 0
    finally:
        await hang_up(a, b)


async def test_a_peer_that_sends_nothing_times_out():
    with NotificationQueue("RTPAudioTransportDidTimeout") as queue:
        a, b = await call(offerer_codecs=["PCMU"], start_answerer=False, timeout=0.3)
        try:
            notification = await queue.get(timeout=2)
            assert notification.sender is a.audio
            assert a.rtp.counters.rtp_received == 0
            await asyncio.sleep(0.4)
            assert len(queue._items) == 0  # posted once
        finally:
            await hang_up(a, b)


async def test_rtcp_reports_give_round_trip_times_and_loss():
    a, b = await call(offerer_codecs=["PCMU"], rtcp_interval=0.2)
    try:
        # With 64 kbit/s of session bandwidth RFC 3550 spaces reports about 0.6 s apart.
        async with asyncio.timeout(6):
            while not all(
                p.audio.statistics.rtt_ms.count >= 1 and p.audio.statistics.tx.packets >= 50
                for p in (a, b)
            ):
                await asyncio.sleep(0.1)
        for peer in (a, b):
            stats = peer.audio.statistics
            assert stats.rtt_ms.count >= 1 and 0 <= stats.rtt_ms.mean < 50
            assert stats.tx.packets >= 50 and stats.tx.packets_lost == 0
            assert stats.rx.fraction_lost == 0 and stats.rx.jitter_ms < 20
            assert peer.rtp.counters.rtcp_received >= 1
        assert a.audio.jitter_buffer_statistics.played >= 40
    finally:
        await hang_up(a, b)


async def test_state_checks():
    a = await side(OFFERER_TONE)
    try:
        transport = AudioTransport(a.mixer, a.rtp, codecs=["PCMU"])
        with pytest.raises(AudioTransportError, match="started"):
            transport.send_dtmf("1")
        with pytest.raises(AudioTransportError, match="INIT"):
            AudioTransport(a.mixer, a.rtp)  # the RTPTransport is LOCAL now
        with pytest.raises(ValueError, match="ptime"):
            AudioTransport(a.mixer, RTPTransport(), ptime=25)
        assert transport.statistics is None and transport.slot is None
    finally:
        await hang_up(a)


async def test_calls_share_clocks_and_leave_them(monkeypatch):
    """Transports of the same phase share one timer (two phases here, so that a few calls
    share them); every call still carries its audio both ways, and stopping them all
    leaves no clock (and so no timer) behind."""
    from sipsimple.core.media import audiotransport

    monkeypatch.setattr(audiotransport, "BATCHED_PHASE_SLOTS", 2)  # G.711 calls
    calls = 6
    loop = asyncio.get_running_loop()
    a, b = await side(OFFERER_TONE), await side(ANSWERER_TONE)
    peers = [(a, b)]
    for _ in range(calls - 1):
        extra_a = Side(a.mixer, RTPTransport(local_address=LOCAL))
        extra_b = Side(b.mixer, RTPTransport(local_address=LOCAL))
        await extra_a.rtp.set_INIT()
        await extra_b.rtp.set_INIT()
        peers.append((extra_a, extra_b))
    audios = []
    try:
        for x, y in peers:
            x.audio = AudioTransport(x.mixer, x.rtp, codecs=["PCMU"])
            offer = written(x.audio.get_local_media())
            y.audio = AudioTransport(y.mixer, y.rtp, offer, 0, codecs=["PCMU"])
            answer = written(y.audio.get_local_media(offer, 0))
            x.audio.start(written(x.audio.get_local_media()), answer, 0)
            y.audio.start(answer, offer, 0)
            for peer in (x, y):
                peer.mixer.connect_slots(0, peer.audio.slot)
            audios += [x.audio, y.audio]
        await asyncio.sleep(0.6)
        clocks = {audio._clock for audio in audios}
        assert None not in clocks
        assert len(clocks) <= 2 * 2 < len(audios)  # two mixers, two phases each
        assert all(audio in clock.members for audio in audios for clock in [audio._clock])
        before = [(x.rtp.counters.rtp_received, y.rtp.counters.rtp_received) for x, y in peers]
        await asyncio.sleep(0.5)
        for (x, y), (got_x, got_y) in zip(peers, before, strict=True):
            # 25 packets in 0.5 s each way, give or take the loop's timing
            assert x.rtp.counters.rtp_received - got_x >= 15
            assert y.rtp.counters.rtp_received - got_y >= 15
            assert x.audio.jitter_buffer_statistics.played >= 20
        for audio in audios[::2]:  # half of them leave first
            audio.stop()
        await asyncio.sleep(0.1)
        assert all(audio._clock is None for audio in audios[::2])
        still = audios[1::2]
        counts = [audio.transport.counters.rtp_sent for audio in still]
        await asyncio.sleep(0.2)
        assert all(
            audio.transport.counters.rtp_sent >= count + 7
            for audio, count in zip(still, counts, strict=True)
        )
    finally:
        for x, y in peers[1:]:
            for peer in (x, y):
                peer.audio.stop()
                await peer.rtp.stop()
        await hang_up(a, b)
    assert not [key for key in audiotransport._clocks if key[0] is loop]


async def test_a_transport_stopped_by_its_timeout_observer_sends_nothing_more():
    """stop() from inside the clock's wake-up (an observer of the timeout) takes the
    transport off the clock at once: no packet after it, no clock left for it."""
    from sipsimple.core.media import audiotransport
    from sipsimple.notification import NotificationCenter

    a, b = await call(offerer_codecs=["PCMU"], start_answerer=False, timeout=0.3)

    class StopOnTimeout:
        def handle_notification(self, notification):
            notification.sender.stop()

    observer = StopOnTimeout()
    NotificationCenter().add_observer(observer, name="RTPAudioTransportDidTimeout", sender=a.audio)
    try:
        async with asyncio.timeout(3):
            while a.audio.is_started:
                await asyncio.sleep(0.05)
        sent = a.rtp.counters.rtp_sent
        assert sent > 10
        await asyncio.sleep(0.2)
        assert a.rtp.counters.rtp_sent == sent
        assert a.audio._clock is None
        assert all(a.audio not in clock.members for clock in audiotransport._clocks.values())
    finally:
        NotificationCenter().remove_observer(
            observer, name="RTPAudioTransportDidTimeout", sender=a.audio
        )
        await hang_up(a, b)


async def test_the_packets_on_the_wire_number_time_and_mark_each_frame():
    """Audio, a DTMF digit in its place, a pause (hold) and audio again: one SSRC, no gap
    in sequence numbers, timestamps a frame apart (the paused frames' time passes), the
    marker bit on the first packet and on the first after the pause."""
    from sipsimple.media.rtp import RTPPacket

    a, b = await call(offerer_codecs=["PCMU"], answerer_codecs=["PCMU"])
    wire: list[RTPPacket] = []
    send = a.rtp.send_rtp
    a.rtp.send_rtp = lambda data: (wire.append(RTPPacket.parse(bytes(data))), send(data))[1]
    try:
        await asyncio.sleep(0.2)
        a.audio.send_dtmf("7")
        await asyncio.sleep(0.4)
        a.audio.update_direction("recvonly")
        await asyncio.sleep(0.1)
        a.audio.update_direction("sendrecv")
        resumed = len(wire)
        await asyncio.sleep(0.2)
    finally:
        a.rtp.send_rtp = send
        await hang_up(a, b)
    audio = [p for p in wire if p.payload_type == 0]
    events = [p for p in wire if p.payload_type != 0]
    assert len({p.ssrc for p in wire}) == 1 and len(audio) > 20 and events
    assert all(len(p.payload) == 160 for p in audio)
    for previous, packet in itertools.pairwise(wire):
        assert packet.sequence_number == (previous.sequence_number + 1) & 0xFFFF
    steps = [(q.timestamp - p.timestamp) & 0xFFFFFFFF for p, q in itertools.pairwise(audio)]
    assert all(step % 160 == 0 and step > 0 for step in steps)
    first_after = audio.index(wire[resumed])
    assert [i for i, p in enumerate(audio) if p.marker] == [0, first_after]
    assert steps[first_after - 1] >= 160 * 4  # the 0.1 s on hold passed unsent
    assert len({p.timestamp for p in events}) == 1 and events[0].marker
