"""Whether a clone may read its source yet, and whether source and target fit: pure.

CDI's rules: the `k8s.io/CloneRequest` value is `<namespace>/<name>`; a source is cloned
only once it is Bound, populated (its own import, upload or clone has succeeded) and not
used by a pod that can write to it (a pod mounting it read-only is fine); a legacy
target must have at least the source's usable space (Filesystem overhead counted on
both sides) and, unless the content is `kubevirt`, the same volume mode and content type
(ValidateCanCloneSourceAndTargetSpec).

The waits (`not_ready`, `in_use`) are shared by every strategy: the host-assisted copy
checks them before its source pod, csi-clone before its target PVC and snapshot before
its VolumeSnapshot (CDI's IsSourceClaimReady: Bound, no writer, populated).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cdicontract import annotations as ann
from cdicontract import clone, sizes
from controller import claims
from controller.cdiconfig import EffectiveConfig
from controller.runtime import objects as o
from controller.runtime.objects import Obj

KUBEVIRT = "kubevirt"
SOURCE_IN_USE = "CloneSourceInUse"
"""CDI's reason, for every strategy (its clone planner's IsSourceClaimReady)."""
# Ours, where CDI only waits silently.
SOURCE_DELETING = "CloneSourceDeleting"
SOURCE_NOT_READY = "CloneSourceNotReady"
IN_USE_RECHECK_SECONDS = 5.0
"""The users' pods are not watched: a clone waiting for a writer looks again this often."""


@dataclass(frozen=True)
class Wait:
    """Why no clone may start from the source yet (a condition and an event)."""

    reason: str
    message: str
    event_type: str = "Warning"
    recheck: float | None = None
    """Seconds until the next look, when nothing watched will say it changed."""
_TRANSFER_ANNOTATIONS = (ann.IMPORT_ENDPOINT, ann.IMPORT_SOURCE, ann.UPLOAD_TARGET,
                         ann.CLONE_REQUEST)


def request(pvc: Obj) -> tuple[str, str] | None:
    """(source namespace, source name) of the target's CloneRequest; None: malformed.

    CDI splits on "/" and wants exactly two parts; both must be DNS names, which a
    slash-free non-empty string stands in for here (the API server checks the rest
    when the name is looked up)."""
    value = o.annotations(pvc).get(ann.CLONE_REQUEST, "")
    parts = value.split("/")
    if len(parts) != 2 or not all(parts):
        return None
    return parts[0], parts[1]


def content_type(pvc: Obj) -> str:
    return o.annotations(pvc).get(ann.CONTENT_TYPE) or KUBEVIRT


def bound(pvc: Obj) -> bool:
    return o.status(pvc).get("phase") == "Bound"


def populated(pvc: Obj) -> bool:
    """A source filled by CDI is ready only once its transfer succeeded (CDI's
    IsPopulated): its pod's record says Succeeded, or, for a clone made without a pod
    (csi-clone, snapshot), it is marked `cloneOf`. A PVC CDI never filled is ready as
    it is."""
    current = o.annotations(pvc)
    if not any(k in current for k in _TRANSFER_ANNOTATIONS):
        return True
    return (current.get(ann.POD_PHASE) == "Succeeded"
            or current.get(clone.CLONE_OF_ANNOTATION) == "true")


def _read_only_volumes(pod: Obj, claim: str) -> tuple[set[str], bool]:
    """The pod's volume names for `claim`, and whether every one is read-only there."""
    names: set[str] = set()
    read_only = True
    for v in o.spec(pod).get("volumes") or []:
        if o.get_path(v, "persistentVolumeClaim", "claimName") == claim:
            names.add(str(v.get("name")))
            read_only = read_only and bool(o.get_path(v, "persistentVolumeClaim", "readOnly"))
    return names, read_only


