"""The controller as a Deployment: restarts, leader election, deletion mid-import, metrics."""

from __future__ import annotations

import re

import pytest
import requests

from tests.cluster.helpers import wait_for
from tests.controller.e2e.conftest import deployment_available, dv_manifest

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
DEPLOY = "/apis/apps/v1/namespaces/cdi/deployments/cdi-deployment"
LEASE = "/apis/coordination.k8s.io/v1/namespaces/cdi/leases/cdi-controller-leader"


def controller_pods(api):
    items = api.get("/api/v1/namespaces/cdi/pods",
                    labelSelector="cdi.kubevirt.io=cdi-deployment")["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def importer_uid(api, ns, name):
    p = api.get_or_none(f"/api/v1/namespaces/{ns}/pods/importer-{name}")
    return p["metadata"]["uid"] if p else None


def test_controller_killed_mid_import_resumes_without_a_second_pod(cdi, namespace, images):
    api = cdi.api
    cdi.create_dv(namespace, dv_manifest("slow", {"http": {"url": images.url(
        "big.raw", where="slow/")}}, size="80Mi"))
    cdi.wait_phase(namespace, "slow", "ImportInProgress", timeout=60)
    first_pod = importer_uid(api, namespace, "slow")
    for p in controller_pods(api):
        api.delete(f"/api/v1/namespaces/cdi/pods/{p['metadata']['name']}",
                   {"gracePeriodSeconds": 0})
    assert first_pod is not None
    seen = {first_pod}

    def finished():
        uid = importer_uid(api, namespace, "slow")
        if uid is not None:
            seen.add(uid)
        dv = cdi.dv(namespace, "slow")
        return dv if dv and dv.get("status", {}).get("phase") in ("Succeeded", "Failed") \
            else None

    wait_for("controller back", lambda: deployment_available(api) and controller_pods(api),
             timeout=60)
    dv = wait_for("import finished", finished, timeout=120)
    assert dv["status"]["phase"] == "Succeeded"
    assert dv["status"]["restartCount"] == 0
    assert seen == {first_pod}, "a second importer pod was made"
    # The scheduler placed exactly one importer pod (none at all would mean no evidence).
    scheduled = [e for e in cdi.events(namespace, "importer-slow")
                 if e["reason"] == "Scheduled"]
    assert [e["involvedObject"]["uid"] for e in scheduled] == [first_pod], scheduled


def test_two_replicas_elect_one_leader_and_stay_available(cdi, namespace):
    api = cdi.api
    api.merge_patch(DEPLOY, {"spec": {"replicas": 2}})
    try:
        wait_for("two ready replicas", lambda: deployment_available(api)
                 and len(controller_pods(api)) == 2, timeout=120)
        names = {p["metadata"]["name"] for p in controller_pods(api)}
        holder = wait_for("lease holder", lambda: api.get(LEASE)["spec"].get("holderIdentity")
                          in names and api.get(LEASE)["spec"]["holderIdentity"], timeout=30)
        assert holder in names
        cdi.create_dv(namespace, dv_manifest("two", {"blank": {}}, size="16Mi"))
        assert cdi.wait_phase(namespace, "two", "Succeeded", "Failed")["status"]["phase"] == \
            "Succeeded"
        pods = [e for e in cdi.events(namespace, "two") if e["reason"] == "ImportSucceeded"]
        assert len(pods) == 1
        # The standby takes over when the leader goes.
        api.delete(f"/api/v1/namespaces/cdi/pods/{holder}", {"gracePeriodSeconds": 0})
        new = wait_for("new leader", lambda: (h := api.get(LEASE)["spec"].get(
            "holderIdentity")) not in (None, holder) and h, timeout=90)
        assert new != holder
    finally:
        api.merge_patch(DEPLOY, {"spec": {"replicas": 1}})
        wait_for("one replica", lambda: len(controller_pods(api)) == 1
                 and deployment_available(api), timeout=120)


def test_deleting_a_datavolume_mid_import_removes_its_pvc_and_pod(cdi, namespace, images):
    api = cdi.api
    cdi.create_dv(namespace, dv_manifest("gone", {"http": {"url": images.url(
        "big.raw", where="slow/")}}, size="80Mi"))
    cdi.wait_phase(namespace, "gone", "ImportInProgress", timeout=60)
    cdi.kubectl("-n", namespace, "delete", "dv", "gone", "--wait=false")

    def all_gone():
        return (api.get_or_none(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/gone")
                is None and api.get_or_none(
                    f"/api/v1/namespaces/{namespace}/pods/importer-gone") is None)

    wait_for("pvc and pod deleted", all_gone, timeout=60)


def sample(text, series):
    """The value of one exposition line `series value`, or 0 when it is not there yet."""
    m = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def test_controller_serves_its_prometheus_metrics(cdi, namespace):
    pod = controller_pods(cdi.api)[0]

    def scrape():
        return requests.get(f"http://{pod['status']['podIP']}:8080/metrics", timeout=5).text

    ok = 'cdi_controller_reconcile_total{kind="dv",result="ok"}'
    took = 'cdi_controller_reconcile_duration_seconds_count{kind="dv"}'
    before = scrape()
    cdi.create_dv(namespace, dv_manifest("m", {"blank": {}}, size="16Mi"))
    assert cdi.wait_phase(namespace, "m", "Succeeded", "Failed")["status"]["phase"] == \
        "Succeeded"
    text = scrape()
    assert "kubevirt_cdi_datavolume_pending" in text
    # The counters count: the DataVolume's reconciles are in them.
    assert sample(text, ok) > sample(before, ok) and sample(text, ok) >= 1
    assert sample(text, took) > sample(before, took)
    assert sample(text, "cdi_controller_leader") == 1.0
