"""Claims bind through the real PV controller and our provisioner, in both modes."""

from __future__ import annotations

import pytest

from tests.cluster.helpers import phase, pod, pvc, wait_for

pytestmark = pytest.mark.cluster


def _bound(api, ns, name):
    def check():
        c = api.get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{name}")
        return c["status"].get("phase") == "Bound" and c

    return check


def test_filesystem_claim_is_usable_by_a_non_root_pod(cluster, namespace):
    api = cluster.api()
    api.create(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims", pvc("fs", "32Mi"))
    claim = wait_for("bound", _bound(api, namespace, "fs"), 60)
    assert (
        claim["metadata"]["annotations"]["volume.kubernetes.io/storage-provisioner"]
        == "local.cdi-py.io/loop"
    )
    manifest = pod(
        "writer",
        "echo payload > /data/disk.img && id -u",
        container={
            "volumeMounts": [{"name": "d", "mountPath": "/data"}],
            "securityContext": {
                "runAsUser": 107,
                "runAsNonRoot": True,
                "capabilities": {"drop": ["ALL"]},
            },
        },
        volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "fs"}}],
        securityContext={"fsGroup": 107},
    )
    api.create(f"/api/v1/namespaces/{namespace}/pods", manifest)
    wait_for("Succeeded", phase(api, namespace, "writer", "Succeeded", "Failed"), 60)
    assert cluster.logs(namespace, "writer") == "107\n"
    path = cluster.pv_path(namespace, "fs")
    assert (path / "disk.img").read_text() == "payload\n"


def test_filesystem_capacity_is_enforced(cluster, namespace):
    api = cluster.api()
    api.create(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims", pvc("small", "20Mi"))
    wait_for("bound", _bound(api, namespace, "small"), 60)
    manifest = pod(
        "filler",
        "dd if=/dev/zero of=/data/big bs=1M count=40 2>&1; exit 0",
        container={
            "volumeMounts": [{"name": "d", "mountPath": "/data"}],
        },
        volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "small"}}],
    )
    api.create(f"/api/v1/namespaces/{namespace}/pods", manifest)
    wait_for("done", phase(api, namespace, "filler", "Succeeded", "Failed"), 60)
    assert "No space left on device" in cluster.logs(namespace, "filler")


def test_block_claim_appears_as_a_device_at_the_requested_path(cluster, namespace):
    api = cluster.api()
    api.create(
        f"/api/v1/namespaces/{namespace}/persistentvolumeclaims", pvc("blk", "8Mi", mode="Block")
    )
    wait_for("bound", _bound(api, namespace, "blk"), 60)
    manifest = pod(
        "blockwriter",
        "test -b /dev/cdi-block-volume"
        " && printf 'QFI\\373' | dd of=/dev/cdi-block-volume conv=notrunc 2>/dev/null"
        " && blockdev --getsize64 /dev/cdi-block-volume",
        container={
            "volumeDevices": [{"name": "d", "devicePath": "/dev/cdi-block-volume"}],
            "securityContext": {"runAsUser": 107},
        },
        volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "blk"}}],
        securityContext={"fsGroup": 107},
    )
    api.create(f"/api/v1/namespaces/{namespace}/pods", manifest)
    p = wait_for("done", phase(api, namespace, "blockwriter", "Succeeded", "Failed"), 60)
    assert p["status"]["phase"] == "Succeeded", cluster.logs(namespace, "blockwriter")
    assert cluster.logs(namespace, "blockwriter").strip() == str(8 * 1024 * 1024)
    device = cluster.pv_path(namespace, "blk")
    with open(device, "rb") as f:
        assert f.read(4) == b"QFI\xfb"


def test_wait_for_first_consumer_binds_only_once_a_pod_is_scheduled(cluster, namespace):
    api = cluster.api()
    api.create(
        f"/api/v1/namespaces/{namespace}/persistentvolumeclaims",
        pvc("late", "16Mi", sc="local-wffc"),
    )
    claim = api.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/late")
    assert claim["status"].get("phase") == "Pending"
    manifest = pod(
        "consumer",
        "ls /data",
        container={"volumeMounts": [{"name": "d", "mountPath": "/data"}]},
        volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "late"}}],
    )
    api.create(f"/api/v1/namespaces/{namespace}/pods", manifest)
    claim = wait_for("bound", _bound(api, namespace, "late"), 60)
    selected = claim["metadata"]["annotations"]["volume.kubernetes.io/selected-node"]
    assert selected in cluster.node_names
    done = wait_for("Succeeded", phase(api, namespace, "consumer", "Succeeded"), 60)
    # The volume was made on the node the scheduler chose, and the pod runs there.
    assert done["spec"]["nodeName"] == selected
    pv = api.get(f"/api/v1/persistentvolumes/{claim['spec']['volumeName']}")
    terms = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][0]["values"] == [selected]


def test_deleting_a_claim_deletes_its_volume_and_storage(cluster, namespace):
    api = cluster.api()
    api.create(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims", pvc("temp", "16Mi"))
    claim = wait_for("bound", _bound(api, namespace, "temp"), 60)
    path = cluster.pv_path(namespace, "temp")
    assert path.is_dir()
    api.delete(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/temp")
    pv = claim["spec"]["volumeName"]
    wait_for("PV deleted", lambda: api.get_or_none(f"/api/v1/persistentvolumes/{pv}") is None, 60)
    wait_for("storage removed", lambda: not path.exists(), 10)


def test_secret_configmap_and_token_volumes(cluster, namespace):
    api = cluster.api()
    api.create(
        f"/api/v1/namespaces/{namespace}/secrets",
        {"metadata": {"name": "s"}, "stringData": {"accessKeyId": "AK"}},
    )
    api.create(
        f"/api/v1/namespaces/{namespace}/configmaps",
        {"metadata": {"name": "certs"}, "data": {"ca.pem": "PEM"}},
    )
    sa = "/var/run/secrets/kubernetes.io/serviceaccount"
    script = (
        f"cat /s/accessKeyId /certs/ca.pem; echo; cat {sa}/namespace; echo;"
        f" test -s {sa}/token && echo token; cat /info/name"
    )
    manifest = pod(
        "vols",
        script,
        container={
            "volumeMounts": [
                {"name": "s", "mountPath": "/s"},
                {"name": "c", "mountPath": "/certs"},
                {"name": "i", "mountPath": "/info"},
            ],
            "securityContext": {"runAsUser": 107},
        },
        volumes=[
            {"name": "s", "secret": {"secretName": "s"}},
            {"name": "c", "configMap": {"name": "certs"}},
            {
                "name": "i",
                "downwardAPI": {
                    "items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]
                },
            },
        ],
    )
    api.create(f"/api/v1/namespaces/{namespace}/pods", manifest)
    wait_for("done", phase(api, namespace, "vols", "Succeeded", "Failed"), 60)
    assert cluster.logs(namespace, "vols").split() == ["AKPEM", namespace, "token", "vols"]
