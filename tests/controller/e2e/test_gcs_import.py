"""A GCS DataVolume through the whole path: the real GCS emulator (fake-gcs-server) as an
in-cluster peer, the importer image, the real control plane.

The emulator runs in a pod of the generic test image with its static binary (built by
hack/build-fake-gcs-server into the cache) through a hostPath, behind a Service; the test
(on the host) fills it through the Service's ClusterIP, as the importer reads it.
"""

from __future__ import annotations

import base64
import json

import pytest
import requests

from tests.cluster.helpers import TESTUTIL, wait_for
from tests.controller.e2e.conftest import disk_of, dv_manifest, sha256_prefix
from tests.peers.gcs import GcsServer

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def conditions(dv):
    return {c["type"]: c for c in dv["status"].get("conditions", [])}


def _answers(endpoint: str) -> bool:
    try:
        return requests.get(f"{endpoint}/storage/v1/b", timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def gcs(cdi, namespace, fake_gcs_binary) -> GcsServer:
    api = cdi.api
    api.create(f"/api/v1/namespaces/{namespace}/pods", {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "fake-gcs", "labels": {"app": "fake-gcs"}},
        "spec": {"terminationGracePeriodSeconds": 1, "enableServiceLinks": False,
                 "containers": [{
                     "name": "gcs", "image": TESTUTIL,
                     # Through the image's shell: the node looks a command up in the
                     # image, and the binary comes from a volume.
                     "command": ["/bin/sh", "-c",
                                 f"exec /gcs/{fake_gcs_binary.name} -scheme http -host 0.0.0.0"
                                 " -port 4443 -backend memory -log-level warn"],
                     "volumeMounts": [{"name": "bin", "mountPath": "/gcs", "readOnly": True}]}],
                 "volumes": [{"name": "bin", "hostPath": {
                     "path": str(fake_gcs_binary.parent), "type": "Directory"}}]}})
    svc = api.create(f"/api/v1/namespaces/{namespace}/services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "fake-gcs"},
        "spec": {"selector": {"app": "fake-gcs"}, "ports": [{"port": 4443}]}})
    server = GcsServer(endpoint=f"http://{svc['spec']['clusterIP']}:4443")
    wait_for("fake-gcs-server answering", lambda: _answers(server.endpoint), timeout=60)
    return server


def test_gcs_object_is_imported(cdi, cluster, namespace, images, gcs):
    url = gcs.put("disks", "img/disk.qcow2", images.server.docroot / "disk.qcow2")
    cdi.create_dv(namespace, dv_manifest("gcs", {"gcs": {"url": url}}, size="32Mi"))
    dv = cdi.wait_phase(namespace, "gcs", "Succeeded", "Failed", timeout=120)
    assert dv["status"]["phase"] == "Succeeded", dv["status"]
    assert sha256_prefix(disk_of(cluster, namespace, "gcs"), images.reference.size) == \
        images.raw_sha256


def test_gcs_key_that_is_not_a_service_account_fails_with_the_reason(cdi, namespace, gcs):
    """The secretRef Secret reaches the importer where CDI puts it (/google/credentials.json);
    a key the importer cannot use fails the DataVolume for good, saying why."""
    url = gcs.put("disks", "key/disk.raw", b"\0" * (1 << 20))
    user_key = {"type": "authorized_user", "client_id": "c", "client_secret": "sekrit-value",
                "refresh_token": "r"}
    cdi.api.create(f"/api/v1/namespaces/{namespace}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "gcskey"},
        "data": {"credentials.json": base64.b64encode(json.dumps(user_key).encode()).decode()}})
    src = {"gcs": {"url": url, "secretRef": "gcskey"}}
    cdi.create_dv(namespace, dv_manifest("gcskey", src, size="16Mi"))
    dv = cdi.wait_phase(namespace, "gcskey", "Failed", "Succeeded", timeout=120)
    assert dv["status"]["phase"] == "Failed", dv["status"]
    running = conditions(dv)["Running"]
    assert running["reason"] == "InvalidConfig", running
    assert "/google/credentials.json have type authorized_user" in running["message"]
    assert "sekrit-value" not in json.dumps(dv)
