"""DataVolume imports end to end: `kubectl apply` of a DataVolume gives a populated PVC."""

from __future__ import annotations

import base64
import hashlib

import pytest

from tests.cluster.helpers import wait_for
from tests.controller.e2e.conftest import disk_of, dv_manifest, sha256_prefix
from tests.controller.e2e.imageserver import NEEDED_HEADER, PASSWORD, USER

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def conditions(dv):
    return {c["type"]: c for c in dv["status"]["conditions"]}


def test_blank_datavolume_becomes_an_empty_disk_of_the_requested_size(cdi, cluster, namespace):
    cdi.create_dv(namespace, dv_manifest("blank", {"blank": {}}, size="32Mi"))
    dv = cdi.wait_phase(namespace, "blank", "Succeeded", "Failed")
    assert dv["status"]["phase"] == "Succeeded"
    assert dv["status"]["progress"] == "100.0%"
    assert dv["status"]["claimName"] == "blank"
    c = conditions(dv)
    assert c["Ready"]["status"] == "True" and c["Bound"]["status"] == "True"
    disk = disk_of(cluster, namespace, "blank")
    assert disk.stat().st_size >= 32 << 20
    pvc = cdi.api.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/blank")
    assert pvc["metadata"]["annotations"]["cdi.kubevirt.io/storage.pod.phase"] == "Succeeded"
    # The importer pod is gone once the import is recorded.
    assert cdi.api.get_or_none(f"/api/v1/namespaces/{namespace}/pods/importer-blank") is None
    out = cdi.kubectl("-n", namespace, "get", "dv", "blank").stdout
    assert "Succeeded" in out and "100.0%" in out and "RESTARTS" in out
    reasons = [e["reason"] for e in cdi.events(namespace, "blank")]
    assert "ImportSucceeded" in reasons


def test_http_qcow2_is_converted_into_a_filesystem_volume(cdi, cluster, namespace, images):
    src = {"http": {"url": images.url("disk.qcow2")}}
    cdi.create_dv(namespace, dv_manifest("qcow", src, size="32Mi"))
    dv = cdi.wait_phase(namespace, "qcow", "Succeeded", "Failed")
    assert dv["status"]["phase"] == "Succeeded", dv["status"]
    disk = disk_of(cluster, namespace, "qcow")
    assert sha256_prefix(disk, images.reference.size) == images.raw_sha256


def test_https_with_ca_basic_auth_and_extra_header(cdi, cluster, namespace, images):
    api = cdi.api
    api.create(f"/api/v1/namespaces/{namespace}/configmaps", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ca"},
        "data": {"ca.pem": images.server.ca_pem.decode()}})
    api.create(f"/api/v1/namespaces/{namespace}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
        "data": {"accessKeyId": base64.b64encode(USER.encode()).decode(),
                 "secretKey": base64.b64encode(PASSWORD.encode()).decode()}})
    checksum = "sha256:" + hashlib.sha256(images.reference.path.read_bytes()).hexdigest()
    src = {"http": {"url": images.url("disk.raw", tls=True, where="private/"),
                    "certConfigMap": "ca", "secretRef": "creds",
                    "extraHeaders": [f"{NEEDED_HEADER[0]}: {NEEDED_HEADER[1]}"],
                    "checksum": checksum}}
    cdi.create_dv(namespace, dv_manifest("tls", src, size="32Mi"))
    dv = cdi.wait_phase(namespace, "tls", "Succeeded", "Failed")
    assert dv["status"]["phase"] == "Succeeded", dv["status"]
    disk = disk_of(cluster, namespace, "tls")
    assert sha256_prefix(disk, images.reference.size) == images.raw_sha256
    pod_env = str(cdi.kubectl("-n", namespace, "get", "events", "-o", "json").stdout)
    assert PASSWORD not in pod_env


def test_compressed_raw_into_a_literal_block_pvc(cdi, cluster, namespace, images):
    src = {"http": {"url": images.url("disk.raw.xz")}}
    cdi.create_dv(namespace, dv_manifest("blk", src, size="16Mi", storage=False, mode="Block"))
    dv = cdi.wait_phase(namespace, "blk", "Succeeded", "Failed")
    assert dv["status"]["phase"] == "Succeeded", dv["status"]
    pvc = cdi.api.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/blk")
    assert pvc["spec"]["volumeMode"] == "Block"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "16Mi"  # literal: no overhead
    assert sha256_prefix(disk_of(cluster, namespace, "blk"), images.reference.size) == \
        images.raw_sha256


def test_storage_spec_inflates_filesystem_claims_by_the_overhead(cdi, namespace):
    cdi.create_dv(namespace, dv_manifest("inflated", {"blank": {}}, size="100Mi"))
    dv = cdi.wait_phase(namespace, "inflated", "Succeeded", "Failed")
    assert dv["status"]["phase"] == "Succeeded", dv["status"]
    pvc = cdi.api.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/inflated")
    assert pvc["spec"]["resources"]["requests"]["storage"] == "111550639"  # ceil(100Mi / 0.94)
    assert pvc["spec"]["volumeMode"] == "Filesystem"
    assert pvc["spec"]["storageClassName"] == "local"


def test_wrong_checksum_fails_for_good_with_checksum_error(cdi, namespace, images):
    src = {"http": {"url": images.url("disk.raw"), "checksum": "sha256:" + "0" * 64}}
    cdi.create_dv(namespace, dv_manifest("badsum", src, size="32Mi"))
    dv = cdi.wait_phase(namespace, "badsum", "Failed", "Succeeded")
    assert dv["status"]["phase"] == "Failed"
    running = conditions(dv)["Running"]
    assert running["reason"] == "ChecksumError"
    assert running["message"].startswith("checksum mismatch: expected sha256:" + "0" * 64), \
        running
    assert any(e["reason"] == "ImportFailed" for e in cdi.events(namespace, "badsum"))
    # No pod keeps restarting: it is deleted once the failure is recorded.
    wait_for("importer pod deleted", lambda: cdi.api.get_or_none(
        f"/api/v1/namespaces/{namespace}/pods/importer-badsum") is None, timeout=45)


def test_image_larger_than_the_volume_fails_with_a_clear_message(cdi, namespace, images):
    src = {"http": {"url": images.url("big.raw")}}
    cdi.create_dv(namespace, dv_manifest("small", src, size="16Mi", storage=False))
    dv = cdi.wait_phase(namespace, "small", "Failed", "Succeeded", timeout=120)
    assert dv["status"]["phase"] == "Failed"
    running = conditions(dv)["Running"]
    assert running["reason"] == "ImageTooLarge"
    assert "too small" in running["message"].lower()


def test_unreachable_source_keeps_retrying_and_says_why(cdi, namespace):
    src = {"http": {"url": "http://nowhere.invalid/disk.img"}}
    cdi.create_dv(namespace, dv_manifest("unreach", src, size="16Mi"))

    def retried():
        dv = cdi.dv(namespace, "unreach")
        st = (dv or {}).get("status", {})
        if st.get("restartCount", 0) >= 1 and conditions(dv)["Running"].get("message"):
            return dv
        return None

    dv = wait_for("a retry with a reason", retried, timeout=90)
    assert dv["status"]["phase"] == "ImportInProgress"
    running = conditions(dv)["Running"]
    # Said with the importer's reason and the host, whether the pod is running its retry
    # ("retrying after NetworkError: ...") or waiting for it (reason NetworkError).
    assert "nowhere.invalid" in running["message"], running
    assert running["reason"] == "NetworkError" or running["message"].startswith(
        "retrying after NetworkError: "), running
