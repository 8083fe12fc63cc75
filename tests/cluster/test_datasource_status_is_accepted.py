"""The DataSource status `controller.datasources` computes is what the real CRD stores.

No controller runs here: the test plays it, computing the status from real objects and
writing it to `/status`, then reads back what a waiting DataVolume would read.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from controller import datasources

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
DS = "/apis/cdi.kubevirt.io/v1beta1/namespaces/{ns}/datasources"


@pytest.fixture(scope="module")
def ds_crd(cluster: Any) -> Any:
    cluster.kubectl("apply", "-f", str(ROOT / "deploy" / "crds" / "datasources.yaml"))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/datasources.cdi.kubevirt.io"
    )
    return cluster


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_status_round_trips_through_the_crd(ds_crd: Any, namespace: str) -> None:
    api = ds_crd.api()
    path = DS.format(ns=namespace)
    api.create(
        path,
        {
            "apiVersion": "cdi.kubevirt.io/v1beta1",
            "kind": "DataSource",
            "metadata": {"name": "fedora"},
            "spec": {"source": {"pvc": {"namespace": namespace, "name": "fedora-img"}}},
        },
    )
    ds = api.get(f"{path}/fedora")
    assert datasources.ready(ds)[1] == datasources.NOT_RECONCILED
    kind, ns, name = datasources.source_of(ds) or ("", "", "")
    pvc = api.get_or_none(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{name}")
    st = datasources.status(ds, pvc=pvc, dv=None, snapshot=None, now=now())
    api.merge_patch(f"{path}/fedora/status", {"status": st})
    ds = api.get(f"{path}/fedora")
    assert datasources.ready(ds) == (False, "NotFound", "PVC not found")
    assert ds["status"]["source"] == {}

    api.create(
        f"/api/v1/namespaces/{namespace}/persistentvolumeclaims",
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "fedora-img"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "local",
                "resources": {"requests": {"storage": "16Mi"}},
            },
        },
    )
    pvc = api.get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{name}")
    st = datasources.status(ds, pvc=pvc, dv=None, snapshot=None, now=now())
    api.request("PUT", f"{path}/fedora/status", body={**ds, "status": st})
    ds = api.get(f"{path}/fedora")
    assert datasources.ready(ds) == (True, "Ready", "DataSource is ready to be consumed")
    assert ds["status"]["source"] == {"pvc": {"namespace": namespace, "name": "fedora-img"}}
    assert kind == "PersistentVolumeClaim"
    assert datasources.status(ds, pvc=pvc, dv=None, snapshot=None, now=now()) == ds["status"], (
        "nothing to write on the next pass"
    )

    # Back to not ready: `source: {}` must replace the mirrored source. A JSON merge patch
    # would merge `{}` into it and keep the stale PVC, so the status is written whole.
    st = datasources.status(ds, pvc=None, dv=None, snapshot=None, now=now())
    api.request("PUT", f"{path}/fedora/status", body={**ds, "status": st})
    ds = api.get(f"{path}/fedora")
    assert datasources.ready(ds)[:2] == (False, "NotFound")
    assert ds["status"].get("source", {}) == {}
    assert datasources.source_of(ds) == ("PersistentVolumeClaim", namespace, "fedora-img"), (
        "the spec still names the image; readiness is what a DataVolume waits on"
    )
