"""Import as a transfer: its plan for one PVC, and the owner labels on its pod."""

from cdicontract.reasons import Reason
from cdicontract.report import TerminationReport
from controller.cdiconfig import EffectiveConfig
from controller.runtime import kube
from controller.runtime.actions import Create, Delete, Patch
from controller.transfers.importing.pod import PodSettings
from controller.transfers.importing.transfer import ImportTransfer
from controller.transfers.protocol import ClaimView
from tests.controller import factories as f

P = "cdi.kubevirt.io/"
IMPORT = {P + "storage.import.endpoint": "http://h/x", P + "storage.import.source": "http"}
imports = ImportTransfer(PodSettings("cdi-py/importer:t"))


def plan(pvc, pod=None):
    return imports.plan(ClaimView(pvc, pod, False, EffectiveConfig()))


def test_import_datavolumes_are_claimed_with_their_source_annotations():
    anns = imports.claim_annotations(f.dv(source={"http": {"url": "http://h/x"}}))
    assert anns[P + "storage.import.endpoint"] == "http://h/x"
    assert imports.claim_annotations(f.dv(source={"pvc": {"name": "a", "namespace": "b"}})) \
        is None


def test_a_fresh_import_records_the_pod_name_then_creates_the_labelled_pod():
    pvc = f.pvc(annotations=IMPORT)
    actions = plan(pvc)
    assert [type(a) for a in actions] == [Patch, Create]
    pod = actions[1].body
    assert actions[1].resource == kube.PODS and pod["metadata"]["name"] == "importer-dv1"
    assert pod["metadata"]["labels"][P + "owner-uid"] == "pvc-uid"
    assert pod["metadata"]["labels"][P + "transfer"] == "import"


def test_a_datavolumes_import_pod_is_labelled_with_the_datavolumes_uid():
    pvc = f.pvc(annotations=IMPORT)
    pvc["metadata"]["ownerReferences"] = [{"kind": "DataVolume", "name": "dv1",
                                           "uid": "dv-uid", "controller": True}]
    pod = plan(pvc)[1].body
    assert pod["metadata"]["labels"][P + "owner-uid"] == "dv-uid"


def test_success_removes_the_pod():
    report = TerminationReport(reason=Reason.COMPLETED).to_json()
    pod = f.pod(phase="Succeeded", state=f.terminated(0, report, "Completed"))
    actions = plan(f.pvc(annotations=IMPORT), pod)
    assert actions[-1] == Delete(kube.PODS, "ns", "importer-dv1", "pod-uid")


def test_a_pvc_that_is_not_an_import_target_gets_no_plan():
    assert plan(f.pvc()) == []


def test_a_proxy_secret_is_made_before_the_pod_and_deleted_with_it():
    from controller.cdiconfig import effective

    cfg = effective({"spec": {"importProxy": {"HTTPSProxy": "http://u:p@proxy:3128"}}}, [])
    pvc = f.pvc(annotations=IMPORT)
    made = imports.plan(ClaimView(pvc, None, False, cfg))
    assert [(type(a), a.resource) for a in made[1:]] == [(Create, kube.SECRETS),
                                                          (Create, kube.PODS)]
    assert made[1].body["metadata"]["name"] == "importer-dv1-proxy"
    report = TerminationReport(reason=Reason.COMPLETED).to_json()
    pod = f.pod(phase="Succeeded", state=f.terminated(0, report, "Completed"))
    done = imports.plan(ClaimView(pvc, pod, False, cfg))
    assert done[-2:] == [Delete(kube.PODS, "ns", "importer-dv1", "pod-uid"),
                         Delete(kube.SECRETS, "ns", "importer-dv1-proxy")]
