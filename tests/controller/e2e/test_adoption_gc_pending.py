"""CDI's DataVolume life on the real control plane: claim adoption, checkpoint updates,
garbage collection, and the pending gauge's value."""

from __future__ import annotations

import json
import re
import time

import pytest
import requests

from tests.cluster.helpers import pvc as pvc_manifest
from tests.cluster.helpers import wait_for
from tests.controller.e2e.conftest import dv_manifest

pytestmark = [pytest.mark.cluster]
CONFIG = "/apis/cdi.kubevirt.io/v1beta1/cdiconfigs/config"
LOCAL_CLASS = "/apis/storage.k8s.io/v1/storageclasses/local"
DEFAULT = "storageclass.kubernetes.io/is-default-class"
ADOPT = "cdi.kubevirt.io/allowClaimAdoption"


def apply(cdi, namespace, manifest):
    return cdi.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(manifest),
                       check=False)


def claim_path(ns, name):
    return f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{name}"


def make_claim(cdi, ns, name):
    body = pvc_manifest(name, "16Mi", sc="local")
    return cdi.api.create(f"/api/v1/namespaces/{ns}/persistentvolumeclaims", body)


def test_a_datavolume_over_an_existing_claim_is_refused_in_cdis_words(cdi, namespace):
    make_claim(cdi, namespace, "taken")
    r = apply(cdi, namespace, dv_manifest("taken", {"blank": {}}, size="16Mi"))
    assert r.returncode != 0
    assert f"Destination PVC {namespace}/taken already exists" in r.stderr
    assert cdi.dv(namespace, "taken") is None


def test_a_claim_is_adopted_when_the_datavolume_asks(cdi, namespace):
    made = make_claim(cdi, namespace, "mine")
    dv = cdi.create_dv(namespace, dv_manifest("mine", {"blank": {}}, size="16Mi",
                                              annotations={ADOPT: "true"}))
    done = cdi.wait_phase(namespace, "mine", "Succeeded", "Failed", timeout=60)
    assert done["status"]["phase"] == "Succeeded"
    claim = cdi.api.get(claim_path(namespace, "mine"))
    assert claim["metadata"]["uid"] == made["metadata"]["uid"]
    owners = [r for r in claim["metadata"].get("ownerReferences", []) if r.get("controller")]
    assert [(r["kind"], r["uid"]) for r in owners] == [("DataVolume", dv["metadata"]["uid"])]
    assert cdi.api.get_or_none(f"/api/v1/namespaces/{namespace}/pods/importer-mine") is None


def test_checkpoint_updates_are_admitted_and_other_spec_updates_refused(cdi, namespace):
    source = {"vddk": {"url": "https://vcenter.example", "uuid": "u", "backingFile": "b",
                       "thumbprint": "t", "secretRef": "s"}}
    m = dv_manifest("warm", source, size="16Mi")
    m["spec"]["checkpoints"] = [{"previous": "", "current": "c1"}]
    cdi.create_dv(namespace, m)
    ok = cdi.kubectl("-n", namespace, "patch", "dv", "warm", "--type=merge", "-p", json.dumps(
        {"spec": {"checkpoints": [{"previous": "", "current": "c1"},
                                  {"previous": "c1", "current": "c2"}],
                  "finalCheckpoint": True}}), check=False)
    assert ok.returncode == 0, ok.stderr
    assert cdi.dv(namespace, "warm")["spec"]["finalCheckpoint"] is True
    bad = cdi.kubectl("-n", namespace, "patch", "dv", "warm", "--type=merge", "-p", json.dumps(
        {"spec": {"source": {"vddk": {"url": "https://elsewhere.example"}}}}), check=False)
    assert bad.returncode != 0 and "Cannot update DataVolume Spec" in bad.stderr


def _set_ttl(cdi, value):
    cdi.api.merge_patch(CONFIG, {"spec": {"dataVolumeTTLSeconds": value}})


