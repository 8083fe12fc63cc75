"""The objects of the smart strategies: a csi-clone PVC, a VolumeSnapshot, a restored PVC."""

from __future__ import annotations

import copy

import pytest

from cdicontract.sizes import SizeError
from controller.transfers.clone import smart
from tests.controller import factories as f


def target(size="1Gi", mode="Filesystem"):
    pvc = f.pvc("target", size=size, mode=mode, phase="Pending")
    pvc["metadata"].update({"resourceVersion": "12", "creationTimestamp": "t",
                            "labels": {"app": "x"}, "managedFields": [{}]})
    pvc["spec"]["volumeName"] = "pv-old"
    return pvc


def test_csi_clone_claim_is_the_target_with_the_source_as_data_source():
    t = target()
    before = copy.deepcopy(t)
    got = smart.csi_clone_claim(t, "golden")
    assert got["spec"]["dataSource"] == {"kind": "PersistentVolumeClaim", "name": "golden"}
    assert "dataSourceRef" not in got["spec"]
    assert got["metadata"]["name"] == "target" and got["metadata"]["namespace"] == "ns"
    assert got["metadata"]["labels"] == {"app": "x"}
    assert got["spec"]["resources"] == {"requests": {"storage": "1Gi"}}
    assert got["spec"]["volumeMode"] == "Filesystem"
    for k in ("uid", "resourceVersion", "creationTimestamp", "managedFields"):
        assert k not in got["metadata"]
    assert "volumeName" not in got["spec"] and "status" not in got
    assert t == before, "the input is not modified"
    got["metadata"]["labels"]["app"] = "y"
    assert t["metadata"]["labels"]["app"] == "x", "a deep copy"


def test_an_earlier_data_source_is_replaced():
    t = target()
    t["spec"]["dataSource"] = {"apiGroup": "cdi.kubevirt.io", "kind": "VolumeCloneSource",
                               "name": "x"}
    t["spec"]["dataSourceRef"] = dict(t["spec"]["dataSource"])
    got = smart.csi_clone_claim(t, "golden")
    assert got["spec"]["dataSource"] == {"kind": "PersistentVolumeClaim", "name": "golden"}
    assert "dataSourceRef" not in got["spec"]


@pytest.mark.parametrize("bad", [
    lambda: smart.csi_clone_claim(target(), ""),
    lambda: smart.csi_clone_claim({"spec": {}}, "golden"),
    lambda: smart.restore_claim(target(), ""),
    lambda: smart.volume_snapshot(f.pvc("golden"), "", "cls", {}),
    lambda: smart.volume_snapshot(f.pvc("golden"), "n", "", {}),
    lambda: smart.volume_snapshot({"metadata": {"name": "golden"}}, "n", "cls", {}),
    lambda: smart.snapshot_name(""),
], ids=["no-source", "no-target-name", "no-snapshot", "no-name", "no-class", "no-namespace",
        "no-uid"])
def test_bad_input_is_refused(bad):
    with pytest.raises(ValueError):
        bad()


def test_volume_snapshot_of_the_source_in_its_namespace():
    src = f.pvc("golden")
    src["metadata"]["namespace"] = "golden-images"
    labels = {"cdi.kubevirt.io/clone-owner": "uid-1"}
    got = smart.volume_snapshot(src, "cdi-tmp-uid-1", "csi-snap", labels)
    assert got == {
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshot",
        "metadata": {"name": "cdi-tmp-uid-1", "namespace": "golden-images",
                     "labels": labels},
        "spec": {"source": {"persistentVolumeClaimName": "golden"},
                 "volumeSnapshotClassName": "csi-snap"},
    }
    assert got["metadata"]["labels"] is not labels


def test_restore_claim_names_the_snapshot():
    got = smart.restore_claim(target(), "cdi-tmp-uid-1")
    assert got["spec"]["dataSource"] == {"apiGroup": "snapshot.storage.k8s.io",
                                         "kind": "VolumeSnapshot", "name": "cdi-tmp-uid-1"}
    assert got["spec"]["resources"]["requests"]["storage"] == "1Gi"


@pytest.mark.parametrize(("asked", "restore", "want"), [
    ("1Gi", "2Gi", "2Gi"),
    ("2Gi", "1Gi", "2Gi"),
    ("1Gi", "0", "1Gi"),
    ("1Gi", None, "1Gi"),
    ("1Gi", 2147483648, "2Gi"),
    (None, "3Gi", "3Gi"),
], ids=["raised-to-restore-size", "larger-target-kept", "zero-restore-size", "no-restore-size",
        "integer-bytes", "no-request"])
def test_restore_claim_is_at_least_the_restore_size(asked, restore, want):
    t = target(size=asked or "1Gi")
    if asked is None:
        del t["spec"]["resources"]
    got = smart.restore_claim(t, "s", restore)
    assert got["spec"]["resources"]["requests"]["storage"] == want


def test_restore_claim_refuses_a_bad_restore_size():
    with pytest.raises(SizeError):
        smart.restore_claim(target(), "s", "-1Gi")


def vsc(name, driver="csi.example.com", default=None):
    ann = {} if default is None else {"snapshot.storage.kubernetes.io/is-default-class": default}
    return {"metadata": {"name": name, "annotations": ann}, "driver": driver}


