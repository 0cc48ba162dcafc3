"""AudioTransport: one audio stream over an RTPTransport, with a slot in the audio mixer.

It describes our codecs in SDP (rtpmap/fmtp in preference order, telephone-event, ptime),
picks the codec the negotiation settled on and then runs the stream on the loop:

* Sending: every ptime, on an absolute-deadline clock (frame n at ``t0 + n * ptime``, so
  wake-up jitter never accumulates), it takes what the mixer mixed for our slot, resamples
  it to the codec's rate, encodes and sends it - or sends the telephone-event packet of a
  DTMF digit in its place.
* Receiving: RTP packets go to the jitter buffer (or to the DTMF receiver); after our
  sends, on the same clock, the buffer says what to play, which is decoded (or
  concealed: a lost frame is rebuilt from the next packet's in-band FEC when that packet
  is here and the codec has FEC, Opus), resampled to the mixer's rate and queued in our
  slot for the mixer's next tick.
* RTCP: reports at the RFC 3550 interval and statistics (RTCPSession), BYE on stop(); the
  loss the peer reports on our packets goes to the codec (Opus plans its FEC for it).
* Notifications: RTPAudioStreamGotDTMF (digit) and RTPAudioTransportDidTimeout (no RTP
  for ``timeout`` seconds while we expect to receive).

Once the mixer has ticked, each transport takes a phase against the mixer's clock, so the
packets of many calls spread over the frame period instead of leaving in one burst at the
mixer's tick; transports of the same phase and ptime share one timer (a _SharedClock), and
each wake-up does the numeric work of all of them at once: one matrix product resamples
every call's frame (ResamplerBank), one table lookup encodes every G.711 frame, and
their playout is as batched: one table lookup decodes every G.711 packet, one matrix
product per conversion resamples them.  The playout is not done for all the calls of a
mixer at once in its tick: that made one burst (50 Opus calls, ~3 ms; 100 G.711 calls,
~2.3 ms) which delayed the sends due after it (at 100 G.711 calls, p99 send lateness
2.4-3.8 ms when each clock plays out its calls, 2.5-29.7 ms in the tick).

Our mixer slot (_Slot) is two short queues of frames: what we play, taken by the mixer's
tick, and what it mixed for us, taken by our next send.  A mixer may tick on another
thread: the queues are deques, whose append and popleft are atomic.  Methods must be
called on the loop that runs the transport (the SIP thread).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import threading
import time
import weakref
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence

import numpy as np

from sipsimple.core.errors import SIPCoreError
from sipsimple.core.media.rtptransport import RTPTransport
from sipsimple.core.sdp import (
    DIRECTIONS,
    SDPAttribute,
    SDPMediaStream,
    SDPNegotiationError,
    answer_direction,
    answer_media,
    effective_direction,
)
from sipsimple.core.sdp.model import BaseSDPMediaStream, BaseSDPSession
from sipsimple.media.codecs import AudioCodec, CodecInfo, available_codecs, codec_info, create_codec
from sipsimple.media.dtmf import TELEPHONE_EVENT_FMTP, DTMFReceiver, DTMFSender
from sipsimple.media.errors import CodecError, RTCPParseError
from sipsimple.media.jitterbank import AUDIO, SILENT, JitterBank, headers
from sipsimple.media.jitterbuffer import (
    FrameKind,
    JitterBuffer,
    JitterBufferStatistics,
    JitterFrame,
)
from sipsimple.media.mixer import FRAMES_PER_SECOND, PTIME, AudioMixer, FramePacer, SlotPort
from sipsimple.media.resample import Resampler, ResamplerBank
from sipsimple.media.rtcpsession import RTCPSession, StreamStatistics
from sipsimple.media.rtp import RTPPacket, RTPPacketizer
from sipsimple.notification import NotificationCenter, NotificationData

__all__ = ["AudioTransport", "AudioTransportError"]

logger = logging.getLogger(__name__)

DEFAULT_PTIME = 20
DEFAULT_TIMEOUT = 30.0
# telephone-event at 8000 Hz goes with every codec (baresip, Asterisk, most gateways); at
# 48000 Hz it is what RFC 4733 asks for next to Opus (WebRTC offers both).
TELEPHONE_EVENTS = ((101, 8000), (110, 48000))
COMFORT_NOISE = 13
MAX_BURST = 5  # frames sent at once to catch up after a late wake-up; later ones skipped
# Frames waiting in our slot beyond a packet's worth and this many are stale, the oldest
# dropped: mixed audio our sends did not take (the mixer caught up after a stall), and
# received audio the mixer did not take (it stopped ticking, or ticks on another thread).
MAX_QUEUED_FRAMES = 2
# Our ticks fall within this part of the mixer's frame period, after its tick, at one of
# PHASE_SLOTS phases (about 1 ms apart with 20 ms frames) - or of BATCHED_PHASE_SLOTS for a
# codec that encodes and decodes many calls' frames at once (G.711): the bigger a clock's
# group, the less each call's share of its numpy work (measured at 100-200 calls: 4 phases
# instead of 14 cut the CPU per packet by a fifth; with their jitter buffers in a lane, 2
# instead of 4 take 29-31 us/pkt against 32-34 at 250 calls, for bursts of twice the
# size: p99 lateness at 200 calls 3.5-4.6 ms against 3.1-4.2), while a codec whose work
# is per call (Opus, ~100 us a frame) keeps its bursts short over more phases (50 Opus
# calls: p99 lateness 5.5 ms with 14, 10 ms with 4).
PHASE_LOW, PHASE_HIGH = 0.15, 0.85
PHASE_SLOTS = 14
BATCHED_PHASE_SLOTS = 2
GOLDEN_RATIO = 0.6180339887498949
_phases = itertools.count()
# A transport's first try to join a lane comes after FIRST_ADMISSION frames and a share of
# ADMIT_EVERY that differs from one transport to the next: an adoption takes ~0.1 ms, and
# hundreds of calls started together would all try in the same frame.
FIRST_ADMISSION = 10
_admissions = itertools.count()
_ClockKey = tuple[asyncio.AbstractEventLoop, AudioMixer, float, float]  # period, phase
# A clock's members whose jitter buffers one JitterBank runs share a lane: by the codec's
# clock rate, RTP ticks a packet and payload octets a packet.
_LaneKey = tuple[int, int, int]
ADMIT_EVERY = 50  # frames between a member's tries to join its clock's lane
# Members whose packet of this interval is decoded with the others of its codec go
# together by (decode_many, the bank that resamples them or None, codec samples a packet).
_BatchKey = tuple[object, ResamplerBank | None, int]
_clocks: dict[_ClockKey, _SharedClock] = {}
_watches: dict[tuple[asyncio.AbstractEventLoop, AudioMixer], _TickWatch] = {}
# A bank's work buffers serve one loop at a time: each loop (thread) has its own banks.
_banks: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[int, int, int], ResamplerBank]
] = weakref.WeakKeyDictionary()


class AudioTransportError(SIPCoreError):
    """A method was called in a state that does not allow it, or with a bad argument."""


class _SharedClock:
    """One timer for the AudioTransports whose packets fall due at the same instants.

    A timer per call costs a TimerHandle, a heap push and a heap pop (in Python
    comparisons) every frame, which at hundreds of calls weighs as much as a codec.
    """

    def __init__(self, key: _ClockKey, period: float, first_deadline: float) -> None:
        self._key = key
        self._loop = key[0]
        self.pacer = FramePacer(period, MAX_BURST)
        self.pacer.start(first_deadline - period)
        self.members: dict[AudioTransport, None] = {}  # an ordered set
        self.lanes: dict[_LaneKey, _Lane] = {}
        self._handle = self._loop.call_at(self.pacer.deadline, self._wake)

    @classmethod
    def join(cls, transport: AudioTransport, key: _ClockKey, first_deadline: float) -> _SharedClock:
        clock = _clocks.get(key)
        if clock is None:
            clock = _clocks[key] = cls(key, key[2], first_deadline)
        clock.members[transport] = None
        return clock

    def leave(self, transport: AudioTransport) -> None:
        self.members.pop(transport, None)
        if not self.members:
            self._handle.cancel()
            if _clocks.get(self._key) is self:
                del _clocks[self._key]

    def _wake(self) -> None:
        now = self._loop.time()
        _run_frames(list(self.members), self.pacer, now, self)
        if self.members:
            self._handle = self._loop.call_at(self.pacer.deadline, self._wake)

    def admit(self, member: AudioTransport) -> None:
        """Puts ``member`` in the lane of its kind of packets if it can be (see _Lane)."""
        key = (member._jitter.clock_rate, member._timestamp_step, member._frame_samples)
        lane = self.lanes.get(key)
        if lane is None:
            lane = self.lanes[key] = _Lane(*key)
        lane.admit(member)


class _Lane:
    """The members of a shared clock whose jitter buffers a JitterBank runs: streams of a
    codec that decodes many at once (G.711, a payload octet per sample), receiving one
    packet a frame, in the usual state (see media.jitterbank).

    A JitterBuffer costs a few microseconds of Python per packet and per frame, a third of
    the CPU at hundreds of G.711 calls.  Here the members' RTPTransports append the usual
    datagrams to our inbox (RTPTransport.set_inbox); each wake-up of the clock stores them
    all in the bank (ingest) and plays a frame of every member (play) with a few array
    operations and one decode.  A member goes back to its own JitterBuffer (release) when
    the bank refuses one of its packets, when an audio packet reaches it the other way
    (rtp_received: another size or source, SRTP), when it stops receiving or stops; it
    tries to come back every ADMIT_EVERY frames.  (A stream that goes quiet stays: the
    bank stops its playout and starts it again as a JitterBuffer would.)
    """

    def __init__(self, clock_rate: int, frame: int, payload_size: int) -> None:
        self.bank = JitterBank(clock_rate, frame, payload_size)
        self.inbox: list[tuple[int, float, bytes]] = []
        self.members: dict[int, AudioTransport] = {}  # by row
        # (members, their rows) by what decodes and resamples them, rebuilt on a change
        self._groups: list[tuple[_BatchKey, list[AudioTransport], np.ndarray]] | None = None

    def admit(self, member: AudioTransport) -> None:
        if len(member._decoded):  # part of a frame waits for the resampler: the lane
            return  # resamples whole packets (the call stays out while this lasts)
        row = self.bank.adopt(member._jitter, tuple(member._audio_types))
        if row is None:
            return
        self.members[row] = member
        member._lane, member._row = self, row
        member.transport.set_inbox(self.inbox, row, self.bank.packet_size)
        self._groups = None

    def release(self, member: AudioTransport) -> None:
        """``member`` back to its own JitterBuffer, with the packets the inbox holds."""
        self.ingest()
        if member._lane is self:  # (ingest() may have released it)
            self._eject(member)

    def _eject(self, member: AudioTransport) -> None:
        member.transport.set_inbox(None)
        self.bank.eject(member._row)  # type: ignore[arg-type]
        del self.members[member._row]  # type: ignore[arg-type]
        member._lane = member._row = None
        member._admit_in = ADMIT_EVERY
        self._groups = None

    def ingest(self) -> None:
        """The packets of the inbox to the bank, and to each member's RTCP statistics."""
        inbox = self.inbox
        if not inbox:
            return
        entries = inbox.copy()
        inbox.clear()
        tags, times, datagrams = zip(*entries, strict=True)
        packets = np.frombuffer(b"".join(datagrams), dtype=np.uint8).reshape(len(entries), -1)
        header = headers(packets)
        refused = self.bank.put_many(np.array(tags), packets, np.array(times), header)
        octets = self.bank.payload_size
        members = self.members
        for tag, when, seq, timestamp, ssrc in zip(
            tags,
            times,
            header["seq"].tolist(),
            header["ts"].tolist(),
            header["ssrc"].tolist(),
            strict=True,
        ):
            member = members[tag]
            member._last_rtp = when
            member._timed_out = False
            member._rtcp.arrived((ssrc, seq, timestamp, when, octets))
        if len(refused):  # they go back, and their packets to their JitterBuffers
            back = {row: members[row] for row in refused.tolist()}
            for member in back.values():
                self._eject(member)
            for tag, when, data in entries:
                member = back.get(tag)  # type: ignore[assignment]
                if member is not None:
                    member._deliver(RTPPacket.parse(data), when)

    def play(self, now: float) -> None:
        """A frame of every member to its slot (see _play_all)."""
        groups = self._groups if self._groups is not None else self._regroup()
        if not groups:
            return
        what, payloads = self.bank.get_many(self._rows, now)
        for (decode_many, bank, size), members, index in groups:
            kinds = what[index]
            if not kinds.any():  # the usual frame: every member's packet is here (AUDIO 0)
                pcm = decode_many([member._codec for member in members], payloads[index])  # type: ignore[operator]
            else:
                pcm = np.zeros((len(members), size), dtype=np.int16)
                audio = np.flatnonzero(kinds == AUDIO)
                if len(audio):
                    codecs = [members[i]._codec for i in audio.tolist()]
                    pcm[audio] = decode_many(codecs, payloads[index[audio]])  # type: ignore[operator]
                for i in np.flatnonzero(kinds != AUDIO).tolist():
                    if kinds[i] != SILENT:  # (silence: nothing under way, nothing played)
                        pcm[i] = members[i]._codec.conceal()
            if bank is not None:
                pcm = bank.process([member._up_lane for member in members], pcm)
            _queue(
                (member, frame)
                for member, frame, kind in zip(members, pcm, kinds.tolist(), strict=True)
                if kind != SILENT
            )

    def _regroup(self) -> list[tuple[_BatchKey, list[AudioTransport], np.ndarray]]:
        order = list(self.members.items())
        self._rows = np.array([row for row, _member in order], dtype=np.int64)
        by_key: dict[_BatchKey, list[int]] = defaultdict(list)
        for i, (_row, member) in enumerate(order):
            by_key[member._batch].append(i)  # type: ignore[index]
        self._groups = [
            (key, [order[i][1] for i in index], np.array(index, dtype=np.int64))
            for key, index in by_key.items()
        ]
        return self._groups


