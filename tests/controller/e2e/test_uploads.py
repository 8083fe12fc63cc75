"""Uploads end to end on the real control plane: token API, proxy, upload server, controller.

Every test goes the way a user's client goes: an UploadTokenRequest through the real
kube-apiserver, the proxy at CDIConfig's `status.uploadProxyURL` from this host, the bytes
forwarded over mutual TLS to the upload server pod, the DataVolume's phases from the
controller, and the volume's bytes compared with the image.
"""

from __future__ import annotations

import gzip
import json
import lzma
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from cdicontract import uploadtoken
from tests import imagefactory
from tests.cluster.helpers import wait_for
from tests.controller.e2e.conftest import MiB, disk_of, dv_manifest, sha256_prefix
from tests.controller.e2e.uploadstack import (
    PacedFile,
    UploadStack,
    chunks,
    send_part_then_drop,
    upload_stack_ready,
)

pytestmark = pytest.mark.cluster

PVC_ANN = "cdi.kubevirt.io/"


@pytest.fixture(scope="module")
def stack(cdi: Any) -> UploadStack:
    return upload_stack_ready(cdi)


@pytest.fixture(scope="module")
def disks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("uploads")
    ref = imagefactory.make_reference(work, 8 * MiB)
    qcow2 = imagefactory.convert(ref, "qcow2")
    gz = work / "reference.raw.gz"
    with ref.path.open("rb") as src, gzip.open(gz, "wb", compresslevel=1) as dst:
        shutil.copyfileobj(src, dst)
    xz = work / "reference.raw.xz"
    with ref.path.open("rb") as src, lzma.open(xz, "wb", preset=0) as dst:
        shutil.copyfileobj(src, dst)
    paced = work / "paced.raw"  # 32 MiB of data: sent at 2.5 MiB/s, an upload of ~13 s
    with paced.open("wb") as f:
        for i in range(32):
            f.write(bytes([i + 1]) * MiB)
    big = work / "big.raw"  # larger than a 64Mi volume can hold
    with big.open("wb") as f:
        f.truncate(160 * MiB)
        f.write(b"\x07" * MiB)
    return {"ref": ref, "qcow2": qcow2, "raw.gz": gz, "raw.xz": xz, "big": big,
            "sha": imagefactory.sha256_of(ref.path), "size": ref.path.stat().st_size,
            "work": work, "paced": paced, "paced_sha": imagefactory.sha256_of(paced)}


def new_upload_dv(stack: UploadStack, ns: str, *, mode: str | None = None,
                  size: str = "64Mi") -> str:
    name = f"up-{uuid.uuid4().hex[:6]}"
    stack.cdi.create_dv(ns, dv_manifest(name, {"upload": {}}, size=size, mode=mode))
    stack.cdi.wait_phase(ns, name, "UploadReady", timeout=120)
    return name


def assert_volume_holds(stack: UploadStack, ns: str, claim: str, disks: dict[str, Any]) -> None:
    disk = disk_of(stack.cdi.cluster, ns, claim)
    assert sha256_prefix(disk, disks["size"]) == disks["sha"]


# -- every variant, every format, both volume modes ----------------------------------

CASES = [(v, f, "Filesystem") for v in ("upload", "upload-async", "upload-form",
                                         "upload-form-async")
         for f in ("qcow2", "raw.gz", "raw.xz")]
CASES += [("upload", f, "Block") for f in ("qcow2", "raw.gz", "raw.xz")]
CASES += [("upload-form-async", "qcow2", "Block")]


