"""An upload DataVolume's phases and events, routing by owner label, the proxy's URL."""

from __future__ import annotations

import pytest

from controller import cdiconfig, dvstatus
from controller.routing import CONFIG_KEY, Owners, keys_for
from controller.transfers.upload.transfer import PHASES
from tests.controller import factories as f

P = "cdi.kubevirt.io/"
NOW = "2024-05-01T10:00:00Z"
TARGET = {P + "storage.upload.target": ""}
READY_PVC = {**TARGET, P + "storage.pod.ready": "true", P + "storage.pod.phase": "Running"}


def compute(dv=None, pvc=None, pod=None, **kw):
    return dvstatus.compute(dvstatus.Observed(dv or f.dv(source={"upload": {}}), pvc, pod,
                                              False, NOW, phases=PHASES, **kw))


READY = [{"type": "Ready", "status": "True"}]


@pytest.mark.parametrize(("pvc", "pod", "phase"), [
    (f.pvc(annotations=TARGET), None, "PVCBound"),
    (f.pvc(annotations=TARGET), f.pod(phase="Pending", state={"waiting": {}}), "UploadScheduled"),
    (f.pvc(annotations=TARGET), f.pod(), "UploadScheduled"),
    (f.pvc(annotations=READY_PVC), f.pod(conditions=READY), "UploadReady"),
    (f.pvc(annotations=TARGET), f.pod(conditions=READY), "UploadScheduled"),
    (f.pvc(annotations=TARGET), f.pod(phase="Succeeded", state=f.terminated(0)), "UploadReady"),
    (f.pvc(annotations={**TARGET, P + "storage.pod.phase": "Succeeded"}), None, "Succeeded"),
    (f.pvc(annotations={**TARGET, P + "storage.pod.phase": "Failed"}), None, "Failed"),
], ids=["bound", "pending-pod", "running-not-ready", "ready", "ready-not-yet-recorded",
         "pod-done", "succeeded", "failed"])
def test_phase_follows_cdis_upload_sequence(pvc, pod, phase):
    assert compute(pvc=pvc, pod=pod).phase == phase


def test_events_carry_cdis_upload_reasons():
    pvc = f.pvc(annotations=TARGET)
    first = compute(pvc=pvc, pod=f.pod(phase="Pending", state={"waiting": {}}))
    assert [e.reason for e in first.events] == ["UploadScheduled", "Bound"]
    ready = compute(dv=f.dv(source={"upload": {}}, status=first.status),
                    pvc=f.pvc(annotations=READY_PVC), pod=f.pod(conditions=READY))
    assert [e.reason for e in ready.events] == ["UploadReady"]
    done = compute(dv=f.dv(source={"upload": {}}, status=ready.status),
                   pvc=f.pvc(annotations={**TARGET, P + "storage.pod.phase": "Succeeded"}))
    assert [e.reason for e in done.events] == ["UploadSucceeded"]
    assert done.status["progress"] == "100.0%"
    failed = compute(dv=f.dv(source={"upload": {}}, status=ready.status),
                     pvc=f.pvc(annotations={**TARGET, P + "storage.pod.phase": "Failed"}))
    assert [(e.type, e.reason) for e in failed.events] == [("Warning", "UploadFailed")]


def test_a_pod_ready_at_first_sight_still_reports_it_was_scheduled():
    r = compute(dv=f.dv(source={"upload": {}}, status={"phase": "PVCBound"}),
                pvc=f.pvc(annotations=READY_PVC), pod=f.pod(conditions=READY))
    assert [e.reason for e in r.events] == ["UploadScheduled", "UploadReady"]


def test_progress_is_shown_while_ready():
    r = compute(pvc=f.pvc(annotations=READY_PVC), pod=f.pod(conditions=READY),
                progress="42.50%")
    assert r.status["progress"] == "42.50%"


def labelled(uid, kind="upload"):
    return {"metadata": {"name": "cdi-upload-x", "namespace": "ns",
                         "labels": {P + "owner-uid": uid, P + "transfer": kind}}}


def test_transfer_objects_route_by_owner_label_to_the_datavolume_and_its_pvc():
    dv = f.dv("mydv")
    owners = Owners(dv=lambda uid: dv if uid == "dv-uid" else None)
    expected = [("pvc", "ns", "mydv"), ("dv", "ns", "mydv")]
    assert keys_for("pod", labelled("dv-uid"), owners) == expected
    assert keys_for("service", labelled("dv-uid"), owners) == expected


def test_transfer_objects_of_a_bare_pvc_route_to_the_pvc():
    pvc = f.pvc("legacy")
    owners = Owners(pvc=lambda uid: pvc if uid == "pvc-uid" else None)
    assert keys_for("pod", labelled("pvc-uid"), owners) == [("pvc", "ns", "legacy")]


def test_an_unknown_owner_label_routes_nowhere():
    assert keys_for("pod", labelled("gone"), Owners()) == []


def test_the_proxy_service_queues_the_config():
    assert keys_for("proxy", {"metadata": {"name": "cdi-uploadproxy"}}) == [CONFIG_KEY]


def node(name, ip):
    return {"metadata": {"name": name},
            "status": {"addresses": [{"type": "Hostname", "address": name},
                                     {"type": "InternalIP", "address": ip}]}}


def svc(kind, node_port=None):
    port = {"port": 443, "targetPort": 8443}
    if node_port:
        port["nodePort"] = node_port
    return {"metadata": {"name": "cdi-uploadproxy", "namespace": "cdi"},
            "spec": {"type": kind, "ports": [port]}}


@pytest.mark.parametrize(("override", "service", "nodes", "url"), [
    ("https://up.example", svc("NodePort", 31001), [node("n", "10.0.0.1")],
     "https://up.example"),
    ("", svc("NodePort", 31001), [node("b", "10.0.0.2"), node("a", "10.0.0.1")],
     "https://10.0.0.1:31001"),
    ("", svc("NodePort", 31001), [node("a", "fd00::1")], "https://[fd00::1]:31001"),
    ("", svc("ClusterIP"), [], "https://cdi-uploadproxy.cdi.svc"),
    ("", None, [node("a", "10.0.0.1")], ""),
], ids=["override", "nodeport", "nodeport-ipv6", "clusterip", "no-proxy"])
def test_upload_proxy_url(override, service, nodes, url):
    assert cdiconfig.upload_proxy_url(override, service, nodes) == url
