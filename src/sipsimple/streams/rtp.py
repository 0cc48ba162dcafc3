"""AudioStream: the RTP audio stream of a Session (spec: AudioStream).

It runs the core's :class:`~sipsimple.core.media.RTPTransport` (sockets or ICE, SRTP) and
:class:`~sipsimple.core.media.AudioTransport` (codecs, jitter buffer, RTCP, DTMF) on the
voice mixer of the SIPApplication, and is an IAudioPort there (its slot is the
AudioTransport's).

Settings
    Codecs: ``account.rtp.audio_codec_list``, or ``SIPSimpleSettings().rtp.audio_codec_list``
    when that is None, less those this installation cannot run.  SRTP (SDES):
    ``account.rtp.encryption`` (``enabled``, ``key_negotiation``).  ICE:
    ``account.nat_traversal.use_ice`` (for an incoming offer only if the offer does ICE),
    with the STUN servers of ``stun_server_list`` or, when that is None, those a DNS
    lookup of the account's domain finds (``_stun._udp`` SRV records); each is tried in
    turn, then no STUN.  Ports come from ``rtp.port_range``; ``rtp.timeout`` seconds
    without RTP while we expect it posts AudioStreamDidTimeout.  The address is the
    Engine's (or ``local_ip``); with ICE, host candidates are gathered on every
    interface, or on that address alone when it is a loopback address (ICE skips
    loopback otherwise).

Offers it refuses (``new_from_sdp`` returns None, so the Session answers 488): not
audio over an RTP profile, no codec in common, or an SRTP requirement either side has
that the other cannot meet.

Hold
    ``hold()`` takes the stream out of its bridge at once (the microphone is no longer
    sent, nothing is played or recorded) and our next description says ``sendonly``
    (``inactive`` when the peer holds us already); ``unhold()`` undoes both.  A peer's
    ``sendonly`` or ``inactive`` puts the stream on hold by the remote.  While held by
    either party, the stream is out of its bridge and recording writes nothing; RTP in
    the negotiated direction goes on (silence), so that the peer's RTP timeout does not
    fire.

Notifications, beyond IMediaStream's (sender: the stream): AudioStreamDidChangeHoldState
(originator, on_hold), AudioStreamWillStartRecordingAudio, AudioStreamDidStartRecordingAudio,
AudioStreamWillStopRecordingAudio, AudioStreamDidStopRecordingAudio (filename; a recording
that cannot start ends with DidStop carrying ``reason``; the spec's text of start_recording
says SIPSession..., its list of notifications and the original say AudioStream...),
AudioStreamDidChangeRTPParameters (a renegotiation changed the codec or the peer's
address; a new codec restarts the AudioTransport, whose new mixer slot is announced first
with AudioPortDidChangeSlots), AudioStreamGotDTMF (digit),
AudioStreamICENegotiationStateDidChange / DidSucceed / DidFail (the RTPTransport's data),
and AudioStreamDidTimeout (``timeout``: the seconds without RTP; an SDK addition, the
application decides whether to end the session).

An ended stream keeps its codec, sample rate, SRTP state and statistics for reading.

Methods the Session calls run on the SIP thread.  ``start_recording``, ``stop_recording``
and ``send_dtmf`` may be called from any thread: they check the state at once (raising
AudioStreamError) and do the work on the SIP thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any

from sipsimple.audio import AudioBridge, AudioDevice, WaveRecorder
from sipsimple.configuration.settings import SIPSimpleSettings
from sipsimple.core import SIPURI, Engine
from sipsimple.core.media import (
    AudioTransport,
    AudioTransportError,
    RTPTransport,
    RTPTransportCounters,
)
from sipsimple.core.sdp import (
    FrozenSDPSession,
    SDPMediaStream,
    SDPNegotiationError,
    answer_direction,
    effective_direction,
)
from sipsimple.core.sdp.model import BaseSDPMediaStream, BaseSDPSession
from sipsimple.lookup import DNSLookup, DNSLookupError
from sipsimple.media.codecs import available_codecs, codec_info
from sipsimple.media.errors import MediaError
from sipsimple.media.rtcpsession import StreamStatistics
from sipsimple.media.srtp import SDESNegotiationError, SDESNegotiator
from sipsimple.notification import Notification, NotificationCenter, NotificationData
from sipsimple.streams import IMediaStream, MediaStreamRegistrar
from sipsimple.threading import call_in_sip_thread, is_sip_thread

__all__ = ["AudioStream", "AudioStreamError"]

log = logging.getLogger(__name__)

DTMF_DIGITS = frozenset("0123456789*#ABCD")
_PROFILES = ("RTP/AVP", "RTP/SAVP", "RTP/AVPF", "RTP/SAVPF")  # not DTLS-SRTP (UDP/TLS/...)
_SECURE_PROFILES = ("RTP/SAVP", "RTP/SAVPF")
_ICE_NOTIFICATIONS = {
    "RTPTransportICENegotiationStateDidChange": "AudioStreamICENegotiationStateDidChange",
    "RTPTransportICENegotiationDidSucceed": "AudioStreamICENegotiationDidSucceed",
    "RTPTransportICENegotiationDidFail": "AudioStreamICENegotiationDidFail",
}


class AudioStreamError(RuntimeError):
    """An AudioStream method called in a state that does not allow it, or with a bad
    argument."""


# -- what the account asks for ----------------------------------------------------------


def _codecs(account: Any) -> list[str]:
    """The account's codec names (or the global ones) that this installation can run."""
    names = account.rtp.audio_codec_list
    if names is None:
        names = SIPSimpleSettings().rtp.audio_codec_list
    usable = set(available_codecs())
    return [name for name in names if name in usable]


