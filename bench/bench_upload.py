#!/usr/bin/env python3
"""Upload benchmark: an upload through the proxy, side by side with an HTTP import and curl.

On the local cluster (the product installed with `kubectl apply -k deploy/`), for the
cached realistic disk of bench_importer.py (ext4 with real files, N GiB virtual, as qcow2),
alternating in one run, --repeat times per size:

  upload  DataVolume source.upload (Filesystem), wait UploadReady, UploadTokenRequest,
          POST the qcow2 to the proxy's sync path (`/v1beta1/upload`, the path `virtctl
          image-upload` uses) at CDIConfig status.uploadProxyURL, from this host. Timed:
          first byte of the POST -> DV Succeeded, last byte handed to the socket -> DV
          Succeeded, and DV create -> Succeeded (for the comparison with the import).
  http    DataVolume source.http of the same qcow2 from nginx in the cluster (a pod behind
          a Service, as tests/controller/e2e/imageserver.py runs it): DV create -> Succeeded.
  curl    `curl -T qcow2` over TLS to a receiver on this host that discards the bytes: the
          limit of moving the bytes at all.

Both transfers' volumes are checked against the raw disk (sha256 of the first raw-size
bytes of disk.img, as the e2e tests check; outside the clock). While each transfer runs,
a sampler reads VmRSS/VmHWM every 0.2 s of this cluster's processes whose command line is
cdi-uploadproxy, cdi-uploadserver or cdi-importer (the python process; the server's and
importer's whole process tree is summed too); the proxy's VmHWM is reset before each
upload (/proc/PID/clear_refs 5), so each size's proxy peak is its own.

Caches: the qcow2 is hard-linked into nginx's docroot, so both transfers read the same
(page-cached) file; `sync` runs before every timed run.

Targets (issue 9): upload (create -> Succeeded) <= 1.2x the HTTP import; proxy RSS flat in
the image size and <= 64 MiB.

Usage: CDI_PY_CLUSTER_DIR=/work/clusters/bench PATH=$VENV/bin:$PATH \\
       $VENV/bin/python bench/bench_upload.py [--size-gib 1,4] [--repeat 3]
Without CDI_PY_CLUSTER_DIR a cluster is started in a temporary directory and stopped.
Run it with the Python of the venv the cluster's node runs programs from (its bin
directory tells this cluster's processes from other clusters' on the same host).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import math
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "hack")]

from localcluster.cluster import Cluster  # noqa: E402
from localcluster.pytest_plugin import ClusterHandle  # noqa: E402

from bench.bench_importer import CACHE, build_images  # noqa: E402
from bench.bench_integrity import sha256_cached  # noqa: E402
from controller import certs  # noqa: E402
from tests.controller.e2e import imageserver  # noqa: E402
from tests.controller.e2e.conftest import (  # noqa: E402
    Cdi,
    deployment_available,
    disk_of,
    dv_manifest,
    sha256_prefix,
)
from tests.controller.e2e.uploadstack import UploadStack, upload_stack_ready  # noqa: E402

MiB = 1 << 20
BLOCK = MiB
ROLES = ("cdi-uploadproxy", "cdi-uploadserver", "cdi-importer")


# -- RSS sampling ------------------------------------------------------------------------

def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


class RssSampler:
    """Every 0.2 s: VmRSS/VmHWM of this cluster's python process of each role, and the
    summed VmRSS of its process tree. Peaks since the last reset(), in KiB."""

    def __init__(self, bin_dir: Path) -> None:
        self.scripts = {str(bin_dir / r).encode(): r for r in ROLES}
        self.lock = threading.Lock()
        self.peak_rss: dict[str, int] = {}
        self.peak_hwm: dict[str, int] = {}
        self.peak_tree: dict[str, int] = {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def pids(self) -> dict[str, list[int]]:
        found: dict[str, list[int]] = {}
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            # The python process itself, not the bwrap/nsenter wrappers around it.
            if len(argv) > 1 and b"python" in argv[0] and argv[1] in self.scripts:
                found.setdefault(self.scripts[argv[1]], []).append(int(proc.name))
        return found

    @staticmethod
    def _tree_kib(pid: int) -> int:
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                    children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(
                        int(entry))
                except (OSError, ValueError, IndexError):
                    continue
        total, todo = 0, [pid]
        while todo:
            p = todo.pop()
            total += _status_kib(p, "VmRSS:")
            todo.extend(children.get(p, []))
        return total

    def reset(self) -> None:
        with self.lock:
            self.peak_rss, self.peak_hwm, self.peak_tree = {}, {}, {}
        for pid in self.pids().get("cdi-uploadproxy", []):
            with contextlib.suppress(OSError):
                Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM

    def snapshot(self) -> dict[str, tuple[int, int, int]]:
        with self.lock:
            return {r: (self.peak_rss.get(r, 0), self.peak_hwm.get(r, 0),
                        self.peak_tree.get(r, 0)) for r in ROLES}

    def _run(self) -> None:
        while not self._stop.is_set():
            for role, pids in self.pids().items():
                for pid in pids:
                    rss, hwm = _status_kib(pid, "VmRSS:"), _status_kib(pid, "VmHWM:")
                    tree = self._tree_kib(pid) if role != "cdi-uploadproxy" else rss
                    with self.lock:
                        self.peak_rss[role] = max(self.peak_rss.get(role, 0), rss)
                        self.peak_hwm[role] = max(self.peak_hwm.get(role, 0), hwm)
                        self.peak_tree[role] = max(self.peak_tree.get(role, 0), tree)
            time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._t.join()


# -- the limit: a TLS receiver that discards ---------------------------------------------

class _Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _discard(self) -> None:
        left = int(self.headers.get("Content-Length", "0"))
        buf = bytearray(BLOCK)
        view = memoryview(buf)
        while left:
            n = self.rfile.readinto(view[: min(left, BLOCK)])
            if not n:
                break
            left -= n
        self.send_response(200 if not left else 400)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_PUT = do_POST = _discard

    def log_message(self, format: str, *args: Any) -> None:
        pass


def start_sink(work: Path) -> tuple[str, ThreadingHTTPServer]:
    cert = certs.generate("sink", "bench")
    (work / "sink.crt").write_bytes(cert.cert_pem)
    (work / "sink.key").write_bytes(cert.key_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(work / "sink.crt", work / "sink.key")
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return f"https://127.0.0.1:{srv.server_address[1]}/", srv


# -- a streaming POST that knows when its first and last bytes went ---------------------

@dataclass
class Sent:
    first: float
    last: float
    answered: float
    status: int
    body: str


def stream_post(url: str, path: Path, headers: dict[str, str]) -> Sent:
    """POST `path` with Content-Length over TLS (not verified: the proxy's certificate is
    self-signed, as `virtctl image-upload --insecure` accepts), 1 MiB writes."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 443
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=3600)
    conn.putrequest("POST", parts.path or "/")
    for k, v in {**headers, "Content-Length": str(path.stat().st_size)}.items():
        conn.putheader(k, v)
    conn.endheaders()
    sock = conn.sock
    assert sock is not None
    first = time.monotonic()
    with path.open("rb") as f:
        while block := f.read(BLOCK):
            sock.sendall(block)
    last = time.monotonic()
    resp = conn.getresponse()
    body = resp.read().decode(errors="replace")
    answered = time.monotonic()
    conn.close()
    return Sent(first, last, answered, resp.status, body)


