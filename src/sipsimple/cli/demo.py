"""``sipsimple demo``: the README's main job, and a complete example of the SDK.

``sipsimple demo`` is the README's main job: it runs two SDK endpoints on this machine,
Alice in this process and Bob in a child process (``sipsimple demo-peer``), each with
a temporary configuration that keeps them on 127.0.0.1. Alice calls Bob with no server
in between, Bob's phone rings and he answers. The session has four streams: audio (an
AudioStream; each party's microphone is a tone on a DummyDevice, Alice 1000 Hz and Bob
1500 Hz, each records the call, Alice sends a DTMF digit), a small datagram stream of
the demo's own that carries a greeting each way, a chat over MSRP (ChatStream: Alice
writes, Bob replies) and a file transfer over MSRP (FileTransferStream: Alice sends Bob
a small note, saved under ``received/`` in Bob's temporary directory). Alice hangs up.
Everything both endpoints post is printed as one timeline of notifications, with each
side's codec, SRTP and ICE state and RTCP figures, and the tone each side heard (FFT of
what its speaker played).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import threading
import time
import wave
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from sipsimple import __version__
from sipsimple.account import AccountManager
from sipsimple.application import SIPApplication
from sipsimple.cli.call import describe
from sipsimple.configuration.settings import SIPSimpleSettings
from sipsimple.core import SIPURI, Engine, SDPAttribute, SDPMediaStream, ToHeader
from sipsimple.core.sdp import effective_direction
from sipsimple.media.devices import DummyDevice
from sipsimple.msrp import MSRPData
from sipsimple.notification import Notification, NotificationCenter, NotificationData
from sipsimple.session import Session
from sipsimple.storage import FileStorage
from sipsimple.streams import AudioStream, IMediaStream, MediaStreamRegistrar
from sipsimple.streams.msrp import ChatStream, FileSelector, FileTransferStream
from sipsimple.threading import sip_loop
from sipsimple.util import Route

__all__ = ["DemoStream", "add_demo_parsers", "demo", "demo_peer"]

_HIDDEN = (
    "CFG",
    "DNS",
    "SIPInvitation",
    "SIPEngineLog",
    "SIPEngineSIPTrace",
    "SIPEngineTransport",
    "AudioPortDidChangeSlots",
)
_FORMAT = "x-sipsimple-demo"
TONES = {"alice": 1000.0, "bob": 1500.0}


class DemoStream(IMediaStream, metaclass=MediaStreamRegistrar):
    """The demo's media: a UDP socket on 127.0.0.1 that sends one greeting to the peer
    once the session starts and keeps what arrives (``m=application <port> udp``)."""

    type = "demo"
    priority = 0
    hold_supported = True

    def __init__(self, greeting: str) -> None:
        self.greeting = greeting
        self.received: list[str] = []
        self.port = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._ended = False

    def __repr__(self) -> str:
        return f"DemoStream(:{self.port})"

    def _post(self, name: str, **data: Any) -> None:
        NotificationCenter().post_notification(name, sender=self, data=NotificationData(**data))

    @classmethod
    def new_from_sdp(cls, account: Any, remote_sdp: Any, stream_index: int) -> DemoStream | None:
        media = remote_sdp.media[stream_index]
        if media.media == "application" and _FORMAT in media.formats:
            return cls(f"hello from {account.id.username}")
        return None

    def get_local_media(self, for_offer: bool) -> SDPMediaStream:
        direction = "sendonly" if self.on_hold_by_local else "sendrecv"
        return SDPMediaStream(
            "application", self.port, "udp", formats=[_FORMAT], attributes=[SDPAttribute(direction)]
        )

    def initialize(self, session: Any, direction: str) -> None:
        asyncio.get_running_loop().create_task(self._open())

    async def _open(self) -> None:
        stream = self

        class Receiver(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                stream.received.append(data.decode(errors="replace"))

        try:
            transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                Receiver, local_addr=("127.0.0.1", 0)
            )
        except OSError as e:
            self._post("MediaStreamDidFail", reason=str(e))
            return
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        self._post("MediaStreamDidInitialize")

    def start(self, local_sdp: Any, remote_sdp: Any, stream_index: int) -> None:
        media = remote_sdp.media[stream_index]
        address = (media.connection or remote_sdp.connection).address
        self.on_hold_by_remote = effective_direction(remote_sdp, stream_index) != "sendrecv"
        if self._transport is not None:
            self._transport.sendto(self.greeting.encode(), (address, media.port))
        self._post("MediaStreamDidStart")

    def validate_update(self, remote_sdp: Any, stream_index: int) -> bool:
        return True

    def update(self, local_sdp: Any, remote_sdp: Any, stream_index: int) -> None:
        self.on_hold_by_remote = effective_direction(remote_sdp, stream_index) != "sendrecv"

    def hold(self) -> None:
        self.on_hold_by_local = True

    def unhold(self) -> None:
        self.on_hold_by_local = False

    def deactivate(self) -> None:
        pass

    def end(self) -> None:
        if self._ended:
            return
        self._ended = True
        self._post("MediaStreamWillEnd")
        if self._transport is not None:
            self._transport.close()
        self._post("MediaStreamDidEnd")


def _describe(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_describe(item) for item in value) + "]"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, MSRPData):
        return f"<MSRP {value.method or value.code} {value.transaction_id}>"
    return str(value)


class Timeline:
    """Prints the notifications worth reading with the time since ``start`` (a
    time.time() value shared by both endpoints) and who posted them."""

    def __init__(
        self,
        party: str,
        start: float,
        out: TextIO = sys.stdout,
        lock: threading.Lock | None = None,
    ) -> None:
        self.party = party
        self.start = start
        self.out = out
        self.lock = lock or threading.Lock()

    def __call__(self, notification: Notification) -> None:
        if notification.name.startswith(_HIDDEN):
            return
        fields = {k: v for k, v in vars(notification.data).items() if k != "timestamp"}
        details = " ".join(f"{key}={_describe(value)}" for key, value in fields.items())
        sender = type(notification.sender).__name__
        self.line(f"{notification.name:<36} {sender:<15} {details}".rstrip())

    def line(self, text: str, at: float | None = None) -> None:
        elapsed = (time.time() if at is None else at) - self.start
        with self.lock:
            print(f"{elapsed:8.3f}s  {self.party:<5}  {text}", file=self.out, flush=True)


def _configuration(user: str, directory: Path) -> dict[str, Any]:
    """Settings that keep an endpoint on 127.0.0.1 (no DNS probe, no registrar, MSRP
    straight to the peer over TCP); recordings and received files go under ``directory``."""
    return {
        "SIPSimpleSettings": {
            "local_ip": "127.0.0.1",
            "sip": {"transport_list": ["udp"]},
            "audio": {"recordings_directory": str(directory / "recordings")},
            "file_transfer": {"directory": str(directory / "received")},
            "dns": {
                "probe_domain": None,
                "nameservers": ["127.0.0.1:9"],
                "fallback_nameservers": [],
            },
        },
        "Accounts": {
            "bonjour@local": {"enabled": "false"},
            f"{user}@demo.invalid": {
                "enabled": "true",
                "display_name": user.capitalize(),
                "registration": {"enabled": "false"},
                "msrp": {"transport": "tcp", "connection_model": "acm"},
            },
        },
    }


def dominant_frequency(path: Path) -> tuple[float, float]:
    """(the strongest frequency, the RMS level) of a mono 16-bit WAV file."""
    with wave.open(str(path)) as recording:
        rate = recording.getframerate()
        samples = np.frombuffer(recording.readframes(recording.getnframes()), dtype="<i2")
    if samples.size < 2:
        return 0.0, 0.0
    data = samples.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(data * np.hanning(data.size)))
    frequency = float(np.fft.rfftfreq(data.size, 1 / rate)[int(np.argmax(spectrum))])
    return frequency, float(np.sqrt(np.mean(data**2)))


class _Endpoint:
    """A SIPApplication with a temporary configuration for ``user``; its notifications
    go to ``timeline``. Its voice device is a DummyDevice: its microphone the user's
    tone, its speaker written to a WAV file."""

    def __init__(self, user: str, directory: str, timeline: Timeline) -> None:
        self.user = user
        self.directory = Path(directory)
        self.app = SIPApplication()
        self.timeline = timeline
        self.device: DummyDevice | None = None
        self.storage = FileStorage(directory)
        backend = self.storage.configuration_backend
        backend.load()  # a backend writes only what it has loaded (here: nothing)
        backend.save(_configuration(user, self.directory))
        self.started = threading.Event()
        self.ended = threading.Event()
        center = NotificationCenter()
        center.add_observer(timeline)
        center.add_observer(lambda n: self.started.set(), name="SIPApplicationDidStart")
        center.add_observer(lambda n: self.ended.set(), name="SIPApplicationDidEnd")
        center.add_observer(self._stream_ending, name="MediaStreamWillEnd")

    def _stream_ending(self, notification: Notification) -> None:
        stream = notification.sender
        if isinstance(stream, DemoStream):
            self.timeline.line(f"{stream!r} received {stream.received}")
        elif isinstance(stream, AudioStream):
            for line in describe(stream):
                self.timeline.line(line)

    def start(self, timeout: float) -> bool:
        self.app.start(self.storage)
        if not self.started.wait(timeout):
            return False
        self.device = DummyDevice(tone=TONES[self.user], output_file=self.heard_file)
        mixer = SIPApplication.voice_audio_mixer
        assert mixer is not None
        mixer.set_sound_devices(None, None, device=self.device)
        return True

    @property
    def heard_file(self) -> Path:
        return self.directory / f"{self.user}-heard.wav"

    def stop(self, timeout: float) -> bool:
        """Stop; then tell which tone the speaker played (the device is closed by now)."""
        self.app.stop()
        if not self.ended.wait(timeout):
            return False
        device = self.device
        if device is not None and device.output_closed is not None:
            device.output_closed.result(timeout)
            frequency, level = dominant_frequency(self.heard_file)
            self.timeline.line(f"{self.user} heard {frequency:.0f} Hz at RMS {level:.0f}")
        return True

    @property
    def account(self) -> Any:
        return AccountManager().get_account(f"{self.user}@demo.invalid")


def demo(args: argparse.Namespace) -> int:
    start = time.time()
    timeline = Timeline("alice", start)
    print(f"sipsimple {__version__} demo: Alice (this process) calls Bob (a child process)")
    peer = subprocess.Popen(
        [sys.executable, "-m", "sipsimple.cli.main", "demo-peer", "--start", repr(start)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    ready: list[int] = []
    bob_ready = threading.Event()
    bob = Timeline("bob", start, lock=timeline.lock)
    reader = threading.Thread(target=_relay, args=(peer, bob, ready, bob_ready), daemon=True)
    reader.start()
    with tempfile.TemporaryDirectory(prefix="sipsimple-demo-") as directory:
        alice = _Endpoint("alice", directory, timeline)
        try:
            if not alice.start(args.timeout) or not bob_ready.wait(args.timeout) or not ready:
                print("an endpoint did not start in time", file=sys.stderr)
                return 1
            print(f"instance id {SIPSimpleSettings().instance_id}, Bob listens on UDP {ready[0]}")
            return _call(alice, ready[0], args)
        finally:
            alice.stop(args.timeout)
            _stop_peer(peer, args.timeout)
            reader.join(args.timeout)
            print("demo finished")


def _call(alice: _Endpoint, port: int, args: argparse.Namespace) -> int:
    timeout = args.timeout
    session = Session(alice.account)
    events: dict[str, threading.Event] = {
        name: threading.Event()
        for name in (
            "SIPSessionDidStart",
            "SIPSessionDidEnd",
            "ChatStreamGotMessage",
            "FileTransferStreamDidFinish",
        )
    }
    outcome: list[Notification] = []
    audio = AudioStream(alice.account)
    stream = DemoStream("hello from alice")
    chat = ChatStream(alice.account)
    note = alice.directory / "a note from alice.txt"
    note.write_text("Bob, here is the note I promised. \u2713\n" * 200, encoding="utf-8")
    selector = FileSelector.for_file(str(note), compute_hash=False)
    transfer = FileTransferStream(alice.account, selector)

    def watch(notification: Notification) -> None:
        outcome.append(notification)
        if notification.name == "SIPSessionDidFail":
            for event in events.values():
                event.set()
        elif notification.name in events:
            events[notification.name].set()

    center = NotificationCenter()
    for sender in (session, chat, transfer):
        center.add_observer(watch, sender=sender)
    target = ToHeader(SIPURI(user="bob", host="127.0.0.1", port=port))
    session.connect(target, [Route("127.0.0.1", port, "udp")], [audio, stream, chat, transfer])
    if not events["SIPSessionDidStart"].wait(timeout) or session.state != "connected":
        print("the session did not start", file=sys.stderr)
        return 1
    audio.start_recording()  # in audio.recordings_directory
    chat.send_message("Hello Bob! A file is on its way \u2709")
    time.sleep(args.duration / 2)  # the greetings cross, the tones play, the file goes
    audio.send_dtmf("5")
    time.sleep(args.duration / 2)
    waited = all(
        events[name].wait(timeout)
        for name in ("ChatStreamGotMessage", "FileTransferStreamDidFinish")
    )
    session.end()
    if not waited or not events["SIPSessionDidEnd"].wait(timeout):
        print("the chat, the file transfer or the session did not end in time", file=sys.stderr)
        return 1
    sent = [n for n in outcome if n.name == "FileTransferStreamDidFinish"]
    return 0 if stream.received and sent and not sent[0].data.error else 1


def _relay(
    peer: subprocess.Popen[str], timeline: Timeline, ready: list[int], bob_ready: threading.Event
) -> None:
    """Print Bob's timeline lines as they come; his first line says where he listens."""
    assert peer.stdout is not None
    for line in peer.stdout:
        kind, _, rest = line.rstrip("\n").partition(" ")
        if kind == "ready":
            ready.append(int(rest))
            bob_ready.set()
        elif kind == "at":
            at, _, text = rest.partition(" ")
            timeline.line(text, at=float(at))
    bob_ready.set()


