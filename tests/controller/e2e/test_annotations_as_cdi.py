"""Annotations as CDI copies and writes them, on the real control plane: DataVolume -> PVC
(all of them), PVC -> transfer pod (network, sidecar opt-outs, priority class), CDI's
preallocation annotations and the bound condition annotations of a Pending PVC."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.cluster.helpers import pod, wait_for
from tests.controller.e2e.conftest import disk_of, dv_manifest

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
P = "cdi.kubevirt.io/"
NET = "k8s.v1.cni.cncf.io/networks"
ISTIO = "sidecar.istio.io/inject"
PRIORITY = P + "storage.pod.priorityclassname"
BOUND = P + "storage.condition.bound"
RETAIN = P + "storage.pod.retainAfterCompletion"
WFFC_MESSAGE = "waiting for first consumer to be created before binding"
NO_CLASS_MESSAGE = "no persistent volumes available for this claim and no storage class is set"
PC_PATH = "/apis/scheduling.k8s.io/v1/priorityclasses"


def pvc_of(cdi: Any, ns: str, name: str) -> dict[str, Any]:
    return wait_for(f"pvc {name}", lambda: cdi.api.get_or_none(
        f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{name}"), timeout=30)


def annotations_of(obj: dict[str, Any]) -> dict[str, str]:
    return dict(obj["metadata"].get("annotations") or {})


def condition(dv: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next(c for c in dv["status"]["conditions"] if c["type"] == ctype)


@pytest.fixture
def priority_class(cdi: Any) -> Any:
    name = f"cdi-annot-{uuid.uuid4().hex[:6]}"
    cdi.api.create(PC_PATH, {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                             "metadata": {"name": name}, "value": 1234})
    yield name
    cdi.api.delete(f"{PC_PATH}/{name}")


def test_annotations_reach_the_pvc_and_the_importer_pod(cdi, namespace, priority_class):
    dv = dv_manifest("annot", {"blank": {}}, size="16Mi",
                     annotations={NET: "default/net1", "example.com/team": "storage",
                                  RETAIN: "true"})
    dv["spec"]["priorityClassName"] = priority_class
    cdi.create_dv(namespace, dv)
    done = cdi.wait_phase(namespace, "annot", "Succeeded", "Failed")
    assert done["status"]["phase"] == "Succeeded", done["status"]
    a = annotations_of(pvc_of(cdi, namespace, "annot"))
    assert a[NET] == "default/net1" and a["example.com/team"] == "storage"
    assert a[PRIORITY] == priority_class
    assert P + "storage.pod.priorityClassName" not in a
    assert a[P + "createdForDataVolume"] == done["metadata"]["uid"]
    # The pod is kept after completion (retainAfterCompletion, passed on too).
    importer = cdi.api.get(f"/api/v1/namespaces/{namespace}/pods/importer-annot")
    pa = annotations_of(importer)
    assert pa[NET] == "default/net1"
    assert pa[ISTIO] == "false"
    assert pa[PRIORITY] == priority_class
    assert "example.com/team" not in pa
    assert importer["spec"]["priorityClassName"] == priority_class
    assert importer["spec"]["priority"] == 1234  # the class resolved by the API server


def test_a_datavolume_can_let_the_sidecar_in(cdi, namespace):
    cdi.create_dv(namespace, dv_manifest("istio", {"blank": {}}, size="16Mi",
                                         annotations={ISTIO: "true", RETAIN: "true"}))
    cdi.wait_phase(namespace, "istio", "Succeeded", "Failed")
    importer = cdi.api.get(f"/api/v1/namespaces/{namespace}/pods/importer-istio")
    assert annotations_of(importer)[ISTIO] == "true"


def test_upload_pod_carries_them(cdi, namespace, priority_class):
    dv = dv_manifest("up", {"upload": {}}, size="16Mi", annotations={NET: "default/net1"})
    dv["spec"]["priorityClassName"] = priority_class
    cdi.create_dv(namespace, dv)
    server = wait_for("upload pod", lambda: cdi.api.get_or_none(
        f"/api/v1/namespaces/{namespace}/pods/cdi-upload-up"), timeout=60)
    pa = annotations_of(server)
    assert pa[NET] == "default/net1" and pa[ISTIO] == "false"
    assert server["spec"]["priorityClassName"] == priority_class
    assert server["spec"]["priority"] == 1234


@pytest.mark.parametrize("asked", [True, False], ids=["asked", "not-asked"])
def test_preallocation_is_requested_and_recorded_as_applied(cdi, cluster, namespace, asked):
    dv = dv_manifest("pre", {"blank": {}}, size="16Mi")
    dv["spec"]["preallocation"] = asked
    cdi.create_dv(namespace, dv)
    done = cdi.wait_phase(namespace, "pre", "Succeeded", "Failed")
    assert done["status"]["phase"] == "Succeeded", done["status"]
    a = annotations_of(pvc_of(cdi, namespace, "pre"))
    assert a[P + "storage.preallocation.requested"] == ("true" if asked else "false")
    if asked:
        assert a[P + "storage.preallocation"] == "true"
        assert disk_of(cluster, namespace, "pre").stat().st_blocks * 512 >= 15 << 20
    else:
        assert P + "storage.preallocation" not in a


def test_cdiconfig_preallocation_is_the_default_request(cdi, namespace):
    path = "/apis/cdi.kubevirt.io/v1beta1/cdiconfigs/config"
    cdi.api.merge_patch(path, {"spec": {"preallocation": True}})
    try:
        wait_for("status", lambda: cdi.api.get(path)["status"].get("preallocation") is True,
                 timeout=20)
        cdi.create_dv(namespace, dv_manifest("cfg", {"blank": {}}, size="16Mi"))
        a = annotations_of(pvc_of(cdi, namespace, "cfg"))
        assert a[P + "storage.preallocation.requested"] == "true"
    finally:
        cdi.api.merge_patch(path, {"spec": {"preallocation": None}})


def bound_annotations(cdi: Any, ns: str, name: str) -> dict[str, str]:
    a = annotations_of(pvc_of(cdi, ns, name))
    return {k: v for k, v in a.items() if k.startswith(BOUND)}


def test_waiting_for_first_consumer_then_bound(cdi, namespace):
    cdi.create_dv(namespace, dv_manifest("wf", {"blank": {}}, size="16Mi", sc="local-wffc"))
    want = {BOUND: "false", BOUND + ".reason": "Pending", BOUND + ".message": WFFC_MESSAGE}
    wait_for("bound condition annotations", lambda: bound_annotations(
        cdi, namespace, "wf") == want, timeout=60)
    dv = wait_for("DataVolume Bound condition", lambda: (
        d := cdi.dv(namespace, "wf")) and WFFC_MESSAGE in condition(d, "Bound").get(
            "message", "") and d, timeout=30)
    bound = condition(dv, "Bound")
    assert bound["status"] == "False" and bound["reason"] == "Pending"
    assert bound["message"] == f"target PVC wf Pending and {WFFC_MESSAGE}"
    consumer = pod("consumer", "sleep 1", volumes=[{
        "name": "d", "persistentVolumeClaim": {"claimName": "wf"}}],
        container={"volumeMounts": [{"name": "d", "mountPath": "/d"}]})
    cdi.api.create(f"/api/v1/namespaces/{namespace}/pods", consumer)
    dv = cdi.wait_phase(namespace, "wf", "Succeeded", "Failed", timeout=90)
    assert dv["status"]["phase"] == "Succeeded"
    # CDI removes them once the PVC is Bound.
    wait_for("bound annotations removed", lambda: bound_annotations(
        cdi, namespace, "wf") == {}, timeout=30)
    assert condition(cdi.dv(namespace, "wf"), "Bound")["status"] == "True"


def test_no_storage_class_says_why(cdi, namespace):
    dv = dv_manifest("nocls", {"blank": {}}, size="16Mi", storage=False)
    dv["spec"]["pvc"]["storageClassName"] = ""
    cdi.create_dv(namespace, dv)
    want = {BOUND: "false", BOUND + ".reason": "Pending", BOUND + ".message": NO_CLASS_MESSAGE}
    wait_for("bound condition annotations", lambda: bound_annotations(
        cdi, namespace, "nocls") == want, timeout=60)
    wait_for("DataVolume Bound condition", lambda: condition(cdi.dv(namespace, "nocls"), "Bound")
             .get("message") == f"target PVC nocls Pending and {NO_CLASS_MESSAGE}", timeout=30)

