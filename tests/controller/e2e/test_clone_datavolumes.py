"""The DataVolume side of clones with the real controller and webhook on the real control plane.

What the controller creates for a clone DataVolume, and when: the target PVC sized from
the source (or refused when too small), carrying the CloneRequest for the clone
transfer, the strategy and its fallback reason; nothing while the source is missing,
the token is bad, or the DataSource is not ready, then the PVC once they are; DataSource
Ready conditions; the csi-clone PVC and the snapshot strategy's VolumeSnapshot and
restore PVC on a (fake) CSI class whose StorageProfile asks for them. The bytes are the
clone transfer's (tests/controller/e2e/test_clone_pvc.py and the clone e2e suite).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cdicontract import clone
from tests.cluster.helpers import pvc, wait_for
from tests.controller.e2e.conftest import MiB

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
PVCS = "/api/v1/namespaces/{ns}/persistentvolumeclaims"
DS_PATH = "/apis/cdi.kubevirt.io/v1beta1/namespaces/{ns}/datasources"
SNAPS = "/apis/snapshot.storage.k8s.io/v1/namespaces/{ns}/volumesnapshots"
PROFILES = "/apis/cdi.kubevirt.io/v1beta1/storageprofiles"
DRIVER = "smart.cdi-py.test"
"""A CSI driver nobody runs: its PVCs stay Pending, which is all these tests need."""


@pytest.fixture
def source_ns(cluster: Any) -> Iterator[str]:
    api = cluster.api()
    name = f"golden-{uuid.uuid4().hex[:8]}"
    api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                      "metadata": {"name": name}})
    wait_for("default SA", lambda: api.get_or_none(
        f"/api/v1/namespaces/{name}/serviceaccounts/default"), timeout=30)
    yield name
    api.delete(f"/api/v1/namespaces/{name}")


def clone_dv(name: str, source: dict[str, Any], *, size: str | None = None,
             sc: str | None = None, spec_pvc: bool = False) -> dict[str, Any]:
    claim: dict[str, Any] = {}
    if size:
        claim["resources"] = {"requests": {"storage": size}}
    if sc:
        claim["storageClassName"] = sc
    if spec_pvc:
        claim["accessModes"] = ["ReadWriteOnce"]
    key = "sourceRef" if source.get("kind") == "DataSource" else "source"
    return {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
            "metadata": {"name": name},
            "spec": {key: source, ("pvc" if spec_pvc else "storage"): claim}}


def get_pvc(api: Any, ns: str, name: str) -> dict[str, Any] | None:
    return api.get_or_none(f"{PVCS.format(ns=ns)}/{name}")  # type: ignore[no-any-return]


def make_source(api: Any, ns: str, name: str = "golden", size: str = "64Mi",
                sc: str | None = None) -> dict[str, Any]:
    return api.create(PVCS.format(ns=ns), pvc(name, size, sc=sc))  # type: ignore[no-any-return]


def bound_condition(cdi: Any, ns: str, name: str, reason: str, timeout: float = 30
                    ) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        dv = cdi.dv(ns, name) or {}
        for c in dv.get("status", {}).get("conditions", []):
            if c["type"] == "Bound" and c.get("reason") == reason:
                return c  # type: ignore[no-any-return]
        return None
    try:
        return wait_for(f"{ns}/{name} Bound condition {reason}", check, timeout=timeout)
    except AssertionError:
        raise AssertionError(f"{(cdi.dv(ns, name) or {}).get('status')}\ncontroller log:\n"
                             f"{cdi.controller_log()[-3000:]}") from None


def target_pvc(cdi: Any, ns: str, name: str, timeout: float = 30) -> dict[str, Any]:
    try:
        return wait_for(f"target pvc {ns}/{name}", lambda: get_pvc(cdi.api, ns, name),
                        timeout=timeout)
    except AssertionError:
        raise AssertionError(f"{(cdi.dv(ns, name) or {}).get('status')}\ncontroller log:\n"
                             f"{cdi.controller_log()[-3000:]}") from None


def reasons(cdi: Any, ns: str, name: str) -> list[str]:
    return [e["reason"] for e in cdi.events(ns, name)]


# ---- copy targets: sizes, sources, tokens ------------------------------------------------

def test_an_empty_size_takes_the_sources_and_the_target_is_the_clone_transfers(cdi, namespace):
    make_source(cdi.api, namespace, size="64Mi")
    cdi.create_dv(namespace, clone_dv("copy", {"pvc": {"namespace": namespace, "name": "golden"}}))
    target = target_pvc(cdi, namespace, "copy")
    a = target["metadata"]["annotations"]
    assert a[clone.CLONE_REQUEST_ANNOTATION] == f"{namespace}/golden"
    assert a[clone.CLONE_TYPE_ANNOTATION] == "copy"
    # The local class's StorageProfile says copy (no snapshot class): nothing fell back.
    assert cdi.api.get(f"{PROFILES}/local")["status"]["cloneStrategy"] == "copy"
    assert clone.FALLBACK_REASON_ANNOTATION not in a
    assert clone.EXTENDED_TOKEN_ANNOTATION not in a  # same namespace: no token needed
    # ceil(64Mi / (1 - 0.06)) bytes, CDI's figure: the Filesystem target grows by the overhead.
    assert target["spec"]["resources"]["requests"]["storage"] == "71392409"
    assert target["metadata"]["ownerReferences"][0]["kind"] == "DataVolume"
    # The clone transfer has taken the PVC over (its upload server in clone mode).
    cdi.wait_phase(namespace, "copy", "CloneScheduled", "CloneInProgress", "Succeeded",
                   timeout=60)


def test_a_target_smaller_than_the_source_is_refused_and_gets_no_pvc(cdi, namespace):
    make_source(cdi.api, namespace, size="64Mi")
    cdi.create_dv(namespace, clone_dv("small", {"pvc": {"namespace": namespace, "name": "golden"}}, size="32Mi"))
    c = bound_condition(cdi, namespace, "small", "ErrIncompatiblePVC")
    assert c["message"] == ("target resources requests storage size is smaller than the "
                            f"source {32 << 20} < {64 << 20}")
    assert cdi.dv(namespace, "small")["status"]["phase"] == "Pending"
    assert "ErrIncompatiblePVC" in reasons(cdi, namespace, "small")
    assert get_pvc(cdi.api, namespace, "small") is None


def test_a_missing_source_waits_then_the_clone_proceeds_when_it_appears(cdi, namespace):
    cdi.create_dv(namespace, clone_dv("late", {"pvc": {"namespace": namespace, "name": "later"}}))
    c = bound_condition(cdi, namespace, "late", "CloneWithoutSource")
    assert c["message"] == "The source pvc later doesn't exist"
    assert "CloneWithoutSource" in reasons(cdi, namespace, "late")
    assert get_pvc(cdi.api, namespace, "late") is None
    make_source(cdi.api, namespace, "later", size="32Mi")
    target = target_pvc(cdi, namespace, "late")
    assert target["metadata"]["annotations"][clone.CLONE_REQUEST_ANNOTATION] == (
        f"{namespace}/later")


def test_cross_namespace_target_carries_the_re_signed_token(cdi, namespace, source_ns):
    make_source(cdi.api, source_ns)
    cdi.create_dv(namespace, clone_dv("x", {"pvc": {"namespace": source_ns, "name": "golden"}}))
    a = target_pvc(cdi, namespace, "x")["metadata"]["annotations"]
    assert a[clone.CLONE_REQUEST_ANNOTATION] == f"{source_ns}/golden"
    assert a[clone.EXTENDED_TOKEN_ANNOTATION]
    dv_token = cdi.dv(namespace, "x")["metadata"]["annotations"][clone.TOKEN_ANNOTATION]
    assert a[clone.EXTENDED_TOKEN_ANNOTATION] != dv_token


def _forge(token: str) -> str:
    head, body, sig = token.split(".")
    return ".".join((head, body, sig[:-4] + ("AAAA" if sig[-4:] != "AAAA" else "BBBB")))


def test_a_token_tampered_after_admission_stops_the_clone(cdi, namespace, source_ns):
    cdi.create_dv(namespace, clone_dv("t", {"pvc": {"namespace": source_ns, "name": "golden"}}))
    bound_condition(cdi, namespace, "t", "CloneWithoutSource")
    # Verified while the source is still missing: the controller's long-lived re-signing
    # is on the DataVolume, and it is what the controller checks from then on.
    a = cdi.dv(namespace, "t")["metadata"]["annotations"]
    token, extended = a[clone.TOKEN_ANNOTATION], a[clone.EXTENDED_TOKEN_ANNOTATION]
    assert extended != token
    forged, forged_ext = _forge(token), _forge(extended)
    cdi.api.merge_patch(f"/apis/cdi.kubevirt.io/v1beta1/namespaces/{namespace}/datavolumes/t",
                        {"metadata": {"annotations": {clone.TOKEN_ANNOTATION: forged,
                                                      clone.EXTENDED_TOKEN_ANNOTATION: forged_ext}}})
    make_source(cdi.api, source_ns)
    c = bound_condition(cdi, namespace, "t", "CloneValidationFailed")
    assert c["message"] == ("The clone doesn't meet the validation requirements: "
                            "invalid clone token: InvalidSignatureError")
    assert get_pvc(cdi.api, namespace, "t") is None
    assert "CloneValidationFailed" in reasons(cdi, namespace, "t")
    log = cdi.controller_log()
    for secret in (token, extended, forged, forged_ext):
        assert secret not in log


# ---- golden images through DataSource ------------------------------------------------------

def ds_ready(cdi: Any, ns: str, name: str, status: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        ds = cdi.api.get_or_none(f"{DS_PATH.format(ns=ns)}/{name}") or {}
        for c in ds.get("status", {}).get("conditions", []):
            if c["type"] == "Ready" and c["status"] == status:
                return ds  # type: ignore[no-any-return]
        return None
    return wait_for(f"DataSource {ns}/{name} Ready={status}", check, timeout=30)


def test_a_sourceref_datavolume_waits_for_its_datasource_then_clones_it(cdi, namespace,
                                                                        source_ns):
    cdi.api.create(DS_PATH.format(ns=source_ns), {
        "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataSource",
        "metadata": {"name": "fedora"},
        "spec": {"source": {"pvc": {"namespace": source_ns, "name": "fedora-disk"}}}})
    ds = ds_ready(cdi, source_ns, "fedora", "False")
    ready = next(c for c in ds["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["reason"], ready["message"]) == ("NotFound", "PVC not found")
    cdi.create_dv(namespace, clone_dv("vm-disk", {"kind": "DataSource", "namespace": source_ns,
                                                  "name": "fedora"}))
    c = bound_condition(cdi, namespace, "vm-disk", "DataSourceNotReady")
    assert c["message"] == f"DataSource {source_ns}/fedora is not ready: PVC not found"
    assert get_pvc(cdi.api, namespace, "vm-disk") is None
    make_source(cdi.api, source_ns, "fedora-disk")
    ds = ds_ready(cdi, source_ns, "fedora", "True")
    assert ds["status"]["source"] == {"pvc": {"namespace": source_ns, "name": "fedora-disk"}}
    a = target_pvc(cdi, namespace, "vm-disk")["metadata"]["annotations"]
    assert a[clone.CLONE_REQUEST_ANNOTATION] == f"{source_ns}/fedora-disk"
    assert a[clone.EXTENDED_TOKEN_ANNOTATION]


# ---- smart strategies on a CSI class ------------------------------------------------------

@pytest.fixture
def smart_class(cdi: Any) -> Iterator[str]:
    """A CSI StorageClass (a CSIDriver object exists for its provisioner) that can expand."""
    api = cdi.api
    name = f"smart-{uuid.uuid4().hex[:6]}"
    if api.get_or_none(f"/apis/storage.k8s.io/v1/csidrivers/{DRIVER}") is None:
        api.create("/apis/storage.k8s.io/v1/csidrivers", {
            "apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver",
            "metadata": {"name": DRIVER}, "spec": {"attachRequired": False}})
    api.create("/apis/storage.k8s.io/v1/storageclasses", {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": name}, "provisioner": DRIVER, "allowVolumeExpansion": True,
        "volumeBindingMode": "Immediate"})
    wait_for("its StorageProfile", lambda: api.get_or_none(f"{PROFILES}/{name}"), timeout=30)
    yield name
    api.delete(f"/apis/storage.k8s.io/v1/storageclasses/{name}")


def bind_by_hand(api: Any, ns: str, claim: str, sc: str, capacity: str = "1Gi") -> str:
    """What the fake driver's provisioner would do: a PV pre-bound to the claim."""
    name = f"pv-{uuid.uuid4().hex[:8]}"
    api.create("/api/v1/persistentvolumes", {
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
        "spec": {"capacity": {"storage": capacity}, "accessModes": ["ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Retain", "storageClassName": sc,
                 "volumeMode": "Filesystem", "hostPath": {"path": f"/tmp/{name}"},
                 "claimRef": {"namespace": ns, "name": claim}}})
    return name


def set_strategy(cdi: Any, sc: str, strategy: str) -> None:
    cdi.api.merge_patch(f"{PROFILES}/{sc}", {"spec": {"cloneStrategy": strategy}})
    wait_for("profile status", lambda: (cdi.api.get(f"{PROFILES}/{sc}").get("status") or {})
             .get("cloneStrategy") == strategy, timeout=30)


def holder_pod(api: Any, ns: str, claim: str) -> str:
    """A pod that could write to `claim` and never runs (no node matches it): a VM
    holding its disk, as far as a clone is concerned."""
    name = f"vm-{uuid.uuid4().hex[:6]}"
    api.create(f"/api/v1/namespaces/{ns}/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"nodeSelector": {"cdi-py.test/nowhere": "true"},
                 "containers": [{"name": "c", "image": "busybox", "command": ["true"],
                                 "volumeMounts": [{"name": "d", "mountPath": "/d"}]}],
                 "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}]}})
    return name


def test_csi_clone_waits_for_its_source_then_makes_the_target_with_it_as_its_datasource(
        cdi, namespace, smart_class):
    set_strategy(cdi, smart_class, "csi-clone")
    make_source(cdi.api, namespace, size="64Mi", sc=smart_class)
    holder = holder_pod(cdi.api, namespace, "golden")
    cdi.create_dv(namespace, clone_dv("csi", {"pvc": {"namespace": namespace, "name": "golden"}}, sc=smart_class))
    # Not Bound yet: the storage is not asked to clone it.
    c = bound_condition(cdi, namespace, "csi", "CloneSourceNotReady")
    assert c["message"] == f"Waiting for the source pvc {namespace}/golden to be bound"
    source_pv = bind_by_hand(cdi.api, namespace, "golden", smart_class, "64Mi")
    try:
        # Bound, but a pod can write to it (CDI's CloneSourceInUse): still no target.
        c = bound_condition(cdi, namespace, "csi", "CloneSourceInUse")
        assert c["message"] == f"pod {namespace}/{holder} using PersistentVolumeClaim golden"
        assert get_pvc(cdi.api, namespace, "csi") is None
        assert "CloneSourceInUse" in reasons(cdi, namespace, "csi")
        cdi.api.delete(f"/api/v1/namespaces/{namespace}/pods/{holder}",
                       {"gracePeriodSeconds": 0})
        target = target_pvc(cdi, namespace, "csi")
        assert target["spec"]["dataSource"] == {"apiGroup": None,
                                                "kind": "PersistentVolumeClaim",
                                                "name": "golden"} or \
            target["spec"]["dataSource"] == {"kind": "PersistentVolumeClaim", "name": "golden"}
        a = target["metadata"]["annotations"]
        assert a[clone.CLONE_TYPE_ANNOTATION] == "csi-clone"
        assert clone.CLONE_REQUEST_ANNOTATION not in a  # no source pod for a storage clone
        assert clone.FALLBACK_REASON_ANNOTATION not in a
        dv = cdi.wait_phase(namespace, "csi", "CSICloneInProgress", timeout=30)
        assert dv["status"]["phase"] == "CSICloneInProgress"
        wait_for("event", lambda: "CSICloneInProgress" in reasons(cdi, namespace, "csi"),
                 timeout=15)
        pv = bind_by_hand(cdi.api, namespace, "csi", smart_class)
        try:
            dv = cdi.wait_phase(namespace, "csi", "Succeeded", timeout=60)
            assert dv["status"]["progress"] == "100.0%"
            wait_for("success event", lambda: "CloneSucceeded" in reasons(cdi, namespace,
                                                                          "csi"),
                     timeout=15)
        finally:
            cdi.api.delete(f"{PVCS.format(ns=namespace)}/csi")
            cdi.api.delete(f"/api/v1/persistentvolumes/{pv}")
    finally:
        cdi.api.delete(f"{PVCS.format(ns=namespace)}/golden")
        cdi.api.delete(f"/api/v1/persistentvolumes/{source_pv}")


def test_an_in_tree_class_asked_for_csi_clone_falls_back_with_cdis_reason(cdi, namespace):
    cdi.api.merge_patch(f"{PROFILES}/local", {"spec": {"cloneStrategy": "csi-clone"}})
    try:
        wait_for("profile status", lambda: cdi.api.get(f"{PROFILES}/local")["status"]
                 .get("cloneStrategy") == "csi-clone", timeout=30)
        make_source(cdi.api, namespace, size="32Mi")
        cdi.create_dv(namespace, clone_dv("fb", {"pvc": {"namespace": namespace,
                                                         "name": "golden"}}))
        a = target_pvc(cdi, namespace, "fb")["metadata"]["annotations"]
    finally:
        cdi.api.merge_patch(f"{PROFILES}/local", {"spec": {"cloneStrategy": None}})
    assert a[clone.CLONE_TYPE_ANNOTATION] == "copy"
    assert a[clone.FALLBACK_REASON_ANNOTATION] == (
        "In tree storage class does not support snapshot/clone")
    wait_for("fallback event", lambda: "NoPopulator" in reasons(cdi, namespace, "fb"),
             timeout=15)


def test_csi_clone_across_namespaces_falls_back_to_copy_with_the_reason(
        cdi, namespace, source_ns, smart_class):
    set_strategy(cdi, smart_class, "csi-clone")
    make_source(cdi.api, source_ns, size="64Mi", sc=smart_class)
    cdi.create_dv(namespace, clone_dv("xcsi", {"pvc": {"namespace": source_ns,
                                                       "name": "golden"}}, sc=smart_class))
    a = target_pvc(cdi, namespace, "xcsi")["metadata"]["annotations"]
    assert a[clone.CLONE_TYPE_ANNOTATION] == "copy"
    assert a[clone.FALLBACK_REASON_ANNOTATION].startswith("Smart clone across namespaces")
    wait_for("fallback event", lambda: "CrossNamespaceSmartClone" in reasons(
        cdi, namespace, "xcsi"), timeout=15)


def test_snapshot_strategy_snapshots_the_source_then_restores_the_target(
        snapshot_crds, cdi, namespace, smart_class):
    api = cdi.api
    vsc = f"vsc-{uuid.uuid4().hex[:6]}"
    source_pv = ""
    api.create("/apis/snapshot.storage.k8s.io/v1/volumesnapshotclasses", {
        "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
        "metadata": {"name": vsc}, "driver": DRIVER, "deletionPolicy": "Delete"})
    try:
        set_strategy(cdi, smart_class, "snapshot")
        # A controller started before the CRDs looks again every 30 s; until then it has
        # no VolumeSnapshotClass and falls back to copy.
        wait_for("the controller sees VolumeSnapshotClasses", lambda: (
            "api not served resource=volumesnapshotclasses" not in cdi.controller_log()
            or "api served resource=volumesnapshotclasses" in cdi.controller_log()) or None,
            timeout=45)
        make_source(api, namespace, size="64Mi", sc=smart_class)
        holder = holder_pod(api, namespace, "golden")
        source_pv = bind_by_hand(api, namespace, "golden", smart_class, "64Mi")
        cdi.create_dv(namespace, clone_dv("snap", {"pvc": {"namespace": namespace, "name": "golden"}}, sc=smart_class))
        # No snapshot of a source a pod can write to (CDI's CloneSourceInUse).
        c = bound_condition(cdi, namespace, "snap", "CloneSourceInUse")
        assert c["message"] == f"pod {namespace}/{holder} using PersistentVolumeClaim golden"
        assert api.get(SNAPS.format(ns=namespace))["items"] == []
        api.delete(f"/api/v1/namespaces/{namespace}/pods/{holder}", {"gracePeriodSeconds": 0})
        # The controller may have started before the CRDs: its snapshot caches look again.
        dv = cdi.wait_phase(namespace, "snap", "SnapshotForSmartCloneInProgress", timeout=60)
        uid = dv["metadata"]["uid"]

        def the_snapshot() -> dict[str, Any] | None:
            items = api.get(SNAPS.format(ns=namespace))["items"]
            return next((s for s in items if s["metadata"].get("labels", {}).get(
                "cdi.kubevirt.io/owner-uid") == uid), None)
        snap = wait_for("the VolumeSnapshot", the_snapshot, timeout=60)
        assert snap["spec"]["source"] == {"persistentVolumeClaimName": "golden"}
        assert snap["spec"]["volumeSnapshotClassName"] == vsc
        assert get_pvc(api, namespace, "snap") is None  # not before the snapshot is ready
        name = snap["metadata"]["name"]
        api.merge_patch(f"{SNAPS.format(ns=namespace)}/{name}/status",
                        {"status": {"readyToUse": True, "restoreSize": "64Mi"}})
        target = target_pvc(cdi, namespace, "snap", timeout=30)
        assert target["spec"]["dataSource"]["kind"] == "VolumeSnapshot"
        assert target["spec"]["dataSource"]["name"] == name
        assert target["metadata"]["annotations"][clone.CLONE_TYPE_ANNOTATION] == "snapshot"
        dv = cdi.wait_phase(namespace, "snap", "SmartClonePVCInProgress", timeout=30)
        assert snap["metadata"]["ownerReferences"][0]["uid"] == uid
        pv = bind_by_hand(api, namespace, "snap", smart_class)
        try:
            cdi.wait_phase(namespace, "snap", "Succeeded", timeout=60)
            # The temporary snapshot goes once the restored target is Bound.
            wait_for("snapshot deleted", lambda: api.get_or_none(
                f"{SNAPS.format(ns=namespace)}/{name}") is None or None, timeout=30)
        finally:
            api.delete(f"{PVCS.format(ns=namespace)}/snap")
            api.delete(f"/api/v1/persistentvolumes/{pv}")
    finally:
        api.delete(f"/apis/snapshot.storage.k8s.io/v1/volumesnapshotclasses/{vsc}")
        if source_pv:
            api.delete(f"{PVCS.format(ns=namespace)}/golden")
            api.delete(f"/api/v1/persistentvolumes/{source_pv}")


def test_a_snapshot_source_is_restored_by_its_driver_and_refused_elsewhere(
        snapshot_crds, cdi, namespace, smart_class):
    api = cdi.api
    content = f"content-{uuid.uuid4().hex[:8]}"
    api.create("/apis/snapshot.storage.k8s.io/v1/volumesnapshotcontents", {
        "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotContent",
        "metadata": {"name": content},
        "spec": {"driver": DRIVER, "deletionPolicy": "Retain",
                 "source": {"snapshotHandle": "handle-1"},
                 "volumeSnapshotRef": {"namespace": namespace, "name": "gold-snap"}}})
    try:
        api.create(SNAPS.format(ns=namespace), {
            "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
            "metadata": {"name": "gold-snap"},
            "spec": {"source": {"volumeSnapshotContentName": content}}})
        api.merge_patch(f"{SNAPS.format(ns=namespace)}/gold-snap/status", {"status": {
            "boundVolumeSnapshotContentName": content, "readyToUse": True,
            "restoreSize": "64Mi"}})
        source = {"snapshot": {"namespace": namespace, "name": "gold-snap"}}
        cdi.create_dv(namespace, clone_dv("restored", source, sc=smart_class))
        target = target_pvc(cdi, namespace, "restored")
        assert target["spec"]["dataSource"]["kind"] == "VolumeSnapshot"
        assert target["spec"]["dataSource"]["name"] == "gold-snap"
        assert target["metadata"]["annotations"][clone.CLONE_TYPE_ANNOTATION] == "snapshot"
        assert clone.CLONE_REQUEST_ANNOTATION not in target["metadata"]["annotations"]
        cdi.wait_phase(namespace, "restored", "CloneFromSnapshotSourceInProgress", timeout=30)
        # The local class's provisioner is not the snapshot's driver: no way to restore it.
        cdi.create_dv(namespace, clone_dv("nowhere", source, sc="local"))
        c = bound_condition(cdi, namespace, "nowhere", "NoPopulator")
        assert c["message"].startswith("The snapshot cannot be restored into this target: ")
        assert get_pvc(api, namespace, "nowhere") is None
    finally:
        api.delete(f"/apis/snapshot.storage.k8s.io/v1/volumesnapshotcontents/{content}")


# ---- end to end with the cloner (copy) -------------------------------------------------

def write_image(cluster: Any, ns: str, name: str, size: int) -> str:
    """A sparse disk.img with data at its start, middle and end; its sha256."""
    path = Path(cluster.pv_path(ns, name)) / "disk.img"
    with path.open("wb") as f:
        f.truncate(size)
        for offset in (0, size // 2, size - MiB):
            f.seek(offset)
            f.write(os.urandom(MiB))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_cross_namespace_datavolume_clone_succeeds_byte_for_byte(cdi, cluster, namespace,
                                                                   source_ns):
    make_source(cdi.api, source_ns, size="64Mi")
    wait_for("source Bound", lambda: (get_pvc(cdi.api, source_ns, "golden") or {}).get(
        "status", {}).get("phase") == "Bound", timeout=30)
    digest = write_image(cluster, source_ns, "golden", 40 * MiB)
    cdi.create_dv(namespace, clone_dv("copy", {"pvc": {"namespace": source_ns,
                                                       "name": "golden"}}))
    dv = cdi.wait_phase(namespace, "copy", "Succeeded", "Failed", timeout=180)
    assert dv["status"]["phase"] == "Succeeded", dv["status"]
    assert dv["status"]["progress"] == "100.0%"
    copied = Path(cluster.pv_path(namespace, "copy")) / "disk.img"
    assert hashlib.sha256(copied.read_bytes()[:40 * MiB]).hexdigest() == digest
    seen = reasons(cdi, namespace, "copy")
    assert "CloneScheduled" in seen and "CloneSucceeded" in seen


def test_a_datasource_follows_its_pvc_there_and_gone(cdi, namespace):
    cdi.api.create(DS_PATH.format(ns=namespace), {
        "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataSource",
        "metadata": {"name": "img"},
        "spec": {"source": {"pvc": {"namespace": namespace, "name": "img-disk"}}}})
    ds_ready(cdi, namespace, "img", "False")
    make_source(cdi.api, namespace, "img-disk", size="16Mi")
    ds = ds_ready(cdi, namespace, "img", "True")
    assert ds["status"]["source"] == {"pvc": {"namespace": namespace, "name": "img-disk"}}
    cdi.api.delete(f"{PVCS.format(ns=namespace)}/img-disk")
    ds = ds_ready(cdi, namespace, "img", "False")
    assert not ds["status"].get("source")
    ready = next(c for c in ds["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "NotFound"
