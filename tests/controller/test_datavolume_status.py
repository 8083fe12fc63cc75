import pytest

from cdicontract.reasons import Reason
from cdicontract.report import TerminationReport
from controller import dvstatus
from controller.transfers import podstate
from tests.controller import factories as f

P = "cdi.kubevirt.io/"
NOW = "2024-05-01T10:00:00Z"
IMPORT = {P + "storage.import.endpoint": "http://h/x", P + "storage.import.source": "http"}


def compute(dv=None, pvc=None, pod=None, wffc=False, **kw):
    return dvstatus.compute(dvstatus.Observed(dv or f.dv(), pvc, pod, wffc, NOW, **kw))


def cond(result, ctype):
    return next(c for c in result.status["conditions"] if c["type"] == ctype)


@pytest.mark.parametrize(("pvc", "pod", "wffc", "phase"), [
    (None, None, False, "Pending"),
    (f.pvc(annotations=IMPORT, phase="Pending"), None, False, "Pending"),
    (f.pvc(annotations=IMPORT, phase="Pending"), None, True, "WaitForFirstConsumer"),
    (f.pvc(annotations=IMPORT), None, False, "PVCBound"),
    (f.pvc(annotations=IMPORT), f.pod(phase="Pending", state={"waiting": {}}), False,
     "ImportScheduled"),
    (f.pvc(annotations=IMPORT), f.pod(), False, "ImportInProgress"),
    (f.pvc(annotations=IMPORT), f.pod(phase="Succeeded", state=f.terminated(0)), False,
     "ImportInProgress"),
    (f.pvc(annotations={**IMPORT, P + "storage.pod.phase": "Succeeded"}), None, False,
     "Succeeded"),
    (f.pvc(annotations={**IMPORT, P + "storage.pod.phase": "Failed"}), None, False, "Failed"),
], ids=["no-pvc", "pvc-pending", "wffc", "bound", "scheduled", "running", "pod-done",
         "succeeded",
        "failed"])
def test_phase_follows_cdis_import_sequence(pvc, pod, wffc, phase):
    assert compute(pvc=pvc, pod=pod, wffc=wffc).phase == phase


def _as_the_controller_records(pod, annotations=None):
    """The PVC as the real producer leaves it: `podstate.decide` observes `pod` and writes
    its annotations (no hand-written reasons the real path would never write)."""
    pvc = f.pvc(annotations={**IMPORT, **(annotations or {})})
    decision = podstate.decide(pvc, pod, "importer-dv1", False)
    return f.pvc(annotations={**IMPORT, **(annotations or {}), **decision.annotations})


def test_succeeded_reports_full_progress_and_ready():
    pvc = _as_the_controller_records(f.pod(phase="Succeeded", state=f.terminated(
        0, TerminationReport(Reason.COMPLETED, "Import Complete").to_json())))
    r = compute(pvc=pvc)
    assert r.phase == "Succeeded"
    assert r.status["progress"] == "100.0%"
    assert cond(r, "Ready")["status"] == "True"
    assert cond(r, "Bound") | {} == {**cond(r, "Bound"), "status": "True", "reason": "Bound"}
    assert cond(r, "Running")["reason"] == "Completed"
    assert [e.reason for e in r.events] == ["ImportSucceeded", "Bound"]


def test_progress_comes_from_the_scrape_while_in_progress_and_is_kept_otherwise():
    pvc = f.pvc(annotations=IMPORT)
    r = compute(pvc=pvc, pod=f.pod(), progress="45.34%")
    assert r.status["progress"] == "45.34%"
    dv = f.dv(status=r.status)
    assert compute(dv=dv, pvc=pvc, pod=f.pod()).status["progress"] == "45.34%"


def test_failed_carries_the_importers_reason_and_message():
    report = TerminationReport(Reason.CHECKSUM_MISMATCH, "sha256 mismatch")
    pvc = _as_the_controller_records(f.pod(phase="Failed", state=f.terminated(
        1, report.to_json())))
    r = compute(pvc=pvc)
    assert r.phase == "Failed"
    # CDI's name for it, as the controller translates the importer's reason.
    assert cond(r, "Running")["reason"] == "ChecksumError"
    assert cond(r, "Running")["message"] == "sha256 mismatch"
    assert cond(r, "Ready")["status"] == "False"
    failed = [e for e in r.events if e.reason == "ImportFailed"]
    assert failed and failed[0].type == "Warning" and "sha256 mismatch" in failed[0].message


def test_restart_count_only_grows():
    pvc = f.pvc(annotations={**IMPORT, P + "storage.pod.restarts": "2"})
    last = f.terminated(1, TerminationReport(Reason.NETWORK_ERROR, "refused").to_json())
    r = compute(dv=f.dv(status={"restartCount": 5}), pvc=pvc, pod=f.pod(restarts=1, last=last))
    assert r.status["restartCount"] == 5


def test_same_world_gives_the_same_status_and_no_events():
    pvc = f.pvc(annotations=IMPORT)
    first = compute(pvc=pvc, pod=f.pod())
    again = dvstatus.compute(dvstatus.Observed(f.dv(status=first.status), pvc, f.pod(), False,
                                               "2024-05-01T11:00:00Z"))
    assert again.status == first.status
    assert again.events == []
    assert not dvstatus.status_changed(first.status, again.status)


def test_condition_transition_time_moves_only_when_status_flips():
    pvc = f.pvc(annotations=IMPORT)
    first = compute(pvc=pvc, pod=f.pod(phase="Pending", state={"waiting": {}}))
    later = dvstatus.compute(dvstatus.Observed(
        f.dv(status=first.status), f.pvc(annotations={**IMPORT, P + "storage.pod.phase":
                                                       "Succeeded"}),
        None, False, "2024-05-01T12:00:00Z"))
    assert cond(later, "Bound")["lastTransitionTime"] == NOW
    assert cond(later, "Ready")["lastTransitionTime"] == "2024-05-01T12:00:00Z"


def test_unsupported_source_is_pending_with_an_explanation():
    r = compute(unsupported="source type 'upload' is not supported by this controller yet")
    assert r.phase == "Pending"
    assert cond(r, "Running")["reason"] == "UnsupportedSource"


def test_claim_error_is_reported_on_bound_with_a_warning_event():
    r = compute(claim_error=("ErrClaimNotValid", "spec.storage.resources.requests.storage is "
                                                 "required"))
    assert cond(r, "Bound")["reason"] == "ErrClaimNotValid"
    assert any(e.reason == "ErrClaimNotValid" and e.type == "Warning" for e in r.events)
