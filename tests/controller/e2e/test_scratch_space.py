"""Scratch space on a PVC, never on the node's disk, end to end on the real control plane.

A gzip-compressed qcow2 cannot be converted while it streams: the first importer pod
stops with a ScratchSpaceRequired report, the controller creates `<pvc>-scratch` with
CDIConfig's `scratchSpaceStorageClass` and a second pod mounts it at /scratch; the
scratch PVC is gone when the import ends. An import that streams needs none.
"""

from __future__ import annotations

import gzip
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cdicontract import sizes
from tests.cluster.helpers import wait_for
from tests.controller.e2e.conftest import disk_of, dv_manifest, sha256_prefix

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

P = "cdi.kubevirt.io/"
CONFIG = "/apis/cdi.kubevirt.io/v1beta1/cdiconfigs/config"
CLASSES = "/apis/storage.k8s.io/v1/storageclasses"
PROVISIONER = "local.cdi-py.io/loop"
RETAIN = {P + "storage.pod.retainAfterCompletion": "true"}


def pvc_path(ns: str, name: str = "") -> str:
    return f"/api/v1/namespaces/{ns}/persistentvolumeclaims" + (f"/{name}" if name else "")


@pytest.fixture(scope="module")
def qcow2_gz(images: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    work = tmp_path_factory.mktemp("gz")
    qcow2 = images.server.docroot / "disk.qcow2"
    gz = work / "disk.qcow2.gz"
    gz.write_bytes(gzip.compress(qcow2.read_bytes(), 1))
    return images.url(images.server.publish(gz, "disk.qcow2.gz"))


@pytest.fixture
def scratch_class(cdi: Any) -> Iterator[str]:
    """A StorageClass of the test provisioner, set as CDIConfig's scratchSpaceStorageClass."""
    api = cdi.api
    name = f"scratch-{uuid.uuid4().hex[:6]}"
    api.create(CLASSES, {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                         "metadata": {"name": name}, "provisioner": PROVISIONER,
                         "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"})
    api.merge_patch(CONFIG, {"spec": {"scratchSpaceStorageClass": name}})
    try:
        wait_for("CDIConfig status names the scratch class", lambda: api.get(CONFIG).get(
            "status", {}).get("scratchSpaceStorageClass") == name, timeout=30)
        yield name
    finally:
        api.merge_patch(CONFIG, {"spec": {"scratchSpaceStorageClass": None}})
        api.delete(f"{CLASSES}/{name}")


class Watch:
    """Every PVC named `<name>-scratch` seen in the namespace while the import runs."""

    def __init__(self, api: Any, ns: str, name: str) -> None:
        self.seen: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._api, self._path = api, pvc_path(ns, f"{name}-scratch")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.3):
            got = self._api.get_or_none(self._path)
            if got is not None:
                self.seen.append(got)

    def stop(self) -> list[dict[str, Any]]:
        self._stop.set()
        self._thread.join()
        return self.seen


def final_report(pod: dict[str, Any]) -> dict[str, Any]:
    state = pod["status"]["containerStatuses"][0]["state"]
    return json.loads(state["terminated"]["message"])  # type: ignore[no-any-return]


