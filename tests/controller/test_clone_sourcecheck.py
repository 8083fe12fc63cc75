"""Which pods can write to a clone source, and the CloneRequest's shape."""

from __future__ import annotations

import pytest

from controller.transfers.clone import sourcecheck
from tests.controller import factories as f


def source():
    p = f.pvc("src")
    p["metadata"]["namespace"] = "gold"
    return p


def user(name, *, ns="gold", volume_ro=False, mount_ro=False, device=False, phase="Running",
         owner=None, claim="src"):
    container: dict = {"name": "c"}
    if device:
        container["volumeDevices"] = [{"name": "disk", "devicePath": "/dev/xvda"}]
    else:
        container["volumeMounts"] = [{"name": "disk", "mountPath": "/d", "readOnly": mount_ro}]
    meta: dict = {"name": name, "namespace": ns}
    if owner:
        meta["labels"] = {"cdi.kubevirt.io/owner-uid": owner}
    return {"metadata": meta, "status": {"phase": phase},
            "spec": {"containers": [container], "volumes": [
                {"name": "disk", "persistentVolumeClaim": {"claimName": claim,
                                                           "readOnly": volume_ro}}]}}


def test_only_live_writers_in_the_source_namespace_hold_a_clone_back():
    pods = [
        user("rw"),
        user("ro-volume", volume_ro=True),
        user("ro-mount", mount_ro=True),
        user("block", device=True),
        user("block-ro", device=True, volume_ro=True),
        user("done", phase="Succeeded"),
        user("elsewhere", ns="other"),
        user("other-claim", claim="x"),
        user("own-cloner", owner="tgt-uid"),
    ]
    assert sourcecheck.writers(source(), pods, "tgt-uid") == ("block", "rw")


def test_a_writable_init_container_counts():
    pod = user("init", mount_ro=True)
    pod["spec"]["initContainers"] = [{"name": "i", "volumeMounts": [
        {"name": "disk", "mountPath": "/d"}]}]
    assert sourcecheck.writers(source(), [pod]) == ("init",)


@pytest.mark.parametrize(("value", "want"), [
    ("ns/name", ("ns", "name")),
    ("name", None), ("a/b/c", None), ("/b", None), ("a/", None), ("", None),
])
def test_clone_request_is_namespace_slash_name(value, want):
    assert sourcecheck.request(f.pvc(annotations={"k8s.io/CloneRequest": value})) == want


# ---- when a clone of any strategy may read its source ------------------------------------

def test_a_ready_source_without_writers_may_be_cloned():
    assert sourcecheck.smart_clone_wait(source(), [user("reader", volume_ro=True),
                                                   user("gone", phase="Succeeded")]) is None


def test_a_writer_pod_holds_a_smart_clone_back_and_it_looks_again():
    w = sourcecheck.smart_clone_wait(source(), [user("vm"), user("reader", volume_ro=True)])
    assert w == sourcecheck.Wait("CloneSourceInUse",
                                 "pod gold/vm using PersistentVolumeClaim src",
                                 "Warning", sourcecheck.IN_USE_RECHECK_SECONDS)


def test_a_source_not_bound_populated_or_going_waits_whatever_its_users():
    pending = source()
    pending["status"]["phase"] = "Pending"
    assert sourcecheck.smart_clone_wait(pending, [user("vm")]) == sourcecheck.Wait(
        "CloneSourceNotReady", "Waiting for the source pvc gold/src to be bound", "Normal")
    importing = source()
    importing["metadata"]["annotations"].update({
        "cdi.kubevirt.io/storage.import.endpoint": "http://x",
        "cdi.kubevirt.io/storage.pod.phase": "Running"})
    assert sourcecheck.smart_clone_wait(importing, []) == sourcecheck.Wait(
        "CloneSourceNotReady", "Waiting for the source pvc gold/src to be populated", "Normal")
    deleting = source()
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    w = sourcecheck.smart_clone_wait(deleting, [])
    assert w is not None and w.reason == "CloneSourceDeleting" and w.recheck is None


def test_an_imported_source_is_ready_once_its_import_succeeded():
    done = source()
    done["metadata"]["annotations"].update({
        "cdi.kubevirt.io/storage.import.endpoint": "http://x",
        "cdi.kubevirt.io/storage.pod.phase": "Succeeded"})
    assert sourcecheck.not_ready(done) is None
