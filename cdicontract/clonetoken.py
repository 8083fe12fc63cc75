"""Clone tokens: the admission webhook's signed record that a user may clone a source.

A PS256 JWT in CDI's shape (pkg/token): issuer `cdi-apiserver`, `operation: Clone`,
`name`/`namespace`/`resource` naming the *source* (a PVC or a VolumeSnapshot), and
`params: {targetNamespace, targetName}` naming the target DataVolume (or PVC). The
webhook signs a short-lived one (LIFETIME) at admission; the controller verifies it
before it touches the source, then re-signs it with EXTENDED_LIFETIME onto the target
PVC (EXTENDED_TOKEN_ANNOTATION) so a clone that waits for its source is not lost when the
short token expires. Both sides use these two functions, so the claims cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from cdicontract.uploadtoken import ALGORITHM, ISSUER, LEEWAY_SECONDS, TokenError, decode

__all__ = ["EXTENDED_LIFETIME", "LIFETIME", "CloneRef", "TokenError", "sign", "verify"]

LIFETIME = timedelta(minutes=5)
EXTENDED_LIFETIME = timedelta(days=3650)
OPERATION_CLONE = "Clone"
KIND_PVC = "PersistentVolumeClaim"
KIND_SNAPSHOT = "VolumeSnapshot"
RESOURCES: dict[str, dict[str, str]] = {
    KIND_PVC: {"group": "", "version": "v1", "resource": "persistentvolumeclaims"},
    KIND_SNAPSHOT: {"group": "snapshot.storage.k8s.io", "version": "v1",
                    "resource": "volumesnapshots"},
}


@dataclass(frozen=True)
class CloneRef:
    """What a token approves: cloning this source into this target."""

    source_namespace: str
    source_name: str
    target_namespace: str
    target_name: str
    source_kind: str = KIND_PVC
    target_uid: str = ""
    """When set, the token is for this one object (`params.uid`, as CDI binds its
    long-lived tokens): a copy onto a new object of the same name does not verify."""


def sign(
    private_key: bytes | rsa.RSAPrivateKey,
    ref: CloneRef,
    *,
    now: datetime | None = None,
    lifetime: timedelta = LIFETIME,
) -> str:
    """A token approving `ref`, valid for `lifetime` from `now`."""
    if ref.source_kind not in RESOURCES:
        raise ValueError(f"clone source kind {ref.source_kind!r} is not one of {sorted(RESOURCES)}")
    issued = now or datetime.now(UTC)
    payload: dict[str, Any] = {
        "iss": ISSUER,
        "iat": issued,
        "nbf": issued,
        "exp": issued + lifetime,
        "operation": OPERATION_CLONE,
        "name": ref.source_name,
        "namespace": ref.source_namespace,
        "resource": dict(RESOURCES[ref.source_kind]),
        "params": {"targetNamespace": ref.target_namespace, "targetName": ref.target_name},
    }
    if ref.target_uid:
        payload["params"]["uid"] = ref.target_uid
    return jwt.encode(payload, private_key, algorithm=ALGORITHM)


def verify(
    token: str,
    public_key: bytes | rsa.RSAPublicKey,
    ref: CloneRef,
    *,
    leeway: float = LEEWAY_SECONDS,
    now: datetime | None = None,
) -> datetime:
    """The expiry of a valid token for exactly `ref`; raises TokenError otherwise.

    The message says what is wrong (forged, expired, another source or target), never
    quoting the token.
    """
    doc, expires = decode(token, public_key, what="clone", leeway=leeway, now=now)
    if doc.get("operation") != OPERATION_CLONE:
        raise TokenError("clone token is not for a clone")
    if doc.get("resource") != RESOURCES.get(ref.source_kind):
        raise TokenError(f"clone token is not for a {ref.source_kind}")
    if (doc.get("namespace"), doc.get("name")) != (ref.source_namespace, ref.source_name):
        raise TokenError("clone token is for another source")
    params = doc.get("params")
    target = (params.get("targetNamespace"), params.get("targetName")) \
        if isinstance(params, dict) else None
    if target != (ref.target_namespace, ref.target_name):
        raise TokenError("clone token is for another target")
    if ref.target_uid and (params or {}).get("uid") != ref.target_uid:
        raise TokenError("clone token is for another target object")
    return expires
