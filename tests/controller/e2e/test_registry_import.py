"""A registry DataVolume through the same path: Debian's docker-registry as an in-cluster peer,
reached over plain HTTP because CDIConfig lists it in `insecureRegistries`."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.cluster.helpers import TESTUTIL, wait_for
from tests.controller.e2e.conftest import disk_of, dv_manifest, sha256_prefix
from tests.peers.registry import OciLayout, Registry, disk_entries

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
CONFIG = "/apis/cdi.kubevirt.io/v1beta1/cdiconfigs/config"
REGISTRY_CONFIG = """version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: /tmp/registry
http:
  addr: 0.0.0.0:5000
"""


@pytest.fixture
def registry_host(cdi, namespace):
    api = cdi.api
    api.create(f"/api/v1/namespaces/{namespace}/configmaps", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "registry"},
        "data": {"config.yml": REGISTRY_CONFIG}})
    api.create(f"/api/v1/namespaces/{namespace}/pods", {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "registry", "labels": {"app": "registry"}},
        "spec": {"terminationGracePeriodSeconds": 1, "enableServiceLinks": False,
                 "containers": [{
                     "name": "registry", "image": TESTUTIL,
                     "command": ["/usr/bin/docker-registry", "serve", "/config/config.yml"],
                     "volumeMounts": [{"name": "config", "mountPath": "/config"}]}],
                 "volumes": [{"name": "config", "configMap": {"name": "registry"}}]}})
    svc = api.create(f"/api/v1/namespaces/{namespace}/services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "registry"},
        "spec": {"selector": {"app": "registry"}, "ports": [{"port": 5000}]}})
    host = f"{svc['spec']['clusterIP']}:5000"
    wait_for("registry answering",
             lambda: requests.get(f"http://{host}/v2/", timeout=2).status_code == 200,
             timeout=60)
    return host


def test_containerdisk_from_an_insecure_registry_is_imported(cdi, cluster, namespace, images,
                                                             registry_host, tmp_path: Path):
    layout = OciLayout(tmp_path / "oci")
    layout.tag(layout.image([disk_entries(images.server.docroot / "disk.qcow2",
                                          "disk.qcow2")]), "1")
    url = Registry(host=registry_host, storage=tmp_path).push(layout, "1", "disks/ref")
    cdi.api.merge_patch(CONFIG, {"spec": {"insecureRegistries": [registry_host]}})
    try:
        cdi.create_dv(namespace, dv_manifest("reg", {"registry": {"url": url}}, size="32Mi"))
        dv = cdi.wait_phase(namespace, "reg", "Succeeded", "Failed", timeout=120)
        assert dv["status"]["phase"] == "Succeeded", dv["status"]
        assert sha256_prefix(disk_of(cluster, namespace, "reg"), images.reference.size) == \
            images.raw_sha256
    finally:
        cdi.api.merge_patch(CONFIG, {"spec": {"insecureRegistries": None}})
