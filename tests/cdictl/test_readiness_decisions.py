"""What cdictl concludes from the objects it reads: virtctl's rules and its messages."""

from __future__ import annotations

from typing import Any

import pytest

from cdictl import readiness
from cdictl.readiness import Processing, Wait

A = "cdi.kubevirt.io/"


def pvc(ann: dict[str, str] | None = None, phase: str = "Pending", uid: str = "pvc-uid",
        name: str = "disk") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "uid": uid,
                         "annotations": ann or {}}, "status": {"phase": phase}}


def dv(phase: str = "", ann: dict[str, str] | None = None,
       conditions: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "disk", "uid": "dv-uid", "annotations": ann or {}},
            "status": {"phase": phase, "conditions": conditions or []}}


@pytest.mark.parametrize(("ann", "no_create", "archive", "message"), [
    pytest.param({A + "storage.pod.phase": "Succeeded", A + "storage.upload.target": ""},
                 False, False, "PVC disk already successfully imported/cloned/updated",
                 id="done"),
    pytest.param({}, False, False, "PVC disk not available for upload", id="not-target"),
    pytest.param({A + "storage.upload.target": ""}, False, True,
                 "PVC disk doesn't have archive contentType annotation", id="not-archive"),
])
def test_existing_pvcs_that_cannot_take_an_upload(ann: dict[str, str], no_create: bool,
                                                  archive: bool, message: str) -> None:
    with pytest.raises(readiness.Refused, match=message):
        readiness.check_existing_pvc(pvc(ann), "disk", no_create=no_create, archive=archive)


@pytest.mark.parametrize(("ann", "no_create", "archive"), [
    pytest.param({A + "storage.upload.target": ""}, False, False, id="target"),
    pytest.param({}, True, False, id="no-create-marks-it"),
    pytest.param({A + "storage.upload.target": "", A + "storage.contentType": "archive"},
                 False, True, id="archive"),
])
def test_existing_pvcs_that_can(ann: dict[str, str], no_create: bool, archive: bool) -> None:
    readiness.check_existing_pvc(pvc(ann), "disk", no_create=no_create, archive=archive)
    assert readiness.needs_upload_annotation(pvc(ann)) == (A + "storage.upload.target" not in ann)


def test_a_pvc_without_its_datavolume() -> None:
    with pytest.raises(readiness.Refused,
                       match="No DataVolume is associated with the existing PVC ns/disk"):
        readiness.datavolume_claim(pvc(), None, "disk")
    gone = pvc({A + "storage.deleteAfterCompletion": "true", A + "storage.pod.phase": "Succeeded"})
    with pytest.raises(readiness.Refused, match="DataVolume already garbage-collected"):
        readiness.datavolume_claim(gone, None, "disk")


def test_a_populator_datavolume_uploads_into_its_pvc_prime() -> None:
    populated = dv(ann={A + "storage.usePopulator": "true"})
    assert readiness.datavolume_claim(pvc(), dv(), "disk") is None
    prime = pvc({A + "storage.populator.pvcPrime": "tmp-pvc-1"})
    assert readiness.datavolume_claim(prime, populated, "disk") == readiness.PrimeLookup(
        "tmp-pvc-1")
    with pytest.raises(readiness.Refused, match="PVC disk already successfully populated"):
        readiness.datavolume_claim(pvc(phase="Bound"), populated, "disk")
    with pytest.raises(readiness.Refused, match="Unable to get PVC Prime name"):
        readiness.datavolume_claim(pvc(), populated, "disk")


@pytest.mark.parametrize(("phase", "force_bind", "expected"), [
    ("", False, Wait.WAITING), ("Pending", False, Wait.WAITING),
    ("UploadScheduled", False, Wait.WAITING), ("UploadReady", False, Wait.READY),
    ("WaitForFirstConsumer", True, Wait.WAITING), ("PendingPopulation", True, Wait.WAITING),
])
def test_datavolume_readiness(phase: str, force_bind: bool, expected: Wait) -> None:
    assert readiness.datavolume_ready(dv(phase), force_bind=force_bind) is expected


