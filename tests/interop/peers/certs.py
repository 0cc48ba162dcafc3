"""A throw-away test PKI: a CA, a good server certificate, and bad ones for failure tests.

Keys are EC P-256 (instant to make).  The server certificate names
127.0.0.1, localhost and the test domain; `expired` has the same names but
ran out yesterday; `wrong_name` is valid but names only wrong-name.invalid;
`client` is a CA-signed client certificate for mutual TLS.  All are PEM files.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

WRONG_NAME = "wrong-name.invalid"
SERVER_KINDS = ("valid", "expired", "wrong_name")


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Certificates:
    directory: Path
    ca_cert: Path
    ca_key: Path
    server: CertPair
    expired: CertPair
    wrong_name: CertPair
    client: CertPair

    def server_pair(self, kind: str) -> CertPair:
        """The server certificate of this kind: "valid", "expired" or "wrong_name"."""
        if kind not in SERVER_KINDS:
            raise ValueError(f"server certificate kind must be one of {SERVER_KINDS}, not {kind!r}")
        return {"valid": self.server, "expired": self.expired, "wrong_name": self.wrong_name}[kind]


def make_certificates(directory: Path, domain: str = "example.test") -> Certificates:
    """Write a CA and its server/client certificates into `directory` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sipsimple test CA")])
    ca_cert = (
        _builder(ca_name, ca_name, ca_key, now - datetime.timedelta(days=1), now + _YEAR)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_cert_path = _write_cert(directory / "ca.crt", ca_cert)
    ca_key_path = _write_key(directory / "ca.key", ca_key)

    def issue(
        stem: str,
        names: list[str],
        not_before: datetime.datetime,
        not_after: datetime.datetime,
        usage: x509.ObjectIdentifier,
    ) -> CertPair:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
        cert = (
            _builder(subject, ca_cert.subject, key, not_before, not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
            .sign(ca_key, hashes.SHA256())
        )
        return CertPair(
            _write_cert(directory / f"{stem}.crt", cert), _write_key(directory / f"{stem}.key", key)
        )

    server_names = [domain, "localhost", "127.0.0.1"]
    valid_from, valid_to = now - datetime.timedelta(days=1), now + _YEAR
    return Certificates(
        directory=directory,
        ca_cert=ca_cert_path,
        ca_key=ca_key_path,
        server=issue("server", server_names, valid_from, valid_to, _SERVER_AUTH),
        expired=issue(
            "expired",
            server_names,
            now - datetime.timedelta(days=30),
            now - datetime.timedelta(days=1),
            _SERVER_AUTH,
        ),
        wrong_name=issue("wrong-name", [WRONG_NAME], valid_from, valid_to, _SERVER_AUTH),
        client=issue("client", [f"client.{domain}"], valid_from, valid_to, _CLIENT_AUTH),
    )


_YEAR = datetime.timedelta(days=365)
_SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH
_CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path
