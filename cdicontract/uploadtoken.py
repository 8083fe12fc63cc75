"""Upload tokens as CDI issues and checks them: a PS256 JWT naming one PVC, valid 5 minutes.

The aggregated API server (`UploadTokenRequest`) signs with the RSA key it keeps in a
Secret; the upload proxy verifies with the public half. Both sides use these two
functions, so the claims can never drift apart. CDI's token (pkg/token) carries
`operation`, `name`, `namespace` and `resource` besides the registered claims, issuer
`cdi-apiserver`; `virtctl image-upload` only passes it through, never reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "cdi-apiserver"
ALGORITHM = "PS256"
LIFETIME = timedelta(minutes=5)
LEEWAY_SECONDS = 10.0
OPERATION_UPLOAD = "Upload"
PVC_RESOURCE = {"group": "", "version": "v1", "resource": "persistentvolumeclaims"}


class TokenError(Exception):
    """The token is missing, malformed, forged, expired or for something else.

    The message says which, never quoting the token.
    """


@dataclass(frozen=True)
class UploadClaims:
    namespace: str
    name: str
    """The PVC the token allows uploading into."""
    expires: datetime


def sign(
    private_key_pem: bytes | rsa.RSAPrivateKey,
    *,
    namespace: str,
    pvc: str,
    now: datetime | None = None,
) -> str:
    """A token allowing an upload into `namespace/pvc`, valid for LIFETIME from `now`.

    The key is a PEM, or the loaded key: loading and checking an RSA key costs ~90 ms,
    signing with a loaded one ~1 ms, which matters to a server issuing many tokens.
    """
    issued = now or datetime.now(UTC)
    payload: dict[str, Any] = {
        "iss": ISSUER,
        "iat": issued,
        "nbf": issued,
        "exp": issued + LIFETIME,
        "operation": OPERATION_UPLOAD,
        "name": pvc,
        "namespace": namespace,
        "resource": dict(PVC_RESOURCE),
    }
    return jwt.encode(payload, private_key_pem, algorithm=ALGORITHM)


def decode(
    token: str,
    public_key: bytes | rsa.RSAPublicKey,
    *,
    what: str,
    leeway: float = LEEWAY_SECONDS,
    now: datetime | None = None,
) -> tuple[dict[str, Any], datetime]:
    """The claims and expiry of a PS256 token from `cdi-apiserver` signed by the key, not
    expired (with `leeway` seconds of skew); raises TokenError naming `what` otherwise."""
    # PyJWT reads the clock itself; when told the time, expiry is checked by hand below.
    options: jwt.types.Options = {
        "require": ["exp", "iss"],
        "verify_exp": now is None,
        "verify_nbf": now is None,
    }
    try:
        doc = jwt.decode(token, public_key, algorithms=[ALGORITHM], issuer=ISSUER,
                         leeway=leeway, options=options)
    except jwt.ExpiredSignatureError as exc:
        raise TokenError(f"{what} token expired") from exc
    except jwt.InvalidTokenError as exc:
        raise TokenError(f"invalid {what} token: {type(exc).__name__}") from exc
    exp = doc.get("exp")
    if not isinstance(exp, int | float):
        raise TokenError(f"invalid {what} token: no expiry")
    expires = datetime.fromtimestamp(exp, UTC)
    if now is not None and now > expires + timedelta(seconds=leeway):
        raise TokenError(f"{what} token expired")
    return doc, expires


def verify(
    token: str,
    public_key_pem: bytes,
    *,
    leeway: float = LEEWAY_SECONDS,
    now: datetime | None = None,
) -> UploadClaims:
    """The claims of a valid upload token; raises TokenError otherwise.

    Valid means: signed PS256 by the key, issuer `cdi-apiserver`, not expired (with
    `leeway` seconds of clock skew), operation Upload on a PVC.
    """
    doc, expires = decode(token, public_key_pem, what="upload", leeway=leeway, now=now)
    if doc.get("operation") != OPERATION_UPLOAD:
        raise TokenError("upload token is not for an upload")
    if doc.get("resource") != PVC_RESOURCE:
        raise TokenError("upload token is not for a PersistentVolumeClaim")
    name, namespace = doc.get("name"), doc.get("namespace")
    if not isinstance(name, str) or not name or not isinstance(namespace, str) or not namespace:
        raise TokenError("upload token names no PVC")
    return UploadClaims(namespace=namespace, name=name, expires=expires)
