"""AudioStream against baresip 1.0, both registered at Kamailio 5.6.

Alice is a SIPApplication on the test's loop with a 1000 Hz microphone; baresip plays a
1500 Hz WAV file and records what it receives (sndfile's ``-dec.wav``). Each side must
hear the other's tone (FFT), in calls either way, with SRTP and without, over several
codecs; DTMF goes both ways. Run as root inside a loopback-only network namespace:

    unshare -n sh -c 'ip link set lo up;
        PYTHONPATH=src python -m pytest tests/interop/test_audio_baresip.py -q'
"""

from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.interop.peers import Baresip, Kamailio
from tests.support.application import loopback_storage, running_application
from tests.support.audio import analyse, heard, install_device, write_tone
from tests.support.sessions import SessionLog

from sipsimple.account import AccountManager
from sipsimple.core import SIPURI, ToHeader
from sipsimple.notification import NotificationQueue
from sipsimple.session import Session
from sipsimple.streams import AudioStream

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]

DOMAIN = "example.test"
ALICE_TONE, BARESIP_TONE = 1000.0, 1500.0
TOLERANCE = 5.0
LISTEN, SETTLE = 0.8, 1.0
# (our codec, baresip's audio_codecs, the sample rate baresip's WAV files use)
CODECS = {
    "PCMU": ("PCMU/8000/1", 8000),
    "PCMA": ("PCMA/8000/1", 8000),
    "G722": ("G722/16000/1", 16000),
    "opus": ("opus/48000/2", 48000),
}


@pytest.fixture(scope="module")
def proxy() -> Iterator[Kamailio]:
    with Kamailio(domain=DOMAIN) as kamailio:
        kamailio.add_user("alice", "alice-secret")
        kamailio.add_user("dave", "dave-secret")
        yield kamailio


def start_baresip(proxy: Kamailio, tmp_path: Path, codec: str, mediaenc: str | None) -> Baresip:
    codecs, rate = CODECS[codec]
    return Baresip(
        "dave",
        "dave-secret",
        proxy.address("udp"),
        domain=DOMAIN,
        audio_codecs=(codecs,),
        mediaenc=mediaenc,
        sample_rate=rate,
        audio_file=write_tone(tmp_path / "dave.wav", BARESIP_TONE, 30, rate),
        recordings_dir=tmp_path / "recordings",
    ).start()


@pytest.fixture
async def alice(proxy) -> AsyncIterator[Any]:
    host, port = proxy.address("udp")
    accounts = {
        f"alice@{DOMAIN}": {
            "enabled": "true",
            "auth": {"password": "alice-secret"},
            "sip": {"outbound_proxy": f"{host}:{port};transport=udp"},
            "rtp": {"encryption": {"key_negotiation": "opportunistic"}},
        }
    }
    with NotificationQueue(name="SIPAccountRegistrationDidSucceed") as registered:
        async with running_application(loopback_storage(accounts=accounts)):
            await registered.wait_for("SIPAccountRegistrationDidSucceed", timeout=10)
            yield AccountManager().get_account(f"alice@{DOMAIN}")


def received_by(peer: Baresip) -> dict[str, Any]:
    """What baresip decoded in its last call: the analysis of its -dec.wav file."""
    path = next(p for p in reversed(peer.recordings()) if p.name.endswith("-dec.wav"))
    with wave.open(str(path)) as recording:
        rate, channels = recording.getframerate(), recording.getnchannels()
        samples = np.frombuffer(recording.readframes(recording.getnframes()), dtype="<i2")
    samples = samples.reshape(-1, channels)[:, 0]
    return analyse(samples[rate // 2 :], rate, (ALICE_TONE,))  # past the first half second


async def in_thread(function: Any, *args: Any) -> Any:
    """A blocking baresip call, off the loop that runs Alice's media."""
    return await asyncio.to_thread(function, *args)


# baresip's "srtp" takes our RTP/AVP offer with a=crypto lines (opportunistic SRTP, our
# default); its "srtp-mand" offers RTP/SAVP.
@pytest.mark.parametrize(
    ("codec", "mediaenc", "caller"),
    [
        ("PCMU", "srtp", "alice"),
        ("G722", None, "alice"),
        ("opus", "srtp-mand", "baresip"),
        ("PCMA", None, "baresip"),
    ],
)
async def test_tones_and_dtmf_with_baresip(proxy, alice, tmp_path, codec, mediaenc, caller):
    srtp = mediaenc is not None
    alice.rtp.audio_codec_list = [codec]
    alice.save()
    device = install_device(tone=ALICE_TONE)
    dave = await in_thread(start_baresip, proxy, tmp_path, codec, mediaenc)
    try:
        if caller == "alice":
            session = Session(alice)
            log = SessionLog(session)
            session.connect(ToHeader(SIPURI(user="dave", host=DOMAIN)), None, [AudioStream(alice)])
        else:
            with NotificationQueue(name="SIPSessionNewIncoming") as incoming:
                await in_thread(dave.dial, f"sip:alice@{DOMAIN}")
                session = (await incoming.wait_for("SIPSessionNewIncoming", timeout=10)).sender
            log = SessionLog(session)
            session.accept(session.proposed_streams)
        await log.wait("SIPSessionDidStart", timeout=15)
        stream = session.streams[0]
        stream_log = SessionLog(stream)
        assert stream.codec == codec and stream.srtp_active is srtp
        await in_thread(dave.wait_event, "CALL_ESTABLISHED")
        await asyncio.sleep(SETTLE + LISTEN)
        alice_heard = heard(device, LISTEN, (BARESIP_TONE,))

        stream.send_dtmf("4")
        stream.send_dtmf("#")
        events = [(await in_thread(dave.wait_event, "CALL_DTMF_START"))["param"] for _ in "4#"]
        await in_thread(dave.send_dtmf, "9*")
        digits = [(await stream_log.wait("AudioStreamGotDTMF")).data.digit for _ in "9*"]

        session.end()
        await log.wait("SIPSessionDidEnd")
        await in_thread(dave.wait_event, "CALL_CLOSED")
        await asyncio.sleep(0.2)  # sndfile closes its files
        dave_heard = received_by(dave)
    finally:
        await in_thread(dave.stop)
    assert abs(alice_heard["frequency"] - BARESIP_TONE) <= TOLERANCE, alice_heard
    assert alice_heard["share"][BARESIP_TONE] > 0.6, alice_heard
    assert abs(dave_heard["frequency"] - ALICE_TONE) <= TOLERANCE, dave_heard
    assert dave_heard["share"][ALICE_TONE] > 0.6, dave_heard
    assert events == ["4", "#"] and digits == ["9", "*"]