# -- the runs ----------------------------------------------------------------------------

@dataclass
class Size:
    gib: int
    qcow2: Path
    raw: Path
    raw_sha: str
    raw_size: int
    url_name: str
    rows: dict[str, list[float]] = field(default_factory=dict)
    rss: dict[str, list[dict[str, tuple[int, int, int]]]] = field(default_factory=dict)

    def add(self, key: str, value: float) -> None:
        self.rows.setdefault(key, []).append(value)


def wait_dv(cdi: Cdi, ns: str, name: str, phase: str, timeout: float) -> float:
    """Polls every 0.1 s; returns the monotonic time the phase was first seen."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        dv = cdi.dv(ns, name)
        last = (dv or {}).get("status", {})
        if last.get("phase") == phase:
            return time.monotonic()
        if last.get("phase") == "Failed":
            break
        time.sleep(0.1)
    raise SystemExit(f"DataVolume {ns}/{name} not {phase}: {last}")


def claim_size(gib: int) -> str:
    return f"{math.ceil(gib * 1.1)}Gi"  # room for the filesystem overhead


def verify(cdi: Cdi, ns: str, name: str, s: Size, check: bool) -> None:
    if not check:
        return
    disk = disk_of(cdi.cluster, ns, name)
    if disk.stat().st_size < s.raw_size or sha256_prefix(disk, s.raw_size) != s.raw_sha:
        raise SystemExit(f"{ns}/{name}: the volume's bytes differ from {s.raw}")


def delete_dv(cdi: Cdi, ns: str, name: str) -> None:
    cdi.api.delete(f"/apis/cdi.kubevirt.io/v1beta1/namespaces/{ns}/datavolumes/{name}")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and cdi.api.get_or_none(
            f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{name}"):
        time.sleep(0.3)


def run_upload(stack: UploadStack, ns: str, s: Size, rss: RssSampler, check: bool) -> None:
    cdi: Cdi = stack.cdi
    name = f"up-{uuid.uuid4().hex[:6]}"
    subprocess.run(["sync"], check=True)
    rss.reset()
    t0 = time.monotonic()
    cdi.create_dv(ns, dv_manifest(name, {"upload": {}}, size=claim_size(s.gib),
                                  mode="Filesystem"))
    ready = wait_dv(cdi, ns, name, "UploadReady", 300)
    token = stack.token(ns, name)
    sent = stream_post(stack.url("upload"), s.qcow2, {
        "Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"})
    if sent.status != 200:
        raise SystemExit(f"upload answered {sent.status}: {sent.body[:500]}")
    done = wait_dv(cdi, ns, name, "Succeeded", 600)
    s.add("upload: first byte -> Succeeded", done - sent.first)
    s.add("upload: last byte -> Succeeded", done - sent.last)
    s.add("upload: first byte -> 200", sent.answered - sent.first)
    s.add("upload: create -> Succeeded", done - t0)
    s.add("upload: create -> UploadReady", ready - t0)
    snap = rss.snapshot()
    s.rss.setdefault("upload", []).append(snap)
    print(f"  upload {s.gib} GiB: first->Succeeded {done - sent.first:.1f}s, "
          f"last->Succeeded {done - sent.last:.1f}s, create->Succeeded {done - t0:.1f}s; "
          f"proxy rss/hwm {snap['cdi-uploadproxy'][0] / 1024:.0f}/"
          f"{snap['cdi-uploadproxy'][1] / 1024:.0f} MiB, server rss/hwm/tree "
          f"{snap['cdi-uploadserver'][0] / 1024:.0f}/{snap['cdi-uploadserver'][1] / 1024:.0f}/"
          f"{snap['cdi-uploadserver'][2] / 1024:.0f} MiB", flush=True)
    verify(cdi, ns, name, s, check)
    delete_dv(cdi, ns, name)


def run_http(cdi: Cdi, server: imageserver.ImageServer, ns: str, s: Size, rss: RssSampler,
             check: bool) -> None:
    name = f"http-{uuid.uuid4().hex[:6]}"
    subprocess.run(["sync"], check=True)
    rss.reset()
    t0 = time.monotonic()
    cdi.create_dv(ns, dv_manifest(name, {"http": {"url": f"{server.http}/{s.url_name}"}},
                                  size=claim_size(s.gib), mode="Filesystem"))
    done = wait_dv(cdi, ns, name, "Succeeded", 600)
    s.add("http: create -> Succeeded", done - t0)
    s.rss.setdefault("http", []).append(rss.snapshot())
    snap = rss.snapshot()["cdi-importer"]
    print(f"  http   {s.gib} GiB: create->Succeeded {done - t0:.1f}s; importer rss/hwm/tree "
          f"{snap[0] / 1024:.0f}/{snap[1] / 1024:.0f}/{snap[2] / 1024:.0f} MiB", flush=True)
    verify(cdi, ns, name, s, check)
    delete_dv(cdi, ns, name)


def run_curl(sink: str, s: Size) -> None:
    subprocess.run(["sync"], check=True)
    t0 = time.monotonic()
    r = subprocess.run(["curl", "-sS", "-k", "--fail", "-T", str(s.qcow2), "-o", "/dev/null",
                        "-w", "%{size_upload}", sink], check=True, capture_output=True, text=True)
    took = time.monotonic() - t0
    if int(float(r.stdout)) != s.qcow2.stat().st_size:
        raise SystemExit(f"curl sent {r.stdout} bytes of {s.qcow2.stat().st_size}")
    s.add("curl -T: total", took)
    t0 = time.monotonic()
    sent = stream_post(sink, s.qcow2, {"Content-Type": "application/octet-stream"})
    if sent.status != 200:
        raise SystemExit(f"the sink answered {sent.status}")
    s.add("this script's POST -> sink", sent.answered - t0)
    print(f"  curl   {s.gib} GiB: {took:.1f}s ({s.qcow2.stat().st_size / MiB / took:.0f} MiB/s); "
          f"this script's client: {sent.answered - t0:.1f}s", flush=True)


def report(s: Size) -> None:
    med = {k: statistics.median(v) for k, v in s.rows.items()}
    mib = s.qcow2.stat().st_size / MiB
    print(f"\n== {s.gib} GiB virtual, qcow2 {mib:.0f} MiB, medians of {len(s.rows[next(iter(s.rows))])}"
          f" run(s) ==")
    for k, v in s.rows.items():
        print(f"  {k:34s} {med[k]:7.1f} s   (runs: {', '.join(f'{x:.1f}' for x in v)})")
    up, up_first = med["upload: create -> Succeeded"], med["upload: first byte -> Succeeded"]
    http_, curl = med["http: create -> Succeeded"], med["curl -T: total"]
    print(f"  ratio upload/http (create -> Succeeded both)   {up / http_:.2f}  "
          f"(target <= 1.2: {'met' if up / http_ <= 1.2 else 'NOT met'})")
    print(f"  ratio upload/curl (first byte -> Succeeded / curl -T)  {up_first / curl:.2f}")
    paired = [u / h for u, h in zip(s.rows["upload: create -> Succeeded"],
                                    s.rows["http: create -> Succeeded"], strict=True)]
    print(f"  upload/http per round (same round, side by side): "
          f"{', '.join(f'{x:.2f}' for x in paired)}; median {statistics.median(paired):.2f}")
    proxy_rss = max(r["cdi-uploadproxy"][0] for r in s.rss["upload"]) / 1024
    proxy_hwm = max(r["cdi-uploadproxy"][1] for r in s.rss["upload"]) / 1024
    srv = [r["cdi-uploadserver"] for r in s.rss["upload"]]
    imp = [r["cdi-importer"] for r in s.rss["http"]]
    print(f"  proxy peak VmRSS {proxy_rss:.1f} MiB, VmHWM {proxy_hwm:.1f} MiB "
          f"(target <= 64: {'met' if max(proxy_rss, proxy_hwm) <= 64 else 'NOT met'})")
    print(f"  upload server peak VmRSS {max(r[0] for r in srv) / 1024:.1f} MiB, VmHWM "
          f"{max(r[1] for r in srv) / 1024:.1f} MiB, process tree {max(r[2] for r in srv) / 1024:.1f} MiB")
    print(f"  importer (http) peak VmRSS {max(r[0] for r in imp) / 1024:.1f} MiB, VmHWM "
          f"{max(r[1] for r in imp) / 1024:.1f} MiB, process tree {max(r[2] for r in imp) / 1024:.1f} MiB")


def proxy_pod_url(cdi: Cdi) -> str:
    """https://<pod IP>:<targetPort> of a ready cdi-uploadproxy pod."""
    svc = cdi.api.get("/api/v1/namespaces/cdi/services/cdi-uploadproxy")
    port = svc["spec"]["ports"][0]["targetPort"]
    selector = ",".join(f"{k}={v}" for k, v in svc["spec"]["selector"].items())
    pods = cdi.api.get("/api/v1/namespaces/cdi/pods", labelSelector=selector)["items"]
    ready = [p for p in pods if any(c["type"] == "Ready" and c["status"] == "True"
                                    for c in p.get("status", {}).get("conditions", []))]
    if not ready or not isinstance(port, int):
        raise SystemExit(f"no ready cdi-uploadproxy pod with a numeric targetPort ({port!r})")
    return f"https://{ready[0]['status']['podIP']}:{port}"