@pytest.mark.parametrize(("variant", "fmt", "mode"), CASES)
def test_an_upload_fills_the_volume(stack: UploadStack, namespace: str,
                                    disks: dict[str, Any], variant: str, fmt: str,
                                    mode: str) -> None:
    name = new_upload_dv(stack, namespace, mode=mode)
    with disks[fmt].open("rb") as body:
        r = stack.post(stack.token(namespace, name), body, variant=variant)
    assert r.status_code == 200, r.text
    dv = stack.cdi.wait_phase(namespace, name, "Succeeded", timeout=120)
    assert dv["status"]["progress"] == "100.0%"
    assert_volume_holds(stack, namespace, name, disks)
    # The upload server's pod and Service go once the volume is filled.
    wait_for("upload pod gone", lambda: stack.api.get_or_none(
        f"/api/v1/namespaces/{namespace}/pods/cdi-upload-{name}") is None, timeout=60)
    events = {e["reason"] for e in stack.cdi.events(namespace, name)}
    assert {"UploadScheduled", "UploadReady", "UploadSucceeded"} <= events


def test_v1alpha1_paths_work_too(stack: UploadStack, namespace: str,
                                 disks: dict[str, Any]) -> None:
    name = new_upload_dv(stack, namespace)
    token = stack.token(namespace, name)
    assert stack.head(token).status_code == 200
    with disks["qcow2"].open("rb") as body:
        r = stack.post(token, body, version="v1alpha1", variant="upload-async")
    assert r.status_code == 200, r.text
    stack.cdi.wait_phase(namespace, name, "Succeeded", timeout=120)
    assert_volume_holds(stack, namespace, name, disks)