class _Slot(SlotPort):
    """An AudioTransport's mixer slot: what we play, one mixer frame after another, and
    what the mixer mixed for us (None: nothing connected), for our sends; each holds at
    most ``frames`` (then drops the oldest)."""

    def __init__(self, frames: int) -> None:
        self.heard: deque[np.ndarray] = deque(maxlen=frames)
        self.mixed: deque[np.ndarray | None] = deque(maxlen=frames)
        self.consume = self.mixed.append  # type: ignore[method-assign]  # no Python frame

    def produce(self) -> np.ndarray | None:
        heard = self.heard
        return heard.popleft() if heard else None


class _TickWatch:
    """The AudioTransports of one mixer on one loop: a hook of the mixer's tick that gives
    the members that started since the last tick their phase (the mixer has ticked), on
    the members' loop."""

    def __init__(self, key: tuple[asyncio.AbstractEventLoop, AudioMixer]) -> None:
        self._key = key
        self._loop, self._mixer = key
        self._thread = threading.get_ident()  # the loop's: we are created on it
        self.members: dict[AudioTransport, None] = {}  # an ordered set
        self._new: list[AudioTransport] = []  # members without a phase yet
        self._mixer.add_tick_hook(self._tick)

    @classmethod
    def join(cls, transport: AudioTransport) -> _TickWatch:
        key = (transport._loop, transport.mixer)
        watch = _watches.get(key)
        if watch is None:
            watch = _watches[key] = cls(key)  # type: ignore[arg-type]
        watch.members[transport] = None
        watch._new.append(transport)
        return watch

    def leave(self, transport: AudioTransport) -> None:
        self.members.pop(transport, None)
        if not self.members:
            self._mixer.remove_tick_hook(self._tick)
            if _watches.get(self._key) is self:
                del _watches[self._key]

    def _tick(self) -> None:
        """On the mixer's thread."""
        if not self._new:
            return
        if threading.get_ident() == self._thread:
            self._give_phases()
        else:
            self._loop.call_soon_threadsafe(self._give_phases)

    def _give_phases(self) -> None:
        new, self._new = self._new, []
        for member in new:
            if member._started and member._clock is None:
                member._join_phase()


