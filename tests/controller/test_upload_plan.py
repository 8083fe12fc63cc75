"""The upload transfer's plan for one PVC: what it creates, records and removes."""

from __future__ import annotations

import pytest

from cdicontract import upload
from cdicontract.reasons import Reason
from cdicontract.report import TerminationReport
from controller import certs
from controller.cdiconfig import EffectiveConfig
from controller.runtime import kube
from controller.runtime.actions import Create, Delete, Patch
from controller.transfers.importing.pod import PodSettings as ImporterSettings
from controller.transfers.importing.transfer import ImportTransfer
from controller.transfers.protocol import ClaimView
from controller.transfers.upload import objects
from controller.transfers.upload.authority import Authority
from controller.transfers.upload.transfer import UploadTransfer
from tests.controller import factories as f

P = "cdi.kubevirt.io/"
TARGET = {P + "storage.upload.target": "", P + "storage.contentType": "kubevirt"}


@pytest.fixture(scope="module")
def authority():
    return Authority(certs.new_ca("server-ca"), certs.new_ca("client-ca"))


@pytest.fixture
def uploads(authority):
    return UploadTransfer(objects.PodSettings("cdi-py/uploadserver:test"), authority)


def seen(pvc=None, pod=None, services=(), wffc=False):
    return ClaimView(pvc or f.pvc(annotations=TARGET), pod, wffc, EffectiveConfig(),
                     tuple(services))


def upload_pod(**kw):
    p = f.pod(**kw)
    p["metadata"]["name"] = "cdi-upload-dv1"
    return p


def ready(status="True"):
    return [{"type": "Ready", "status": status}]


def test_upload_datavolumes_are_claimed_by_upload_only(uploads):
    dv = f.dv(source={"upload": {}}, contentType="archive")
    assert uploads.claim_annotations(dv) == {P + "storage.upload.target": "",
                                             P + "storage.contentType": "archive"}
    assert ImportTransfer(ImporterSettings("i")).claim_annotations(dv) is None
    assert uploads.claim_annotations(f.dv(source={"http": {"url": "http://h/x"}})) is None


def test_bare_pvcs_are_targets_by_the_legacy_annotation(uploads):
    assert uploads.targets(f.pvc(annotations={P + "storage.upload.target": ""}))
    assert not uploads.targets(f.pvc())
    assert not ImportTransfer(ImporterSettings("i")).targets(f.pvc(annotations=TARGET))


def test_a_fresh_target_gets_service_secret_then_pod(uploads):
    actions = uploads.plan(seen())
    assert [(type(a).__name__, a.resource.plural) for a in actions] == [
        ("Patch", "persistentvolumeclaims"), ("Create", "services"), ("Create", "secrets"),
        ("Create", "pods")]
    assert actions[0].patch == {"metadata": {"annotations": {
        P + "storage.uploadPodName": "cdi-upload-dv1"}}}
    assert {a.name for a in actions[1:]} == {"cdi-upload-dv1"}


def test_nothing_is_made_while_waiting_for_a_first_consumer(uploads):
    assert uploads.plan(seen(f.pvc(annotations=TARGET, phase="Pending"), wffc=True)) == []


@pytest.mark.parametrize(("conditions", "ready_text"), [(ready(), "true"),
                                                        (ready("False"), "false"),
                                                        ([], "false")],
                         ids=["ready", "not-ready", "no-condition"])
def test_pod_ready_is_recorded_only_while_the_pod_is_ready(uploads, conditions, ready_text):
    service = objects.service(f.pvc(annotations=TARGET))
    actions = uploads.plan(seen(pod=upload_pod(conditions=conditions), services=[service]))
    assert len(actions) == 1 and isinstance(actions[0], Patch)
    anns = actions[0].patch["metadata"]["annotations"]
    assert anns[P + "storage.pod.ready"] == ready_text
    assert anns[P + "storage.pod.phase"] == "Running"
    assert anns[P + "storage.uploadPodName"] == "cdi-upload-dv1"


