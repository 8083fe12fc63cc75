"""A dynamic provisioner for the test StorageClasses, as an external provisioner works.

Why: the product creates PVCs and waits for them to bind, for both volume modes and both
binding modes; the real PV controller (in kube-controller-manager) does the binding
and the real scheduler picks the node for WaitForFirstConsumer claims. This module
only does what a CSI external-provisioner does: create a PV for each claim whose
``volume.kubernetes.io/storage-provisioner`` annotation names us (after
``volume.kubernetes.io/selected-node`` for late binding), and delete the backing storage
of released PVs with reclaim policy Delete.

Nodes: a PV is local to one node (``spec.nodeAffinity`` requires its
``kubernetes.io/hostname``), so the scheduler puts every pod that mounts it there. The
node is, as a local-volume provisioner chooses it: the selected node of a
WaitForFirstConsumer claim; for Immediate binding the StorageClass's
``allowedTopologies`` (its ``kubernetes.io/hostname`` values, first served node), else
the first node. With several nodes each gets an Immediate class ``local-<node>``
pinned to it by ``allowedTopologies``, for tests that need a volume on a given node.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from localcluster import storage
from localcluster.api import Api, ApiError, Obj
from localcluster.informer import Informer
from localcluster.podenv import quantity

log = logging.getLogger(__name__)

PROVISIONER = "local.cdi-py.io/loop"
DEFAULT_CLASS = "local"
WFFC_CLASS = "local-wffc"
ANN_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
ANN_BETA_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
ANN_PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
ANN_BACKING = "local.cdi-py.io/backing-file"
HOSTNAME_LABEL = "kubernetes.io/hostname"


def node_class(node: str) -> str:
    """The Immediate StorageClass whose volumes live on ``node`` (clusters of 2+ nodes)."""
    return f"local-{node}"


def storage_classes(nodes: list[str]) -> list[Obj]:
    def sc(name: str, mode: str, default: bool, node: str | None = None) -> Obj:
        ann = {"storageclass.kubernetes.io/is-default-class": "true"} if default else {}
        obj: Obj = {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": name, "annotations": ann},
            "provisioner": PROVISIONER,
            "reclaimPolicy": "Delete",
            "volumeBindingMode": mode,
            "allowVolumeExpansion": False,
        }
        if node is not None:
            obj["allowedTopologies"] = [
                {"matchLabelExpressions": [{"key": HOSTNAME_LABEL, "values": [node]}]}
            ]
        return obj

    classes = [sc(DEFAULT_CLASS, "Immediate", True), sc(WFFC_CLASS, "WaitForFirstConsumer", False)]
    if len(nodes) > 1:
        classes += [sc(node_class(n), "Immediate", False, n) for n in nodes]
    return classes


def choose_node(sc: Obj, pvc: Obj, nodes: list[str]) -> str | None:
    """The node a new volume of ``pvc`` lives on, or None if none of ``nodes`` may
    hold it (not ours to provision, or not yet: a late-binding claim before the
    scheduler picked its node)."""
    if sc.get("volumeBindingMode") == "WaitForFirstConsumer":
        selected = (pvc["metadata"].get("annotations") or {}).get(ANN_SELECTED_NODE)
        return selected if selected in nodes else None
    allowed = topology_nodes(sc)
    if allowed is None:
        return nodes[0]
    return next((n for n in nodes if n in allowed), None)


def topology_nodes(sc: Obj) -> set[str] | None:
    """Hostnames a class's ``allowedTopologies`` admit, None if it does not restrict."""
    terms = sc.get("allowedTopologies") or []
    found: set[str] = set()
    restricted = False
    for term in terms:
        for expr in term.get("matchLabelExpressions") or []:
            if expr.get("key") == HOSTNAME_LABEL:
                restricted = True
                found.update(expr.get("values") or [])
    return found if restricted else None


def node_affinity(node: str) -> Obj:
    return {
        "required": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": HOSTNAME_LABEL, "operator": "In", "values": [node]}]}
            ]
        }
    }


