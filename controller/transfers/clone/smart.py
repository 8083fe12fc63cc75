"""The Kubernetes objects of the two smart-clone strategies, `csi-clone` and `snapshot`.

Pure builders, as CDI's clone phases create them (pkg/controller/clone/csi-clone.go,
snapshot.go, snap-clone.go): the storage does the copy, the controller only asks for it.
`csi-clone` is a PVC whose `spec.dataSource` names the source PVC (same namespace, same
CSI driver); `snapshot` is a VolumeSnapshot of the source, then a PVC restored from it.

Only `spec.dataSource` is set: the API server mirrors it into `spec.dataSourceRef`
(AnyVolumeDataSource, on by default since Kubernetes 1.24, GA in 1.33), and setting both
would make it demand that they match.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

from cdicontract import sizes
from controller.runtime import objects as o
from controller.runtime.objects import Obj

SNAPSHOT_GROUP = "snapshot.storage.k8s.io"
SNAPSHOT_API_VERSION = f"{SNAPSHOT_GROUP}/v1"
DEFAULT_SNAPSHOT_CLASS_ANNOTATION = "snapshot.storage.kubernetes.io/is-default-class"
SNAPSHOT_PREFIX = "cdi-tmp-"
"""Our temporary snapshots are named `cdi-tmp-<DataVolume UID>` (CDI: tmp-snapshot-<uid>)."""

# Where a PVC body's server-set or source-specific fields live: dropped from the copy.
_SERVER_META = ("uid", "resourceVersion", "creationTimestamp", "generation",
                "managedFields", "deletionTimestamp", "deletionGracePeriodSeconds",
                "selfLink")
_SERVER_SPEC = ("volumeName", "dataSource", "dataSourceRef")


def _claim_copy(target: Obj) -> Obj:
    """The target PVC body, without what the API server or a previous source set."""
    out: Obj = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {k: copy.deepcopy(v) for k, v in o.meta(target).items()
                     if k not in _SERVER_META},
        "spec": {k: copy.deepcopy(v) for k, v in o.spec(target).items()
                 if k not in _SERVER_SPEC},
    }
    if not o.name(out):
        raise ValueError("target claim has no metadata.name")
    return out


def csi_clone_claim(target: Obj, source_name: str) -> Obj:
    """The target PVC body with `spec.dataSource` the source PVC (same namespace only)."""
    if not source_name:
        raise ValueError("csi-clone needs a source PVC name")
    out = _claim_copy(target)
    out["spec"]["dataSource"] = {"kind": "PersistentVolumeClaim", "name": source_name}
    return out


def volume_snapshot(source: Obj, name: str, snapshot_class: str,
                    labels: Mapping[str, str]) -> Obj:
    """A VolumeSnapshot of the source PVC, in the source's namespace."""
    if not name or not snapshot_class:
        raise ValueError("a VolumeSnapshot needs a name and a VolumeSnapshotClass")
    if not o.name(source) or not o.namespace(source):
        raise ValueError("source claim has no metadata.name or metadata.namespace")
    return {
        "apiVersion": SNAPSHOT_API_VERSION,
        "kind": "VolumeSnapshot",
        "metadata": {"name": name, "namespace": o.namespace(source), "labels": dict(labels)},
        "spec": {
            "source": {"persistentVolumeClaimName": o.name(source)},
            "volumeSnapshotClassName": snapshot_class,
        },
    }


def restore_claim(target: Obj, snapshot_name: str, restore_size: str | int | None = None) -> Obj:
    """The target PVC body restored from a VolumeSnapshot in the target's namespace.

    A restored volume cannot be smaller than the snapshot's `status.restoreSize`, so the
    request is raised to it when the target asked for less (or for nothing).
    """
    if not snapshot_name:
        raise ValueError("a restore needs a VolumeSnapshot name")
    out = _claim_copy(target)
    out["spec"]["dataSource"] = {
        "apiGroup": SNAPSHOT_GROUP,
        "kind": "VolumeSnapshot",
        "name": snapshot_name,
    }
    if restore_size is not None and sizes.parse_quantity(restore_size) > 0:
        wanted = sizes.parse_quantity(restore_size)
        requests = out["spec"].setdefault("resources", {}).setdefault("requests", {})
        asked = requests.get("storage")
        if asked is None or sizes.parse_quantity(asked) < wanted:
            requests["storage"] = (restore_size if isinstance(restore_size, str)
                                   else sizes.format_quantity(wanted))
    return out


