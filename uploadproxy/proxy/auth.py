"""The bearer token: from the Authorization header to the PVC it allows uploading into.

CDI's answers: no header or one that is not `Bearer <token>` is 400; a token that does
not verify (signature, issuer, expiry with 10 s leeway, operation, resource) is 401.
Bodies are short and never quote the token.
"""

from __future__ import annotations

import re

import jwt

from cdicontract import upload, uploadtoken
from uploadproxy.proxy.refusal import Refused

# CDI's matcher: case-insensitive scheme, the token in the base64url/JWT alphabet.
_BEARER = re.compile(r"Bearer\s+([A-Za-z0-9\-._~+/]+)", re.IGNORECASE)


class BadSignature(Refused):
    """401 because the signature did not verify: perhaps the signing key was rotated and
    ours is old, so the caller may read the key again and retry once."""


def bearer(header: str | None) -> str:
    """The token in an Authorization header; Refused(400) when absent or malformed."""
    if not header:
        raise Refused(400, "missing Authorization header")
    m = _BEARER.fullmatch(header)
    if m is None:
        raise Refused(400, "malformed Authorization header, expected: Bearer <token>")
    return m.group(1)


def authorize(token: str, public_key_pem: bytes) -> uploadtoken.UploadClaims:
    """The verified claims of an upload token, or Refused(401)."""
    try:
        claims = uploadtoken.verify(token, public_key_pem)
    except uploadtoken.TokenError as exc:
        if isinstance(exc.__cause__, jwt.InvalidSignatureError):
            raise BadSignature(401, str(exc)) from None
        raise Refused(401, str(exc)) from None
    # The names end up in a URL's host and path: a signed token is trusted, but not to
    # carry something that would change where we connect.
    if not upload.is_dns_label(claims.namespace) or not upload.is_dns_subdomain(claims.name):
        raise Refused(401, "upload token names an invalid PVC")
    return claims
