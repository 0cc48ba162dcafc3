"""Subscriptions (RFC 6665) and referrals (RFC 3515) between two SDK endpoints.

The Engine under test runs on the test's loop (``local_engine``); the other endpoint
is a :class:`RemoteSDK` child driven through the functions at the end of this module,
or a raw UDP peer (:class:`RawPeer`) where the test needs what the SDK never sends
(a NOTIFY before the 2xx, a fork, a 423, no NOTIFY at all).
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from tests.support import calls
from tests.support.calls import OutgoingCall
from tests.support.remote import RemoteSDK
from tests.support.sip import LOOPBACK, local_engine

from sipsimple.core import (
    Engine,
    IncomingReferral,
    IncomingSubscription,
    Referral,
    ReferralListener,
    RequestStateError,
    Subscription,
)
from sipsimple.core.sip.headers import ContactHeader, FromHeader, ReferToHeader, ToHeader
from sipsimple.core.sip.message import SIPRequest, SIPResponse, parse_message
from sipsimple.core.sip.uri import SIPURI
from sipsimple.notification import NotificationCenter, NotificationQueue

PIDF = b'<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:bob@x"/>'
PIDF_TYPE = "application/pidf+xml"
THIS = "tests.integration.test_subscription"


@pytest.fixture(scope="module")
def remote():
    with RemoteSDK() as sdk:
        sdk.ports = sdk.call(
            "tests.support.sip:start_engine",
            udp_port=0,
            tcp_port=None,
            incoming_events=["presence"],
            incoming_requests=["REFER"],
        )
        sdk.call(f"{THIS}:install")
        yield sdk


async def rcall(remote: RemoteSDK, function: str, *args: Any, **kwargs: Any) -> Any:
    """A call in the child, without blocking the loop our Engine runs on."""
    return await asyncio.to_thread(remote.call, f"{THIS}:{function}", *args, **kwargs)


async def rwait(remote: RemoteSDK, name: str, condition: Any = None, timeout: float = 10) -> Any:
    return await asyncio.to_thread(remote.wait_for, name, condition, timeout)


async def nothing(queue: NotificationQueue, name: str, wait: float = 0.2) -> None:
    """No ``name`` notification was, or comes within ``wait`` seconds."""
    with pytest.raises(TimeoutError):
        await queue.wait_for(name, timeout=wait)


def our_contact(engine: Engine, user: str = "alice") -> ContactHeader:
    return ContactHeader(SIPURI(user=user, host=LOOPBACK, port=engine.udp_port))


def subscription_to(port: int, refresh: int = 300, event: str = "presence") -> Subscription:
    engine = Engine()
    uri = SIPURI(user="bob", host=LOOPBACK, port=port)
    return Subscription(
        uri,
        FromHeader(SIPURI(user="alice", host=LOOPBACK), "Alice"),
        ToHeader(uri),
        our_contact(engine),
        event,
        refresh=refresh,
    )


# -- our Subscription, the remote's IncomingSubscription ----------------------------------


async def test_subscribe_notify_refresh_push_and_unsubscribe(remote):
    await rcall(remote, "serve", "accept", content_type=PIDF_TYPE, content=PIDF.decode())
    remote.clear()
    async with local_engine(udp_port=0, tcp_port=None):
        subscription = subscription_to(remote.ports["udp"], refresh=3)
        with NotificationQueue(sender=subscription) as queue:
            subscription.subscribe()
            await queue.wait_for("SIPSubscriptionWillStart", timeout=1)
            await queue.wait_for("SIPSubscriptionDidStart", timeout=5)
            notify = await queue.wait_for("SIPSubscriptionGotNotify", timeout=5)
            assert notify.data.body == PIDF and notify.data.content_type == PIDF_TYPE
            assert notify.data.event == "presence"
            assert notify.data.headers["Subscription-State"].state == "active"
            assert subscription.state == "ACTIVE"
            states = [await queue.wait_for("SIPSubscriptionChangedState", timeout=1)]
            while states[-1].data.state != "ACTIVE":
                states.append(await queue.wait_for("SIPSubscriptionChangedState", timeout=1))
            assert [n.data.state for n in states] == ["SENT", "ACCEPTED", "ACTIVE"]
            assert subscription.dialog_id is not None
            assert subscription.to_header.tag == subscription.dialog_id.remote_tag
            # the refresh (at half of the 3 s) gets a NOTIFY of the current state
            await rwait(remote, "SIPIncomingSubscriptionGotRefreshingSubscribe", timeout=5)
            again = await queue.wait_for("SIPSubscriptionGotNotify", timeout=5)
            assert again.data.body == PIDF
            newer = PIDF.replace(b"bob@x", b"bob@y")
            await rcall(remote, "act", "incoming", "push_content", PIDF_TYPE, newer.decode())
            pushed = await queue.wait_for("SIPSubscriptionGotNotify", timeout=5)
            assert pushed.data.body == newer
            subscription.end()
            await queue.wait_for("SIPSubscriptionWillEnd", timeout=1)
            await rwait(remote, "SIPIncomingSubscriptionGotUnsubscribe", timeout=5)
            final = await queue.wait_for("SIPSubscriptionGotNotify", timeout=5)
            assert final.data.headers["Subscription-State"].state == "terminated"
            await queue.wait_for("SIPSubscriptionDidEnd", timeout=5)
            assert subscription.state == "TERMINATED"
            ended = await rwait(remote, "SIPIncomingSubscriptionDidEnd", timeout=5)
            assert ended.data["originator"] == "remote" and ended.data["reason"] == "timeout"
            await nothing(queue, "SIPSubscriptionDidFail")
            with pytest.raises(RequestStateError):
                subscription.subscribe()


async def test_pending_then_active(remote):
    await rcall(remote, "serve", "pending")
    remote.clear()
    async with local_engine(udp_port=0, tcp_port=None):
        subscription = subscription_to(remote.ports["udp"])
        with NotificationQueue(sender=subscription) as queue:
            subscription.subscribe()
            first = await queue.wait_for("SIPSubscriptionGotNotify", timeout=5)
            assert first.data.headers["Subscription-State"].state == "pending"
            assert first.data.body == b""
            await queue.wait_for(
                "SIPSubscriptionChangedState", lambda n: n.data.state == "PENDING", 1
            )
            await rcall(remote, "act", "incoming", "accept", PIDF_TYPE, PIDF.decode())
            second = await queue.wait_for("SIPSubscriptionGotNotify", timeout=5)
            assert second.data.body == PIDF
            changed = await queue.wait_for(
                "SIPSubscriptionChangedState", lambda n: n.data.state == "ACTIVE", 1
            )
            assert changed.data.prev_state == "PENDING"
            subscription.end()
            await queue.wait_for("SIPSubscriptionDidEnd", timeout=5)
    state = await rwait(remote, "SIPIncomingSubscriptionChangedState")
    assert (state.data["prev_state"], state.data["state"]) == ("incoming", "pending")


async def test_a_rejected_subscribe_fails_with_its_code(remote):
    await rcall(remote, "serve", "reject", code=403)
    async with local_engine(udp_port=0, tcp_port=None):
        subscription = subscription_to(remote.ports["udp"])
        with NotificationQueue(sender=subscription) as queue:
            subscription.subscribe()
            failed = await queue.wait_for("SIPSubscriptionDidFail", timeout=5)
            assert (failed.data.code, failed.data.min_expires) == (403, None)
            assert subscription.state == "TERMINATED"
            await nothing(queue, "SIPSubscriptionDidStart")


async def test_the_notifier_ends_it_with_a_reason_and_retry_after(remote):
    await rcall(remote, "serve", "accept", content_type=PIDF_TYPE, content=PIDF.decode())
    async with local_engine(udp_port=0, tcp_port=None):
        subscription = subscription_to(remote.ports["udp"])
        with NotificationQueue(sender=subscription) as queue:
            subscription.subscribe()
            await queue.wait_for("SIPSubscriptionGotNotify", timeout=5)
            await rcall(remote, "act", "incoming", "end", "probation", retry_after=30)
            final = await queue.wait_for("SIPSubscriptionGotNotify", timeout=5)
            state = final.data.headers["Subscription-State"]
            assert (state.state, state.reason, state.retry_after) == ("terminated", "probation", 30)
            failed = await queue.wait_for("SIPSubscriptionDidFail", timeout=1)
            assert (failed.data.code, failed.data.reason, failed.data.retry_after) == (
                0,
                "probation",
                30,
            )
            assert subscription.state == "TERMINATED"


async def test_an_event_the_engine_does_not_know_is_refused_at_once():
    uri = SIPURI(user="bob", host=LOOPBACK)
    contact = ContactHeader(SIPURI(host=LOOPBACK))
    with pytest.raises(ValueError, match="unknown event"):
        Subscription(uri, FromHeader(uri), ToHeader(uri), contact, "no-such-event")
    with pytest.raises(ValueError, match="refresh"):
        Subscription(uri, FromHeader(uri), ToHeader(uri), contact, "presence", refresh=0)
    with pytest.raises(TypeError, match="contact_header"):
        Subscription(uri, FromHeader(uri), ToHeader(uri), uri, "presence")


# -- the remote's Subscription, our IncomingSubscription ----------------------------------


async def test_the_reverse_roles_with_refresh_and_unsubscribe(remote):
    remote.clear()
    async with local_engine(udp_port=0, tcp_port=None, incoming_events=["presence"]) as engine:
        with NotificationQueue("SIPIncomingSubscriptionGotSubscribe") as got:
            await rcall(remote, "subscribe", "sub", engine.udp_port, refresh=3)
            subscribe = await got.wait_for("SIPIncomingSubscriptionGotSubscribe", timeout=5)
        incoming = subscribe.sender
        assert isinstance(incoming, IncomingSubscription)
        assert subscribe.data.event == "presence" and incoming.state == "incoming"
        with NotificationQueue(sender=incoming) as queue:
            incoming.accept(PIDF_TYPE, PIDF)
            await queue.wait_for("SIPIncomingSubscriptionNotifyDidSucceed", timeout=5)
            notify = await rwait(remote, "SIPSubscriptionGotNotify")
            assert notify.data["body"] == PIDF
            await queue.wait_for("SIPIncomingSubscriptionGotRefreshingSubscribe", timeout=5)
            await queue.wait_for("SIPIncomingSubscriptionNotifyDidSucceed", timeout=5)
            await rcall(remote, "act", "sub", "end")
            await queue.wait_for("SIPIncomingSubscriptionGotUnsubscribe", timeout=5)
            ended = await queue.wait_for("SIPIncomingSubscriptionDidEnd", timeout=5)
            assert (ended.data.originator, ended.data.reason) == ("remote", "timeout")
            assert incoming.state == "terminated"
            await rwait(remote, "SIPSubscriptionDidEnd")
            with pytest.raises(RequestStateError):
                incoming.push_content(PIDF_TYPE, PIDF)


async def test_the_notifier_ends_a_subscription_that_is_not_refreshed():
    async with local_engine(udp_port=0, tcp_port=None, incoming_events=["presence"]) as engine:
        peer = await RawPeer.open()
        try:
            with NotificationQueue() as queue:
                subscribe = peer.subscribe(engine.udp_port, expires=1)
                peer.send(subscribe, (LOOPBACK, engine.udp_port))
                got = await queue.wait_for("SIPIncomingSubscriptionGotSubscribe", timeout=5)
                got.sender.accept(PIDF_TYPE, PIDF)
                ok = await peer.response(200)
                assert ok.expires == 1 and ok.contact
                notify, source = await peer.request("NOTIFY")
                assert notify.get_header("Subscription-State").state == "active"
                peer.send(notify.make_response(200), source)
                final, source = await peer.request("NOTIFY", timeout=5)
                peer.send(final.make_response(200), source)
                state = final.get_header("Subscription-State")
                assert (state.state, state.reason) == ("terminated", "timeout")
                ended = await queue.wait_for("SIPIncomingSubscriptionDidEnd", timeout=5)
                assert (ended.data.originator, ended.data.reason) == ("local", "timeout")
                # the dialog is gone: a late refresh gets 481
                refresh = peer.in_dialog(
                    ok, "SUBSCRIBE", [("Event", "presence"), ("Expires", "60")]
                )
                peer.send(refresh, source)
                assert (await peer.response()).code == 481
        finally:
            peer.close()


async def test_the_notifier_answers_an_unsubscribe_and_489_to_another_event():
    async with local_engine(udp_port=0, tcp_port=None, incoming_events=["presence"]) as engine:
        peer = await RawPeer.open()
        try:
            with NotificationQueue() as queue:
                peer.send(peer.subscribe(engine.udp_port, expires=60), (LOOPBACK, engine.udp_port))
                got = await queue.wait_for("SIPIncomingSubscriptionGotSubscribe", timeout=5)
                got.sender.accept_pending()
                ok = await peer.response(200)
                notify, source = await peer.request("NOTIFY")
                peer.send(notify.make_response(200), source)
                state = notify.get_header("Subscription-State")
                assert state.state == "pending" and 58 <= state.expires <= 60
                other = peer.in_dialog(ok, "SUBSCRIBE", [("Event", "dialog"), ("Expires", "60")])
                peer.send(other, source)
                assert (await peer.response()).code == 489
                bye = peer.in_dialog(
                    ok, "SUBSCRIBE", [("Event", "presence"), ("Expires", "0")], cseq=3
                )
                peer.send(bye, source)
                assert (await peer.response()).expires == 0
                final, source = await peer.request("NOTIFY")
                peer.send(final.make_response(200), source)
                assert final.get_header("Subscription-State").state == "terminated"
                assert final.body == b""
                await queue.wait_for("SIPIncomingSubscriptionGotUnsubscribe", timeout=1)
                ended = await queue.wait_for("SIPIncomingSubscriptionDidEnd", timeout=1)
                assert ended.data.originator == "remote"
        finally:
            peer.close()


async def test_a_fetch_gets_one_terminated_notify_with_the_state():
    async with local_engine(udp_port=0, tcp_port=None, incoming_events=["presence"]) as engine:
        peer = await RawPeer.open()
        try:
            with NotificationQueue() as queue:
                peer.send(peer.subscribe(engine.udp_port, expires=0), (LOOPBACK, engine.udp_port))
                got = await queue.wait_for("SIPIncomingSubscriptionGotSubscribe", timeout=5)
                got.sender.accept(PIDF_TYPE, PIDF)
                assert (await peer.response(200)).expires == 0
                notify, source = await peer.request("NOTIFY")
                peer.send(notify.make_response(200), source)
                assert notify.get_header("Subscription-State").state == "terminated"
                assert notify.body == PIDF
                await queue.wait_for("SIPIncomingSubscriptionDidEnd", timeout=5)
        finally:
            peer.close()


# -- what only a raw peer does --------------------------------------------------------------


async def test_a_notify_before_the_2xx_makes_the_dialog_and_forks_get_481():
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        peer = await RawPeer.open()
        try:
            subscription = subscription_to(peer.port)
            with NotificationQueue(sender=subscription) as queue:
                subscription.subscribe()
                subscribe, source = await peer.request("SUBSCRIBE")
                assert subscribe.expires == 300 and PIDF_TYPE in subscribe.headers.getall("Accept")
                notify = peer.notify_for(subscribe, "n1", "active;expires=100", PIDF)
                peer.send(notify, source)
                assert (await peer.response()).code == 200
                got = await queue.wait_for("SIPSubscriptionGotNotify", timeout=5)
                assert got.data.body == PIDF
                await queue.wait_for("SIPSubscriptionDidStart", timeout=1)
                assert subscription.state == "ACTIVE"
                assert subscription.dialog_id.remote_tag == "n1"
                # another notifier the SUBSCRIBE was forked to: its NOTIFY gets 481
                peer.send(peer.notify_for(subscribe, "n2", "active", PIDF), source)
                assert (await peer.response()).code == 481
                peer.send(
                    subscribe.make_response(200, to_tag="n1", headers=[("Expires", "100")]), source
                )
                await asyncio.sleep(0.1)
                # a NOTIFY of another event in the dialog gets 489
                other = peer.notify_for(subscribe, "n1", "active", b"", cseq=2, event="dialog")
                peer.send(other, source)
                assert (await peer.response()).code == 489
                assert subscription.state == "ACTIVE"
                subscription.end(timeout=5)
                unsubscribe, source = await peer.request("SUBSCRIBE")
                assert unsubscribe.expires == 0 and unsubscribe.to_header.tag == "n1"
                assert str(unsubscribe.request_uri) == f"sip:bob@{LOOPBACK}:{peer.port}"
                peer.send(unsubscribe.make_response(200), source)
                final = peer.notify_for(subscribe, "n1", "terminated;reason=timeout", b"", cseq=3)
                peer.send(final, source)
                assert (await peer.response()).code == 200
                await queue.wait_for("SIPSubscriptionDidEnd", timeout=5)
                assert len(engine.dialog_layer) == 0
        finally:
            peer.close()


async def test_malformed_notifies_get_400_and_change_nothing():
    async with local_engine(udp_port=0, tcp_port=None):
        peer = await RawPeer.open()
        try:
            subscription = subscription_to(peer.port)
            with NotificationQueue(sender=subscription) as queue:
                subscription.subscribe()
                subscribe, source = await peer.request("SUBSCRIBE")
                ok = subscribe.make_response(200, to_tag="t", headers=peer.contact)
                peer.send(ok, source)
                peer.send(peer.notify_for(subscribe, "t", "active", PIDF), source)
                assert (await peer.response()).code == 200
                await queue.wait_for("SIPSubscriptionGotNotify", timeout=2)
                garbage = [
                    ("Subscription-State", "active;expires=soon"),
                    ("Subscription-State", None),
                    ("Contact", "<sip:bob@;;>"),
                    ("Content-Type", "not a type"),
                    ("Event", "presence;;;"),
                ]
                for cseq, (name, value) in enumerate(garbage, 2):
                    notify = peer.notify_for(subscribe, "t", "terminated", PIDF, cseq=cseq)
                    del notify.headers[name]
                    if value is not None:
                        notify.headers.add(name, value)
                    peer.send(notify, source)
                    answer = await peer.response()
                    assert answer.code == 400, (name, value, answer)
                assert subscription.state == "ACTIVE"
                await nothing(queue, "SIPSubscriptionGotNotify")
        finally:
            peer.close()


async def test_no_notify_after_the_2xx_fails_after_timer_n():
    async with local_engine(udp_port=0, tcp_port=None, T1=0.05):
        peer = await RawPeer.open()
        try:
            subscription = subscription_to(peer.port)
            with NotificationQueue(sender=subscription) as queue:
                subscription.subscribe()
                subscribe, source = await peer.request("SUBSCRIBE")
                peer.send(subscribe.make_response(200, to_tag="t", headers=peer.contact), source)
                await queue.wait_for("SIPSubscriptionDidStart", timeout=2)
                assert subscription.state == "ACCEPTED"
                failed = await queue.wait_for("SIPSubscriptionDidFail", timeout=64 * 0.05 + 2)
                assert (failed.data.code, failed.data.reason) == (408, "No NOTIFY received")
        finally:
            peer.close()


async def test_423_is_retried_with_min_expires_then_a_refresh_answered_481_ends_it():
    async with local_engine(udp_port=0, tcp_port=None):
        peer = await RawPeer.open()
        try:
            subscription = subscription_to(peer.port, refresh=1)
            with NotificationQueue(sender=subscription) as queue:
                subscription.subscribe()
                first, source = await peer.request("SUBSCRIBE")
                peer.send(first.make_response(423, headers=[("Min-Expires", "2")]), source)
                second, source = await peer.request("SUBSCRIBE")
                assert second.expires == 2 and second.cseq.number == first.cseq.number + 1
                ok = second.make_response(
                    200, to_tag="t", headers=[*peer.contact, ("Expires", "2")]
                )
                peer.send(ok, source)
                peer.send(peer.notify_for(second, "t", "active;expires=2", PIDF), source)
                assert (await peer.response()).code == 200
                refresh, source = await peer.request("SUBSCRIBE", timeout=3)
                assert refresh.expires == 2 and refresh.to_header.tag == "t"
                peer.send(refresh.make_response(481), source)
                failed = await queue.wait_for("SIPSubscriptionDidFail", timeout=2)
                assert failed.data.code == 481
        finally:
            peer.close()


async def test_a_failed_refresh_keeps_the_subscription_until_it_lapses():
    async with local_engine(udp_port=0, tcp_port=None):
        peer = await RawPeer.open()
        try:
            subscription = subscription_to(peer.port, refresh=2)
            with NotificationQueue(sender=subscription) as queue:
                subscription.subscribe()
                subscribe, source = await peer.request("SUBSCRIBE")
                ok = subscribe.make_response(
                    200, to_tag="t", headers=[*peer.contact, ("Expires", "2")]
                )
                peer.send(ok, source)
                peer.send(peer.notify_for(subscribe, "t", "active", PIDF), source)
                assert (await peer.response()).code == 200
                refresh, source = await peer.request("SUBSCRIBE", timeout=3)
                peer.send(refresh.make_response(500), source)
                await asyncio.sleep(0.3)
                assert subscription.state == "ACTIVE"
                failed = await queue.wait_for("SIPSubscriptionDidFail", timeout=3)
                assert failed.data.code == 500
                assert subscription.state == "TERMINATED"
        finally:
            peer.close()


async def test_a_challenged_subscribe_is_sent_again_with_credentials():
    from sipsimple.core import Credentials

    async with local_engine(udp_port=0, tcp_port=None):
        peer = await RawPeer.open()
        try:
            subscription = subscription_to(peer.port)
            subscription = Subscription(
                subscription.request_uri,
                subscription.from_header,
                subscription.to_header,
                subscription.contact_header,
                "presence",
                credentials=Credentials("alice", "secret"),
            )
            with NotificationQueue(sender=subscription) as queue:
                subscription.subscribe()
                first, source = await peer.request("SUBSCRIBE")
                challenge = 'Digest realm="x", nonce="abc", algorithm=MD5, qop="auth"'
                peer.send(
                    first.make_response(407, headers=[("Proxy-Authenticate", challenge)]), source
                )
                second, source = await peer.request("SUBSCRIBE")
                assert "Proxy-Authorization" in second.headers
                assert second.cseq.number == first.cseq.number + 1
                peer.send(peer.notify_for(second, "t", "active", PIDF), source)
                assert (await peer.response()).code == 200
                ok = second.make_response(
                    200, to_tag="t", headers=[*peer.contact, ("Expires", "60")]
                )
                peer.send(ok, source)
                await queue.wait_for("SIPSubscriptionDidStart", timeout=2)
                subscription.end()
                unsubscribe, source = await peer.request("SUBSCRIBE")
                assert unsubscribe.cseq.number == second.cseq.number + 1
                assert "Proxy-Authorization" in unsubscribe.headers
                peer.send(unsubscribe.make_response(481), source)
                await queue.wait_for("SIPSubscriptionDidEnd", timeout=2)
        finally:
            peer.close()


# -- REFER ---------------------------------------------------------------------------------


def refer_to(target: str = "sip:carol@127.0.0.1") -> ReferToHeader:
    return ReferToHeader(SIPURI.parse(target))


async def test_an_out_of_dialog_refer_and_its_sipfrag_notifies(remote):
    await rcall(remote, "serve", "accept")
    remote.clear()
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        uri = SIPURI(user="bob", host=LOOPBACK, port=remote.ports["udp"])
        referral = Referral(
            uri, FromHeader(SIPURI(user="alice", host=LOOPBACK)), ToHeader(uri), refer_to(),
            our_contact(engine),
        )  # fmt: skip
        with NotificationQueue(sender=referral) as queue:
            referral.send_refer()
            got = await rwait(remote, "SIPIncomingReferralGotRefer")
            assert str(got.data["refer_to"].uri) == "sip:carol@127.0.0.1"
            assert got.data["create_subscription"] is True
            await queue.wait_for("SIPReferralDidStart", timeout=5)
            trying = await queue.wait_for("SIPReferralGotNotify", timeout=5)
            assert trying.data.body == b"SIP/2.0 100 Trying\r\n"
            assert trying.data.content_type == "message/sipfrag"
            assert trying.data.event == "refer"
            assert trying.data.headers["Event"].id == "1"
            assert referral.state == "ACTIVE"
            referral.refresh()
            await rwait(remote, "SIPIncomingReferralGotRefreshingSubscribe")
            again = await queue.wait_for("SIPReferralGotNotify", timeout=5)
            assert again.data.body == b"SIP/2.0 100 Trying\r\n"
            await rcall(remote, "act", "incoming_referral", "send_notify", 180)
            ringing = await queue.wait_for("SIPReferralGotNotify", timeout=5)
            assert ringing.data.body == b"SIP/2.0 180 Ringing\r\n"
            await rcall(remote, "act", "incoming_referral", "end", 200)
            final = await queue.wait_for("SIPReferralGotNotify", timeout=5)
            assert final.data.body == b"SIP/2.0 200 OK\r\n"
            state = final.data.headers["Subscription-State"]
            assert (state.state, state.reason) == ("terminated", "noresource")
            await queue.wait_for("SIPReferralDidEnd", timeout=1)
            assert referral.state == "TERMINATED"
            ended = await rwait(remote, "SIPIncomingReferralDidEnd")
            assert ended.data["reason"] == "noresource"
            assert len(engine.dialog_layer) == 0


async def test_a_refer_whose_request_fails_ends_with_the_sipfrag_code(remote):
    await rcall(remote, "serve", "accept")
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        uri = SIPURI(user="bob", host=LOOPBACK, port=remote.ports["udp"])
        referral = Referral(
            uri, FromHeader(SIPURI(user="alice", host=LOOPBACK)), ToHeader(uri), refer_to(),
            our_contact(engine),
        )  # fmt: skip
        with NotificationQueue(sender=referral) as queue:
            referral.send_refer()
            await queue.wait_for("SIPReferralGotNotify", timeout=5)
            await rcall(remote, "act", "incoming_referral", "end", 486)
            failed = await queue.wait_for("SIPReferralDidFail", timeout=5)
            assert (failed.data.code, failed.data.reason) == (486, "Busy Here")


async def test_a_rejected_refer_fails(remote):
    await rcall(remote, "serve", "reject", code=603)
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        uri = SIPURI(user="bob", host=LOOPBACK, port=remote.ports["udp"])
        referral = Referral(
            uri, FromHeader(SIPURI(user="alice", host=LOOPBACK)), ToHeader(uri), refer_to(),
            our_contact(engine),
        )  # fmt: skip
        with NotificationQueue(sender=referral) as queue:
            referral.send_refer()
            failed = await queue.wait_for("SIPReferralDidFail", timeout=5)
            assert failed.data.code == 603


async def test_norefersub_suppresses_the_subscription(remote):
    await rcall(remote, "serve", "accept")
    remote.clear()
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        uri = SIPURI(user="bob", host=LOOPBACK, port=remote.ports["udp"])
        referral = Referral(
            uri, FromHeader(SIPURI(user="alice", host=LOOPBACK)), ToHeader(uri), refer_to(),
            our_contact(engine),
        )  # fmt: skip
        with NotificationQueue(sender=referral) as queue:
            referral.send_refer(create_subscription=False)
            got = await rwait(remote, "SIPIncomingReferralGotRefer")
            assert got.data["create_subscription"] is False
            await queue.wait_for("SIPReferralDidStart", timeout=5)
            await queue.wait_for("SIPReferralDidEnd", timeout=1)
            ended = await rwait(remote, "SIPIncomingReferralDidEnd")
            assert ended.data["reason"] is None
            await nothing(queue, "SIPReferralGotNotify")
            assert len(engine.dialog_layer) == 0


async def test_a_refer_inside_a_dialog_made_through_the_usage_api(remote):
    remote.clear()
    await rcall(remote, "serve", "accept")
    await asyncio.to_thread(remote.call, "tests.support.calls:answer_calls", ring=False)
    async with local_engine(udp_port=0, tcp_port=None) as engine:
        call = OutgoingCall(engine, f"sip:bob@{LOOPBACK}:{remote.ports['udp']}")
        assert (await call.connect()).code == 200
        dialog = call.dialog
        await rcall(remote, "listen_for_referrals", dialog.id.call_id)
        referral = Referral.in_dialog(dialog.id, refer_to("sip:dave@127.0.0.1"))
        with NotificationQueue(sender=referral) as queue:
            referral.send_refer()
            got = await rwait(remote, "SIPIncomingReferralGotRefer")
            assert str(got.data["refer_to"].uri) == "sip:dave@127.0.0.1"
            assert got.data["to_header"].tag == dialog.id.remote_tag
            trying = await queue.wait_for("SIPReferralGotNotify", timeout=5)
            assert trying.data.from_header.tag == dialog.id.remote_tag
            await rcall(remote, "act", "incoming_referral", "end", 200)
            await queue.wait_for("SIPReferralDidEnd", timeout=5)
        # the call's dialog lives on, and a second REFER in it works the same
        assert engine.dialog_layer.get(dialog.id) is dialog
        second = Referral.in_dialog(dialog.id, refer_to("sip:erin@127.0.0.1"))
        with NotificationQueue(sender=second) as queue:
            second.send_refer()
            trying = await queue.wait_for("SIPReferralGotNotify", timeout=5)
            assert trying.data.headers["Event"].id == str(dialog.local_seq)
            second.end()
            await queue.wait_for("SIPReferralDidEnd", timeout=5)
        unsubscribed = await rwait(remote, "SIPIncomingReferralGotUnsubscribe")
        assert unsubscribed.data["event"] == "refer"
        assert unsubscribed.data["headers"]["Event"].id == trying.data.headers["Event"].id
        # and the remote refers us in the same dialog: our listener makes IncomingReferrals
        listener = ReferralListener(dialog.id)
        with NotificationQueue("SIPIncomingReferralGotRefer") as refers:
            await rcall(remote, "refer_in_dialog", "back", "sip:frank@127.0.0.1")
            got = await refers.wait_for("SIPIncomingReferralGotRefer", timeout=5)
        incoming = got.sender
        assert isinstance(incoming, IncomingReferral)
        with NotificationQueue(sender=incoming) as queue:
            incoming.accept()
            await queue.wait_for("SIPIncomingReferralNotifyDidSucceed", timeout=5)
            incoming.end(200)
            await queue.wait_for("SIPIncomingReferralDidEnd", timeout=5)
        await rwait(remote, "SIPReferralDidEnd")
        listener.close()
        assert engine.dialog_layer.get(dialog.id) is dialog
        assert (await call.hang_up()).code == 200
    await asyncio.to_thread(remote.call, "tests.support.calls:stop_answering")


async def test_a_refer_for_no_dialog_is_refused():
    async with local_engine(udp_port=0, tcp_port=None):
        with pytest.raises(ValueError, match="no dialog"):
            Referral.in_dialog(("no-call", "no-tag", "none"), refer_to())


# -- a raw UDP peer ---------------------------------------------------------------------------


class RawPeer(asyncio.DatagramProtocol):
    """A UDP socket on 127.0.0.1 that collects the SIP messages it receives; ``request``
    and ``response`` take the oldest one that fits and leave the others."""

    _ids = itertools.count(1)

    def __init__(self) -> None:
        self.messages: list[tuple[Any, tuple[str, int]]] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self._arrived = asyncio.Event()
        self._branches: set[str] = set()

    @classmethod
    async def open(cls) -> RawPeer:
        loop = asyncio.get_running_loop()
        _, peer = await loop.create_datagram_endpoint(cls, local_addr=(LOOPBACK, 0))
        return peer

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.messages.append((parse_message(data), addr))
        self._arrived.set()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    @property
    def contact(self) -> list[tuple[str, str]]:
        return [("Contact", f"<sip:bob@{LOOPBACK}:{self.port}>")]

    def send(self, message: SIPRequest | SIPResponse, address: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(bytes(message), address)

    async def _take(self, fits: Any, timeout: float) -> tuple[Any, tuple[str, int]]:
        async with asyncio.timeout(timeout):
            while True:
                for index, (message, source) in enumerate(self.messages):
                    if fits(message):
                        del self.messages[index]
                        return message, source
                self._arrived.clear()
                await self._arrived.wait()

    async def request(self, method: str, timeout: float = 5) -> tuple[SIPRequest, tuple[str, int]]:
        """The next ``method`` request (retransmissions of earlier ones are dropped)."""

        def fits(message: Any) -> bool:
            if not isinstance(message, SIPRequest) or message.method != method:
                return False
            new = message.top_via.branch not in self._branches
            self._branches.add(message.top_via.branch)
            return new

        return await self._take(fits, timeout)

    async def response(self, code: int | None = None, timeout: float = 5) -> SIPResponse:
        def fits(message: Any) -> bool:
            return isinstance(message, SIPResponse) and (code is None or message.code == code)

        return (await self._take(fits, timeout))[0]

    def _via(self) -> tuple[str, str]:
        return ("Via", f"SIP/2.0/UDP {LOOPBACK}:{self.port};branch=z9hG4bK-raw-{next(self._ids)}")

    def subscribe(self, port: int, expires: int) -> SIPRequest:
        return SIPRequest(
            "SUBSCRIBE",
            f"sip:alice@{LOOPBACK}:{port}",
            [
                self._via(),
                ("From", f"<sip:bob@{LOOPBACK}>;tag=raw-{next(self._ids)}"),
                ("To", f"<sip:alice@{LOOPBACK}>"),
                ("Call-ID", f"raw-call-{next(self._ids)}"),
                ("CSeq", "1 SUBSCRIBE"),
                ("Max-Forwards", "70"),
                ("Event", "presence"),
                ("Expires", str(expires)),
                *self.contact,
            ],
        )

    def in_dialog(
        self, response: SIPResponse, method: str, headers: list[Any], cseq: int = 2
    ) -> SIPRequest:
        """A request in the dialog our request made (the UAC side)."""
        target = response.contact[0].uri
        return SIPRequest(
            method,
            target,
            [
                self._via(),
                ("From", response.from_header),
                ("To", response.to_header),
                ("Call-ID", response.call_id),
                ("CSeq", f"{cseq} {method}"),
                ("Max-Forwards", "70"),
                *self.contact,
                *headers,
            ],
        )

    def notify_for(
        self,
        subscribe: SIPRequest,
        tag: str,
        state: str,
        body: bytes,
        *,
        cseq: int = 1,
        event: str = "presence",
    ) -> SIPRequest:
        """A NOTIFY (from a notifier whose To tag is ``tag``) for a SUBSCRIBE received."""
        to = subscribe.to_header
        headers = [
            self._via(),
            ("From", f"<{to.uri}>;tag={tag}"),
            ("To", subscribe.from_header),
            ("Call-ID", subscribe.call_id),
            ("CSeq", f"{cseq} NOTIFY"),
            ("Max-Forwards", "70"),
            *self.contact,
            ("Event", event),
            ("Subscription-State", state),
        ]
        if body:
            headers.append(("Content-Type", PIDF_TYPE))
        return SIPRequest("NOTIFY", subscribe.contact[0].uri, headers, body)


# -- run in the RemoteSDK child (on its SIP thread) ---------------------------------------------

_objects: dict[str, Any] = {}
_policy: dict[str, Any] = {"policy": "accept"}


def install() -> None:
    """Observe new SUBSCRIBEs and REFERs, answered as ``serve`` says."""
    center = NotificationCenter()
    center.add_observer(_on_subscribe, "SIPIncomingSubscriptionGotSubscribe")
    center.add_observer(_on_refer, "SIPIncomingReferralGotRefer")


def serve(policy: str, **options: Any) -> None:
    """ "accept" (with ``content_type`` and ``content``), "pending" or "reject" (``code``)."""
    _policy.clear()
    _policy.update(options, policy=policy)


def _on_subscribe(notification: Any) -> None:
    incoming = notification.sender
    _objects["incoming"] = incoming
    policy = _policy["policy"]
    if policy == "accept":
        incoming.accept(_policy.get("content_type"), _policy.get("content"))
    elif policy == "pending":
        incoming.accept_pending()
    else:
        incoming.reject(_policy.get("code", 403))


def _on_refer(notification: Any) -> None:
    referral = notification.sender
    _objects["incoming_referral"] = referral
    if _policy["policy"] == "reject":
        referral.reject(_policy.get("code", 603))
    else:
        referral.accept()


def listen_for_referrals(call_id: str) -> None:
    """Listen for REFERs in the call ``tests.support.calls`` answered."""
    dialog = next(a.calls[call_id] for a in calls._answerers if call_id in a.calls)
    _objects["dialog"] = dialog
    _objects["listener"] = ReferralListener(dialog.id)


def act(name: str, method: str, *args: Any, **kwargs: Any) -> Any:
    getattr(_objects[name], method)(*args, **kwargs)


def subscribe(name: str, port: int, refresh: int = 300) -> None:
    engine = Engine()
    uri = SIPURI(user="alice", host=LOOPBACK, port=port)
    subscription = Subscription(
        uri,
        FromHeader(SIPURI(user="bob", host=LOOPBACK)),
        ToHeader(uri),
        our_contact(engine, "bob"),
        "presence",
        refresh=refresh,
    )
    _objects[name] = subscription
    subscription.subscribe()


def refer_in_dialog(name: str, target: str) -> None:
    referral = Referral.in_dialog(_objects["dialog"].id, refer_to(target))
    _objects[name] = referral
    referral.send_refer()