def _writes(pod: Obj, claim: str) -> bool:
    names, volume_read_only = _read_only_volumes(pod, claim)
    if not names:
        return False
    if volume_read_only:
        return False
    spec = o.spec(pod)
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or []),
                  *(spec.get("ephemeralContainers") or [])]
    for c in containers:
        for m in c.get("volumeMounts") or []:
            if m.get("name") in names and not m.get("readOnly"):
                return True
        # A raw block device has no read-only flag of its own: writable unless the
        # volume itself is read-only.
        if any(d.get("name") in names for d in c.get("volumeDevices") or []):
            return True
    return False


def writers(source: Obj, pods: list[Obj], own_uid: str = "") -> tuple[str, ...]:
    """Names of the live pods in the source's namespace that can write to it (CDI's
    GetPodsUsingPVCs with allowReadOnly), leaving out this clone's own source pod."""
    ns, claim = o.namespace(source), o.name(source)
    return tuple(sorted(
        o.name(p) for p in pods
        if o.namespace(p) == ns
        and not (own_uid and o.labels(p).get(ann.OWNER_UID_LABEL) == own_uid)
        and o.status(p).get("phase") not in ("Succeeded", "Failed")
        and not o.deleting(p)
        and _writes(p, claim)))


def _usable(pvc: Obj, size: int, config: EffectiveConfig) -> int:
    if claims.volume_mode(pvc) == claims.BLOCK:
        return size
    overhead = sizes.parse_overhead(config.overhead_for(o.get_path(pvc, "spec",
                                                                   "storageClassName")))
    return sizes.usable_size(size, overhead)


def _request(pvc: Obj) -> int | None:
    text = o.get_path(pvc, "spec", "resources", "requests", "storage")
    if text is None:
        return None
    try:
        return sizes.parse_quantity(text)
    except sizes.SizeError:
        return None


def incompatible(source: Obj, target: Obj, config: EffectiveConfig) -> str | None:
    """Why `target` cannot receive `source` (CDI's messages), or None when it can."""
    src_type, dst_type = content_type(source), content_type(target)
    if src_type != dst_type:
        return (f"source contentType ({src_type}) and target contentType ({dst_type}) "
                "do not match")
    src_mode, dst_mode = claims.volume_mode(source), claims.volume_mode(target)
    if src_mode != dst_mode and src_type != KUBEVIRT:
        return (f"source volumeMode ({src_mode}) and target volumeMode ({dst_mode}) do not "
                f"match, contentType ({src_type})")
    src_size, dst_size = _request(source), _request(target)
    if src_size is None or dst_size is None:
        return "source/target missing storage resource requests"
    if _usable(source, src_size, config) > _usable(target, dst_size, config):
        return "target resources requests storage size is smaller than the source"
    return None


def not_ready(source: Obj) -> Wait | None:
    """Why `source` cannot be read yet as a PVC: being deleted, not Bound, not populated."""
    where = f"{o.namespace(source)}/{o.name(source)}"
    if o.deleting(source):
        return Wait(SOURCE_DELETING,
                    f"The source pvc {where} is being deleted; no clone starts from it")
    if not bound(source):
        return Wait(SOURCE_NOT_READY, f"Waiting for the source pvc {where} to be bound",
                    "Normal")
    if not populated(source):
        return Wait(SOURCE_NOT_READY, f"Waiting for the source pvc {where} to be populated",
                    "Normal")
    return None


def in_use(source: Obj, writer_names: Sequence[str]) -> Wait | None:
    """CDI's CloneSourceInUse when pods can write to the source (`writers`)."""
    if not writer_names:
        return None
    users = ", ".join(f"{o.namespace(source)}/{p}" for p in writer_names)
    return Wait(SOURCE_IN_USE, f"pod {users} using PersistentVolumeClaim {o.name(source)}",
                recheck=IN_USE_RECHECK_SECONDS)


def smart_clone_wait(source: Obj, pods: Sequence[Obj]) -> Wait | None:
    """Why a csi-clone or a snapshot of `source` may not be taken yet: it is not ready,
    or one of `pods` (those of its namespace) can write to it."""
    return not_ready(source) or in_use(source, writers(source, list(pods)))
