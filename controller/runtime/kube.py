"""The one module that talks to the Kubernetes API: JSON over aiohttp, objects as dicts.

Why aiohttp and not the `kubernetes` package's generated client: the controller handles
plain dicts end to end (pure builders and status functions take and return JSON), watches
stream line-delimited JSON, and skipping model (de)serialisation keeps the controller's
CPU per DataVolume and its memory small. Errors are translated here, once, into
`ApiError` subclasses the rest branches on (`Conflict`, `NotFound`, `Gone`); response
bodies are trimmed so no payload ends up in a log line.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import ssl
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import yaml

from controller.runtime.objects import Obj

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"HTTP {status} {reason}: {message[:300]}")
        self.status = status
        self.reason = reason
        self.message = message[:300]


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    """409: AlreadyExists on create, or a stale resourceVersion on update."""


class Gone(ApiError):
    """410: the watch's resourceVersion is too old; list again."""


def _error(status: int, text: str) -> ApiError:
    reason, message = "", text
    try:
        doc = json.loads(text)
        reason, message = str(doc.get("reason", "")), str(doc.get("message", text))
    except ValueError:
        pass
    cls = {404: NotFound, 409: Conflict, 410: Gone}.get(status, ApiError)
    return cls(status, reason, message)


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None,
             sub: str | None = None) -> str:
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace)}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{quote(name)}"
        if sub:
            base += f"/{sub}"
        return base


PODS = Resource("", "v1", "pods")
PVCS = Resource("", "v1", "persistentvolumeclaims")
EVENTS = Resource("", "v1", "events")
SECRETS = Resource("", "v1", "secrets")
SERVICES = Resource("", "v1", "services")
CONFIGMAPS = Resource("", "v1", "configmaps")
NODES = Resource("", "v1", "nodes", namespaced=False)
STORAGECLASSES = Resource("storage.k8s.io", "v1", "storageclasses", namespaced=False)
LEASES = Resource("coordination.k8s.io", "v1", "leases")
VWCS = Resource("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations",
                namespaced=False)
DATAVOLUMES = Resource("cdi.kubevirt.io", "v1beta1", "datavolumes")
CDICONFIGS = Resource("cdi.kubevirt.io", "v1beta1", "cdiconfigs", namespaced=False)
STORAGEPROFILES = Resource("cdi.kubevirt.io", "v1beta1", "storageprofiles", namespaced=False)
DATASOURCES = Resource("cdi.kubevirt.io", "v1beta1", "datasources")
VOLUMESNAPSHOTS = Resource("snapshot.storage.k8s.io", "v1", "volumesnapshots")
VOLUMESNAPSHOTCONTENTS = Resource("snapshot.storage.k8s.io", "v1", "volumesnapshotcontents",
                                  namespaced=False)