def _encryption(account: Any) -> str | None:
    """The RTPTransport's ``encryption`` for the account: None or its key negotiation."""
    encryption = account.rtp.encryption
    return str(encryption.key_negotiation) if encryption.enabled else None


def _has_codec(media: BaseSDPMediaStream, names: list[str]) -> bool:
    wanted = {(info.name.lower(), info.clock_rate) for info in map(codec_info, names)}
    for fmt in media.formats:
        codec = media.rtpmap(fmt)
        if codec is not None and (codec.name.lower(), codec.rate) in wanted:
            return True
    return False


def _security_met(media: BaseSDPMediaStream, encryption: str | None) -> bool:
    """Whether our SRTP policy and the offer's can be met together."""
    if encryption is None:
        return media.transport.upper() not in _SECURE_PROFILES
    try:
        SDESNegotiator(encryption).answer_offer(media)
    except SDESNegotiationError:
        return False
    return True


def _acceptable(account: Any, session: BaseSDPSession, index: int) -> bool:
    media = session.media[index]
    return (
        media.media == "audio"
        and media.port != 0
        and media.transport.upper() in _PROFILES
        and _has_codec(media, _codecs(account))
        and _security_met(media, _encryption(account))
    )


def _local_address() -> str:
    """The address the Engine uses (its SIP address), else the configured local_ip."""
    address = Engine().ip_address
    if address and not ipaddress.ip_address(address).is_unspecified:
        return str(address)
    return str(SIPSimpleSettings().local_ip)


def _does_ice(session: BaseSDPSession, index: int) -> bool:
    return session.media[index].has_ice_attributes or session.has_ice_attributes


def _codec_key(local: BaseSDPSession, remote: BaseSDPSession, index: int) -> tuple[Any, ...]:
    """What the codec an AudioTransport runs depends on: the first codec in the answer's
    order (which the negotiated local line has), the peer's payload type and parameters
    for it, and the peer's packet time."""
    ours, theirs = local.media[index], remote.media[index]
    for fmt in ours.formats:
        codec = ours.rtpmap(fmt)
        if codec is None or codec.name.lower() in ("telephone-event", "cn"):
            continue
        peer = next((f for f in theirs.formats if theirs.rtpmap(f) == codec), None)
        fmtp = theirs.fmtp(peer) if peer is not None else None
        return (codec, peer, fmtp, theirs.attributes.getfirst("ptime"))
    return ()


def _peer_address(remote: BaseSDPSession, index: int) -> tuple[str | None, int]:
    media = remote.media[index]
    connection = media.connection if media.connection is not None else remote.connection
    return (connection.address if connection is not None else None), media.port


