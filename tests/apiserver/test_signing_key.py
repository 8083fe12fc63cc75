"""The token signing key: CDI's Secret layout, refusals of unusable keys, and tokens that
verify with the published half."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from apiserver import signingkey
from cdicontract import upload, uploadtoken


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
        fmt: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8,
        password: bytes | None = None) -> bytes:
    enc = (serialization.BestAvailableEncryption(password) if password
           else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, fmt, enc)


def test_secret_and_configmap_have_cdis_names_and_keys(
        signing_key: signingkey.SigningKey):
    secret = signingkey.secret("cdi", signing_key)
    assert secret["metadata"]["name"] == upload.SIGNING_KEY_SECRET == "cdi-api-signing-key"
    assert set(secret["data"]) == {"id_rsa", "id_rsa.pub"}
    assert base64.b64decode(secret["data"]["id_rsa"]).startswith(
        b"-----BEGIN RSA PRIVATE KEY-----")  # PKCS#1, as CDI writes it
    cm = signingkey.public_configmap("cdi", signing_key)
    assert cm["metadata"]["name"] == upload.PUBLIC_KEY_CONFIGMAP
    assert cm["data"] == {"id_rsa.pub": signing_key.public_pem.decode()}
    assert "PRIVATE" not in str(cm)


def test_the_secret_reads_back_as_the_same_key(signing_key: signingkey.SigningKey):
    again = signingkey.SigningKey.from_secret(signingkey.secret("cdi", signing_key))
    assert again == signing_key
    token = uploadtoken.sign(again.loaded, namespace="ns", pvc="disk")
    claims = uploadtoken.verify(token, signing_key.public_pem)
    assert (claims.namespace, claims.name) == ("ns", "disk")


def test_a_pkcs8_key_is_accepted_and_its_public_half_derived():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    got = signingkey.SigningKey.from_pem(pem(key))
    token = uploadtoken.sign(got.loaded, namespace="ns", pvc="disk")
    assert uploadtoken.verify(token, got.public_pem).name == "disk"


@pytest.mark.parametrize(("make", "needle"), [
    pytest.param(lambda: pem(rsa.generate_private_key(65537, 1024)), "1024 bits",
                 id="too-small"),
    pytest.param(lambda: pem(ec.generate_private_key(ec.SECP256R1())), "not an RSA key",
                 id="ec"),
    pytest.param(lambda: pem(rsa.generate_private_key(65537, 2048), password=b"pw"),
                 "encrypted", id="encrypted"),
    pytest.param(lambda: b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n", "not a PEM",
                 id="garbage"),
])
def test_unusable_keys_are_refused_without_quoting_them(make, needle):
    data = make()
    with pytest.raises(signingkey.BadKey, match=needle) as info:
        signingkey.SigningKey.from_pem(data)
    assert "BEGIN" not in str(info.value)


@pytest.mark.parametrize(("data", "needle"), [
    pytest.param({}, "has no id_rsa", id="missing"),
    pytest.param({"id_rsa": "***"}, "not base64", id="not-base64"),
])
def test_a_broken_secret_is_refused(data: dict[str, str], needle: str):
    with pytest.raises(signingkey.BadKey, match=needle):
        signingkey.SigningKey.from_secret({"data": data})


def test_the_private_key_never_shows_in_repr(signing_key: signingkey.SigningKey):
    assert "PRIVATE" not in repr(signing_key)
