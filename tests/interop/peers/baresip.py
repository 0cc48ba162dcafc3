"""baresip 1.0 as a SIP user agent, driven over its ctrl_tcp socket (netstring JSON)."""

from __future__ import annotations

import json
import math
import re
import socket
import struct
import time
import uuid
import wave
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .ports import LOOPBACK, free_port, free_port_range
from .process import PeerProcess, PeerStartError, render_template, wait_for

SIP_TRANSPORTS = ("udp", "tcp", "tls")
MEDIA_ENCRYPTIONS = ("srtp", "srtp-mand", "srtp-mandf", "dtls_srtp")


class BaresipError(RuntimeError):
    """baresip refused a command, closed its control socket, or an event did not come."""


class Baresip(PeerProcess):
    """One baresip user agent with one account `username`@`domain`.

    The account goes through `proxy` (host, port) over `transport`; with
    `register` it registers there (auth_pass=`password`), and start() returns
    once the registrar accepted it (PeerStartError if not within start_timeout).
    Calls are answered at once (answermode=auto).  `audio_file` (a mono 16-bit
    WAV at `sample_rate`) is what it sends; by default a 440 Hz tone.
    Everything sent and received is recorded as WAV files in `recordings_dir`
    (see recordings()); by default that is in the peer's directory, which
    stop() removes: pass a directory of the test's own (tmp_path) to keep them.
    For transport="tls" give the registrar's `ca_file`; note that baresip 1.0
    registers even to a server with an expired or wrong-name certificate.
    """

    name = "baresip"

    def __init__(
        self,
        username: str,
        password: str,
        proxy: tuple[str, int],
        *,
        domain: str = "example.test",
        transport: str = "udp",
        register: bool = True,
        audio_codecs: Sequence[str] = ("PCMU/8000/1", "PCMA/8000/1"),
        mediaenc: str | None = None,
        answermode: str = "auto",
        audio_file: Path | None = None,
        sample_rate: int = 8000,
        contacts: Mapping[str, str] | None = None,
        account_params: Mapping[str, str] | None = None,
        recordings_dir: Path | None = None,
        ca_file: Path | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        super().__init__(start_timeout=start_timeout)
        if transport not in SIP_TRANSPORTS:
            raise ValueError(f"transport must be one of {SIP_TRANSPORTS}, not {transport!r}")
        if mediaenc is not None and mediaenc not in MEDIA_ENCRYPTIONS:
            raise ValueError(f"mediaenc must be None or one of {MEDIA_ENCRYPTIONS}")
        if answermode not in ("auto", "manual", "early"):
            raise ValueError(f"answermode must be auto, manual or early, not {answermode!r}")
        self.username = username
        self.password = password
        self.proxy = proxy
        self.domain = domain
        self.transport = transport
        self.register = register
        self.audio_codecs = tuple(audio_codecs)
        self.mediaenc = mediaenc
        self.answermode = answermode
        self.sample_rate = sample_rate
        self.audio_file = audio_file or self.directory / "tone.wav"
        self.contacts = dict(contacts or {})
        self.account_params = dict(account_params or {})
        # baresip listens for SIP over TLS on the port after sip_listen's: both are ours,
        # outside the kernel's ephemeral range (a TLS bind once failed with EADDRINUSE).
        self.sip_port = free_port_range(2)[0]
        self.ctrl_port = free_port()
        self.dns_port = free_port()  # nothing listens: any DNS query fails at once, locally
        self.rtp_ports = free_port_range(20)
        self.config_dir = self.directory / "config"
        self.ca_file = ca_file
        self.recordings_dir = recordings_dir or self.directory / "recordings"
        self.control: BaresipControl | None = None

    @property
    def aor(self) -> str:
        return f"sip:{self.username}@{self.domain}"

    @property
    def address(self) -> tuple[str, int]:
        return LOOPBACK, self.sip_port

    def account_line(self) -> str:
        host, port = self.proxy
        params = {
            "auth_pass": self.password,
            "outbound": f'"sip:{host}:{port};transport={self.transport}"',
            "answermode": self.answermode,
            "audio_codecs": ",".join(self.audio_codecs),
            "regint": "600" if self.register else "0",
            "mwi": "no",
            **({"mediaenc": self.mediaenc} if self.mediaenc else {}),
            **self.account_params,
        }
        options = "".join(f";{key}={value}" for key, value in params.items())
        return f"<{self.aor};transport={self.transport}>{options}"

    # -- PeerProcess

    def prepare(self) -> None:
        self.config_dir.mkdir()
        self.recordings_dir.mkdir(parents=True, exist_ok=True)
        if not self.audio_file.exists():
            write_tone(self.audio_file, seconds=30.0, sample_rate=self.sample_rate)
        low, high = self.rtp_ports
        config = render_template(
            "baresip-config",
            {
                "SIP_PORT": self.sip_port,
                "SIP_CAFILE": f"sip_cafile\t\t{self.ca_file}" if self.ca_file else "",
                "AUDIO_FILE": self.audio_file,
                "SAMPLE_RATE": self.sample_rate,
                "DIRECTORY": self.directory,
                "RTP_LOW": low,
                "RTP_HIGH": high,
                "DNS_PORT": self.dns_port,
                "CTRL_PORT": self.ctrl_port,
                "RECORDINGS": self.recordings_dir,
            },
        )
        (self.config_dir / "config").write_text(config)
        (self.config_dir / "accounts").write_text(self.account_line() + "\n")
        (self.config_dir / "contacts").write_text(
            "".join(f'"{name}" <{uri}>\n' for name, uri in self.contacts.items())
        )

    def command(self) -> list[str]:
        return ["baresip", "-f", str(self.config_dir), "-v"]

    def is_ready(self) -> bool:
        try:
            self.control = BaresipControl((LOOPBACK, self.ctrl_port))
        except OSError:
            return False
        return True

    def start(self) -> Baresip:
        super().start()
        if self.register and not wait_for(self.registered, self.start_timeout, interval=0.2):
            self._stop_process()
            log = self.log_tail()
            raise PeerStartError(
                f"baresip {self.aor} did not register at {self.proxy} within"
                f" {self.start_timeout:g} s\n--- log ---\n{log}"
            )
        return self

    def _stop_process(self) -> None:
        if self.control is not None:
            self.control.close()
            self.control = None
        super()._stop_process()

    # -- commands and events

    def _control(self) -> BaresipControl:
        if self.control is None:
            raise BaresipError("baresip is not running")
        return self.control

    def send_command(self, name: str, params: str = "", timeout: float = 5.0) -> str:
        """Run a baresip (menu) command; its text output.  BaresipError when it fails."""
        return self._control().command(name, params, timeout)

    def wait_event(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        """The next event of this type (e.g. "CALL_ESTABLISHED") not yet returned."""
        return self._control().wait_event(kind, timeout)

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event received so far, in order."""
        return self._control().poll()

    def registered(self) -> bool:
        """Whether baresip reports its account registered (the reginfo command)."""
        status = re.sub(r"\x1b\[[0-9;]*m", "", self.send_command("reginfo"))  # no colours
        return bool(re.search(r"\bOK\b", status))

    def dial(self, uri: str) -> str:
        return self.send_command("dial", uri)

    def accept(self) -> str:
        return self.send_command("accept")

    def hangup(self) -> str:
        return self.send_command("hangup")

    def send_dtmf(self, digits: str) -> str:
        """Send DTMF on the current call (RFC 4733 telephone-events)."""
        if not re.fullmatch(r"[0-9*#A-D]+", digits):
            raise ValueError(f"DTMF digits are 0-9, *, # and A-D, not {digits!r}")
        return self.send_command("sndcode", digits)

    def recordings(self) -> list[Path]:
        """The WAV files sndfile wrote: dump-<time>-<cname>=><peer>-enc.wav (sent) and -dec.wav."""
        return sorted(self.recordings_dir.glob("*.wav"))


class BaresipControl:
    """A client of baresip's ctrl_tcp module: netstring-framed JSON commands and events."""

    def __init__(self, address: tuple[str, int], connect_timeout: float = 1.0) -> None:
        self.sock = socket.create_connection(address, timeout=connect_timeout)
        self.events: list[dict[str, Any]] = []
        self._unread_events: list[dict[str, Any]] = []
        self._buffer = b""

    def close(self) -> None:
        self.sock.close()

    def command(self, name: str, params: str = "", timeout: float = 5.0) -> str:
        token = uuid.uuid4().hex[:12]
        body = json.dumps({"command": name, "params": params, "token": token}).encode()
        self.sock.sendall(b"%d:%s," % (len(body), body))
        deadline = time.monotonic() + timeout
        while True:
            message = self._receive(deadline)
            if message is None:
                raise BaresipError(f"no answer to baresip command {name!r} within {timeout:g} s")
            if message.get("response") and message.get("token") == token:
                if not message.get("ok"):
                    raise BaresipError(f"baresip command {name} {params!r}: {message.get('data')}")
                return str(message.get("data", ""))

    def wait_event(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for event in self._unread_events:
                if event.get("type") == kind:
                    self._unread_events.remove(event)
                    return event
            if self._receive(deadline) is None:
                seen = [event.get("type") for event in self.events]
                raise BaresipError(f"no baresip event {kind} within {timeout:g} s (seen: {seen})")

    def poll(self) -> list[dict[str, Any]]:
        """Read what arrived without waiting; every event received so far."""
        while self._receive(time.monotonic()) is not None:
            pass
        return list(self.events)

    def _receive(self, deadline: float) -> dict[str, Any] | None:
        """The next message (events are also kept in self.events); None at the deadline."""
        while True:
            frame = self._next_frame()
            if frame is not None:
                message = json.loads(frame)
                if message.get("event"):
                    self.events.append(message)
                    self._unread_events.append(message)
                return message
            # Past the deadline, one last look at what already arrived.
            self.sock.settimeout(max(deadline - time.monotonic(), 0.0))
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, BlockingIOError):
                return None
            if not data:
                raise BaresipError("baresip closed its control connection")
            self._buffer += data

    def _next_frame(self) -> bytes | None:
        length, colon, rest = self._buffer.partition(b":")
        if not colon:
            return None
        size = int(length)
        if len(rest) < size + 1:
            return None
        if rest[size : size + 1] != b",":
            raise BaresipError(f"bad netstring from baresip: {self._buffer[:80]!r}")
        self._buffer = rest[size + 1 :]
        return rest[:size]


def write_tone(
    path: Path, seconds: float = 5.0, frequency: float = 440.0, sample_rate: int = 8000
) -> Path:
    """A mono 16-bit WAV file holding a sine tone at half of full scale."""
    frames = int(seconds * sample_rate)
    step = 2 * math.pi * frequency / sample_rate
    samples = struct.pack(f"<{frames}h", *(int(16000 * math.sin(step * n)) for n in range(frames)))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(samples)
    return path
