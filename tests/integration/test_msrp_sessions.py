"""Chat and file transfer between two SDK endpoints over loopback, directly (no relay).

Alice is this process (a SIPApplication on the test's loop); Bob is a RemoteSDK child
that accepts every incoming session (tests/support/msrp_sessions.py). Each test sets
up a real SIP session over TCP with MSRP over TCP or TLS (the account's msrp.transport).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from tests.support import msrp_sessions as ms

from sipsimple.msrp import MSRPData
from sipsimple.streams.msrp import (
    ChatStream,
    ChatStreamError,
    CPIMIdentity,
    CPIMMessage,
    FileSelector,
    FileTransferStream,
)

MB = 1024 * 1024
UNICODE = "héllo wörld ✓ 😀 — Ünïcödé ελληνικά 中文"


def by_id(message_id: str) -> Any:
    return lambda n: n.data.message_id == message_id


# -- chat --------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["tcp", "tls"])
async def test_chat_both_ways(tmp_path: Path, transport: str) -> None:
    async with ms.endpoints(tmp_path, transport=transport) as ends:
        stream = ChatStream(ends.account)
        session = await ends.call(stream)
        assert stream.state == "started" and stream.cpim_enabled
        assert stream.use_tls == (transport == "tls")
        assert stream.local_path[0].use_tls == (transport == "tls")

        messages = [
            (UNICODE, "text/plain"),
            (UNICODE * 300, "text/plain"),  # about 17 KB: many chunks
            ("<p>bold <b>move</b></p>", "text/html"),
        ]
        for content, content_type in messages:
            message_id = stream.send_message(content, content_type)
            sent = await ends.wait("ChatStreamDidSendMessage", lambda n: n.sender is stream)
            assert isinstance(sent.data.message, MSRPData)
            assert sent.data.message.message_id == message_id
            delivered = await ends.wait("ChatStreamDidDeliverMessage", by_id(message_id))
            assert delivered.data.code == 200 and delivered.data.reason == "OK"
            assert isinstance(delivered.data.chunk, MSRPData)
            assert delivered.data.chunk.method == "REPORT"
            got = await ends.bob_wait("ChatStreamGotMessage")
            message = got.data["message"]
            assert isinstance(message, CPIMMessage)
            assert message.body == content and message.content_type == content_type
            assert message.message_id == message_id
            assert message.sender == CPIMIdentity("sip:alice@example.test", "Alice")
            assert message.timestamp is not None and message.timestamp.tzinfo is not None

        stream.send_composing_indication("active", 15)
        composing = await ends.bob_wait("ChatStreamGotComposingIndication")
        assert composing.data["state"] == "active" and composing.data["refresh"] == 15
        assert composing.data["content_type"] == "text/plain"
        assert composing.data["sender"].uri == "sip:alice@example.test"

        reply_id = await ends.bob.async_call(ms.chat, "in", "hi Alice — ça va?")
        got = await ends.wait("ChatStreamGotMessage", lambda n: n.sender is stream)
        assert got.data.message.body == "hi Alice — ça va?"
        assert got.data.message.sender.display_name == "Bob"
        assert got.data.message.message_id == reply_id
        delivered = await ends.bob_wait(
            "ChatStreamDidDeliverMessage", lambda n: n.data["message_id"] == reply_id
        )
        assert delivered.data["code"] == 200
        await ends.bob.async_call(ms.compose, "in", "idle", None)
        composing = await ends.wait("ChatStreamGotComposingIndication")
        assert composing.data.state == "idle" and composing.data.refresh is None

        await ends.hang_up(session)
        ended = await ends.wait("MediaStreamDidEnd", lambda n: n.sender is stream)
        assert ended.data.error is None
        with pytest.raises(ChatStreamError):
            stream.send_message("too late")


async def test_chat_with_an_active_offerer(tmp_path: Path) -> None:
    """The relay connection model without a relay for outgoing streams: Alice offers
    a=setup:active and connects; Bob (acm) answers passive and listens."""
    async with ms.endpoints(tmp_path, alice={"model": "relay"}) as ends:
        stream = ChatStream(ends.account)
        session = await ends.call(stream)
        assert stream.local_role == "active" and stream.remote_role == "passive"
        message_id = stream.send_message("over Bob's listener")
        await ends.wait("ChatStreamDidDeliverMessage", by_id(message_id))
        got = await ends.bob_wait("ChatStreamGotMessage")
        assert got.data["message"].body == "over Bob's listener"
        await ends.hang_up(session)


async def test_chat_queues_messages_until_started_and_traces(tmp_path: Path) -> None:
    async with ms.endpoints(tmp_path, trace=True) as ends:
        stream = ChatStream(ends.account)
        early = stream.send_message("sent before the session started")
        session = await ends.call(stream)
        await ends.wait("ChatStreamDidDeliverMessage", by_id(early))
        got = await ends.bob_wait("ChatStreamGotMessage")
        assert got.data["message"].body == "sent before the session started"
        traces = [n for n in ends.queue._items if n.name == "MSRPTransportTrace"]
        directions = {n.data.direction for n in traces}
        assert directions == {"incoming", "outgoing"}
        assert any(early in n.data.data for n in traces if n.data.direction == "outgoing")
        assert all(
            n.data.data.startswith("MSRP ") for n in traces if n.data.direction == "outgoing"
        )
        # Only the peer may be a recipient: Bob does not allow private messages.
        with pytest.raises(ChatStreamError, match="private"):
            stream.send_message("psst", recipients=[CPIMIdentity("sip:carol@example.test")])
        await ends.hang_up(session)


# -- file transfer -------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["tcp", "tls"])
@pytest.mark.parametrize("size", [0, 1, 3 * MB + 17])
async def test_file_transfer(tmp_path: Path, transport: str, size: int) -> None:
    name = "my report \u2013 ünïcödé ✓.bin"
    source = tmp_path / name
    digest = ms.make_file(source, size, seed=size)
    async with ms.endpoints(tmp_path, transport=transport) as ends:
        selector = FileSelector.for_file(str(source), compute_hash=False)
        stream = FileTransferStream(ends.account, selector)
        session = await ends.call(stream)
        finished = await ends.wait("FileTransferStreamDidFinish", lambda n: n.sender is stream, 30)
        assert finished.data.error is False and finished.data.reason is None
        assert finished.data.filename == str(source)
        assert selector.size == size
        assert selector.hash == "sha-1:" + bytes.fromhex(digest).hex(":").upper()
        received = await ends.bob_wait("FileTransferStreamDidFinish", timeout=30)
        assert received.data["error"] is False
        target = Path(received.data["filename"])
        assert target == ends.bob_dir / name
        assert ms.file_sha1(target) == digest and target.stat().st_size == size
        assert ms.listing(ends.bob_dir) == [name]  # no partial file left behind
        if size:
            progress = [
                n for n in ends.queue._items if n.name == "FileTransferStreamDidDeliverChunk"
            ]
            assert progress and progress[-1].data.transferred_bytes == size
            assert all(n.data.file_size == size and n.data.code == 200 for n in progress)
            chunks = [n for n in ends.bob.notifications if n.name == "FileTransferStreamGotChunk"]
            assert sum(len(n.data["content"]) for n in chunks) == size
            assert chunks[-1].data["transferred_bytes"] == size
            assert chunks[-1].data["file_size"] == size
        await ends.hang_up(session)


async def test_received_files_keep_existing_ones_and_stay_in_the_directory(
    tmp_path: Path,
) -> None:
    """Bob sends to Alice: a name taken already, then a name trying to leave the directory."""
    source = tmp_path / "notes.txt"
    digest = ms.make_file(source, 10_000)
    async with ms.endpoints(tmp_path) as ends:
        ms.auto_answer()
        ends.alice_dir.mkdir()
        (ends.alice_dir / "notes.txt").write_text("mine, do not touch")
        port = _engine_tcp_port()
        received = []
        for offered in ("notes.txt", "../../escape/../notes.txt", "..\\..\\notes.txt"):
            await ends.bob.async_call(
                ms.call, "out", "bob", "alice", port, (), (str(source),), offered
            )
            finished = await ends.wait("FileTransferStreamDidFinish", timeout=20)
            assert finished.data.error is False, finished.data.reason
            received.append(Path(finished.data.filename))
            await ends.bob.async_call(ms.end, "out")
            await ends.wait("SIPSessionDidEnd", timeout=10)
        assert [p.name for p in received] == ["notes (1).txt", "notes (2).txt", "notes (3).txt"]
        assert all(p.parent == ends.alice_dir.resolve() for p in received)
        assert all(ms.file_sha1(p) == digest for p in received)
        assert (ends.alice_dir / "notes.txt").read_text() == "mine, do not touch"
        assert not (tmp_path / "escape").exists()
        ms.auto_answer(False)


def _engine_tcp_port() -> int:
    from sipsimple.core import Engine

    port = Engine().tcp_port
    assert port
    return int(port)


async def test_interrupted_transfer_resumes(tmp_path: Path) -> None:
    size = 6 * MB + 123
    source = tmp_path / "big archive.tar"
    digest = ms.make_file(source, size, seed=7)
    async with ms.endpoints(tmp_path, exclude=("FileTransferStreamGotChunk",)) as ends:
        # First session: Bob's connection drops once a third of the file arrived.
        await ends.bob.async_call(ms.cut_after, "in", size // 3)
        first = FileTransferStream(
            ends.account, FileSelector.for_file(str(source), compute_hash=False)
        )
        await ends.call(first)
        cut = await ends.wait("FileTransferStreamDidFinish", lambda n: n.sender is first, 30)
        assert cut.data.error is True
        await ends.wait("SIPSessionDidEnd", timeout=10)
        interrupted = await ends.bob_wait("FileTransferStreamDidFinish", timeout=10)
        assert interrupted.data["error"] is True
        names = ms.listing(ends.bob_dir)
        assert names == ["big archive.tar.part", "big archive.tar.part.json"]
        kept = (ends.bob_dir / "big archive.tar.part").stat().st_size
        assert size // 3 <= kept < size

        # Second session: Bob answers with a=file-range, Alice sends only the rest.
        second = FileTransferStream(
            ends.account, FileSelector.for_file(str(source), compute_hash=False)
        )
        session = await ends.call(second)
        assert second.offset > 0 and second.offset <= kept
        done = await ends.wait("FileTransferStreamDidFinish", lambda n: n.sender is second, 30)
        assert done.data.error is False
        progress = [
            n
            for n in ends.queue._items
            if n.name == "FileTransferStreamDidDeliverChunk" and n.sender is second
        ]
        assert progress[-1].data.transferred_bytes == size
        received = await ends.bob_wait(
            "FileTransferStreamDidFinish", lambda n: n.data["error"] is False, 30
        )
        target = Path(received.data["filename"])
        assert target.name == "big archive.tar"
        assert ms.file_sha1(target) == digest
        assert ms.listing(ends.bob_dir) == ["big archive.tar"]
        await ends.hang_up(session)


async def test_corrupted_data_is_detected_by_the_hash(tmp_path: Path) -> None:
    source = tmp_path / "photo.jpg"
    ms.make_file(source, 300_000, seed=3)
    selector = FileSelector.for_file(str(source))  # hash of the good file
    with open(source, "r+b") as file:  # one byte changes on the way
        file.seek(150_000)
        byte = file.read(1)
        file.seek(150_000)
        file.write(bytes([byte[0] ^ 0xFF]))
    async with ms.endpoints(tmp_path) as ends:
        stream = FileTransferStream(ends.account, selector)
        session = await ends.call(stream)
        received = await ends.bob_wait("FileTransferStreamDidFinish", timeout=20)
        assert received.data["error"] is True
        assert "hash" in received.data["reason"]
        assert ms.listing(ends.bob_dir) == []  # neither a final file nor a partial one
        await ends.hang_up(session)


@pytest.mark.large
async def test_100_mb_transfer_with_bounded_memory(tmp_path: Path) -> None:
    size = 100 * MB
    source = tmp_path / "large.bin"
    digest = ms.make_file(source, size, seed=100)
    quiet = ("FileTransferStreamGotChunk", "FileTransferStreamDidDeliverChunk")
    async with ms.endpoints(tmp_path, exclude=quiet) as ends:
        bob_before = await ends.bob.async_call(ms.max_rss)
        alice_before = ms.max_rss()
        stream = FileTransferStream(
            ends.account, FileSelector.for_file(str(source), compute_hash=False)
        )
        session = await ends.call(stream)
        received = await ends.bob_wait("FileTransferStreamDidFinish", timeout=240)
        assert received.data["error"] is False, received.data["reason"]
        assert ms.file_sha1(received.data["filename"]) == digest
        sent = await ends.wait("FileTransferStreamDidFinish", lambda n: n.sender is stream, 60)
        assert sent.data.error is False
        bob_growth = await ends.bob.async_call(ms.max_rss) - bob_before
        alice_growth = ms.max_rss() - alice_before
        ends.queue._items.clear()
        assert bob_growth < 48 * MB, f"the receiver grew by {bob_growth / MB:.0f} MB"
        assert alice_growth < 48 * MB, f"the sender grew by {alice_growth / MB:.0f} MB"
        await ends.hang_up(session)
        os.unlink(received.data["filename"])
