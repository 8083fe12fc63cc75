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


def test_the_trusted_proxy_ca_is_copied_beside_the_pod_mounted_and_removed_with_it():
    from controller.cdiconfig import effective
    from controller.runtime.actions import CreateCopy

    cfg = effective({"spec": {"importProxy": {"HTTPSProxy": "https://proxy:3129",
                                              "trustedCAProxy": "my-proxy-ca"}}}, [])
    transfer = ImportTransfer(PodSettings("cdi-py/importer:t", cdi_namespace="cdi-x"))
    pvc = f.pvc(annotations=IMPORT)
    made = transfer.plan(ClaimView(pvc, None, False, cfg))
    copy = next(a for a in made if isinstance(a, CreateCopy))
    assert (copy.resource, copy.namespace, copy.name) == (
        kube.CONFIGMAPS, "ns", "import-proxy-cm-dv1")
    assert (copy.source_namespace, copy.source_name) == ("cdi-x", "my-proxy-ca")
    assert copy.body["metadata"]["ownerReferences"][0]["uid"] == "pvc-uid"
    pod = made[-1].body
    assert made.index(copy) < made.index(made[-1])
    c = pod["spec"]["containers"][0]
    assert {"name": "cdi-proxy-cert-vol", "mountPath": "/proxycerts",
            "readOnly": True} in c["volumeMounts"]
    assert {"name": "cdi-proxy-cert-vol", "configMap": {"name": "import-proxy-cm-dv1"}} \
        in pod["spec"]["volumes"]
    assert {"name": "IMPORTER_PROXY_CERT_DIR", "value": "/proxycerts"} in c["env"]
    report = TerminationReport(reason=Reason.COMPLETED).to_json()
    done_pod = f.pod(phase="Succeeded", state=f.terminated(0, report, "Completed"))
    done = transfer.plan(ClaimView(pvc, done_pod, False, cfg))
    assert Delete(kube.CONFIGMAPS, "ns", "import-proxy-cm-dv1") in done
    plain = transfer.plan(ClaimView(pvc, None, False, EffectiveConfig()))
    assert not any(isinstance(a, CreateCopy) for a in plain)
    assert "cdi-proxy-cert-vol" not in str(plain[-1].body)


def test_a_long_claim_name_gives_a_valid_proxy_ca_copy_name():
    from controller.transfers.importing.proxycert import configmap_name

    long = "a" * 253
    assert len(configmap_name(long)) == 253
    assert configmap_name(long) != configmap_name("a" * 252 + "b")
