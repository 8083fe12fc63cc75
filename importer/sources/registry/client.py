"""A minimal OCI distribution v2 client: manifests and blobs, token and basic auth.

Plain HTTP for hosts listed as insecure registries (CDIConfig `insecureRegistries`);
everything else is HTTPS, verified against the CA bundle unless `insecure_tls`. With
`insecure_tls` (CDI's `INSECURE_TLS=true`, which CDI's controller sets for a registry in
`insecureRegistries`) the client does what CDI's importer (containers/image) does: HTTPS
without verification, and plain HTTP when the first exchange over HTTPS fails at the
transport level. Other sources keep their stricter meaning of `insecure_tls`.
requests drops the Authorization header when a blob GET redirects to another host
(registries hand blobs to object storage that way), so credentials stay with the registry.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests

from cdicontract.reasons import Reason
from importer.errors import ImportFailure, RestartRequired, TransientSourceError
from importer.sources.addressguard import guard, refused_in
from importer.sources.proxytls import verify_proxies
from importer.sources.registry.manifest import ACCEPT
from importer.sources.registry.reference import DockerReference

CHUNK = 1 << 20
TIMEOUT = (20, 120)
_PARAM = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class ClientOptions:
    username: str | None = None
    password: str | None = None
    ca_bundle: str | None = None
    insecure_tls: bool = False
    plain_http: bool = False
    deny_local_addresses: bool = False


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="...",service="..."` -> ("bearer", {...}) (pure)."""
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(_PARAM.findall(rest))


def status_failure(status: int, what: str) -> ImportFailure:
    """Map an HTTP status from the registry to a reason (pure)."""
    if status == 404:
        return ImportFailure(Reason.SOURCE_NOT_FOUND, f"{what}: not found")
    if status == 401:
        return ImportFailure(Reason.UNAUTHORIZED, f"{what}: authentication failed")
    if status == 403:
        return ImportFailure(Reason.FORBIDDEN, f"{what}: access denied")
    if status == 429 or status >= 500:
        return TransientSourceError(f"{what}: HTTP {status}", Reason.SERVER_ERROR)
    return ImportFailure(Reason.SERVER_ERROR, f"{what}: HTTP {status}")


def _network_failure(exc: BaseException, what: str) -> ImportFailure:
    refused = refused_in(exc)
    if refused is not None:
        return ImportFailure(
            Reason.ADDRESS_REFUSED,
            f"{what}: {refused.host} is {refused.address}, a loopback or link-local address, "
            "which this cluster does not import from",
        )
    return TransientSourceError(f"{what}: {type(exc).__name__}")


