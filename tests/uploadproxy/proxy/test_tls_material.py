"""Key and certificate handling: self-signed serving pairs, client contexts from PEM,
precise refusals for unusable material that never quote it."""

from __future__ import annotations

import ssl

import pytest
from cryptography import x509

from cdicontract import upload
from tests.uploadproxy.proxy.pki import CA, rsa_pair
from uploadproxy.proxy import credentials, tls


def test_a_self_signed_pair_names_every_given_name_and_loads() -> None:
    cert_pem, key_pem = tls.self_signed(["cdi-uploadproxy", "10.0.0.7"])
    cert = x509.load_pem_x509_certificate(cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["cdi-uploadproxy"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.7"]
    tls.load_pem(tls.server_context(), cert_pem, key_pem)


def test_a_client_context_verifies_names_and_carries_the_client_pair() -> None:
    server_ca, client_ca = CA("servers"), CA("clients")
    pair = client_ca.issue(upload.CLIENT_COMMON_NAME, client=True)
    ctx = credentials.client_context(pair.cert, pair.key, server_ca.pem)
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    assert len(ctx.get_ca_certs()) == 1


@pytest.mark.parametrize("broken", ["cert", "key", "ca"])
def test_unusable_material_is_unavailable_with_a_reason(broken: str) -> None:
    ca = CA("servers")
    pair = ca.issue("x", client=True)
    other = ca.issue("y", client=True)
    cert, key, bundle = pair.cert, pair.key, ca.pem
    if broken == "cert":
        cert = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    elif broken == "key":
        key = other.key  # does not match the certificate
    else:
        bundle = b"not a certificate"
    with pytest.raises(credentials.Unavailable) as e:
        credentials.client_context(cert, key, bundle)
    assert b"PRIVATE" not in str(e.value).encode()


def test_only_an_rsa_public_key_verifies_tokens() -> None:
    _, public = rsa_pair()
    assert credentials.parse_public_key(public) == public
    with pytest.raises(credentials.Unavailable, match="not a PEM public key"):
        credentials.parse_public_key(b"ssh-rsa AAAA")
    ec_pub = CA("x").cert.public_key().public_bytes(
        __import__("cryptography.hazmat.primitives.serialization", fromlist=["x"]).Encoding.PEM,
        __import__("cryptography.hazmat.primitives.serialization",
                   fromlist=["x"]).PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(credentials.Unavailable, match="not an RSA"):
        credentials.parse_public_key(ec_pub)