def test_a_lost_service_is_made_again(uploads):
    actions = uploads.plan(seen(pod=upload_pod(conditions=ready())))
    assert [(type(a).__name__, a.resource.plural) for a in actions][1:] == [
        ("Create", "services")]


def test_success_is_recorded_then_secret_service_and_pod_go_pod_last(uploads):
    report = TerminationReport(reason=Reason.COMPLETED).to_json()
    pod = upload_pod(phase="Succeeded", state=f.terminated(0, report, "Completed"))
    service = objects.service(f.pvc(annotations=TARGET))
    service["metadata"]["uid"] = "svc-uid"
    actions = uploads.plan(seen(pod=pod, services=[service]))
    assert isinstance(actions[0], Patch)
    assert actions[0].patch["metadata"]["annotations"][P + "storage.pod.phase"] == "Succeeded"
    assert actions[1:] == [
        Delete(kube.SECRETS, "ns", "cdi-upload-dv1"),
        Delete(kube.SERVICES, "ns", "cdi-upload-dv1", "svc-uid"),
        Delete(kube.PODS, "ns", "cdi-upload-dv1", "pod-uid"),
    ]


def test_a_half_done_cleanup_is_finished(uploads):
    pvc = f.pvc(annotations={**TARGET, P + "storage.pod.phase": "Succeeded"})
    service = objects.service(pvc)
    actions = uploads.plan(seen(pvc, services=[service]))
    assert [(type(a).__name__, a.resource.plural) for a in actions] == [
        ("Delete", "secrets"), ("Delete", "services")]
    assert uploads.plan(seen(pvc)) == []


def test_a_permanent_failure_is_failed_and_cleaned_up(uploads):
    report = TerminationReport(reason=Reason.IMAGE_TOO_LARGE, message="too big").to_json()
    pod = upload_pod(phase="Running", state={"waiting": {"reason": "CrashLoopBackOff"}},
                     last=f.terminated(1, report))
    actions = uploads.plan(seen(pod=pod))
    assert actions[0].patch["metadata"]["annotations"][P + "storage.pod.phase"] == "Failed"
    assert actions[-1] == Delete(kube.PODS, "ns", "cdi-upload-dv1", "pod-uid")


def test_a_create_plan_needs_the_authority():
    with pytest.raises(RuntimeError):
        UploadTransfer(objects.PodSettings()).plan(seen())


def test_plans_are_creates_of_deterministic_names(uploads):
    creates = [a for a in uploads.plan(seen()) if isinstance(a, Create)]
    again = [a for a in uploads.plan(seen()) if isinstance(a, Create)]
    assert [a.name for a in creates] == [a.name for a in again]
    assert upload.upload_service_name("dv1") == "cdi-upload-dv1"


def user_pod(name, claim="dv1", phase="Running"):
    return {"metadata": {"name": name, "namespace": "ns"},
            "spec": {"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}]},
            "status": {"phase": phase}}


def test_live_pods_mounting_the_claim_are_its_users():
    from controller.transfers.protocol import pods_using
    own = user_pod("cdi-upload-dv1")
    own["metadata"]["labels"] = {P + "owner-uid": "pvc-uid", P + "transfer": "upload"}
    pods = [user_pod("vm"), user_pod("done", phase="Succeeded"), user_pod("other", "x"), own]
    assert pods_using(f.pvc(annotations=TARGET), pods) == ("vm",)


def test_no_server_is_made_while_another_pod_uses_the_claim(uploads):
    view = ClaimView(f.pvc(annotations=TARGET), None, False, EffectiveConfig(), (), ("vm",))
    actions = uploads.plan(view)
    assert all(isinstance(a, Patch) for a in actions)
    anns = {k: v for a in actions for k, v in a.patch["metadata"]["annotations"].items()}
    assert anns[P + "storage.condition.running.reason"] == "UploadTargetInUse"
    assert "ns/vm" in anns[P + "storage.condition.running.message"]
