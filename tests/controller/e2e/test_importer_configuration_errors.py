"""An importer that cannot even read its configuration still reaches the controller: its
report goes to the pod's termination path, and the DataVolume ends Failed with the reason
instead of restarting its pod forever without a word."""

from __future__ import annotations

import base64

import pytest

from tests.cluster.helpers import wait_for
from tests.controller.e2e.conftest import dv_manifest

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_configuration_error_fails_the_datavolume_with_the_reason(cdi, namespace, images):
    # The webhook cannot see a Secret's content: a secretExtraHeaders value that is no
    # header line is found by the importer while it parses its configuration.
    cdi.api.create(f"/api/v1/namespaces/{namespace}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hdr"},
        "data": {"line": base64.b64encode(b"not-a-header-line").decode()}})
    src = {"http": {"url": images.url("disk.raw"), "secretExtraHeaders": ["hdr"]}}
    cdi.create_dv(namespace, dv_manifest("badconf", src, size="32Mi"))
    dv = cdi.wait_phase(namespace, "badconf", "Failed", "Succeeded", timeout=120)
    assert dv["status"]["phase"] == "Failed", dv["status"]
    running = {c["type"]: c for c in dv["status"]["conditions"]}["Running"]
    assert running["reason"] == "InvalidConfig", running
    assert "extra header must be 'Name: value'" in running["message"]
    assert any(e["reason"] == "ImportFailed" for e in cdi.events(namespace, "badconf"))
    wait_for("importer pod deleted", lambda: cdi.api.get_or_none(
        f"/api/v1/namespaces/{namespace}/pods/importer-badconf") is None, timeout=45)
