"""The SIP transports against Kamailio 5.6: round trips over UDP, TCP and TLS, the size
rule, and the reason of each TLS failure with Kamailio's bad certificates.

Run as root in a loopback-only network namespace:
    unshare -n sh -c 'ip link set lo up; PYTHONPATH=src python -m pytest tests/interop -q'
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.test_sip_transport import Peer, make_request
from tests.interop.peers import Certificates, Kamailio, make_certificates

from sipsimple.core.sip.message import SIPRequest
from sipsimple.core.sip.uri import parse_uri
from sipsimple.core.transport import TLSError, TransportAddress, TransportFailure

pytestmark = pytest.mark.interop

TRANSPORTS = ("udp", "tcp", "tls")


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"), "example.test")


@pytest.fixture(scope="module")
def proxy(certificates: Certificates) -> Iterator[Kamailio]:
    with Kamailio(certificates=certificates) as kamailio:
        yield kamailio


def client(ca_file: Path) -> Peer:
    return Peer(ip_address="127.0.0.1", tls_port=0, tls_verify_server=True, tls_ca_file=ca_file)


def destination(proxy: Kamailio, transport: str) -> TransportAddress:
    return TransportAddress(transport, *proxy.address(transport))


def register(proxy: Kamailio) -> SIPRequest:
    tag = uuid.uuid4().hex
    return SIPRequest(
        "REGISTER",
        f"sip:{proxy.domain}",
        [
            ("Via", f"SIP/2.0/UDP placeholder;branch=z9hG4bK{tag}"),
            ("Max-Forwards", "70"),
            ("From", f"<sip:alice@{proxy.domain}>;tag={tag[:8]}"),
            ("To", f"<sip:alice@{proxy.domain}>"),
            ("Call-ID", tag),
            ("CSeq", "1 REGISTER"),
            ("Contact", "<sip:alice@127.0.0.1>"),
            ("Expires", "60"),
        ],
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_options_answered_over_each_transport(proxy: Kamailio, transport: str) -> None:
    async with client(proxy.ca_file) as peer:
        request = make_request()
        request.request_uri = parse_uri(proxy.uri(transport))
        used = await peer.manager.send(
            request, destination(proxy, transport), server_name=proxy.domain
        )
        assert used.transport == transport
        response, source = await peer.receive(5)
        assert response.code == 200, proxy.log_tail()
        assert response.call_id == request.call_id
        assert source == destination(proxy, transport)
        if transport != "udp":
            assert source.connection is used.connection
        # Kamailio filled in where it saw us come from (RFC 3581).
        assert peer.manager.mapped_address(destination(proxy, transport)) == used.local


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_register_without_credentials_is_challenged(proxy: Kamailio, transport: str) -> None:
    async with client(proxy.ca_file) as peer:
        request = register(proxy)
        await peer.manager.send(request, destination(proxy, transport), server_name=proxy.domain)
        response, _ = await peer.receive(5)
        assert response.code == 401, proxy.log_tail()
        assert "WWW-Authenticate" in response.headers
        assert response.top_via.transport == transport.upper()


async def test_large_request_goes_over_tcp(proxy: Kamailio) -> None:
    async with client(proxy.ca_file) as peer:
        request = make_request(extra=[("X-Padding", "p" * 1400)])
        request.request_uri = parse_uri(proxy.uri("udp"))
        used = await peer.manager.send(request, destination(proxy, "udp"))
        assert used.transport == "tcp"
        response, source = await peer.receive(5)
        assert response.code == 200, proxy.log_tail()
        assert source.transport == "tcp" and response.top_via.transport == "TCP"


@pytest.mark.parametrize(
    ("server_cert", "failure", "text"),
    [
        ("expired", TransportFailure.CERTIFICATE_EXPIRED, "certificate has expired"),
        ("wrong_name", TransportFailure.NAME_MISMATCH, "Hostname mismatch"),
    ],
)
async def test_tls_failure_reasons(
    certificates: Certificates, server_cert: str, failure: TransportFailure, text: str
) -> None:
    with Kamailio(certificates=certificates, server_cert=server_cert) as kamailio:
        async with client(kamailio.ca_file) as peer:
            with pytest.raises(TLSError) as info:
                await peer.manager.send(
                    make_request(), destination(kamailio, "tls"), server_name=kamailio.domain
                )
            assert peer.manager.connections == []
    assert info.value.failure is failure
    assert text in str(info.value) and str(destination(kamailio, "tls")) in str(info.value)


async def test_tls_unknown_ca(proxy: Kamailio, tmp_path: Path) -> None:
    stranger = make_certificates(tmp_path, proxy.domain)
    async with client(stranger.ca_cert) as peer:
        with pytest.raises(TLSError) as info:
            await peer.manager.send(
                make_request(), destination(proxy, "tls"), server_name=proxy.domain
            )
    assert info.value.failure is TransportFailure.UNKNOWN_CA
    # Kamailio sends the CA with its certificate: OpenSSL says the chain's root is unknown.
    assert info.value.verify_code == 19
    assert "self-signed certificate in certificate chain" in str(info.value)
