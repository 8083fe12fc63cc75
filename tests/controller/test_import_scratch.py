"""Scratch space for an import: the pure decisions (which pod, which PVC, when it goes)."""

from __future__ import annotations

import pytest

from cdicontract import scratch as cdiscratch
from cdicontract.reasons import Reason
from cdicontract.report import TerminationReport
from controller import cdiconfig
from controller.cdiconfig import EffectiveConfig
from controller.runtime import kube
from controller.runtime.actions import Create, Delete, Patch
from controller.transfers.importing import scratch
from controller.transfers.importing.pod import PodSettings
from controller.transfers.importing.transfer import ImportTransfer
from controller.transfers.protocol import ClaimView, Recheck
from tests.controller import factories as f

P = "cdi.kubevirt.io/"
IMPORT = {P + "storage.import.endpoint": "http://h/x.qcow2.gz",
          P + "storage.import.source": "http"}
NEEDS = {**IMPORT, cdiscratch.REQUIRES_SCRATCH: "true"}
MiB = 1 << 20
imports = ImportTransfer(PodSettings("cdi-py/importer:t"))


def plan(pvc, pod=None, *, existing=None, config=None):
    return imports.plan(ClaimView(pvc, pod, False, config or EffectiveConfig(),
                                  scratch=existing))


def scratch_pod():
    report = TerminationReport(Reason.SCRATCH_SPACE_REQUIRED, "scratch space required")
    return f.pod(phase="Succeeded", state=f.terminated(0, report.to_json(), "Completed"))


