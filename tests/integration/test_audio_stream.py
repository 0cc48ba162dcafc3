"""SIPApplication's audio and AudioStream on one machine, without a SIP peer: the
application's mixers, bridges and devices; which offers a stream takes; two streams
negotiated through SDPNegotiators on 127.0.0.1 (hold, updates, recording, the end).

Calls between endpoints, with audio checked by FFT, are in tests/interop/test_audio_*.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from tests.support.application import loopback_storage, running_application
from tests.support.sessions import SessionLog

from sipsimple.account import AccountManager
from sipsimple.application import SIPApplication
from sipsimple.audio import AudioBridge, AudioDevice
from sipsimple.configuration.settings import SIPSimpleSettings
from sipsimple.core import SIPURI, AudioMixer
from sipsimple.core.sdp import SDPNegotiator, SDPSession
from sipsimple.streams import AudioStream, AudioStreamError, MediaStreamRegistry

pytestmark = pytest.mark.timeout(30)

ALICE = "alice@example.test"
ACCOUNT = {"enabled": "true", "registration": {"enabled": "false"}}
SESSION = SimpleNamespace(
    remote_identity=SimpleNamespace(uri=SIPURI("example.test", "bob")), direction="outgoing"
)


@pytest.fixture
async def account() -> AsyncIterator[Any]:
    async with running_application(loopback_storage(accounts={ALICE: ACCOUNT})):
        yield AccountManager().get_account(ALICE)


async def until(condition: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


# -- the application's audio ---------------------------------------------------------------


async def test_the_application_offers_its_audio_while_it_runs():
    assert SIPApplication.voice_audio_mixer is None
    async with running_application(loopback_storage()) as app:
        voice, alert = SIPApplication.voice_audio_mixer, SIPApplication.alert_audio_mixer
        assert isinstance(voice, AudioMixer) and isinstance(alert, AudioMixer)
        assert voice is not alert and voice.is_running and alert.is_running
        assert app.voice_audio_mixer is voice  # on the instance as on the class
        for bridge, device, mixer in (
            (app.voice_audio_bridge, app.voice_audio_device, voice),
            (app.alert_audio_bridge, app.alert_audio_device, alert),
        ):
            assert isinstance(bridge, AudioBridge) and isinstance(device, AudioDevice)
            assert bridge.mixer is mixer and device.mixer is mixer
            assert bridge.ports == [device]
        assert voice.sample_rate == SIPSimpleSettings().audio.sample_rate
    assert app.voice_audio_mixer is None and app.alert_audio_bridge is None
    assert not voice.is_running and not alert.is_running


async def test_audio_settings_apply_while_running():
    async with running_application(loopback_storage()) as app:
        settings = SIPSimpleSettings()
        settings.audio.muted = True
        settings.audio.silent = True
        settings.save()
        await until(
            lambda: app.voice_audio_mixer.muted and app.alert_audio_mixer.output_volume == 0
        )
        old = app.voice_audio_mixer
        settings.audio.sample_rate = 16000
        settings.save()
        await until(lambda: app.voice_audio_mixer is not old)
        assert app.voice_audio_mixer.sample_rate == app.alert_audio_mixer.sample_rate == 16000
        assert app.voice_audio_bridge.ports == [app.voice_audio_device]
        assert app.voice_audio_mixer.muted and not old.is_running


async def test_an_audio_stream_needs_the_application():
    assert AudioStream in list(MediaStreamRegistry())
    with pytest.raises(AudioStreamError, match="start the application"):
        AudioStream(object())


# -- which offers an AudioStream takes -------------------------------------------------------


def offer(media: str) -> SDPSession:
    text = f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n{media}"
    return SDPSession.parse(text.replace("\n", "\r\n").replace("\r\r", "\r"))


CRYPTO = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\n"


@pytest.mark.parametrize(
    ("media", "settings", "taken"),
    [
        ("m=audio 4000 RTP/AVP 0\n", {}, True),
        ("m=audio 4000 RTP/AVP 96\na=rtpmap:96 opus/48000/2\n", {}, True),
        ("m=audio 4000 RTP/AVP 18 3\n", {}, False),  # G.729 and GSM: none of ours
        ("m=audio 0 RTP/AVP 0\n", {}, False),  # disabled
        ("m=video 4000 RTP/AVP 31\n", {}, False),
        ("m=audio 4000 UDP/TLS/RTP/SAVPF 0\n", {}, False),  # DTLS-SRTP
        ("m=audio 4000 RTP/AVP 0\n", {"audio_codec_list": ["PCMA"]}, False),
        (f"m=audio 4000 RTP/SAVP 0\n{CRYPTO}", {}, True),
        (f"m=audio 4000 RTP/SAVP 0\n{CRYPTO}", {"encryption": False}, False),
        ("m=audio 4000 RTP/SAVP 0\n", {}, False),  # SRTP asked for, no key
        ("m=audio 4000 RTP/AVP 0\n", {"key_negotiation": "sdes_mandatory"}, False),
        (f"m=audio 4000 RTP/AVP 0\n{CRYPTO}", {"key_negotiation": "sdes_mandatory"}, True),
    ],
)
async def test_which_offers_a_stream_takes(account, media, settings, taken):
    if "audio_codec_list" in settings:
        account.rtp.audio_codec_list = settings["audio_codec_list"]
    if "encryption" in settings:
        account.rtp.encryption.enabled = settings["encryption"]
    if "key_negotiation" in settings:
        account.rtp.encryption.key_negotiation = settings["key_negotiation"]
    stream = AudioStream.new_from_sdp(account, offer(media), 0)
    assert (stream is not None) is taken
    if stream is not None:
        assert stream.state == "NULL" and stream.bridge.ports == [stream.device]


# -- two streams, offer and answer through negotiators ---------------------------------------


async def initialized(stream: AudioStream) -> None:
    log = SessionLog(stream)
    stream.initialize(SESSION, "outgoing" if stream._offer is None else "incoming")
    await log.wait("MediaStreamDidInitialize")
    log.close()


def session_of(media: Any) -> SDPSession:
    return SDPSession("127.0.0.1", connection=None, media=[media])


class Call:
    """Alice's stream offers, Bob's answers; both on the same (voice) mixer."""

    def __init__(self, account: Any) -> None:
        self.account = account
        self.alice: AudioStream = AudioStream(account)
        self.bob: AudioStream | None = None
        self.negotiators = (SDPNegotiator(), SDPNegotiator())

    async def start(self) -> None:
        await initialized(self.alice)
        offer = self.negotiators[0].set_local_offer(session_of(self.alice.get_local_media(True)))
        self.bob = AudioStream.new_from_sdp(self.account, offer, 0)
        assert self.bob is not None
        await initialized(self.bob)
        self.negotiators[1].set_remote_offer(offer)
        await self._answer()
        for stream, negotiator in zip((self.alice, self.bob), self.negotiators, strict=True):
            log = SessionLog(stream)
            stream.start(negotiator.active_local, negotiator.active_remote, 0)
            await log.wait("MediaStreamDidStart")

    async def _answer(self) -> None:
        assert self.bob is not None
        self.negotiators[1].set_local_answer(session_of(self.bob.get_local_media(False)))
        self.negotiators[1].negotiate()
        self.negotiators[0].set_remote_answer(self.negotiators[1].active_local)
        self.negotiators[0].negotiate()

    async def reoffer(self, offerer: AudioStream, change: Any = None) -> None:
        """A new offer of ``offerer`` (changed by ``change``), answered and applied."""
        assert self.bob is not None
        first, second = (0, 1) if offerer is self.alice else (1, 0)
        answerer = self.bob if offerer is self.alice else self.alice
        media = offerer.get_local_media(True)
        if change is not None:
            change(media)
        sent = self.negotiators[first].set_local_offer(session_of(media))
        assert answerer.validate_update(sent, 0)
        self.negotiators[second].set_remote_offer(sent)
        self.negotiators[second].set_local_answer(session_of(answerer.get_local_media(False)))
        self.negotiators[second].negotiate()
        self.negotiators[first].set_remote_answer(self.negotiators[second].active_local)
        self.negotiators[first].negotiate()
        for stream, index in ((self.alice, 0), (self.bob, 1)):
            negotiator = self.negotiators[index]
            stream.update(negotiator.active_local, negotiator.active_remote, 0)

    def end(self) -> None:
        for stream in (self.alice, self.bob):
            if stream is not None:
                stream.end()


@pytest.fixture
async def call(account) -> AsyncIterator[Call]:
    call = Call(account)
    await call.start()
    yield call
    call.end()


async def test_a_started_stream_tells_its_parameters(call):
    alice, bob = call.alice, call.bob
    for stream, other in ((alice, bob), (bob, alice)):
        assert stream.state == "ESTABLISHED" and stream.codec == "opus"
        assert stream.sample_rate == 48000 and stream.srtp_active  # opportunistic SDES
        assert not stream.ice_active and stream.local_rtp_candidate_type is None
        assert stream.local_rtp_address == "127.0.0.1"
        assert (stream.remote_rtp_address_sdp, stream.remote_rtp_port_sdp) == (
            other.local_rtp_address,
            other.local_rtp_port,
        )
        assert stream in stream.bridge and stream.consumer_slot == stream.producer_slot
        assert stream.mixer is SIPApplication.voice_audio_mixer
    await until(lambda: alice.remote_rtp_port_received == bob.local_rtp_port)
    await until(lambda: alice.statistics.rx.packets > 5 and bob.statistics.rx.packets > 5)


async def test_hold_offers_sendonly_then_inactive_and_updates_the_peer(call):
    alice, bob = call.alice, call.bob
    alice_log, bob_log = SessionLog(alice), SessionLog(bob)
    alice.hold()
    alice.hold()  # again: nothing new
    assert alice.on_hold_by_local and alice not in alice.bridge
    assert alice.get_local_media(True).direction == "sendonly"
    change = await alice_log.wait("AudioStreamDidChangeHoldState")
    assert (change.data.originator, change.data.on_hold) == ("local", True)
    await call.reoffer(alice)
    change = await bob_log.wait("AudioStreamDidChangeHoldState")
    assert (change.data.originator, change.data.on_hold) == ("remote", True)
    assert bob.on_hold_by_remote and bob.on_hold and bob not in bob.bridge
    # Bob holds too: he receives nothing already, so he offers inactive.
    bob.hold()
    assert bob.get_local_media(True).direction == "inactive"
    await call.reoffer(bob)
    assert alice.on_hold_by_remote and alice.on_hold_by_local
    alice.unhold()
    bob.unhold()
    await call.reoffer(alice)
    assert not (alice.on_hold or bob.on_hold)
    assert alice in alice.bridge and bob in bob.bridge
    assert "AudioStreamDidChangeRTPParameters" not in alice_log.names + bob_log.names


async def test_validate_update_refuses_what_the_stream_cannot_do(call):
    alice, bob = call.alice, call.bob
    media = alice.get_local_media(True)
    assert bob.validate_update(session_of(media), 0)
    for text in (
        "m=video 4000 RTP/AVP 31\n",
        "m=audio 4000 RTP/AVP 18\n",
        "m=audio 4000 UDP/TLS/RTP/SAVPF 0\n",
    ):
        assert not bob.validate_update(offer(text), 0)
    assert not bob.validate_update(offer("m=audio 4000 RTP/AVP 0\n"), 3)


async def test_a_new_peer_address_restarts_the_audio_transport(call):
    alice, bob = call.alice, call.bob
    log = SessionLog(bob)
    old_slot = bob.consumer_slot
    codec = alice.codec

    def only_pcmu(media: Any) -> None:
        media.formats = ["0"]
        media.attributes = [a for a in media.attributes if a.name not in ("rtpmap", "fmtp")]

    await call.reoffer(alice, only_pcmu)
    slots = await log.wait("AudioPortDidChangeSlots")
    assert (slots.data.old_consumer_slot, slots.data.new_consumer_slot) == (
        old_slot,
        bob.consumer_slot,
    )
    await log.wait("AudioStreamDidChangeRTPParameters")
    assert codec == "opus" and bob.codec == alice.codec == "PCMU" and bob.sample_rate == 8000
    assert bob in bob.bridge
    # The new transports run: RTP of the new codec flows both ways (their statistics are new).
    await until(lambda: alice.statistics.rx.packets > 10 and bob.statistics.rx.packets > 10)


async def test_recording_errors(call, tmp_path):
    alice = call.alice
    log = SessionLog(alice)
    with pytest.raises(AudioStreamError, match="not recording"):
        alice.stop_recording()
    blocker = tmp_path / "file"
    blocker.write_text("")
    alice.start_recording(str(blocker / "below-a-file.wav"))  # cannot be created
    stopped = await log.wait("AudioStreamDidStopRecordingAudio")
    assert stopped.data.filename == str(blocker / "below-a-file.wav") and stopped.data.reason
    assert alice.recording_filename is None
    assert "AudioStreamDidStartRecordingAudio" not in log.names
    alice.start_recording(str(tmp_path / "ok.wav"))
    with pytest.raises(AudioStreamError, match="already recording"):
        alice.start_recording()
    await log.wait("AudioStreamDidStartRecordingAudio")
    await asyncio.sleep(0.3)
    call.end()  # the end stops the recording
    await log.wait("AudioStreamDidStopRecordingAudio")
    assert (tmp_path / "ok.wav").stat().st_size > 44


async def test_a_default_recording_name_in_the_recordings_directory(call, tmp_path):
    settings = SIPSimpleSettings()
    settings.audio.recordings_directory = str(tmp_path)
    alice = call.alice
    log = SessionLog(alice)
    alice.start_recording()
    started = await log.wait("AudioStreamDidStartRecordingAudio")
    name = started.data.filename
    assert name.startswith(str(tmp_path / ALICE)) and name.endswith(
        "-bob@example.test-outgoing.wav"
    )
    alice.stop_recording()
    await log.wait("AudioStreamDidStopRecordingAudio")


async def test_the_end(account):
    stream = AudioStream(account)
    with pytest.raises(AudioStreamError):
        stream.get_local_media(True)
    with pytest.raises(AudioStreamError):
        stream.start_recording()
    await initialized(stream)
    port = stream.local_rtp_port
    log = SessionLog(stream)
    stream.end()
    stream.end()
    await log.wait("MediaStreamDidEnd")
    assert log.names.count("MediaStreamWillEnd") == 1 and stream.state == "ENDED"
    assert stream.local_rtp_port is None and port is not None
    with pytest.raises(AudioStreamError):
        stream.send_dtmf("1")


async def test_ending_while_initializing(account):
    account.nat_traversal.use_ice = True  # no STUN list: the lookup of example.test waits
    stream = AudioStream(account)
    log = SessionLog(stream)
    stream.initialize(SESSION, "outgoing")
    await asyncio.sleep(0.05)
    stream.end()
    await log.wait("MediaStreamDidEnd")
    await asyncio.sleep(0.1)
    assert "MediaStreamDidInitialize" not in log.names and "MediaStreamDidFail" not in log.names
