"""The proxy's world for integration tests: the real API server holding the key
ConfigMap, the client Secret, the CA bundle and the PVCs; the real `cdi-uploadproxy`
process; a real mutual-TLS upload server stand-in (`upstream.py`) in its own process.

The proxy dials every upload server at the stand-in's port (`--connect-to`), but checks
its certificate against the Service DNS name `cdi-upload-<pvc>.<ns>.svc`, as in a pod.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cdicontract import annotations as ann
from cdicontract import upload, uploadtoken
from tests.uploadproxy.proxy import pki

PVCS = ("disk", "other", "slow", "paused", "keepalive", "status", "never-ready",
        "not-target", "done", "archive", "headonly")
READY = {ann.UPLOAD_TARGET: "", ann.POD_READY: "true"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    arrivals: list[float] = field(default_factory=list)
    """When each piece of the answer arrived (monotonic seconds)."""


class World:
    def __init__(self, cluster: Any, namespace: str, tmp: Path) -> None:
        self.cluster = cluster
        self.api = cluster.api()
        self.ns = namespace
        self.tmp = tmp
        self.private, self.public = pki.rsa_pair()
        self.server_ca, self.client_ca = pki.CA("upload servers"), pki.CA("proxy clients")
        self.records = tmp / "records"
        self.records.mkdir()
        self.behaviour_file = tmp / "behaviour.json"
        self.behaviour_file.write_text("{}")
        self.procs: list[subprocess.Popen[bytes]] = []
        self.host = "127.0.0.1"
        self.port = 0
        self.metrics_port = 0
        self.proxy: subprocess.Popen[bytes] | None = None

    # -- objects in the API -------------------------------------------------------------

    def create_credentials(self) -> None:
        client = self.client_ca.issue(upload.CLIENT_COMMON_NAME, client=True)
        self.config_map(upload.PUBLIC_KEY_CONFIGMAP, {"id_rsa.pub": self.public.decode()})
        self.config_map(upload.SERVER_CA_BUNDLE_CONFIGMAP,
                        {"ca-bundle.crt": self.server_ca.pem.decode()})
        self.api.create(f"/api/v1/namespaces/{self.ns}/secrets", {
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": upload.PROXY_CLIENT_CERT_SECRET}, "type": "kubernetes.io/tls",
            "data": {"tls.crt": base64.b64encode(client.cert).decode(),
                     "tls.key": base64.b64encode(client.key).decode()}})

    def config_map(self, name: str, data: dict[str, str]) -> None:
        path = f"/api/v1/namespaces/{self.ns}/configmaps"
        if self.api.get_or_none(f"{path}/{name}") is None:
            self.api.create(path, {"apiVersion": "v1", "kind": "ConfigMap",
                                   "metadata": {"name": name}, "data": data})
        else:
            self.api.merge_patch(f"{path}/{name}", {"data": data})

    def pvc(self, name: str, annotations: dict[str, str]) -> None:
        self.api.create(f"/api/v1/namespaces/{self.ns}/persistentvolumeclaims", {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "annotations": annotations},
            # A class no provisioner serves: the claim stays Pending, which the proxy
            # does not look at; only the annotations matter to it.
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "no-such-class",
                     "resources": {"requests": {"storage": "1Mi"}}}})

    def annotate(self, name: str, annotations: dict[str, str | None]) -> None:
        self.api.merge_patch(f"/api/v1/namespaces/{self.ns}/persistentvolumeclaims/{name}",
                             {"metadata": {"annotations": annotations}})

    def token(self, pvc: str, *, namespace: str | None = None,
              private: bytes | None = None, now: Any = None) -> str:
        return uploadtoken.sign(private or self.private, namespace=namespace or self.ns,
                                pvc=pvc, now=now)

    # -- processes ----------------------------------------------------------------------

    def start_upstream(self) -> None:
        names = [pki.server_name(self.ns, p) for p in PVCS]
        pair = self.server_ca.issue("upload server", dns=names)
        (self.tmp / "up.crt").write_bytes(pair.cert)
        (self.tmp / "up.key").write_bytes(pair.key)
        (self.tmp / "client-ca.crt").write_bytes(self.client_ca.pem)
        port_file = self.tmp / "up.port"
        with open(self.tmp / "up.log", "wb") as log:
            proc = self._spawn(
                [sys.executable, "-m", "tests.uploadproxy.proxy.upstream",
                 "--cert", str(self.tmp / "up.crt"), "--key", str(self.tmp / "up.key"),
                 "--client-ca", str(self.tmp / "client-ca.crt"),
                 "--record-dir", str(self.records), "--behaviour-file", str(self.behaviour_file),
                 "--port-file", str(port_file)], log, os.environ)
        self.procs.append(proc)
        deadline = time.monotonic() + 20
        while not port_file.exists() or not port_file.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("upstream did not start: "
                                   + (self.tmp / "up.log").read_text()[-2000:])
            time.sleep(0.05)
        self.upstream_port = int(port_file.read_text())

    def _spawn(self, argv: list[str], log: Any, env: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(argv, cwd=Path(__file__).resolve().parents[3], stderr=log,
                                env=env)

    def start_proxy(self, *extra: str) -> None:
        self.port, self.metrics_port = free_port(), free_port()
        exe = Path(sys.executable).parent / "cdi-uploadproxy"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proxy_log = self.tmp / "proxy.log"
        with open(self.proxy_log, "wb") as log:
            self.proxy = self._spawn(
                [str(exe), "--kubeconfig", str(self.cluster.kubeconfig), "--namespace", self.ns,
                 "--listen", f"127.0.0.1:{self.port}",
                 "--metrics-listen", f"127.0.0.1:{self.metrics_port}",
                 "--tls-cert-file", str(self.tmp / "none.crt"),
                 "--tls-key-file", str(self.tmp / "none.key"),
                 "--connect-to", f"127.0.0.1:{self.upstream_port}",
                 "--credentials-min-refresh", "1", *extra], log, env)
        self.procs.append(self.proxy)
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.request("GET", "/healthz", timeout=2).status == 200:
                    return
            except OSError:
                pass
            if self.proxy.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("proxy did not start: " + self.proxy_log.read_text()[-3000:])
            time.sleep(0.1)

    def stop_upstream(self) -> None:
        up = self.procs[0]
        up.terminate()
        up.wait(10)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    # -- behaviour and records -----------------------------------------------------------

    def behave(self, pvc: str, **b: Any) -> None:
        doc = json.loads(self.behaviour_file.read_text())
        doc[pki.server_name(self.ns, pvc)] = b
        tmp = self.behaviour_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        tmp.rename(self.behaviour_file)

    def received(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted(self.records.glob("*.json"))]

    def wait_received(self, n: int, timeout: float = 20) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(got := self.received()) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"upstream got {len(got)} requests, wanted {n}")
            time.sleep(0.05)
        return got

    def release(self) -> None:
        (self.records / "release").touch()

    # -- the client ----------------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"https://{self.host}:{self.port}{path}"

    def request(self, method: str, path: str, *, token: str | None = None,
                headers: dict[str, str] | None = None, body: Iterable[bytes] | bytes = b"",
                length: int | None = None, timeout: float = 60) -> Response:
        """One request with the standard library, the body sent as given (no chunking
        when `length` is known), the answer read piece by piece with arrival times."""
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # as virtctl --insecure
        conn = http.client.HTTPSConnection(self.host, self.port, context=ctx, timeout=timeout)
        conn.putrequest(method, path, skip_accept_encoding=True)
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        if isinstance(body, bytes):
            length = len(body)
            body = [body] if body else []
        if length is not None and method in ("POST", "PUT"):
            hdrs["Content-Length"] = str(length)
        for k, v in hdrs.items():
            conn.putheader(k, v)
        conn.endheaders()
        try:
            for chunk in body:
                conn.send(chunk)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass  # the proxy answered early; the answer is still there to read
        resp = conn.getresponse()
        out, arrivals = bytearray(), []
        while piece := resp.read1(65536) if method != "HEAD" else b"":
            out += piece
            arrivals.append(time.monotonic())
        conn.close()
        return Response(resp.status, {k: v for k, v in resp.getheaders()}, bytes(out),
                        arrivals)

    def metrics(self) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=10)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
        return text

    def proxy_log_text(self) -> str:
        return self.proxy_log.read_text(errors="replace")


def blocks(total: int, block: bytes) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        piece = block[: min(len(block), total - sent)]
        yield piece
        sent += len(piece)