def _run_frames(
    members: list[AudioTransport], pacer: FramePacer, now: float, clock: _SharedClock | None
) -> None:
    """The packets ``pacer`` says are due at ``now``, for every member still on ``clock``
    (None: a transport's own timer), then their playout, then RTCP and the timeouts."""
    frames, skipped = pacer.advance(now)
    period = pacer.period
    for index in range(frames):
        due = pacer.deadline - (frames - index) * period
        _send_all([m for m in members if m._clock is clock and m._started], now, due)
    if skipped:  # the loop stalled: that stretch of time is not sent
        for member in members:
            if member._clock is clock and member._started:
                member._packetizer.advance(skipped * member._timestamp_step)
    lanes = list(clock.lanes.values()) if clock is not None else []
    for lane in lanes:
        lane.ingest()
    playing = [m for m in members if m._clock is clock and m._started]
    for _ in range(frames if playing else 0):
        for lane in lanes:
            lane.play(now)
        _play_all(playing, now)
    for member in members:
        if member._clock is clock and member._started:
            member._after_frames(now)


def _send_all(members: list[AudioTransport], now: float, due: float) -> None:
    """One frame of each member: resampled and encoded in groups, then sent one by one."""
    groups: dict[tuple[object, ...], tuple[list[AudioTransport], list[np.ndarray]]] = {}
    for member in members:
        pcm = member._next_audio(now, due)
        if pcm is not None:
            key = (member._down, member._encode_many, len(pcm))
            group = groups.get(key)
            if group is None:
                group = groups[key] = ([], [])
            group[0].append(member)
            group[1].append(pcm)
    for (bank, encode_many, _length), (group, frames) in groups.items():
        if bank is not None:
            frames = bank.process([member._down_lane for member in group], frames)
        if encode_many is not None:
            if bank is None:  # (np.stack costs twice this: a Python call per frame)
                frames = np.concatenate(frames).reshape(len(group), -1)
            payloads = encode_many(frames)
        else:
            payloads = [member._encode(row) for member, row in zip(group, frames, strict=True)]
        for member, payload in zip(group, payloads, strict=True):
            packetizer = member._packetizer
            if payload is None:  # not encoded: the frame's time passes unsent
                packetizer.advance(member._timestamp_step)
                continue
            timestamp = packetizer.timestamp
            data = packetizer.media_packet(payload, member._marker, member._timestamp_step)
            member._marker = False
            member._transmit(data, timestamp, len(payload), now, due)