@pytest.mark.parametrize("phase", ["WaitForFirstConsumer", "PendingPopulation"])
def test_an_unbound_datavolume_needs_force_bind(phase: str) -> None:
    with pytest.raises(readiness.Refused, match=f"cannot upload to DataVolume in {phase} "
                       "phase, make sure the PVC is Bound, or use force-bind flag"):
        readiness.datavolume_ready(dv(phase), force_bind=False)


@pytest.mark.parametrize(("value", "expected"), [
    (None, Wait.WAITING), ("false", Wait.WAITING), ("true", Wait.READY), ("1", Wait.READY),
    ("True", Wait.READY), ("yes", Wait.WAITING),
])
def test_pvc_readiness_is_the_pod_ready_annotation(value: str | None, expected: Wait) -> None:
    ann = {} if value is None else {A + "storage.pod.ready": value}
    assert readiness.pvc_ready(pvc(ann)) is expected


def event(kind: str, uid: str, reason: str, message: str) -> dict[str, Any]:
    return {"involvedObject": {"kind": kind, "uid": uid}, "reason": reason, "message": message}


def test_events_that_make_waiting_pointless() -> None:
    lock = readiness.OPTIMISTIC_LOCK_MESSAGE
    events = [
        event("PersistentVolumeClaim", "other", "ProvisioningFailed", "not ours"),
        event("PersistentVolumeClaim", "pvc-uid", "ProvisioningFailed", f"x: {lock}"),
        event("PersistentVolumeClaim", "pvc-uid", "ExternalProvisioning", "waiting"),
    ]
    assert readiness.event_error(events, pvc_uid="pvc-uid", dv_uid="dv-uid") is None
    events.append(event("PersistentVolumeClaim", "pvc-uid", "ProvisioningFailed", "no space"))
    assert readiness.event_error(events, pvc_uid="pvc-uid", dv_uid=None) == (
        "Provisioning failed: no space")
    claim = [event("DataVolume", "dv-uid", "ErrClaimNotValid", "bad claim")]
    assert readiness.event_error(claim, pvc_uid=None, dv_uid="dv-uid") == (
        "Claim not valid: bad claim")
    assert readiness.event_error(claim, pvc_uid=None, dv_uid=None) is None


@pytest.mark.parametrize(("pvc_ann", "the_dv", "expected"), [
    ({}, None, (Processing.RUNNING, "")),
    ({A + "storage.pod.phase": "Running"}, dv("UploadReady"), (Processing.RUNNING, "")),
    ({A + "storage.pod.phase": "Succeeded"}, dv("Succeeded"), (Processing.DONE, "")),
    ({A + "storage.pod.phase": "Succeeded"}, None, (Processing.DONE, "")),
    ({A + "storage.pod.phase": "Running"}, dv("Succeeded"), (Processing.DONE, "")),
    ({}, dv("Failed", conditions=[{"type": "Running", "message": "checksum mismatch"}]),
     (Processing.FAILED, "checksum mismatch")),
    ({}, dv("Failed"), (Processing.FAILED, "DataVolume disk failed")),
    ({A + "storage.pod.phase": "Failed", A + "storage.condition.running.message": "bad image"},
     None, (Processing.FAILED, "bad image")),
])
def test_processing_state(pvc_ann: dict[str, str], the_dv: dict[str, Any] | None,
                          expected: tuple[Processing, str]) -> None:
    assert readiness.processing(pvc(pvc_ann), the_dv) == expected


@pytest.mark.parametrize(("config", "expected"), [
    ({}, None),
    ({"status": {"uploadProxyURL": "https://a"}}, "https://a"),
    ({"spec": {"uploadProxyURLOverride": "b:1"}, "status": {"uploadProxyURL": "https://a"}},
     "b:1"),
])
def test_proxy_url_from_cdiconfig(config: dict[str, Any], expected: str | None) -> None:
    assert readiness.proxy_url_from_config(config) == expected
