"""The interop harness works: each peer proven against another real peer.

Run as root in a loopback-only network namespace:
    unshare -n sh -c 'ip link set lo up; PYTHONPATH=src python -m pytest tests/interop -q'
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from aioice.turn import create_turn_endpoint
from cryptography import x509
from tests.interop.peers import (
    LOOPBACK,
    Baresip,
    Certificates,
    Coturn,
    Kamailio,
    PeerStartError,
    Sipp,
    make_certificates,
    scenario_file,
    stun_binding,
    wait_for,
    write_tone,
)
from tests.interop.peers.kamailio import options_request

pytestmark = pytest.mark.interop

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def proxy() -> Iterator[Kamailio]:
    """A Kamailio with digest authentication, shared by the tests that add their own users."""
    with Kamailio() as kamailio:
        yield kamailio


def tls_options(kamailio: Kamailio, server_name: str) -> bytes:
    """Send OPTIONS over TLS, verifying the certificate with the test CA; the reply's first line."""
    context = ssl.create_default_context(cafile=kamailio.ca_file)
    with (
        socket.create_connection(kamailio.address("tls"), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        tls.sendall(options_request(kamailio.address("tls"), tls.getsockname(), "TLS"))
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = tls.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.split(b"\r\n", 1)[0]


def dominant_frequency(path: Path) -> tuple[float, float]:
    """(frequency in Hz with the most energy, RMS level) of a mono 16-bit WAV file."""
    with wave.open(str(path)) as recording:
        rate = recording.getframerate()
        samples = np.frombuffer(recording.readframes(recording.getnframes()), dtype="<i2")
    if samples.size == 0:
        return 0.0, 0.0
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    frequencies = np.fft.rfftfreq(samples.size, 1 / rate)
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
    return float(frequencies[int(np.argmax(spectrum))]), rms


# -- Kamailio with SIPp


def test_sipp_uac_calls_sipp_uas_through_kamailio_with_record_route() -> None:
    with Kamailio(auth=False) as kamailio, Sipp("uas") as uas:
        kamailio.add_contact("service", uas.contact())
        caller = Sipp("uac", kamailio.address(), calls=3, rate=20, call_duration_ms=100)
        result = caller.run()
        assert result.ok, result.describe()
        assert (result.created, result.successful, result.failed) == (3, 3, 0)
        answered = uas.finish()
    assert (answered.successful, answered.failed) == (3, 0), answered.describe()
    record_route = f"Record-Route: <sip:{LOOPBACK}:{kamailio.sip_port};lr>"
    assert record_route in answered.messages, answered.describe()


def test_sipp_call_to_unknown_user_fails_with_404(proxy: Kamailio) -> None:
    result = Sipp("uac", proxy.address(), service="nobody", timeout=5).run()
    assert (result.returncode, result.successful, result.failed) == (1, 0, 1), result.describe()
    assert "SIP/2.0 404 Not Found" in result.messages
    assert f"c=IN IP4 {LOOPBACK}" in result.messages  # SIPp's media address too


def test_kamailio_relays_only_to_loopback(proxy: Kamailio) -> None:
    proxy.add_contact("faraway", "sip:faraway@192.0.2.1:5060")  # TEST-NET-1: never reached
    result = Sipp("uac", proxy.address(), service="faraway", timeout=5).run()
    assert (result.returncode, result.failed) == (1, 1), result.describe()
    assert "SIP/2.0 403 Loopback only" in result.messages, result.describe()


def test_sipp_registers_with_digest_authentication(proxy: Kamailio) -> None:
    proxy.add_user("carol", "right-password")
    register = Sipp(
        scenario_file("register"),
        proxy.address(),
        service="carol",
        auth_username="carol",
        auth_password="right-password",
        keys={"domain": proxy.domain},
        timeout=5,
    )
    result = register.run()
    assert result.ok and result.successful == 1, result.describe()
    contact = f"sip:carol@{LOOPBACK}:{register.port};transport=udp"
    assert [uri.lower() for uri in proxy.contacts("carol")] == [contact]


def test_sipp_register_with_a_wrong_password_is_refused(proxy: Kamailio) -> None:
    proxy.add_user("dave", "right-password")
    result = Sipp(
        scenario_file("register"),
        proxy.address(),
        service="dave",
        auth_username="dave",
        auth_password="wrong-password",
        keys={"domain": proxy.domain},
        timeout=5,
    ).run()
    assert (result.returncode, result.successful, result.failed) == (1, 0, 1), result.describe()
    assert "SIP/2.0 401" in result.errors, result.describe()  # the second challenge
    assert proxy.contacts("dave") == []


def test_options_over_tcp_answered(proxy: Kamailio) -> None:
    result = Sipp(scenario_file("options"), proxy.address("tcp"), transport="tcp", timeout=5).run()
    assert result.ok and result.successful == 1, result.describe()


@pytest.mark.parametrize("server_name", ["example.test", "localhost", "127.0.0.1"])
def test_options_over_tls_answered_with_a_certificate_the_ca_vouches_for(
    proxy: Kamailio, server_name: str
) -> None:
    assert tls_options(proxy, server_name) == b"SIP/2.0 200 OK", proxy.log_tail()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("pki"))


def test_certificates_name_the_server_and_chain_to_the_ca(certificates: Certificates) -> None:
    server = x509.load_pem_x509_certificate(certificates.server.cert.read_bytes())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["example.test", "localhost"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    ca = x509.load_pem_x509_certificate(certificates.ca_cert.read_bytes())
    for pair in (certificates.server, certificates.expired, certificates.wrong_name):
        x509.load_pem_x509_certificate(pair.cert.read_bytes()).verify_directly_issued_by(ca)


@pytest.mark.parametrize(
    ("server_cert", "reason"),
    [("expired", "certificate has expired"), ("wrong_name", "mismatch")],
)
def test_bad_server_certificates_are_refused_by_a_verifying_client(
    certificates: Certificates, server_cert: str, reason: str
) -> None:
    with (
        Kamailio(server_cert=server_cert, certificates=certificates) as kamailio,
        pytest.raises(ssl.SSLCertVerificationError, match=reason),
    ):
        tls_options(kamailio, "example.test")


# -- coturn


def test_stun_binding_answered_by_coturn() -> None:
    with Coturn() as turn:
        mapped, local = stun_binding(turn.address)
    assert mapped == local


async def test_turn_allocation_relays_to_a_loopback_peer() -> None:
    class Receiver(asyncio.DatagramProtocol):
        def __init__(self) -> None:
            self.received: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            self.received.put_nowait((data, addr))

    with Coturn(users={"turnuser": "turnpass"}) as turn:
        loop = asyncio.get_running_loop()
        relay, _ = await create_turn_endpoint(
            asyncio.DatagramProtocol, turn.address, "turnuser", "turnpass", lifetime=60
        )
        peer_transport, peer = await loop.create_datagram_endpoint(
            Receiver, local_addr=(LOOPBACK, 0)
        )
        try:
            relayed = relay.get_extra_info("sockname")
            low, high = turn.relay_ports
            assert relayed[0] == LOOPBACK and low <= relayed[1] <= high
            relay.sendto(b"through the relay", peer_transport.get_extra_info("sockname"))
            data, source = await asyncio.wait_for(peer.received.get(), 5)
            assert (data, source) == (b"through the relay", relayed)
        finally:
            relay.close()
            peer_transport.close()


async def test_turn_allocation_with_a_wrong_password_is_refused() -> None:
    with Coturn(users={"turnuser": "turnpass"}) as turn, pytest.raises(Exception, match="401"):
        await create_turn_endpoint(
            asyncio.DatagramProtocol, turn.address, "turnuser", "wrong", lifetime=60
        )


# -- baresip


def test_baresip_registers_and_answers_a_sipp_call(proxy: Kamailio, tmp_path: Path) -> None:
    proxy.add_user("erin", "erin-password")
    with Baresip("erin", "erin-password", proxy.address(), recordings_dir=tmp_path) as erin:
        contacts = proxy.contacts("erin")
        assert len(contacts) == 1 and f"@{LOOPBACK}:{erin.sip_port}" in contacts[0], contacts
        result = Sipp("uac", proxy.address(), service="erin", call_duration_ms=300).run()
        assert result.ok and result.successful == 1, result.describe()
        erin.wait_event("CALL_CLOSED")
        assert [event["type"] for event in erin.events if event["type"].startswith("CALL_E")] == [
            "CALL_ESTABLISHED"
        ]
        sent = [path for path in erin.recordings() if path.name.endswith("-enc.wav")]
    assert len(sent) == 1 and dominant_frequency(sent[0])[0] == pytest.approx(440, abs=5)


def test_baresip_registers_over_tls(proxy: Kamailio) -> None:
    proxy.add_user("ivan", "ivan-password")
    with Baresip(
        "ivan", "ivan-password", proxy.address("tls"), transport="tls", ca_file=proxy.ca_file
    ) as ivan:
        contacts = proxy.contacts("ivan")
        assert "{0/TLS/v4} 200 OK" in ivan.log_text(), ivan.log_tail()
    assert len(contacts) == 1 and contacts[0].endswith(";transport=tls"), contacts


def test_kamailio_relays_a_message_to_a_registered_baresip(proxy: Kamailio) -> None:
    proxy.add_user("heidi", "heidi-password")
    with Baresip("heidi", "heidi-password", proxy.address()):
        result = Sipp(
            scenario_file("message"),
            proxy.address(),
            service="heidi",
            keys={"text": "hello through the proxy"},
            timeout=5,
        ).run()
    assert result.ok and result.successful == 1, result.describe()
    answer = result.messages.split("SIP/2.0 200 OK", 1)[1]
    assert "Server: baresip" in answer, result.describe()


def test_baresip_calls_baresip_over_udp_and_tcp_with_srtp_and_dtmf(
    proxy: Kamailio, tmp_path: Path
) -> None:
    proxy.add_user("frank", "frank-password")
    proxy.add_user("grace", "grace-password")
    with (
        Baresip(
            "frank",
            "frank-password",
            proxy.address("udp"),
            mediaenc="srtp-mand",
            audio_file=write_tone(tmp_path / "frank.wav", frequency=500),
        ) as frank,
        Baresip(
            "grace",
            "grace-password",
            proxy.address("tcp"),
            transport="tcp",
            mediaenc="srtp-mand",
            audio_codecs=("PCMA/8000/1",),
            audio_file=write_tone(tmp_path / "grace.wav", frequency=1000),
        ) as grace,
    ):
        frank.dial(f"sip:grace@{proxy.domain}")
        grace.wait_event("CALL_ESTABLISHED")
        frank.wait_event("CALL_ESTABLISHED")
        time.sleep(0.5)
        frank.send_dtmf("7#")
        digits = [grace.wait_event("CALL_DTMF_START")["param"] for _ in "7#"]
        frank.hangup()
        grace.wait_event("CALL_CLOSED")
        received = {
            name: next(p for p in peer.recordings() if p.name.endswith("-dec.wav"))
            for name, peer in (("frank", frank), ("grace", grace))
        }
        heard = {name: dominant_frequency(path) for name, path in received.items()}
        assert "SRTP is Enabled" in grace.log_text(), grace.log_tail()
    assert digits == ["7", "#"]
    assert heard["grace"][0] == pytest.approx(500, abs=10), heard  # frank's tone, decrypted
    assert heard["frank"][0] == pytest.approx(1000, abs=10), heard
    assert min(rms for _, rms in heard.values()) > 1000, heard


# -- the harness itself


def test_a_peer_that_cannot_start_raises_with_its_log() -> None:
    kamailio = Kamailio(auth=False, start_timeout=5)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind((LOOPBACK, kamailio.sip_port))
        with pytest.raises(PeerStartError) as failure:
            kamailio.start()
    message = str(failure.value)
    assert "kamailio exited with code" in message
    assert "Address already in use" in message, message
    kamailio.stop()


def test_stop_kills_every_process_of_the_peer() -> None:
    kamailio = Kamailio(auth=False, workers=2).start()
    group = kamailio.process.pid
    # main, UDP and TCP workers, timers, ctl ... (some forked after it answers)
    assert wait_for(lambda: len(_process_group(group)) > 6, 5), _process_group(group)
    kamailio.stop()
    assert _process_group(group) == []
    assert not kamailio.directory.exists()


@pytest.mark.parametrize("ending", ["returns", "is killed"])
def test_peers_die_with_the_python_process(ending: str) -> None:
    script = textwrap.dedent(
        """
        import sys, time
        from tests.interop.peers import Kamailio
        kamailio = Kamailio(auth=False).start()
        print(kamailio.process.pid, kamailio.directory.parent, flush=True)
        if sys.argv[1] == "is killed":
            time.sleep(60)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, ending],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    pid, root = child.stdout.readline().split()
    group = int(pid)
    if ending == "is killed":
        # (A child that returns may already have cleaned up by the time we look.)
        assert _process_group(group)
        child.send_signal(signal.SIGKILL)
    child.wait(10)
    assert wait_for(lambda: not _process_group(group), 5), _process_group(group)
    if ending == "returns":
        assert not Path(root).exists()  # atexit removed the peers' directories too
    shutil.rmtree(root, ignore_errors=True)


def _process_group(pgid: int) -> list[int]:
    """The live (not zombie) processes whose process group is `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":
            members.append(int(entry.name))
    return members
