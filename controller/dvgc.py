"""DataVolume garbage collection as CDI 1.57-1.61 did it (removed from CDI in 1.62).

Pure. Off unless CDIConfig `spec.dataVolumeTTLSeconds` is 0 or more (CDI's default, -1,
is off). While it is on, a new DataVolume is marked `storage.deleteAfterCompletion:
"true"` unless its creator said "false" (CDI's mutating webhook; we mark it at its first
reconcile). A marked DataVolume that has been `Succeeded` (its Ready condition's
lastTransitionTime) for the TTL is deleted; first its PVC is detached: the DataVolume's
own owner references replace it on the PVC, `storage.populatedFor` is dropped and
`garbageCollected: "true"` added, so deleting the DataVolume leaves the PVC.
"""

from __future__ import annotations

from datetime import datetime

from cdicontract import annotations as ann
from cdicontract import api
from controller.adoption import POPULATED_FOR
from controller.runtime import objects as o
from controller.runtime.objects import Obj

DELETE_AFTER_COMPLETION = ann.PREFIX + "storage.deleteAfterCompletion"
GARBAGE_COLLECTED = ann.PREFIX + "garbageCollected"
DISABLED = -1


def ttl_seconds(cdiconfig: Obj | None) -> int:
    value = o.spec(cdiconfig).get("dataVolumeTTLSeconds") if cdiconfig else None
    return value if isinstance(value, int) and not isinstance(value, bool) else DISABLED


def needs_mark(dv: Obj, ttl: int) -> bool:
    """True when a new DataVolume must be marked for collection (GC on, not opted out)."""
    return (ttl >= 0 and not o.status(dv).get("phase")
            and o.annotations(dv).get(DELETE_AFTER_COMPLETION) not in ("true", "false"))


def _ready_since(dv: Obj) -> datetime | None:
    for c in o.status(dv).get("conditions") or []:
        if c.get("type") == "Ready" and c.get("status") == "True":
            text = str(c.get("lastTransitionTime") or "")
            try:
                return datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                return None
    return None


def due_in(dv: Obj, ttl: int, now: datetime) -> float | None:
    """Seconds until the DataVolume is collected (0 or less: now), None when never."""
    if ttl < 0 or o.status(dv).get("phase") != api.PHASE_SUCCEEDED:
        return None
    if o.annotations(dv).get(DELETE_AFTER_COMPLETION) != "true":
        return None
    since = _ready_since(dv)
    elapsed = (now - since).total_seconds() if since is not None else 0.0
    return ttl - elapsed


def detach_patch(pvc: Obj, dv: Obj) -> Obj:
    """The merge patch that hands the PVC to the DataVolume's owners before it goes."""
    refs = [r for r in o.meta(pvc).get("ownerReferences") or [] if r.get("uid") != o.uid(dv)]
    uids = {r.get("uid") for r in refs}
    refs += [r for r in o.meta(dv).get("ownerReferences") or [] if r.get("uid") not in uids]
    annotations: dict[str, str | None] = {GARBAGE_COLLECTED: "true"}
    if POPULATED_FOR in o.annotations(pvc):
        annotations[POPULATED_FOR] = None
    meta: Obj = {"ownerReferences": refs, "annotations": annotations}
    if o.meta(pvc).get("resourceVersion"):
        meta["resourceVersion"] = o.meta(pvc)["resourceVersion"]
    return {"metadata": meta}
