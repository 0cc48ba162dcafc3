"""Two SDK endpoints with chat and file-transfer sessions, for the MSRP stream tests.

``endpoints(tmp_path, ...)`` sets up both for one test (see Endpoints). The test process
runs one endpoint (a SIPApplication on the test's loop, see
tests/support/application.py); a RemoteSDK child runs the other with the same start
order by hand (its SIP thread is taken already): ``await bob.async_call(start_peer,
peer_configuration("bob", ...))``. The functions below run in either process, on its
SIP thread, and keep the sessions they make in a registry under a name the test
chooses ("out" for the session a ``call()`` made, "in" for the last one
``auto_answer()`` accepted).

Accounts are ``<user>@example.test`` with registration off; a call goes straight to
the peer's Engine port (``call("out", "bob", port, ...)``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import resource
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.application import loopback_configuration, loopback_storage, running_application
from tests.support.notifications import RECORDER
from tests.support.remote import DEFAULT_EXCLUDE, RemoteSDK

from sipsimple.account import AccountManager
from sipsimple.application import engine_options
from sipsimple.configuration import ConfigurationManager
from sipsimple.configuration.backend.memory import MemoryBackend
from sipsimple.configuration.settings import SIPSimpleSettings
from sipsimple.core import SIPURI, Engine, ToHeader
from sipsimple.notification import NotificationCenter, NotificationQueue
from sipsimple.session import Session, SessionManager
from sipsimple.streams.msrp import ChatStream, FileSelector, FileTransferStream
from sipsimple.util import Route

__all__ = [
    "DOMAIN",
    "Endpoints",
    "account_settings",
    "auto_answer",
    "call",
    "chat",
    "combined_certificate",
    "compose",
    "cut_after",
    "end",
    "endpoints",
    "file_sha1",
    "listing",
    "make_file",
    "max_rss",
    "peer_configuration",
    "session_of",
    "session_state",
    "start_peer",
    "stop_peer",
    "streams_of",
]

DOMAIN = "example.test"
_sessions: dict[str, Session] = {}
_answering: dict[str, Any] = {}


def account_settings(
    user: str,
    *,
    transport: str = "tcp",
    model: str = "acm",
    password: str = "secret",
    relay: str | None = None,
    outbound_relay: bool = False,
) -> dict[str, dict[str, Any]]:
    """The stored settings of account ``<user>@example.test`` (for loopback_configuration)."""
    return {
        f"{user}@{DOMAIN}": {
            "enabled": "true",
            "display_name": user.title(),
            "auth": {"password": password},
            "registration": {"enabled": "false"},
            "msrp": {"transport": transport, "connection_model": model},
            "nat_traversal": {
                "msrp_relay": relay,
                "use_msrp_relay_for_outbound": "true" if outbound_relay else "false",
            },
        }
    }


def peer_configuration(
    user: str,
    *,
    directory: str | os.PathLike[str],
    certificate: str | os.PathLike[str] | None = None,
    trace: bool = False,
    **account: Any,
) -> dict[str, Any]:
    """A loopback configuration holding one account; received files go to
    ``directory``; ``certificate`` (a PEM with the key) lets it accept MSRP over TLS."""
    settings: dict[str, Any] = {
        "file_transfer": {"directory": str(directory)},
        "logs": {"trace_msrp": "true" if trace else "false"},
    }
    if certificate is not None:
        settings["tls"] = {"certificate": str(certificate)}
    return loopback_configuration(
        transports=("tcp",),
        accounts=account_settings(user, **account),
        settings=settings,
    )


# -- what runs on an endpoint's SIP thread -------------------------------------------------


async def start_peer(configuration: dict[str, Any]) -> dict[str, int]:
    """The application's start order in a child; the Engine's ports."""
    ConfigurationManager().start(MemoryBackend(configuration))
    await Engine().start(**engine_options(SIPSimpleSettings()))
    await AccountManager().start()
    SessionManager().start()
    import sipsimple.streams.msrp  # noqa: F401  (registers the MSRP stream classes)

    engine = Engine()
    return {"udp": engine.udp_port, "tcp": engine.tcp_port}


async def stop_peer() -> None:
    await SessionManager().stop()
    await AccountManager().stop()
    await Engine().stop()
    ConfigurationManager().stop()


def _account(user: str) -> Any:
    return AccountManager().get_account(f"{user}@{DOMAIN}")


def auto_answer(enabled: bool = True) -> None:
    """Accept every incoming session with the streams it offers ("in" is the last)."""
    center = NotificationCenter()
    observer = _answering.pop("observer", None)
    if observer is not None:
        center.discard_observer(observer, name="SIPSessionNewIncoming")
    if not enabled:
        return

    def answer(notification: Any) -> None:
        session = notification.sender
        _sessions["in"] = session
        session.accept(list(notification.data.streams))

    _answering["observer"] = answer
    center.add_observer(answer, name="SIPSessionNewIncoming")


def call(
    name: str,
    user: str,
    target: str,
    port: int,
    kinds: tuple[str, ...] = ("chat",),
    files: tuple[str, ...] = (),
    file_name: str | None = None,
) -> None:
    """``user`` calls ``target`` at 127.0.0.1:``port`` (TCP) with a ChatStream per "chat"
    and a FileTransferStream per file path (offered as ``file_name`` when given); the
    session is ``name``."""
    account = _account(user)
    streams: list[Any] = [ChatStream(account) for kind in kinds if kind == "chat"]
    for path in files:
        selector = FileSelector.for_file(path, compute_hash=False)
        if file_name is not None:
            selector.name = file_name
        streams.append(FileTransferStream(account, selector))
    session = Session(account)
    _sessions[name] = session
    uri = SIPURI(user=target, host="127.0.0.1", port=port, parameters={"transport": "tcp"})
    session.connect(ToHeader(uri), [Route("127.0.0.1", port, "tcp")], streams)


def session_of(name: str) -> Session:
    return _sessions[name]


def streams_of(name: str, kind: str | None = None) -> list[Any]:
    session = _sessions[name]
    streams = list(session.streams or session.proposed_streams or [])
    return [s for s in streams if kind is None or s.type == kind]


def chat(name: str, content: str | bytes, content_type: str = "text/plain") -> str:
    """Send a message on the chat stream of session ``name``; its message id."""
    stream = streams_of(name, "chat")[0]
    return str(stream.send_message(content, content_type))


def compose(name: str, state: str, refresh: int | None = 30) -> str:
    stream = streams_of(name, "chat")[0]
    return str(stream.send_composing_indication(state, refresh))


def end(name: str) -> None:
    _sessions[name].end()


def cut_after(name: str, received: int) -> None:
    """Once the file transfer of session ``name`` received ``received`` bytes, drop its
    MSRP connection at once (as a network failure would) and end the session."""

    def check(notification: Any) -> None:
        session = _sessions.get(name)
        stream = notification.sender
        if session is None or stream not in (session.streams or []):
            return
        if notification.data.transferred_bytes >= received and session.state == "connected":
            NotificationCenter().discard_observer(check, name="FileTransferStreamGotChunk")
            asyncio.get_running_loop().create_task(stream.msrp.close(timeout=0))
            session.end()

    NotificationCenter().add_observer(check, name="FileTransferStreamGotChunk")


def session_state(name: str) -> str | None:
    return _sessions[name].state


# -- files -------------------------------------------------------------------------------------


def make_file(path: str | os.PathLike[str], size: int, seed: int = 1) -> str:
    """Write ``size`` reproducible pseudo-random bytes; their SHA-1 (hex)."""
    block = hashlib.sha512(str(seed).encode()).digest() * 16384  # 1 MiB
    sha1 = hashlib.sha1()
    with open(path, "wb") as file:
        left = size
        while left:
            piece = block[: min(left, len(block))]
            file.write(piece)
            sha1.update(piece)
            left -= len(piece)
    return sha1.hexdigest()


def file_sha1(path: str | os.PathLike[str]) -> str:
    sha1 = hashlib.sha1()
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            sha1.update(block)
    return sha1.hexdigest()


def listing(directory: str | os.PathLike[str]) -> list[str]:
    return sorted(p.name for p in Path(directory).iterdir())


def max_rss() -> int:
    """Peak resident memory of this process in bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# -- the two endpoints of a test -----------------------------------------------------------------


