"""Reading the API server: GET and watch one PVC, GET the proxy's ConfigMaps and Secret.

Why not the controller's client: the proxy may not import the controller (import-linter),
and it needs a few read-only calls, so a small client of its own is less coupling than a
shared one. Credentials: the pod's service account (token and CA at the standard paths)
or a kubeconfig (client certificate, token, inline or file data). Error bodies from the
API are trimmed before they reach a message.
"""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_REREAD_SECONDS = 60.0

Obj = dict[str, Any]


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message[:200]}")
        self.status = status


class ConfigError(Exception):
    """No usable credentials for the API server."""


@dataclass(frozen=True)
class Config:
    server: str
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    token: str | None = None
    token_file: str | None = None
    insecure: bool = False
    tmpdir: str | None = None
    """Where inline kubeconfig data was written (ssl wants paths); removed on close."""


def load_config(kubeconfig: str | None, env: Mapping[str, str]) -> Config:
    """The kubeconfig when one is named, else the pod's service account."""
    if kubeconfig:
        return _from_kubeconfig(Path(kubeconfig))
    host = env.get("KUBERNETES_SERVICE_HOST")
    port = env.get("KUBERNETES_SERVICE_PORT", "443")
    if not host or not (SA_DIR / "token").exists():
        raise ConfigError("not in a pod (no KUBERNETES_SERVICE_HOST or service account "
                          "token) and no --kubeconfig")
    server_host = f"[{host}]" if ":" in host else host
    return Config(server=f"https://{server_host}:{port}", ca_file=str(SA_DIR / "ca.crt"),
                  token_file=str(SA_DIR / "token"))


def _from_kubeconfig(path: Path) -> Config:
    import yaml  # only for kubeconfigs; in a pod the proxy never loads it

    try:
        doc: Any = yaml.safe_load(path.read_text())
        ctx_name = doc.get("current-context")
        ctx = next(c["context"] for c in doc["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == ctx["cluster"])
        user: Obj = next(
            (u["user"] for u in doc.get("users", []) if u["name"] == ctx.get("user")), {})
    except (OSError, yaml.YAMLError, KeyError, StopIteration, TypeError, AttributeError) as exc:
        raise ConfigError(f"cannot use kubeconfig {path}: {type(exc).__name__}") from None
    tmp: list[Path] = []

    def file_of(key: str, section: Obj) -> str | None:
        if section.get(f"{key}-data"):
            if not tmp:
                tmp.append(Path(tempfile.mkdtemp(prefix="cdi-uploadproxy-")))
            out = tmp[0] / key
            out.write_bytes(base64.b64decode(section[f"{key}-data"]))
            out.chmod(0o600)
            return str(out)
        if section.get(key):
            return str(path.parent / section[key])
        return None

    return Config(
        server=str(cluster["server"]).rstrip("/"),
        ca_file=file_of("certificate-authority", cluster),
        cert_file=file_of("client-certificate", user),
        key_file=file_of("client-key", user),
        token=user.get("token"),
        token_file=user.get("tokenFile"),
        insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
        tmpdir=str(tmp[0]) if tmp else None,
    )


def _pvc_path(namespace: str) -> str:
    return f"/api/v1/namespaces/{quote(namespace, safe='')}/persistentvolumeclaims"


def _core_path(namespace: str, plural: str, name: str) -> str:
    return f"/api/v1/namespaces/{quote(namespace, safe='')}/{plural}/{quote(name, safe='')}"


class Kube:
    """Read-only calls to the API server; one connection pool, closed with `close()`."""

    def __init__(self, config: Config) -> None:
        self.config = config
        ctx = ssl.create_default_context(cafile=config.ca_file)
        if config.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if config.cert_file and config.key_file:
            ctx.load_cert_chain(config.cert_file, config.key_file)
        self._ssl = ctx
        self._token = config.token
        self._token_read = -TOKEN_REREAD_SECONDS
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self.config.tmpdir:
            shutil.rmtree(self.config.tmpdir, ignore_errors=True)

    def _http(self) -> aiohttp.ClientSession:
        # Each upload waiting for its server holds one watch for up to 10 s: the pool
        # must not be what makes uploads wait.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=128))
        return self._session

    def _headers(self) -> dict[str, str]:
        h = {"Accept": "application/json", "User-Agent": "cdi-uploadproxy"}
        if self.config.token_file and time.monotonic() - self._token_read > TOKEN_REREAD_SECONDS:
            # Bound service-account tokens rotate: the kubelet rewrites the file.
            self._token = Path(self.config.token_file).read_text().strip()
            self._token_read = time.monotonic()
        if self._token:
            h["Authorization"] = f"Bearer {self._token}"
        return h

    async def get_pvc(self, namespace: str, name: str, *, timeout: float = 10) -> Obj | None:
        """The PVC, or None when it does not exist."""
        return await self._get(f"{_pvc_path(namespace)}/{quote(name, safe='')}", timeout)

    async def get_config_map(self, namespace: str, name: str, *,
                             timeout: float = 10) -> Obj | None:
        return await self._get(_core_path(namespace, "configmaps", name), timeout)

    async def get_secret(self, namespace: str, name: str, *, timeout: float = 10) -> Obj | None:
        return await self._get(_core_path(namespace, "secrets", name), timeout)

    async def _get(self, path: str, timeout: float) -> Obj | None:
        url = f"{self.config.server}{path}"
        async with self._http().get(url, headers=self._headers(),
                                    timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            if resp.status == 404:
                return None
            text = await resp.text()
            if resp.status >= 400:
                raise ApiError(resp.status, _reason(text))
            doc: Obj = json.loads(text)
            return doc

    async def watch_pvc(self, namespace: str, name: str, resource_version: str,
                        timeout: float) -> AsyncIterator[Obj]:
        """Watch events ({type, object}) of one PVC after `resource_version`."""
        params = {"watch": "1", "fieldSelector": f"metadata.name={name}",
                  "resourceVersion": resource_version,
                  "timeoutSeconds": str(max(1, int(timeout + 0.999)))}
        url = f"{self.config.server}{_pvc_path(namespace)}?{urlencode(params)}"
        async with self._http().get(url, headers=self._headers(),
                                    timeout=aiohttp.ClientTimeout(total=timeout + 5)) as resp:
            if resp.status >= 400:
                raise ApiError(resp.status, _reason(await resp.text()))
            while True:
                # One event per line; a PVC is small, so a line is bounded by the API's
                # own object size limit.
                line = await resp.content.readline()
                if not line:
                    return
                if not line.strip():
                    continue
                event: Obj = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise ApiError(int(status.get("code", 500)), str(status.get("message", "")))
                yield event


def _reason(text: str) -> str:
    try:
        doc = json.loads(text)
        return str(doc.get("message", ""))[:200]
    except (ValueError, AttributeError):
        return text[:200]