def _stop_peer(peer: subprocess.Popen[str], timeout: float) -> None:
    try:
        if peer.stdin is not None:
            peer.stdin.close()
        peer.wait(timeout)
    except subprocess.TimeoutExpired:
        peer.kill()
        peer.wait()


class _PeerTimeline(Timeline):
    """Bob's timeline, written for Alice to print: ``at <time.time()> <text>``."""

    def line(self, text: str, at: float | None = None) -> None:
        with self.lock:
            print(f"at {time.time() if at is None else at!r} {text}", file=self.out, flush=True)


def demo_peer(args: argparse.Namespace) -> int:
    """Bob: answers every session (ring, then accept) until stdin closes."""
    timeline = _PeerTimeline("bob", args.start)
    with tempfile.TemporaryDirectory(prefix="sipsimple-demo-peer-") as directory:
        bob = _Endpoint("bob", directory, timeline)

        def answer(notification: Notification) -> None:
            session = notification.sender
            session.send_ring_indication()
            sip_loop().call_later(0.3, session.accept, session.proposed_streams)

        def reply(notification: Notification) -> None:
            notification.sender.send_message("Hi Alice, got it, thanks!")

        def record(notification: Notification) -> None:
            for stream in notification.sender.streams:
                if isinstance(stream, AudioStream):
                    stream.start_recording()

        center = NotificationCenter()
        center.add_observer(answer, name="SIPSessionNewIncoming")
        center.add_observer(reply, name="ChatStreamGotMessage")
        center.add_observer(record, name="SIPSessionDidStart")
        if not bob.start(args.timeout):
            return 1
        print(f"ready {Engine().udp_port}", flush=True)
        sys.stdin.read()  # until Alice closes it
        return 0 if bob.stop(args.timeout) else 1


def add_demo_parsers(commands: Any) -> None:
    """Add ``demo`` and ``demo-peer`` to the subparsers ``commands``."""
    demo_parser = commands.add_parser(
        "demo", help="two endpoints on this machine make a session; show what happens"
    )
    demo_parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait for each step"
    )
    demo_parser.add_argument("--duration", type=float, default=5.0, help="seconds the call lasts")
    demo_parser.set_defaults(handler=demo)
    peer_parser = commands.add_parser("demo-peer", help="the demo's second endpoint (internal)")
    peer_parser.add_argument("--timeout", type=float, default=10.0)
    peer_parser.add_argument("--start", type=float, default=0.0, help="the timeline's origin")
    peer_parser.set_defaults(handler=demo_peer)