@pytest.mark.parametrize(("classes", "preferred", "want"), [
    ([], "", None),
    ([vsc("a", driver="other")], "", None),
    ([vsc("b"), vsc("a")], "", "a"),
    ([vsc("a"), vsc("c", default="true"), vsc("b", default="true")], "", "b"),
    ([vsc("a"), vsc("b", default="false")], "", "a"),
    ([vsc("a", default="true"), vsc("b")], "b", "b"),
    ([vsc("a"), vsc("b", driver="other")], "b", None),
    ([vsc("x", driver="other", default="true"), vsc("y")], "", "y"),
], ids=["none", "other-driver", "first-by-name", "default-first", "default-false-ignored",
        "preferred", "preferred-of-other-driver", "default-of-other-driver"])
def test_snapshot_class_for(classes, preferred, want):
    got = smart.snapshot_class_for("csi.example.com", classes, preferred)
    assert (got and got["metadata"]["name"]) == want


def test_snapshot_class_for_an_unknown_provisioner():
    assert smart.snapshot_class_for("", [vsc("a", driver="")]) is None


def test_snapshot_name():
    assert smart.snapshot_name("1234-abcd") == "cdi-tmp-1234-abcd"


@pytest.mark.parametrize(("status", "want"), [
    (None, (False, "")),
    ({}, (False, "")),
    ({"readyToUse": False}, (False, "")),
    ({"readyToUse": "true"}, (False, "")),
    ({"readyToUse": True, "restoreSize": "1Gi"}, (True, "")),
    ({"readyToUse": False, "error": {"message": "driver failed", "time": "t"}},
     (False, "driver failed")),
    ({"error": "not a dict"}, (False, "")),
], ids=["no-status", "empty", "not-ready", "string-is-not-true", "ready", "error", "bad-error"])
def test_snapshot_ready(status, want):
    s = {"metadata": {"name": "s"}}
    if status is not None:
        s["status"] = status
    assert smart.snapshot_ready(s) == want


# --- the claim a snapshot source is restored into for a host-assisted copy -------------

def snapshot_obj(restore="2Gi", ann=None):
    return {"metadata": {"name": "golden-snap", "namespace": "golden", "annotations": ann or {}},
            "spec": {"source": {"persistentVolumeClaimName": "golden"}},
            "status": {"readyToUse": True, "restoreSize": restore}}


def content(driver="csi.example.com", mode="Block"):
    spec = {"driver": driver}
    if mode:
        spec["sourceVolumeMode"] = mode
    return {"metadata": {"name": "c"}, "spec": spec}


CLASSES = [{"metadata": {"name": n}, "provisioner": p}
           for n, p in (("zeta", "csi.example.com"), ("alpha", "csi.example.com"),
                        ("aaa-other", "other"))]


def uid_target(**kw):
    t = target(**kw)
    t["metadata"]["uid"] = "t-uid"
    t["metadata"]["annotations"] = {"cdi.kubevirt.io/storage.clone.token": "secret"}
    return t


def test_temp_source_claim_like_cdis():
    got = smart.temp_source_claim(uid_target(), snapshot_obj(), content(), CLASSES)
    assert got == {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "tmp-source-pvc-t-uid", "namespace": "golden",
                     "labels": {"app": "x"}},
        "spec": {"storageClassName": "alpha", "accessModes": ["ReadWriteOnce"],
                 "volumeMode": "Block", "resources": {"requests": {"storage": "2Gi"}},
                 "dataSource": {"apiGroup": "snapshot.storage.k8s.io",
                                "kind": "VolumeSnapshot", "name": "golden-snap"}},
    }


@pytest.mark.parametrize(("snap", "cont", "mode"), [
    (snapshot_obj(), content(mode=None), "Filesystem"),
    (snapshot_obj(ann={smart.SOURCE_VOLUME_MODE_ANNOTATION: "Block"}), content(mode=None),
     "Block"),
    (snapshot_obj(ann={smart.SOURCE_VOLUME_MODE_ANNOTATION: "Block"}),
     content(mode="Filesystem"), "Filesystem"),
], ids=["target-s", "annotation", "content-first"])
def test_temp_source_claim_volume_mode(snap, cont, mode):
    assert smart.temp_source_claim(uid_target(), snap, cont, CLASSES)["spec"]["volumeMode"] \
        == mode


@pytest.mark.parametrize(("restore", "want"), [(0, "1Gi"), ("0", "1Gi"), (3221225472, "3Gi")])
def test_temp_source_claim_size(restore, want):
    got = smart.temp_source_claim(uid_target(), snapshot_obj(restore), content(), CLASSES)
    assert got["spec"]["resources"]["requests"]["storage"] == want


@pytest.mark.parametrize(("tgt", "snap", "cont", "classes"), [
    ({"metadata": {"name": "t"}}, snapshot_obj(), content(), CLASSES),
    (uid_target(), snapshot_obj(restore=None), content(), CLASSES),
    (uid_target(), snapshot_obj(), None, CLASSES),
    (uid_target(), snapshot_obj(), content(driver="nobody"), CLASSES),
    (uid_target(), {"metadata": {"name": "s"}}, content(), CLASSES),
], ids=["no-uid", "no-restore-size", "no-content", "no-class-of-the-driver", "no-namespace"])
def test_temp_source_claim_refuses(tgt, snap, cont, classes):
    with pytest.raises(ValueError):
        smart.temp_source_claim(tgt, snap, cont, classes)


def test_temp_source_claim_with_zero_restore_and_no_request():
    t = uid_target()
    del t["spec"]["resources"]
    with pytest.raises(ValueError, match="restoreSize is 0"):
        smart.temp_source_claim(t, snapshot_obj(0), content(), CLASSES)
