"""The internal usage API carries a whole INVITE dialog: a minimal call usage
(tests/support/calls.py) placing calls from the test's Engine to a child's.

Invitation is built on the same calls; these tests pin down what it relies on:
dialog creation on both sides, the ACK of a 2xx, BYE in the dialog, CANCEL with its
487, a challenged INVITE retried with a higher CSeq, and 481 once a dialog is gone.
"""

from __future__ import annotations

import asyncio

import pytest
from tests.support.calls import OutgoingCall
from tests.support.remote import RemoteSDK
from tests.support.sip import LOOPBACK, RawSIP, local_engine

from sipsimple.core import Credentials

CHALLENGE = 'Digest realm="example.test", nonce="n-1", qop="auth"'


@pytest.fixture(scope="module")
def remote():
    with RemoteSDK() as sdk:
        sdk.ports = sdk.call("tests.support.sip:start_engine", udp_port=0, tcp_port=0)
        yield sdk


@pytest.fixture
async def engine():
    async with local_engine(udp_port=0, tcp_port=None, T1=0.1) as engine:
        yield engine


def callee(remote) -> str:
    return f"sip:callee@{LOOPBACK}:{remote.ports['udp']}"


async def test_a_call_is_set_up_acknowledged_and_ended(engine, remote):
    await remote.async_call("tests.support.calls:answer_calls")
    remote.clear()
    call = OutgoingCall(engine, callee(remote))
    final = await call.connect()
    assert final.code == 200 and final.body.startswith(b"v=0")
    assert [r.code for r in call.responses] == [180, 200]
    assert call.dialog is not None and call.dialog.state == "confirmed"
    incoming = await remote.async_wait_for("TestCallIncoming", timeout=5)
    assert incoming.data["body"].startswith(b"v=0")
    await remote.async_wait_for("TestCallGotAck", timeout=5)
    assert (await call.hang_up()).code == 200
    ended = await remote.async_wait_for("TestCallDidEnd", timeout=5)
    assert ended.data["call_id"] == final.call_id
    # the dialog is gone on both sides: a BYE in it now gets 481
    with RawSIP("udp", (LOOPBACK, remote.ports["udp"])) as raw:
        bye = raw.request(
            "BYE", call_id=final.call_id, from_tag=call.dialog.id.local_tag,
            to_tag=call.dialog.id.remote_tag, cseq=99,
        )  # fmt: skip
        response = await asyncio.to_thread(raw.exchange, bye)
    assert response.code == 481


async def test_a_ringing_call_is_cancelled(engine, remote):
    await remote.async_call("tests.support.calls:answer_calls", ring_time=10)
    remote.clear()
    call = OutgoingCall(engine, callee(remote))
    connecting = asyncio.ensure_future(call.connect())
    while not call.responses:
        await asyncio.sleep(0.02)
    assert call.responses[0].code == 180
    assert call.cancel()
    final = await connecting
    assert final.code == 487
    await remote.async_wait_for("TestCallCancelled", timeout=5)
    assert not call.cancel()  # nothing left to cancel


async def test_a_rejected_call_leaves_no_dialog(engine, remote):
    await remote.async_call("tests.support.calls:answer_calls", answer_code=486)
    call = OutgoingCall(engine, callee(remote))
    assert (await call.connect()).code == 486
    assert call.dialog is None
    assert len(engine.dialog_layer) == 0


async def test_a_challenged_invite_is_retried_with_credentials(engine, remote):
    await remote.async_call("tests.support.calls:answer_calls", challenge=CHALLENGE)
    remote.clear()
    call = OutgoingCall(engine, callee(remote), Credentials("caller", "pw"))
    final = await call.connect()
    assert final.code == 200 and final.cseq.number == 2
    first = await remote.async_wait_for("TestCallIncoming", timeout=5)
    second = await remote.async_wait_for("TestCallIncoming", timeout=5)
    assert (first.data["cseq"], first.data["authorization"]) == (1, None)
    assert second.data["cseq"] == 2 and 'username="caller"' in second.data["authorization"]
    await remote.async_wait_for("TestCallGotAck", timeout=5)
    assert (await call.hang_up()).code == 200
    assert call.dialog.local_seq == 3
    await remote.async_call("tests.support.calls:stop_answering")
