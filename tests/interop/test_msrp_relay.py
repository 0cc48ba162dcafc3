"""Chat and file transfer through an RFC 4976 MSRP relay: Kamailio's msrp module on
127.0.0.1 (tests/interop/peers, Kamailio(msrp_relay=True)), reached over TLS and
authenticated with AUTH and digest credentials.

Alice is this process, Bob a RemoteSDK child (tests/support/msrp_sessions.py); the SIP
session goes straight from one to the other, the MSRP session through the relay. Run
inside a loopback-only network namespace:

    unshare -n sh -c 'ip link set lo up;
        PYTHONPATH=src python -m pytest tests/interop/test_msrp_*.py -q'
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.interop.dnsmasq import Dnsmasq
from tests.interop.peers import Kamailio
from tests.support import msrp_sessions as ms

from sipsimple.session import Session
from sipsimple.streams.msrp import ChatStream, FileSelector, FileTransferStream

pytestmark = pytest.mark.interop

PASSWORDS = {"alice": "alice-secret", "bob": "bob-secret"}


@pytest.fixture(scope="module")
def relay() -> Iterator[Kamailio]:
    with Kamailio(auth=False, msrp_relay=True) as kamailio:
        for user, password in PASSWORDS.items():
            kamailio.add_user(user, password)
        yield kamailio


def relay_account(relay: Kamailio, user: str, **options: Any) -> dict[str, Any]:
    return {
        "model": "relay",
        "relay": relay.msrp_relay_address,
        "password": PASSWORDS[user],
        **options,
    }


async def exchange_messages(ends: ms.Endpoints, stream: ChatStream) -> None:
    message_id = stream.send_message("through the relay ✓ " * 200)  # several chunks
    delivered = await ends.wait(
        "ChatStreamDidDeliverMessage", lambda n: n.data.message_id == message_id
    )
    assert delivered.data.code == 200
    got = await ends.bob_wait("ChatStreamGotMessage")
    assert got.data["message"].body == "through the relay ✓ " * 200
    reply_id = await ends.bob.async_call(ms.chat, "in", "and back")
    got = await ends.wait("ChatStreamGotMessage", lambda n: n.sender is stream)
    assert got.data.message.body == "and back"
    await ends.bob_wait("ChatStreamDidDeliverMessage", lambda n: n.data["message_id"] == reply_id)


async def test_chat_with_the_offerer_behind_the_relay(tmp_path: Path, relay: Kamailio) -> None:
    """Alice uses the relay for outgoing streams (a=setup:actpass with the relay in her
    path); Bob answers active and connects to the relay."""
    alice = relay_account(relay, "alice", outbound_relay=True)
    bob = relay_account(relay, "bob")
    async with ms.endpoints(tmp_path, transport="tls", alice=alice, bob=bob) as ends:
        stream = ChatStream(ends.account)
        session = await ends.call(stream)
        assert len(stream.local_path) == 2
        assert stream.local_path[0].port == relay.tls_port
        assert stream.local_role == "actpass" and stream.remote_role == "active"
        await exchange_messages(ends, stream)
        await ends.hang_up(session)


async def test_chat_with_the_answerer_behind_the_relay(tmp_path: Path, relay: Kamailio) -> None:
    """Alice offers a=setup:active (relay model, no relay for outgoing); Bob must be
    passive and puts the relay in his path; Alice connects to the relay."""
    alice = relay_account(relay, "alice")
    bob = relay_account(relay, "bob")
    async with ms.endpoints(tmp_path, transport="tls", alice=alice, bob=bob) as ends:
        stream = ChatStream(ends.account)
        session = await ends.call(stream)
        assert stream.local_role == "active"
        assert len(stream.remote_path) == 2
        assert stream.remote_path[0].port == relay.tls_port
        await exchange_messages(ends, stream)
        await ends.hang_up(session)


@pytest.mark.parametrize("outbound", [True, False], ids=["offerer-relayed", "answerer-relayed"])
async def test_file_transfer_through_the_relay(
    tmp_path: Path, relay: Kamailio, outbound: bool
) -> None:
    size = 1024 * 1024 + 5
    source = tmp_path / "relayed file.bin"
    digest = ms.make_file(source, size, seed=11)
    alice = relay_account(relay, "alice", outbound_relay=outbound)
    bob = relay_account(relay, "bob")
    async with ms.endpoints(
        tmp_path, transport="tls", alice=alice, bob=bob, exclude=("FileTransferStreamGotChunk",)
    ) as ends:
        stream = FileTransferStream(
            ends.account, FileSelector.for_file(str(source), compute_hash=False)
        )
        session = await ends.call(stream)
        received = await ends.bob_wait("FileTransferStreamDidFinish", timeout=60)
        assert received.data["error"] is False, received.data["reason"]
        assert ms.file_sha1(received.data["filename"]) == digest
        sent = await ends.wait("FileTransferStreamDidFinish", lambda n: n.sender is stream, 30)
        assert sent.data.error is False
        await ends.hang_up(session)


async def test_the_relay_found_with_dns_srv(tmp_path: Path, relay: Kamailio) -> None:
    """Without nat_traversal.msrp_relay the relay is _msrps._tcp.<account domain>."""
    records = [
        f"--srv-host=_msrps._tcp.example.test,relay.example.test,{relay.tls_port},10,0",
        "--host-record=relay.example.test,127.0.0.1",
    ]
    alice = {"model": "relay", "outbound_relay": True, "password": PASSWORDS["alice"]}
    with Dnsmasq(records) as dns:
        async with ms.endpoints(
            tmp_path,
            transport="tls",
            alice=alice,
            bob=relay_account(relay, "bob"),
            nameservers=(dns.nameserver,),
        ) as ends:
            stream = ChatStream(ends.account)
            session = await ends.call(stream)
            relay_uri = stream.local_path[0]
            assert (relay_uri.host, relay_uri.port) == ("127.0.0.1", relay.tls_port)
            await exchange_messages(ends, stream)
            await ends.hang_up(session)


async def test_a_wrong_relay_password_fails_the_session(tmp_path: Path, relay: Kamailio) -> None:
    alice = relay_account(relay, "alice", outbound_relay=True, password="wrong")
    async with ms.endpoints(tmp_path, transport="tls", alice=alice) as ends:
        stream = ChatStream(ends.account)
        session = Session(ends.account)
        from sipsimple.core import SIPURI, ToHeader
        from sipsimple.util import Route

        uri = SIPURI(user="bob", host="127.0.0.1", port=ends.port, parameters={"transport": "tcp"})
        session.connect(ToHeader(uri), [Route("127.0.0.1", ends.port, "tcp")], [stream])
        failed = await ends.wait("MediaStreamDidFail", lambda n: n.sender is stream, 20)
        assert "401" in failed.data.reason and failed.data.context == "initialize"
        ended = await ends.wait("SIPSessionDidFail", lambda n: n.sender is session, 20)
        assert "401" in ended.data.failure_reason
