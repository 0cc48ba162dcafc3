"""Audio sessions between two SDK endpoints through Kamailio 5.6: codecs, SRTP, ICE
(host candidates on loopback, and server reflexive ones from coturn), hold, recording,
DTMF, RTP parameter changes, the RTP timeout and refused offers.

Alice is a whole SIPApplication on the test's loop; Bob a RemoteSDK child running the
same start order with the application's audio (tests/support/audio.py). Each party's
microphone is a tone (Alice 1000 Hz, Bob 1500 Hz: both inside G.711's band) and its
speaker is kept in memory: what one side hears must be the other side's tone, found
by FFT within TOLERANCE Hz and holding most of the energy. Run as root inside a
loopback-only network namespace:

    unshare -n sh -c 'ip link set lo up;
        PYTHONPATH=src python -m pytest tests/interop/test_audio_sessions.py -q'
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from tests.interop.peers import Kamailio
from tests.interop.peers.coturn import Coturn
from tests.support.application import loopback_storage, running_application
from tests.support.audio import heard, install_device
from tests.support.remote import RemoteSDK
from tests.support.sessions import SessionLog

from sipsimple.account import AccountManager
from sipsimple.core import SIPURI, ToHeader
from sipsimple.notification import NotificationQueue
from sipsimple.session import Session
from sipsimple.streams import AudioStream

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]

AUDIO = "tests.support.audio"
SESSIONS = "tests.support.sessions"
DOMAIN = "example.test"
ALICE_TONE, BOB_TONE = 1000.0, 1500.0
TOLERANCE = 5.0  # Hz
MIN_SHARE = 0.6  # of the energy heard, near the expected tone
LISTEN = 0.6  # seconds analysed, once the call has run for SETTLE seconds
SETTLE = 0.8


def account(proxy: Kamailio, user: str, **extra: Any) -> dict[str, Any]:
    host, port = proxy.address("udp")
    settings: dict[str, Any] = {
        "enabled": "true",
        "auth": {"password": f"{user}-secret"},
        "sip": {"outbound_proxy": f"{host}:{port};transport=udp"},
    }
    for group, values in extra.items():
        settings.setdefault(group, {}).update(values)
    return {f"{user}@{DOMAIN}": settings}


def media_settings(codec: str, srtp: bool, ice: str, stun: tuple[str, int] | None) -> dict:
    """An account's rtp and nat_traversal groups for one case of the matrix."""
    nat: dict[str, Any] = {"use_ice": "true" if ice != "off" else "false"}
    nat["stun_server_list"] = [f"{stun[0]}:{stun[1]}"] if ice == "stun" and stun else []
    return {
        "rtp": {
            "audio_codec_list": [codec],
            "encryption": {"enabled": "true" if srtp else "false", "key_negotiation": "sdes_mandatory"},
        },
        "nat_traversal": nat,
    }


@pytest.fixture(scope="module")
def proxy() -> Iterator[Kamailio]:
    with Kamailio(domain=DOMAIN) as kamailio:
        kamailio.add_user("alice", "alice-secret")
        kamailio.add_user("bob", "bob-secret")
        yield kamailio


@pytest.fixture(scope="module")
def coturn() -> Iterator[Coturn]:
    with Coturn() as server:
        yield server


@pytest.fixture(scope="module")
def bob(proxy) -> Iterator[RemoteSDK]:
    with RemoteSDK(call_timeout=20) as remote:
        remote.call(
            f"{AUDIO}:start_audio_endpoint",
            account(proxy, "bob"),
            {"rtp": {"timeout": "2"}},
            BOB_TONE,
        )
        remote.wait_for("SIPAccountRegistrationDidSucceed", timeout=10)
        yield remote
        remote.call(f"{AUDIO}:stop_audio_endpoint")


async def start_alice(proxy: Kamailio, **extra: Any) -> Any:
    """The context manager of Alice's application (timeout 2 s) with her account."""
    storage = loopback_storage(accounts=account(proxy, "alice", **extra), settings={"rtp": {"timeout": "2"}})
    return running_application(storage)


@pytest.fixture
async def alice(proxy, bob) -> AsyncIterator[Any]:
    bob.clear()
    await bob.async_call(f"{SESSIONS}:answer_mode", "accept", "accept")
    with NotificationQueue(name="SIPAccountRegistrationDidSucceed") as registered:
        async with running_application(
            loopback_storage(accounts=account(proxy, "alice"), settings={"rtp": {"timeout": "2"}})
        ):
            await registered.wait_for("SIPAccountRegistrationDidSucceed", timeout=10)
            yield AccountManager().get_account(f"alice@{DOMAIN}")


async def call_bob(alice: Any) -> tuple[Session, AudioStream, SessionLog]:
    session = Session(alice)
    log = SessionLog(session)
    stream = AudioStream(alice)
    session.connect(ToHeader(SIPURI(user="bob", host=DOMAIN)), None, [stream])
    await log.wait("SIPSessionDidStart", timeout=15)
    return session, stream, log


async def bob_session() -> str:
    return "in1"


def assert_hears(analysis: dict[str, Any], tone: float, who: str) -> None:
    assert abs(analysis["frequency"] - tone) <= TOLERANCE, f"{who} heard {analysis}"
    assert analysis["share"][tone] >= MIN_SHARE, f"{who} heard {analysis}"


async def test_a_pcmu_call_carries_both_tones(alice, bob):
    device = install_device(tone=ALICE_TONE)
    session, stream, log = await call_bob(alice)
    assert stream.codec == "PCMU" or stream.codec
    await asyncio.sleep(SETTLE + LISTEN)
    assert_hears(heard(device, LISTEN, (BOB_TONE,)), BOB_TONE, "alice")
    name = await bob.async_call(f"{SESSIONS}:latest_incoming")
    bob_heard = await bob.async_call(f"{AUDIO}:listen", LISTEN, (ALICE_TONE,))
    assert_hears(bob_heard, ALICE_TONE, "bob")
    info = await bob.async_call(f"{AUDIO}:stream_info", name)
    assert info["codec"] == stream.codec
    session.end()
    await log.wait("SIPSessionDidEnd")