def _play_all(members: list[AudioTransport], now: float) -> None:
    """A packet's worth of each member's received audio to its slot, resampled in groups,
    a packet of each member per matrix product.  The usual case - one packet of a whole
    frame for a codec that decodes many streams at once (G.711) - is decoded with the
    others of its codec: one table lookup for them all, whose rows the bank resamples as
    they are.  This runs for every member every playout interval: _decode()'s usual case
    is here, without a call per member."""
    batches: dict[_BatchKey, list[tuple[AudioTransport, bytes]]] = defaultdict(list)
    queues = []
    for member in members:
        if not member._receiving or member._lane is not None:
            continue
        member._playout_debt += member._frame_samples
        first = None
        batch = member._batch
        if batch is not None and member._playout_debt > 0 and not len(member._decoded):
            first = member._jitter.get(now)
            if first is None:  # nothing under way: silence
                member._playout_debt = 0
                continue
            if first.kind is FrameKind.AUDIO:
                payload = first.packet.payload  # type: ignore[union-attr]
                size = len(payload)
                debt = member._playout_debt - max(
                    size, round(first.samples / member._ticks_per_sample)
                )
                if size == member._frame_samples and debt <= 0:
                    member._playout_debt = debt
                    batches[batch].append((member, payload))
                    continue
        frames = member._decode(now, first)
        if frames:
            queues.append((member, frames))
    for (decode_many, bank, _size), batch in batches.items():
        codecs = [member._codec for member, _payload in batch]
        pcm = decode_many(codecs, [payload for _member, payload in batch])  # type: ignore[operator]
        if bank is not None:
            pcm = bank.process([member._up_lane for member, _payload in batch], pcm)
        _queue(zip([member for member, _payload in batch], pcm, strict=True))
    while queues:
        direct = []
        groups: dict[ResamplerBank, list[tuple[AudioTransport, np.ndarray]]] = {}
        for member, frames in queues:
            frame = frames.pop(0)
            bank = member._up
            if bank is None:
                direct.append((member, frame))
            else:
                groups.setdefault(bank, []).append((member, frame))
        _queue(direct)
        for bank, group in groups.items():
            out = bank.process(
                [member._up_lane for member, _frame in group], [frame for _member, frame in group]
            )
            _queue(zip([member for member, _frame in group], out, strict=True))
        queues = [(member, frames) for member, frames in queues if frames]


def _queue(frames: Iterable[tuple[AudioTransport, np.ndarray]]) -> None:
    """Received audio at the mixer's rate to the members' slots, in mixer frames."""
    for member, pcm in frames:
        size = member._mixer_frame
        pending = member._heard_pending
        if len(pcm) == size and not len(pending):  # the usual case: a frame
            member._port.heard.append(pcm)  # type: ignore[union-attr]
            continue
        frames, member._heard_pending = _cut([pending, pcm], size)
        member._port.heard.extend(frames)  # type: ignore[union-attr]


def _cut(audio: list[np.ndarray], size: int) -> tuple[list[np.ndarray], np.ndarray]:
    """``audio`` joined and cut into frames of ``size`` samples, and what is left over."""
    joined = np.concatenate(audio)
    count = len(joined) // size
    return [joined[i * size : (i + 1) * size] for i in range(count)], joined[count * size :]


def _bank(
    loop: asyncio.AbstractEventLoop, input_rate: int, output_rate: int, frame: int
) -> ResamplerBank | None:
    """The ResamplerBank of this conversion on ``loop``, None where one cannot do it."""
    if not ResamplerBank.supports(input_rate, output_rate, frame):
        return None
    banks = _banks.setdefault(loop, {})
    key = (input_rate, output_rate, frame)
    bank = banks.get(key)
    if bank is None:
        bank = banks[key] = ResamplerBank(input_rate, output_rate, frame)
    return bank


def _codec_list(codecs: Sequence[str] | None) -> list[CodecInfo]:
    if codecs is None:
        return [codec_info(name) for name in available_codecs()]
    infos = [codec_info(name) for name in codecs]  # CodecError names an unknown codec
    usable = [info for info in infos if info.name in available_codecs()]
    if not usable:
        raise AudioTransportError(f"none of the codecs {list(codecs)} is available")
    return list(dict.fromkeys(usable))