CSIDRIVERS = Resource("storage.k8s.io", "v1", "csidrivers", namespaced=False)
VOLUMESNAPSHOTCLASSES = Resource("snapshot.storage.k8s.io", "v1", "volumesnapshotclasses",
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


def _materialise(data: str, suffix: str, tmpdir: Path) -> str:
    """Write base64 `*-data` from a kubeconfig to a 0600 file (ssl wants paths)."""
    path = tmpdir / suffix
    path.write_bytes(base64.b64decode(data))
    path.chmod(0o600)
    return str(path)


def load_config(kubeconfig: str | None = None) -> Config:
    """In-cluster credentials when running in a pod, else a kubeconfig file."""
    path = kubeconfig or os.environ.get("KUBECONFIG")
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get(
        "KUBERNETES_SERVICE_PORT", "443")
    if not path and host and (SA_DIR / "token").exists():
        server_host = f"[{host}]" if ":" in host else host
        return Config(server=f"https://{server_host}:{port}", ca_file=str(SA_DIR / "ca.crt"),
                      token_file=str(SA_DIR / "token"))
    path = path or str(Path.home() / ".kube" / "config")
    doc: Any = yaml.safe_load(Path(path).read_text())
    ctx_name = doc.get("current-context")
    ctx = next(c["context"] for c in doc["contexts"] if c["name"] == ctx_name)
    cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == ctx["cluster"])
    user: Obj = next((u["user"] for u in doc.get("users", []) if u["name"] == ctx.get("user")), {})
    base = Path(path).parent
    tmp = Path(tempfile.mkdtemp(prefix="cdi-controller-"))

    def file_of(key: str, suffix: str, section: Obj) -> str | None:
        if section.get(f"{key}-data"):
            return _materialise(section[f"{key}-data"], suffix, tmp)
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
    """JSON requests, lists and watches against one API server."""

    def __init__(self, config: Config, *, user_agent: str = "cdi-controller") -> None:
        self.config = config
        ctx = ssl.create_default_context(cafile=config.ca_file)
        if config.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if config.cert_file and config.key_file:
            ctx.load_cert_chain(config.cert_file, config.key_file)
        self._ssl = ctx
        self._agent = user_agent
        self._token: str | None = config.token
        self._token_read = 0.0
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
            self._session = aiohttp.ClientSession(connector=conn, json_serialize=json.dumps)
        return self._session

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        h = {"Accept": "application/json", "User-Agent": self._agent}
        if content_type:
            h["Content-Type"] = content_type
        if self.config.token_file and time.monotonic() - self._token_read > 60:
            # Bound service-account tokens rotate; the kubelet rewrites the file.
            self._token = Path(self.config.token_file).read_text().strip()
            self._token_read = time.monotonic()
        if self._token:
            h["Authorization"] = f"Bearer {self._token}"
        return h

    async def request(self, method: str, path: str, body: Any = None, *,
                      params: dict[str, str] | None = None,
                      content_type: str = "application/json",
                      timeout: float = 30) -> Obj:
        url = self.config.server + path + (("?" + urlencode(params)) if params else "")
        data = None if body is None else json.dumps(body).encode()
        async with self._session_().request(
            method, url, data=data, headers=self._headers(content_type if data else None),
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

    async def replace(self, path: str, body: Obj) -> Obj:
        return await self.request("PUT", path, body)

    async def merge_patch(self, path: str, patch: Obj) -> Obj:
        return await self.request("PATCH", path, patch,
                                  content_type="application/merge-patch+json")

    async def strategic_patch(self, path: str, patch: Obj) -> Obj:
        return await self.request("PATCH", path, patch,
                                  content_type="application/strategic-merge-patch+json")

    async def delete(self, path: str, *, uid: str | None = None) -> None:
        body: Obj = {"kind": "DeleteOptions", "apiVersion": "v1",
                     "propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        with contextlib.suppress(NotFound):
            await self.request("DELETE", path, body)

    async def list(self, path: str, params: dict[str, str] | None = None) -> Obj:
        return await self.request("GET", path, params=params, timeout=120)

    async def watch(self, path: str, resource_version: str,
                    params: dict[str, str] | None = None,
                    timeout_seconds: int = 300) -> AsyncIterator[Obj]:
        """Watch events ({type, object}) from `resource_version` until the server ends it."""
        q = dict(params or {})
        q.update({"watch": "1", "resourceVersion": resource_version,
                  "allowWatchBookmarks": "true", "timeoutSeconds": str(timeout_seconds)})
        url = self.config.server + path + "?" + urlencode(q)
        async with self._session_().get(
            url, headers=self._headers(),
            timeout=aiohttp.ClientTimeout(total=timeout_seconds + 30, sock_read=None),
        ) as resp:
            if resp.status >= 400:
                raise _error(resp.status, await resp.text())
            buf = b""
            async for chunk in resp.content.iter_any():
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if not line.strip():
                        continue
                    event: Obj = json.loads(line)
                    if event.get("type") == "ERROR":
                        st = event.get("object") or {}
                        raise _error(int(st.get("code", 500)), json.dumps(st))
                    yield event
