"""Subscriptions against real peers: Kamailio's presence server (PUBLISH and SUBSCRIBE
with digest authentication) and a SIPp message-summary notifier (RFC 3842).

Run as root in a loopback-only network namespace:
    unshare -n sh -c 'ip link set lo up; PYTHONPATH=src python -m pytest tests/interop -q'
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.interop.peers import LOOPBACK, Kamailio, Sipp
from tests.support.sip import local_engine

from sipsimple.core import Credentials, Engine, Publication, Subscription
from sipsimple.core.sip.headers import ContactHeader, FromHeader, RouteHeader, ToHeader
from sipsimple.core.sip.uri import SIPURI
from sipsimple.notification import NotificationQueue

pytestmark = pytest.mark.interop

DATA = Path(__file__).resolve().parents[1] / "data" / "subscription"
PIDF = """<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:bob@example.test">
  <tuple id="sipsimple-{tag}"><status><basic>open</basic></status><note>{tag}</note></tuple>
</presence>
"""


@pytest.fixture(scope="module")
def presence() -> Iterator[Kamailio]:
    with Kamailio(presence=True) as kamailio:
        kamailio.add_user("alice", "alice-secret")
        kamailio.add_user("bob", "bob-secret")
        yield kamailio


def contact(user: str) -> ContactHeader:
    return ContactHeader(SIPURI(user=user, host=LOOPBACK, port=Engine().udp_port))


async def test_a_watcher_gets_what_a_presentity_publishes(presence):
    route = RouteHeader(SIPURI(host=LOOPBACK, port=presence.sip_port))
    bob = SIPURI.parse(presence.aor("bob"))
    async with local_engine(udp_port=0, tcp_port=None, trace_sip=True) as engine:
        subscription = Subscription(
            bob,
            FromHeader(SIPURI.parse(presence.aor("alice"))),
            ToHeader(bob),
            contact("alice"),
            "presence",
            route,
            Credentials("alice", "alice-secret"),
            refresh=4,
        )
        publication = Publication(
            FromHeader(bob),
            "presence",
            "application/pidf+xml",
            Credentials("bob", "bob-secret"),
            60,
        )
        with (
            NotificationQueue(sender=subscription) as watcher,
            NotificationQueue(sender=publication) as presentity,
            NotificationQueue("SIPEngineSIPTrace", engine) as trace,
        ):
            subscription.subscribe()
            await watcher.wait_for("SIPSubscriptionDidStart", timeout=5)
            # it was challenged, and sent again with the credentials
            await trace.wait_for("SIPEngineSIPTrace", lambda n: b" 407 " in n.data.data[:20], 1)
            engine.trace_sip = False
            first = await watcher.wait_for("SIPSubscriptionGotNotify", timeout=5)
            assert first.data.headers["Subscription-State"].state == "active"
            assert b"sipsimple-one" not in first.data.body
            publication.publish(PIDF.format(tag="one"), route)
            await presentity.wait_for("SIPPublicationDidSucceed", timeout=5)
            published = await watcher.wait_for(
                "SIPSubscriptionGotNotify", lambda n: b"sipsimple-one" in n.data.body, 5
            )
            assert published.data.content_type == "application/pidf+xml"
            assert published.data.from_header.uri == bob
            # the refresh (at half of the 4 s) is answered with a NOTIFY of the state
            refreshed = await watcher.wait_for("SIPSubscriptionGotNotify", timeout=6)
            assert b"sipsimple-one" in refreshed.data.body
            assert subscription.state == "ACTIVE"
            publication.publish(PIDF.format(tag="two"), route)
            await watcher.wait_for(
                "SIPSubscriptionGotNotify", lambda n: b"sipsimple-two" in n.data.body, 5
            )
            subscription.end()
            final = await watcher.wait_for(
                "SIPSubscriptionGotNotify",
                lambda n: n.data.headers["Subscription-State"].state == "terminated",
                5,
            )
            assert final.data.headers["Subscription-State"].reason == "timeout"
            await watcher.wait_for("SIPSubscriptionDidEnd", timeout=5)
            publication.end()
            await presentity.wait_for("SIPPublicationDidEnd", timeout=5)


async def test_a_subscription_to_a_stranger_is_refused(presence):
    route = RouteHeader(SIPURI(host=LOOPBACK, port=presence.sip_port))
    nobody = SIPURI(user="nobody", host="elsewhere.test")
    async with local_engine(udp_port=0, tcp_port=None):
        subscription = Subscription(
            nobody,
            FromHeader(SIPURI.parse(presence.aor("alice"))),
            ToHeader(nobody),
            contact("alice"),
            "presence",
            route,
            Credentials("alice", "alice-secret"),
        )
        with NotificationQueue(sender=subscription) as queue:
            subscription.subscribe()
            failed = await queue.wait_for("SIPSubscriptionDidFail", timeout=5)
            assert failed.data.code == 403


async def test_message_summary_from_a_sipp_notifier():
    sipp = Sipp(DATA / "sipp-message-summary.xml", calls=1, timeout=20)
    await asyncio.to_thread(sipp.start)
    try:
        async with local_engine(udp_port=0, tcp_port=None):
            uri = SIPURI(user="alice", host=LOOPBACK, port=sipp.port)
            subscription = Subscription(
                uri, FromHeader(uri), ToHeader(uri), contact("alice"), "message-summary"
            )
            with NotificationQueue(sender=subscription) as queue:
                subscription.subscribe()
                notify = await queue.wait_for("SIPSubscriptionGotNotify", timeout=5)
                assert notify.data.event == "message-summary"
                assert notify.data.content_type == "application/simple-message-summary"
                summary = dict(
                    line.split(": ", 1) for line in notify.data.body.decode().splitlines() if line
                )
                assert summary["Messages-Waiting"] == "yes"
                assert summary["Voice-Message"] == "2/8 (0/2)"
                assert subscription.state == "ACTIVE"
                subscription.end()
                await queue.wait_for("SIPSubscriptionDidEnd", timeout=5)
        result = await asyncio.to_thread(sipp.wait, 10)
        assert result.ok, result.describe()
    finally:
        sipp.stop()
