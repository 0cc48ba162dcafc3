"""`sipsimple`: command-line front end of the SDK.

``sipsimple demo`` is the README's main job: it runs the SDK on this machine with a
temporary configuration and prints what happened as a timeline of notifications.  In it
Alice (this process) calls Bob (a second SDK process it starts, ``sipsimple demo-peer``)
on 127.0.0.1: an audio session whose microphones are tones (a DummyDevice on each side),
recorded on both sides; it prints the codec, the SRTP and ICE state and the RTCP figures
of each side, and which tone each side heard.  Nothing leaves the machine: SIP and RTP
stay on 127.0.0.1, there is no DNS probe and no Bonjour.
"""

from __future__ import annotations

import argparse
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sipsimple import __version__
from sipsimple.account import AccountManager
from sipsimple.application import SIPApplication
from sipsimple.configuration.settings import SIPSimpleSettings
from sipsimple.core import SIPURI, Engine, ToHeader
from sipsimple.media.devices import DummyDevice
from sipsimple.notification import Notification, NotificationCenter
from sipsimple.session import Session
from sipsimple.storage import FileStorage
from sipsimple.streams import AudioStream
from sipsimple.util import Route

__all__ = ["main"]

DOMAIN = "example.test"
ALICE_TONE, BOB_TONE = 1000.0, 1500.0


class Timeline:
    """Prints every notification with the time since the timeline began."""

    def __init__(self, out=sys.stdout) -> None:
        self.out = out
        self.start = time.monotonic()

    def __call__(self, notification: Notification) -> None:
        fields = {k: v for k, v in vars(notification.data).items() if k != "timestamp"}
        details = " ".join(f"{key}={value!r}" for key, value in fields.items())
        sender = type(notification.sender).__name__
        elapsed = time.monotonic() - self.start
        print(f"{elapsed:8.3f}s  {notification.name:<32} {sender:<20} {details}", file=self.out)


class Waiter:
    """Notifications seen since it was made, for a thread that waits for them."""

    def __init__(self) -> None:
        self._seen: list[Notification] = []
        self._taken: set[int] = set()
        self._condition = threading.Condition()
        NotificationCenter().add_observer(self)

    def handle_notification(self, notification: Notification) -> None:
        with self._condition:
            self._seen.append(notification)
            self._condition.notify_all()

    def wait(self, *names: str, sender: object = None, timeout: float = 10.0) -> Notification:
        """The first notification not returned yet of one of ``names`` (from ``sender``)."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while True:
                for index, notification in enumerate(self._seen):
                    if index in self._taken or notification.name not in names:
                        continue
                    if sender is None or notification.sender is sender:
                        self._taken.add(index)
                        return notification
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {' or '.join(names)} within {timeout} s")
                self._condition.wait(left)

    def close(self) -> None:
        NotificationCenter().discard_observer(self)


def configuration(user: str, directory: Path) -> dict[str, Any]:
    """A loopback-only configuration with one account, user@example.test, unregistered."""
    return {
        "SIPSimpleSettings": {
            "local_ip": "127.0.0.1",
            "sip": {"transport_list": ["udp"]},
            "dns": {"probe_domain": None},
            "audio": {"recordings_directory": str(directory / "recordings")},
        },
        "Accounts": {
            "bonjour@local": {"enabled": "false"},
            f"{user}@{DOMAIN}": {"enabled": "true", "registration": {"enabled": "false"}},
        },
    }


def storage_for(user: str, directory: Path) -> FileStorage:
    storage = FileStorage(directory)
    backend = storage.configuration_backend
    backend.load()  # a backend writes only what it has loaded (here: nothing)
    backend.save(configuration(user, directory))
    return storage


def use_tone_device(tone: float, output: Path) -> DummyDevice:
    """The voice mixer's device: ``tone`` as the microphone, the speaker to ``output``."""
    device = DummyDevice(tone=tone, output_file=output)
    mixer = SIPApplication.voice_audio_mixer
    assert mixer is not None
    mixer.set_sound_devices(None, None, device=device)
    return device


