"""MSRP streams over loopback: FileTransferStream throughput and ChatStream rate and
latency, each beside a plain copy or the raw MSRPTransport measured in the same run.

Two streams in one process (one event loop, as two SDK endpoints on one machine
would run), set up with SDP as a Session would do it, without the SIP signalling
(which is not on the data path):

- file transfer: a 100 MB file from disk to disk, timed from start() until the
  receiver's FileTransferStreamDidFinish (so with connecting, reading, writing, the
  receiver's SHA-1 check and the notifications), over TCP and TLS.  Its peer is
  bench_msrp_transfer's plain_file_copy of the same file over the same kind of
  connection, with the stream's read size, write size and write-buffer limit, timed
  from connecting until the last byte is written (no hash).  The raw MSRPTransport
  (memory to memory, the stream's chunk size) is shown beside the plain memory copy
  for reference.  The four run in turn, five times; figures: the best MB/s (wall
  clock) and the least CPU seconds of the process (all threads, which a loaded
  machine disturbs less).
- chat: 2000 messages sent back to back (messages per second until the last
  ChatStreamGotMessage) and 500 sent one at a time (send_message() to
  ChatStreamGotMessage, median and 99th percentile), CPIM-wrapped with success
  reports; the peer is bench_msrp_transfer's chat over bare transports.

Run it in a loopback-only namespace (scripts/bench.sh does); ``--help`` lists the
options that narrow it (one transport, fewer runs, no chat).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import ipaddress
import os
import shutil
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_msrp_transfer import (
    Figure,
    _Clock,
    best_of,
    msrp_transfer,
    plain_copy,
    plain_file_copy,
    tls_contexts,
)
from bench_msrp_transfer import chat as transport_chat
from sipsimple.configuration import ConfigurationManager
from sipsimple.configuration.backend.memory import MemoryBackend
from sipsimple.core import (
    SIPURI,
    Credentials,
    FromHeader,
    FrozenSDPSession,
    SDPConnection,
    SDPSession,
    ToHeader,
)
from sipsimple.core.sdp import answer_media
from sipsimple.notification import NotificationCenter, NotificationQueue
from sipsimple.streams.msrp import ChatStream, FileSelector, FileTransferStream
from sipsimple.threading import SIPThread

MB = 1024 * 1024
TOTAL = 100 * MB
RUNS = 5
CHAT_COUNT = 2000
LATENCY_COUNT = 500


def certificate_file(directory: Path) -> Path:
    """A self-signed certificate for 127.0.0.1 with its key in one PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    path = directory / "msrp.pem"
    path.write_bytes(
        certificate.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def account(user: str, transport: str) -> Any:
    return types.SimpleNamespace(
        msrp=types.SimpleNamespace(transport=transport, connection_model="acm"),
        nat_traversal=types.SimpleNamespace(msrp_relay=None, use_msrp_relay_for_outbound=False),
        uri=SIPURI(user=user, host="example.test"),
        credentials=Credentials(user, "secret"),
        display_name=user.title(),
    )


def session(local: str, remote: str) -> Any:
    return types.SimpleNamespace(
        local_identity=FromHeader(SIPURI(user=local, host="example.test"), local.title()),
        remote_identity=ToHeader(SIPURI(user=remote, host="example.test"), remote.title()),
    )


def sdp(media: Any) -> FrozenSDPSession:
    return FrozenSDPSession.new(
        SDPSession("127.0.0.1", connection=SDPConnection("127.0.0.1"), media=[media])
    )


async def pair(offerer: Any, answerer_class: Any, transport: str) -> tuple[Any, Any, Any, Any]:
    """Initialize both streams and negotiate; returns (offerer, answerer, offer, answer)."""
    with NotificationQueue(name="MediaStreamDidInitialize") as queue:
        offerer.initialize(session("alice", "bob"), "outgoing")
        await queue.wait_for("MediaStreamDidInitialize", timeout=30)
        offer = sdp(offerer.get_local_media(True))
        answerer = answerer_class.new_from_sdp(account("bob", transport), offer, 0)
        answerer.initialize(session("bob", "alice"), "incoming")
        await queue.wait_for("MediaStreamDidInitialize", timeout=30)
    answer = sdp(answer_media(offer.media[0], answerer.get_local_media(False)))
    return offerer, answerer, offer, answer


async def end(*streams: Any) -> None:
    with NotificationQueue(name="MediaStreamDidEnd") as queue:
        for stream in streams:
            stream.end()
        for _ in streams:
            await queue.wait_for("MediaStreamDidEnd", timeout=30)


async def file_transfer(source: Path, selector: FileSelector, transport: str) -> Figure:
    sender = FileTransferStream(
        account("alice", transport),
        FileSelector(selector.name, selector.type, selector.size, selector.hash, path=str(source)),
    )
    alice, bob, offer, answer = await pair(sender, FileTransferStream, transport)
    with NotificationQueue(name="FileTransferStreamDidFinish") as queue:
        clock = _Clock()
        bob.start(answer, offer, 0)
        alice.start(offer, answer, 0)
        finished = await queue.wait_for(
            "FileTransferStreamDidFinish", lambda n: n.sender is bob, timeout=300
        )
        figure = clock.figure(TOTAL)
        assert not finished.data.error, finished.data.reason
        await queue.wait_for("FileTransferStreamDidFinish", lambda n: n.sender is alice, 60)
    await end(alice, bob)
    os.unlink(finished.data.filename)
    return figure


async def chat(transport: str) -> tuple[float, float, float]:
    alice, bob, offer, answer = await pair(
        ChatStream(account("alice", transport)), ChatStream, transport
    )
    loop = asyncio.get_running_loop()
    state: dict[str, Any] = {"count": 0, "target": 0, "done": None}

    def got(notification: Any) -> None:
        state["count"] += 1
        if state["count"] >= state["target"] and not state["done"].done():
            state["done"].set_result(None)

    with NotificationQueue(name="MediaStreamDidStart") as queue:
        bob.start(answer, offer, 0)
        alice.start(offer, answer, 0)
        await queue.wait_for("MediaStreamDidStart", timeout=30)
        await queue.wait_for("MediaStreamDidStart", timeout=30)
    center = NotificationCenter()
    center.add_observer(got, name="ChatStreamGotMessage", sender=bob)
    text = "Hello Bob, this is a chat message of an ordinary length."
    state.update(count=0, target=CHAT_COUNT, done=loop.create_future())
    start = time.perf_counter()
    for _ in range(CHAT_COUNT):
        alice.send_message(text)
    await asyncio.wait_for(state["done"], 120)
    rate = CHAT_COUNT / (time.perf_counter() - start)
    delays = []
    for _ in range(LATENCY_COUNT):
        state.update(count=0, target=1, done=loop.create_future())
        sent = time.perf_counter()
        alice.send_message(text)
        await asyncio.wait_for(state["done"], 10)
        delays.append(time.perf_counter() - sent)
    center.discard_observer(got, name="ChatStreamGotMessage", sender=bob)
    await asyncio.sleep(0.2)  # the last success reports
    await end(alice, bob)
    delays.sort()
    return rate, statistics.median(delays) * 1e6, delays[int(len(delays) * 0.99)] * 1e6


async def run(directory: Path, transports: list[str], runs: int, with_chat: bool) -> None:
    SIPThread().start(asyncio.get_running_loop())
    received = directory / "received"
    configuration = {
        "SIPSimpleSettings": {
            "local_ip": "127.0.0.1",
            "dns": {"probe_domain": None, "nameservers": ["127.0.0.1:9"]},
            "file_transfer": {"directory": str(received)},
            "tls": {"certificate": str(certificate_file(directory))},
        }
    }
    ConfigurationManager().start(MemoryBackend(configuration))
    source = directory / "source.bin"
    block = os.urandom(MB)
    with open(source, "wb") as file:
        for _ in range(TOTAL // MB):
            file.write(block)
    selector = await asyncio.to_thread(FileSelector.for_file, str(source))
    contexts = tls_contexts()

    print(f"file transfer, {TOTAL // MB} MB, best of {runs}")
    print(f"{'':4} {'':32} {'MB/s':>6} {'CPU s':>6} {'ours/plain':>11} {'CPU ratio':>10}")
    sizes = {
        "read_size": FileTransferStream.read_size,
        "write_size": FileTransferStream.write_size,
        "high_water": FileTransferStream.write_buffer_size,
    }
    target = directory / "plain copy.bin"

    def row(transport: str, label: str, ours: Figure, plain: Figure | None = None) -> None:
        line = f"{transport:4} {label:32} {ours.rate:>6.0f} {ours.cpu:>6.2f}"
        if plain is not None:
            line += f" {ours.rate / plain.rate:>11.2f} {ours.cpu / plain.cpu:>10.2f}"
        print(line)

    kinds = [(name, context) for name, context in (("tcp", None), ("tls", contexts))]
    kinds = [(name, context) for name, context in kinds if name in transports]
    for transport, context in kinds:
        # The four in turn, ``runs`` times: a change of the machine's load hits them alike.
        figures: list[list[Figure]] = [[], [], [], []]
        for _ in range(runs):
            figures[0].append(await plain_copy(context))
            figures[1].append(await msrp_transfer(context, FileTransferStream.chunk_size))
            figures[2].append(await plain_file_copy(context, source, target, **sizes))
            figures[3].append(await file_transfer(source, selector, transport))
        plain, raw, plain_file, streams = (best_of(each) for each in figures)
        row(transport, "plain copy, memory", plain)
        row(transport, "MSRPTransport, memory", raw, plain)
        row(transport, "plain copy, disk to disk", plain_file)
        row(transport, "FileTransferStream, disk to disk", streams, plain_file)
    target.unlink(missing_ok=True)
    if not with_chat:
        ConfigurationManager().stop()
        SIPThread().stop()
        return

    print(f"chat: {CHAT_COUNT} back to back, {LATENCY_COUNT} one at a time")
    print(f"{'':16} {'msg/s':>8} {'median us':>10} {'p99 us':>8}")
    for transport, context in kinds:
        rate, median, p99 = await chat(transport)
        raw_rate, raw_median, raw_p99 = await transport_chat(context)
        print(f"{transport + ' ChatStream':16} {rate:>8.0f} {median:>10.0f} {p99:>8.0f}")
        print(f"{transport + ' transport':16} {raw_rate:>8.0f} {raw_median:>10.0f} {raw_p99:>8.0f}")
        print(f"{'ratio':16} {rate / raw_rate:>8.2f} {median / raw_median:>10.2f}")
    ConfigurationManager().stop()
    SIPThread().stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--transport", choices=("tcp", "tls"), action="append", help="only this one (repeatable)"
    )
    parser.add_argument(
        "--runs", type=int, default=RUNS, help=f"file transfers of each kind ({RUNS})"
    )
    parser.add_argument("--no-chat", action="store_true", help="skip the chat figures")
    options = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="bench-msrp-streams-"))
    try:
        asyncio.run(
            run(directory, options.transport or ["tcp", "tls"], options.runs, not options.no_chat)
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
