"""The lane: G.711 calls of a shared clock whose jitter buffers a JitterBank runs.

Calls between two mixers over loopback, each carrying a tone of its own both ways.  A
call is banked (``audio._lane`` set) once its buffer is steady; it must then sound, count
and notify as it does on its own JitterBuffer, go back to it on anything unusual and come
back later.  Most tests run on an event loop whose clock jumps to the next timer
(benchmarks.bench_rtp_calls.VirtualClockLoop): deterministic and quick.

Run inside a private network namespace:
  unshare -n sh -c 'ip link set lo up; PYTHONPATH=src python -m pytest \\
      tests/integration/test_audio_lane.py'
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import socket
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from benchmarks.bench_rtp_calls import VirtualClockLoop
from tests.support.audio import Recorder, Tone, analyse

from sipsimple.core.media import AudioTransport, RTPTransport, audiotransport
from sipsimple.core.sdp import SDPConnection, SDPSession
from sipsimple.media import jitterbank, rtcpsession, rtp
from sipsimple.media.devices import DummyDevice
from sipsimple.media.mixer import AudioMixer
from sipsimple.notification import NotificationQueue

pytestmark = pytest.mark.timeout(30)

LOCAL = "127.0.0.1"


def written(media: object) -> SDPSession:
    return SDPSession.parse(str(SDPSession(LOCAL, connection=SDPConnection(LOCAL), media=[media])))


@dataclass
class Call:
    """Both ends of one call: index 0 on mixer a (the offerer), 1 on mixer b."""

    audios: tuple[AudioTransport, AudioTransport]
    rtps: tuple[RTPTransport, RTPTransport]
    tones: tuple[float, float]  # what each end sends
    recorders: tuple[Recorder, Recorder]  # what each end plays
    ports: list[tuple[AudioMixer, int]] = field(default_factory=list)

    def heard(self, end: int, frames: int = 25) -> float:
        """The frequency end ``end`` played over its last ``frames`` frames."""
        recorder = self.recorders[end]
        return analyse(recorder.recent(frames), recorder.rate)["frequency"]

    def hears_its_peer(self, end: int, frames: int = 25) -> bool:
        recorder = self.recorders[end]
        peer = self.tones[1 - end]
        found = analyse(recorder.recent(frames), recorder.rate, (peer,))
        return abs(found["frequency"] - peer) < 15 and found["share"][peer] > 0.9


class Calls:
    """Two mixers at ``rate`` and calls between them over loopback.

    Every mixer frame, each end's ``_lane`` is sampled: ``banked[audio]`` says, frame by
    frame, whether the call's buffer was in a lane.
    """

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.mixers = [
            AudioMixer(None, None, rate, slot_count=64, device=DummyDevice()) for _ in range(2)
        ]
        self.calls: list[Call] = []
        self.banked: dict[AudioTransport, list[bool]] = {}
        self.mixers[0].add_tick_hook(self._sample)
        for mixer in self.mixers:
            mixer.start()

    def _sample(self) -> None:
        for audio, history in self.banked.items():
            history.append(audio._lane is not None)

    async def add(
        self, codec: str, tones: tuple[float, float], encryption: str | None = None, **options: Any
    ) -> Call:
        rtps = (
            RTPTransport(encryption, local_address=LOCAL),
            RTPTransport(encryption, local_address=LOCAL),
        )
        await asyncio.gather(*(transport.set_INIT() for transport in rtps))
        offerer = AudioTransport(self.mixers[0], rtps[0], codecs=[codec], **options)
        offer = written(offerer.get_local_media())
        answerer = AudioTransport(self.mixers[1], rtps[1], offer, 0, codecs=[codec], **options)
        answer = written(answerer.get_local_media(offer, 0))
        offerer.start(offer, answer, 0)
        answerer.start(answer, offer, 0)
        recorders = (Recorder(self.rate), Recorder(self.rate))
        call = Call((offerer, answerer), rtps, tones, recorders)
        for mixer, audio, tone, recorder in zip(
            self.mixers, call.audios, tones, recorders, strict=True
        ):
            source = mixer.add_port(Tone(tone, self.rate))
            sink = mixer.add_port(recorder)
            mixer.connect_slots(source, audio.slot)
            mixer.connect_slots(audio.slot, sink)
            call.ports += [(mixer, source), (mixer, sink)]
            self.banked[audio] = []
        self.calls.append(call)
        return call

    async def hang_up(self, call: Call) -> None:
        for audio in call.audios:
            audio.stop()
        for mixer, slot in call.ports:
            mixer.remove_port(slot)
        await asyncio.gather(*(transport.stop() for transport in call.rtps))
        self.calls.remove(call)

    async def close(self) -> None:
        for call in list(self.calls):
            await self.hang_up(call)
        self.mixers[0].remove_tick_hook(self._sample)
        for mixer in self.mixers:
            mixer.close()


def run_virtual(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """``main()`` on a fresh virtual-clock loop; an exception the loop would only log
    fails the test."""
    errors: list[dict[str, Any]] = []
    loop = VirtualClockLoop()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        result = loop.run_until_complete(main())
    finally:
        loop.close()
    assert not errors, errors
    return result


@pytest.fixture
def deterministic(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Call before each run: the same phases, lane admissions, RTP numbers and RTCP
    intervals, and calls sharing clocks."""

    def reset() -> None:
        monkeypatch.setattr(audiotransport, "_phases", itertools.count())
        monkeypatch.setattr(audiotransport, "_admissions", itertools.count())
        monkeypatch.setattr(rtp.secrets, "randbits", random.Random(5).getrandbits)
        seeds = itertools.count()  # RTCP report intervals
        monkeypatch.setattr(
            rtcpsession, "random", SimpleNamespace(Random=lambda: random.Random(next(seeds)))
        )
        monkeypatch.setattr(audiotransport, "BATCHED_PHASE_SLOTS", 1)

    return reset


