"""DataVolumes waiting for a default storage class: CDI's `kubevirt_cdi_datavolume_pending`.

Pure. CDI's gauge (read by its `CDINoDefaultStorageClass` alert) counts the DataVolumes
in phase Pending or unset whose spec names no storage class, i.e. that wait for a default
(virt) class to be configured; the controller looks at them again when a StorageClass
changes.
"""

from __future__ import annotations

from cdicontract import api
from controller.runtime import objects as o
from controller.runtime.objects import Obj

METRIC = "kubevirt_cdi_datavolume_pending"
HELP = "Number of DataVolumes pending for default storage class to be configured"


def uses_default_class(dv: Obj) -> bool:
    """CDI's IsDataVolumeUsingDefaultStorageClass: no class in `spec.pvc`/`spec.storage`."""
    spec = o.spec(dv)
    claim = spec.get("pvc") if spec.get("pvc") is not None else spec.get("storage")
    return not isinstance(claim, dict) or claim.get("storageClassName") is None


def waiting(dv: Obj) -> bool:
    return (o.status(dv).get("phase") or api.PHASE_UNSET) in (
        api.PHASE_UNSET, api.PHASE_PENDING) and uses_default_class(dv)


def count(dvs: list[Obj]) -> int:
    return sum(1 for dv in dvs if waiting(dv))
