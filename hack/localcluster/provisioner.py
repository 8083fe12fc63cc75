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

Data sources: this storage can neither clone a volume nor restore a snapshot, so a
claim whose ``spec.dataSourceRef`` (else ``spec.dataSource``) names a PVC or a
VolumeSnapshot is not provisioned (an empty volume would pass for a successful smart
clone): it stays Pending with a Warning ``ProvisioningFailed`` event in the CSI
external-provisioner's words (its capability check, as reported by the provisioning
library). Any other kind is left to its volume populator, with the external
provisioner's Normal ``Provisioning`` event. Each is said once per claim.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
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


SNAPSHOT_GROUP = "snapshot.storage.k8s.io"
PROVISIONING_FAILED = "ProvisioningFailed"
PROVISIONING = "Provisioning"
NO_CLONE = (
    "CSI driver does not support clone operations: controller CLONE_VOLUME capability is "
    "not reported"
)
NO_RESTORE = (
    "CSI driver does not support snapshot restore: controller CREATE_DELETE_SNAPSHOT "
    "capability is not reported"
)
POPULATOR = "Assuming an external populator will provision the volume"


def data_source_refusal(pvc: Obj, class_name: str) -> tuple[str, str, str] | None:
    """(event type, reason, message) when ``pvc`` asks to be filled from a data source,
    which this storage cannot do; None when it is an empty volume to provision."""
    spec = pvc.get("spec") or {}
    ref = spec.get("dataSourceRef") or spec.get("dataSource")
    if not isinstance(ref, dict):
        return None
    kind, group = ref.get("kind"), ref.get("apiGroup") or ""
    if not ref.get("name"):
        why = f"the PVC source not found for PVC {pvc['metadata']['name']}"
    elif kind == "VolumeSnapshot":
        why = (
            NO_RESTORE
            if group == SNAPSHOT_GROUP
            else (
                "the PVC source does not belong to the right APIGroup. "
                f"Expected {SNAPSHOT_GROUP}, Got {group}"
            )
        )
    elif kind == "PersistentVolumeClaim" and not group:
        why = NO_CLONE
    else:
        return "Normal", PROVISIONING, POPULATOR
    return (
        "Warning",
        PROVISIONING_FAILED,
        f'failed to provision volume with StorageClass "{class_name}": {why}',
    )


def claim_event(pvc: Obj, event_type: str, reason: str, message: str, now: datetime) -> Obj:
    """A core/v1 Event on the claim, from this provisioner."""
    meta = pvc["metadata"]
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta["uid"],
            "resourceVersion": meta.get("resourceVersion", ""),
        },
        "type": event_type,
        "reason": reason,
        "message": message,
        "source": {"component": PROVISIONER},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


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
        self.refused: set[str] = set()
        """UIDs of the claims already told why they are not provisioned."""

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
            if kind == "DELETED":
                with self.lock:
                    self.refused.discard(pvc["metadata"].get("uid", ""))
            return
        sc = self._ours(pvc)
        if sc is None:
            return
        refusal = data_source_refusal(pvc, sc["metadata"]["name"])
        if refusal is not None:
            self._refuse(pvc, *refusal)
            return
        node = choose_node(sc, pvc, self.nodes)
        if node is None:
            return
        with self.lock:
            self._provision(pvc, sc, node)

    def _refuse(self, pvc: Obj, event_type: str, reason: str, message: str) -> None:
        """Say once why the claim is not provisioned; it stays Pending."""
        uid = pvc["metadata"]["uid"]
        with self.lock:
            if uid in self.refused:
                return
            self.refused.add(uid)
        ns = pvc["metadata"]["namespace"]
        try:
            self.api.create(
                f"/api/v1/namespaces/{ns}/events",
                claim_event(pvc, event_type, reason, message, datetime.now(UTC)),
            )
        except ApiError as e:
            log.warning("event not recorded pvc=%s/%s error=%s", ns, pvc["metadata"]["name"], e)
        log.info("not provisioned pvc=%s/%s reason=%s", ns, pvc["metadata"]["name"], reason)

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
