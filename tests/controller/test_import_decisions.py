import json

import pytest

from cdicontract.reasons import Reason
from cdicontract.report import TerminationReport
from controller.transfers import podstate as importstate
from tests.controller import factories as f

P = "cdi.kubevirt.io/"
IMPORT = {P + "storage.import.endpoint": "http://h/x", P + "storage.import.source": "http"}


def report(reason, message=""):
    return TerminationReport(reason=reason, message=message).to_json()


def test_creates_the_pod_when_missing():
    d = importstate.decide(f.pvc(annotations=IMPORT), None, "importer-dv1", wffc=False)
    assert d.create_pod and not d.delete_pod
    assert d.annotations == {P + "storage.import.importPodName": "importer-dv1"}


def test_waits_for_a_consumer_on_unbound_wffc_claims():
    pvc = f.pvc(annotations=IMPORT, phase="Pending")
    d = importstate.decide(pvc, None, "importer-dv1", wffc=True)
    assert d.waiting_for_consumer and not d.create_pod


def test_immediate_binding_annotation_skips_the_wait():
    pvc = f.pvc(annotations={**IMPORT, P + "storage.bind.immediate.requested": "true"},
                phase="Pending")
    assert importstate.decide(pvc, None, "importer-dv1", wffc=True).create_pod


def test_success_is_recorded_and_the_pod_removed():
    pod = f.pod(phase="Succeeded", state=f.terminated(0, report(Reason.COMPLETED), "Completed"))
    d = importstate.decide(f.pvc(annotations=IMPORT), pod, "importer-dv1", wffc=False)
    assert d.delete_pod
    assert d.annotations[P + "storage.pod.phase"] == "Succeeded"
    assert d.annotations[P + "storage.condition.running.reason"] == "Completed"


@pytest.mark.parametrize("reason", [Reason.CHECKSUM_MISMATCH, Reason.IMAGE_TOO_LARGE,
                                    Reason.UNSAFE_IMAGE, Reason.UNSUPPORTED_FORMAT])
def test_permanent_failures_end_the_import_even_after_the_kubelet_restarted_it(reason):
    pod = f.pod(state={"running": {}}, last=f.terminated(1, report(reason, "bad image")),
                restarts=1)
    d = importstate.decide(f.pvc(annotations=IMPORT), pod, "importer-dv1", wffc=False)
    assert d.delete_pod
    assert d.annotations[P + "storage.pod.phase"] == "Failed"
    expected = "ChecksumError" if reason is Reason.CHECKSUM_MISMATCH else str(reason)
    assert d.annotations[P + "storage.condition.running.reason"] == expected
    assert d.annotations[P + "storage.condition.running.message"] == "bad image"


def test_transient_failures_keep_the_pod_and_explain_on_the_running_condition():
    pod = f.pod(state={"waiting": {"reason": "CrashLoopBackOff"}},
                last=f.terminated(1, report(Reason.NETWORK_ERROR, "connection refused")),
                restarts=3)
    d = importstate.decide(f.pvc(annotations=IMPORT), pod, "importer-dv1", wffc=False)
    assert not d.delete_pod
    a = d.annotations
    assert a[P + "storage.pod.restarts"] == "3"
    assert a[P + "storage.condition.running"] == "false"
    assert a[P + "storage.condition.running.reason"] == "NetworkError"
    assert a[P + "storage.condition.running.message"] == "connection refused"


def test_unparseable_termination_message_is_a_malformed_transient_error():
    pod = f.pod(state=f.terminated(2, "Traceback: boom"), restarts=0)
    d = importstate.decide(f.pvc(annotations=IMPORT), pod, "importer-dv1", wffc=False)
    assert not d.delete_pod
    assert d.annotations[P + "storage.condition.running.reason"] == "MalformedReport"
    assert "boom" not in " ".join(d.annotations.values())


@pytest.mark.parametrize("doc", [
    {"reason": 7, "message": "x"},
    {"reason": "ChecksumMismatch", "message": ["secret", "list"]},
    {"reason": "ChecksumMismatch", "message": "s" * 5000},
    {"reason": "ChecksumMismatch", "format": {"secret": 1}},
    {"reason": "ChecksumMismatch", "virtual_size": "secret"},
    {"reason": "ChecksumMismatch", "scratch_used": "secret"},
    {"reason": "ChecksumMismatch", "duration_seconds": "NaN"},
    {"reason": "ChecksumMismatch", "extra": {"k": ["secret"]}},
    {"reason": "NotAReason secret", "message": "secret"},
], ids=["reason-number", "message-list", "message-huge", "format-object", "size-string",
        "scratch-string", "duration-string", "extra-list", "reason-unknown"])
