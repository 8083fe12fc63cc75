"""Which annotations a DataVolume passes to its PVC and a PVC to its transfer pods, as CDI."""

from __future__ import annotations

import pytest

from cdicontract.reasons import Reason
from cdicontract.report import TerminationReport
from controller import claims, propagation
from controller.cdiconfig import EffectiveConfig
from controller.transfers import podstate
from controller.transfers.clone import objects as cloneobjects
from controller.transfers.importing import pod as importpod
from controller.transfers.importing import source as importsource
from controller.transfers.upload import objects as uploadobjects
from tests.controller import factories as f

P = "cdi.kubevirt.io/"
NET = "k8s.v1.cni.cncf.io/networks"
ISTIO = "sidecar.istio.io/inject"
LINKERD = "linkerd.io/inject"
MULTUS = "v1.multus-cni.io/default-network"
PRIORITY = P + "storage.pod.priorityclassname"


def pvc_of(dv, *, prealloc_default=False):
    anns = importsource.pvc_annotations(dv)
    assert isinstance(anns, dict)
    spec = claims.claim_spec(dv, [f.storage_class("local", default=True)], {},
                             EffectiveConfig())
    assert isinstance(spec, dict)
    return claims.build_pvc(dv, spec, anns, preallocation=prealloc_default)


def test_every_datavolume_annotation_reaches_the_pvc_with_cdis_own():
    dv = f.dv(source={"http": {"url": "http://x/a"}}, priorityClassName="high",
              annotations={NET: "ns/net1", "example.com/team": "a", ISTIO: "true"})
    a = pvc_of(dv)["metadata"]["annotations"]
    assert a[NET] == "ns/net1" and a["example.com/team"] == "a" and a[ISTIO] == "true"
    assert a[PRIORITY] == "high"
    assert P + "storage.pod.priorityClassName" not in a  # CDI's key only
    assert a[P + "storage.pod.restarts"] == "0"
    assert a[P + "storage.contentType"] == "kubevirt"
    assert a[P + "createdForDataVolume"] == "dv-uid"


@pytest.mark.parametrize(("spec", "default", "want"), [
    ({}, False, "false"),
    ({}, True, "true"),
    ({"preallocation": True}, False, "true"),
    ({"preallocation": False}, True, "false"),
], ids=["config-off", "config-on", "dv-on", "dv-off-beats-config"])
def test_preallocation_requested_is_always_written(spec, default, want):
    dv = f.dv(**spec)
    a = pvc_of(dv, prealloc_default=default)["metadata"]["annotations"]
    assert a[P + "storage.preallocation.requested"] == want


@pytest.mark.parametrize("key", [
    P + "storage.pod.phase", P + "storage.pod.restarts", P + "storage.import.importPodName",
    P + "storage.condition.running", P + "storage.condition.bound.message",
    P + "storage.preallocation", P + "storage.populatedFor", P + "storage.clone.token",
    P + "storage.extended.clone.token", P + "storage.cloneOf",
])
def test_the_outcome_record_and_tokens_are_not_passed(key):
    dv = f.dv(annotations={key: "Succeeded"})
    a = pvc_of(dv)["metadata"]["annotations"]
    assert a.get(key) != "Succeeded"


def test_pod_annotations_are_cdis_allowed_ones_with_the_sidecar_opt_outs():
    pvc = f.pvc(annotations={NET: "ns/net1", MULTUS: "ns/def", "example.com/team": "a",
                             PRIORITY: "high", P + "storage.import.endpoint": "http://x"})
    assert propagation.pod_annotations(pvc) == {
        NET: "ns/net1", MULTUS: "ns/def", ISTIO: "false", LINKERD: "disabled",
        PRIORITY: "high"}


@pytest.mark.parametrize(("given", "want"), [
    ({ISTIO: "true"}, "true"), ({ISTIO: ""}, None), ({}, "false")],
    ids=["asked", "emptied", "default"])
def test_istio_opt_out_can_be_overridden(given, want):
    assert propagation.pod_annotations(f.pvc(annotations=given)).get(ISTIO) == want


def test_priority_class_reads_cdis_key_and_the_legacy_one():
    assert propagation.priority_class(f.pvc(annotations={PRIORITY: "a"})) == "a"
    legacy = f.pvc(annotations={P + "storage.pod.priorityClassName": "b"})
    assert propagation.priority_class(legacy) == "b"
    assert propagation.pod_annotations(legacy)[PRIORITY] == "b"
    assert propagation.priority_class(f.pvc()) is None


def _import_pvc(extra):
    return f.pvc(annotations={P + "storage.import.endpoint": "http://x/a",
                              P + "storage.import.source": "http", **extra})


def test_importer_pod_carries_the_annotations_and_priority():
    pvc = _import_pvc({NET: "ns/net1", PRIORITY: "high", "example.com/team": "a"})
    req = importsource.ImportRequest.from_pvc(pvc)
    assert req is not None
    pod = importpod.build(pvc, req, EffectiveConfig(), importpod.PodSettings("img"))
    a = pod["metadata"]["annotations"]
    assert a[NET] == "ns/net1" and a[ISTIO] == "false" and a[PRIORITY] == "high"
    assert "example.com/team" not in a
    assert a[P + "storage.createdByController"] == "yes"
    assert pod["spec"]["priorityClassName"] == "high"


def test_upload_pod_carries_them_but_not_its_service():
    pvc = f.pvc(annotations={P + "storage.upload.target": "", NET: "ns/net1",
                             PRIORITY: "high"})
    pod = uploadobjects.pod(pvc, EffectiveConfig(), uploadobjects.PodSettings("img"))
    assert pod["metadata"]["annotations"][NET] == "ns/net1"
    assert pod["metadata"]["annotations"][ISTIO] == "false"
    assert pod["spec"]["priorityClassName"] == "high"
    assert NET not in uploadobjects.service(pvc)["metadata"]["annotations"]


def test_clone_source_pod_takes_them_from_the_target():
    target = f.pvc(annotations={"k8s.io/CloneRequest": "src/golden", NET: "ns/net1",
                                PRIORITY: "high"})
    source = f.pvc("golden")
    pod = cloneobjects.source_pod(target, source, EffectiveConfig(),
                                  cloneobjects.SourcePodSettings("img"))
    assert pod["metadata"]["annotations"][NET] == "ns/net1"
    assert pod["metadata"]["annotations"][ISTIO] == "false"
    assert pod["spec"]["priorityClassName"] == "high"


@pytest.mark.parametrize(("applied", "want"), [(True, "true"), (None, None)])
def test_preallocation_applied_is_recorded_from_the_report(applied, want):
    report = TerminationReport(Reason.COMPLETED, "Import Complete",
                               preallocation_applied=applied)
    pod = f.pod(phase="Succeeded", state=f.terminated(0, report.to_json(), "Completed"))
    d = podstate.decide(_import_pvc({}), pod, "importer-dv1", wffc=False)
    assert d.annotations.get(P + "storage.pod.phase") == "Succeeded"
    assert d.annotations.get(P + "storage.preallocation") == want