def describe(stream: AudioStream) -> list[str]:
    """The negotiated media and the RTCP figures of a stream, as lines of text."""
    lines = [
        f"codec {stream.codec} at {stream.sample_rate} Hz; "
        f"SRTP {stream.srtp_cipher if stream.srtp_active else 'off'}; "
        f"ICE {'on' if stream.ice_active else 'off'}",
        f"RTP {stream.local_rtp_address}:{stream.local_rtp_port} -> "
        f"{stream.remote_rtp_address_received}:{stream.remote_rtp_port_received} "
        f"(SDP said {stream.remote_rtp_address_sdp}:{stream.remote_rtp_port_sdp})",
    ]
    statistics = stream.statistics
    if statistics is not None:
        rx, tx, rtt = statistics.rx, statistics.tx, statistics.rtt_ms
        lines.append(
            f"RTCP: received {rx.packets} packets, {rx.packets_lost} lost, "
            f"jitter {rx.jitter_ms:.1f} ms; sent {tx.packets} packets, peer reports "
            f"{tx.packets_lost} lost, jitter {tx.jitter_ms:.1f} ms; "
            + (
                f"round trip {rtt.mean:.2f} ms over {rtt.count}"
                if rtt.count
                else "no round trip yet"
            )
        )
    return lines


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


def report_heard(who: str, device: DummyDevice, path: Path, tone: float, timeout: float) -> None:
    if device.output_closed is not None:
        device.output_closed.result(timeout)
    frequency, level = dominant_frequency(path)
    print(
        f"{who} heard {frequency:.0f} Hz at RMS {level:.0f} (the other side's tone: {tone:.0f} Hz)"
    )


def run_application(
    user: str, directory: Path, timeout: float, body: Callable[[Waiter], int]
) -> int:
    """Start the SIPApplication for ``user``, run ``body``, stop it; the exit status."""
    waiter = Waiter()
    app = SIPApplication()
    app.start(storage_for(user, directory))
    try:
        waiter.wait("SIPApplicationDidStart", timeout=timeout)
    except TimeoutError:
        print("the application did not start in time", file=sys.stderr)
        app.stop()
        return 1
    try:
        status = body(waiter)
    finally:
        app.stop()
        try:
            waiter.wait("SIPApplicationDidEnd", timeout=timeout)
        except TimeoutError:
            print("the application did not stop in time", file=sys.stderr)
            status = 1
        waiter.close()
    return status


def demo(args: argparse.Namespace) -> int:
    NotificationCenter().add_observer(Timeline())
    with tempfile.TemporaryDirectory(prefix="sipsimple-demo-") as name:
        directory = Path(name)
        print(f"sipsimple {__version__} demo: configuration in {directory}")
        heard = directory / "alice-heard.wav"
        devices: list[DummyDevice] = []

        def call_bob(waiter: Waiter) -> int:
            settings = SIPSimpleSettings()
            print(f"instance id {settings.instance_id}, user agent {settings.user_agent!r}")
            devices.append(use_tone_device(ALICE_TONE, heard))
            return call_peer(args, directory, waiter)

        status = run_application("alice", directory, args.timeout, call_bob)
        if status == 0 and devices:
            report_heard("alice", devices[0], heard, BOB_TONE, args.timeout)
    print("demo finished")
    return status