def test_a_block_import_that_needs_scratch_runs_with_a_scratch_pvc(
        cdi, cluster, namespace, images, qcow2_gz, scratch_class):
    api = cdi.api
    watch = Watch(api, namespace, "gzblk")
    cdi.create_dv(namespace, dv_manifest("gzblk", {"http": {"url": qcow2_gz}}, size="16Mi",
                                         storage=False, mode="Block", annotations=RETAIN))
    try:
        dv = cdi.wait_phase(namespace, "gzblk", "Succeeded", "Failed", timeout=180)
    finally:
        seen = watch.stop()
    assert dv["status"]["phase"] == "Succeeded", dv["status"]
    assert sha256_prefix(disk_of(cluster, namespace, "gzblk"), images.reference.size) == (
        images.raw_sha256)

    # The scratch PVC existed, of the configured class, owned by the target, Filesystem.
    assert seen, "no scratch PVC was ever made"
    claim = seen[0]
    target = api.get(pvc_path(namespace, "gzblk"))
    assert claim["spec"]["storageClassName"] == scratch_class
    assert claim["spec"]["volumeMode"] == "Filesystem"
    assert claim["metadata"]["ownerReferences"][0]["uid"] == target["metadata"]["uid"]
    # CDI's size: the target's usable 16Mi plus the scratch class's 0.06 overhead.
    want = sizes.round_up(sizes.required_size(16 << 20, 0.06))
    assert sizes.parse_quantity(claim["spec"]["resources"]["requests"]["storage"]) == want
    # The durable record on the target; the scratch PVC deleted once the import is over
    # (the retained pod still names it, so it is Terminating until that pod goes).
    assert target["metadata"]["annotations"][P + "storage.import.requiresScratch"] == "true"
    wait_for("scratch PVC deleted", lambda: (api.get_or_none(
        pvc_path(namespace, "gzblk-scratch")) or {"metadata": {"deletionTimestamp": "gone"}}
    )["metadata"].get("deletionTimestamp"), timeout=60)

    # The (retained) pod that imported mounted it at /scratch on a read-only root, and
    # copied there; its /tmp is bounded.
    pod = api.get(f"/api/v1/namespaces/{namespace}/pods/importer-gzblk")
    (c,) = pod["spec"]["containers"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == "/scratch")
    assert volumes[mount["name"]]["persistentVolumeClaim"]["claimName"] == "gzblk-scratch"
    tmp = next(m for m in c["volumeMounts"] if m["mountPath"] == "/tmp")
    assert volumes[tmp["name"]]["emptyDir"].get("sizeLimit")
    report = final_report(pod)
    assert report["reason"] == "Completed" and report["scratch_used"] is True
    # The first pod's clean "scratch required" exit is no failure: no ImportFailed event.
    assert "ImportFailed" not in [e["reason"] for e in cdi.events(namespace, "gzblk")]
    api.delete(f"/api/v1/namespaces/{namespace}/pods/importer-gzblk")
    wait_for("scratch PVC gone", lambda: api.get_or_none(
        pvc_path(namespace, "gzblk-scratch")) is None, timeout=60)


def test_an_import_that_needs_no_scratch_never_makes_one(cdi, cluster, namespace, images):
    api = cdi.api
    watch = Watch(api, namespace, "ranged")
    cdi.create_dv(namespace, dv_manifest("ranged", {"http": {"url": images.url("disk.qcow2")}},
                                         size="16Mi", storage=False, mode="Block",
                                         annotations=RETAIN))
    try:
        dv = cdi.wait_phase(namespace, "ranged", "Succeeded", "Failed", timeout=120)
    finally:
        seen = watch.stop()
    assert dv["status"]["phase"] == "Succeeded", dv["status"]
    assert sha256_prefix(disk_of(cluster, namespace, "ranged"), images.reference.size) == (
        images.raw_sha256)
    assert seen == []
    target = api.get(pvc_path(namespace, "ranged"))
    assert P + "storage.import.requiresScratch" not in target["metadata"]["annotations"]
    pod = api.get(f"/api/v1/namespaces/{namespace}/pods/importer-ranged")
    assert all(m["mountPath"] != "/scratch"
               for m in pod["spec"]["containers"][0]["volumeMounts"])
    assert not final_report(pod).get("scratch_used")


def test_a_scratch_class_that_does_not_exist_says_so_then_recovers(
        cdi, cluster, namespace, images, qcow2_gz):
    api = cdi.api
    missing = f"no-such-class-{uuid.uuid4().hex[:6]}"
    api.merge_patch(CONFIG, {"spec": {"scratchSpaceStorageClass": missing}})
    try:
        cdi.create_dv(namespace, dv_manifest("nosc", {"http": {"url": qcow2_gz}},
                                             size="16Mi"))

        def blocked() -> dict[str, Any] | None:
            dv = cdi.dv(namespace, "nosc") or {}
            running = {c["type"]: c for c in dv.get("status", {}).get("conditions", [])}.get(
                "Running", {})
            return dv if running.get("reason") == "ScratchStorageClassNotFound" else None

        dv = wait_for("Running condition names the missing class", blocked, timeout=120)
        running = next(c for c in dv["status"]["conditions"] if c["type"] == "Running")
        assert running["status"] == "False" and missing in running["message"]
        assert dv["status"]["phase"] not in ("Succeeded", "Failed")
        assert api.get_or_none(pvc_path(namespace, "nosc-scratch")) is None
    finally:
        api.merge_patch(CONFIG, {"spec": {"scratchSpaceStorageClass": None}})
    # Fixed in CDIConfig: the import goes on, with scratch on the default class.
    dv = cdi.wait_phase(namespace, "nosc", "Succeeded", "Failed", timeout=180)
    assert dv["status"]["phase"] == "Succeeded", dv["status"]
    assert sha256_prefix(disk_of(cluster, namespace, "nosc"), images.reference.size) == (
        images.raw_sha256)