@dataclass
class Endpoints:
    """Alice (this process) and Bob (``bob``, a RemoteSDK child answering every session
    at 127.0.0.1:``port``); ``queue`` collects Alice's notifications."""

    bob: RemoteSDK
    port: int
    queue: NotificationQueue
    alice_dir: Path
    bob_dir: Path

    @property
    def account(self) -> Any:
        return _account("alice")

    async def wait(self, name: str, condition: Any = None, timeout: float = 10.0) -> Any:
        return await self.queue.wait_for(name, condition, timeout)

    async def bob_wait(self, name: str, condition: Any = None, timeout: float = 10.0) -> Any:
        return await self.bob.async_wait_for(name, condition, timeout)

    async def call(self, *streams: Any) -> Session:
        """Alice calls Bob with ``streams``; returns once both sessions started."""
        session = Session(self.account)
        uri = SIPURI(user="bob", host="127.0.0.1", port=self.port, parameters={"transport": "tcp"})
        session.connect(ToHeader(uri), [Route("127.0.0.1", self.port, "tcp")], list(streams))
        await self.wait("SIPSessionDidStart", lambda n: n.sender is session, 15)
        await self.bob_wait("SIPSessionDidStart", timeout=15)
        return session

    async def hang_up(self, session: Session) -> None:
        session.end()
        await self.wait("SIPSessionDidEnd", lambda n: n.sender is session, 10)
        await self.bob_wait("SIPSessionDidEnd", timeout=10)