def test_a_report_with_wrong_field_types_is_malformed_and_nothing_of_it_is_written(doc):
    pod = f.pod(state=f.terminated(1, json.dumps(doc)), restarts=0)
    d = importstate.decide(f.pvc(annotations=IMPORT), pod, "importer-dv1", wffc=False)
    written = " ".join(d.annotations.values())
    assert d.annotations[P + "storage.condition.running.reason"] == "MalformedReport"
    assert "termination report is malformed" in written
    assert "secret" not in written and "sss" not in written
    # Not a permanent reason (even when the reason field claimed one): the pod retries.
    assert not d.delete_pod
    assert d.annotations[P + "storage.pod.phase"] != "Failed"


def test_finished_import_never_recreates_its_pod():
    pvc = f.pvc(annotations={**IMPORT, P + "storage.pod.phase": "Failed"})
    assert importstate.decide(pvc, None, "importer-dv1", wffc=False) == \
        importstate.PodDecision()


def test_deleting_claim_removes_its_running_pod():
    pvc = f.pvc(annotations=IMPORT)
    pvc["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    d = importstate.decide(pvc, f.pod(), "importer-dv1", wffc=False)
    assert d.delete_pod and not d.create_pod


def test_unchanged_world_writes_nothing():
    pod = f.pod()
    first = importstate.decide(f.pvc(annotations=IMPORT), pod, "importer-dv1", wffc=False)
    pvc = f.pvc(annotations={**IMPORT, **first.annotations})
    assert importstate.decide(pvc, pod, "importer-dv1", wffc=False).annotations == {}


def test_restart_count_never_goes_down_when_the_pod_is_replaced():
    pvc = f.pvc(annotations={**IMPORT, P + "storage.pod.restarts": "4"})
    d = importstate.decide(pvc, f.pod(restarts=0), "importer-dv1", wffc=False)
    assert P + "storage.pod.restarts" not in d.annotations


def test_image_pull_failure_is_named():
    pod = f.pod(phase="Pending", state={"waiting": {"reason": "ErrImagePull", "message": "nope"}})
    d = importstate.decide(f.pvc(annotations=IMPORT), pod, "importer-dv1", wffc=False)
    assert d.annotations[P + "storage.condition.running.reason"] == "ImagePullFailed"


def _crashlooping(restarts: int, last: dict) -> dict:
    return f.pod(state={"waiting": {"reason": "CrashLoopBackOff"}}, last=last,
                 restarts=restarts)


@pytest.mark.parametrize(("last", "reason", "message"), [
    (f.terminated(137, reason="OOMKilled"), "OOMKilled", "importer exited with code 137"),
    (f.terminated(137), "Error", "importer exited with code 137"),
    (f.terminated(1, report(Reason.NETWORK_ERROR, "connection refused")), "NetworkError",
     "connection refused"),
], ids=["oomkilled", "killed-by-signal", "retryable-reason"])
def test_a_pod_failing_past_the_restart_limit_ends_failed_with_its_last_reason(
        last, reason, message):
    d = importstate.decide(f.pvc(annotations=IMPORT), _crashlooping(6, last), "importer-dv1",
                           wffc=False, restart_limit=5)
    a = d.annotations
    assert d.delete_pod
    assert a[P + "storage.pod.phase"] == "Failed"
    assert a[P + "storage.condition.running"] == "false"
    assert a[P + "storage.condition.running.reason"] == reason
    assert a[P + "storage.condition.running.message"].startswith(message + "; gave up: ")
    assert "restarted 6 times, more than the limit 5" in a[P + "storage.condition.running.message"]


def test_within_the_limit_or_without_one_the_pod_restarts():
    oom = f.terminated(137, reason="OOMKilled")
    for restarts, limit in ((5, 5), (50, 0)):
        d = importstate.decide(f.pvc(annotations=IMPORT), _crashlooping(restarts, oom),
                               "importer-dv1", wffc=False, restart_limit=limit)
        assert not d.delete_pod
        assert d.annotations[P + "storage.pod.phase"] != "Failed"
    # Running again (the kubelet restarted it): it may still succeed.
    running = f.pod(state={"running": {}}, last=oom, restarts=9)
    d = importstate.decide(f.pvc(annotations=IMPORT), running, "importer-dv1", wffc=False,
                           restart_limit=5)
    assert not d.delete_pod


def test_restarts_of_earlier_pods_count_towards_the_limit():
    pvc = f.pvc(annotations={**IMPORT, P + "storage.pod.restarts": "7"})
    d = importstate.decide(pvc, _crashlooping(1, f.terminated(137, reason="OOMKilled")),
                           "importer-dv1", wffc=False, restart_limit=5)
    assert d.annotations[P + "storage.pod.phase"] == "Failed"
