"""The serving certificate of the API server: a private CA and a leaf for its Service (pure).

Generated once per cluster and kept in a Secret (tls.py), so every replica serves the same
certificate and the CA written into the APIService's caBundle stays valid across
restarts. The kube-aggregator dials the Service as `<service>.<namespace>.svc`, which is
the leaf's common name; the other DNS forms are alternative names.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from apiserver.obj import Obj, get_path

CA_NAME = "cdi-py apiserver CA"
VALID_DAYS = 3650


class BadServingCert(Exception):
    """The Secret exists but lacks a usable certificate; it is never overwritten."""


@dataclass(frozen=True)
class ServingCert:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes = field(repr=False)

    def secret_data(self) -> dict[str, str]:
        enc = base64.b64encode
        return {"ca.crt": enc(self.ca_pem).decode(), "tls.crt": enc(self.cert_pem).decode(),
                "tls.key": enc(self.key_pem).decode()}

    @classmethod
    def from_secret(cls, secret: Obj) -> ServingCert:
        parts = []
        for key in ("ca.crt", "tls.crt", "tls.key"):
            value = get_path(secret, "data", key)
            if not isinstance(value, str) or not value:
                raise BadServingCert(f"serving certificate Secret has no {key}")
            try:
                parts.append(base64.b64decode(value, validate=True))
            except (binascii.Error, ValueError):
                raise BadServingCert(f"serving certificate Secret {key} is not base64") from None
        return cls(*parts)


def dns_names(service: str, namespace: str) -> list[str]:
    return [service, f"{service}.{namespace}", f"{service}.{namespace}.svc",
            f"{service}.{namespace}.svc.cluster.local"]


def generate(service: str, namespace: str, *, days: int = VALID_DAYS,
             now: dt.datetime | None = None) -> ServingCert:
    start = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(minutes=5)  # clock skew
    until = start + dt.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_subject).issuer_name(ca_subject)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True,
            content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = dns_names(service, namespace)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[2])]))
        .issuer_name(ca_subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(until)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return ServingCert(
        ca_pem=ca.public_bytes(pem),
        cert_pem=leaf.public_bytes(pem),
        key_pem=key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()),
    )
