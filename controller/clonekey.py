"""The controller's clone-token key (minimal loader; helper D's clonekey.py supersedes it).

One RSA key per cluster in the Secret `cdi-clone-token-key` of the controller's
namespace (`id_rsa`: PKCS#1 PEM, `id_rsa.pub`: PKIX PEM, CDI's key names): created when
missing, a 409 means another replica won and its key is used. The key is never logged.
"""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cdicontract import annotations as ann
from controller.runtime import kube
from controller.runtime.objects import Obj

SECRET_NAME = "cdi-clone-token-key"  # noqa: S105 - a name, not a secret
PRIVATE_KEY = "id_rsa"
PUBLIC_KEY = "id_rsa.pub"


def _secret(namespace: str, key: rsa.RSAPrivateKey) -> Obj:
    private = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    enc = base64.b64encode
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": SECRET_NAME, "namespace": namespace,
                         "labels": {ann.LABEL_APP: ann.LABEL_APP_VALUE}},
            "data": {PRIVATE_KEY: enc(private).decode(), PUBLIC_KEY: enc(public).decode()}}


def _load(obj: Obj) -> rsa.RSAPrivateKey:
    pem = base64.b64decode(str((obj.get("data") or {}).get(PRIVATE_KEY) or ""))
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"Secret {SECRET_NAME} holds a key that is not RSA")
    return key


async def ensure(client: kube.Kube, namespace: str) -> rsa.RSAPrivateKey:
    path = kube.SECRETS.path(namespace, SECRET_NAME)
    current = await client.get(path)
    if current is None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        try:
            current = await client.create(kube.SECRETS.path(namespace), _secret(namespace, key))
        except kube.Conflict:
            current = await client.get(path)
            if current is None:
                raise
    return _load(current)