@pytest.fixture
def no_errors_logged(caplog: pytest.LogCaptureFixture):
    yield
    records = [*caplog.get_records("setup"), *caplog.get_records("call")]
    errors = [r for r in records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


# -- disturbances on the way in ----------------------------------------------------------------


class Disturber:
    """Stands in for an end's RTPTransport.send_rtp: from its packet ``at`` on (counting
    every RTP packet the end sends), does ``kind`` to what its peer receives."""

    def __init__(self, audio: AudioTransport, kind: str, at: int) -> None:
        self.audio = audio
        self.kind = kind
        self.at = at
        self.sent = 0
        self.held: bytes | None = None
        self.old = b""
        self.send = audio.transport.send_rtp
        self.peer = (LOCAL, 0)  # where the peer receives RTP (set by the caller)
        audio.transport.send_rtp = self  # type: ignore[method-assign]

    def __call__(self, data: bytes) -> None:
        index, self.sent = self.sent, self.sent + 1
        if index == self.at - 8:
            self.old = data
        packetizer = self.audio._packetizer
        kind, offset = self.kind, index - self.at
        if offset < 0 or kind == "none":
            self.send(data)
        elif kind == "lost" and offset == 0:
            pass
        elif kind == "duplicate" and offset == 0:
            self.send(data)
            self.send(data)
        elif kind in ("reorder", "late") and offset in (0, 1, 5):
            if offset == 0:  # held back: after the next packet, or four more
                self.held = data
            else:
                self.send(data)
                if offset == (1 if kind == "reorder" else 5):
                    self.send(self.held)  # type: ignore[arg-type]
        elif kind in ("talkspurt", "silence") and offset < (5 if kind == "talkspurt" else 20):
            # Nothing sent, the time passes: the next packet numbered as if nothing was due
            # in between (RFC 3550: a talkspurt after silence), its marker bit set.
            packetizer.sequence_number = (packetizer.sequence_number - 1) & 0xFFFF
            self.audio._marker = True
        elif kind == "ssrc" and offset == 0:  # a new source from here on
            self.send(data)
            packetizer.ssrc = 0x5EED0001
        elif kind == "garbage" and offset == 0:
            self.send(bytes(len(data)))  # not RTP (version 0), of the lane's size
            self.send(b"\x80\x00\x01")  # too short
            self.send(data)
        elif kind == "size" and offset == 0:  # half a frame's payload
            self.send(data[: 12 + (len(data) - 12) // 2])
        elif kind == "payload type" and offset == 0:  # the other G.711 law, same size,
            self.send(data[:1] + bytes([data[1] ^ 8]) + data[2:])
            self.send(self.old)  # then a stale duplicate: played already
        elif kind == "jitter" and offset < 60:  # 0 to 40 ms late, in a pattern
            delay = (offset * 7 % 5) * 0.01 * (offset < 30) + (offset % 3) * 0.004
            asyncio.get_running_loop().call_later(delay, self.send, data)
        elif kind == "seq jump" and offset == 0:  # the sender's numbering restarts
            self.send(data)
            packetizer.sequence_number = (packetizer.sequence_number + 20000) & 0xFFFF
        elif kind == "stray" and offset == 0:  # from an address the peer is not at
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stray:
                stray.sendto(data[:8] + b"\x5e\xed\xf0\x0d" + data[12:], self.peer)
            self.send(data)
        elif kind == "foreign" and offset == 0:  # a packet of another source, then ours
            self.send(data[:8] + b"\x5e\xed\xf0\x0d" + data[12:])
            self.send(data)
        elif kind == "dtmf" and offset == 0:
            self.audio.send_dtmf("5")
            self.send(data)
        else:
            self.send(data)


# Disturbances a lane must hand back to the JitterBuffer, and those it takes itself.
EJECTING = ("talkspurt", "silence", "ssrc", "seq jump", "size", "payload type")
KEPT = ("none", "lost", "duplicate", "reorder", "late", "jitter", "garbage", "dtmf")
DISTURBED_AT = 75  # packets: the calls are banked by their 60th frame (FIRST_ADMISSION)


async def disturbed_calls(
    rate: int, kinds: tuple[str, ...], seconds: float, **options: Any
) -> dict[str, Any]:
    """A call per disturbance (AudioTransport ``options``), run for ``seconds``: what
    each end played, its jitter buffer's and RTCP's statistics, when it was banked.
    Every other call is PCMA; no tone has a whole number of periods in 10 or 20 ms, so
    audio played early or late differs."""
    net = Calls(rate)
    calls = []
    for index, kind in enumerate(kinds):
        codec = ("PCMU", "PCMA")[index % 2]
        call = await net.add(codec, (310.0 + 113 * index, 1810.0 + 73 * index), **options)
        disturber = Disturber(call.audios[0], kind, DISTURBED_AT + 2 * index)
        disturber.peer = (LOCAL, call.rtps[1].local_rtp_port)
        calls.append(call)
    with NotificationQueue("RTPAudioStreamGotDTMF") as digits:
        await asyncio.sleep(seconds)
    ends = {
        audio: (index, end)
        for index, call in enumerate(calls)
        for end, audio in enumerate(call.audios)
    }
    result = {
        "digits": [(ends[n.sender], n.data.digit) for n in digits._items],
        "heard": [[call.recorders[end].frames for end in (0, 1)] for call in calls],
        "jitter": [
            [asdict(call.audios[end].jitter_buffer_statistics) for end in (0, 1)] for call in calls
        ],
        "rx": [[asdict(call.audios[end].statistics.rx) for end in (0, 1)] for call in calls],
        "banked": [[list(net.banked[audio]) for audio in call.audios] for call in calls],
        "garbage": [call.rtps[1].counters.garbage for call in calls],
        "filtered": [
            (call.rtps[1].counters.wrong_address, call.rtps[1].counters.wrong_ssrc)
            for call in calls
        ],
        "unexpected": [call.audios[1].unexpected_payloads for call in calls],
        "tones": [call.hears_its_peer(1) and call.hears_its_peer(0) for call in calls],
    }
    await net.close()
    return result


def with_and_without_lanes(
    rate: int,
    kinds: tuple[str, ...],
    deterministic: Callable[[], None],
    monkeypatch: pytest.MonkeyPatch,
    seconds: float = 3.6,
    **options: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The same disturbed calls run twice on the virtual clock: with lanes, and with every
    call on its JitterBuffer (FIRST_ADMISSION and ADMIT_EVERY out of reach).
    QUANTILE_EVERY 1: the bank brings the floor up to date at every frame, as a buffer
    does, and so plays exactly as one."""
    monkeypatch.setattr(jitterbank, "QUANTILE_EVERY", 1)
    runs = []
    for lanes in (True, False):
        deterministic()
        monkeypatch.setattr(audiotransport, "ADMIT_EVERY", 50 if lanes else 10**9)
        monkeypatch.setattr(audiotransport, "FIRST_ADMISSION", 10 if lanes else 10**9)
        runs.append(run_virtual(lambda: disturbed_calls(rate, kinds, seconds, **options)))
    return runs[0], runs[1]


def assert_played_alike(
    kinds: tuple[str, ...], rate: int, banked: dict[str, Any], alone: dict[str, Any]
) -> None:
    """Every frame each end gave the mixer, and every statistic, the same in both runs.
    At 8000 Hz (no resampling) to the bit; at 48000 Hz within 1 of 32768: the float32
    matrix product that resamples a group of calls rounds a row's last bit apart with the
    number of rows, and a banked call is resampled in other groups."""
    tolerance = 0 if rate == 8000 else 1
    for kind, heard, heard_alone in zip(kinds, banked["heard"], alone["heard"], strict=True):
        for end in (0, 1):
            ours, theirs = heard[end], heard_alone[end]
            assert len(ours) == len(theirs) > 90, (kind, end)
            for n, (a, b) in enumerate(zip(ours, theirs, strict=True)):
                assert (a is None) == (b is None), (kind, end, n)
                if a is not None:
                    worst = int(np.abs(a.astype(np.int32) - b).max())  # type: ignore[operator]
                    assert worst <= tolerance, (kind, end, n, worst)
    for key in ("jitter", "rx"):
        for kind, ours, theirs in zip(kinds, banked[key], alone[key], strict=True):
            for end in (0, 1):
                # (delays in the last bits only: numpy and Python round apart)
                assert ours[end] == pytest.approx(theirs[end], rel=1e-9), (key, kind, end)
    for key in ("garbage", "filtered", "unexpected", "digits"):
        assert banked[key] == alone[key], key
    assert all(banked["tones"]) and all(alone["tones"])
    # Each disturbance did what it is named for (in both runs: they are alike).
    expected = {
        "lost": ("lost", 1),
        "duplicate": ("duplicates", 1),
        "late": ("late", 1),
        "payload type": ("duplicates", 1),
        "ssrc": ("resets", 1),
        "seq jump": ("resets", 1),
    }
    for kind, statistics in zip(kinds, banked["jitter"], strict=True):
        name, least = expected.get(kind, ("received", 90))
        assert statistics[1][name] >= least, (kind, name)
    garbage = [
        count for kind, count in zip(kinds, banked["garbage"], strict=True) if kind == "garbage"
    ]
    assert garbage in ([], [2])
    for kind, (strays, foreign) in zip(kinds, banked["filtered"], strict=True):
        assert (strays > 0) == (kind == "stray"), kind
        assert (foreign > 0) == (kind in ("foreign", "ssrc")), kind
    assert all(
        (count > 0) == (kind == "payload type")
        for kind, count in zip(kinds, banked["unexpected"], strict=True)
    )
    dtmf = [index for index, kind in enumerate(kinds) if kind == "dtmf"]
    assert banked["digits"] == [((index, 1), "5") for index in dtmf]
    assert not any(any(history) for call in alone["banked"] for history in call)


# Packets the RTPTransport drops: played alike, but they eject the call (see
# test_packets_the_transport_drops_leave_the_call_banked).
DROPPED = ("stray", "foreign")
MAIN_KINDS = {
    8000: tuple(k for k in (*KEPT, *DROPPED, *EJECTING) if k != "silence"),
    48000: tuple(k for k in (*KEPT, *DROPPED, *EJECTING) if k not in ("silence", "size")),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("rate", [8000, 48000])
def test_a_lane_plays_what_the_jitter_buffers_play(
    rate, deterministic, monkeypatch, no_errors_logged
):
    """Calls disturbed on the way in (a loss, a duplicate, a reordered pair, a late
    packet, jitter, garbage, a stray from another address, a DTMF digit; a talkspurt, a
    new SSRC, a sequence jump, a packet of half a frame, the other G.711 law and then a
    stale duplicate) play with lanes what they play without; the disturbances a bank
    cannot take send the call back to its JitterBuffer, and it comes back."""
    kinds = MAIN_KINDS[rate]
    banked, alone = with_and_without_lanes(rate, kinds, deterministic, monkeypatch)
    assert_played_alike(kinds, rate, banked, alone)
    # The jitter moved the delay: a frame was skipped once it came down.
    assert banked["jitter"][kinds.index("jitter")][1]["discarded"] >= 1
    frames = len(banked["banked"][0][1])
    for index, (kind, history) in enumerate(zip(kinds, banked["banked"], strict=True)):
        if kind in DROPPED:
            continue
        receiving = np.array(history[1])
        disturbed = DISTURBED_AT + 2 * index  # about the mixer frame it arrives in
        assert receiving.any(), kind
        first = int(np.argmax(receiving))
        assert first < disturbed - 10, kind  # banked before it
        assert receiving[-1], kind  # banked (again) at the end
        out = np.flatnonzero(~receiving[first:]) + first
        if kind in EJECTING:
            assert len(out) and out[0] >= disturbed, kind
        else:
            assert not len(out), kind
        assert sum(history[0]) > frames / 2, kind  # the other way, undisturbed
    # Most frames were played by the lane.
    played = sum(sum(history[1]) for history in banked["banked"])
    assert played > 0.5 * frames * len(kinds)


@pytest.mark.parametrize("ptime", [10, 30])
def test_lanes_of_other_packet_times(ptime, deterministic, monkeypatch, no_errors_logged):
    """Calls of 10 and 30 ms packets (lanes of 80 and 240 octets; a packet is half a mixer
    frame, or one and a half) play with lanes what they play without."""
    kinds = ("none", "lost", "duplicate", "reorder", "jitter", "talkspurt")
    banked, alone = with_and_without_lanes(
        48000, kinds, deterministic, monkeypatch, 3.6, ptime=ptime
    )
    assert_played_alike(kinds, 48000, banked, alone)
    histories = [history for call in banked["banked"] for history in call]
    assert all(any(history) for history in histories)
    # (a lane admits a call at its 50th packet: 1.5 s of 30 ms packets)
    assert sum(map(sum, histories)) > 0.4 * len(histories) * len(histories[0])


def test_a_lane_grows_past_its_first_rows(deterministic, monkeypatch, no_errors_logged):
    """More calls than a bank's first rows (16) on one clock: the bank grows while it
    holds rows, and they all still play as on their own buffers."""
    kinds = ("lost", *["none"] * 17)
    banked, alone = with_and_without_lanes(8000, kinds, deterministic, monkeypatch, 2.0)
    assert_played_alike(kinds, 8000, banked, alone)
    # One clock a side (BATCHED_PHASE_SLOTS 1): 18 rows of a bank each, at the end.
    assert all(history[-1] for call in banked["banked"] for history in call)


def test_srtp_calls_stay_on_their_jitter_buffers(deterministic, no_errors_logged):
    """An SRTP call's packets are decrypted one by one: it is never banked, and plays on
    next to a banked call of the same clock."""
    deterministic()

    async def main() -> None:
        net = Calls(8000)
        secure = await net.add("PCMU", (470.0, 1430.0), encryption="opportunistic")
        plain = await net.add("PCMU", (710.0, 2230.0))
        await asyncio.sleep(2.0)
        assert secure.rtps[0].srtp_active and secure.rtps[1].srtp_active
        assert secure.audios[1]._clock is plain.audios[1]._clock  # one clock, one lane
        for end in (0, 1):
            assert not any(net.banked[secure.audios[end]])
            assert banked(plain.audios[end])
            assert secure.hears_its_peer(end) and plain.hears_its_peer(end)
        await net.close()

    run_virtual(main)


def test_packets_the_transport_drops_leave_the_call_banked(
    deterministic, monkeypatch, no_errors_logged
):
    """An RTP packet of the lane's size from an address the peer is not at, or of a
    source we do not receive, is dropped by the transport: nothing for the lane to hand
    back."""
    kinds = (*DROPPED, "none")
    banked, alone = with_and_without_lanes(8000, kinds, deterministic, monkeypatch, 2.5)
    assert_played_alike(kinds, 8000, banked, alone)
    for index, kind in enumerate(DROPPED):
        receiving = np.array(banked["banked"][index][1])
        assert receiving[DISTURBED_AT - 10], kind
        assert receiving[np.argmax(receiving) :].all(), kind


@pytest.mark.timeout(60)
def test_a_call_whose_peer_went_quiet_restarts_its_playout(
    deterministic, monkeypatch, no_errors_logged
):
    """The peer sends nothing for 20 frames (> IDLE_FRAMES) while banked: the bank stops
    the row's playout; the talkspurt that follows (its timestamps jumped) sends the call
    back to its JitterBuffer, stopped, which restarts playout as it does on its own."""
    kinds = ("silence", "none")
    banked, alone = with_and_without_lanes(8000, kinds, deterministic, monkeypatch)
    history = np.array(banked["banked"][0][1])
    assert history[DISTURBED_AT - 10] and not history[DISTURBED_AT + 25]  # it left the lane
    assert_played_alike(kinds, 8000, banked, alone)


@pytest.mark.timeout(60)
def test_a_packet_of_half_a_frame_before_a_lane_at_48000_hz(
    deterministic, monkeypatch, no_errors_logged
):
    """A packet of 80 octets while banked, with a mixer at 48 kHz: the call goes back to
    its JitterBuffer, whose decoded half frame waits for the next one before the
    resampler; when the call comes back to the lane it must play on from there."""
    kinds = ("size", "none")
    banked, alone = with_and_without_lanes(48000, kinds, deterministic, monkeypatch)
    history = np.array(banked["banked"][0][1])
    assert history[DISTURBED_AT - 10] and not history[DISTURBED_AT + 25]
    assert_played_alike(kinds, 48000, banked, alone)


# -- the lane in a call's life -----------------------------------------------------------------


def banked(audio: AudioTransport) -> bool:
    return audio._lane is not None


async def wait_banked(audios: list[AudioTransport], limit: float) -> float:
    """Seconds until every one of ``audios`` is banked (AssertionError after ``limit``)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not all(banked(audio) for audio in audios):
        assert loop.time() - start < limit, [banked(audio) for audio in audios]
        await asyncio.sleep(0.02)
    return loop.time() - start


@pytest.mark.timeout(20)
@pytest.mark.parametrize("rate", [8000, 48000])
async def test_calls_are_banked_and_carry_their_tones(rate, monkeypatch, no_errors_logged):
    """In real time: PCMU and PCMA calls sharing clocks are banked after about a second
    and a half, and while they are, each end plays the tone the other sends."""
    monkeypatch.setattr(audiotransport, "BATCHED_PHASE_SLOTS", 2)
    net = Calls(rate)
    try:
        calls = [
            await net.add(codec, (400.0 + 150 * i, 1900.0 + 130 * i))
            for i, codec in enumerate(["PCMU", "PCMA", "PCMU", "PCMA"])
        ]
        audios = [audio for call in calls for audio in call.audios]
        await wait_banked(audios, 3.0)
        assert {audio._lane for audio in audios} <= {
            lane for clock in audiotransport._clocks.values() for lane in clock.lanes.values()
        }
        await asyncio.sleep(0.6)
        for call in calls:
            for end in (0, 1):
                # The last half second: the peer's tone, played by the lane (a busy machine
                # may eject a call for a late or skipped packet: most of it, then).
                assert call.hears_its_peer(end), (call.tones, end, call.heard(end))
                assert sum(net.banked[call.audios[end]][-25:]) >= 20
    finally:
        await net.close()
    assert not any(key[0] is asyncio.get_running_loop() for key in audiotransport._clocks)


def test_dtmf_while_banked(deterministic, no_errors_logged):
    """A DTMF digit each way while banked: the telephone-event packets (another size) take
    the slow way and are notified with their digit, the audio stays in the lane."""
    deterministic()

    async def main() -> None:
        net = Calls(48000)
        call = await net.add("PCMU", (440.0, 1330.0))
        other = await net.add("PCMA", (630.0, 2010.0))
        audios = [*call.audios, *other.audios]
        await asyncio.sleep(1.5)
        assert all(banked(audio) for audio in audios)
        since = len(net.banked[call.audios[0]])
        received = [transport.counters.rtp_received for transport in call.rtps]
        played = [audio.jitter_buffer_statistics.received for audio in call.audios]
        with NotificationQueue("RTPAudioStreamGotDTMF") as queue:
            call.audios[0].send_dtmf("7")
            call.audios[1].send_dtmf("#")
            got = [await queue.get(timeout=1) for _ in range(2)]
            await asyncio.sleep(0.5)
            assert not queue._items  # one notification a digit
        assert {(n.sender, n.data.digit) for n in got} == {
            (call.audios[1], "7"),
            (call.audios[0], "#"),
        }
        for end, audio in enumerate(call.audios):
            assert all(net.banked[audio][since:]), end  # never left the lane
            # The telephone-event packets arrived, and not in the jitter buffer.
            events = call.rtps[end].counters.rtp_received - received[end]
            audio_packets = audio.jitter_buffer_statistics.received - played[end]
            assert events - audio_packets >= 3, end  # at least the 3 end packets
            assert call.hears_its_peer(end)
        assert other.hears_its_peer(0) and other.hears_its_peer(1)
        await net.close()

    run_virtual(main)


@pytest.mark.parametrize("hold", ["sendonly", "inactive"])
def test_hold_releases_a_banked_call_and_unhold_banks_it_again(
    hold, deterministic, no_errors_logged
):
    """Hold (we stop receiving) takes the call out of the lane at once, and nothing is
    played until unhold; then the peer's tone plays again and the call is banked later."""
    deterministic()

    async def main() -> None:
        net = Calls(8000)
        call = await net.add("PCMU", (470.0, 1430.0))
        other = await net.add("PCMU", (710.0, 2230.0))
        await asyncio.sleep(1.5)
        held = call.audios[1]
        assert banked(held) and banked(other.audios[1])
        played = held.jitter_buffer_statistics.played
        held.update_direction(hold)
        assert not banked(held)
        start = len(call.recorders[1].frames)
        await asyncio.sleep(1.0)
        assert held.jitter_buffer_statistics.played == played
        # (what the slot held already may still play: its last couple of frames)
        silent = call.recorders[1].recent(len(call.recorders[1].frames) - start - 3)
        assert len(silent) >= 256 and analyse(silent, call.recorders[1].rate)["rms"] == 0
        assert not any(net.banked[held][-45:])
        if hold == "sendonly":  # the peer still hears us
            assert call.hears_its_peer(0)
        held.update_direction("sendrecv")
        await asyncio.sleep(0.5)
        assert call.hears_its_peer(1) and not banked(held)
        assert held.jitter_buffer_statistics.played > played + 15
        await wait_banked([held], 1.5)
        await asyncio.sleep(0.5)
        assert call.hears_its_peer(1) and call.hears_its_peer(0)
        assert all(banked(audio) for audio in other.audios)
        assert other.hears_its_peer(1)  # undisturbed all along
        await net.close()

    run_virtual(main)


@pytest.mark.parametrize("silence", ["recvonly", "stop"])
def test_a_banked_call_times_out_when_its_peer_goes_quiet(silence, deterministic, no_errors_logged):
    """The peer stops sending (it stops receiving, or stops): RTPAudioTransportDidTimeout
    on the banked end ``timeout`` seconds after its last packet, once; a banked call whose
    peer goes on sending does not time out."""
    deterministic()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        net = Calls(8000)
        call = await net.add("PCMU", (470.0, 1430.0), timeout=1.0)
        other = await net.add("PCMA", (710.0, 2230.0), timeout=1.0)
        with NotificationQueue("RTPAudioTransportDidTimeout") as queue:
            await asyncio.sleep(1.5)
            quiet = call.audios[1]
            assert banked(quiet) and banked(other.audios[1])
            if silence == "stop":
                call.audios[0].stop()
            else:
                call.audios[0].update_direction("recvonly")
            stopped = loop.time()
            notification = await queue.get(timeout=2)
            waited = loop.time() - stopped
            await asyncio.sleep(1.5)
            assert not queue._items  # once, and not for the others
        assert notification.sender is quiet
        assert 1.0 - 0.04 <= waited <= 1.0 + 0.06, waited  # a frame's wake-ups either way
        assert all(banked(audio) for audio in other.audios)
        await net.close()

    run_virtual(main)


def test_calls_leave_and_join_a_lane_whose_other_calls_play_on(deterministic, no_errors_logged):
    """Banked calls stop (one end first, or both) while others of their lane play on; new
    calls take the rows they left.  Every call still plays its peer's tone, and nothing
    is logged or raised on the way."""
    deterministic()

    async def main() -> None:
        net = Calls(48000)
        calls = [
            await net.add(codec, (350.0 + 170 * i, 1870.0 + 110 * i))
            for i, codec in enumerate(["PCMU", "PCMA", "PCMU", "PCMA"])
        ]
        await asyncio.sleep(1.5)
        assert all(banked(audio) for call in calls for audio in call.audios)
        lanes = {call.audios[end]._lane for call in calls for end in (0, 1)}
        assert len(lanes) == 2  # a lane on each side, every call in it
        freed = {call.audios[end]._row for call in calls[1:3] for end in (0, 1)}
        calls[1].audios[1].stop()  # one end first: its peer goes on sending to it
        assert not banked(calls[1].audios[1])
        await asyncio.sleep(0.1)
        await net.hang_up(calls[1])
        await net.hang_up(calls[2])
        assert not any(banked(audio) for call in calls[1:3] for audio in call.audios)
        assert all(banked(audio) for call in (calls[0], calls[3]) for audio in call.audios)
        joined = [
            await net.add(codec, (520.0 + 190 * i, 2130.0 + 90 * i))
            for i, codec in enumerate(["PCMA", "PCMU"])
        ]
        await asyncio.sleep(0.6)
        for call in (calls[0], calls[3]):
            assert all(banked(audio) for audio in call.audios)
            assert call.hears_its_peer(0) and call.hears_its_peer(1)
        await asyncio.sleep(1.2)
        for call in (calls[0], calls[3], *joined):
            assert all(banked(audio) for audio in call.audios)
            assert call.hears_its_peer(0) and call.hears_its_peer(1), call.tones
        assert {audio._lane for call in joined for audio in call.audios} == lanes
        assert {audio._row for call in joined for audio in call.audios} <= freed  # reused
        for call in (calls[0], calls[3]):  # no frame went missing on the way
            for end in (0, 1):
                statistics = call.audios[end].jitter_buffer_statistics
                assert statistics.lost == statistics.underruns == statistics.late == 0
        await net.close()
        assert not any(key[0] is asyncio.get_running_loop() for key in audiotransport._clocks)

    run_virtual(main)


def test_rtcp_statistics_count_what_a_lane_receives(deterministic, no_errors_logged):
    """While banked, the RTCP statistics grow with every packet received (the lane
    accounts for them), the peer's reports say nothing was lost, and the jitter buffer
    statistics count the RTP packets the transport received."""
    deterministic()

    async def main() -> None:
        net = Calls(8000)
        call = await net.add("PCMU", (470.0, 1430.0), rtcp_interval=0.5)
        other = await net.add("PCMA", (710.0, 2230.0), rtcp_interval=0.5)
        await asyncio.sleep(1.5)
        assert all(banked(audio) for audio in (*call.audios, *other.audios))
        before = [audio.statistics.rx.packets for audio in call.audios]
        sent = [transport.counters.rtp_sent for transport in call.rtps]
        await asyncio.sleep(2.0)
        for end, audio in enumerate(call.audios):
            assert all(net.banked[audio][-100:]), end
            peer = 1 - end
            statistics = audio.statistics
            grown = statistics.rx.packets - before[end]
            sent_since = call.rtps[peer].counters.rtp_sent - sent[peer]
            assert sent_since == 100 and abs(grown - sent_since) <= 1, (end, grown)
            assert statistics.rx.packets_lost == 0 and statistics.rx.jitter_ms < 1
            # What the peer learned from our reports: nothing lost, and a round trip.
            assert call.audios[peer].statistics.tx.packets_lost == 0
            assert call.audios[peer].statistics.rtt_ms.count >= 1
            received = call.rtps[end].counters.rtp_received
            assert audio.jitter_buffer_statistics.received == received
            assert audio.statistics.rx.packets == received  # all accounted, once ingested
        await net.close()

    run_virtual(main)