def install(cluster: ClusterHandle) -> Cdi:
    from tests.cluster.helpers import wait_for

    cluster.kubectl("apply", "-k", str(ROOT / "deploy"))
    api = cluster.api()
    wait_for("cdi-deployment Available", lambda: deployment_available(api), timeout=120)
    wait_for("webhook caBundle", lambda: api.get(
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/"
        "cdi-api-datavolume-validate")["webhooks"][0]["clientConfig"].get("caBundle"),
        timeout=60)
    return Cdi(cluster)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-gib", default="1,4", help="comma-separated image sizes (GiB virtual)")
    ap.add_argument("--fill-gib", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-verify", action="store_true", help="skip the volume checks")
    ap.add_argument("--to-pod", action="store_true",
                    help="POST to the proxy pod's IP and port instead of the NodePort URL of "
                         "CDIConfig (skips the simulated node's userspace NodePort proxy)")
    args = ap.parse_args()

    sizes = []
    for gib in (int(x) for x in args.size_gib.split(",")):
        imgs = build_images(gib, args.fill_gib)
        raw = imgs["raw"]
        sizes.append(Size(gib, imgs["qcow2"], raw, sha256_cached(raw) if not args.no_verify
                          else "", raw.stat().st_size, f"disk-{gib}g.qcow2"))

    reuse = os.environ.get("CDI_PY_CLUSTER_DIR")
    c = Cluster(reuse or tempfile.mkdtemp(prefix="cdi-bench-upload-"))
    c.up()
    work = Path(tempfile.mkdtemp(prefix="bench-upload-", dir=CACHE))
    rss = RssSampler(Path(sys.executable).parent)
    srv = None
    ns = f"bench-up-{uuid.uuid4().hex[:6]}"
    cdi = None
    try:
        cluster = ClusterHandle(c)
        cdi = install(cluster)
        stack = upload_stack_ready(cdi)
        if args.to_pod:
            stack = UploadStack(cdi, proxy_pod_url(cdi))
        api = cdi.api
        api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                          "metadata": {"name": ns}})
        while api.get_or_none(f"/api/v1/namespaces/{ns}/serviceaccounts/default") is None:
            time.sleep(0.2)
        docroot = work / "docroot"
        server = imageserver.start(api, ns, docroot)
        for s in sizes:
            os.link(s.qcow2, docroot / s.url_name)  # same inode: same page cache
        sink, srv = start_sink(work)
        print(f"proxy {stack.proxy_url}, image server {server.http}, sink {sink}", flush=True)
        for i in range(args.repeat):
            for s in sizes:
                print(f"round {i + 1}/{args.repeat}, {s.gib} GiB", flush=True)
                # Rotate the order so that no case always runs first after a pause.
                cases = [lambda s=s: run_upload(stack, ns, s, rss, not args.no_verify),
                         lambda s=s: run_http(cdi, server, ns, s, rss, not args.no_verify),
                         lambda s=s: run_curl(sink, s)]
                for case in cases[i % 3:] + cases[: i % 3]:
                    case()
        for s in sizes:
            report(s)
    finally:
        rss.stop()
        if srv is not None:
            srv.shutdown()
        if cdi is not None and cdi.api.get_or_none(f"/api/v1/namespaces/{ns}"):
            cdi.api.delete(f"/api/v1/namespaces/{ns}")
        if not reuse:
            c.down()
        shutil.rmtree(work, ignore_errors=True)  # the docroot holds hard links only
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
