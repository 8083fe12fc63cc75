"""A real certificate authority for the upload server's mutual TLS, made with `cryptography`."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Authority:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def authority(cn: str) -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5))
        .not_valid_after(_now() + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Authority(key, cert)


def issue(
    ca: Authority, cn: str, *, server: bool
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5))
        .not_valid_after(_now() + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(ca.key, hashes.SHA256()), key


def write_pair(
    directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> tuple[str, str]:
    crt = directory / f"{stem}.crt"
    pem = directory / f"{stem}.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pem.chmod(0o600)
    return str(crt), str(pem)


@dataclass(frozen=True)
class Pki:
    tls_dir: Path
    """tls.crt, tls.key (the server's), ca.crt (the client CA): the upload server's Secret."""
    server_ca: str
    """What a client trusts to verify the server."""
    client: tuple[str, str]
    """The proxy's certificate and key (CN = CLIENT_COMMON_NAME, signed by the client CA)."""
    wrong_name: tuple[str, str]
    """Signed by the client CA, but another CN."""
    foreign: tuple[str, str]
    """The right CN, signed by a CA the server does not trust."""


def make_pki(directory: Path, client_name: str) -> Pki:
    tls_dir = directory / "tls"
    tls_dir.mkdir()
    server_ca = authority("cdi-uploadserver-ca")
    client_ca = authority("cdi-uploadserver-client-ca")
    other_ca = authority("someone-else")
    write_pair(tls_dir, "tls", *issue(server_ca, "cdi-upload-disk.default.svc", server=True))
    (tls_dir / "ca.crt").write_bytes(client_ca.cert.public_bytes(serialization.Encoding.PEM))
    (directory / "server-ca.crt").write_bytes(
        server_ca.cert.public_bytes(serialization.Encoding.PEM)
    )
    return Pki(
        tls_dir=tls_dir,
        server_ca=str(directory / "server-ca.crt"),
        client=write_pair(directory, "client", *issue(client_ca, client_name, server=False)),
        wrong_name=write_pair(directory, "wrong", *issue(client_ca, "someone.else", server=False)),
        foreign=write_pair(directory, "foreign", *issue(other_ca, client_name, server=False)),
    )
