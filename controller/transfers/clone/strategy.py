"""Which clone strategy a DataVolume gets, and why it fell back to `copy` when it did.

CDI's rules (pkg/controller/clone/planner.go `ChooseStrategy`, and the DataVolume
controller's populator check in datavolume/controller-base.go):

- The wanted strategy is the global override (CDI's `cloneStrategyOverride`), else the
  target StorageClass's StorageProfile (`spec.cloneStrategy` over `status.cloneStrategy`),
  else `snapshot`. A VolumeSnapshot source always wants `snapshot`.
- `copy` (host-assisted) works everywhere and never falls back.
- A smart strategy needs a CSI storage class: a target class whose provisioner has a
  CSIDriver object (`NoPopulator` otherwise, CDI's message for in-tree storage).
- `snapshot` from a PVC needs a VolumeSnapshotClass of the common driver
  (`NoVolumeSnapshotClass`); `snapshot` and `csi-clone` need source and target on the same
  driver (`IncompatibleProvisioners`), the same volume mode (`IncompatibleVolumeModes`),
  and a target no larger than the source unless the class allows expansion
  (`NoVolumeExpansion`).
- From a VolumeSnapshot: its content's driver must be the target class's provisioner
  (`NoProvisionerMatch`), then the size and volume-mode rules.
- Ours: CDI moves a smart-cloned volume into another namespace (a temporary claim, then a
  rebind of its PV); we do not yet, so a cross-namespace smart clone falls back to `copy`
  (`CrossNamespaceSmartClone`). An unknown strategy name falls back too
  (`UnknownCloneStrategy`) instead of leaving the DataVolume stuck.

The first rule that fails names the fallback, in CDI's order. As in CDI, the
`cdi.kubevirt.io/cloneFallbackReason` annotation carries the *message*; the event's reason
is the *reason*.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from cdicontract import clone, sizes
from controller.runtime import objects as o
from controller.runtime.objects import Obj
from controller.transfers.clone import smart

DEFAULT_STRATEGY = clone.Strategy.SNAPSHOT
"""What CDI wants when nothing says otherwise."""

FILESYSTEM = "Filesystem"
SOURCE_VOLUME_MODE_ANNOTATION = smart.SOURCE_VOLUME_MODE_ANNOTATION
"""On a VolumeSnapshot without `sourceVolumeMode` in its content: the source's mode."""

NO_POPULATOR = "NoPopulator"
MESSAGE_NO_POPULATOR = "In tree storage class does not support snapshot/clone"
NO_VOLUME_SNAPSHOT_CLASS = "NoVolumeSnapshotClass"
MESSAGE_NO_VOLUME_SNAPSHOT_CLASS = "No compatible volumesnapshotclass found"
INCOMPATIBLE_PROVISIONERS = "IncompatibleProvisioners"
MESSAGE_INCOMPATIBLE_PROVISIONERS = "Provisioners are incompatible"
INCOMPATIBLE_VOLUME_MODES = "IncompatibleVolumeModes"
MESSAGE_INCOMPATIBLE_VOLUME_MODES = "The volume modes of source and target are incompatible"
NO_VOLUME_EXPANSION = "NoVolumeExpansion"
MESSAGE_NO_VOLUME_EXPANSION = "No volume expansion is possible"
NO_PROVISIONER_MATCH = "NoProvisionerMatch"
MESSAGE_NO_PROVISIONER_MATCH = (
    "The storageclass provisioner does not match the volumesnapshotcontent driver")
# Ours, not CDI's:
CROSS_NAMESPACE_SMART_CLONE = "CrossNamespaceSmartClone"
MESSAGE_CROSS_NAMESPACE_SMART_CLONE = (
    "Smart clone across namespaces is not supported; using host-assisted copy")
UNKNOWN_CLONE_STRATEGY = "UnknownCloneStrategy"
MESSAGE_UNKNOWN_CLONE_STRATEGY = "Unknown clone strategy {!r}; using host-assisted copy"


@dataclass(frozen=True)
class Choice:
    strategy: clone.Strategy
    fallback_reason: str = ""
    """CDI's reason when the wanted strategy fell back to copy (the event's reason)."""
    fallback_message: str = ""
    """The event's message and the `cloneFallbackReason` annotation's value."""
    snapshot_class: str = ""
    """For `snapshot` from a PVC: the VolumeSnapshotClass to snapshot the source with."""


