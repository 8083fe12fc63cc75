"""Which annotations travel from a DataVolume to its PVC, and from a PVC to its transfer
pods, as CDI passes them (pure).

DataVolume -> PVC (CDI's newPersistentVolumeClaim): every annotation of the DataVolume,
then `storage.pod.restarts: "0"`, the content type, the pod priority class from the
spec, `storage.preallocation.requested` (the spec's `preallocation`, else the
CDIConfig's) and `createdForDataVolume`. Not passed: what CDI drops too
(`storage.populatedFor`, the clone tokens, which the clone side sets itself) and the
annotations that are this controller's record of a transfer's outcome (a DataVolume must
not be able to say its import already succeeded).

PVC -> pod (CDI's CopyAllowedAnnotations): only the network, sidecar and priority class
annotations; the sidecar opt-outs default to CDI's values, so the
transfer pods never get an Istio or Linkerd sidecar unless the DataVolume/PVC asks.
"""

from __future__ import annotations

from collections.abc import Mapping

from cdicontract import annotations as ann
from cdicontract import clone
from controller.runtime import objects as o
from controller.runtime.objects import Obj

CREATED_FOR_DATAVOLUME = ann.PREFIX + "createdForDataVolume"

NOT_PASSED = frozenset({
    ann.POPULATED_FOR,
    clone.TOKEN_ANNOTATION,
    clone.EXTENDED_TOKEN_ANNOTATION,
    # The outcome record (podstate): written only by the controller.
    ann.IMPORT_POD_NAME,
    ann.UPLOAD_POD_NAME,
    ann.POD_PHASE,
    ann.POD_READY,
    ann.POD_RESTARTS,
    ann.CONDITION_RUNNING,
    ann.CONDITION_RUNNING_REASON,
    ann.CONDITION_RUNNING_MESSAGE,
    ann.CONDITION_BOUND,
    ann.CONDITION_BOUND_REASON,
    ann.CONDITION_BOUND_MESSAGE,
    ann.PREALLOCATION_APPLIED,
    clone.CLONE_OF_ANNOTATION,
})

POD_ANNOTATIONS: Mapping[str, str] = {
    ann.POD_NETWORK: "",
    ann.POD_MULTUS_DEFAULT_NETWORK: "",
    ann.POD_SIDECAR_ISTIO: ann.POD_SIDECAR_ISTIO_DEFAULT,
    ann.POD_SIDECAR_LINKERD: ann.POD_SIDECAR_LINKERD_DEFAULT,
    ann.PRIORITY_CLASS_NAME: "",
}
"""CDI's allowedAnnotations (less the pod service account, which this controller does
not support): key -> value when the source has none ("" = leave out)."""


def claim_annotations(dv: Obj, preallocation_default: bool) -> dict[str, str]:
    """The annotations a DataVolume's PVC starts with (before the transfer's own)."""
    spec = o.spec(dv)
    out = {k: v for k, v in o.annotations(dv).items() if k not in NOT_PASSED}
    out[ann.POD_RESTARTS] = "0"
    out[ann.CONTENT_TYPE] = str(spec.get("contentType") or "kubevirt")
    if spec.get("priorityClassName"):
        out[ann.PRIORITY_CLASS_NAME] = str(spec["priorityClassName"])
    prealloc = spec.get("preallocation")
    if not isinstance(prealloc, bool):
        prealloc = preallocation_default
    out[ann.PREALLOCATION_REQUESTED] = "true" if prealloc else "false"
    if o.uid(dv):
        out[CREATED_FOR_DATAVOLUME] = o.uid(dv)
    return out


def pod_annotations(source: Obj) -> dict[str, str]:
    """The annotations a transfer pod takes from `source` (its PVC, or a clone's target)."""
    have = o.annotations(source)
    out: dict[str, str] = {}
    for key, default in POD_ANNOTATIONS.items():
        value = have.get(key, default)
        if value:
            out[key] = value
    legacy = priority_class(source)
    if legacy and ann.PRIORITY_CLASS_NAME not in out:
        out[ann.PRIORITY_CLASS_NAME] = legacy
    return out


def priority_class(pvc: Obj) -> str | None:
    """The priority class of the PVC's transfer pods: CDI's annotation, else the key
    earlier versions of this controller wrote."""
    a = o.annotations(pvc)
    return a.get(ann.PRIORITY_CLASS_NAME) or a.get(ann.LEGACY_PRIORITY_CLASS_NAME) or None
