"""The one module of the API server that talks to the kube-apiserver: JSON over aiohttp.

The server needs six calls (read and create a Secret and a ConfigMap, patch the
APIService, create SubjectAccessReviews), so a few dozen lines of its own rather than a
dependency on the controller's client, which evolves with the controller. Errors are
translated here, once, into `ApiError` subclasses; response bodies are trimmed so no
payload (a Secret!) reaches a log line.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import yaml

from apiserver.obj import Obj

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_REREAD_SECONDS = 60.0


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"HTTP {status} {reason}: {message[:300]}")
        self.status = status
        self.reason = reason
        self.message = message[:300]


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    """409: AlreadyExists on create."""


def _error(status: int, text: str) -> ApiError:
    reason, message = "", text
    try:
        doc = json.loads(text)
        reason, message = str(doc.get("reason", "")), str(doc.get("message", text))
    except (ValueError, AttributeError):
        pass
    cls = {404: NotFound, 409: Conflict}.get(status, ApiError)
    return cls(status, reason, message)


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{quote(name, safe='')}"
        return base


SECRETS = Resource("", "v1", "secrets")
CONFIGMAPS = Resource("", "v1", "configmaps")
APISERVICES = Resource("apiregistration.k8s.io", "v1", "apiservices", namespaced=False)
SUBJECT_ACCESS_REVIEWS = Resource("authorization.k8s.io", "v1", "subjectaccessreviews",
                                  namespaced=False)


@dataclass(frozen=True)
class Config:
    server: str
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    token: str | None = None
    token_file: str | None = None
    insecure: bool = False


def _materialise(data: str, name: str, tmpdir: Path) -> str:
    """Write base64 `*-data` from a kubeconfig to a 0600 file (ssl wants paths)."""
    path = tmpdir / name
    path.touch(mode=0o600)
    path.write_bytes(base64.b64decode(data))
    return str(path)


def load_config(kubeconfig: str | None = None) -> Config:
    """In-cluster credentials when running in a pod, else a kubeconfig file."""
    path = kubeconfig or os.environ.get("KUBECONFIG")
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not path and host and (SA_DIR / "token").exists():
        server_host = f"[{host}]" if ":" in host else host
        return Config(server=f"https://{server_host}:{port}", ca_file=str(SA_DIR / "ca.crt"),
                      token_file=str(SA_DIR / "token"))
    path = path or str(Path.home() / ".kube" / "config")
    doc: Any = yaml.safe_load(Path(path).read_text())
    ctx_name = doc.get("current-context")
    ctx = next(c["context"] for c in doc["contexts"] if c["name"] == ctx_name)
    cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == ctx["cluster"])
    user: Obj = next((u["user"] for u in doc.get("users", [])
                      if u["name"] == ctx.get("user")), {})
    base = Path(path).parent
    tmp = Path(tempfile.mkdtemp(prefix="cdi-apiserver-"))

    def file_of(key: str, name: str, section: Obj) -> str | None:
        if section.get(f"{key}-data"):
            return _materialise(section[f"{key}-data"], name, tmp)
        if section.get(key):
            return str(base / section[key])
        return None

    return Config(
        server=str(cluster["server"]).rstrip("/"),
        ca_file=file_of("certificate-authority", "ca.crt", cluster),
        cert_file=file_of("client-certificate", "tls.crt", user),
        key_file=file_of("client-key", "tls.key", user),
        token=user.get("token"),
        token_file=user.get("tokenFile"),
        insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
    )


class Kube:
    """JSON requests against one API server, as this server's ServiceAccount."""

    def __init__(self, config: Config, *, user_agent: str = "cdi-apiserver") -> None:
        self.config = config
        ctx = ssl.create_default_context(cafile=config.ca_file)
        if config.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if config.cert_file and config.key_file:
            ctx.load_cert_chain(config.cert_file, config.key_file)
        self._ssl = ctx
        self._agent = user_agent
        self._token = config.token
        self._token_read = -TOKEN_REREAD_SECONDS
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Kube:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _session_(self) -> aiohttp.ClientSession:
        if self._session is None:
            conn = aiohttp.TCPConnector(ssl=self._ssl, limit=32)
            self._session = aiohttp.ClientSession(connector=conn)
        return self._session

    def _headers(self, content_type: str | None) -> dict[str, str]:
        h = {"Accept": "application/json", "User-Agent": self._agent}
        if content_type:
            h["Content-Type"] = content_type
        if self.config.token_file and time.monotonic() - self._token_read > TOKEN_REREAD_SECONDS:
            # Bound service-account tokens rotate; the kubelet rewrites the file.
            self._token = Path(self.config.token_file).read_text().strip()
            self._token_read = time.monotonic()
        if self._token:
            h["Authorization"] = f"Bearer {self._token}"
        return h

    async def request(self, method: str, path: str, body: Any = None, *,
                      content_type: str = "application/json", timeout: float = 30) -> Obj:
        data = None if body is None else json.dumps(body).encode()
        async with self._session_().request(
            method, self.config.server + path, data=data,
            headers=self._headers(content_type if data is not None else None),
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:
            text = await resp.text()
            if resp.status >= 400:
                raise _error(resp.status, text)
            out: Obj = json.loads(text) if text else {}
            return out

    async def get(self, path: str) -> Obj | None:
        try:
            return await self.request("GET", path)
        except NotFound:
            return None

    async def create(self, path: str, body: Obj) -> Obj:
        return await self.request("POST", path, body)

    async def merge_patch(self, path: str, patch: Obj) -> Obj:
        return await self.request("PATCH", path, patch,
                                  content_type="application/merge-patch+json")