class RegistryClient:
    """Talks to one repository of one registry."""

    def __init__(self, ref: DockerReference, options: ClientOptions) -> None:
        self.ref = ref
        self._options = options
        scheme = "http" if options.plain_http else "https"
        self._base = f"{scheme}://{ref.registry}/v2/{ref.repository}"
        # Until one exchange has succeeded, an insecure HTTPS registry may turn out plain HTTP.
        self._may_fall_back = options.insecure_tls and not options.plain_http
        self._session = requests.Session()
        if options.deny_local_addresses:
            guard(self._session)
        else:
            verify_proxies(self._session)
        # Passed on every request: requests lets REQUESTS_CA_BUNDLE override session.verify.
        self._verify: bool | str = False if options.insecure_tls else (options.ca_bundle or True)
        self._authorization: str | None = None

    @property
    def description(self) -> str:
        return str(self.ref)

    # -- transport ----------------------------------------------------------------------

    def _send(self, method: str, url: str, headers: dict[str, str], what: str) -> Any:
        try:
            return self._session.request(
                method, url, headers=headers, stream=True, timeout=TIMEOUT, verify=self._verify
            )
        except requests.exceptions.SSLError as exc:
            hint = (
                ""
                if self._options.plain_http
                else " (a plain-HTTP registry must be listed in insecureRegistries)"
            )
            raise ImportFailure(Reason.TLS_ERROR, f"{what}: TLS handshake failed{hint}") from exc
        except requests.exceptions.RequestException as exc:
            raise _network_failure(exc, what) from exc

    def _send_first(self, method: str, path: str, headers: dict[str, str], what: str) -> Any:
        """Send; while the scheme is still open, fall back from HTTPS to plain HTTP on a
        transport failure, as containers/image does for an insecure registry."""
        if not self._may_fall_back:
            return self._send(method, f"{self._base}/{path}", headers, what)
        try:
            resp = self._session.request(
                method, f"{self._base}/{path}", headers=headers, stream=True, timeout=TIMEOUT,
                verify=False)
        except requests.exceptions.RequestException as exc:
            if refused_in(exc) is not None:
                raise _network_failure(exc, what) from exc
            self._base = "http" + self._base.removeprefix("https")
            resp = self._send(method, f"{self._base}/{path}", headers, what)
        self._may_fall_back = False
        return resp

    def _request(self, method: str, path: str, headers: dict[str, str], what: str) -> Any:
        for attempt in range(2):
            h = dict(headers)
            if self._authorization:
                h["Authorization"] = self._authorization
            resp = self._send_first(method, path, h, what)
            if resp.status_code != 401 or attempt == 1:
                return resp
            challenge = resp.headers.get("WWW-Authenticate", "")
            resp.close()
            self._authenticate(challenge, what)
        raise AssertionError("unreachable")  # pragma: no cover

    def _authenticate(self, challenge: str, what: str) -> None:
        scheme, params = parse_challenge(challenge)
        user, password = self._options.username, self._options.password
        creds = (user, password) if user is not None and password is not None else None
        if scheme == "basic":
            if creds is None:
                raise ImportFailure(Reason.UNAUTHORIZED, f"{what}: registry requires credentials")
            self._authorization = requests.auth._basic_auth_str(*creds)
            return
        if scheme != "bearer" or "realm" not in params:
            raise ImportFailure(Reason.UNAUTHORIZED, f"{what}: unsupported authentication")
        query = {"service": params.get("service", "")}
        query["scope"] = params.get("scope") or f"repository:{self.ref.repository}:pull"
        try:
            resp = self._session.get(
                params["realm"], params=query, auth=creds, timeout=TIMEOUT, verify=self._verify
            )
        except requests.exceptions.SSLError as exc:
            raise ImportFailure(Reason.TLS_ERROR, f"{what}: token server TLS failed") from exc
        except requests.exceptions.RequestException as exc:
            raise _network_failure(exc, f"{what}: token server") from exc
        if resp.status_code != 200:
            raise status_failure(resp.status_code, f"{what}: token request")
        try:
            doc = resp.json()
            token = doc.get("token") or doc.get("access_token")
        except ValueError:
            token = None
        if not isinstance(token, str) or not token:
            raise ImportFailure(Reason.UNAUTHORIZED, f"{what}: token server gave no token")
        self._authorization = f"Bearer {token}"

    # -- API ----------------------------------------------------------------------------

    def manifest(self, reference: str, max_bytes: int) -> tuple[bytes, str | None, str | None]:
        """(body, content type, Docker-Content-Digest) of a manifest, capped at max_bytes."""
        what = f"manifest {self.ref.repository}:{reference[:80]}"
        resp = self._request("GET", f"manifests/{reference}", {"Accept": ACCEPT}, what)
        with resp:
            if resp.status_code != 200:
                raise status_failure(resp.status_code, what)
            declared = int(resp.headers.get("Content-Length") or 0)
            if declared > max_bytes:
                raise ImportFailure(Reason.MANIFEST_INVALID, f"{what}: larger than {max_bytes}")
            body = bytearray()
            try:
                for chunk in resp.iter_content(65536):
                    body += chunk
                    if len(body) > max_bytes:
                        raise ImportFailure(
                            Reason.MANIFEST_INVALID, f"{what}: larger than {max_bytes}"
                        )
            except requests.exceptions.RequestException as exc:
                raise TransientSourceError(f"{what}: {type(exc).__name__}") from exc
            return (
                bytes(body),
                resp.headers.get("Content-Type"),
                resp.headers.get("Docker-Content-Digest"),
            )

    def open_blob(self, digest: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Chunks of a blob, optionally the range [start, end] (inclusive)."""
        what = f"blob {digest[:19]}"
        headers = {}
        ranged = start > 0 or end is not None
        if ranged:
            headers["Range"] = f"bytes={start}-{'' if end is None else end}"
        resp = self._request("GET", f"blobs/{digest}", headers, what)
        try:
            if resp.status_code not in (200, 206):
                raise status_failure(resp.status_code, what)
            if ranged and resp.status_code != 206:
                raise RestartRequired(f"{what}: registry ignored the range request")
            try:
                yield from resp.iter_content(CHUNK)
            except requests.exceptions.RequestException as exc:
                raise TransientSourceError(f"{what}: {type(exc).__name__}") from exc
        finally:
            resp.close()

    def serves_ranges(self, digest: str) -> bool:
        what = f"blob {digest[:19]}"
        resp = self._request("HEAD", f"blobs/{digest}", {}, what)
        with resp:
            if resp.status_code != 200:
                raise status_failure(resp.status_code, what)
            return bool(resp.headers.get("Accept-Ranges", "").lower() == "bytes")

    def close(self) -> None:
        self._session.close()
