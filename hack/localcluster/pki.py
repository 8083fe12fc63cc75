"""The cluster's certificates and keys, made the way kubeadm/envtest lay them out.

Why: the API server must authenticate its clients by certificate (admin, controller
manager, scheduler, the simulated node), serve TLS with the names pods use
(``kubernetes.default.svc``) and sign service-account tokens; the aggregation layer
needs a second CA (front proxy) so an aggregated API server trusts forwarded requests.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=3650)


@dataclass(frozen=True)
class Pki:
    """Paths of every PEM file under ``DIR/pki``."""

    root: Path

    def path(self, name: str) -> Path:
        return self.root / name

    @property
    def ca_crt(self) -> Path:
        return self.root / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"


def _key() -> ec.EllipticCurvePrivateKey:
    # ECDSA P-256: generating RSA keys would cost most of `up`'s time.
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _make_ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _issue(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    cn: str,
    *,
    org: str | None = None,
    server_names: tuple[str, ...] = (),
    server_ips: tuple[str, ...] = (),
    client: bool = False,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    if server_names or server_ips:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, org))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if server_names or server_ips:
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in server_names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def create(
    root: Path,
    *,
    apiserver_ips: tuple[str, ...],
    nodes: tuple[tuple[str, str], ...] = (),
) -> Pki:
    """Create every certificate the control plane and its clients need.

    ``nodes``: (name, InternalIP) of every node; the node's log endpoint serves one
    certificate for all (the API server dials each at its InternalIP). Without it, the
    one node at the first API server address."""
    root.mkdir(parents=True, exist_ok=True)
    pki = Pki(root)
    ca_key, ca_cert = _make_ca("cdi-py-local-ca")
    _write_key(pki.ca_key, ca_key)
    _write_cert(pki.ca_crt, ca_cert)

    names = (
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "localhost",
    )
    key, cert = _issue(
        ca_key,
        ca_cert,
        "kube-apiserver",
        server_names=names,
        server_ips=(*apiserver_ips, "127.0.0.1"),
    )
    _write_key(pki.path("apiserver.key"), key)
    _write_cert(pki.path("apiserver.crt"), cert)

    clients = {
        # file stem: (CN, O). system:masters bypasses RBAC, as kubeadm's admin.conf does.
        "admin": ("cdi-py-admin", "system:masters"),
        "controller-manager": ("system:kube-controller-manager", None),
        "scheduler": ("system:kube-scheduler", None),
        # The simulated node also provisions volumes and proxies services, so it acts
        # with admin rights rather than the Node authorizer's narrow ones.
        "node": ("system:node:cdi-node", "system:masters"),
        # The API server's identity towards the node's log endpoint, as kubeadm's.
        "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", "system:masters"),
    }
    for stem, (cn, org) in clients.items():
        key, cert = _issue(ca_key, ca_cert, cn, org=org, client=True)
        _write_key(pki.path(f"{stem}.key"), key)
        _write_cert(pki.path(f"{stem}.crt"), cert)

    nodes = nodes or (("cdi-node", apiserver_ips[0]),)
    key, cert = _issue(
        ca_key,
        ca_cert,
        nodes[0][0],
        server_names=tuple(n for n, _ in nodes),
        server_ips=tuple(ip for _, ip in nodes),
    )
    _write_key(pki.path("kubelet.key"), key)
    _write_cert(pki.path("kubelet.crt"), cert)

    fp_key, fp_cert = _make_ca("cdi-py-front-proxy-ca")
    _write_key(pki.path("front-proxy-ca.key"), fp_key)
    _write_cert(pki.path("front-proxy-ca.crt"), fp_cert)
    key, cert = _issue(fp_key, fp_cert, "front-proxy-client", client=True)
    _write_key(pki.path("front-proxy-client.key"), key)
    _write_cert(pki.path("front-proxy-client.crt"), cert)

    # Service-account tokens: RSA, since RS256 is what every JWT client verifies.
    sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_key(pki.path("sa.key"), sa)
    pki.path("sa.pub").write_bytes(
        sa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return pki
