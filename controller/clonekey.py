"""The controller's clone-token key: one RSA key per cluster, in a Secret of its namespace.

The admission webhook signs each clone DataVolume's short-lived token with it
(`cdicontract/clonetoken.py`, PS256), the reconciler verifies tokens with its public half
before it touches a source and re-signs them, long-lived, onto the target PVC. Only the
controller reads it (its Role in its own namespace), and every replica must use the same
key, since the replica that admits a DataVolume is rarely the leader that clones it: the
first to start creates the Secret, a 409 on create means another replica won, and its key
is the one used. A Secret that exists but holds no usable key is never overwritten (that
would void every outstanding token); the controller stops with a precise error instead.
The key never reaches a log: nothing here formats it.
"""

from __future__ import annotations

import base64
import binascii
import logging

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cdicontract import annotations as ann
from controller.runtime import kube
from controller.runtime.objects import Obj

log = logging.getLogger(__name__)

SECRET_NAME = "cdi-clone-token-key"  # noqa: S105 - a name, not a secret
PRIVATE_KEY = "id_rsa"
PUBLIC_KEY = "id_rsa.pub"
KEY_BITS = 2048
MIN_BITS = 2048


class BadKey(Exception):
    """The Secret exists but holds no usable RSA key."""


def generate(bits: int = KEY_BITS) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def secret(namespace: str, key: rsa.RSAPrivateKey) -> Obj:
    """The Secret holding `key` (PKCS#1 PEM) and its public half (PKIX PEM), CDI's key names."""
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


def from_secret(obj: Obj) -> rsa.RSAPrivateKey:
    """The key in a Secret made by `secret` (PKCS#1 or PKCS#8 accepted). No message quotes it."""
    encoded = (obj.get("data") or {}).get(PRIVATE_KEY)
    if not isinstance(encoded, str) or not encoded:
        raise BadKey(f"Secret {SECRET_NAME} has no {PRIVATE_KEY}")
    try:
        pem = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise BadKey(f"Secret {SECRET_NAME} {PRIVATE_KEY} is not base64") from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise BadKey(f"Secret {SECRET_NAME} holds an encrypted key") from None
    except ValueError:
        raise BadKey(f"Secret {SECRET_NAME} {PRIVATE_KEY} is not a PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise BadKey(f"Secret {SECRET_NAME} holds a key that is not RSA")
    if key.key_size < MIN_BITS:
        raise BadKey(f"Secret {SECRET_NAME} holds a {key.key_size}-bit key, "
                     f"fewer than {MIN_BITS} bits")
    return key


async def ensure(client: kube.Kube, namespace: str) -> rsa.RSAPrivateKey:
    """The cluster's clone-token key, created on first start (race-safe across replicas)."""
    path = kube.SECRETS.path(namespace, SECRET_NAME)
    found = await client.get(path)
    if found is None:
        try:
            found = await client.create(kube.SECRETS.path(namespace),
                                        secret(namespace, generate()))
            log.info("clone token key created secret=%s/%s", namespace, SECRET_NAME)
        except kube.Conflict:
            found = await client.get(path)
            if found is None:
                raise
            log.info("clone token key created by another replica secret=%s/%s",
                     namespace, SECRET_NAME)
    return from_secret(found)
