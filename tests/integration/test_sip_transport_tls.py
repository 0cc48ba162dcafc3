"""TLS: server verification, client certificates, and the reason of every failure.

Run inside a loopback-only network namespace (see test_sip_transport.py).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
from tests.integration.test_sip_transport import DOMAIN, Peer, make_request, tls_settings
from tests.interop.peers.certs import WRONG_NAME, Certificates, make_certificates

from sipsimple.core.transport import (
    TLSError,
    TransportAddress,
    TransportError,
    TransportFailure,
    TransportManager,
    TransportSettings,
)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"), DOMAIN)


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("other"), DOMAIN)


def server(certificates: Certificates, kind: str = "valid") -> Peer:
    pair = certificates.server_pair(kind)
    return Peer(
        200,
        tls_port=0,
        ip_address="127.0.0.1",
        tls_cert_file=pair.cert,
        tls_privkey_file=pair.key,
    )


def client(ca_file: Path | None, **extra: Any) -> Peer:
    return Peer(
        tls_port=0,
        ip_address=("127.0.0.1", "::1"),
        tls_verify_server=True,
        tls_ca_file=ca_file,
        **extra,
    )


async def tls_failure(a: Peer, destination: TransportAddress, **kwargs: Any) -> TLSError:
    with pytest.raises(TLSError) as info:
        await a.manager.send(make_request(), destination, **kwargs)
    return info.value


async def test_verified_server_by_domain_and_by_ip(certificates: Certificates) -> None:
    async with server(certificates) as b, client(certificates.ca_cert) as a:
        used = await a.manager.send(make_request(), b.address("tls"), server_name=DOMAIN)
        assert used.connection is not None and used.connection.server_name == DOMAIN
        await a.receive()
        # Without a server name the IP address is checked (the certificate names 127.0.0.1).
        by_ip = await a.manager.send(make_request(), b.address("tls"))
        assert by_ip.connection is not used.connection  # verified for another name
        assert by_ip.connection is not None and by_ip.connection.server_name == "127.0.0.1"
        await a.receive()
        again = await a.manager.send(make_request(), b.address("tls"), server_name=DOMAIN)
        assert again.connection is used.connection


async def test_expired_certificate(certificates: Certificates) -> None:
    async with server(certificates, "expired") as b, client(certificates.ca_cert) as a:
        error = await tls_failure(a, b.address("tls"), server_name=DOMAIN)
        assert error.failure is TransportFailure.CERTIFICATE_EXPIRED
        assert error.verify_code == 10 and "expired" in str(error)
        assert str(b.address("tls")) in str(error)
        assert a.manager.connections == [] and a.events == []


async def test_wrong_name(certificates: Certificates) -> None:
    async with server(certificates, "wrong_name") as b, client(certificates.ca_cert) as a:
        error = await tls_failure(a, b.address("tls"), server_name=DOMAIN)
        assert error.failure is TransportFailure.NAME_MISMATCH
        assert "mismatch" in str(error) and repr(DOMAIN) in str(error)
        # The same certificate passes when its own name is the one asked for.
        await a.manager.send(make_request(), b.address("tls"), server_name=WRONG_NAME)
        await a.receive()


async def test_unknown_ca(certificates: Certificates, other_ca: Certificates) -> None:
    async with server(certificates) as b, client(other_ca.ca_cert) as a:
        error = await tls_failure(a, b.address("tls"), server_name=DOMAIN)
        assert error.failure is TransportFailure.UNKNOWN_CA
        assert "unable to get local issuer certificate" in str(error)
    # The system store does not know the test CA either.
    async with server(certificates) as b, client(None) as a:
        error = await tls_failure(a, b.address("tls"), server_name=DOMAIN)
        assert error.failure is TransportFailure.UNKNOWN_CA


async def test_verification_off_accepts_any_certificate(certificates: Certificates) -> None:
    async with server(certificates, "expired") as b, Peer(tls_port=0) as a:
        await a.manager.send(make_request(), b.address("tls"), server_name=DOMAIN)
        response, _ = await a.receive()
        assert response.code == 200


async def test_handshake_timeout(certificates: Certificates) -> None:
    async with client(certificates.ca_cert, tls_timeout=0.3) as a:
        with socket.socket() as mute:  # accepts TCP (in the kernel) and never speaks TLS
            mute.bind(("127.0.0.1", 0))
            mute.listen(5)
            destination = TransportAddress("tls", "127.0.0.1", mute.getsockname()[1])
            error = await tls_failure(a, destination)
            assert error.failure is TransportFailure.HANDSHAKE_TIMEOUT
            assert "0.3 s" in str(error)


async def test_handshake_with_a_plain_tcp_peer_fails(certificates: Certificates) -> None:
    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)  # the ClientHello
        writer.write(b"SIP/2.0 400 Bad Request\r\n\r\n")
        await writer.drain()

    plain_server = await asyncio.start_server(plain, "127.0.0.1", 0)
    port = plain_server.sockets[0].getsockname()[1]
    try:
        async with client(certificates.ca_cert) as a:
            error = await tls_failure(a, TransportAddress("tls", "127.0.0.1", port))
            assert error.failure is TransportFailure.HANDSHAKE_FAILED
            assert error.verify_code is None and "WRONG_VERSION_NUMBER" in str(error).upper()
    finally:
        plain_server.close()


async def test_client_certificate_is_shown(certificates: Certificates) -> None:
    seen: list[Any] = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=certificates.ca_cert)
    context.load_cert_chain(certificates.server.cert, certificates.server.key)
    context.verify_mode = ssl.CERT_REQUIRED

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(writer.get_extra_info("peercert"))
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    tls_server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    port = tls_server.sockets[0].getsockname()[1]
    try:
        extra = {
            "tls_cert_file": certificates.client.cert,
            "tls_privkey_file": certificates.client.key,
        }
        async with client(certificates.ca_cert, **extra) as a:
            await a.manager.send(make_request(), TransportAddress("tls", "127.0.0.1", port))
            for _ in range(50):
                if seen:
                    break
                await asyncio.sleep(0.02)
        subject = dict(item[0] for item in seen[0]["subject"])
        assert subject["commonName"] == f"client.{DOMAIN}"
    finally:
        tls_server.close()


async def test_bad_certificate_files_are_reported(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    manager = TransportManager(
        TransportSettings(tls_port=0, tls_cert_file=missing, tls_privkey_file=missing),
        lambda *args: None,
    )
    with pytest.raises(TransportError) as info:
        await manager.start()
    assert info.value.failure is TransportFailure.TLS_CONFIGURATION
    assert "missing.pem" in str(info.value)
    assert not manager.is_running


async def test_both_families(certificates: Certificates) -> None:
    async with Peer(200, **tls_settings(certificates)) as b, client(certificates.ca_cert) as a:
        await a.manager.send(make_request("::1"), b.address("tls", "::1"), server_name="localhost")
        response, source = await a.receive()
        assert response.code == 200 and source.host == "::1"
        # ::1 is not in the certificate: checked by address, it is a name mismatch.
        error = await tls_failure(a, b.address("tls", "::1"))
        assert error.failure is TransportFailure.NAME_MISMATCH
