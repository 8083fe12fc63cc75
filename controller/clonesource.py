"""Which volume a clone DataVolume copies: `source.pvc`, `source.snapshot`, or what the
DataSource named by `sourceRef` points at. Pure.

A `sourceRef` DataSource that does not exist or is not Ready makes the DataVolume wait
(`Wait`), and it proceeds when the DataSource's status changes (the DataVolume is found
again through `index_keys`). The same keys index DataSources by what they point at, so a
PVC or VolumeSnapshot change reaches both.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdicontract import clonetoken
from controller import datasources, routing
from controller.runtime import objects as o
from controller.runtime.objects import Obj
from controller.transfers.protocol import source_type

PVC = clonetoken.KIND_PVC
SNAPSHOT = clonetoken.KIND_SNAPSHOT
DATASOURCE = "DataSource"
CLONE_SOURCE_TYPES = ("pvc", "snapshot", "sourceRef")
INDEX = "clone-source"
"""The informer index (DataVolumes and DataSources) by `key(kind, ns, name)` of their source."""

CLONE_WITHOUT_SOURCE = "CloneWithoutSource"
DATASOURCE_NOT_READY = "DataSourceNotReady"


@dataclass(frozen=True)
class Source:
    kind: str
    """PVC ("PersistentVolumeClaim") or SNAPSHOT ("VolumeSnapshot")."""
    namespace: str
    name: str

    @property
    def word(self) -> str:
        """How CDI's messages name the kind ("pvc", "snapshot")."""
        return "pvc" if self.kind == PVC else "snapshot"


@dataclass(frozen=True)
class Wait:
    """The DataVolume cannot start yet; reason and message for its conditions/events."""

    reason: str
    message: str


key = routing.source_key


def is_clone(dv: Obj) -> bool:
    return source_type(dv) in CLONE_SOURCE_TYPES


def datasource_ref(dv: Obj) -> tuple[str, str] | None:
    """(namespace, name) of the DataSource a `sourceRef` DataVolume names."""
    ref = o.get_path(dv, "spec", "sourceRef")
    if not isinstance(ref, dict) or ref.get("kind") != DATASOURCE or not ref.get("name"):
        return None
    return str(ref.get("namespace") or o.namespace(dv)), str(ref["name"])


def direct(dv: Obj) -> Source | None:
    """The source written on the DataVolume itself (`source.pvc` / `source.snapshot`)."""
    for field, kind in (("pvc", PVC), ("snapshot", SNAPSHOT)):
        ref = o.get_path(dv, "spec", "source", field)
        if isinstance(ref, dict) and ref.get("name"):
            return Source(kind, str(ref.get("namespace") or o.namespace(dv)), str(ref["name"]))
    return None


def resolve(dv: Obj, datasource: Obj | None) -> Source | Wait:
    """The DataVolume's source; `datasource` is the cached DataSource its sourceRef names."""
    src = direct(dv)
    if src is not None:
        return src
    ref = datasource_ref(dv)
    if ref is None:
        return Wait(CLONE_WITHOUT_SOURCE, "sourceRef must name a DataSource")
    ns, name = ref
    if datasource is None:
        return Wait(CLONE_WITHOUT_SOURCE, f"The source datasource {ns}/{name} doesn't exist")
    ready, reason, message = datasources.ready(datasource)
    if not ready:
        why = message or reason or "no Ready condition yet"
        return Wait(DATASOURCE_NOT_READY, f"DataSource {ns}/{name} is not ready: {why}")
    target = datasources.source_of(datasource)
    if target is None:
        return Wait(DATASOURCE_NOT_READY, f"DataSource {ns}/{name} has no source")
    kind, src_ns, src_name = target
    return Source(kind, src_ns, src_name)


def dv_index_keys(dv: Obj) -> list[str]:
    """What a DataVolume waits on: its direct source, or its DataSource."""
    src = direct(dv)
    if src is not None:
        return [key(src.kind, src.namespace, src.name)]
    ref = datasource_ref(dv)
    return [key(DATASOURCE, *ref)] if ref is not None else []


def datasource_index_keys(ds: Obj) -> list[str]:
    """What a DataSource's status depends on: its PVC (and the DataVolume of the same
    name, which shares the key), its VolumeSnapshot, or the DataSource it refers to."""
    ref = datasources.reference_of(ds)
    if ref is not None:
        return [key(DATASOURCE, *ref)]
    target = datasources.source_of(ds)
    return [key(*target)] if target is not None else []
