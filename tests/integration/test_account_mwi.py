"""An Account's message summary subscription (RFC 3842) with a notifier in a RemoteSDK
child: SIPAccountMWIDidGetSummary for each NOTIFY, re-subscription when the notifier
ends the subscription or the settings change, unsubscription when disabled."""

from __future__ import annotations

from typing import Any

import pytest
from tests.support.application import loopback_storage, running_application
from tests.support.remote import RemoteSDK

from sipsimple.account import AccountManager
from sipsimple.notification import NotificationCenter, NotificationQueue
from sipsimple.payloads.messagesummary import MessageCounts, MessageSummary

THIS = "tests.integration.test_account_mwi"
ALICE = "alice@example.test"
SUMMARY_TYPE = "application/simple-message-summary"
TWO_NEW = "Messages-Waiting: yes\r\nMessage-Account: sip:alice@vm.example.test\r\n" + (
    "Voice-Message: 2/8 (0/2)\r\n"
)
NONE_NEW = "Messages-Waiting: no\r\nVoice-Message: 0/10\r\n"


@pytest.fixture(scope="module")
def notifier():
    with RemoteSDK() as sdk:
        sdk.ports = sdk.call(
            "tests.support.sip:start_engine",
            udp_port=0,
            tcp_port=None,
            incoming_events=["message-summary"],
        )
        sdk.call(f"{THIS}:install")
        yield sdk


def storage(port: int, **message_summary: Any):
    account = {
        "enabled": "true",
        "registration": {"enabled": "false"},
        "message_summary": {"enabled": "true", **message_summary},
        "sip": {"outbound_proxy": f"127.0.0.1:{port};transport=udp"},
    }
    return loopback_storage(transports=["udp"], accounts={ALICE: account})


async def test_summaries_are_posted_and_the_subscription_ends_with_the_account(notifier):
    await notifier.async_call(f"{THIS}:serve", TWO_NEW)
    notifier.clear()
    with NotificationQueue("SIPAccountMWIDidGetSummary") as queue:
        async with running_application(storage(notifier.ports["udp"])):
            account = AccountManager().get_account(ALICE)
            got = await queue.wait_for("SIPAccountMWIDidGetSummary", timeout=5)
            assert got.sender is account
            summary = got.data.message_summary
            assert isinstance(summary, MessageSummary)
            assert summary.messages_waiting is True
            assert summary.message_account == "sip:alice@vm.example.test"
            assert summary.summaries == {"voice-message": MessageCounts(2, 8, 0, 2)}
            subscribe = await notifier.async_wait_for("SIPIncomingSubscriptionGotSubscribe")
            assert subscribe.data["event"] == "message-summary"
            assert str(subscribe.data["request_uri"]) == f"sip:{ALICE}"
            await notifier.async_call(f"{THIS}:push", NONE_NEW)
            pushed = await queue.wait_for("SIPAccountMWIDidGetSummary", timeout=5)
            assert pushed.data.message_summary.messages_waiting is False
            # A body that is not a summary is dropped, not posted.
            await notifier.async_call(f"{THIS}:push", "garbage without a colon")
            await notifier.async_wait_for("SIPIncomingSubscriptionNotifyDidSucceed")
            with pytest.raises(TimeoutError):
                await queue.wait_for("SIPAccountMWIDidGetSummary", timeout=0.3)
    await notifier.async_wait_for("SIPIncomingSubscriptionGotUnsubscribe", timeout=5)
    assert await notifier.async_call(f"{THIS}:count") == 1


async def test_a_voicemail_uri_is_subscribed_to_and_a_change_resubscribes(notifier):
    await notifier.async_call(f"{THIS}:serve", TWO_NEW)
    notifier.clear()
    port = notifier.ports["udp"]
    with NotificationQueue("SIPAccountMWIDidGetSummary") as queue:
        async with running_application(storage(port, voicemail_uri="vm@vm.example.test")):
            account = AccountManager().get_account(ALICE)
            await queue.wait_for("SIPAccountMWIDidGetSummary", timeout=5)
            first = await notifier.async_wait_for("SIPIncomingSubscriptionGotSubscribe")
            assert str(first.data["request_uri"]) == "sip:vm@vm.example.test"
            account.message_summary.voicemail_uri = "box@vm.example.test"
            account.save()
            await notifier.async_wait_for("SIPIncomingSubscriptionGotUnsubscribe", timeout=5)
            second = await notifier.async_wait_for("SIPIncomingSubscriptionGotSubscribe")
            assert str(second.data["request_uri"]) == "sip:box@vm.example.test"
            await queue.wait_for("SIPAccountMWIDidGetSummary", timeout=5)
            # Switched off: unsubscribed while the account stays active.
            account.message_summary.enabled = False
            account.save()
            await notifier.async_wait_for("SIPIncomingSubscriptionGotUnsubscribe", timeout=5)
            assert account.active


async def test_a_subscription_the_notifier_ends_is_made_again(notifier):
    await notifier.async_call(f"{THIS}:serve", TWO_NEW)
    notifier.clear()
    with NotificationQueue("SIPAccountMWIDidGetSummary") as queue:
        async with running_application(storage(notifier.ports["udp"])):
            await queue.wait_for("SIPAccountMWIDidGetSummary", timeout=5)
            await notifier.async_call(f"{THIS}:end", "deactivated")
            # RFC 6665 section 4.1.3: after "deactivated", subscribe again at once.
            await notifier.async_wait_for("SIPIncomingSubscriptionGotSubscribe", timeout=5)
            await notifier.async_wait_for("SIPIncomingSubscriptionGotSubscribe", timeout=5)
            await queue.wait_for("SIPAccountMWIDidGetSummary", timeout=5)


async def test_an_unsupported_event_is_not_retried_soon(notifier):
    await notifier.async_call(f"{THIS}:reject", 489)
    notifier.clear()
    async with running_application(storage(notifier.ports["udp"])):
        account = AccountManager().get_account(ALICE)
        await notifier.async_wait_for("SIPIncomingSubscriptionGotSubscribe", timeout=5)
        with pytest.raises(TimeoutError):
            await notifier.async_wait_for("SIPIncomingSubscriptionGotSubscribe", timeout=3)
        assert account.active


# -- the notifier (runs in the child) ----------------------------------------------------

_state: dict[str, Any] = {"incoming": [], "body": None, "reject": None}


def install() -> None:
    NotificationCenter().add_observer(_on_subscribe, "SIPIncomingSubscriptionGotSubscribe")


def serve(body: str) -> None:
    """Accept SUBSCRIBEs with ``body`` as the summary."""
    _state.update(incoming=[], body=body, reject=None)


def reject(code: int) -> None:
    _state.update(incoming=[], body=None, reject=code)


def push(body: str) -> None:
    _state["incoming"][-1].push_content(SUMMARY_TYPE, body)


def end(reason: str) -> None:
    _state["incoming"][-1].end(reason)


def count() -> int:
    return len(_state["incoming"])


def _on_subscribe(notification: Any) -> None:
    incoming = notification.sender
    if _state["reject"] is not None:
        incoming.reject(_state["reject"])
        return
    _state["incoming"].append(incoming)
    incoming.accept(SUMMARY_TYPE, _state["body"])
