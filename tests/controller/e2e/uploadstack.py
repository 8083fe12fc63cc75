"""The upload stack as a user meets it: token API, proxy URL from CDIConfig, upload calls.

Everything goes through the real pieces: the UploadTokenRequest is created through the
real kube-apiserver (aggregated to cdi-apiserver), the proxy is reached at the URL the
controller publishes in CDIConfig `status.uploadProxyURL` (a NodePort on the node's
address, from this host), and the proxy forwards to the per-PVC upload server pod.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3

from tests.cluster.helpers import wait_for

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

TOKEN_PATH = "/apis/upload.cdi.kubevirt.io/v1beta1/namespaces/{ns}/uploadtokenrequests"
MiB = 1 << 20


def deployment_available(api: Any, name: str) -> bool:
    d = api.get_or_none(f"/apis/apps/v1/namespaces/cdi/deployments/{name}")
    conds = (d or {}).get("status", {}).get("conditions", [])
    return any(c["type"] == "Available" and c["status"] == "True" for c in conds) and (
        d["status"].get("readyReplicas", 0) >= d["spec"]["replicas"])


@dataclass(frozen=True)
class UploadStack:
    cdi: Any
    proxy_url: str

    @property
    def api(self) -> Any:
        return self.cdi.api

    def token(self, ns: str, pvc: str) -> str:
        body = {"apiVersion": "upload.cdi.kubevirt.io/v1beta1", "kind": "UploadTokenRequest",
                "metadata": {"name": pvc}, "spec": {"pvcName": pvc}}
        made = self.api.create(TOKEN_PATH.format(ns=ns), body)
        return str(made["status"]["token"])

    def url(self, variant: str = "upload", version: str = "v1beta1") -> str:
        return f"{self.proxy_url}/{version}/{variant}"

    def post(self, token: str | None, data: Any, *, variant: str = "upload",
             version: str = "v1beta1", headers: dict[str, str] | None = None,
             timeout: float = 300) -> requests.Response:
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        if variant.startswith("upload-form"):
            files = {"file": ("disk.img", data, "application/octet-stream")}
            return requests.post(self.url(variant, version), files=files, headers=h,
                                 verify=False, timeout=timeout)
        h.setdefault("Content-Type", "application/octet-stream")
        return requests.post(self.url(variant, version), data=data, headers=h,
                             verify=False, timeout=timeout)

    def resume(self, token: str, path: Path, offset: int, timeout: float = 60) -> requests.Response:
        """POST the rest of `path` from `offset`. A 503 means the server has not yet
        noticed the old connection's drop, 416 that more had arrived than the HEAD
        said (cdicontract.upload): ask again shortly, from the server's offset."""
        deadline = time.monotonic() + timeout
        while True:
            with path.open("rb") as f:
                f.seek(offset)
                rest = f.read()
            r = self.post(token, rest, headers={"Upload-Offset": str(offset)})
            if r.status_code == 416 and "Upload-Offset" in r.headers:
                offset = int(r.headers["Upload-Offset"])  # more had arrived: the newer point
            elif r.status_code != 503 or time.monotonic() > deadline:
                return r
            time.sleep(1)

    def head(self, token: str | None, variant: str = "upload-async") -> requests.Response:
        h = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.head(self.url(variant), headers=h, verify=False, timeout=30)

    def wait_pvc_annotation(self, ns: str, pvc: str, key: str, value: str,
                            timeout: float = 120) -> dict[str, Any]:
        return wait_for(f"{ns}/{pvc} {key}={value}", lambda: (
            p if (p := self.api.get_or_none(
                f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{pvc}"))
            and p["metadata"].get("annotations", {}).get(key) == value else None),
            timeout=timeout)


def upload_stack_ready(cdi: Any) -> UploadStack:
    api = cdi.api
    for name in ("cdi-uploadproxy", "cdi-apiserver"):
        wait_for(f"{name} Available", lambda name=name: deployment_available(api, name),
                 timeout=120)
    wait_for("APIService Available", lambda: any(
        c["type"] == "Available" and c["status"] == "True"
        for c in api.get("/apis/apiregistration.k8s.io/v1/apiservices/"
                         "v1beta1.upload.cdi.kubevirt.io").get("status", {})
        .get("conditions", [])), timeout=90)
    url = wait_for("CDIConfig status.uploadProxyURL", lambda: api.get(
        "/apis/cdi.kubevirt.io/v1beta1/cdiconfigs/config").get("status", {})
        .get("uploadProxyURL"), timeout=60)
    if not url.startswith("https://"):
        url = f"https://{url}"
    wait_for("the proxy answers /healthz", lambda: requests.get(
        f"{url}/healthz", verify=False, timeout=5).ok, timeout=60)
    return UploadStack(cdi, url.rstrip("/"))


def chunks(path: Path, size: int = MiB, *, delay: float = 0.0,
           stop_after: int | None = None) -> Iterator[bytes]:
    sent = 0
    with path.open("rb") as f:
        while block := f.read(size):
            if stop_after is not None and sent + len(block) > stop_after:
                block = block[: stop_after - sent]
                if block:
                    yield block
                return
            sent += len(block)
            yield block
            if delay:
                time.sleep(delay)


class PacedFile:
    """A file sent at a set pace with its length announced (so the server knows the total
    and can report a percentage): `read` hands out `block` bytes every `interval` s."""

    def __init__(self, path: Path, block: int = 256 * 1024, interval: float = 0.1) -> None:
        self._f = path.open("rb")
        self._len = path.stat().st_size
        self._block, self._interval = block, interval

    def __len__(self) -> int:
        return self._len

    def read(self, _size: int = -1) -> bytes:
        time.sleep(self._interval)
        data = self._f.read(self._block)
        if not data:
            self._f.close()
        return data


def send_part_then_drop(url: str, token: str, path: Path, upto: int,
                        headers: dict[str, str] | None = None) -> None:
    """POST `path` announcing its full length, send only `upto` bytes, then cut the TCP
    connection, as a client whose network drops does."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 443
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection((host, port), timeout=30)
    sock = ctx.wrap_socket(raw, server_hostname=host)
    head = [f"POST {parts.path} HTTP/1.1", f"Host: {host}:{port}",
            f"Authorization: Bearer {token}", "Content-Type: application/octet-stream",
            f"Content-Length: {path.stat().st_size}"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    for block in chunks(path, stop_after=upto):
        sock.sendall(block)
    time.sleep(1.0)  # let the bytes reach the server before the cut
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()
