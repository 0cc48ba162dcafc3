"""`sipsimple call` and `sipsimple listen` with accounts registered at Kamailio 5.6:
the listener registers, the caller reaches it by its address of record through the
proxy (digest authentication, record-routing) with audio, a chat line each way and a
file; an unknown user gets 404 from the proxy, SIPp's 486 fails a direct call. The
endpoints are configured with `sipsimple settings` only. Run as root inside a
loopback-only network namespace:

    unshare -n sh -c 'ip link set lo up;
        PYTHONPATH=src python -m pytest tests/interop/test_cli_kamailio.py -q'
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.interop.peers import Kamailio, Sipp
from tests.support.cli import Program, loopback_endpoint, sipsimple

pytestmark = pytest.mark.interop

DOMAIN = "example.test"
SCENARIOS = Path(__file__).parent / "scenarios"


@pytest.fixture(scope="module")
def proxy() -> Iterator[Kamailio]:
    with Kamailio(domain=DOMAIN) as kamailio:
        kamailio.add_user("alice", "alice-secret")
        kamailio.add_user("bob", "bob-secret")
        yield kamailio


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("cli-kamailio-home")
    yield home
    assert list(home.iterdir()) == []  # nothing written outside the configuration dirs


@pytest.fixture(scope="module")
def endpoints(proxy, home, tmp_path_factory) -> dict[str, Path]:
    place = tmp_path_factory.mktemp("cli-kamailio")
    host, port = proxy.address("udp")
    configured = {}
    for user in ("alice", "bob"):
        configured[user] = place / user
        loopback_endpoint(
            home,
            configured[user],
            user,
            register=True,
            outbound_proxy=f"{host}:{port};transport=udp",
            password=f"{user}-secret",
        )
    # A second account of Alice's for calls without the proxy.
    result = sipsimple(
        home,
        "settings",
        "--config-dir",
        str(configured["alice"]),
        "account",
        "add",
        "direct@example.test",
        "--no-register",
    )
    assert result.returncode == 0, result.stderr
    return configured


def test_a_call_through_the_proxy_between_registered_accounts(home, endpoints, tmp_path):
    note = tmp_path / "agenda.txt"
    note.write_bytes(bytes(range(256)) * 400)
    bob = Program(home, "listen", "--config-dir", str(endpoints["bob"]), "--count", "1")
    with bob:
        bob.expect(r"registered bob@example\.test for \d+ s at ")
        alice = Program(
            home, "call", "bob", "--config-dir", str(endpoints["alice"]), "--chat", "--file",
            str(note),
        )  # fmt: skip
        with alice:
            alice.expect(r"calling sip:bob@example\.test as alice@example\.test")
            alice.expect("ringing")
            alice.expect(r"audio: codec \S+ at \d+ Hz, SRTP AE\S+")
            alice.expect("session started with audio, chat, file-transfer")
            bob.expect(r"incoming session from sip:alice@example\.test")
            bob.expect(rf"file received: .*{note.name} \({note.stat().st_size} bytes\)")
            alice.send("Is the agenda fine?")
            bob.expect(r"chat from .*alice@example\.test.*: Is the agenda fine\?")
            bob.send("Yes, thank you.")
            alice.expect(r"chat from .*bob@example\.test.*: Yes, thank you\.")
            # Give the audio a second both ways before hanging up: the chat and the file
            # may all be over within the first packets' time on a busy machine.
            time.sleep(1.0)
            alice.close_stdin()
            alice.expect(r"session ended by us \(user_request\)")
            assert alice.wait() == 0, alice.output + alice.stderr
        bob.expect(r"session ended by the peer \(user_request\)")
        assert bob.wait() == 0, bob.output + bob.stderr
    assert (endpoints["bob"] / "downloads" / note.name).read_bytes() == note.read_bytes()
    assert f"file sent: {note}" in alice.output
    assert "RTCP: received 0 packets" not in alice.output + bob.output


def test_an_unknown_user_gets_404_from_the_proxy(home, endpoints):
    config = str(endpoints["alice"])
    result = sipsimple(home, "call", "sip:nobody@example.test", "--config-dir", config)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "session failed: 404 Not Found" in result.stdout
    assert result.stderr.startswith("sipsimple call: session failed: 404 Not Found")


def test_a_busy_sipp_fails_the_call_with_486(home, endpoints):
    # Over TCP: our INVITE with audio is too large for UDP (RFC 3261 section 18.1.1).
    with Sipp(SCENARIOS / "uas-486.xml", transport="tcp", calls=1, timeout=30) as uas:
        host, port = uas.address
        result = sipsimple(
            home,
            "call",
            f"sip:service@{host}:{port};transport=tcp",
            "--config-dir",
            str(endpoints["alice"]),
            "--account",
            "direct@example.test",
        )
        assert uas.finish().ok
    assert result.returncode == 1, result.stdout + result.stderr
    assert "ringing" in result.stdout
    assert "session failed: 486 Busy Here (remote, Busy Here)" in result.stdout
    assert "sipsimple call: session failed: 486 Busy Here" in result.stderr
