"""The admission webhook's serving certificate: a private CA and a leaf for the Service name.

Generated once per cluster and kept in a Secret, so every replica serves the same
certificate and the CA written into the ValidatingWebhookConfiguration stays valid across
restarts. Pure generation here; the Secret and the caBundle patch are in webhook.py.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controller.runtime.objects import Obj


@dataclass(frozen=True)
class ServingCert:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    def secret_data(self) -> dict[str, str]:
        enc = base64.b64encode
        return {"ca.crt": enc(self.ca_pem).decode(), "tls.crt": enc(self.cert_pem).decode(),
                "tls.key": enc(self.key_pem).decode()}

    @classmethod
    def from_secret(cls, secret: Obj) -> ServingCert:
        data = secret.get("data") or {}
        dec = base64.b64decode
        return cls(dec(data["ca.crt"]), dec(data["tls.crt"]), dec(data["tls.key"]))


def dns_names(service: str, namespace: str) -> list[str]:
    return [service, f"{service}.{namespace}", f"{service}.{namespace}.svc",
            f"{service}.{namespace}.svc.cluster.local"]


@dataclass(frozen=True)
class KeyPair:
    """A PEM certificate and its PKCS#8 PEM key."""

    cert_pem: bytes
    key_pem: bytes


_KEY_USAGE_CA = x509.KeyUsage(
    digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
    key_encipherment=False, data_encipherment=False, key_agreement=False,
    encipher_only=False, decipher_only=False)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _window(days: int) -> tuple[dt.datetime, dt.datetime]:
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    return now, now + dt.timedelta(days=days)


def new_ca(common_name: str, *, days: int = 3650) -> KeyPair:
    start, until = _window(days)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ca = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_KEY_USAGE_CA, critical=True)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(ca.public_bytes(serialization.Encoding.PEM), _pem_key(key))


def issue(ca: KeyPair, common_name: str, *, dns: list[str] | None = None,
          client: bool = False, days: int = 3650) -> KeyPair:
    """A leaf signed by `ca`: a server certificate for `dns`, or a client certificate."""
    start, until = _window(days)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key is not an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if dns:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in dns]), critical=False)
    return KeyPair(builder.sign(ca_key, hashes.SHA256()).public_bytes(
        serialization.Encoding.PEM), _pem_key(key))


def leaf_problem(leaf: KeyPair, ca: KeyPair, *, common_name: str,
                 now: dt.datetime | None = None) -> str | None:
    """Why `leaf` cannot serve as `common_name`'s certificate from `ca`, or None.

    A leaf that does not parse, whose key is not its certificate's, that another CA
    signed, that names someone else or that is outside its validity is re-issued by its
    owner, as CDI's certificate rotation re-issues a target whose issuer is not in the
    CA bundle. The answer names the problem, never the key.
    """
    try:
        cert = x509.load_pem_x509_certificate(leaf.cert_pem)
        key = serialization.load_pem_private_key(leaf.key_pem, password=None)
        ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    except (ValueError, TypeError):
        return "the certificate or its key is not PEM"
    if key.public_key() != cert.public_key():
        return "the key is not the certificate's"
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return f"not issued by {ca_cert.subject.rfc4514_string()}"
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if [n.value for n in names] != [common_name]:
        return f"not issued to {common_name}"
    at = now or dt.datetime.now(dt.UTC)
    if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        return "outside its validity"
    return None


def generate(service: str, namespace: str, *, days: int = 3650) -> ServingCert:
    ca = new_ca("cdi-py webhook CA", days=days)
    names = dns_names(service, namespace)
    leaf = issue(ca, names[2], dns=names, days=days)
    return ServingCert(ca_pem=ca.cert_pem, cert_pem=leaf.cert_pem, key_pem=leaf.key_pem)