class Provisioner:
    def __init__(self, api: Api, root: Path, stop: threading.Event, nodes: list[str]) -> None:
        self.api = api
        self.nodes = nodes
        self.root = root
        self.stop = stop
        self.lock = threading.Lock()
        self.classes: dict[str, Obj] = {}

    def start(self) -> None:
        for sc in storage_classes(self.nodes):
            try:
                self.api.create("/apis/storage.k8s.io/v1/storageclasses", sc)
            except ApiError as e:
                if e.status != 409:
                    raise
        self.sc_informer = Informer(
            self.api, "/apis/storage.k8s.io/v1/storageclasses", self._on_class, self.stop
        ).start()
        self.sc_informer.synced.wait(30)
        self.pvc_informer = Informer(
            self.api, "/api/v1/persistentvolumeclaims", self._on_claim, self.stop
        ).start()
        self.pv_informer = Informer(
            self.api, "/api/v1/persistentvolumes", self._on_volume, self.stop
        ).start()
        self.pvc_informer.synced.wait(30)
        self.pv_informer.synced.wait(30)

    def _on_class(self, kind: str, sc: Obj) -> None:
        if kind == "DELETED":
            self.classes.pop(sc["metadata"]["name"], None)
        else:
            self.classes[sc["metadata"]["name"]] = sc

    def _ours(self, pvc: Obj) -> Obj | None:
        ann = pvc["metadata"].get("annotations", {})
        name = pvc["spec"].get("storageClassName")
        sc = self.classes.get(name or "")
        if sc is None or sc.get("provisioner") != PROVISIONER:
            return None
        if ann.get(ANN_PROVISIONER, ann.get(ANN_BETA_PROVISIONER)) != PROVISIONER:
            return None
        return sc

    def _on_claim(self, kind: str, pvc: Obj) -> None:
        if (
            kind == "DELETED"
            or pvc["spec"].get("volumeName")
            or pvc["metadata"].get("deletionTimestamp")
        ):
            return
        sc = self._ours(pvc)
        if sc is None:
            return
        node = choose_node(sc, pvc, self.nodes)
        if node is None:
            return
        with self.lock:
            self._provision(pvc, sc, node)

    def _provision(self, pvc: Obj, sc: Obj, node: str) -> None:
        meta = pvc["metadata"]
        name = f"pvc-{meta['uid']}"
        if self.api.get_or_none(f"/api/v1/persistentvolumes/{name}") is not None:
            return
        size = int(quantity(pvc["spec"]["resources"]["requests"]["storage"]))
        mode = pvc["spec"].get("volumeMode", "Filesystem")
        root = self.root / name
        if mode == "Block":
            path = storage.create_block(root, size)
        else:
            path = str(storage.create_filesystem(root, size))
        pv: Obj = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": name,
                "annotations": {ANN_PROVISIONED_BY: PROVISIONER, ANN_BACKING: str(root / "disk")},
            },
            "spec": {
                "capacity": {"storage": pvc["spec"]["resources"]["requests"]["storage"]},
                "accessModes": pvc["spec"].get("accessModes", ["ReadWriteOnce"]),
                "volumeMode": mode,
                "storageClassName": sc["metadata"]["name"],
                "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy", "Delete"),
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": meta["namespace"],
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
                "local": {"path": path},
                "nodeAffinity": node_affinity(node),
            },
        }
        try:
            self.api.create("/api/v1/persistentvolumes", pv)
            log.info(
                "provisioned pvc=%s/%s pv=%s mode=%s size=%s node=%s",
                meta["namespace"],
                meta["name"],
                name,
                mode,
                size,
                node,
            )
        except ApiError:
            storage.release(root)
            raise

    def _on_volume(self, kind: str, pv: Obj) -> None:
        meta = pv["metadata"]
        if meta.get("annotations", {}).get(ANN_PROVISIONED_BY) != PROVISIONER:
            return
        root = self.root / meta["name"]
        if kind == "DELETED":
            # Deleted behind our back (or by us): the storage has no owner left.
            with self.lock:
                storage.release(root)
            return
        released = pv.get("status", {}).get("phase") in ("Released", "Failed")
        if released and pv["spec"].get("persistentVolumeReclaimPolicy") == "Delete":
            with self.lock:
                storage.release(root)
                self.api.delete(f"/api/v1/persistentvolumes/{meta['name']}")
                log.info("deleted pv=%s", meta["name"])
