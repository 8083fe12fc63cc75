"""A DataSource's status, and what a DataVolume's `sourceRef` to it resolves to.

A DataSource is a named pointer to a golden image: a PVC (`spec.source.pvc`), a
VolumeSnapshot (`spec.source.snapshot`), or another DataSource in the same namespace
(`spec.source.dataSource`, one level at most). Its `Ready` condition says whether the
image can be cloned now, with CDI's reasons and messages
(pkg/controller/datasource-controller.go); `status.source` mirrors the resolved source
while it is ready and is empty otherwise.

Pure: the reconciler reads the objects (the source PVC, the DataVolume of the same name
that fills it, the snapshot, the referenced DataSource) and writes the result to `/status`
only when it changed; the condition keeps its timestamps when nothing changed, so an
unchanged DataSource is never written.
"""

from __future__ import annotations

import copy

from controller.runtime import objects as o
from controller.runtime.objects import Obj

KIND_PVC = "PersistentVolumeClaim"
KIND_SNAPSHOT = "VolumeSnapshot"
READY = "Ready"

REASON_READY = "Ready"
MESSAGE_READY = "DataSource is ready to be consumed"
NO_SOURCE = "NoSource"
MESSAGE_NO_SOURCE = "No source PVC set"
NOT_FOUND = "NotFound"
MESSAGE_PVC_NOT_FOUND = "PVC not found"
MESSAGE_SNAPSHOT_NOT_FOUND = "Snapshot not found"
MESSAGE_DV_PHASE = "Import DataVolume phase {}"
SNAPSHOT_NOT_READY = "SnapshotNotReady"
MESSAGE_SNAPSHOT_NOT_READY = "Snapshot phase is not ready"
MAX_REFERENCE_DEPTH_REACHED = "MaxReferenceDepthReached"
MESSAGE_MAX_DEPTH = "DataSource reference chain exceeds maximum depth of 1"
SELF_REFERENCE = "SelfReference"
MESSAGE_SELF_REFERENCE = "DataSource cannot self-reference"
CROSS_NAMESPACE_REFERENCE = "CrossNamespaceReference"
MESSAGE_CROSS_NAMESPACE = "DataSource cannot reference a DataSource in another namespace"
MESSAGE_REFERENCE_NOT_FOUND = 'datasources.cdi.kubevirt.io "{}" not found'
"""The API server's NotFound text, which CDI puts in the condition."""
NOT_RECONCILED = "NotReconciled"
"""Ours: a DataSource the controller has not written a Ready condition to yet."""
MESSAGE_NOT_RECONCILED = "DataSource {}/{} has not been reconciled yet"

_SUCCEEDED = "Succeeded"


def _ref(ref: object, default_namespace: str) -> tuple[str, str] | None:
    if not isinstance(ref, dict) or not ref.get("name"):
        return None
    return str(ref.get("namespace") or default_namespace), str(ref["name"])


def _direct(source: Obj, default_namespace: str) -> tuple[str, str, str] | None:
    for key, kind in (("pvc", KIND_PVC), ("snapshot", KIND_SNAPSHOT)):
        ref = _ref(source.get(key), default_namespace)
        if ref is not None:
            return kind, *ref
    return None


def reference_of(ds: Obj) -> tuple[str, str] | None:
    """(namespace, name) of the DataSource this one points to, if it points to one."""
    return _ref(o.get_path(ds, "spec", "source", "dataSource"), o.namespace(ds))


def source_of(ds: Obj) -> tuple[str, str, str] | None:
    """(kind, namespace, name) of the image: `PersistentVolumeClaim` or `VolumeSnapshot`.

    The namespace defaults to the DataSource's. For a reference to another DataSource this
    is the resolved source in `status.source`, as CDI's DataVolume controller reads it.
    """
    spec_source = o.get_path(ds, "spec", "source")
    if not isinstance(spec_source, dict):
        return None
    if reference_of(ds) is not None:
        resolved = o.status(ds).get("source")
        return _direct(resolved, o.namespace(ds)) if isinstance(resolved, dict) else None
    return _direct(spec_source, o.namespace(ds))