def _matches(info: CodecInfo, media: BaseSDPMediaStream, fmt: str) -> bool:
    codec = media.rtpmap(fmt)
    return (
        codec is not None
        and codec.name.lower() == info.name.lower()
        and codec.rate == info.clock_rate
    )


def _telephone_events(media: BaseSDPMediaStream) -> dict[str, int]:
    """telephone-event payload types of ``media`` and their clock rates."""
    found = {}
    for fmt in media.formats:
        codec = media.rtpmap(fmt)
        if codec is not None and codec.name.lower() == "telephone-event":
            found[fmt] = codec.rate
    return found


def _ptime(media: BaseSDPMediaStream) -> int | None:
    value = media.attributes.getfirst("ptime")
    if value is None:
        return None
    try:
        ptime = round(float(value))
    except ValueError:
        return None
    return ptime if 10 <= ptime <= 120 and ptime % 10 == 0 else None


class AudioTransport:
    """An audio stream: codecs and SDP, then media between the network and a mixer slot.

    ``remote_sdp`` is the peer's offer when we answer (None when we offer); ``codecs`` our
    codec names in order of preference (default: all available); ``timeout`` the seconds
    without RTP after which RTPAudioTransportDidTimeout is posted (0: never);
    ``rtcp_interval`` the RTCP report interval's minimum (RFC 3550: 5 s).  Creating the
    transport moves the RTPTransport (which must be initialized) to LOCAL or REMOTE, so an
    offer whose security we cannot meet raises SDPNegotiationError here.
    """

    def __init__(
        self,
        mixer: AudioMixer,
        rtp_transport: RTPTransport,
        remote_sdp: BaseSDPSession | None = None,
        sdp_index: int = 0,
        codecs: Sequence[str] | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        ptime: int = DEFAULT_PTIME,
        rtcp_interval: float = 5.0,
    ) -> None:
        if not timeout >= 0:
            raise ValueError(f"timeout must be >= 0 seconds, got {timeout!r}")
        if ptime not in (10, 20, 30, 40, 60):
            raise ValueError(f"ptime must be 10, 20, 30, 40 or 60 ms, got {ptime!r}")
        if rtp_transport.state not in ("INIT", "ESTABLISHED"):
            raise AudioTransportError(
                f"the RTPTransport must be initialized (INIT) or ESTABLISHED, "
                f"not {rtp_transport.state}"
            )
        self.mixer = mixer
        self.transport = rtp_transport
        self.timeout = timeout
        self.ptime = ptime
        self.rtcp_interval = rtcp_interval
        self._codecs = _codec_list(codecs)
        self._is_offer = remote_sdp is None
        if rtp_transport.state == "INIT":
            if remote_sdp is None:
                rtp_transport.set_LOCAL()
            else:
                rtp_transport.set_REMOTE(remote_sdp, sdp_index)
        self.direction: str | None = None
        self.codec: str | None = None
        self.sample_rate: int | None = None
        self._started = False
        self._port: _Slot | None = None
        self._slot: int | None = None
        self._watch: _TickWatch | None = None
        self._timer: asyncio.TimerHandle | None = None  # our own, until we share a clock
        self._clock: _SharedClock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sending = self._receiving = False
        self._lane: _Lane | None = None  # while a JitterBank of our clock runs our buffer
        self._row: int | None = None
        self._admit_in = FIRST_ADMISSION + int(next(_admissions) * GOLDEN_RATIO % 1.0 * ADMIT_EVERY)
        self.decode_errors = 0
        self.fec_frames = 0  # lost frames rebuilt from the next packet's FEC data (Opus)
        self.unexpected_payloads = 0  # RTP packets of a payload type we did not choose

    def __repr__(self) -> str:
        state = "started" if self._started else "idle"
        return f"<AudioTransport {state} {self.codec or ''} slot={self.slot}>"

    @property
    def slot(self) -> int | None:
        """Our slot in the mixer while started."""
        return self._slot

    @property
    def is_started(self) -> bool:
        return self._started

    # -- SDP --------------------------------------------------------------------------------

    def get_local_media(
        self, remote_sdp: BaseSDPSession | None = None, index: int = 0, direction: str = "sendrecv"
    ) -> SDPMediaStream:
        """Our m= line: the offer when ``remote_sdp`` is None, else the answer to its line
        ``index`` (the codecs both know, in our order, with the offer's payload types)."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}")
        formats, attributes = [], []
        taken = {info.payload_type for info in self._codecs}
        for info in self._codecs:
            formats.append(str(info.payload_type))
            attributes.append(SDPAttribute("rtpmap", f"{info.payload_type} {info.rtpmap}"))
            if info.fmtp:
                attributes.append(SDPAttribute("fmtp", f"{info.payload_type} {info.fmtp}"))
        rates = {info.clock_rate for info in self._codecs}
        for payload_type, rate in TELEPHONE_EVENTS:
            if (rate == 8000 or rate in rates) and payload_type not in taken:
                formats.append(str(payload_type))
                attributes.append(SDPAttribute("rtpmap", f"{payload_type} telephone-event/{rate}"))
                attributes.append(SDPAttribute("fmtp", f"{payload_type} {TELEPHONE_EVENT_FMTP}"))
        attributes.append(SDPAttribute("ptime", str(self.ptime)))
        media = SDPMediaStream("audio", 0, "RTP/AVP", formats=formats, attributes=attributes)
        self.transport.update_local_media(media)
        media.direction = direction
        if remote_sdp is None:
            return media
        if not 0 <= index < len(remote_sdp.media):
            raise AudioTransportError(f"the remote SDP has no m= line {index}")
        offer = remote_sdp.media[index]
        answer = answer_media(offer, media, effective_direction(remote_sdp, index))
        if answer.port == 0:
            raise SDPNegotiationError(f"no audio codec in common with the offer ({offer})")
        return answer

    # -- running ----------------------------------------------------------------------------

    def start(self, local_sdp: BaseSDPSession, remote_sdp: BaseSDPSession, sdp_index: int) -> None:
        """Start the stream as ``local_sdp`` and ``remote_sdp`` (the negotiated pair) say."""
        if self._started:
            raise AudioTransportError("the AudioTransport was already started")
        for sdp, which in ((local_sdp, "local"), (remote_sdp, "remote")):
            if not 0 <= sdp_index < len(sdp.media):
                raise AudioTransportError(f"the {which} SDP has no m= line {sdp_index}")
        local, remote = local_sdp.media[sdp_index], remote_sdp.media[sdp_index]
        codec, receive_types = self._choose_codec(local, remote)
        events = _telephone_events(remote)
        event_rates = sorted(events.items(), key=lambda e: (e[1] != codec.info.clock_rate, e[1]))
        self._event_type = int(event_rates[0][0]) if event_rates else None
        self._event_types = {int(fmt) for fmt in (*events, *_telephone_events(local))}
        self._audio_types = receive_types
        self.transport.set_ESTABLISHED(local_sdp, remote_sdp, sdp_index)

        loop = self._loop = asyncio.get_running_loop()
        now = loop.time()
        info = codec.info
        self._codec = codec
        self._encode_many = type(codec).encode_many
        self.codec = info.name
        self.sample_rate = info.sample_rate
        self._timestamp_step = info.timestamp_increment
        rate = self.mixer.sample_rate
        self._send_samples = rate * info.ptime // 1000  # mixer samples per packet
        self._ticks_per_sample = info.clock_rate / info.sample_rate
        self._frame_samples = info.samples_per_frame  # codec samples per packet
        # Resampling (none where the codec runs at the mixer's rate: Opus at 48 kHz, G.711
        # at 8 kHz) in a lane of a shared ResamplerBank, or a Resampler of our own for the
        # ratios a bank cannot do.
        self._down, self._down_lane, self._to_codec = self._converter(
            rate, info.sample_rate, self._send_samples
        )
        self._up, self._up_lane, self._from_codec = self._converter(
            info.sample_rate, rate, info.samples_per_frame
        )
        self._decoded = np.zeros(0, dtype=np.int16)  # codec-rate audio not yet resampled
        self._packetizer = RTPPacketizer(info.payload_type)
        self._marker = True
        self._jitter = JitterBuffer(info.clock_rate, ptime=info.ptime)
        # A codec that decodes many streams' frames at once (G.711) with what resamples
        # them, when no Resampler of our own keeps state between frames: our batch's key.
        decode_many = getattr(codec, "decode_many", None)
        self._batch = (
            (decode_many, self._up, self._frame_samples)
            if decode_many and not self._from_codec
            else None
        )
        self._playout_debt = 0.0  # codec samples the playout still owes the mixer
        self._dtmf_sender = DTMFSender(
            events[str(self._event_type)] if self._event_type is not None else 8000,
            ptime=info.ptime,
        )
        self._dtmf_receiver = DTMFReceiver()
        self._rtcp = RTCPSession(
            self._packetizer.ssrc,
            secrets.token_urlsafe(12),
            info.clock_rate,
            now,
            wallclock_offset=time.time() - now,
            min_interval=self.rtcp_interval,
        )
        self._pending = np.zeros(0, dtype=np.int16)  # mixed audio not yet sent
        self._mixer_frame = self.mixer.frame_samples
        self._silence = np.zeros(self._mixer_frame, dtype=np.int16)
        self._silence.flags.writeable = False
        self._heard_pending = np.zeros(0, dtype=np.int16)  # played audio short of a frame
        self._last_rtp = now
        self._timed_out = False
        self._frame_packets = self._send_samples == self._mixer_frame
        # A packet's worth of frames (the longer of what we send and what we asked for).
        packet_frames = -(-max(info.ptime, self.ptime) * FRAMES_PER_SECOND // 1000)
        self._port = _Slot(packet_frames + MAX_QUEUED_FRAMES)
        self._slot = self.mixer.add_port(self._port)
        self._watch = _TickWatch.join(self)
        self._pacer = FramePacer(info.ptime / 1000, MAX_BURST)
        self._pacer.start(now)
        self._started = True
        # What we may do: send if the peer receives, receive if it sends (RFC 3264 6.1).
        self.update_direction(
            answer_direction(
                effective_direction(remote_sdp, sdp_index),
                effective_direction(local_sdp, sdp_index),
            )
        )
        self.transport.receiver = self
        self._timer = loop.call_at(self._pacer.deadline, self._tick)

    def _converter(
        self, input_rate: int, output_rate: int, frame: int
    ) -> tuple[ResamplerBank | None, int, Resampler | None]:
        if input_rate == output_rate:
            return None, 0, None
        assert self._loop is not None
        bank = _bank(self._loop, input_rate, output_rate, frame)
        if bank is None:
            return None, 0, Resampler(input_rate, output_rate)
        return bank, bank.open(), None

    def _choose_codec(
        self, local: BaseSDPMediaStream, remote: BaseSDPMediaStream
    ) -> tuple[AudioCodec, frozenset[int]]:
        """The first codec of the answer that we have, set up to send what the peer wants.

        We send with the peer's payload type and ptime and encode as its fmtp asks; we
        accept that codec under its payload type in either description.
        """
        answer = local if not self._is_offer else remote
        for fmt in answer.formats:
            for info in self._codecs:
                if not _matches(info, answer, fmt):
                    continue
                remote_fmt = next((f for f in remote.formats if _matches(info, remote, f)), None)
                if remote_fmt is None:
                    continue
                local_types = {int(f) for f in local.formats if _matches(info, local, f)}
                codec = create_codec(
                    info.name,
                    payload_type=int(remote_fmt),
                    ptime=_ptime(remote) or self.ptime,
                    fmtp=remote.fmtp(remote_fmt) or "",
                )
                return codec, frozenset({int(remote_fmt), *local_types})
        raise SDPNegotiationError(
            f"no codec in common: we have {', '.join(i.name for i in self._codecs)}, the "
            f"peer {' '.join(str(remote.rtpmap(f) or f) for f in remote.formats)}"
        )

    def update_direction(self, direction: str) -> None:
        """The direction now negotiated for us: we send in sendrecv and sendonly, we play
        (and expect RTP) in sendrecv and recvonly.  RTCP goes on either way."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}")
        if not self._started:
            raise AudioTransportError("update_direction() needs a started AudioTransport")
        receiving = direction in ("sendrecv", "recvonly")
        if receiving != self._receiving:  # a pause in playout starts or ends
            if self._lane is not None:
                self._lane.release(self)
            self._jitter.flush()
            self._playout_debt = 0.0
        if receiving and not self._receiving:
            self._last_rtp = self._loop.time()  # type: ignore[union-attr]
            self._timed_out = False
        self._sending = direction in ("sendrecv", "sendonly")
        self._receiving = receiving
        if not self._sending:
            self._marker = True  # the first packet after the pause starts a talkspurt
        self.direction = direction

    def send_dtmf(self, digit: str) -> None:
        """Send a DTMF digit (0-9, *, #, A-D) as RFC 4733 telephone-event packets."""
        if not self._started:
            raise AudioTransportError("send_dtmf() needs a started AudioTransport")
        if self._event_type is None:
            raise AudioTransportError("the peer did not accept telephone-event: no DTMF")
        self._dtmf_sender.send(digit)

    def stop(self) -> None:
        """Send RTCP BYE, leave the mixer and stop the clock; the RTPTransport stays."""
        if not self._started:
            return
        self._started = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._lane is not None:
            self._lane.release(self)
        if self._clock is not None:
            self._clock.leave(self)
            self._clock = None
        if self.transport.receiver is self:
            self.transport.receiver = None
        self.transport.send_rtcp(self._rtcp.bye(self._loop.time()))  # type: ignore[union-attr]
        if self._watch is not None:
            self._watch.leave(self)
            self._watch = None
        if self._slot is not None:
            self.mixer.remove_port(self._slot)
            self._slot = None
        for bank, lane in ((self._down, self._down_lane), (self._up, self._up_lane)):
            if bank is not None:
                bank.close(lane)

    @property
    def statistics(self) -> StreamStatistics | None:
        """RTCP statistics: rx, tx (packets, octets, loss, jitter) and rtt_ms; None before
        start()."""
        if self._lane is not None:
            self._lane.ingest()  # the packets it holds are received
        return self._rtcp.statistics if self._port is not None else None

    @property
    def jitter_buffer_statistics(self) -> JitterBufferStatistics | None:
        if self._lane is not None:
            self._lane.ingest()  # the packets it holds are received (a refusal ejects us)
        if self._lane is not None:  # (still)
            return self._lane.bank.statistics(self._row).statistics  # type: ignore[arg-type]
        return self._jitter.statistics if self._port is not None else None

    # -- the clock --------------------------------------------------------------------------

    def _tick(self) -> None:
        """Our own timer, until the mixer's first tick gives us a phase."""
        loop = self._loop
        assert loop is not None
        _run_frames([self], self._pacer, loop.time(), None)
        if self._started and self._clock is None:  # an observer may have stopped us
            self._timer = loop.call_at(self._pacer.deadline, self._tick)

    def _after_frames(self, now: float) -> None:
        """RTCP and the RTP timeout, once the frames of a wake-up are done."""
        report_due = self._rtcp.get_timer()
        if report_due is not None and now >= report_due:
            report = self._rtcp.handle_timer(now)
            if report is not None:
                self.transport.send_rtcp(report)
        silent = now - self._last_rtp
        if self._receiving and self.timeout and not self._timed_out and silent >= self.timeout:
            self._timed_out = True
            self._post("RTPAudioTransportDidTimeout")
        if self._lane is None and self._receiving and self._batch is not None:
            self._admit_in -= 1
            if self._admit_in <= 0 and self._clock is not None and self.transport.inbox_usable:
                self._admit_in = ADMIT_EVERY
                self._clock.admit(self)

    def _next_audio(self, now: float, due: float) -> np.ndarray | None:
        """This frame's mixed audio to encode (at the codec's rate unless a bank resamples
        it), or None when no audio is sent: not sending, or a DTMF packet in its place."""
        if self._frame_packets:  # the usual case: a packet per mixer frame
            mixed = self._port.mixed  # type: ignore[union-attr]
            pcm = mixed.popleft() if mixed else None
            if pcm is None:
                pcm = self._silence
        else:
            pcm = self._mixed_audio()
        packetizer = self._packetizer
        if not self._sending:
            packetizer.advance(self._timestamp_step)
            return None
        if self._event_type is not None:
            event = self._dtmf_sender.tick(packetizer.timestamp)
            if event is not None:
                header = packetizer.next_header(event.marker, self._event_type, event.timestamp)
                packetizer.advance(self._timestamp_step)
                payload = event.payload
                self._transmit(header + payload, event.timestamp, len(payload), now, due)
                return None
        if self._to_codec is not None:
            pcm = self._to_codec.process(pcm)
        return pcm

    def _encode(self, pcm: np.ndarray) -> bytes | None:
        """A frame encoded by our codec alone; None (logged) if it cannot be."""
        try:
            return self._codec.encode(pcm)
        except (CodecError, ValueError):
            logger.exception("cannot encode a %s frame", self.codec)
            return None

    def _transmit(self, data: bytes, timestamp: int, octets: int, now: float, due: float) -> None:
        """Sends one packet; ``due`` is when its frame fell due (for a subclass that
        measures lateness)."""
        self._rtcp.sent(timestamp, octets, now)
        self.transport.send_rtp(data)

    def _mixed_audio(self) -> np.ndarray:
        """A packet's worth of what the mixer mixed for our slot (silence where nothing)
        when a packet is not one mixer frame: several, or part of one."""
        mixed = self._port.mixed  # type: ignore[union-attr]
        need = self._send_samples
        pending = self._pending
        while len(pending) < need:
            frame = mixed.popleft() if mixed else None
            if frame is None:
                frame = self._silence
            pending = frame if not len(pending) else np.concatenate((pending, frame))
        self._pending = pending[need:]
        return pending[:need]

    def _join_phase(self) -> None:
        """The mixer ticked with us in it: our clock takes a phase against the mixer's, a
        fraction of a mixer frame after its ticks, away from them so that timer jitter does
        not swap the order of our ticks and its ticks (each swap would add a frame of
        delay), and one of PHASE_SLOTS (or BATCHED_PHASE_SLOTS) phases taken in turn (a
        golden-ratio sequence) so that the packets of many calls spread over the frame
        period instead of leaving in one burst.  From then on we run on the shared clock of
        that phase.
        """
        loop = self._loop
        assert loop is not None and self._timer is not None
        slots = BATCHED_PHASE_SLOTS if self._encode_many is not None else PHASE_SLOTS
        slot = int(next(_phases) * GOLDEN_RATIO % 1.0 * slots)
        phase = PHASE_LOW + (PHASE_HIGH - PHASE_LOW) * (slot + 0.5) / slots
        self._timer.cancel()
        self._timer = None
        key = (loop, self.mixer, self._pacer.period, phase)
        self._clock = _SharedClock.join(self, key, loop.time() + phase * PTIME)
        self._pacer = self._clock.pacer

    def _decode(self, now: float, first: JitterFrame | None) -> list[np.ndarray]:
        """What the playout owes the mixer (``_playout_debt``, in codec samples) from the
        jitter buffer, decoded (or concealed): the frames of codec-rate audio a bank
        resamples, or, without a bank, the audio at the mixer's rate.  ``first`` is the
        buffer's next frame when _play_all() took it already."""
        codec = self._codec
        decoded = []
        while self._playout_debt > 0:
            frame = self._jitter.get(now) if first is None else first
            first = None
            if frame is None:  # nothing under way: silence
                self._playout_debt = 0
                break
            if frame.kind is FrameKind.AUDIO:
                try:
                    pcm = codec.decode(frame.packet.payload)  # type: ignore[union-attr]
                except CodecError:
                    self.decode_errors += 1
                    pcm = codec.conceal()
            else:
                pcm = self._conceal(frame)
            self._playout_debt -= max(len(pcm), round(frame.samples / self._ticks_per_sample))
            if self._from_codec is not None:
                pcm = self._from_codec.process(pcm)
            decoded.append(pcm)
        bank = self._up
        if bank is None:
            return decoded
        # The bank takes whole frames: what is left waits for the next interval.
        size = bank.frame
        if len(decoded) == 1 and len(decoded[0]) == size and not len(self._decoded):
            return decoded
        frames, self._decoded = _cut([self._decoded, *decoded], size)
        return frames

    def _conceal(self, frame: JitterFrame) -> np.ndarray:
        """Audio for a LOST frame: from the in-band FEC of the packet after it, when that
        packet is here and the codec can (Opus), else the codec's concealment."""
        codec = self._codec
        following = self._jitter.peek(frame.timestamp + frame.samples)
        if following is not None:
            samples = round(frame.samples / self._ticks_per_sample)
            try:
                pcm = codec.decode_fec(following.payload, samples)
            except CodecError:  # the packet's own decode() will count it
                pcm = None
            if pcm is not None:
                self.fec_frames += 1
                return pcm
        return codec.conceal()

    # -- from the RTPTransport --------------------------------------------------------------

    def rtp_received(self, packet: RTPPacket, now: float) -> None:
        self._last_rtp = now
        self._timed_out = False
        self._rtcp.rtp_received(packet, now)
        self._deliver(packet, now)

    def _deliver(self, packet: RTPPacket, now: float) -> None:
        """An accounted packet to the jitter buffer, the DTMF receiver or nowhere."""
        payload_type = packet.payload_type
        if payload_type in self._audio_types:
            if self._receiving:
                if self._lane is not None:  # an audio packet the lane could not take
                    self._lane.release(self)
                self._jitter.put(packet, now)
        elif payload_type in self._event_types:
            event = self._dtmf_receiver.receive(packet)
            if event is not None:
                self._post("RTPAudioStreamGotDTMF", digit=event.digit)
        elif payload_type != COMFORT_NOISE:
            self.unexpected_payloads += 1

    def rtcp_received(self, data: bytes, now: float) -> None:
        try:
            self._rtcp.receive(data, now)
        except RTCPParseError as exc:
            logger.debug("dropping an RTCP packet: %s", exc)
            self.transport.counters.garbage += 1
            return
        # The loss the peer last reported on our packets: a codec may plan for it (FEC).
        self._codec.plan_for_loss(self._rtcp.statistics.tx.fraction_lost)

    def _post(self, name: str, **fields: object) -> None:
        NotificationCenter().post_notification(name, sender=self, data=NotificationData(**fields))
