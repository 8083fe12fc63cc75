"""Progress scraping that no tenant can use to slow the controller, on the real control plane.

The controller runs with IMPORTER_IMAGE moved (one kustomize `images:` entry, as an
installer does) to the misbehaving importer (hack/images/misbehave.py): for a source URL
carrying `cdi-py-misbehave=hang` its metrics port completes TLS and never answers, for
`=flood` it answers a valid progress line (13%) followed by a megabyte. Both are pods the
controller made. Beside them a normal import must report its progress and finish, no
DataVolume reconcile may wait on a scrape, the flood's 13% must never be read (it is past
the 64 KiB cap), and a tenant's own pod wearing the importer's name and labels is never
scraped at all.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.cluster.helpers import TESTUTIL, wait_for
from tests.controller.e2e.conftest import dv_manifest
from tests.controller.e2e.test_images_not_pulled import _controller_with

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

MISBEHAVING = "docker.io/cdi-py/importer-misbehaving:latest"
HANGING = 8
FLOODING = 2
P = "cdi.kubevirt.io/"


@pytest.fixture(scope="module")
def misbehaving_importer(cdi: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with _controller_with(cdi, tmp_path_factory.mktemp("overlay"), "importer",
                          MISBEHAVING) as image:
        yield image


def _controller_metrics(cdi: Any) -> str:
    pods = [p for p in cdi.api.get("/api/v1/namespaces/cdi/pods",
                                   labelSelector="cdi.kubevirt.io=cdi-deployment")["items"]
            if not p["metadata"].get("deletionTimestamp")]
    return "\n".join(requests.get(f"http://{p['status']['podIP']}:8080/metrics",
                                  timeout=5).text for p in pods)


def _sample(text: str, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})?\s+(\S+)$", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


def _slow_dv_reconciles(text: str) -> float:
    """DataVolume reconciles that took longer than a second."""
    name = "cdi_controller_reconcile_duration_seconds_bucket"
    return (_sample(text, name, kind="dv", le="+Inf")
            - _sample(text, name, kind="dv", le="1.0"))


def test_hanging_and_flooding_importers_cost_another_import_nothing(
        cdi, namespace, images, misbehaving_importer):
    bad = {f"hang{n}": "hang" for n in range(HANGING)}
    bad |= {f"flood{n}": "flood" for n in range(FLOODING)}
    for name, mode in bad.items():
        url = images.url("disk.raw") + f"?cdi-py-misbehave={mode}"
        cdi.create_dv(namespace, dv_manifest(name, {"http": {"url": url}}, size="16Mi"))
    for name in bad:
        cdi.wait_phase(namespace, name, "ImportInProgress", timeout=120)
    # Every bad endpoint has been met at least once (a hang costs a full timeout).
    wait_for("scrapes of the bad pods timed out and were dropped", lambda: (
        (t := _controller_metrics(cdi))
        and _sample(t, "cdi_controller_progress_scrapes_total", result="timeout") >= HANGING
        and _sample(t, "cdi_controller_progress_scrapes_total", result="oversized")
        >= FLOODING), timeout=60)
    slow_before = _slow_dv_reconciles(_controller_metrics(cdi))

    cdi.create_dv(namespace, dv_manifest("good", {"http": {"url": images.url(
        "big.raw", where="slow/")}}, size="80Mi"))
    seen: set[str] = set()
    deadline = time.monotonic() + 120
    phase = ""
    while phase != "Succeeded" and time.monotonic() < deadline:
        st = (cdi.dv(namespace, "good") or {}).get("status", {})
        phase = st.get("phase", "")
        assert phase != "Failed", st
        if re.fullmatch(r"\d+\.\d\d%", st.get("progress", "")) and st["progress"] not in (
                "0.00%", "100.0%", "100.00%"):
            seen.add(st["progress"])
        time.sleep(0.5)
    assert phase == "Succeeded"
    # The good import's progress was scraped while the bad ones hung and flooded.
    assert len(seen) >= 2, seen

    text = _controller_metrics(cdi)
    # No DataVolume reconcile waited on a scrape (a hang would hold one for the timeout).
    assert _slow_dv_reconciles(text) == slow_before
    for name in bad:
        dv = cdi.dv(namespace, name)
        # The flood's 13% came first in a body over the cap: never read.
        assert dv["status"]["progress"] == "N/A", (name, dv["status"])
        assert dv["status"]["phase"] == "ImportInProgress"


_FORGED_SERVER = """
import http.server, os, ssl
line = ('kubevirt_cdi_import_progress_total{ownerUID="%s"} 77\\n' % os.environ["UID"]).encode()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(line)))
        self.end_headers()
        self.wfile.write(line)
