"""Upload tokens: what the token API signs, the proxy accepts, and nothing else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cdicontract import uploadtoken as ut


def _keypair() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


PRIVATE, PUBLIC = _keypair()
OTHER_PRIVATE, _ = _keypair()
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_a_signed_token_verifies_and_names_the_pvc() -> None:
    token = ut.sign(PRIVATE, namespace="ns", pvc="disk", now=T0)
    claims = ut.verify(token, PUBLIC, now=T0 + timedelta(minutes=4))
    assert (claims.namespace, claims.name) == ("ns", "disk")
    assert claims.expires == T0 + ut.LIFETIME
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "PS256"
    body = jwt.decode(token, options={"verify_signature": False})
    assert body["iss"] == "cdi-apiserver"
    assert body["operation"] == "Upload"
    assert body["resource"] == {"group": "", "version": "v1", "resource": "persistentvolumeclaims"}


def test_expiry_has_ten_seconds_of_leeway() -> None:
    token = ut.sign(PRIVATE, namespace="ns", pvc="disk", now=T0)
    ut.verify(token, PUBLIC, now=T0 + ut.LIFETIME + timedelta(seconds=9))
    with pytest.raises(ut.TokenError, match="expired"):
        ut.verify(token, PUBLIC, now=T0 + ut.LIFETIME + timedelta(seconds=11))


def test_expiry_is_checked_against_the_real_clock_too() -> None:
    old = ut.sign(PRIVATE, namespace="ns", pvc="disk", now=datetime.now(UTC) - timedelta(hours=1))
    with pytest.raises(ut.TokenError, match="expired"):
        ut.verify(old, PUBLIC)


@pytest.mark.parametrize(
    "forge",
    [
        lambda: ut.sign(OTHER_PRIVATE, namespace="ns", pvc="disk", now=T0),
        lambda: jwt.encode({"iss": "cdi-apiserver", "exp": T0 + timedelta(minutes=5)}, "s" * 32,
                           algorithm="HS256"),
        lambda: jwt.encode({"iss": "someone", "exp": T0 + timedelta(minutes=5),
                            "operation": "Upload", "name": "d", "namespace": "n",
                            "resource": ut.PVC_RESOURCE}, PRIVATE, algorithm="PS256"),
        lambda: jwt.encode({"iss": "cdi-apiserver", "exp": T0 + timedelta(minutes=5),
                            "operation": "Clone", "name": "d", "namespace": "n",
                            "resource": ut.PVC_RESOURCE}, PRIVATE, algorithm="PS256"),
        lambda: jwt.encode({"iss": "cdi-apiserver", "exp": T0 + timedelta(minutes=5),
                            "operation": "Upload", "name": "d", "namespace": "n",
                            "resource": {"group": "", "version": "v1", "resource": "pods"}},
                           PRIVATE, algorithm="PS256"),
        lambda: "not.a.jwt",
        lambda: "",
    ],
    ids=["other-key", "hs256", "other-issuer", "other-operation", "other-resource", "garbage",
         "empty"],
)  # fmt: skip
def test_anything_else_is_refused(forge) -> None:  # type: ignore[no-untyped-def]
    token = forge()
    with pytest.raises(ut.TokenError) as err:
        ut.verify(token, PUBLIC, now=T0)
    said = str(err.value)
    assert "token" in said
    # The refusal names the problem, never the token (it ends up in logs and replies).
    assert not any(part in said for part in token.split(".") if len(part) >= 8), said