def _resolve(ds: Obj, referenced: Obj | None) -> tuple[Obj | None, str, str]:
    """The DataSource whose `spec.source` is the image, or None and the reason why not."""
    ref = reference_of(ds)
    if ref is None:
        return ds, "", ""
    namespace, name = ref
    if namespace != o.namespace(ds):
        return None, CROSS_NAMESPACE_REFERENCE, MESSAGE_CROSS_NAMESPACE
    if name == o.name(ds):
        return None, SELF_REFERENCE, MESSAGE_SELF_REFERENCE
    if referenced is None or (o.name(referenced), o.namespace(referenced)) != (name, namespace):
        return None, NOT_FOUND, MESSAGE_REFERENCE_NOT_FOUND.format(name)
    if reference_of(referenced) is not None:
        return None, MAX_REFERENCE_DEPTH_REACHED, MESSAGE_MAX_DEPTH
    return referenced, "", ""


def _verdict(kind: str, *, pvc: Obj | None, dv: Obj | None,
             snapshot: Obj | None) -> tuple[bool, str, str]:
    if kind == KIND_SNAPSHOT:
        if snapshot is None:
            return False, NOT_FOUND, MESSAGE_SNAPSHOT_NOT_FOUND
        if o.status(snapshot).get("readyToUse") is True:
            return True, REASON_READY, MESSAGE_READY
        return False, SNAPSHOT_NOT_READY, MESSAGE_SNAPSHOT_NOT_READY
    if dv is not None:
        phase = str(o.status(dv).get("phase") or "")
        if phase != _SUCCEEDED:
            return False, phase, MESSAGE_DV_PHASE.format(phase)
    if pvc is None:
        return False, NOT_FOUND, MESSAGE_PVC_NOT_FOUND
    return True, REASON_READY, MESSAGE_READY


def _condition(prev: Obj | None, ready: bool, reason: str, message: str, now: str) -> Obj:
    """CDI's updateConditionState: the transition time moves only with the status."""
    text = "True" if ready else "False"
    if prev is None:
        return {"type": READY, "status": text, "reason": reason, "message": message,
                "lastTransitionTime": now, "lastHeartbeatTime": now}
    if (prev.get("status"), prev.get("reason", ""), prev.get("message", "")) == (
            text, reason, message):
        return copy.deepcopy(prev)
    moved = prev.get("status") != text
    return {
        "type": READY,
        "status": text,
        "reason": reason,
        "message": message,
        "lastTransitionTime": now if moved else prev.get("lastTransitionTime", now),
        "lastHeartbeatTime": now,
    }


def _conditions(old: Obj, ready: bool, reason: str, message: str, now: str) -> list[Obj]:
    """The old conditions with Ready updated in place (or appended); others kept as they are."""
    conditions = [copy.deepcopy(c) for c in old.get("conditions") or [] if isinstance(c, dict)]
    for i, c in enumerate(conditions):
        if c.get("type") == READY:
            conditions[i] = _condition(c, ready, reason, message, now)
            return conditions
    return [*conditions, _condition(None, ready, reason, message, now)]


def status(ds: Obj, *, pvc: Obj | None, dv: Obj | None, snapshot: Obj | None, now: str,
           referenced: Obj | None = None) -> Obj:
    """The DataSource's whole new status.

    `pvc`, `dv` (the DataVolume of the PVC's name, which fills it) and `snapshot` are the
    objects at the resolved source, None where absent; `referenced` is the DataSource that
    `spec.source.dataSource` names (None where it names none or it does not exist);
    `now` is an RFC 3339 timestamp. A DataVolume that has not succeeded makes the source
    not ready even when its PVC exists (the image is still being written).
    """
    resolved, reason, message = _resolve(ds, referenced)
    ready = False
    source: Obj = {}
    if resolved is not None:
        spec_source = o.get_path(resolved, "spec", "source")
        found = _direct(spec_source, o.namespace(resolved)) \
            if isinstance(spec_source, dict) else None
        if found is None:
            reason, message = NO_SOURCE, MESSAGE_NO_SOURCE
        else:
            ready, reason, message = _verdict(found[0], pvc=pvc, dv=dv, snapshot=snapshot)
            if ready:
                source = {k: copy.deepcopy(v) for k, v in spec_source.items()
                          if k in ("pvc", "snapshot")}
    new = {k: copy.deepcopy(v) for k, v in o.status(ds).items()
           if k not in ("conditions", "source")}
    new["conditions"] = _conditions(o.status(ds), ready, reason, message, now)
    new["source"] = source
    return new


def ready(ds: Obj) -> tuple[bool, str, str]:
    """(ready, reason, message) of the DataSource's Ready condition, for a waiting DataVolume."""
    for c in o.status(ds).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == READY:
            return (c.get("status") == "True", str(c.get("reason") or ""),
                    str(c.get("message") or ""))
    return False, NOT_RECONCILED, MESSAGE_NOT_RECONCILED.format(o.namespace(ds), o.name(ds))
