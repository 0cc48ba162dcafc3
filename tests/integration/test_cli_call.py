"""`sipsimple call` and `sipsimple listen` as programs calling each other directly on
127.0.0.1 (no server): audio, a chat line each way, a file; the ways a call ends (end
of input, --duration, SIGTERM) and fails (486, no answer, no account) with their exit
status. Both are configured with `sipsimple settings` only, in directories of their
own; their HOME stays empty."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.cli import Program, loopback_endpoint, sipsimple


@pytest.fixture(scope="module")
def place(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli-call")


@pytest.fixture(scope="module")
def home(place) -> Iterator[Path]:
    home = place / "home"
    home.mkdir()
    yield home
    assert list(home.iterdir()) == []  # nothing written outside the configuration dirs


@pytest.fixture(scope="module")
def endpoints(place, home) -> dict[str, Path]:
    configured = {}
    for user in ("alice", "bob"):
        configured[user] = place / user
        loopback_endpoint(home, configured[user], user)
    return configured


def listen(home: Path, config: Path, *options: str) -> tuple[Program, int]:
    program = Program(home, "listen", "--config-dir", str(config), *options)
    port = int(program.expect(r"listening on udp 127\.0\.0\.1:(\d+)").group(1))
    return program, port


def call(home: Path, config: Path, port: int, *options: str) -> Program:
    uri = f"sip:bob@127.0.0.1:{port}"
    return Program(home, "call", uri, "--config-dir", str(config), *options)


def rtcp_packets(output: str) -> list[int]:
    return [int(n) for n in re.findall(r"RTCP: received (\d+) packets", output)]


def test_a_call_with_audio_a_chat_both_ways_and_a_file(home, endpoints, place):
    note = place / "note for bob.txt"
    note.write_text("the minutes of the meeting \u2713\n" * 500, encoding="utf-8")
    bob, port = listen(home, endpoints["bob"], "--count", "1")
    with bob, call(home, endpoints["alice"], port, "--chat", "--file", str(note)) as alice:
        alice.expect(r"calling sip:bob@127\.0\.0\.1:\d+ as alice@example\.test with audio, chat")
        alice.expect("ringing")
        alice.expect(r"audio: codec opus at 48000 Hz, SRTP AE\S+, ICE off, to 127\.0\.0\.1:\d+")
        alice.expect("session started with audio, chat, file-transfer")
        bob.expect(r"incoming session from sip:alice@example\.test with audio, chat, file")
        alice.send("Hello Bob, the minutes follow")
        bob.expect(r"chat from .*alice@example\.test.*: Hello Bob, the minutes follow")
        bob.send("Thanks Alice!")
        alice.expect(r"chat from .*bob@example\.test.*: Thanks Alice!")
        time.sleep(1)  # a second of audio both ways, for the RTCP figures checked below
        alice.close_stdin()  # end of input: hang up, everything being sent
        alice.expect("hanging up: end of input")
        alice.expect(r"session ended by us \(user_request\)")
        assert alice.wait() == 0, alice.output + alice.stderr
        bob.expect(r"session ended by the peer \(user_request\)")
        assert bob.wait() == 0, bob.output + bob.stderr  # --count 1
    assert f"file sent: {note}" in alice.output
    received = endpoints["bob"] / "downloads" / note.name
    assert f"file received: {received} ({note.stat().st_size} bytes)" in bob.output
    assert received.read_bytes() == note.read_bytes()
    for program in (alice, bob):
        assert all(packets > 0 for packets in rtcp_packets(program.output)), program.output
        assert len(rtcp_packets(program.output)) == 1
        assert program.stderr == ""


def test_duration_and_sigterm_hang_up(home, endpoints):
    bob, port = listen(home, endpoints["bob"], "--count", "2", "--ring", "0")
    with bob:
        with call(home, endpoints["alice"], port, "--duration", "1") as alice:
            alice.close_stdin()  # with --duration, the end of input does not hang up
            alice.expect("session started with audio")
            alice.expect("hanging up: duration reached")
            assert alice.wait() == 0, alice.output + alice.stderr
        bob.expect("session ended by the peer")
        with call(home, endpoints["alice"], port) as alice:
            alice.expect("session started with audio")
            alice.stop()  # SIGTERM, like Ctrl-C
            assert alice.process.returncode == 0, alice.output + alice.stderr
            assert "hanging up: interrupted" in alice.output
        bob.expect("session ended by the peer")
        assert bob.wait() == 0


def test_a_rejected_call_fails_with_the_code(home, endpoints):
    bob, port = listen(home, endpoints["bob"], "--reject", "486", "--count", "1")
    with bob, call(home, endpoints["alice"], port, "--chat") as alice:
        assert alice.wait() == 1
        bob.expect("rejected with 486")
        assert bob.wait() == 0
    assert "session failed: 486 Busy Here (remote, Busy Here)" in alice.output
    assert (
        alice.stderr.strip() == "sipsimple call: session failed: 486 Busy Here (remote, Busy Here)"
    )


def test_no_answer_in_time_fails(home, endpoints):
    bob, port = listen(home, endpoints["bob"], "--ring", "60", "--count", "1")
    with bob, call(home, endpoints["alice"], port, "--timeout", "2") as alice:
        alice.expect("ringing")
        assert alice.wait() == 1
        bob.expect(r"session failed: .*\(remote, user_request\)")
        assert bob.wait() == 0
    assert "no answer within 2 s" in alice.output
    assert alice.stderr.strip() == "sipsimple call: no answer within 2 s"


def test_without_a_usable_account_the_call_is_refused(tmp_path, home, endpoints):
    config = str(tmp_path / "config-dir")
    for command in (
        ["set", "local_ip", "127.0.0.1", "--none", "dns.probe_domain"],
        ["account", "set", "bonjour@local", "enabled", "false"],
    ):
        assert sipsimple(home, "settings", "--config-dir", config, *command).returncode == 0
    result = sipsimple(home, "call", "sip:bob@127.0.0.1:9", "--config-dir", config)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("sipsimple call: no SIP account configured: add one with")
    alice = str(endpoints["alice"])
    result = sipsimple(home, "call", "bob", "--config-dir", alice, "--account", "carol@x.test")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "sipsimple call: no account carol@x.test" in result.stderr