def snapshot_class_for(provisioner: str, classes: Sequence[Obj],
                       preferred: str = "") -> Obj | None:
    """The VolumeSnapshotClass for a CSI driver, as CDI picks it (GetVolumeSnapshotClass).

    The StorageProfile's `snapshotClass` (`preferred`) when its driver matches, else none
    at all; without one, the default-annotated class of the driver, else the first by name.
    """
    if not provisioner:
        return None
    matching = [c for c in classes if c.get("driver") == provisioner]
    if preferred:
        return next((c for c in matching if o.name(c) == preferred), None)
    for c in sorted(matching, key=o.name):
        if o.annotations(c).get(DEFAULT_SNAPSHOT_CLASS_ANNOTATION) == "true":
            return c
    return min(matching, key=o.name, default=None)


def snapshot_name(dv_uid: str) -> str:
    if not dv_uid:
        raise ValueError("a temporary snapshot is named after a UID; got none")
    return f"{SNAPSHOT_PREFIX}{dv_uid}"


def snapshot_ready(snapshot: Obj) -> tuple[bool, str]:
    """(status.readyToUse, status.error.message): the snapshot controller's verdict."""
    st = o.status(snapshot)
    err = st.get("error")
    message = str(err.get("message") or "") if isinstance(err, dict) else ""
    return st.get("readyToUse") is True, message


TEMP_SOURCE_PREFIX = "tmp-source-pvc-"
SOURCE_VOLUME_MODE_ANNOTATION = "cdi.kubevirt.io/storage.import.sourceVolumeMode"


def temp_source_claim(target: Obj, snapshot: Obj, content: Obj | None,
                      storage_classes: Sequence[Obj]) -> Obj:
    """The claim a snapshot is restored into so a host-assisted copy can read it.

    CDI's createTempSourceClaim: in the snapshot's namespace, named after the target PVC's
    UID, on the first class (by name) of the snapshot's driver, ReadWriteOnce (some drivers
    refuse a read-only Block mount), the snapshot's volume mode (its content's
    `sourceVolumeMode`, else CDI's annotation, else the target's) and `restoreSize` (the
    target's request when the snapshot reports 0). The target's labels are kept; its
    annotations are not (they carry the clone token and the transfer's state).
    """
    uid = o.uid(target)
    if not uid:
        raise ValueError("target claim has no metadata.uid")
    if not o.name(snapshot) or not o.namespace(snapshot):
        raise ValueError("snapshot has no metadata.name or metadata.namespace")
    driver = str(o.spec(content).get("driver") or "") if content else ""
    classes = sorted(o.name(c) for c in storage_classes
                     if driver and c.get("provisioner") == driver)
    if not classes:
        raise ValueError(f"no storage class of the snapshot's driver {driver[:63]!r}")
    restore = o.status(snapshot).get("restoreSize")
    if restore is None or restore == "":
        raise ValueError("snapshot has no restoreSize")
    size: str | int = restore if isinstance(restore, int) else str(restore)
    if sizes.parse_quantity(size) == 0:
        size = o.get_path(target, "spec", "resources", "requests", "storage") or 0
        if not size or sizes.parse_quantity(size) == 0:
            raise ValueError("snapshot restoreSize is 0 and the target requests no size")
    mode = ((o.spec(content).get("sourceVolumeMode") if content else None)
            or o.annotations(snapshot).get(SOURCE_VOLUME_MODE_ANNOTATION)
            or o.spec(target).get("volumeMode") or "Filesystem")
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": f"{TEMP_SOURCE_PREFIX}{uid}", "namespace": o.namespace(snapshot),
                     "labels": copy.deepcopy(o.labels(target))},
        "spec": {
            "storageClassName": classes[0],
            "accessModes": ["ReadWriteOnce"],
            "volumeMode": str(mode),
            "resources": {"requests": {"storage": size if isinstance(size, str)
                                       else sizes.format_quantity(size)}},
            "dataSource": {"apiGroup": SNAPSHOT_GROUP, "kind": "VolumeSnapshot",
                           "name": o.name(snapshot)},
        },
    }
