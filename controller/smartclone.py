"""The DataVolume phase of a clone the storage does itself (csi-clone, snapshot). Pure.

csi-clone: the target PVC (dataSource: the source PVC) is `CSICloneInProgress` until it
is Bound. snapshot: `SnapshotForSmartCloneInProgress` until the VolumeSnapshot of the
source is readyToUse, then the PVC restored from it is `SmartClonePVCInProgress` until
Bound. A `source.snapshot` DataVolume: its restore PVC is
`CloneFromSnapshotSourceInProgress` until Bound. Bound is done: `Succeeded` (the
temporary VolumeSnapshot is then deleted by the caller). Names and messages are CDI's.
"""

from __future__ import annotations

from cdicontract import api, clone
from controller.runtime import objects as o
from controller.runtime.objects import Obj
from controller.transfers.clone import smart
from controller.transfers.protocol import EventSpec, Phases

CSI_CLONE_IN_PROGRESS = "CSICloneInProgress"
SNAPSHOT_IN_PROGRESS = "SnapshotForSmartCloneInProgress"
SMART_PVC_IN_PROGRESS = "SmartClonePVCInProgress"
FROM_SNAPSHOT_IN_PROGRESS = "CloneFromSnapshotSourceInProgress"
SNAPSHOT_CREATED = "SnapshotForSmartCloneCreated"
CLONE_SUCCEEDED = "CloneSucceeded"


def bound(pvc: Obj | None) -> bool:
    return pvc is not None and o.status(pvc).get("phase") == "Bound"


def snapshot_ready(snapshot: Obj | None) -> bool:
    return snapshot is not None and smart.snapshot_ready(snapshot)[0]


def reads_source_next(strategy: clone.Strategy, *, snapshot_taken: bool) -> bool:
    """Whether the next step of a PVC clone makes the storage read its source, so the
    source must be ready and free of writers first: a csi-clone's target PVC, or the
    snapshot strategy's VolumeSnapshot while it is not taken yet (after that the
    restore reads the snapshot). A copy waits in its transfer instead."""
    if strategy == clone.Strategy.CSI_CLONE:
        return True
    return strategy == clone.Strategy.SNAPSHOT and not snapshot_taken


def phase(strategy: clone.Strategy, *, from_snapshot: bool, pvc: Obj | None, wffc: bool
          ) -> str:
    """The phase of a storage-filled clone from its target PVC (None: not created yet)."""
    if bound(pvc):
        return api.PHASE_SUCCEEDED
    if pvc is not None and o.status(pvc).get("phase") == "Lost":
        return api.PHASE_FAILED
    if pvc is not None and wffc:
        return api.PHASE_WAIT_FOR_FIRST_CONSUMER
    if from_snapshot:
        return FROM_SNAPSHOT_IN_PROGRESS
    if strategy == clone.Strategy.CSI_CLONE:
        return CSI_CLONE_IN_PROGRESS
    return SNAPSHOT_IN_PROGRESS if pvc is None else SMART_PVC_IN_PROGRESS


def phases(source_ns: str, source_name: str, target_ns: str, target_name: str) -> Phases:
    """The events of a storage-filled clone (Phases for dvstatus; no pod, no progress)."""
    src, dst = f"{source_ns}/{source_name}", f"{target_ns}/{target_name}"
    events: dict[str, EventSpec] = {
        CSI_CLONE_IN_PROGRESS: ("Normal", CSI_CLONE_IN_PROGRESS,
                                f"CSI Volume clone in progress (for pvc {src})"),
        SNAPSHOT_IN_PROGRESS: ("Normal", SNAPSHOT_IN_PROGRESS,
                               f"Creating snapshot for smart-clone is in progress (for pvc {src})"),
        SMART_PVC_IN_PROGRESS: ("Normal", SNAPSHOT_CREATED,
                                f"Snapshot for smart-clone of pvc {src} created"),
        FROM_SNAPSHOT_IN_PROGRESS: ("Normal", FROM_SNAPSHOT_IN_PROGRESS,
                                    "Creating PVC from snapshot source is in progress "
                                    f"(for snapshot {src})"),
        api.PHASE_SUCCEEDED: ("Normal", CLONE_SUCCEEDED,
                              f"Successfully cloned from {src} into {dst}"),
        api.PHASE_FAILED: ("Warning", "CloneFailed", f"Cloning from {src} into {dst} failed"),
    }
    # No pod: nothing is "scheduled" or "running" in the transfer sense ("" is no phase).
    return Phases(scheduled="", running="", running_needs_ready=False, events=events,
                  progress_metric="", progress_port=0)
