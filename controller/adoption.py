"""Claim adoption: when a DataVolume may take a PVC that already exists, as CDI decides it.

Pure. CDI (`ClaimMayExistBeforeDataVolume`, `AllowClaimAdoption`, `pvcRequiresWork`):
a PVC of the DataVolume's name may exist before it when the PVC says it is populated for
it (`storage.populatedFor: <dv name>`), or when adoption is allowed: the DataVolume's
`allowClaimAdoption` annotation decides when present (a Go bool), else the CDIConfig
feature gate `DataVolumeClaimAdoption`; never for a PVC the controller made for this very
DataVolume (`createdForDataVolume: <dv uid>`). An adopted PVC gets the DataVolume as its
controller owner and needs no transfer: the DataVolume is `Succeeded`.
"""

from __future__ import annotations

from cdicontract import annotations as ann
from controller.runtime import objects as o
from controller.runtime.objects import Obj

ALLOW_CLAIM_ADOPTION = ann.PREFIX + "allowClaimAdoption"
POPULATED_FOR = ann.PREFIX + "storage.populatedFor"
CREATED_FOR_DATAVOLUME = ann.PREFIX + "createdForDataVolume"
FEATURE_GATE = "DataVolumeClaimAdoption"
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def _go_bool(text: str) -> bool:
    """strconv.ParseBool, an unparsable value counting as false as CDI's does."""
    return text in _TRUE


def populated_for(pvc: Obj, dv: Obj) -> bool:
    return o.annotations(pvc).get(POPULATED_FOR) == o.name(dv)


def may_adopt(pvc: Obj, dv: Obj, gate: bool) -> bool:
    if o.annotations(pvc).get(CREATED_FOR_DATAVOLUME) == o.uid(dv):
        return False
    asked = o.annotations(dv).get(ALLOW_CLAIM_ADOPTION)
    if asked is not None:
        return _go_bool(asked)
    return gate


def requires_work(pvc: Obj, dv: Obj, gate: bool) -> bool:
    """False when the PVC is already what the DataVolume asks for (nothing to transfer)."""
    return not (populated_for(pvc, dv) or may_adopt(pvc, dv, gate))


def admission_refusal(pvc: Obj, dv: Obj, gate: bool) -> str | None:
    """CDI's webhook: an existing PVC that the DataVolume may not take, and that no
    DataVolume controls, refuses the create; the message is CDI's."""
    if not requires_work(pvc, dv, gate):
        return None
    owner = o.controller_owner(pvc)
    if owner is None or owner.get("kind") != "DataVolume":
        return f"Destination PVC {o.namespace(pvc)}/{o.name(pvc)} already exists"
    return None


def adopted_owner_refs(pvc: Obj, dv: Obj) -> list[Obj] | None:
    """The PVC's owner references with `dv` as controller (SetControllerReference), or None
    when another object already controls it (CDI's adoption fails then)."""
    refs = [dict(r) for r in o.meta(pvc).get("ownerReferences") or []]
    current = o.controller_owner(pvc)
    if current is not None and current.get("uid") != o.uid(dv):
        return None
    refs = [r for r in refs if r.get("uid") != o.uid(dv)]
    return [*refs, o.owner_ref(dv)]