s = http.server.ThreadingHTTPServer(("0.0.0.0", 8443), H)
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain("/tmp/c.pem", "/tmp/k.pem")
s.socket = ctx.wrap_socket(s.socket, server_side=True)
s.serve_forever()
"""


def test_a_tenants_pod_forging_the_importers_name_and_labels_is_never_scraped(
        cdi, cluster, namespace):
    api = cdi.api
    # WaitForFirstConsumer: no importer pod until something mounts the claim, so the
    # tenant's pod comes first, with the importer's name, labels and owner.
    cdi.create_dv(namespace, dv_manifest("forged", {"http": {
        "url": "http://example.invalid/disk.raw"}}, size="16Mi", sc="local-wffc"))
    cdi.wait_phase(namespace, "forged", "WaitForFirstConsumer", timeout=30)
    dv = cdi.dv(namespace, "forged")
    pvc = api.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/forged")
    script = ("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
              "-subj /CN=x -days 1 -keyout /tmp/k.pem -out /tmp/c.pem 2>/dev/null "
              '&& exec python3 -c "$SERVER"')
    api.create(f"/api/v1/namespaces/{namespace}/pods", {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "importer-forged", "labels": {
            "app": "containerized-data-importer", P + "owner-uid": dv["metadata"]["uid"],
            P + "transfer": "import"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                 "name": "forged", "uid": pvc["metadata"]["uid"],
                                 "controller": True}]},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "importer", "image": TESTUTIL,
                                 "command": ["sh", "-c", script],
                                 "env": [{"name": "UID", "value": pvc["metadata"]["uid"]},
                                         {"name": "SERVER", "value": _FORGED_SERVER}],
                                 "ports": [{"containerPort": 8443}],
                                 "volumeMounts": [{"name": "d", "mountPath": "/data"}]}],
                 "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "forged"}}]}})
    pod = wait_for("the forged pod serving", lambda: (
        p := api.get_or_none(f"/api/v1/namespaces/{namespace}/pods/importer-forged"))
        and p["status"].get("podIP") and "running" in (
            (p["status"].get("containerStatuses") or [{}])[0].get("state") or {}) and p,
        timeout=90)
    # It does serve a progress (what the controller would read if it trusted the labels).
    served = cluster.exec(namespace, "importer-forged", "sh", "-c",
                          "python3 -c \"import ssl,urllib.request; print(urllib.request."
                          "urlopen('https://127.0.0.1:8443/metrics', context=ssl._create_"
                          "unverified_context()).read().decode())\"").stdout
    assert "77" in served
    # The controller takes it for the transfer's pod (it has the name and the labels)...
    cdi.wait_phase(namespace, "forged", "ImportInProgress", timeout=60)
    # ...but it made no such pod, so nothing is scraped from it: after several intervals
    # the progress is still unknown and no mark names it.
    time.sleep(10)
    dv = cdi.dv(namespace, "forged")
    assert dv["status"]["progress"] == "N/A", dv["status"]
    pvc = api.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/forged")
    mark = pvc["metadata"].get("annotations", {}).get(P + "storage.pod.controllerMark", "")
    assert not mark.startswith(pod["metadata"]["uid"])


def test_an_importer_killed_again_and_again_ends_failed_with_its_reason(cdi, namespace, images):
    """OOMKilled (the node enforces the memory limit with a real cgroup): CDIConfig's
    podResourceRequirements give the importer too little memory, and its
    podRestartLimit of 1 ends the DataVolume Failed after the second kill."""
    path = "/apis/cdi.kubevirt.io/v1beta1/cdiconfigs/config"
    cdi.api.merge_patch(path, {"spec": {"podRestartLimit": 1, "podResourceRequirements": {
        "requests": {"cpu": "10m", "memory": "8Mi"},
        "limits": {"cpu": "750m", "memory": "8Mi"}}}})
    try:
        wait_for("limit in force", lambda: cdi.api.get(path)["status"].get(
            "podRestartLimit") == 1, timeout=30)
        cdi.create_dv(namespace, dv_manifest("oom", {"http": {"url": images.url(
            "disk.qcow2")}}, size="32Mi"))
        dv = cdi.wait_phase(namespace, "oom", "Succeeded", "Failed", timeout=180)
    finally:
        cdi.api.merge_patch(path, {"spec": {"podRestartLimit": None,
                                            "podResourceRequirements": None}})
    st = dv["status"]
    assert st["phase"] == "Failed", st
    running = next(c for c in st["conditions"] if c["type"] == "Running")
    assert running["status"] == "False"
    assert running["reason"] == "OOMKilled", running
    assert "gave up: restarted 2 times, more than the limit 1" in running["message"]
    assert st["restartCount"] >= 2
    failed = [e for e in cdi.events(namespace, "oom") if e["reason"] == "ImportFailed"]
    assert len(failed) == 1 and "gave up" in failed[0]["message"], failed
    # The pod is gone and is not made again.
    time.sleep(3)
    assert cdi.api.get_or_none(f"/api/v1/namespaces/{namespace}/pods/importer-oom") is None
