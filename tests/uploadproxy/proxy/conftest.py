from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.helpers import wait_for
from tests.uploadproxy.proxy.harness import READY, World

DEPLOYMENT = "/apis/apps/v1/namespaces/cdi/deployments/cdi-deployment"


@pytest.fixture(scope="module")
def no_cdi_controller(cluster: Any) -> Iterator[None]:
    """These tests write the PVC annotations the controller owns (storage.pod.ready) and
    play the upload server themselves; a controller that another test module installed
    in the same cluster would take their upload-target PVCs over (an upload pod, ready
    "false"). Scale it to zero for the module, and back afterwards."""
    api = cluster.api()
    dep = api.get_or_none(DEPLOYMENT)
    if dep is None:
        yield
        return
    replicas = dep["spec"].get("replicas", 1)
    api.merge_patch(DEPLOYMENT, {"spec": {"replicas": 0}})
    wait_for("the controller gone", lambda: not api.get(
        "/api/v1/namespaces/cdi/pods", labelSelector="cdi.kubevirt.io=cdi-deployment")["items"],
        timeout=60)
    try:
        yield
    finally:
        api.merge_patch(DEPLOYMENT, {"spec": {"replicas": replicas}})
        wait_for("the controller back", lambda: (api.get(DEPLOYMENT).get("status", {})
                 .get("readyReplicas", 0) >= replicas), timeout=120)


@pytest.fixture
def world(cluster: Any, namespace: str, tmp_path: Path,
          no_cdi_controller: None) -> Iterator[World]:
    """Credentials and a ready PVC `disk` in a fresh namespace, the stand-in upload
    server and the proxy running."""
    w = World(cluster, namespace, tmp_path)
    try:
        w.create_credentials()
        w.pvc("disk", READY)
        w.start_upstream()
        w.start_proxy()
        yield w
    finally:
        w.stop()
        log = tmp_path / "proxy.log"
        if log.exists():
            assert "eyJ" not in log.read_text(errors="replace"), "a token reached the proxy's log"