def _post(sender: object, name: str, data: NotificationData | None = None, **fields: Any) -> None:
    NotificationCenter().post_notification(
        name, sender=sender, data=data if data is not None else NotificationData(**fields)
    )


# -- the stream --------------------------------------------------------------------------


class AudioStream(IMediaStream, metaclass=MediaStreamRegistrar):
    """An RTP audio stream of a Session; see the module docstring.

    States (``state``): NULL -> INITIALIZING -> INITIALIZED -> (WAIT_ICE while ICE
    checks run) -> ESTABLISHED -> ENDED; FAILED after MediaStreamDidFail (the Session
    then ends it).
    """

    type = "audio"
    priority = 1
    hold_supported = True

    def __init__(self, account: Any) -> None:
        from sipsimple.application import SIPApplication

        mixer = SIPApplication.voice_audio_mixer
        if mixer is None:
            raise AudioStreamError(
                "an AudioStream needs the SIPApplication's voice audio: start the application"
            )
        self.account = account
        self.mixer = mixer
        self.bridge = AudioBridge(mixer)
        self.device = AudioDevice(mixer)
        self.bridge.add(self.device)
        self.session: Any = None
        self.state = "NULL"
        self.on_hold_by_local = False
        self.on_hold_by_remote = False
        self._lock = threading.RLock()
        self._offer: tuple[BaseSDPSession, int] | None = None  # the peer's, when it offered
        self._rtp: RTPTransport | None = None
        self._audio: AudioTransport | None = None
        self._codec_key: tuple[Any, ...] = ()
        self._peer: tuple[str | None, int] | None = None
        self._recorder: WaveRecorder | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # held: the loop keeps tasks weakly
        self._rtp_failure: str | None = None

    def __repr__(self) -> str:
        return f"<AudioStream {self.state} {self.codec or ''} slot={self.consumer_slot}>"

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its repr (a RemoteSDK child's notifications carry streams)."""
        return (str, (repr(self),))

    # -- IAudioPort ------------------------------------------------------------------------

    @property
    def consumer_slot(self) -> int | None:
        audio = self._audio
        return audio.slot if audio is not None else None

    @property
    def producer_slot(self) -> int | None:
        audio = self._audio
        return audio.slot if audio is not None else None

    # -- attributes ------------------------------------------------------------------------

    @property
    def codec(self) -> str | None:
        """The codec negotiated (kept after the end, as the statistics are)."""
        audio = self._audio
        return audio.codec if audio is not None else None

    @property
    def sample_rate(self) -> int | None:
        audio = self._audio
        return audio.sample_rate if audio is not None else None

    @property
    def srtp_active(self) -> bool:
        rtp = self._rtp
        return rtp is not None and rtp.srtp_active

    @property
    def srtp_cipher(self) -> str | None:
        """The SRTP crypto suite in use, None without SRTP."""
        rtp = self._rtp
        return rtp.srtp_cipher if rtp is not None else None

    @property
    def ice_active(self) -> bool:
        rtp = self._rtp
        return rtp is not None and rtp.ice_active

    @property
    def local_rtp_address(self) -> str | None:
        rtp = self._rtp
        return rtp.local_rtp_address if rtp is not None else None

    @property
    def local_rtp_port(self) -> int | None:
        rtp = self._rtp
        return rtp.local_rtp_port if rtp is not None else None

    @property
    def remote_rtp_address_sdp(self) -> str | None:
        rtp = self._rtp
        return rtp.remote_rtp_address if rtp is not None else None

    @property
    def remote_rtp_port_sdp(self) -> int | None:
        rtp = self._rtp
        return rtp.remote_rtp_port if rtp is not None else None

    @property
    def remote_rtp_address_received(self) -> str | None:
        rtp = self._rtp
        return rtp.remote_rtp_address_received if rtp is not None else None

    @property
    def remote_rtp_port_received(self) -> int | None:
        rtp = self._rtp
        return rtp.remote_rtp_port_received if rtp is not None else None

    @property
    def local_rtp_candidate_type(self) -> str | None:
        rtp = self._rtp
        return rtp.local_rtp_candidate_type if rtp is not None else None

    @property
    def remote_rtp_candidate_type(self) -> str | None:
        rtp = self._rtp
        return rtp.remote_rtp_candidate_type if rtp is not None else None

    @property
    def recording_filename(self) -> str | None:
        recorder = self._recorder
        return recorder.filename if recorder is not None else None

    @property
    def statistics(self) -> StreamStatistics | None:
        """RTCP figures (rx, tx: packets, octets, loss, jitter; rtt_ms) once started."""
        audio = self._audio
        return audio.statistics if audio is not None else None

    @property
    def transport_counters(self) -> RTPTransportCounters | None:
        """The RTPTransport's datagram counters (what it received, sent and dropped)."""
        rtp = self._rtp
        return rtp.counters if rtp is not None else None

    # -- IMediaStream ----------------------------------------------------------------------

    @classmethod
    def new_from_sdp(
        cls, account: Any, remote_sdp: FrozenSDPSession, stream_index: int
    ) -> AudioStream | None:
        if not _acceptable(account, remote_sdp, stream_index):
            return None
        stream = cls(account)
        stream._offer = (remote_sdp, stream_index)
        return stream

    def initialize(self, session: Any, direction: str) -> None:
        with self._lock:
            if self.state != "NULL":
                raise AudioStreamError(f"initialize() needs state NULL, not {self.state}")
            self.state = "INITIALIZING"
            self.session = session
        offer = self._offer
        use_ice = bool(self.account.nat_traversal.use_ice)
        if offer is not None:
            use_ice = use_ice and _does_ice(*offer)
        self._spawn(self._initialize(use_ice))

    async def _initialize(self, use_ice: bool) -> None:
        settings = SIPSimpleSettings()
        servers: list[tuple[str | None, int]] = []
        if use_ice:
            servers = await self._stun_servers()
        servers.append((None, 3478))
        address = _local_address()
        port_range = (int(settings.rtp.port_range.start), int(settings.rtp.port_range.end))
        explicit = not use_ice or ipaddress.ip_address(address).is_loopback
        rtp = None
        for host, port in servers:
            rtp = RTPTransport(
                _encryption(self.account),
                use_ice,
                host,
                port,
                local_address=address if explicit else None,
                port_range=port_range,
            )
            NotificationCenter().add_observer(self._rtp_event, sender=rtp)
            await rtp.set_INIT()
            if rtp.state == "INIT" or self.state == "ENDED":
                break
            log.info("RTP transport with STUN server %s failed: %s", host, self._rtp_failure)
            await self._release(rtp, None)
            rtp = None
        if self.state == "ENDED":
            if rtp is not None:
                await self._release(rtp, None)
            return
        if rtp is None:
            self._fail(f"cannot open the RTP transport: {self._rtp_failure}")
            return
        self._rtp = rtp
        remote_sdp, index = self._offer if self._offer is not None else (None, 0)
        try:
            audio = AudioTransport(
                self.mixer,
                rtp,
                remote_sdp,
                index,
                codecs=_codecs(self.account),
                timeout=float(settings.rtp.timeout),
            )
        except (SDPNegotiationError, AudioTransportError, MediaError) as error:
            self._fail(str(error))
            return
        self._audio = audio
        NotificationCenter().add_observer(self._audio_event, sender=audio)
        self.state = "INITIALIZED"
        _post(self, "MediaStreamDidInitialize")

    async def _stun_servers(self) -> list[tuple[str | None, int]]:
        from sipsimple.account import BonjourAccount

        configured = self.account.nat_traversal.stun_server_list
        if configured is not None:
            return [(str(server.host), int(server.port)) for server in configured]
        if isinstance(self.account, BonjourAccount):
            return []
        lookup = DNSLookup().lookup_service(SIPURI(host=str(self.account.id.domain)), "stun")
        try:
            if isinstance(lookup, concurrent.futures.Future):
                return list(await asyncio.wrap_future(lookup))
            return list(await lookup)
        except DNSLookupError as error:
            log.info("no STUN server for %s: %s", self.account.id.domain, error)
            return []

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.error("AudioStream task failed", exc_info=error)
            self._fail(f"internal error: {error}")

    def get_local_media(self, for_offer: bool) -> SDPMediaStream:
        with self._lock:
            audio = self._audio
            if audio is None or self.state not in ("INITIALIZED", "WAIT_ICE", "ESTABLISHED"):
                raise AudioStreamError(
                    f"get_local_media() needs an initialized stream, not state {self.state}"
                )
            if not self.on_hold_by_local:
                direction = "sendrecv"
            elif for_offer and self.on_hold_by_remote:
                direction = "inactive"  # RFC 3264 8.4: holding a stream that only receives
            else:
                direction = "sendonly"
            # For an answer too: the Session's negotiator fits it to the offer.
            return audio.get_local_media(None, 0, direction)

    def start(
        self, local_sdp: FrozenSDPSession, remote_sdp: FrozenSDPSession, stream_index: int
    ) -> None:
        with self._lock:
            if self.state != "INITIALIZED":
                raise AudioStreamError(f"start() needs state INITIALIZED, not {self.state}")
            audio, rtp = self._audio, self._rtp
            assert audio is not None and rtp is not None
            try:
                audio.start(local_sdp, remote_sdp, stream_index)
            except (SDPNegotiationError, AudioTransportError, MediaError) as error:
                self._fail(str(error))
                return
            self._offer = None
            self._codec_key = _codec_key(local_sdp, remote_sdp, stream_index)
            self._peer = _peer_address(remote_sdp, stream_index)
            wait_for_ice = rtp.use_ice and _does_ice(remote_sdp, stream_index)
            self.state = "WAIT_ICE" if wait_for_ice else "ESTABLISHED"
            self._follow_remote_hold(remote_sdp, stream_index)
            self._rewire()
        if not wait_for_ice:
            _post(self, "MediaStreamDidStart")

    def validate_update(self, remote_sdp: FrozenSDPSession, stream_index: int) -> bool:
        with self._lock:
            if self.state not in ("WAIT_ICE", "ESTABLISHED"):
                return False
            if not 0 <= stream_index < len(remote_sdp.media):
                return False
            media = remote_sdp.media[stream_index]
            if media.media != "audio" or media.transport.upper() not in _PROFILES:
                return False
            if not _has_codec(media, _codecs(self.account)):
                return False
            secure = media.transport.upper() in _SECURE_PROFILES
            return not (secure and not self.srtp_active)

    def update(
        self, local_sdp: FrozenSDPSession, remote_sdp: FrozenSDPSession, stream_index: int
    ) -> None:
        with self._lock:
            audio, rtp = self._audio, self._rtp
            if audio is None or rtp is None or self.state not in ("WAIT_ICE", "ESTABLISHED"):
                return
            try:  # new keys, a new peer address: the RTPTransport follows them
                rtp.set_ESTABLISHED(local_sdp, remote_sdp, stream_index)
            except SDPNegotiationError as error:
                self._fail(f"cannot apply the new media parameters: {error}")
                return
            codec_key = _codec_key(local_sdp, remote_sdp, stream_index)
            peer = _peer_address(remote_sdp, stream_index)
            changed = codec_key != self._codec_key or peer != self._peer
            if codec_key != self._codec_key:
                if not self._restart(local_sdp, remote_sdp, stream_index):
                    return
                self._codec_key = codec_key
            else:
                audio.update_direction(
                    answer_direction(
                        effective_direction(remote_sdp, stream_index),
                        effective_direction(local_sdp, stream_index),
                    )
                )
            self._peer = peer
            self._follow_remote_hold(remote_sdp, stream_index)
            self._rewire()
        if changed:
            _post(self, "AudioStreamDidChangeRTPParameters")

    def _restart(
        self, local_sdp: FrozenSDPSession, remote_sdp: FrozenSDPSession, index: int
    ) -> bool:
        """A new AudioTransport for changed parameters (on the same RTPTransport)."""
        old, rtp = self._audio, self._rtp
        assert old is not None and rtp is not None
        old_slot = old.slot
        if self in self.bridge:
            self.bridge.remove(self)
        NotificationCenter().discard_observer(self._audio_event, sender=old)
        old.stop()
        try:
            audio = AudioTransport(
                self.mixer,
                rtp,
                remote_sdp,
                index,
                codecs=_codecs(self.account),
                timeout=old.timeout,
            )
            audio.start(local_sdp, remote_sdp, index)
        except (SDPNegotiationError, AudioTransportError, MediaError) as error:
            self._audio = None
            self._fail(f"cannot apply the new media parameters: {error}")
            return False
        self._audio = audio
        NotificationCenter().add_observer(self._audio_event, sender=audio)
        _post(
            self,
            "AudioPortDidChangeSlots",
            consumer_slot_changed=True,
            producer_slot_changed=True,
            old_consumer_slot=old_slot,
            new_consumer_slot=audio.slot,
            old_producer_slot=old_slot,
            new_producer_slot=audio.slot,
        )
        return True

    def hold(self) -> None:
        with self._lock:
            if self.on_hold_by_local:
                return
            self.on_hold_by_local = True
            self._rewire()
        _post(self, "AudioStreamDidChangeHoldState", originator="local", on_hold=True)

    def unhold(self) -> None:
        with self._lock:
            if not self.on_hold_by_local:
                return
            self.on_hold_by_local = False
            self._rewire()
        _post(self, "AudioStreamDidChangeHoldState", originator="local", on_hold=False)

    def deactivate(self) -> None:
        """Nothing to do: RTP over UDP has no connection that the peer could close."""

    def end(self) -> None:
        with self._lock:
            if self.state == "ENDED":
                return
            self.state = "ENDED"
            # The transports stay, stopped: codec, statistics... can be read after the end.
            audio, rtp = self._audio, self._rtp
            recorder, self._recorder = self._recorder, None
        _post(self, "MediaStreamWillEnd")
        if recorder is not None:
            self._stop_recorder(recorder)
        if self in self.bridge:
            self.bridge.remove(self)
        if audio is not None:
            NotificationCenter().discard_observer(self._audio_event, sender=audio)
            audio.stop()
        if rtp is None:
            _post(self, "MediaStreamDidEnd")
            return
        self._spawn(self._release(rtp, self._ended))

    async def _release(self, rtp: RTPTransport, then: Callable[[], None] | None) -> None:
        NotificationCenter().discard_observer(self._rtp_event, sender=rtp)
        try:
            await rtp.stop()
        except Exception:
            log.exception("closing the RTP transport failed")
        if then is not None:
            then()

    def _ended(self) -> None:
        _post(self, "MediaStreamDidEnd")

    # -- recording and DTMF ------------------------------------------------------------------

    def start_recording(self, filename: str | os.PathLike[str] | None = None) -> None:
        """Record the call (both parties) to a WAV file; nothing is written while on hold.

        A relative ``filename`` (and the default one: time, peer and direction) is in
        ``audio.recordings_directory``/<account id>.
        """
        with self._lock:
            if self.state not in ("WAIT_ICE", "ESTABLISHED"):
                raise AudioStreamError(
                    f"start_recording() needs a started stream, not {self.state}"
                )
            if self._recorder is not None:
                raise AudioStreamError(f"already recording to {self._recorder.filename!r}")
            directory = os.path.join(
                SIPSimpleSettings().audio.recordings_directory.normalized, str(self.account.id)
            )
            name = os.fspath(filename) if filename is not None else self._default_filename()
            recorder = self._recorder = WaveRecorder(self.mixer, os.path.join(directory, name))
        self._on_sip_thread(self._start_recorder, recorder)

    def _default_filename(self) -> str:
        session = self.session
        remote = getattr(getattr(session, "remote_identity", None), "uri", None)
        peer = f"{remote.user}@{remote.host}" if remote is not None else "unknown"
        direction = getattr(session, "direction", None) or "unknown"
        return f"{datetime.now():%Y%m%d-%H%M%S}-{peer}-{direction}.wav"

    def _start_recorder(self, recorder: WaveRecorder) -> None:
        if self._recorder is not recorder:
            return  # stopped (or the stream ended) meanwhile
        _post(self, "AudioStreamWillStartRecordingAudio", filename=recorder.filename)
        try:
            recorder.start()
        except (OSError, MediaError) as error:
            with self._lock:
                if self._recorder is recorder:
                    self._recorder = None
            _post(
                self,
                "AudioStreamDidStopRecordingAudio",
                filename=recorder.filename,
                reason=str(error),
            )
            return
        _post(self, "AudioStreamDidStartRecordingAudio", filename=recorder.filename)
        with self._lock:
            self._rewire()

    def stop_recording(self) -> None:
        """Stop recording; AudioStreamDidStopRecordingAudio once the file is complete."""
        with self._lock:
            recorder, self._recorder = self._recorder, None
            if recorder is None:
                raise AudioStreamError("not recording")
        self._on_sip_thread(self._stop_recorder, recorder)

    def _stop_recorder(self, recorder: WaveRecorder) -> None:
        filename = recorder.filename
        _post(self, "AudioStreamWillStopRecordingAudio", filename=filename)
        if recorder in self.bridge:
            self.bridge.remove(recorder)
        done = recorder.stop()
        stopped = partial(_post, self, "AudioStreamDidStopRecordingAudio", filename=filename)
        loop = asyncio.get_running_loop()
        done.add_done_callback(lambda _: loop.call_soon_threadsafe(stopped))

    def send_dtmf(self, digit: str) -> None:
        """Send one DTMF digit (0-9, A-D, * or #) as RFC 4733 telephone-events."""
        if not isinstance(digit, str) or len(digit) != 1 or digit.upper() not in DTMF_DIGITS:
            raise ValueError(f"a DTMF digit is one of 0-9, A-D, * and #, not {digit!r}")
        with self._lock:
            audio = self._audio
            if audio is None or self.state != "ESTABLISHED":
                raise AudioStreamError(f"send_dtmf() needs an established stream, not {self.state}")
        self._on_sip_thread(self._send_dtmf, audio, digit.upper())

    def _send_dtmf(self, audio: AudioTransport, digit: str) -> None:
        if audio is self._audio and self.state == "ESTABLISHED":
            try:
                audio.send_dtmf(digit)
            except AudioTransportError as error:
                log.warning("cannot send DTMF %s: %s", digit, error)

    # -- inside ------------------------------------------------------------------------------

    @staticmethod
    def _on_sip_thread(function: Callable[..., None], *args: Any) -> None:
        if is_sip_thread():
            function(*args)
        else:
            call_in_sip_thread(function, *args)

    def _follow_remote_hold(self, remote_sdp: BaseSDPSession, index: int) -> None:
        held = effective_direction(remote_sdp, index) in ("sendonly", "inactive")
        if held != self.on_hold_by_remote:
            self.on_hold_by_remote = held
            _post(self, "AudioStreamDidChangeHoldState", originator="remote", on_hold=held)

    def _rewire(self) -> None:
        """The stream (and the recorder) in the bridge while started and not on hold."""
        active = self.state in ("WAIT_ICE", "ESTABLISHED") and not self.on_hold
        members: list[Any] = [self]
        recorder = self._recorder
        if recorder is not None and recorder.is_active:
            members.append(recorder)
        for member in members:
            if active and member not in self.bridge:
                self.bridge.add(member)
            elif not active and member in self.bridge:
                self.bridge.remove(member)

    def _fail(self, reason: str) -> None:
        with self._lock:
            if self.state in ("ENDED", "FAILED"):
                return
            self.state = "FAILED"
        _post(self, "MediaStreamDidFail", reason=reason)

    def _rtp_event(self, notification: Notification) -> None:
        name = notification.name
        if name == "RTPTransportDidFail":
            self._rtp_failure = getattr(notification.data, "reason", None)
            return
        proxied = _ICE_NOTIFICATIONS.get(name)
        if proxied is None:
            return
        _post(self, proxied, notification.data)
        if name == "RTPTransportICENegotiationStateDidChange":
            return
        with self._lock:
            if self.state != "WAIT_ICE":
                return
            self.state = "ESTABLISHED"
            self._rewire()
        _post(self, "MediaStreamDidStart")

    def _audio_event(self, notification: Notification) -> None:
        if notification.name == "RTPAudioStreamGotDTMF":
            _post(self, "AudioStreamGotDTMF", digit=notification.data.digit)
        elif notification.name == "RTPAudioTransportDidTimeout":
            _post(self, "AudioStreamDidTimeout", timeout=notification.sender.timeout)