class _Fallback(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.message = message


def wanted(profile: Obj | None, override: str = "") -> str:
    """The strategy asked for: the global override, the profile's, else CDI's default."""
    if override:
        return override
    if profile:
        for part in (o.spec(profile), o.status(profile)):
            if part.get("cloneStrategy"):
                return str(part["cloneStrategy"])
    return DEFAULT_STRATEGY.value


def _mode(mode: object) -> str:
    return str(mode or FILESYSTEM)


def _size(value: object) -> int | None:
    if value is None or value == "":
        return None
    return sizes.parse_quantity(value if isinstance(value, int) else str(value))


def _check_expansion(source_size: int | None, target_size: str | int | None,
                     target_class: Obj) -> None:
    target = _size(target_size)
    if source_size is None or target is None:
        return
    if source_size < target and target_class.get("allowVolumeExpansion") is not True:
        raise _Fallback(NO_VOLUME_EXPANSION, MESSAGE_NO_VOLUME_EXPANSION)


def _source_driver(source: Obj, source_class: Obj | None, target_class: Obj) -> str | None:
    """The source PVC's CSI driver as far as we can tell without reading its PV."""
    if source_class is not None:
        return str(source_class.get("provisioner") or "") or None
    if o.spec(source).get("storageClassName") == o.name(target_class):
        return str(target_class.get("provisioner") or "") or None
    return None


def _from_pvc(*, strategy: clone.Strategy, source: Obj, target_class: Obj,
              target_volume_mode: str, profile: Obj | None, snapshot_classes: Sequence[Obj],
              source_class: Obj | None, target_size: str | int | None) -> str:
    provisioner = str(target_class.get("provisioner") or "")
    common = _source_driver(source, source_class, target_class) == provisioner
    snapshot_class = ""
    if strategy is clone.Strategy.SNAPSHOT:
        preferred = str(o.status(profile).get("snapshotClass") or
                        o.spec(profile).get("snapshotClass") or "") if profile else ""
        found = smart.snapshot_class_for(provisioner, snapshot_classes, preferred)
        if not common or found is None:
            raise _Fallback(NO_VOLUME_SNAPSHOT_CLASS, MESSAGE_NO_VOLUME_SNAPSHOT_CLASS)
        snapshot_class = o.name(found)
    if not common:
        raise _Fallback(INCOMPATIBLE_PROVISIONERS, MESSAGE_INCOMPATIBLE_PROVISIONERS)
    if _mode(o.spec(source).get("volumeMode")) != _mode(target_volume_mode):
        raise _Fallback(INCOMPATIBLE_VOLUME_MODES, MESSAGE_INCOMPATIBLE_VOLUME_MODES)
    capacity = (o.get_path(source, "status", "capacity", "storage")
                or o.get_path(source, "spec", "resources", "requests", "storage"))
    _check_expansion(_size(capacity), target_size, target_class)
    return snapshot_class


def _from_snapshot(*, source: Obj, target_class: Obj, target_volume_mode: str,
                   snapshot_content: Obj | None, target_size: str | int | None) -> None:
    driver = o.spec(snapshot_content).get("driver") if snapshot_content else None
    if not driver or driver != target_class.get("provisioner"):
        raise _Fallback(NO_PROVISIONER_MATCH, MESSAGE_NO_PROVISIONER_MATCH)
    _check_expansion(_size(o.status(source).get("restoreSize")), target_size, target_class)
    mode = (o.spec(snapshot_content).get("sourceVolumeMode") if snapshot_content else None) \
        or o.annotations(source).get(SOURCE_VOLUME_MODE_ANNOTATION) \
        or target_volume_mode
    if _mode(mode) != _mode(target_volume_mode):
        raise _Fallback(INCOMPATIBLE_VOLUME_MODES, MESSAGE_INCOMPATIBLE_VOLUME_MODES)


def choose(*, source: Obj, target_class: Obj | None, target_volume_mode: str,
           profile: Obj | None, snapshot_classes: Sequence[Obj], same_namespace: bool,
           csi_drivers: Collection[str] = (), source_class: Obj | None = None,
           target_size: str | int | None = None, snapshot_content: Obj | None = None,
           override: str = "") -> Choice:
    """The strategy for one clone; `copy` with CDI's reason when the wanted one cannot run.

    `source` is the source PVC, or a VolumeSnapshot (`kind: VolumeSnapshot`).
    `csi_drivers`: the names of the cluster's CSIDriver objects; a smart strategy runs only
    on a class whose provisioner is one (the safe default, none, always copies).
    `source_class`: the source PVC's StorageClass when it is not the target's (without it,
    only the same class counts as the same driver). `target_size`: the target's request,
    for the expansion rule. `snapshot_content`: a snapshot source's VolumeSnapshotContent.
    `override`: the cluster-wide clone strategy override, if any.
    """
    from_snapshot = source.get("kind") == "VolumeSnapshot"
    name = DEFAULT_STRATEGY.value if from_snapshot else wanted(profile, override)
    try:
        strategy = clone.Strategy(name)
    except ValueError:
        return Choice(clone.Strategy.COPY, UNKNOWN_CLONE_STRATEGY,
                      MESSAGE_UNKNOWN_CLONE_STRATEGY.format(name[:63]))
    if strategy is clone.Strategy.COPY:
        return Choice(clone.Strategy.COPY)
    snapshot_class = ""
    try:
        if target_class is None or target_class.get("provisioner") not in csi_drivers:
            raise _Fallback(NO_POPULATOR, MESSAGE_NO_POPULATOR)
        if from_snapshot:
            _from_snapshot(source=source, target_class=target_class,
                           target_volume_mode=target_volume_mode,
                           snapshot_content=snapshot_content, target_size=target_size)
        else:
            snapshot_class = _from_pvc(
                strategy=strategy, source=source, target_class=target_class,
                target_volume_mode=target_volume_mode, profile=profile,
                snapshot_classes=snapshot_classes, source_class=source_class,
                target_size=target_size)
        if not same_namespace:
            raise _Fallback(CROSS_NAMESPACE_SMART_CLONE, MESSAGE_CROSS_NAMESPACE_SMART_CLONE)
    except _Fallback as f:
        return Choice(clone.Strategy.COPY, f.reason, f.message)
    return Choice(strategy, snapshot_class=snapshot_class)


STORAGE_CLASS_STRATEGY_ANNOTATION = "cdi.kubevirt.io/clone-strategy"
"""On a StorageClass: the clone strategy its StorageProfile advertises unless set there."""
ADVISED_BY_PROVISIONER: dict[str, clone.Strategy] = {
    # CDI's storagecapabilities.CloneStrategyByProvisionerKey (plain provisioner keys).
    "csi-vxflexos.dellemc.com": clone.Strategy.CSI_CLONE,
    "csi-isilon.dellemc.com": clone.Strategy.CSI_CLONE,
    "csi-powermax.dellemc.com": clone.Strategy.CSI_CLONE,
    "csi-powerstore.dellemc.com": clone.Strategy.COPY,
    "csi.hpe.com": clone.Strategy.CSI_CLONE,
    "spectrumscale.csi.ibm.com": clone.Strategy.CSI_CLONE,
    "block.csi.ibm.com": clone.Strategy.CSI_CLONE,
    "vpc.block.csi.ibm.io": clone.Strategy.COPY,
    "vpc.file.csi.ibm.io": clone.Strategy.SNAPSHOT,
    "rbd.csi.ceph.com": clone.Strategy.CSI_CLONE,
    "rook-ceph.rbd.csi.ceph.com": clone.Strategy.CSI_CLONE,
    "openshift-storage.rbd.csi.ceph.com": clone.Strategy.CSI_CLONE,
    "cephfs.csi.ceph.com": clone.Strategy.CSI_CLONE,
    "rook-ceph.cephfs.csi.ceph.com": clone.Strategy.CSI_CLONE,
    "openshift-storage.cephfs.csi.ceph.com": clone.Strategy.CSI_CLONE,
    "pxd.portworx.com": clone.Strategy.CSI_CLONE,
}


def advised(storage_class: Obj, profile: Obj | None,
            snapshot_classes: Sequence[Obj]) -> tuple[str, str]:
    """(status.cloneStrategy, status.snapshotClass) of a StorageProfile, as CDI fills them.

    The profile's `spec.cloneStrategy`; else the class's `cdi.kubevirt.io/clone-strategy`
    annotation; else what CDI advises for the provisioner, or `snapshot` when the driver
    has a VolumeSnapshotClass; and `copy` instead of `snapshot` when it has none.
    (CDI's storageprofile-controller.go reconcileCloneStrategy.)
    """
    spec = o.spec(profile) if profile else {}
    provisioner = str(storage_class.get("provisioner") or "")
    found = smart.snapshot_class_for(provisioner, snapshot_classes,
                                     str(spec.get("snapshotClass") or ""))
    snap_class = o.name(found) if found is not None else ""
    if spec.get("cloneStrategy"):
        return str(spec["cloneStrategy"]), snap_class
    annotated = o.annotations(storage_class).get(STORAGE_CLASS_STRATEGY_ANNOTATION)
    if annotated is not None:
        return annotated, snap_class
    strategy = ADVISED_BY_PROVISIONER.get(
        provisioner, clone.Strategy.SNAPSHOT if snap_class else clone.Strategy.COPY)
    if strategy is clone.Strategy.SNAPSHOT and not snap_class:
        strategy = clone.Strategy.COPY
    return strategy.value, snap_class
