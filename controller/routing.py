"""Which reconcile keys an object change concerns: a pure function of the object.

A DataVolume change queues the DataVolume; a PVC change queues the PVC, its owning
DataVolume and the clone targets waiting for it as their source; a transfer's pod or
Service is routed by its owner label (the DataVolume's UID, or the bare PVC's; a clone's
source pod in another namespace too), looked up in the caches, and, for objects made
before the labels, by its owner reference; StorageClass changes queue their StorageProfile and the
CDIConfig, as does the upload proxy's Service (whose address CDIConfig publishes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cdicontract import annotations as ann
from cdicontract import api
from controller.runtime import objects as o
from controller.runtime.manager import Key
from controller.runtime.objects import Obj

DV, PVC, CONFIG, PROFILE = "dv", "pvc", "config", "profile"
POD, SERVICE, STORAGECLASS, PROXY = "pod", "service", "storageclass", "proxy"
CONFIG_KEY: Key = (CONFIG, "", api.CDICONFIG_NAME)

Lookup = Callable[[str], Obj | None]


@dataclass(frozen=True)
class Owners:
    """Find a DataVolume or a PVC by UID (the caches' indexes)."""

    dv: Lookup = lambda _uid: None
    pvc: Lookup = lambda _uid: None
    clone_targets: Callable[[str], list[Obj]] = lambda _source: []
    """PVCs whose `k8s.io/CloneRequest` is `<ns>/<name>` (the PVC cache's index)."""


def _pvc_keys(pvc_ns: str, pvc: Obj | None, name: str) -> list[Key]:
    keys: list[Key] = [(PVC, pvc_ns, name)]
    owner = o.controller_owner(pvc) if pvc is not None else None
    if owner and owner.get("kind") == api.DATAVOLUME_KIND:
        keys.append((DV, pvc_ns, str(owner.get("name"))))
    return keys


def _transfer_object_keys(obj: Obj, owners: Owners) -> list[Key]:
    ns = o.namespace(obj)
    uid = o.labels(obj).get(ann.OWNER_UID_LABEL)
    if uid:
        dv = owners.dv(uid)
        if dv is not None:
            # A DataVolume's PVC shares its name.
            return [(PVC, o.namespace(dv), o.name(dv)), (DV, o.namespace(dv), o.name(dv))]
        pvc = owners.pvc(uid)
        if pvc is not None:
            return _pvc_keys(o.namespace(pvc), pvc, o.name(pvc))
    owner = o.controller_owner(obj)
    if owner and owner.get("kind") == "PersistentVolumeClaim":
        pvc_name = str(owner.get("name"))
        # DataVolume PVCs share the DataVolume's name; a missing DV key is a no-op.
        return [(PVC, ns, pvc_name), (DV, ns, pvc_name)]
    return []


def keys_for(kind: str, obj: Obj, owners: Owners | None = None) -> list[Key]:
    ns, name = o.namespace(obj), o.name(obj)
    if kind == DV:
        return [(DV, ns, name)]
    if kind == PVC:
        keys = _pvc_keys(ns, obj, name)
        # A clone waiting for this PVC as its source (to appear, be bound, be populated,
        # or to be let go) looks again.
        for target in (owners or Owners()).clone_targets(f"{ns}/{name}"):
            keys += [k for k in _pvc_keys(o.namespace(target), target, o.name(target))
                     if k not in keys]
        return keys
    if kind in (POD, SERVICE):
        return _transfer_object_keys(obj, owners or Owners())
    if kind == STORAGECLASS:
        return [(PROFILE, "", name), CONFIG_KEY]
    if kind == PROFILE:
        return [(PROFILE, "", name)]
    if kind in (CONFIG, PROXY):
        return [CONFIG_KEY]
    return []
