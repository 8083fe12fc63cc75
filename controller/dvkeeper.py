"""What happens to a DataVolume before any transfer: claim adoption and garbage collection.

`DataVolumeKeeper.before_transfer(dv)` runs at the top of each DataVolume reconcile:
- garbage collection (`dvgc`): mark a new DataVolume while CDIConfig's TTL is on; delete a
  marked, succeeded one once the TTL has passed, after handing its PVC to its owners;
- claim adoption (`adoption`): a PVC of its name that needs no transfer (populated for it,
  or adoption allowed) is taken over (controller owner reference) and the DataVolume is
  `Succeeded` at once, as CDI's pvcRequiresWork/validatePVC do.
It returns `Settled` (with the seconds until a second look) when it settled the
DataVolume for this reconcile, else None (go on to the transfer).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from cdicontract import api
from controller import adoption, dvgc, dvstatus
from controller.runtime import kube
from controller.runtime import objects as o
from controller.runtime.objects import Obj

if TYPE_CHECKING:
    from collections.abc import Callable

    from controller.reconciler import Reconciler

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settled:
    recheck: float | None = None


class DataVolumeKeeper:
    def __init__(self, reconciler: Reconciler, *,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.r = reconciler
        self.now = now

    def _config(self) -> Obj | None:
        return self.r.caches.configs.get("", api.CDICONFIG_NAME)

    async def before_transfer(self, dv: Obj) -> Settled | None:
        ttl = dvgc.ttl_seconds(self._config())
        if dvgc.needs_mark(dv, ttl):
            dv = await self._patch_dv(dv, {"metadata": {"annotations": {
                dvgc.DELETE_AFTER_COMPLETION: "true"}}})
        pvc = self.r.caches.pvcs.get(o.namespace(dv), o.name(dv))
        if pvc is None or o.deleting(pvc):
            return None
        due = dvgc.due_in(dv, ttl, self.now())
        if due is not None:
            if due > 0:
                return Settled(due)
            await self._collect(dv, pvc)
            return Settled()
        gate = adoption.FEATURE_GATE in self.r.config().feature_gates
        if adoption.requires_work(pvc, dv, gate):
            return None
        if not o.is_owned_by(pvc, dv):
            refs = adoption.adopted_owner_refs(pvc, dv)
            if refs is None:
                return None  # another controller's PVC: the transfer path says so
            meta: Obj = {"ownerReferences": refs}
            if o.meta(pvc).get("resourceVersion"):
                meta["resourceVersion"] = o.meta(pvc)["resourceVersion"]
            pvc = await self.r.client.merge_patch(
                kube.PVCS.path(o.namespace(pvc), o.name(pvc)), {"metadata": meta})
            self.r.caches.pvcs.upsert(pvc)
            log.info("adopted pvc ns=%s pvc=%s", o.namespace(pvc), o.name(pvc))
        await self.r.report(dv, dvstatus.Observed(
            dv, pvc, None, False, self.r.clock(), fixed_phase=api.PHASE_SUCCEEDED))
        return Settled()

    async def _patch_dv(self, dv: Obj, patch: Obj) -> Obj:
        updated = await self.r.client.merge_patch(
            kube.DATAVOLUMES.path(o.namespace(dv), o.name(dv)), patch)
        self.r.caches.dvs.upsert(updated)
        return updated

    async def _collect(self, dv: Obj, pvc: Obj) -> None:
        ns, name = o.namespace(dv), o.name(dv)
        updated = await self.r.client.merge_patch(kube.PVCS.path(ns, name),
                                                  dvgc.detach_patch(pvc, dv))
        self.r.caches.pvcs.upsert(updated)
        await self.r.client.delete(kube.DATAVOLUMES.path(ns, name), uid=o.uid(dv))
        log.info("garbage-collected datavolume ns=%s dv=%s", ns, name)
