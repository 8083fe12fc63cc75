"""A claim to be filled from a data source (a csi-clone's PVC, a snapshot restore) is not
provisioned by the test storage, which can do neither: it stays Pending and its events
say why in the CSI external-provisioner's words, as on a real cluster whose driver lacks
the capability. An empty volume there would make a smart clone look successful with no
data in it. Claims for a volume populator are left to it."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from localcluster.provisioner import claim_event, data_source_refusal

from tests.cluster.helpers import pvc, wait_for

CLAIMS = "/api/v1/namespaces/{ns}/persistentvolumeclaims"
PREFIX = 'failed to provision volume with StorageClass "local": '
CLONE = PREFIX + (
    "CSI driver does not support clone operations: controller CLONE_VOLUME "
    "capability is not reported"
)
RESTORE = PREFIX + (
    "CSI driver does not support snapshot restore: controller "
    "CREATE_DELETE_SNAPSHOT capability is not reported"
)
SNAP_REF = {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "snap"}


def _claim(name: str, **spec: Any) -> dict[str, Any]:
    body = pvc(name, "32Mi")
    body["spec"].update(spec)
    return body


# ---- pure ---------------------------------------------------------------------------


def test_an_empty_claim_is_provisioned() -> None:
    assert data_source_refusal(_claim("plain"), "local") is None


def test_a_clone_or_a_restore_is_refused_in_the_external_provisioners_words() -> None:
    pvc_ref = {"kind": "PersistentVolumeClaim", "name": "golden"}
    for spec in (
        {"dataSource": pvc_ref},
        {"dataSourceRef": pvc_ref},
        {"dataSource": pvc_ref, "dataSourceRef": {**pvc_ref, "apiGroup": None}},
    ):
        assert data_source_refusal(_claim("c", **spec), "local") == (
            "Warning",
            "ProvisioningFailed",
            CLONE,
        )
    assert data_source_refusal(_claim("r", dataSourceRef=SNAP_REF), "local") == (
        "Warning",
        "ProvisioningFailed",
        RESTORE,
    )
    wrong = {**SNAP_REF, "apiGroup": "example.com"}
    assert data_source_refusal(_claim("w", dataSource=wrong), "local") == (
        "Warning",
        "ProvisioningFailed",
        PREFIX + "the PVC source does not belong to the "
        "right APIGroup. Expected snapshot.storage.k8s.io, Got example.com",
    )


def test_dataSourceRef_is_what_counts_when_both_are_set() -> None:
    spec = {
        "dataSource": {"kind": "PersistentVolumeClaim", "name": "golden"},
        "dataSourceRef": SNAP_REF,
    }
    assert data_source_refusal(_claim("both", **spec), "local")[2] == RESTORE  # type: ignore[index]


def test_a_populators_claim_is_left_to_the_populator() -> None:
    ref = {"apiGroup": "cdi.kubevirt.io", "kind": "VolumeImportSource", "name": "x"}
    assert data_source_refusal(_claim("p", dataSourceRef=ref), "local") == (
        "Normal",
        "Provisioning",
        "Assuming an external populator will provision the volume",
    )


def test_the_event_names_the_claim() -> None:
    claim = _claim("c")
    claim["metadata"].update(namespace="ns", uid="u-1", resourceVersion="7")
    e = claim_event(
        claim, "Warning", "ProvisioningFailed", CLONE, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    )
    assert e["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "namespace": "ns",
        "name": "c",
        "uid": "u-1",
        "resourceVersion": "7",
    }
    assert (e["type"], e["reason"], e["message"]) == ("Warning", "ProvisioningFailed", CLONE)
    assert e["firstTimestamp"] == e["lastTimestamp"] == "2026-01-02T03:04:05Z"
    assert e["metadata"] == {"generateName": "c.", "namespace": "ns"}


# ---- the real provisioner ---------------------------------------------------------------


def _events(api: Any, ns: str, name: str) -> list[tuple[str, str, str]]:
    items = api.get(f"/api/v1/namespaces/{ns}/events")["items"]
    return [
        (e["type"], e["reason"], e["message"])
        for e in items
        if e["involvedObject"].get("name") == name
        and e.get("source", {}).get("component") == "local.cdi-py.io/loop"
    ]


@pytest.mark.cluster
def test_clone_and_restore_claims_stay_pending_and_say_why(cluster: Any, namespace: str) -> None:
    api = cluster.api()
    claims = CLAIMS.format(ns=namespace)
    api.create(claims, pvc("golden", "32Mi"))
    api.create(
        claims, _claim("cloned", dataSource={"kind": "PersistentVolumeClaim", "name": "golden"})
    )
    api.create(claims, _claim("restored", dataSource=SNAP_REF))
    api.create(
        claims,
        _claim(
            "populated",
            dataSourceRef={
                "apiGroup": "cdi.kubevirt.io",
                "kind": "VolumeImportSource",
                "name": "x",
            },
        ),
    )
    wait_for(
        "golden bound",
        lambda: api.get(f"{claims}/golden")["status"].get("phase") == "Bound" or None,
        60,
    )
    for name, want in (
        ("cloned", ("Warning", "ProvisioningFailed", CLONE)),
        ("restored", ("Warning", "ProvisioningFailed", RESTORE)),
        (
            "populated",
            ("Normal", "Provisioning", "Assuming an external populator will provision the volume"),
        ),
    ):
        wait_for(
            f"{name}'s event", lambda n=name, w=want: w in _events(api, namespace, n) or None, 30
        )
    # Updates of a refused claim bring no second volume and no second event.
    api.merge_patch(f"{claims}/cloned", {"metadata": {"annotations": {"touched": "1"}}})
    time.sleep(3)
    for name in ("cloned", "restored", "populated"):
        claim = api.get(f"{claims}/{name}")
        assert claim["status"].get("phase") == "Pending", name
        assert not claim["spec"].get("volumeName"), name
        uid = claim["metadata"]["uid"]
        assert api.get_or_none(f"/api/v1/persistentvolumes/pvc-{uid}") is None, name
        assert len(_events(api, namespace, name)) == 1, name