def combined_certificate(directory: Path) -> Path:
    """A PEM holding the test server certificate and its key (SIPSimpleSettings.tls)."""
    from tests.interop.peers.certs import make_certificates

    certificates = make_certificates(directory)
    combined = directory / "msrp.pem"
    combined.write_bytes(
        certificates.server.cert.read_bytes() + certificates.server.key.read_bytes()
    )
    return combined


@contextlib.asynccontextmanager
async def endpoints(
    tmp_path: Path,
    *,
    transport: str = "tcp",
    alice: dict[str, Any] | None = None,
    bob: dict[str, Any] | None = None,
    trace: bool = False,
    exclude: tuple[str, ...] = (),
    nameservers: tuple[str, ...] | None = None,
) -> AsyncIterator[Endpoints]:
    """Start Bob (a child) and Alice (a SIPApplication here) with MSRP over
    ``transport``; ``alice`` and ``bob`` are more account_settings() options
    (``model``, ``relay``, ``outbound_relay``, ``password``); ``nameservers`` are
    Alice's DNS servers."""
    certificate = combined_certificate(tmp_path / "certs") if transport == "tls" else None
    alice_dir, bob_dir = tmp_path / "alice", tmp_path / "bob"
    with RemoteSDK(call_timeout=30, exclude=DEFAULT_EXCLUDE + exclude) as remote:
        configuration = peer_configuration(
            "bob", directory=bob_dir, certificate=certificate, transport=transport, **(bob or {})
        )
        ports = await remote.async_call(start_peer, configuration)
        await remote.async_call(auto_answer)
        settings: dict[str, Any] = {
            "file_transfer": {"directory": str(alice_dir)},
            "logs": {"trace_msrp": "true" if trace else "false"},
        }
        if certificate is not None:
            settings["tls"] = {"certificate": str(certificate)}
        storage = loopback_storage(
            transports=("tcp",),
            accounts=account_settings("alice", transport=transport, **(alice or {})),
            settings=settings,
            **({"nameservers": nameservers} if nameservers is not None else {}),
        )
        try:
            with NotificationQueue() as queue:
                async with running_application(storage):
                    yield Endpoints(remote, ports["tcp"], queue, alice_dir, bob_dir)
            await remote.async_call(stop_peer)
        finally:
            RECORDER.add_remote(remote)
