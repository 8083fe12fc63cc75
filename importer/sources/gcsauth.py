"""A Google service-account key turned into OAuth2 access tokens for GCS reads.

CDI mounts the DataVolume's `secretRef` Secret at `/google` and points
`GOOGLE_APPLICATION_CREDENTIALS` at `/google/credentials.json`; its importer hands that
file to Google's client library. We read the same file: a service-account key (the JSON
a console or `gcloud iam service-accounts keys create` writes), exchanged for an access
token with the OAuth2 JWT-bearer grant (RFC 7523) at the key's own `token_uri`, scope
`devstorage.read_only`. The assertion is signed RS256 with the key's private key.

No part of the key, the assertion or the token ever reaches a message: failures name the
file and the field, the token endpoint's HTTP status and its OAuth2 `error` code only.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import requests

from cdicontract.reasons import Reason
from importer.errors import ImportFailure, TransientSourceError
from importer.sources.addressguard import refused_in

SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME = 3600
REFRESH_MARGIN = 300.0
"""Seconds before expiry at which a token is renewed, so no request carries a stale one."""
_OAUTH_ERROR_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz_")


@dataclass(frozen=True)
class ServiceAccountKey:
    client_email: str
    private_key: str
    token_uri: str
    private_key_id: str | None = None

    def __repr__(self) -> str:  # never print the private key
        return f"ServiceAccountKey(client_email={self.client_email!r})"


def parse_key(text: str, where: str) -> ServiceAccountKey:
    """Read a service-account key (pure); INVALID_CONFIG naming the missing field."""
    try:
        doc: Any = json.loads(text)
    except ValueError:
        raise ImportFailure(
            Reason.INVALID_CONFIG, f"GCS credentials {where} are not JSON (a service-account key)"
        ) from None
    if not isinstance(doc, dict):
        raise ImportFailure(
            Reason.INVALID_CONFIG, f"GCS credentials {where} are not a JSON object"
        )
    kind = doc.get("type")
    if kind != "service_account":
        shown = kind if isinstance(kind, str) and len(kind) <= 40 else "missing"
        raise ImportFailure(
            Reason.INVALID_CONFIG,
            f"GCS credentials {where} have type {shown}; only a service_account key is read",
        )
    fields: dict[str, str] = {}
    for name in ("client_email", "private_key"):
        value = doc.get(name)
        if not isinstance(value, str) or not value.strip():
            raise ImportFailure(
                Reason.INVALID_CONFIG, f"GCS credentials {where} have no {name}"
            )
        fields[name] = value
    token_uri = doc.get("token_uri") or DEFAULT_TOKEN_URI
    if not isinstance(token_uri, str) or urlsplit(token_uri).scheme not in ("http", "https"):
        raise ImportFailure(
            Reason.INVALID_CONFIG, f"GCS credentials {where} have a token_uri that is not a URL"
        )
    key_id = doc.get("private_key_id")
    return ServiceAccountKey(
        client_email=fields["client_email"],
        private_key=fields["private_key"],
        token_uri=token_uri,
        private_key_id=key_id if isinstance(key_id, str) and key_id else None,
    )


def read_key(path: str) -> ServiceAccountKey:
    """The key file at `path`; a missing or unreadable file is INVALID_CONFIG."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ImportFailure(
            Reason.INVALID_CONFIG,
            f"GCS credentials file {path} does not exist (the secretRef Secret needs the "
            "key credentials.json)",
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ImportFailure(
            Reason.INVALID_CONFIG, f"cannot read GCS credentials file {path}: {type(e).__name__}"
        ) from None
    return parse_key(text, path)


def assertion(key: ServiceAccountKey, now: float) -> str:
    """The signed JWT the token endpoint exchanges (pure but for the signature)."""
    claims = {
        "iss": key.client_email,
        "scope": SCOPE,
        "aud": key.token_uri,
        "iat": int(now),
        "exp": int(now) + ASSERTION_LIFETIME,
    }
    headers = {"kid": key.private_key_id} if key.private_key_id else None
    try:
        return jwt.encode(claims, key.private_key, algorithm="RS256", headers=headers)
    except (ValueError, TypeError, jwt.PyJWTError):
        raise ImportFailure(
            Reason.INVALID_CONFIG,
            "GCS credentials have a private_key that is not an RSA private key in PEM",
        ) from None


def _oauth_error(response: requests.Response) -> str:
    """The OAuth2 `error` code of a refusal (a short token like invalid_grant), if any."""
    try:
        doc = response.json()
    except ValueError:
        return ""
    code = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(code, str) and len(code) <= 40 and set(code) <= _OAUTH_ERROR_CHARS:
        return f" ({code})"
    return ""


class TokenSource:
    """Access tokens for one key, renewed before they expire; safe across threads."""

    def __init__(
        self,
        key: ServiceAccountKey,
        post: Callable[..., requests.Response],
        *,
        clock: Callable[[], float] = time.time,
        timeout: float = 30.0,
    ) -> None:
        self._key = key
        self._post = post
        self._clock = clock
        self._timeout = timeout
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0.0

    def token(self) -> str:
        with self._lock:
            now = self._clock()
            if self._token is None or now >= self._expires - REFRESH_MARGIN:
                self._token, lifetime = self._exchange(now)
                self._expires = now + lifetime
            return self._token

    def invalidate(self) -> None:
        """Forget the token (the server refused it): the next call exchanges again."""
        with self._lock:
            self._token = None

    def _exchange(self, now: float) -> tuple[str, float]:
        where = f"GCS token endpoint {self._key.token_uri} for {self._key.client_email}"
        body = {"grant_type": JWT_BEARER, "assertion": assertion(self._key, now)}
        try:
            response = self._post(
                self._key.token_uri, data=body, timeout=self._timeout, allow_redirects=False
            )
        except requests.exceptions.SSLError:
            raise ImportFailure(Reason.TLS_ERROR, f"TLS with {where} failed") from None
        except requests.exceptions.RequestException as e:
            refused = refused_in(e)
            if refused is not None:
                raise ImportFailure(
                    Reason.ADDRESS_REFUSED,
                    f"{where}: {refused.host} is {refused.address}, a loopback or link-local "
                    "address, which this cluster does not import from",
                ) from None
            raise TransientSourceError(f"{where} failed: {type(e).__name__}") from None
        with response:
            status = response.status_code
            if status in (400, 401, 403):
                raise ImportFailure(
                    Reason.UNAUTHORIZED,
                    f"{where} refused the service-account key: HTTP {status}"
                    f"{_oauth_error(response)}",
                )
            if status == 429 or status >= 500:
                raise TransientSourceError(f"{where}: HTTP {status}", Reason.SERVER_ERROR)
            if status != 200:
                raise ImportFailure(Reason.UNAUTHORIZED, f"{where}: unexpected HTTP {status}")
            try:
                doc = response.json()
                token = doc["access_token"]
                lifetime = float(doc.get("expires_in", 3600))
            except (ValueError, KeyError, TypeError):
                raise ImportFailure(
                    Reason.UNAUTHORIZED, f"{where} answered without an access_token"
                ) from None
        if not isinstance(token, str) or not token:
            raise ImportFailure(Reason.UNAUTHORIZED, f"{where} answered without an access_token")
        return token, max(lifetime, 0.0)
