"""Objects for the clone decision tests (on top of factories)."""

from __future__ import annotations

from typing import Any

from controller.cdiconfig import EffectiveConfig
from controller.clonerequest import World
from tests.controller import factories as f

Obj = dict[str, Any]


def source_pvc(name: str = "golden", ns: str = "ns", *, size: str = "1Gi",
               capacity: str | None = None, mode: str = "Filesystem", sc: str = "local",
               content_type: str | None = None) -> Obj:
    p = f.pvc(name, size=size, mode=mode, sc=sc)
    p["metadata"]["namespace"] = ns
    p["metadata"]["uid"] = f"{name}-uid"
    if capacity is not None:
        p["status"]["capacity"] = {"storage": capacity}
    if content_type is not None:
        p["metadata"]["annotations"]["cdi.kubevirt.io/storage.contentType"] = content_type
    return p


def clone_dv(name: str = "target", *, src_ns: str | None = None, src: str = "golden",
             storage: Obj | None = None, token: str | None = None, **spec: Any) -> Obj:
    ref: Obj = {"name": src}
    if src_ns is not None:
        ref["namespace"] = src_ns
    annotations = {"cdi.kubevirt.io/storage.clone.token": token} if token else {}
    dv = f.dv(name, source={"pvc": ref},
              storage=storage if storage is not None else {}, annotations=annotations,
              **spec)
    dv["metadata"]["uid"] = f"{name}-uid"
    return dv


def world(*, profile_strategy: str | None = None, block: bool = False,
          csi_drivers: frozenset[str] = frozenset(), snapshot_classes: tuple[Obj, ...] = (),
          overhead: str = "0.06", expansion: bool = False) -> World:
    sc = f.storage_class("local", default=True)
    if expansion:
        sc["allowVolumeExpansion"] = True
    status: Obj = {"claimPropertySets": [{"accessModes": ["ReadWriteOnce"],
                                          "volumeMode": "Block" if block else "Filesystem"}]}
    if profile_strategy:
        status["cloneStrategy"] = profile_strategy
    profile = {"metadata": {"name": "local"}, "spec": {}, "status": status}
    return World(storage_classes=[sc], profiles={"local": profile},
                 config=EffectiveConfig(global_overhead=overhead,
                                        class_overhead={"local": overhead}),
                 snapshot_classes=snapshot_classes, csi_drivers=csi_drivers)
