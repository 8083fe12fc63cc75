"""The clone-token key: its Secret round-trips, a damaged Secret is a precise error that
never quotes the key, and replicas starting at once against the real API server end up
with one key."""

from __future__ import annotations

import asyncio
import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cdicontract import clonetoken
from controller import clonekey
from controller.runtime import kube

KEY = clonekey.generate()


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def test_the_secret_round_trips_and_signs_tokens_its_public_half_verifies():
    secret = clonekey.secret("cdi", KEY)
    assert secret["metadata"] == {"name": "cdi-clone-token-key", "namespace": "cdi",
                                  "labels": {"app": "containerized-data-importer"}}
    loaded = clonekey.from_secret(secret)
    assert public_pem(loaded) == public_pem(KEY)
    assert base64.b64decode(secret["data"]["id_rsa.pub"]) == public_pem(KEY)
    ref = clonetoken.CloneRef("golden", "disk", "team", "vm")
    clonetoken.verify(clonetoken.sign(loaded, ref), KEY.public_key(), ref)


def pem(key: object) -> str:
    return base64.b64encode(key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())).decode()


@pytest.mark.parametrize(("data", "message"), [
    pytest.param({}, "has no id_rsa", id="missing"),
    pytest.param({"id_rsa": "%%%"}, "is not base64", id="not-base64"),
    pytest.param({"id_rsa": base64.b64encode(b"junk").decode()}, "not a PEM private key",
                 id="not-pem"),
    pytest.param({"id_rsa": pem(ec.generate_private_key(ec.SECP256R1()))}, "not RSA",
                 id="ec"),
    pytest.param({"id_rsa": pem(rsa.generate_private_key(65537, 1024))}, "1024-bit",
                 id="short"),
])
def test_a_damaged_secret_is_a_precise_error(data, message):
    with pytest.raises(clonekey.BadKey, match=message) as info:
        clonekey.from_secret({"data": data})
    if data.get("id_rsa"):
        assert data["id_rsa"][:40] not in str(info.value)


@pytest.mark.cluster
def test_replicas_starting_together_share_one_key(cluster, namespace):
    async def go() -> list[rsa.RSAPrivateKey]:
        clients = [kube.Kube(kube.load_config(str(cluster.kubeconfig))) for _ in range(3)]
        try:
            return list(await asyncio.gather(*(clonekey.ensure(c, namespace)
                                               for c in clients)))
        finally:
            for c in clients:
                await c.close()

    keys = asyncio.run(go())
    assert len({public_pem(k) for k in keys}) == 1
    # A restart loads the same key again.
    again = asyncio.run(go())
    assert public_pem(again[0]) == public_pem(keys[0])
