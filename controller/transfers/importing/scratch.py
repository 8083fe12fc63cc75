"""The scratch PVC of an import, as CDI makes it (pure).

When an importer says it needs scratch space (`Reason.SCRATCH_SPACE_REQUIRED`), the PVC
is marked `storage.import.requiresScratch: "true"` (durable: a restarted controller, and
every later importer pod, knows it), `<pvc>-scratch` is created and the next importer pod
mounts it at /scratch. When the import ends (success or failure) the scratch PVC goes.

Size, as CDI's createScratchPersistentVolumeClaim: the target's usable space (its request
less its filesystem overhead, whole MiB) plus the scratch class's overhead, rounded up to
a MiB. Class: CDIConfig's status.scratchSpaceStorageClass, else the target's class.
Owned by the target PVC (CDI: by the importer pod), so deleting the target removes it
and a recreated importer pod finds the same one.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdicontract import annotations as ann
from cdicontract import scratch, sizes
from controller import claims
from controller.cdiconfig import EffectiveConfig
from controller.runtime import kube
from controller.runtime import objects as o
from controller.runtime.actions import Action, Create, Delete
from controller.runtime.objects import Obj
from controller.transfers import podstate, protocol
from controller.transfers.protocol import Recheck, Step

VELERO_EXCLUDE = "velero.io/exclude-from-backup"
"""CDI's LabelExcludeFromVeleroBackup on scratch PVCs: nothing in them is worth keeping."""
WAIT_SECONDS = 10.0
"""How often a scratch PVC that cannot be made yet is looked at again."""


def required(pvc: Obj) -> bool:
    return o.annotations(pvc).get(scratch.REQUIRES_SCRATCH) == "true"


@dataclass(frozen=True)
class Blocked:
    """The importer pod cannot start with scratch yet: why, for the Running condition."""

    reason: str
    message: str


def storage_class(pvc: Obj, config: EffectiveConfig) -> str | Blocked:
    """The scratch PVC's class ("" leaves it to the cluster's default)."""
    if config.scratch_class_missing:
        return Blocked(scratch.CLASS_NOT_FOUND_REASON,
                       f"scratch space storage class {config.scratch_class_missing!r} "
                       "(CDIConfig spec.scratchSpaceStorageClass) does not exist")
    if config.scratch_class:
        return config.scratch_class
    return str(o.get_path(pvc, "spec", "storageClassName") or "")


def size(pvc: Obj, config: EffectiveConfig, scratch_class: str) -> int:
    """Bytes to request: the target's usable space, inflated by the scratch class's overhead."""
    requested = sizes.parse_quantity(claims.requested_size(pvc) or "0")
    block = claims.volume_mode(pvc) == claims.BLOCK
    target_class = o.get_path(pvc, "spec", "storageClassName")
    target_overhead = 0.0 if block else float(config.overhead_for(target_class))
    usable = sizes.usable_size(requested, target_overhead)
    inflated = sizes.required_size(usable, float(config.overhead_for(scratch_class or None)))
    return max(sizes.MIB, sizes.round_up(inflated))


def build(pvc: Obj, config: EffectiveConfig, scratch_class: str) -> Obj:
    spec: Obj = {
        "accessModes": ["ReadWriteOnce"],
        "volumeMode": claims.FILESYSTEM,
        "resources": {"requests": {"storage": str(size(pvc, config, scratch_class))}},
    }
    if scratch_class:
        spec["storageClassName"] = scratch_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": scratch.scratch_name(o.name(pvc)),
            "namespace": o.namespace(pvc),
            "labels": {
                ann.LABEL_APP: ann.LABEL_APP_VALUE,
                VELERO_EXCLUDE: "true",
                **protocol.owner_labels(pvc, protocol.Kind.IMPORT),
            },
            "ownerReferences": [o.owner_ref(pvc)],
        },
        "spec": spec,
    }


def _ours(existing: Obj, pvc: Obj) -> bool:
    return o.is_owned_by(existing, pvc)


def plan(pvc: Obj, existing: Obj | None, pod: Obj | None, config: EffectiveConfig
         ) -> tuple[list[Step], Blocked | None]:
    """What the scratch PVC needs now, and what (if anything) keeps a new importer pod
    from being created. `existing`: the PVC named `<pvc>-scratch`, if any."""
    ns = o.namespace(pvc)
    if podstate.is_finished(pvc) or o.deleting(pvc):
        if existing is not None and _ours(existing, pvc) and not o.deleting(existing):
            delete: Action = Delete(kube.PVCS, ns, o.name(existing), o.uid(existing))
            return [delete], None
        return [], None
    if not required(pvc):
        return [], None
    if existing is not None:
        if not _ours(existing, pvc):
            return [], Blocked("ErrResourceExists",
                               f"scratch PVC {o.name(existing)} already exists and is not "
                               f"managed by {o.name(pvc)}")
        if o.deleting(existing) and pod is None:
            # The previous import's scratch is still going; a new pod must not mount it.
            return [Recheck(1.0)], Blocked(scratch.CONDITION_REASON,
                                           "waiting for the previous scratch PVC to go")
        return [], None
    cls = storage_class(pvc, config)
    if isinstance(cls, Blocked):
        return [Recheck(WAIT_SECONDS)], cls
    return [Create(kube.PVCS, ns, build(pvc, config, cls))], None
