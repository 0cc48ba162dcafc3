"""An AudioConference of three endpoints through Kamailio 5.6: Alice (a SIPApplication on
the test's loop) calls Bob and Carol (two RemoteSDK children) and joins both calls in a
conference. Each party's microphone is its own tone; each must hear the other two (FFT),
and not itself. Holding the conference takes Alice out while Bob and Carol go on; a
WaveRecorder on the conference bridge records everyone. Run as root inside a
loopback-only network namespace:

    unshare -n sh -c 'ip link set lo up;
        PYTHONPATH=src python -m pytest tests/interop/test_audio_conference.py -q'
"""

from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
import pytest
from tests.interop.peers import Kamailio
from tests.support.application import loopback_storage, running_application
from tests.support.audio import analyse, heard, install_device
from tests.support.remote import RemoteSDK
from tests.support.sessions import SessionLog

from sipsimple.account import AccountManager
from sipsimple.application import SIPApplication
from sipsimple.audio import WaveRecorder
from sipsimple.conference import AudioConference
from sipsimple.core import SIPURI, ToHeader
from sipsimple.notification import NotificationQueue
from sipsimple.session import Session
from sipsimple.streams import AudioStream

pytestmark = [pytest.mark.interop, pytest.mark.timeout(90)]

AUDIO = "tests.support.audio"
SESSIONS = "tests.support.sessions"
DOMAIN = "example.test"
TONES = {"alice": 700.0, "bob": 1100.0, "carol": 1700.0}
ALL = tuple(TONES.values())
LISTEN, SETTLE = 0.8, 1.0
HEARD = 0.1  # a voice heard holds at least this share of the energy (two equal ones: 0.5)
NOT_HEARD = 0.01  # a voice not heard: under this (in practice 1e-4 or less)


def account(proxy: Kamailio, user: str) -> dict[str, Any]:
    host, port = proxy.address("udp")
    return {
        f"{user}@{DOMAIN}": {
            "enabled": "true",
            "auth": {"password": f"{user}-secret"},
            "sip": {"outbound_proxy": f"{host}:{port};transport=udp"},
        }
    }


@pytest.fixture(scope="module")
def proxy() -> Iterator[Kamailio]:
    with Kamailio(domain=DOMAIN) as kamailio:
        for user in TONES:
            kamailio.add_user(user, f"{user}-secret")
        yield kamailio


@pytest.fixture(scope="module")
def peers(proxy) -> Iterator[dict[str, RemoteSDK]]:
    remotes = {user: RemoteSDK(call_timeout=20) for user in ("bob", "carol")}
    try:
        for user, remote in remotes.items():
            remote.start()
            remote.call(f"{AUDIO}:start_audio_endpoint", account(proxy, user), None, TONES[user])
        for remote in remotes.values():
            remote.wait_for("SIPAccountRegistrationDidSucceed", timeout=10)
            remote.call(f"{SESSIONS}:answer_mode", "accept", "accept")
        yield remotes
        for remote in remotes.values():
            remote.call(f"{AUDIO}:stop_audio_endpoint")
    finally:
        for remote in remotes.values():
            remote.stop()


@pytest.fixture
async def alice(proxy, peers) -> AsyncIterator[Any]:
    storage = loopback_storage(accounts=account(proxy, "alice"))
    with NotificationQueue(name="SIPAccountRegistrationDidSucceed") as registered:
        async with running_application(storage):
            await registered.wait_for("SIPAccountRegistrationDidSucceed", timeout=10)
            yield AccountManager().get_account(f"alice@{DOMAIN}")


async def call(alice: Any, user: str) -> tuple[Session, AudioStream, SessionLog]:
    session = Session(alice)
    log = SessionLog(session)
    stream = AudioStream(alice)
    session.connect(ToHeader(SIPURI(user=user, host=DOMAIN)), None, [stream])
    await log.wait("SIPSessionDidStart", timeout=15)
    return session, stream, log


async def listen(peers: dict[str, RemoteSDK], device: Any) -> dict[str, dict[str, float]]:
    """The share of each tone in what each party heard over the last LISTEN seconds."""
    shares = {"alice": heard(device, LISTEN, ALL)["share"]}
    for user, remote in peers.items():
        shares[user] = (await remote.async_call(f"{AUDIO}:listen", LISTEN, ALL))["share"]
    return shares


def assert_hearing(shares: dict[str, dict[float, float]], expected: dict[str, set[str]]) -> None:
    for listener, voices in expected.items():
        for speaker, tone in TONES.items():
            share = shares[listener][tone]
            if speaker in voices:
                assert share >= HEARD, f"{listener} does not hear {speaker}: {shares}"
            else:
                assert share <= NOT_HEARD, f"{listener} hears {speaker}: {shares}"


async def test_three_parties_hear_each_other(alice, peers, tmp_path):
    device = install_device(tone=TONES["alice"])
    (bob_session, bob_stream, bob_log), (carol_session, carol_stream, carol_log) = [
        await call(alice, user) for user in ("bob", "carol")
    ]
    conference = AudioConference()
    assert conference.bridge.mixer is SIPApplication.voice_audio_mixer
    conference.add(bob_stream)
    conference.add(carol_stream)
    conference.add(bob_stream)  # a second time: nothing changes
    assert conference.streams == [bob_stream, carol_stream] and not conference.on_hold
    recorder = WaveRecorder(conference.bridge.mixer, tmp_path / "conference.wav")
    conference.bridge.add(recorder)
    recorder.start()
    await asyncio.sleep(SETTLE + LISTEN)
    assert_hearing(
        await listen(peers, device),
        {"alice": {"bob", "carol"}, "bob": {"alice", "carol"}, "carol": {"alice", "bob"}},
    )
    await asyncio.wrap_future(recorder.stop())
    with wave.open(str(tmp_path / "conference.wav")) as wav:
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
        everyone = analyse(samples, wav.getframerate(), ALL)["share"]
    assert all(share > 0.15 for share in everyone.values()), everyone

    conference.hold()  # Alice leaves; Bob and Carol go on
    assert conference.on_hold
    await asyncio.sleep(SETTLE + LISTEN)
    assert_hearing(
        await listen(peers, device), {"alice": set(), "bob": {"carol"}, "carol": {"bob"}}
    )
    conference.unhold()

    conference.remove(carol_stream)  # Carol back to a call with Alice alone
    assert conference.streams == [bob_stream]
    with pytest.raises(ValueError):
        conference.remove(carol_stream)
    await asyncio.sleep(SETTLE + LISTEN)
    assert_hearing(
        await listen(peers, device),
        {"alice": {"bob", "carol"}, "bob": {"alice"}, "carol": {"alice"}},
    )
    for session, log in ((bob_session, bob_log), (carol_session, carol_log)):
        session.end()
        await log.wait("SIPSessionDidEnd")


async def test_a_conference_needs_audio_streams(alice):
    conference = AudioConference()
    with pytest.raises(TypeError):
        conference.add(object())