def scratch_pvc(owner_uid="pvc-uid", *, deleting=False):
    p = f.pvc("dv1-scratch")
    p["metadata"]["ownerReferences"] = [{"kind": "PersistentVolumeClaim", "name": "dv1",
                                         "uid": owner_uid, "controller": True}]
    if deleting:
        p["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return p


def test_a_scratch_report_marks_the_pvc_and_removes_the_pod_without_success():
    actions = plan(f.pvc(annotations=IMPORT), scratch_pod())
    patch = next(a for a in actions if isinstance(a, Patch))
    anns = patch.patch["metadata"]["annotations"]
    assert anns[cdiscratch.REQUIRES_SCRATCH] == "true"
    assert anns[P + "storage.pod.phase"] == "Pending"
    assert anns[P + "storage.condition.running.reason"] == "Scratch space required"
    assert anns[P + "storage.condition.running.message"] == (
        "scratch space required and none found")
    assert Delete(kube.PODS, "ns", "importer-dv1", "pod-uid") in actions


def test_a_scratch_report_removes_even_a_retained_pod():
    pvc = f.pvc(annotations={**IMPORT, P + "storage.pod.retainAfterCompletion": "true"})
    assert Delete(kube.PODS, "ns", "importer-dv1", "pod-uid") in plan(pvc, scratch_pod())


def test_a_pod_that_had_scratch_and_still_asks_for_it_fails_instead_of_looping():
    pod = scratch_pod()
    pod["spec"] = {"volumes": [{"name": cdiscratch.VOLUME_NAME,
                                "persistentVolumeClaim": {"claimName": "dv1-scratch"}}]}
    actions = plan(f.pvc(annotations=NEEDS), pod, existing=scratch_pvc())
    anns = actions[0].patch["metadata"]["annotations"]
    assert anns[P + "storage.pod.phase"] == "Failed"
    assert "although a scratch volume was mounted" in anns[
        P + "storage.condition.running.message"]


def test_the_next_pod_mounts_a_new_scratch_pvc_made_before_it():
    actions = plan(f.pvc(annotations=NEEDS, size="1Gi"))
    creates = [a for a in actions if isinstance(a, Create)]
    assert [c.resource for c in creates] == [kube.PVCS, kube.PODS]
    claim, pod = creates[0].body, creates[1].body
    assert claim["metadata"]["name"] == "dv1-scratch"
    assert claim["metadata"]["ownerReferences"][0]["uid"] == "pvc-uid"
    assert claim["spec"]["volumeMode"] == "Filesystem"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == cdiscratch.VOLUME_NAME)
    assert volume["persistentVolumeClaim"]["claimName"] == "dv1-scratch"
    (c,) = pod["spec"]["containers"]
    assert {"name": cdiscratch.VOLUME_NAME, "mountPath": "/scratch"} in c["volumeMounts"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True


def test_an_existing_scratch_pvc_is_reused_not_recreated():
    actions = plan(f.pvc(annotations=NEEDS), existing=scratch_pvc())
    assert [a.resource for a in actions if isinstance(a, Create)] == [kube.PODS]


def test_an_import_that_needs_no_scratch_never_makes_one():
    actions = plan(f.pvc(annotations=IMPORT))
    assert kube.PVCS not in [a.resource for a in actions if isinstance(a, Create)]
    pod = next(a for a in actions if isinstance(a, Create)).body
    assert all(v["name"] != cdiscratch.VOLUME_NAME for v in pod["spec"]["volumes"])


@pytest.mark.parametrize("outcome", ["Succeeded", "Failed"])
def test_the_scratch_pvc_goes_when_the_import_ends(outcome):
    pvc = f.pvc(annotations={**NEEDS, P + "storage.pod.phase": outcome})
    actions = plan(pvc, existing=scratch_pvc())
    assert Delete(kube.PVCS, "ns", "dv1-scratch", "pvc-uid") in actions
    assert plan(pvc, existing=scratch_pvc(deleting=True)) == []
    assert plan(pvc) == []


def test_someone_elses_pvc_of_that_name_is_neither_mounted_nor_deleted():
    foreign = scratch_pvc("other-uid")
    actions = plan(f.pvc(annotations=NEEDS), existing=foreign)
    assert not [a for a in actions if isinstance(a, Create | Delete)]
    anns = actions[0].patch["metadata"]["annotations"]
    assert anns[P + "storage.condition.running.reason"] == "ErrResourceExists"
    done = f.pvc(annotations={**NEEDS, P + "storage.pod.phase": "Succeeded"})
    assert plan(done, existing=foreign) == []


def test_a_terminating_scratch_pvc_is_waited_for():
    actions = plan(f.pvc(annotations=NEEDS), existing=scratch_pvc(deleting=True))
    assert not [a for a in actions if isinstance(a, Create)]
    assert Recheck(1.0) in actions


def test_a_missing_scratch_class_says_so_and_waits():
    cfg = cdiconfig.effective({"spec": {"scratchSpaceStorageClass": "nope"}},
                              [f.storage_class("local", default=True)])
    assert cfg.scratch_class_missing == "nope"
    actions = plan(f.pvc(annotations=NEEDS), config=cfg)
    assert not [a for a in actions if isinstance(a, Create)]
    anns = actions[0].patch["metadata"]["annotations"]
    assert anns[P + "storage.condition.running"] == "false"
    assert anns[P + "storage.condition.running.reason"] == "ScratchStorageClassNotFound"
    assert "'nope'" in anns[P + "storage.condition.running.message"]
    assert Recheck(scratch.WAIT_SECONDS) in actions


SCS = [f.storage_class("local", default=True), f.storage_class("fast")]


@pytest.mark.parametrize(("spec", "status", "missing"), [
    ({}, "local", ""),
    ({"scratchSpaceStorageClass": "fast"}, "fast", ""),
    ({"scratchSpaceStorageClass": "gone"}, "local", "gone"),
], ids=["default-class", "spec-class", "missing-class"])
def test_cdiconfig_status_names_the_scratch_class(spec, status, missing):
    cfg = cdiconfig.effective({"spec": spec}, SCS)
    assert cfg.status()["scratchSpaceStorageClass"] == status
    assert cfg.scratch_class_missing == missing


def test_the_scratch_class_is_the_configured_one_else_the_targets():
    pvc = f.pvc(annotations=NEEDS, sc="fast")
    assert scratch.storage_class(pvc, EffectiveConfig(scratch_class="local")) == "local"
    assert scratch.storage_class(pvc, EffectiveConfig()) == "fast"


@pytest.mark.parametrize(("size", "mode", "target_oh", "scratch_oh", "want"), [
    # Block: not inflated by the target; the scratch class's overhead added back.
    ("1Gi", "Block", "0.06", "0.06", 1090 * MiB),
    # Filesystem: the usable part of the target, then the scratch overhead.
    ("1Gi", "Filesystem", "0.06", "0.06", 1024 * MiB),
    ("1Gi", "Filesystem", "0.06", "0", 962 * MiB),
    ("64Mi", "Block", "0", "0", 64 * MiB),
], ids=["block", "filesystem", "filesystem-no-scratch-overhead", "no-overhead"])
def test_scratch_size_holds_the_targets_usable_space(size, mode, target_oh, scratch_oh, want):
    pvc = f.pvc(annotations=NEEDS, size=size, mode=mode, sc="t")
    cfg = EffectiveConfig(class_overhead={"t": target_oh, "s": scratch_oh})
    got = scratch.size(pvc, cfg, "s")
    assert got == want
    assert got % MiB == 0
