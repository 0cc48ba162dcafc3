"""MSRP streams without SIP, for tests that drive a stream directly: a stand-in account
and session, SDP helpers, and a fixture running the SIP thread and the settings on the
test's loop.

    async def test_x(msrp_settings):
        stream = ChatStream(account("alice"))
        await initialize(stream, session("alice", "bob"), "outgoing")
        offer = sdp(stream.get_local_media(True))
        ...
        stream.start(offer, answer, 0)
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.application import loopback_configuration

from sipsimple.configuration import ConfigurationManager
from sipsimple.configuration.backend.memory import MemoryBackend
from sipsimple.core import (
    SIPURI,
    Credentials,
    FromHeader,
    FrozenSDPSession,
    SDPConnection,
    SDPMediaStream,
    SDPSession,
    ToHeader,
)
from sipsimple.core.sdp import answer_media
from sipsimple.notification import NotificationQueue
from sipsimple.threading import SIPThread

__all__ = ["account", "answer", "initialize", "msrp_settings", "sdp", "session", "start"]


def account(user: str, transport: str = "tcp", model: str = "acm") -> Any:
    """What an MSRP stream reads from an Account."""
    return types.SimpleNamespace(
        msrp=types.SimpleNamespace(transport=transport, connection_model=model),
        nat_traversal=types.SimpleNamespace(msrp_relay=None, use_msrp_relay_for_outbound=False),
        uri=SIPURI(user=user, host="example.test"),
        credentials=Credentials(user, "secret"),
        display_name=user.title(),
    )


def session(local: str, remote: str) -> Any:
    """What an MSRP stream reads from its Session."""
    return types.SimpleNamespace(
        local_identity=FromHeader(SIPURI(user=local, host="example.test"), local.title()),
        remote_identity=ToHeader(SIPURI(user=remote, host="example.test"), remote.title()),
    )


def sdp(*media: SDPMediaStream) -> FrozenSDPSession:
    return FrozenSDPSession.new(
        SDPSession("127.0.0.1", connection=SDPConnection("127.0.0.1"), media=list(media))
    )


def answer(offer: FrozenSDPSession, local: SDPMediaStream) -> FrozenSDPSession:
    """Our answer to the offer's first m-line, as the SDP negotiator builds it."""
    return sdp(answer_media(offer.media[0], local))


async def initialize(stream: Any, owner: Any, direction: str, timeout: float = 10) -> None:
    with NotificationQueue(sender=stream) as queue:
        stream.initialize(owner, direction)
        notification = await queue.wait_for("MediaStreamDidInitialize", timeout=timeout)
        assert notification.sender is stream


async def start(stream: Any, local: Any, remote: Any, timeout: float = 10) -> None:
    with NotificationQueue(sender=stream) as queue:
        stream.start(local, remote, 0)
        await queue.wait_for("MediaStreamDidStart", timeout=timeout)


@pytest.fixture
async def msrp_settings(tmp_path: Path) -> AsyncIterator[Path]:
    """The SIP thread on the test's loop and loopback settings (received files go to
    the returned directory)."""
    directory = tmp_path / "received"
    SIPThread().start(asyncio.get_running_loop())
    configuration = loopback_configuration(
        settings={"file_transfer": {"directory": str(directory)}}
    )
    ConfigurationManager().start(MemoryBackend(configuration))
    try:
        yield directory
    finally:
        ConfigurationManager().stop()
        SIPThread().stop()
