"""Which reconcile keys an object change concerns: a pure function of the object.

A DataVolume change queues the DataVolume; a PVC change queues the PVC, its owning
DataVolume and the clone targets waiting for it as their source; a transfer's pod or
Service is routed by its owner label (the DataVolume's UID, or the bare PVC's; a clone's
source pod in another namespace too), looked up in the caches, and, for objects made
before the labels, by its owner reference; StorageClass changes queue their
StorageProfile and the CDIConfig, as does the upload proxy's Service (whose address
CDIConfig publishes).
Clones: a PVC, DataVolume, VolumeSnapshot or DataSource change also queues the
DataVolumes and DataSources that depend on it (`Owners.dependents`, the caches' source
indexes), so a DataVolume waiting for its source or its DataSource proceeds when it
appears; a smart clone's VolumeSnapshot reaches its DataVolume by owner label.
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
DATASOURCE, SNAPSHOT = "datasource", "snapshot"
PVC_KIND, SNAPSHOT_KIND, DATASOURCE_KIND = "PersistentVolumeClaim", "VolumeSnapshot", "DataSource"
CONFIG_KEY: Key = (CONFIG, "", api.CDICONFIG_NAME)

Lookup = Callable[[str], Obj | None]
Dependents = Callable[[str], list[Key]]
"""A clone-source key (`clonesource.key`) -> the DataVolume and DataSource keys that
depend on it (the caches' source indexes)."""


@dataclass(frozen=True)
class Owners:
    """Find a DataVolume or a PVC by UID (the caches' indexes)."""

    dv: Lookup = lambda _uid: None
    pvc: Lookup = lambda _uid: None
    dependents: Dependents = lambda _key: []
    clone_targets: Callable[[str], list[Obj]] = lambda _source: []
    """PVCs whose `k8s.io/CloneRequest` is `<ns>/<name>` (the PVC cache's index)."""
    default_class_waiters: Callable[[], list[Key]] = lambda: []
    """DataVolumes waiting for a default StorageClass (queued when a class changes)."""


def source_key(kind: str, namespace: str, name: str) -> str:
    """The same key as `clonesource.key` (kept here so routing stays a leaf module)."""
    return f"{kind}/{namespace}/{name}"


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


def _snapshot_keys(obj: Obj, owners: Owners) -> list[Key]:
    ns, name = o.namespace(obj), o.name(obj)
    keys = owners.dependents(source_key(SNAPSHOT_KIND, ns, name))
    uid = o.labels(obj).get(ann.OWNER_UID_LABEL)
    dv = owners.dv(uid) if uid else None
    if dv is not None:  # a smart clone's temporary snapshot
        keys.append((DV, o.namespace(dv), o.name(dv)))
    return keys


def keys_for(kind: str, obj: Obj, owners: Owners | None = None) -> list[Key]:
    ns, name = o.namespace(obj), o.name(obj)
    owners = owners or Owners()
    if kind == DV:
        # A DataVolume shares its PVC's key: DataSources of that PVC read its phase.
        return [(DV, ns, name), *owners.dependents(source_key(PVC_KIND, ns, name))]
    if kind == PVC:
        keys = _pvc_keys(ns, obj, name)
        # A clone waiting for this PVC as its source (to appear, be bound, be populated,
        # or to be let go) looks again.
        for target in owners.clone_targets(f"{ns}/{name}"):
            keys += [k for k in _pvc_keys(o.namespace(target), target, o.name(target))
                     if k not in keys]
        return [*keys, *(k for k in owners.dependents(source_key(PVC_KIND, ns, name))
                         if k not in keys)]
    if kind == DATASOURCE:
        return [(DATASOURCE, ns, name),
                *owners.dependents(source_key(DATASOURCE_KIND, ns, name))]
    if kind == SNAPSHOT:
        return _snapshot_keys(obj, owners)
    if kind in (POD, SERVICE):
        return _transfer_object_keys(obj, owners)
    if kind == STORAGECLASS:
        return [(PROFILE, "", name), CONFIG_KEY, *owners.default_class_waiters()]
    if kind == PROFILE:
        return [(PROFILE, "", name)]
    if kind in (CONFIG, PROXY):
        return [CONFIG_KEY]
    return []
