"""The PVC a DataVolume asks for: `spec.pvc` literally, or `spec.storage` with CDI's defaults.

Pure. `spec.storage` takes its class from the default virt class then the cluster default,
its access modes and volume mode from the class's StorageProfile, and in Filesystem mode
its request is inflated by the filesystem overhead so the image still fits.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from cdicontract import annotations as ann
from cdicontract import sizes
from controller import cdiconfig, propagation
from controller.cdiconfig import EffectiveConfig
from controller.runtime import objects as o
from controller.runtime.objects import Obj

FILESYSTEM = "Filesystem"
BLOCK = "Block"

NO_CLASS_MESSAGE = "PVC spec is missing accessMode and no storageClass to choose profile"


@dataclass(frozen=True)
class ClaimError:
    """The claim cannot be built; `reason` is a DataVolume event reason."""

    reason: str
    message: str


def _profile_properties(profile: Obj | None, modes: list[str] | None) -> tuple[list[str], str]:
    """Access modes and volume mode from the StorageProfile's first matching property set."""
    sets = o.get_path(profile, "status", "claimPropertySets") or []
    for ps in sets:
        ps_modes = list(ps.get("accessModes") or [])
        if modes is None or set(modes) <= set(ps_modes):
            return (modes or ps_modes or ["ReadWriteOnce"]), str(ps.get("volumeMode") or FILESYSTEM)
    return (modes or ["ReadWriteOnce"]), FILESYSTEM


def claim_spec(dv: Obj, storage_classes: list[Obj], profiles: dict[str, Obj],
               config: EffectiveConfig) -> Obj | ClaimError:
    spec = o.spec(dv)
    if spec.get("pvc") is not None and spec.get("storage") is not None:
        return ClaimError("ErrClaimNotValid", "spec.pvc and spec.storage are mutually exclusive")
    if spec.get("pvc") is not None:
        literal: Obj = copy.deepcopy(spec["pvc"])
        return literal
    storage = spec.get("storage")
    if storage is None:
        return ClaimError("ErrClaimNotValid", "either spec.pvc or spec.storage is required")
    out: Obj = copy.deepcopy(storage)
    cls = storage.get("storageClassName")
    if cls is None:
        cls = cdiconfig.default_class(storage_classes)
        if cls is not None:
            out["storageClassName"] = cls
    given_modes = storage.get("accessModes") or None
    if cls is None and given_modes is None:
        # CDI's ErrStorageClassNotFound: the DataVolume stays Pending, no PVC is made,
        # until a default class appears.
        return ClaimError("ErrClaimNotValid", NO_CLASS_MESSAGE)
    profile = profiles.get(cls) if cls else None
    modes, mode = _profile_properties(profile, given_modes)
    out["accessModes"] = modes
    if not storage.get("volumeMode"):
        out["volumeMode"] = mode
    size_text = o.get_path(storage, "resources", "requests", "storage")
    if size_text is None:
        return ClaimError("ErrClaimNotValid", "spec.storage.resources.requests.storage is "
                                              "required for this source")
    try:
        size = sizes.parse_quantity(size_text)
    except sizes.SizeError as exc:
        return ClaimError("ErrClaimNotValid", str(exc))
    if out["volumeMode"] == FILESYSTEM:
        overhead = sizes.parse_overhead(config.overhead_for(cls))
        size = sizes.required_size(size, overhead)
        out.setdefault("resources", {}).setdefault("requests", {})["storage"] = (
            sizes.format_quantity(size))
    return out


def build_pvc(dv: Obj, claim: Obj, import_annotations: dict[str, str], *,
              preallocation: bool = False) -> Obj:
    """The PVC object for `dv`: same name, owned by it, carrying the DataVolume's
    annotations as CDI passes them (`propagation`; `preallocation`: the CDIConfig's
    default) and the transfer's."""
    annotations = propagation.claim_annotations(dv, preallocation)
    annotations.update(import_annotations)
    # CDI's AnnCreatedForDataVolume: this DataVolume never "adopts" its own PVC.
    annotations[ann.PREFIX + "createdForDataVolume"] = o.uid(dv)
    labels = dict(o.labels(dv))
    labels[ann.LABEL_APP] = ann.LABEL_APP_VALUE
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": o.name(dv),
            "namespace": o.namespace(dv),
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [o.owner_ref(dv)],
        },
        "spec": claim,
    }


def volume_mode(pvc: Obj) -> str:
    return str(o.get_path(pvc, "spec", "volumeMode") or FILESYSTEM)


def requested_size(pvc: Obj) -> str:
    return str(o.get_path(pvc, "spec", "resources", "requests", "storage") or "")