def call_peer(args: argparse.Namespace, directory: Path, waiter: Waiter) -> int:
    """Start Bob, call him, talk for ``args.duration`` seconds, hang up; print both sides."""
    peer_directory = directory / "bob"
    peer_directory.mkdir()
    peer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sipsimple.cli.main",
            "demo-peer",
            str(peer_directory),
            "--timeout",
            str(args.timeout),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_read_lines, args=(peer, lines), daemon=True)
    reader.start()
    try:
        port = _ready_port(lines, args.timeout)
        if port is None:
            print("bob did not start in time", file=sys.stderr)
            return 1
        account = AccountManager().get_account(f"alice@{DOMAIN}")
        session = Session(account)
        stream = AudioStream(account)
        route = Route("127.0.0.1", port, "udp")
        session.connect(ToHeader(SIPURI(user="bob", host=DOMAIN)), [route], [stream])
        outcome = waiter.wait(
            "SIPSessionDidStart", "SIPSessionDidFail", sender=session, timeout=args.timeout
        )
        if outcome.name == "SIPSessionDidFail":
            print(f"the call failed: {outcome.data.failure_reason}", file=sys.stderr)
            return 1
        stream.start_recording(str(directory / "alice-call.wav"))
        time.sleep(args.duration / 2)
        stream.send_dtmf("5")
        time.sleep(args.duration / 2)
        print("alice's side of the call:")
        for line in describe(stream):
            print(f"  {line}")
        stream.stop_recording()
        session.end()
        waiter.wait("SIPSessionDidEnd", sender=session, timeout=args.timeout)
        peer.wait(args.timeout)
        return 0 if peer.returncode == 0 else 1
    finally:
        if peer.stdin is not None:
            peer.stdin.close()  # Bob stops when this closes
        try:
            peer.wait(args.timeout)
        except subprocess.TimeoutExpired:
            peer.kill()
            peer.wait()
        reader.join(args.timeout)
        while not lines.empty() and (line := lines.get_nowait()) is not None:
            print(f"  bob | {line}")


def _read_lines(peer: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
    assert peer.stdout is not None
    for line in peer.stdout:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def _ready_port(lines: queue.Queue[str | None], timeout: float) -> int | None:
    """Bob's SIP port from his "ready <port>" line; what he printed before it is shown."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            return None
        if line is None:
            return None
        if line.startswith("ready "):
            return int(line.split()[1])
        print(f"  bob | {line}")
    return None


def demo_peer(args: argparse.Namespace) -> int:
    """Bob: answers the first call, records it, prints what he got, ends with it."""
    directory = Path(args.directory)
    heard = directory / "bob-heard.wav"
    devices: list[DummyDevice] = []

    def observe(notification: Notification) -> None:
        name, sender = notification.name, notification.sender
        if name == "SIPSessionNewIncoming":
            sender.accept(sender.proposed_streams)
        elif name == "SIPSessionDidStart":
            sender.streams[0].start_recording(str(directory / "bob-call.wav"))
        elif name == "AudioStreamGotDTMF":
            print(f"got DTMF {notification.data.digit}", flush=True)
        elif name == "AudioStreamDidStartRecordingAudio":
            print(f"recording to {notification.data.filename}", flush=True)
        elif name == "SIPSessionWillEnd":
            print("bob's side of the call:")
            for line in describe(sender.streams[0]):
                print(f"  {line}", flush=True)

    def answer(waiter: Waiter) -> int:
        devices.append(use_tone_device(BOB_TONE, heard))
        NotificationCenter().add_observer(observe)
        print(f"ready {Engine().udp_port}", flush=True)
        stdin_closed = threading.Event()
        threading.Thread(target=lambda: (sys.stdin.read(), stdin_closed.set()), daemon=True).start()
        deadline = time.monotonic() + args.timeout * 3
        while not stdin_closed.is_set() and time.monotonic() < deadline:
            try:
                waiter.wait("SIPSessionDidEnd", "SIPSessionDidFail", timeout=0.2)
                return 0
            except TimeoutError:
                continue
        print("no call came", flush=True)
        return 1

    status = run_application("bob", directory, args.timeout, answer)
    if status == 0 and devices:
        report_heard("bob", devices[0], heard, ALICE_TONE, args.timeout)
    sys.stdout.flush()
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sipsimple", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"sipsimple {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser(
        "demo", help="run the SDK on this machine and show what happens"
    )
    demo_parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait for each step"
    )
    demo_parser.add_argument(
        "--duration", type=float, default=4.0, help="seconds the demo call lasts"
    )
    demo_parser.set_defaults(handler=demo)
    peer_parser = commands.add_parser("demo-peer")  # the callee of `demo`; not listed
    peer_parser.add_argument("directory")
    peer_parser.add_argument("--timeout", type=float, default=10.0)
    peer_parser.set_defaults(handler=demo_peer)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
