"""A StorageProfile's status: the claim properties that work for its StorageClass.

The user's `spec.claimPropertySets` win; otherwise known provisioners get what CDI knows
of them, and any other class Filesystem then Block with ReadWriteOnce (which every
provisioner supports), so `spec.storage` works on every class without configuration.
"""

from __future__ import annotations

from controller.runtime import objects as o
from controller.runtime.objects import Obj

_RWO_FS = {"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem"}
_RWO_BLOCK = {"accessModes": ["ReadWriteOnce"], "volumeMode": "Block"}
_RWX_BLOCK = {"accessModes": ["ReadWriteMany"], "volumeMode": "Block"}
_KNOWN: dict[str, list[Obj]] = {
    "kubernetes.io/no-provisioner": [_RWO_FS],
    "rancher.io/local-path": [_RWO_FS],
    "rbd.csi.ceph.com": [_RWX_BLOCK, _RWO_BLOCK, _RWO_FS],
    "hostpath.csi.kubevirt.io": [_RWO_FS],
}


def status(storage_class: Obj, profile: Obj) -> Obj:
    provisioner = str(storage_class.get("provisioner", ""))
    spec = o.spec(profile)
    sets = spec.get("claimPropertySets") or _KNOWN.get(provisioner) or [_RWO_FS, _RWO_BLOCK]
    out: Obj = {
        "storageClass": o.name(storage_class),
        "provisioner": provisioner,
        "claimPropertySets": sets,
        "cloneStrategy": spec.get("cloneStrategy") or "copy",
        "dataImportCronSourceFormat": spec.get("dataImportCronSourceFormat") or "pvc",
    }
    if spec.get("snapshotClass"):
        out["snapshotClass"] = spec["snapshotClass"]
    return out