def test_garbage_collection_is_off_by_default(cdi, namespace):
    cdi.create_dv(namespace, dv_manifest("kept", {"blank": {}}, size="16Mi"))
    cdi.wait_phase(namespace, "kept", "Succeeded", timeout=60)
    time.sleep(5)
    dv = cdi.dv(namespace, "kept")
    assert dv is not None
    assert "cdi.kubevirt.io/storage.deleteAfterCompletion" not in dv["metadata"].get(
        "annotations", {})


def test_a_succeeded_datavolume_is_collected_with_ttl_zero_and_its_claim_kept(cdi, namespace):
    _set_ttl(cdi, 0)
    try:
        dv = cdi.create_dv(namespace, dv_manifest("gc", {"blank": {}}, size="16Mi"))
        optout = cdi.create_dv(namespace, dv_manifest(
            "nogc", {"blank": {}}, size="16Mi",
            annotations={"cdi.kubevirt.io/storage.deleteAfterCompletion": "false"}))
        wait_for("DataVolume collected", lambda: cdi.dv(namespace, "gc") is None, timeout=90)
        claim = cdi.api.get(claim_path(namespace, "gc"))
        assert not claim["metadata"].get("deletionTimestamp")
        assert claim["metadata"]["annotations"].get("cdi.kubevirt.io/garbageCollected") == "true"
        assert claim["metadata"]["annotations"].get("cdi.kubevirt.io/storage.pod.phase") == \
            "Succeeded"
        assert dv["metadata"]["uid"] not in {
            r["uid"] for r in claim["metadata"].get("ownerReferences", [])}
        cdi.wait_phase(namespace, "nogc", "Succeeded", timeout=60)
        time.sleep(3)
        assert cdi.dv(namespace, "nogc")["metadata"]["uid"] == optout["metadata"]["uid"]
        time.sleep(3)  # the claim outlives its DataVolume for good (no cascade)
        assert cdi.api.get_or_none(claim_path(namespace, "gc")) is not None
    finally:
        _set_ttl(cdi, None)


def _pending_value(cdi):
    pods = cdi.api.get("/api/v1/namespaces/cdi/pods",
                       labelSelector="cdi.kubevirt.io=cdi-deployment")["items"]
    values = []
    for p in pods:
        if p["metadata"].get("deletionTimestamp") or not p["status"].get("podIP"):
            continue
        text = requests.get(f"http://{p['status']['podIP']}:8080/metrics", timeout=5).text
        if "cdi_controller_leader 1.0" not in text:
            continue
        m = re.search(r"^kubevirt_cdi_datavolume_pending ([0-9.e+]+)$", text, re.M)
        assert m, "kubevirt_cdi_datavolume_pending not exported"
        values.append(float(m.group(1)))
    assert len(values) == 1, "one leader"
    return values[0]


def test_pending_counts_datavolumes_waiting_for_a_default_class(cdi, namespace):
    before = _pending_value(cdi)
    # Pending too, but for its clone source, not for a class: not counted.
    cdi.create_dv(namespace, dv_manifest("orphan", {"pvc": {"namespace": namespace,
                                                            "name": "absent"}},
                                         size="16Mi", sc="local"))
    cdi.wait_phase(namespace, "orphan", "Pending", timeout=30)
    cdi.api.merge_patch(LOCAL_CLASS, {"metadata": {"annotations": {DEFAULT: "false"}}})
    try:
        cdi.create_dv(namespace, dv_manifest("waits", {"blank": {}}, size="16Mi"))
        wait_for("pending gauge 1 up", lambda: _pending_value(cdi) == before + 1, timeout=30)
        time.sleep(3)
        assert _pending_value(cdi) == before + 1
        dv = cdi.dv(namespace, "waits")
        assert dv["status"]["phase"] == "Pending"
        assert cdi.api.get_or_none(claim_path(namespace, "waits")) is None
        bound = next(c for c in dv["status"]["conditions"] if c["type"] == "Bound")
        assert bound["reason"] == "ErrClaimNotValid"
    finally:
        cdi.api.merge_patch(LOCAL_CLASS, {"metadata": {"annotations": {DEFAULT: "true"}}})
    cdi.wait_phase(namespace, "waits", "Succeeded", timeout=90)
    wait_for("pending gauge back", lambda: _pending_value(cdi) == before, timeout=30)
