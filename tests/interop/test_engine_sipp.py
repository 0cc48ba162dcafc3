"""The Engine against SIPp: OPTIONS and MESSAGE from SIPp's scenarios, and a
Publication against a SIPp event state compositor (tests/data/engine).

Run as root in a loopback-only network namespace:
    unshare -n sh -c 'ip link set lo up; PYTHONPATH=src /work/venv/bin/python -m pytest \
        tests/interop/test_engine_sipp.py -q'
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.interop.peers import Sipp, scenario_file
from tests.support.sip import LOOPBACK, local_engine, route_to

from sipsimple.core import Publication
from sipsimple.core.sip.headers import FromHeader
from sipsimple.core.sip.uri import SIPURI
from sipsimple.notification import NotificationQueue

pytestmark = pytest.mark.interop

DATA = Path(__file__).resolve().parents[1] / "data" / "engine"
PIDF = '<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b"/>'


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_sipp_options_are_answered(transport):
    async with local_engine(udp_port=0, tcp_port=0) as engine:
        sipp = Sipp(scenario_file("options"), (LOOPBACK, engine.udp_port), transport=transport)
        result = await asyncio.to_thread(sipp.run)
    assert result.ok, result.describe()


async def test_sipp_messages_are_posted():
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        with NotificationQueue("SIPEngineGotMessage") as queue:
            sipp = Sipp(
                scenario_file("message"),
                (LOOPBACK, engine.udp_port),
                service="alice",
                calls=3,
                rate=10,
                keys={"text": "hello from sipp"},
            )
            result = await asyncio.to_thread(sipp.run)
            assert result.ok, result.describe()
            for _ in range(3):
                note = await queue.wait_for("SIPEngineGotMessage", timeout=2)
                assert note.data.body.strip() == b"hello from sipp"
                assert note.data.request_uri.user == "alice"


async def test_a_publication_against_a_sipp_compositor():
    async with local_engine(udp_port=0, tcp_port=None, T1=0.1) as engine:
        assert engine.udp_port
        compositor = Sipp(DATA / "sipp-publish-uas.xml", calls=1, timeout=20)
        await asyncio.to_thread(compositor.start)
        try:
            publication = Publication(
                FromHeader(SIPURI(user="alice", host="example.test")),
                "presence",
                "application/pidf+xml",
                duration=2,
            )
            with NotificationQueue(sender=publication) as queue:
                publication.publish(PIDF, route_to(compositor.port))
                first = await queue.wait_for("SIPPublicationDidSucceed", timeout=5)
                assert (first.data.expires, publication.etag) == (2, "etag1")
                # refreshed after 1 s, 412, published afresh
                second = await queue.wait_for("SIPPublicationDidSucceed", timeout=5)
                assert (second.data.expires, publication.etag) == (60, "etag2")
                publication.end()
                assert (
                    await queue.wait_for("SIPPublicationDidEnd", timeout=5)
                ).data.expired is False
            result = await asyncio.to_thread(compositor.wait, 10)
        finally:
            await asyncio.to_thread(compositor.stop)
    assert result.ok, result.describe()
    assert result.successful == 1
