"""The snapshot CRDs on the real API server: what the smart-clone builders create is accepted.

The objects come from `controller.transfers.clone.smart`, so this also proves the
builders' VolumeSnapshot and restore PVC pass the real schemas and admission.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from localcluster.api import ApiError
from localcluster.provisioner import PROVISIONER

from controller.transfers.clone import smart
from tests.peers import snapshotcrds

pytestmark = pytest.mark.cluster

V1 = "/apis/snapshot.storage.k8s.io/v1"


def snapshot_class(name: str, *, policy: str = "Delete", default: bool = False) -> dict[str, Any]:
    ann = {smart.DEFAULT_SNAPSHOT_CLASS_ANNOTATION: "true"} if default else {}
    return {
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshotClass",
        "metadata": {"name": name, "annotations": ann},
        "driver": PROVISIONER,
        "deletionPolicy": policy,
    }


@pytest.fixture
def class_names(snapshot_crds: Any) -> Any:
    api = snapshot_crds.api()
    made: list[str] = []

    def make(body: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = api.create(f"{V1}/volumesnapshotclasses", body)
        made.append(body["metadata"]["name"])
        return out

    yield make
    for name in made:
        api.delete(f"{V1}/volumesnapshotclasses/{name}")


def test_a_snapshot_class_and_a_snapshot_of_a_claim_can_be_created(
    snapshot_crds: Any, namespace: str, class_names: Any
) -> None:
    api = snapshot_crds.api()
    tag = uuid.uuid4().hex[:8]
    class_names(snapshot_class(f"a-{tag}"))
    class_names(snapshot_class(f"b-{tag}", default=True))
    listed = api.get(f"{V1}/volumesnapshotclasses")["items"]
    ours = [c for c in listed if c["metadata"]["name"].endswith(tag)]
    picked = smart.snapshot_class_for(PROVISIONER, ours)
    assert picked is not None and picked["metadata"]["name"] == f"b-{tag}"

    source = {"metadata": {"name": "golden", "namespace": namespace}}
    body = smart.volume_snapshot(
        source, smart.snapshot_name(tag), f"b-{tag}", {"cdi.kubevirt.io/clone-owner": tag}
    )
    api.create(f"{V1}/namespaces/{namespace}/volumesnapshots", body)
    stored = api.get(f"{V1}/namespaces/{namespace}/volumesnapshots/cdi-tmp-{tag}")
    assert stored["spec"] == body["spec"]
    assert stored["metadata"]["labels"] == {"cdi.kubevirt.io/clone-owner": tag}
    assert smart.snapshot_ready(stored) == (False, "")

    # Only the status subresource writes status, as the snapshot controller does it.
    api.merge_patch(
        f"{V1}/namespaces/{namespace}/volumesnapshots/cdi-tmp-{tag}",
        {"status": {"readyToUse": True}},
    )
    assert smart.snapshot_ready(
        api.get(f"{V1}/namespaces/{namespace}/volumesnapshots/cdi-tmp-{tag}")
    ) == (False, "")
    api.merge_patch(
        f"{V1}/namespaces/{namespace}/volumesnapshots/cdi-tmp-{tag}/status",
        {"status": {"readyToUse": True, "restoreSize": "1Gi"}},
    )
    got = api.get(f"{V1}/namespaces/{namespace}/volumesnapshots/cdi-tmp-{tag}")
    assert smart.snapshot_ready(got) == (True, "")

    # The restore claim the snapshot strategy makes is a valid PVC for the API server.
    target = {
        "metadata": {"name": "restored", "namespace": namespace},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "volumeMode": "Filesystem",
            "storageClassName": "local",
            "resources": {"requests": {"storage": "512Mi"}},
        },
    }
    claim = smart.restore_claim(target, f"cdi-tmp-{tag}", got["status"]["restoreSize"])
    made = api.create(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims", claim)
    assert made["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert made["spec"]["dataSource"] == claim["spec"]["dataSource"]
    assert made["spec"]["dataSourceRef"] == claim["spec"]["dataSource"], (
        "the API server mirrors dataSource into dataSourceRef"
    )


def test_the_csi_clone_claim_is_a_valid_pvc(snapshot_crds: Any, namespace: str) -> None:
    api = snapshot_crds.api()
    target = {
        "metadata": {"name": "cloned", "namespace": namespace},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "local",
            "resources": {"requests": {"storage": "64Mi"}},
        },
    }
    made = api.create(
        f"/api/v1/namespaces/{namespace}/persistentvolumeclaims",
        smart.csi_clone_claim(target, "golden"),
    )
    want = {"apiGroup": None, "kind": "PersistentVolumeClaim", "name": "golden"}
    assert {**want, **made["spec"]["dataSourceRef"]} == {**want, **made["spec"]["dataSource"]}
    assert made["spec"]["dataSource"]["name"] == "golden"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("volumesnapshotclasses", snapshot_class("bad-policy", policy="Sometimes")),
        ("volumesnapshotclasses", {**snapshot_class("no-driver"), "driver": None}),
        (
            "namespaces/{ns}/volumesnapshots",
            {
                "apiVersion": "snapshot.storage.k8s.io/v1",
                "kind": "VolumeSnapshot",
                "metadata": {"name": "two-sources"},
                "spec": {
                    "source": {"persistentVolumeClaimName": "a", "volumeSnapshotContentName": "b"}
                },
            },
        ),
        (
            "namespaces/{ns}/volumesnapshots",
            {
                "apiVersion": "snapshot.storage.k8s.io/v1",
                "kind": "VolumeSnapshot",
                "metadata": {"name": "no-source"},
                "spec": {},
            },
        ),
    ],
    ids=["unknown-deletion-policy", "no-driver", "two-sources", "no-source"],
)
def test_the_schemas_refuse_what_upstream_refuses(
    snapshot_crds: Any, namespace: str, path: str, body: dict[str, Any]
) -> None:
    with pytest.raises(ApiError) as e:
        snapshot_crds.api().create(f"{V1}/{path.format(ns=namespace)}", body)
    assert e.value.status == 422


def test_installing_again_is_harmless(snapshot_crds: Any) -> None:
    snapshotcrds.install(snapshot_crds)
    crd = snapshot_crds.api().get(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
        "volumesnapshots.snapshot.storage.k8s.io"
    )
    assert crd["spec"]["names"]["shortNames"] == ["vs"]
    assert crd["spec"]["scope"] == "Namespaced"
