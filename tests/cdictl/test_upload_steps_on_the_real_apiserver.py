"""`cdictl upload`'s Kubernetes side against the real kube-apiserver (local cluster).

What can be proven without the other upload components: the objects it creates, the
refusals, the marking of an existing PVC, the waits (the test plays the controller's
part by writing the status or annotation the controller would write), the proxy URL from
CDIConfig. The whole path (token API, proxy, upload server) is tested at integration
(tests/controller/e2e).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cdictl import kube, options, upload

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
A = "cdi.kubevirt.io/"
DVS = "/apis/cdi.kubevirt.io/v1beta1/namespaces/{ns}/datavolumes"
CONFIG = "/apis/cdi.kubevirt.io/v1beta1/cdiconfigs/config"




def cdictl(cluster: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cdictl.cli", "upload", *args,
                           "--kubeconfig", str(cluster.kubeconfig)],
                          capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)


def pvc_body(name: str, ann: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "annotations": ann or {}},
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "16Mi"}}}}


def uploader(cluster: Any, ns: str, said: list[str]) -> upload.Uploader:
    client, namespace = kube.load(str(cluster.kubeconfig), ns)
    return upload.Uploader(kube=client, namespace=namespace, say=said.append,
                           progress=lambda _n: pytest.fail("no bytes are sent here"),
                           poll_seconds=0.2)


def test_creates_the_datavolume_then_waits_for_its_upload_server(
        crds: Any, namespace: str, small_image: Path) -> None:
    out = cdictl(crds, "dv", "disk", "-n", namespace, "--size", "64Mi", "--image-path",
                 str(small_image), "--storage-class", "local", "--wait-secs", "0")
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stdout.splitlines() == [
        f"PVC {namespace}/disk not found ", f"DataVolume {namespace}/disk created"]
    assert out.stderr.strip() == (
        f"timed out after 0s waiting for the upload pod of {namespace}/disk to be ready")
    dv = crds.api().get(f"{DVS.format(ns=namespace)}/disk")
    assert dv["spec"]["source"] == {"upload": {}}
    assert dv["spec"]["contentType"] == "kubevirt"
    assert dv["spec"]["storage"] == {"resources": {"requests": {"storage": "64Mi"}},
                                     "storageClassName": "local"}


def test_an_unknown_storage_class_creates_nothing(crds: Any, namespace: str,
                                                  small_image: Path) -> None:
    out = cdictl(crds, "dv", "disk", "-n", namespace, "--size", "64Mi", "--image-path",
                 str(small_image), "--storage-class", "no-such-class")
    assert out.returncode == 1
    assert out.stderr.strip() == 'storageclasses.storage.k8s.io "no-such-class" not found'
    assert crds.api().get_or_none(f"{DVS.format(ns=namespace)}/disk") is None


def test_a_missing_image_file_is_refused_before_anything_is_created(
        crds: Any, namespace: str, tmp_path: Path) -> None:
    out = cdictl(crds, "dv", "disk", "-n", namespace, "--size", "64Mi", "--image-path",
                 str(tmp_path / "absent.img"))
    assert out.returncode == 1
    assert out.stderr.strip() == f"open {tmp_path / 'absent.img'}: No such file or directory"
    assert crds.api().get_or_none(f"{DVS.format(ns=namespace)}/disk") is None


def test_creates_an_upload_target_pvc(crds: Any, namespace: str, small_image: Path) -> None:
    out = cdictl(crds, "pvc", "disk", "-n", namespace, "--size", "32Mi", "--image-path",
                 str(small_image), "--wait-secs", "0")
    assert out.returncode == 1
    assert f"PersistentVolumeClaim {namespace}/disk created" in out.stdout
    pvc = crds.api().get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/disk")
    assert pvc["metadata"]["annotations"][A + "storage.upload.target"] == ""
    assert pvc["metadata"]["annotations"][A + "storage.contentType"] == "kubevirt"
    assert pvc["metadata"]["labels"] == {A + "applyStorageProfile": "true"}
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "32Mi"


def test_an_existing_pvc_that_is_no_upload_target_is_refused_and_left_alone(
        crds: Any, namespace: str, small_image: Path) -> None:
    api = crds.api()
    api.create(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims", pvc_body("plain"))
    out = cdictl(crds, "pvc", "plain", "-n", namespace, "--image-path", str(small_image))
    assert out.returncode == 1
    assert out.stderr.strip() == "PVC plain not available for upload"
    pvc = api.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/plain")
    assert A + "storage.upload.target" not in (pvc["metadata"].get("annotations") or {})


def test_a_pvc_without_its_datavolume_is_refused(crds: Any, namespace: str,
                                                 small_image: Path) -> None:
    crds.api().create(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims",
                      pvc_body("orphan", {A + "storage.upload.target": ""}))
    out = cdictl(crds, "dv", "orphan", "-n", namespace, "--image-path", str(small_image))
    assert out.returncode == 1
    assert out.stderr.strip() == (
        f"No DataVolume is associated with the existing PVC {namespace}/orphan")


def test_no_create_marks_an_existing_pvc_and_waits_for_its_server(crds: Any, namespace: str,
                                                                  small_image: Path) -> None:
    api = crds.api()
    path = f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/mine"
    api.create(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims", pvc_body("mine"))
    said: list[str] = []
    up = uploader(crds, namespace, said)
    opts = options.parse(["pvc", "mine", "--image-path", str(small_image), "--no-create",
                          "--wait-secs", "30"])
    up.prepare(opts)
    pvc = api.get(path)
    assert pvc["metadata"]["annotations"][A + "storage.upload.target"] == ""

    def controller() -> None:  # what the upload controller writes once its pod is ready
        time.sleep(1.0)
        api.merge_patch(path, {"metadata": {"annotations": {A + "storage.pod.ready": "true"}}})

    t = threading.Thread(target=controller)
    t.start()
    try:
        up.wait_ready(opts)
    finally:
        t.join()
    assert said == [f"Using existing PVC {namespace}/mine",
                    "Waiting for PVC mine upload pod to be ready...", "Pod now ready"]


def test_waits_for_the_datavolume_to_be_upload_ready(crds: Any, namespace: str,
                                                     small_image: Path) -> None:
    api = crds.api()
    said: list[str] = []
    up = uploader(crds, namespace, said)
    opts = options.parse(["dv", "vol", "--image-path", str(small_image), "--size", "16Mi",
                          "--wait-secs", "30"])
    up.prepare(opts)
    status_path = f"{DVS.format(ns=namespace)}/vol/status"

    def controller() -> None:
        time.sleep(0.5)
        api.request("PATCH", status_path, body={"status": {"phase": "UploadScheduled"}},
                    content_type="application/merge-patch+json")
        time.sleep(0.5)
        api.request("PATCH", status_path, body={"status": {"phase": "UploadReady"}},
                    content_type="application/merge-patch+json")

    t = threading.Thread(target=controller)
    t.start()
    try:
        up.wait_ready(opts)
    finally:
        t.join()
    assert said == [f"PVC {namespace}/vol not found ", f"DataVolume {namespace}/vol created",
                    "Waiting for PVC vol upload pod to be ready...", "Pod now ready"]


def test_a_wait_for_first_consumer_datavolume_needs_force_bind(crds: Any, namespace: str,
                                                               small_image: Path) -> None:
    api = crds.api()
    up = uploader(crds, namespace, [])
    opts = options.parse(["dv", "late", "--image-path", str(small_image), "--size", "16Mi"])
    up.prepare(opts)
    api.request("PATCH", f"{DVS.format(ns=namespace)}/late/status",
                body={"status": {"phase": "WaitForFirstConsumer"}},
                content_type="application/merge-patch+json")
    with pytest.raises(upload.UploadFailed, match="cannot upload to DataVolume in "
                       "WaitForFirstConsumer phase, make sure the PVC is Bound, or use "
                       "force-bind flag"):
        up.wait_ready(opts)


def test_a_provisioning_failure_ends_the_wait(crds: Any, namespace: str, small_image: Path) -> None:
    api = crds.api()
    made = api.create(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims",
                      pvc_body("doomed", {A + "storage.upload.target": ""}))
    api.create(f"/api/v1/namespaces/{namespace}/events", {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"doomed.{uuid.uuid4().hex[:8]}"},
        "involvedObject": {"kind": "PersistentVolumeClaim", "name": "doomed",
                           "namespace": namespace, "uid": made["metadata"]["uid"]},
        "reason": "ProvisioningFailed", "message": "no space left for 16Mi", "type": "Warning"})
    up = uploader(crds, namespace, [])
    opts = options.parse(["pvc", "doomed", "--image-path", str(small_image), "--wait-secs", "30"])
    start = time.monotonic()
    with pytest.raises(upload.UploadFailed, match=r"^Provisioning failed: no space left for 16Mi$"):
        up.wait_ready(opts)
    assert time.monotonic() - start < 10


def test_waits_for_processing_and_stops_on_a_failed_datavolume(crds: Any, namespace: str,
                                                               small_image: Path) -> None:
    api = crds.api()
    said: list[str] = []
    up = uploader(crds, namespace, said)
    api.create(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims",
               pvc_body("done", {A + "storage.upload.target": ""}))
    pvc_opts = options.parse(["pvc", "done", "--image-path", str(small_image)])
    path = f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/done"
    threading.Timer(0.5, lambda: api.merge_patch(path, {"metadata": {"annotations": {
        A + "storage.pod.phase": "Succeeded"}}})).start()
    up.wait_processing(pvc_opts)
    assert said == ["Processing completed successfully"]

    dv_opts = options.parse(["dv", "bad", "--image-path", str(small_image), "--size", "16Mi"])
    up.prepare(dv_opts)
    # The controller would create the DataVolume's PVC; without one, the test does.
    if api.get_or_none(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/bad") is None:
        api.create(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims",
                   pvc_body("bad", {A + "storage.upload.target": ""}))
    api.request("PATCH", f"{DVS.format(ns=namespace)}/bad/status", body={"status": {
        "phase": "Failed", "conditions": [{"type": "Running", "status": "False",
                                           "reason": "Error",
                                           "message": "Upload-Checksum mismatch"}]}},
        content_type="application/merge-patch+json")
    with pytest.raises(upload.UploadFailed, match="Upload-Checksum mismatch"):
        up.wait_processing(dv_opts)


@pytest.fixture
def cdiconfig(crds: Any) -> Iterator[Any]:
    api = crds.api()
    before = api.get_or_none(CONFIG)
    if before is None:
        api.create("/apis/cdi.kubevirt.io/v1beta1/cdiconfigs", {
            "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "CDIConfig",
            "metadata": {"name": "config"}, "spec": {}})
    yield api
    if before is None:
        api.delete(CONFIG)
    else:
        api.merge_patch(CONFIG, {"spec": {"uploadProxyURLOverride": before["spec"].get(
            "uploadProxyURLOverride")}})


def test_the_proxy_url_comes_from_cdiconfig(crds: Any, cdiconfig: Any, namespace: str,
                                            small_image: Path) -> None:
    up = uploader(crds, namespace, [])
    opts = options.parse(["dv", "x", "--image-path", str(small_image)])
    if not (cdiconfig.get(CONFIG).get("status") or {}).get("uploadProxyURL"):
        cdiconfig.request("PATCH", CONFIG + "/status",
                          body={"status": {"uploadProxyURL": "proxy.example:31001"}},
                          content_type="application/merge-patch+json")
        assert up.proxy_url(opts) == "https://proxy.example:31001"
    cdiconfig.merge_patch(CONFIG, {"spec": {"uploadProxyURLOverride": "http://override:80"}})
    assert up.proxy_url(opts) == "http://override:80"
    given = options.parse(["dv", "x", "--image-path", str(small_image), "--uploadproxy-url",
                           "https://given"])
    assert up.proxy_url(given) == "https://given"
