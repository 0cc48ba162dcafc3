"""An Account's voicemail summary from a SIPp message-summary notifier (RFC 3842).

SIPp (tests/data/subscription/sipp-message-summary.xml) accepts the SUBSCRIBE, sends
one summary, then expects the unsubscribe the account sends when it stops. Run inside
a loopback-only network namespace:

    unshare -n sh -c 'ip link set lo up;
        PYTHONPATH=src python -m pytest tests/interop/test_account_*.py -q'
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.interop.peers import Sipp
from tests.support.application import loopback_storage, running_application

from sipsimple.account import AccountManager
from sipsimple.notification import NotificationQueue
from sipsimple.payloads.messagesummary import MessageCounts

pytestmark = pytest.mark.interop

DATA = Path(__file__).resolve().parents[1] / "data" / "subscription"


async def test_the_summary_of_a_sipp_notifier_is_posted():
    sipp = Sipp(DATA / "sipp-message-summary.xml", calls=1, timeout=20)
    await asyncio.to_thread(sipp.start)
    account = {
        "enabled": "true",
        "registration": {"enabled": "false"},
        "message_summary": {"enabled": "true"},
        "sip": {"outbound_proxy": f"127.0.0.1:{sipp.port};transport=udp"},
    }
    storage = loopback_storage(transports=["udp"], accounts={"alice@example.test": account})
    try:
        with NotificationQueue("SIPAccountMWIDidGetSummary") as queue:
            async with running_application(storage):
                got = await queue.wait_for("SIPAccountMWIDidGetSummary", timeout=10)
                assert got.sender is AccountManager().get_account("alice@example.test")
                summary = got.data.message_summary
                assert summary.messages_waiting is True
                assert summary.message_account == "sip:alice@127.0.0.1"
                assert summary.summaries["voice-message"] == MessageCounts(2, 8, 0, 2)
        result = await asyncio.to_thread(sipp.wait, 10)
        assert result.ok, result.describe()
    finally:
        sipp.stop()
