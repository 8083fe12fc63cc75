"""The RSA key that signs upload tokens: one per cluster, kept in a Secret.

CDI keeps it in the Secret `cdi-api-signing-key` (keys `id_rsa`, PKCS#1 PEM, and
`id_rsa.pub`, PKIX PEM); the same names here mean a cluster moving from CDI keeps its key
and its outstanding tokens. The first replica to start creates it; a 409 on create means
another replica won the race, and its key is the one used, so every replica signs with
the same key and a restart never invalidates tokens. The public half is also published
in the ConfigMap `cdi-api-public-key` (key `id_rsa.pub`), which the upload
proxy mounts without any access to the private key. The private key never reaches a log:
`SigningKey` does not print it.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from apiserver import kubeapi
from apiserver.obj import Obj, get_path
from cdicontract import upload

log = logging.getLogger(__name__)

SECRET_NAME = upload.SIGNING_KEY_SECRET
PUBLIC_CONFIGMAP = upload.PUBLIC_KEY_CONFIGMAP
PRIVATE_KEY = "id_rsa"
PUBLIC_KEY = "id_rsa.pub"
KEY_BITS = 2048
MIN_BITS = 2048
LABELS = {"cdi.kubevirt.io": "keystore"}


class BadKey(Exception):
    """The Secret exists but holds no usable RSA key; it is never overwritten."""


@dataclass(frozen=True)
class SigningKey:
    private_pem: bytes = field(repr=False)
    public_pem: bytes
    loaded: rsa.RSAPrivateKey = field(repr=False, compare=False)
    """The parsed key, for signing (parsing costs ~90 ms, signing with it ~1 ms)."""

    @classmethod
    def generate(cls, bits: int = KEY_BITS) -> SigningKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        return cls(
            private_pem=key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.TraditionalOpenSSL,
                                          serialization.NoEncryption()),
            public_pem=_public_pem(key),
            loaded=key,
        )

    @classmethod
    def from_pem(cls, private_pem: bytes) -> SigningKey:
        """The key in `private_pem` (PKCS#1 or PKCS#8); the public half is derived."""
        # Neither message quotes the bytes: they are the private key.
        try:
            key = serialization.load_pem_private_key(private_pem, password=None)
        except TypeError:
            raise BadKey("the signing key is encrypted") from None
        except ValueError:
            raise BadKey("the signing key is not a PEM private key") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise BadKey("the signing key is not an RSA key")
        if key.key_size < MIN_BITS:
            raise BadKey(f"the signing key has {key.key_size} bits, fewer than {MIN_BITS}")
        return cls(private_pem=private_pem, public_pem=_public_pem(key), loaded=key)

    @classmethod
    def from_secret(cls, secret: Obj) -> SigningKey:
        encoded = get_path(secret, "data", PRIVATE_KEY)
        if not isinstance(encoded, str) or not encoded:
            raise BadKey(f"Secret {SECRET_NAME} has no {PRIVATE_KEY}")
        try:
            pem = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise BadKey(f"Secret {SECRET_NAME} {PRIVATE_KEY} is not base64") from None
        return cls.from_pem(pem)


def _public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def secret(namespace: str, key: SigningKey) -> Obj:
    enc = base64.b64encode
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": SECRET_NAME, "namespace": namespace, "labels": dict(LABELS)},
            "data": {PRIVATE_KEY: enc(key.private_pem).decode(),
                     PUBLIC_KEY: enc(key.public_pem).decode()}}


def public_configmap(namespace: str, key: SigningKey) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": PUBLIC_CONFIGMAP, "namespace": namespace,
                         "labels": dict(LABELS)},
            "data": {PUBLIC_KEY: key.public_pem.decode()}}


async def ensure(client: kubeapi.Kube, namespace: str) -> SigningKey:
    """The cluster's signing key, created on first start (race-safe across replicas)."""
    path = kubeapi.SECRETS.path(namespace, SECRET_NAME)
    found = await client.get(path)
    if found is None:
        try:
            found = await client.create(kubeapi.SECRETS.path(namespace),
                                        secret(namespace, SigningKey.generate()))
            log.info("signing key created secret=%s/%s", namespace, SECRET_NAME)
        except kubeapi.Conflict:
            found = await client.get(path)
            if found is None:
                raise
            log.info("signing key created by another replica secret=%s/%s", namespace,
                     SECRET_NAME)
    return SigningKey.from_secret(found)


async def publish(client: kubeapi.Kube, namespace: str, key: SigningKey) -> bool:
    """Make the public ConfigMap hold this key's public half; True when it was written."""
    wanted = public_configmap(namespace, key)
    path = kubeapi.CONFIGMAPS.path(namespace, PUBLIC_CONFIGMAP)
    current = await client.get(path)
    if current is None:
        try:
            await client.create(kubeapi.CONFIGMAPS.path(namespace), wanted)
            return True
        except kubeapi.Conflict:
            return False  # another replica made it; the next round checks its content
    if (current.get("data") or {}).get(PUBLIC_KEY) == wanted["data"][PUBLIC_KEY]:
        return False
    await client.merge_patch(path, {"data": wanted["data"]})
    log.info("public signing key republished configmap=%s/%s", namespace, PUBLIC_CONFIGMAP)
    return True
