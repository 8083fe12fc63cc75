"""The legacy PVC-annotation API, WaitForFirstConsumer, CDIConfig and StorageProfiles."""

from __future__ import annotations

import pytest

from tests.cluster.helpers import pod, wait_for
from tests.controller.e2e.conftest import disk_of, dv_manifest, sha256_prefix

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
P = "cdi.kubevirt.io/"


def test_annotated_pvc_is_imported_and_annotated_back(cdi, cluster, namespace, images):
    cdi.api.create(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims", {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "legacy", "annotations": {
            P + "storage.import.endpoint": images.url("disk.qcow2"),
            P + "storage.import.source": "http"}},
        "spec": {"accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "32Mi"}}}})

    def done():
        pvc = cdi.api.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/legacy")
        a = pvc["metadata"].get("annotations", {})
        return a if a.get(P + "storage.pod.phase") in ("Succeeded", "Failed") else None

    a = wait_for("legacy import", done, timeout=90)
    assert a[P + "storage.pod.phase"] == "Succeeded"
    assert a[P + "storage.import.importPodName"] == "importer-legacy"
    assert a[P + "storage.condition.running"] == "false"
    assert a[P + "storage.condition.running.reason"] == "Completed"
    assert a[P + "storage.pod.restarts"] == "0"
    assert sha256_prefix(disk_of(cluster, namespace, "legacy"), images.reference.size) == \
        images.raw_sha256


def test_wait_for_first_consumer_until_a_consumer_appears(cdi, namespace):
    cdi.create_dv(namespace, dv_manifest("wffc", {"blank": {}}, size="16Mi", sc="local-wffc"))
    dv = cdi.wait_phase(namespace, "wffc", "WaitForFirstConsumer", timeout=30)
    assert cdi.api.get_or_none(f"/api/v1/namespaces/{namespace}/pods/importer-wffc") is None
    consumer = pod("consumer", "sleep 1", volumes=[{
        "name": "d", "persistentVolumeClaim": {"claimName": "wffc"}}],
        container={"volumeMounts": [{"name": "d", "mountPath": "/d"}]})
    cdi.api.create(f"/api/v1/namespaces/{namespace}/pods", consumer)
    dv = cdi.wait_phase(namespace, "wffc", "Succeeded", "Failed", timeout=90)
    assert dv["status"]["phase"] == "Succeeded"


def test_immediate_bind_annotation_imports_without_a_consumer(cdi, namespace):
    cdi.create_dv(namespace, dv_manifest(
        "imm", {"blank": {}}, size="16Mi", sc="local-wffc",
        annotations={P + "storage.bind.immediate.requested": "true"}))
    assert cdi.wait_phase(namespace, "imm", "Succeeded", "Failed")["status"]["phase"] == \
        "Succeeded"


def test_cdiconfig_singleton_reports_effective_values(cdi):
    cfg = cdi.api.get("/apis/cdi.kubevirt.io/v1beta1/cdiconfigs/config")
    st = cfg["status"]
    assert st["filesystemOverhead"]["global"] == "0.06"
    assert "local" in st["filesystemOverhead"]["storageClass"]
    assert st["defaultPodResourceRequirements"]["limits"] == {"cpu": "750m", "memory": "600M"}
    assert st["scratchSpaceStorageClass"] == "local"


def test_cdiconfig_overhead_per_class_applies_to_new_claims(cdi, namespace):
    path = "/apis/cdi.kubevirt.io/v1beta1/cdiconfigs/config"
    cdi.api.merge_patch(path, {"spec": {"filesystemOverhead": {"storageClass": {"local": "0.5"}}}})
    try:
        wait_for("status updated", lambda: cdi.api.get(path)["status"]["filesystemOverhead"][
            "storageClass"].get("local") == "0.5", timeout=20)
        cdi.create_dv(namespace, dv_manifest("oh", {"blank": {}}, size="100Mi"))
        pvc = wait_for("pvc", lambda: cdi.api.get_or_none(
            f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/oh"), timeout=20)
        assert pvc["spec"]["resources"]["requests"]["storage"] == "200Mi"
    finally:
        cdi.api.merge_patch(path, {"spec": {"filesystemOverhead": None}})


def test_every_storage_class_gets_a_storage_profile(cdi):
    def profiles():
        items = cdi.api.get("/apis/cdi.kubevirt.io/v1beta1/storageprofiles")["items"]
        names = {p["metadata"]["name"]: p for p in items if p.get("status")}
        return names if {"local", "local-wffc"} <= set(names) else None

    found = wait_for("storage profiles", profiles, timeout=20)
    st = found["local"]["status"]
    assert st["storageClass"] == "local"
    assert st["claimPropertySets"][0]["accessModes"] == ["ReadWriteOnce"]