def test_a_legacy_annotated_pvc_is_an_upload_target(stack: UploadStack, namespace: str,
                                                    disks: dict[str, Any]) -> None:
    name = f"legacy-{uuid.uuid4().hex[:6]}"
    stack.api.create(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims", {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "annotations": {PVC_ANN + "storage.upload.target": ""}},
        "spec": {"accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "64Mi"}}}})
    stack.wait_pvc_annotation(namespace, name, PVC_ANN + "storage.pod.ready", "true")
    with disks["raw.xz"].open("rb") as body:
        r = stack.post(stack.token(namespace, name), body)
    assert r.status_code == 200, r.text
    stack.wait_pvc_annotation(namespace, name, PVC_ANN + "storage.pod.phase", "Succeeded")
    assert_volume_holds(stack, namespace, name, disks)


# -- refusals --------------------------------------------------------------------------

def test_bad_credentials_are_refused_as_cdi_refuses_them(stack: UploadStack, namespace: str,
                                                         disks: dict[str, Any]) -> None:
    from datetime import UTC, datetime, timedelta

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    name = new_upload_dv(stack, namespace)
    other = f"other-{uuid.uuid4().hex[:6]}"  # a PVC that is not an upload target
    stack.api.create(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims", {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": other},
        "spec": {"accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "64Mi"}}}})
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    forged = uploadtoken.sign(forger, namespace=namespace, pvc=name)
    real_key = stack.api.get("/api/v1/namespaces/cdi/secrets/cdi-api-signing-key")
    import base64
    key = base64.b64decode(real_key["data"]["id_rsa"])
    expired = uploadtoken.sign(key, namespace=namespace, pvc=name,
                               now=datetime.now(UTC) - timedelta(minutes=6))
    data = disks["raw.gz"].read_bytes()
    assert stack.post(None, data).status_code == 400
    assert stack.post(None, data, headers={"Authorization": "Basic abc"}).status_code == 400
    assert stack.post("not-a-jwt", data).status_code == 401
    assert stack.post(forged, data).status_code == 401
    assert stack.post(expired, data).status_code == 401
    assert stack.post(stack.token(namespace, other), data).status_code == 503
    # None of them wrote anything: the real upload still works afterwards.
    assert stack.cdi.dv(namespace, name)["status"]["phase"] == "UploadReady"
    r = stack.post(stack.token(namespace, name), data)
    assert r.status_code == 200, r.text
    stack.cdi.wait_phase(namespace, name, "Succeeded", timeout=120)
    assert_volume_holds(stack, namespace, name, disks)
    # A second upload after success: 409.
    r = stack.post(stack.token(namespace, name), data)
    assert r.status_code == 409, r.text


def test_an_image_larger_than_the_volume_is_refused_and_leaves_nothing(
        stack: UploadStack, namespace: str, disks: dict[str, Any]) -> None:
    name = new_upload_dv(stack, namespace)
    token = stack.token(namespace, name)
    # A small file claiming a 1 GiB disk. (A raw body larger than the volume is answered
    # while it is still being sent, which requests cannot read; the upload server's own
    # tests prove that case with a raw socket.)
    work = disks["work"] / f"oversized-{name}"
    work.mkdir()
    oversized = imagefactory.qcow2_oversized(work, virtual_size=1 << 30)
    r = stack.post(token, oversized.read_bytes())
    assert 400 <= r.status_code < 500, r.text
    # CDI's phrase, which users and tools grep for (importer/formats/fit.py).
    assert "DataVolume too small to contain image" in r.text, r.text
    disk = disk_of(stack.cdi.cluster, namespace, name)
    assert not disk.exists() or disk.stat().st_blocks == 0
    # The volume can still be filled with a right-sized image.
    with disks["qcow2"].open("rb") as body:
        r = stack.post(stack.token(namespace, name), body)
    assert r.status_code == 200, r.text
    stack.cdi.wait_phase(namespace, name, "Succeeded", timeout=120)
    assert_volume_holds(stack, namespace, name, disks)


def test_a_checksum_mismatch_leaves_no_image(stack: UploadStack, namespace: str,
                                             disks: dict[str, Any]) -> None:
    name = new_upload_dv(stack, namespace)
    data = disks["qcow2"].read_bytes()
    r = stack.post(stack.token(namespace, name), data,
                   headers={"Upload-Checksum": "sha256:" + "0" * 64})
    assert r.status_code == 400, r.text
    assert "checksum" in r.text.lower()
    disk = disk_of(stack.cdi.cluster, namespace, name)
    assert not disk.exists() or disk.stat().st_blocks == 0
    import hashlib
    good = "sha256:" + hashlib.sha256(data).hexdigest()
    r = stack.post(stack.token(namespace, name), data, headers={"Upload-Checksum": good})
    assert r.status_code == 200, r.text
    stack.cdi.wait_phase(namespace, name, "Succeeded", timeout=120)
    assert_volume_holds(stack, namespace, name, disks)


def test_a_user_without_rbac_gets_no_token(stack: UploadStack, namespace: str) -> None:
    name = new_upload_dv(stack, namespace)
    manifest = json.dumps({"apiVersion": "upload.cdi.kubevirt.io/v1beta1",
                           "kind": "UploadTokenRequest", "metadata": {"name": name},
                           "spec": {"pvcName": name}})
    out = stack.cdi.kubectl("-n", namespace, "create", "-f", "-", "-o", "json",
                            "--as", "mallory", input=manifest, check=False)
    assert out.returncode != 0
    assert "forbidden" in out.stderr.lower(), out.stderr


# -- beyond CDI: resume, concurrency, a proxy restart -----------------------------------

def test_a_dropped_upload_resumes_from_the_servers_offset(
        stack: UploadStack, namespace: str, disks: dict[str, Any]) -> None:
    name = new_upload_dv(stack, namespace)
    path = disks["raw.gz"]
    total = path.stat().st_size
    token = stack.token(namespace, name)
    send_part_then_drop(stack.url("upload"), token, path, total // 2)
    offset = int(wait_for("a paused upload's offset", lambda: stack.head(
        token, "upload").headers.get("Upload-Offset"), timeout=30))
    assert 0 < offset <= total // 2
    r = stack.resume(token, path, offset)
    assert r.status_code == 200, r.text
    stack.cdi.wait_phase(namespace, name, "Succeeded", timeout=120)
    assert_volume_holds(stack, namespace, name, disks)


def test_two_uploads_through_one_proxy_at_once(stack: UploadStack, namespace: str,
                                               disks: dict[str, Any]) -> None:
    names = [new_upload_dv(stack, namespace) for _ in range(2)]
    results: dict[str, int] = {}

    def up(name: str, fmt: str) -> None:
        body = chunks(disks[fmt], 256 * 1024, delay=0.01)
        results[name] = stack.post(stack.token(namespace, name), body).status_code

    threads = [threading.Thread(target=up, args=(n, f))
               for n, f in zip(names, ("qcow2", "raw.xz"), strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert results == dict.fromkeys(names, 200)
    for n in names:
        stack.cdi.wait_phase(namespace, n, "Succeeded", timeout=120)
        assert_volume_holds(stack, namespace, n, disks)


def test_the_proxy_restarted_mid_upload_is_survived_by_resuming(
        stack: UploadStack, namespace: str, disks: dict[str, Any]) -> None:
    name = new_upload_dv(stack, namespace)
    path = disks["paced"]
    token = stack.token(namespace, name)
    failure: list[BaseException] = []

    def slow_upload() -> None:
        try:
            stack.post(token, PacedFile(path))
        except requests.RequestException as e:
            failure.append(e)

    t = threading.Thread(target=slow_upload)
    t.start()
    time.sleep(3)
    pods = stack.api.get("/api/v1/namespaces/cdi/pods",
                         labelSelector="cdi.kubevirt.io=cdi-uploadproxy")["items"]
    assert pods, "no proxy pod found by its label"
    for p in pods:
        stack.api.delete(f"/api/v1/namespaces/cdi/pods/{p['metadata']['name']}")
    t.join(300)
    assert failure, "the upload should have lost its connection with the proxy"
    upload_stack_ready(stack.cdi)
    offset = int(wait_for("a paused upload's offset", lambda: stack.head(
        token, "upload").headers.get("Upload-Offset"), timeout=60))
    r = stack.resume(stack.token(namespace, name), path, offset)
    assert r.status_code == 200, r.text
    stack.cdi.wait_phase(namespace, name, "Succeeded", timeout=120)
    disk = disk_of(stack.cdi.cluster, namespace, name)
    assert sha256_prefix(disk, path.stat().st_size) == disks["paced_sha"]


# -- clients: cdictl and the real virtctl ------------------------------------------------

def test_cdictl_upload_creates_the_dv_uploads_and_waits(stack: UploadStack, namespace: str,
                                                        disks: dict[str, Any]) -> None:
    name = f"cdictl-{uuid.uuid4().hex[:6]}"
    out = subprocess.run(
        ["cdictl", "upload", "dv", name, "-n", namespace, "--size", "64Mi",
         "--image-path", str(disks["qcow2"]), "--insecure",
         "--kubeconfig", str(stack.cdi.cluster.kubeconfig)],
        check=False, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    dv = stack.cdi.dv(namespace, name)
    assert dv and dv["status"]["phase"] == "Succeeded"
    assert_volume_holds(stack, namespace, name, disks)


def test_the_real_virtctl_uploads_into_our_stack(stack: UploadStack, namespace: str,
                                                 disks: dict[str, Any],
                                                 virtctl: Path) -> None:
    name = f"virtctl-{uuid.uuid4().hex[:6]}"
    out = subprocess.run(
        [str(virtctl), "image-upload", "dv", name, "-n", namespace, "--size", "64Mi",
         "--image-path", str(disks["qcow2"]), "--uploadproxy-url", stack.proxy_url,
         "--insecure", "--kubeconfig", str(stack.cdi.cluster.kubeconfig)],
        check=False, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Processing completed successfully" in out.stdout + out.stderr
    dv = stack.cdi.dv(namespace, name)
    assert dv and dv["status"]["phase"] == "Succeeded"
    assert_volume_holds(stack, namespace, name, disks)


# -- no timeout at 99% ---------------------------------------------------------------------

def _ingress(root: Path, upstream: str, read_timeout: int) -> tuple[subprocess.Popen[bytes], str]:
    """Debian's nginx as an ingress in front of the proxy, with a short read timeout."""
    import os

    from tests.peers.ports import free_port, wait_for_port

    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (root / "tmp" / kind).mkdir(parents=True, exist_ok=True)
    port = free_port()
    temp = "\n".join(f"    {k}_temp_path {root / 'tmp' / k};"
                     for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    user = "user root;" if os.geteuid() == 0 else ""
    (root / "nginx.conf").write_text(f"""
{user}
daemon off;
worker_processes 1;
pid {root / "nginx.pid"};
error_log {root / "error.log"} info;
events {{ worker_connections 64; }}
http {{
    access_log {root / "access.log"};
{temp}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 0;
        location / {{
            proxy_pass {upstream};
            proxy_ssl_verify off;
            proxy_http_version 1.1;
            proxy_request_buffering off;
            proxy_buffering off;
            proxy_read_timeout {read_timeout}s;
            proxy_send_timeout {read_timeout}s;
        }}
    }}
}}
""")
    proc = subprocess.Popen(["/usr/sbin/nginx", "-c", str(root / "nginx.conf"), "-p", str(root),
                             "-e", str(root / "error.log")], stdin=subprocess.DEVNULL)
    wait_for_port(port, proc)
    return proc, f"http://127.0.0.1:{port}"


def test_a_slow_conversion_is_not_cut_by_an_ingress_read_timeout(
        stack: UploadStack, namespace: str, tmp_path: Path) -> None:
    """A small file whose conversion takes long (a 3 GiB disk in compressed clusters):
    the last byte is sent at once, then the ingress waits. CDI's sync path sends nothing
    until the image is written, so an ingress with a read timeout shorter than the
    conversion answers 504 to a finished upload ("timeout at 99%")."""
    from tests.peers.ports import stop

    pattern = tmp_path / "pattern.raw"
    with pattern.open("wb") as f:
        block = (b"cdi-py keeps the connection alive " * 2048)[: 64 * 1024]
        for _ in range(3 * 1024 * 16):
            f.write(block)
    image = tmp_path / "slow.qcow2"
    subprocess.run(["qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2",
                    str(pattern), str(image)], check=True)
    pattern.unlink()
    name = new_upload_dv(stack, namespace, size="3500Mi")
    proc, ingress = _ingress(tmp_path / "ingress", stack.proxy_url, read_timeout=8)
    try:
        start = time.monotonic()
        with image.open("rb") as body:
            r = requests.post(f"{ingress}/v1beta1/upload", data=body, timeout=600, headers={
                "Authorization": f"Bearer {stack.token(namespace, name)}",
                "Content-Type": "application/octet-stream"})
        took = time.monotonic() - start
    finally:
        stop(proc)
    assert r.status_code == 200, r.text
    assert took > 8, f"conversion too quick ({took:.1f}s) to prove anything"
    stack.cdi.wait_phase(namespace, name, "Succeeded", timeout=120)


def test_upload_progress_shows_in_the_datavolume(stack: UploadStack, namespace: str,
                                                 disks: dict[str, Any]) -> None:
    name = new_upload_dv(stack, namespace)
    token = stack.token(namespace, name)
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(stack.post(
        token, PacedFile(disks["paced"])).status_code))
    t.start()
    seen = wait_for("a percentage between 0 and 100", lambda: (
        p if (p := (stack.cdi.dv(namespace, name) or {}).get("status", {}).get("progress", ""))
        .endswith("%") and 0 < float(p[:-1]) < 100 else None), timeout=120)
    t.join(300)
    assert result == [200]
    assert seen.endswith("%")
    stack.cdi.wait_phase(namespace, name, "Succeeded", timeout=120)
