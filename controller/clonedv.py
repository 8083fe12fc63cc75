"""The DataVolume side of a clone: resolve the source, decide the target, create it, report.

A clone DataVolume (`source.pvc`, `source.snapshot`, `sourceRef`) gets its PVC only once
its source exists, its token (cross-namespace) is verified and its sizes fit
(`clonerequest.target`); until then it stays Pending and says why. The token is verified
at the first reconcile, before the source need exist, and its long-lived re-signing is
recorded on the DataVolume, so a clone waiting for its source outlives the short token.
The PVC then says what fills it (`cdi.kubevirt.io/cloneType`):
- `copy`: the clone transfer (Kind CLONE) takes the PVC over (its `k8s.io/CloneRequest`
  annotation) and the DataVolume reports that transfer's phases and progress;
- `csi-clone`: the PVC's dataSource is the source PVC; the storage fills it;
- `snapshot`: a VolumeSnapshot of the source first (labelled with the DataVolume's UID),
  then the PVC restored from it; the snapshot is deleted once the PVC is Bound.
Both wait, as the copy does, until the source is Bound, populated, not being deleted and
not used by a pod that can write to it (`sourcecheck.smart_clone_wait`; CDI's
CloneSourceInUse), before the storage is asked to read it.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from cdicontract import annotations as ann
from cdicontract import api, clone
from controller import clonerequest, clonesource, dvstatus, smartclone
from controller.clonesource import PVC, Source, Wait
from controller.runtime import kube
from controller.runtime import objects as o
from controller.runtime.objects import Obj
from controller.transfers.clone import smart, sourcecheck
from controller.transfers.importing.transfer import PHASES as IMPORT_PHASES
from controller.transfers.protocol import Transfer

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from controller.reconciler import Caches, Reconciler

log = logging.getLogger(__name__)
EXISTS = "ErrResourceExists"


def snapshot_labels(dv: Obj) -> dict[str, str]:
    return {ann.OWNER_UID_LABEL: o.uid(dv), ann.TRANSFER_LABEL: clone.TRANSFER_KIND}


def recorded_source(dv: Obj, pvc: Obj) -> Source:
    """The source a created target was made from (for messages when the DataSource has
    moved on since): its CloneRequest, else its dataSource."""
    request = o.annotations(pvc).get(clone.CLONE_REQUEST_ANNOTATION, "")
    if "/" in request:
        ns, name = request.split("/", 1)
        return Source(PVC, ns, name)
    ref = o.get_path(pvc, "spec", "dataSource") or {}
    kind = PVC if ref.get("kind") == PVC else clonesource.SNAPSHOT
    return Source(kind, o.namespace(dv), str(ref.get("name") or ""))


class CloneDataVolumes:
    def __init__(self, reconciler: Reconciler) -> None:
        self.r = reconciler
        self.key: rsa.RSAPrivateKey | None = None
        """The clone token key (helper D's controller/clonekey.ensure), set at startup."""
        self.now: datetime | None = None
        """Tests pin the token clock; None: the real time."""

    @property
    def caches(self) -> Caches:
        return self.r.caches

    def _transfer(self) -> Transfer | None:
        return next((t for t in self.r.transfers if str(t.kind) == clone.TRANSFER_KIND), None)

    def _source_object(self, src: Source) -> Obj | None:
        cache = self.caches.pvcs if src.kind == PVC else self.caches.snapshots
        return cache.get(src.namespace, src.name)

    def _world(self) -> clonerequest.World:
        return clonerequest.World(
            storage_classes=self.caches.storage_classes.items(),
            profiles={o.name(p): p for p in self.caches.profiles.items()},
            config=self.r.config(),
            snapshot_classes=self.caches.snapshot_classes.items(),
            csi_drivers=frozenset(o.name(d) for d in self.caches.csi_drivers.items()))

    async def _snapshot_content(self, src: Source, snapshot: Obj) -> Obj | None:
        """A snapshot source's VolumeSnapshotContent (its driver), read once before the
        target is created (contents are not watched)."""
        if src.kind == PVC:
            return None
        name = o.get_path(snapshot, "status", "boundVolumeSnapshotContentName")
        if not name:
            return None
        return await self.r.client.get(kube.VOLUMESNAPSHOTCONTENTS.path(None, str(name)))

    async def _pending(self, dv: Obj, reason: str, message: str, pvc: Obj | None = None
                       ) -> None:
        await self.r.report(dv, dvstatus.Observed(
            dv, pvc, None, False, self.r.clock(), claim_error=(reason, message)))

    async def datavolume(self, dv: Obj) -> float | None:
        ns, name = o.namespace(dv), o.name(dv)
        pvc = self.caches.pvcs.get(ns, name)
        if pvc is not None and not o.is_owned_by(pvc, dv):
            await self._pending(dv, EXISTS, f'Resource "{name}" already exists and is not '
                                             "managed by DataVolume")
            return None
        ref = clonesource.datasource_ref(dv)
        ds = self.caches.datasources.get(*ref) if ref is not None else None
        if pvc is None:
            authorized = await self._authorize(dv, ds)
            if authorized is None:
                return None
            dv = authorized
        src = clonesource.resolve(dv, ds)
        if pvc is None:
            if isinstance(src, Wait):
                await self._pending(dv, src.reason, src.message)
                return None
            made = await self._create_target(dv, src)
            if made is None or isinstance(made, float):
                return made
            pvc = made
        if isinstance(src, Wait):
            src = recorded_source(dv, pvc)
        return await self._status(dv, pvc, src)

    async def _authorize(self, dv: Obj, ds: Obj | None) -> Obj | None:
        """The DataVolume once its token is verified (with the long-lived re-signing
        recorded on it), whether or not its source exists yet; None when it may not
        clone (its status says why)."""
        named = clonerequest.token_source(dv, ds)
        if named is None:
            return dv
        verdict = clonerequest.authorize(dv, named, self.key, now=self.now)
        if isinstance(verdict, clonerequest.Refusal):
            await self._pending(dv, verdict.reason, verdict.message)
            return None
        if not verdict:
            return dv
        ns, name = o.namespace(dv), o.name(dv)
        updated = await self.r.client.merge_patch(
            kube.DATAVOLUMES.path(ns, name),
            {"metadata": {"annotations": verdict,
                          "resourceVersion": o.meta(dv).get("resourceVersion")}})
        self.caches.dvs.upsert(updated)
        log.info("recorded the extended clone token ns=%s dv=%s", ns, name)
        return updated

    async def _create_target(self, dv: Obj, src: Source) -> Obj | float | None:
        """Create the target PVC (or, for `snapshot`, first its VolumeSnapshot); None when
        the DataVolume has to wait (its status already says why), or the seconds until
        it looks again when nothing watched will tell it (a writer pod on the source)."""
        source_obj = self._source_object(src)
        if source_obj is None:
            await self._pending(dv, clonesource.CLONE_WITHOUT_SOURCE,
                                f"The source {src.word} {src.name} doesn't exist")
            return None
        tgt = clonerequest.target(dv, src, source_obj, self._world(), key=self.key,
                                  now=self.now,
                                  snapshot_content=await self._snapshot_content(src, source_obj))
        if isinstance(tgt, clonerequest.Refusal):
            await self._pending(dv, tgt.reason, tgt.message)
            return None
        if src.kind == PVC and self._takes_the_source(dv, src, tgt.strategy):
            wait = await self._source_wait(source_obj)
            if wait is not None:
                await self._pending(dv, wait.reason, wait.message)
                return wait.recheck
        if src.kind != PVC:
            body = smart.restore_claim(tgt.pvc, src.name,
                                       o.get_path(source_obj, "status", "restoreSize"))
        elif tgt.strategy == clone.Strategy.CSI_CLONE:
            body = smart.csi_clone_claim(tgt.pvc, src.name)
        elif tgt.strategy == clone.Strategy.SNAPSHOT:
            snap = await self._ensure_snapshot(dv, source_obj, tgt.snapshot_class)
            if snap is None or not smartclone.snapshot_ready(snap):
                await self.r.report(dv, dvstatus.Observed(
                    dv, None, None, False, self.r.clock(),
                    phases=smartclone.phases(src.namespace, src.name, o.namespace(dv),
                                             o.name(dv)),
                    fixed_phase=smartclone.SNAPSHOT_IN_PROGRESS))
                return None
            body = smart.restore_claim(tgt.pvc, o.name(snap),
                                       o.get_path(snap, "status", "restoreSize"))
        else:
            body = tgt.pvc
        pvc = await self._create_pvc(dv, body)
        if pvc is not None and tgt.fallback is not None:
            await self.r.event(dv, dvstatus.Event("Warning", *tgt.fallback))
        return pvc

    def _takes_the_source(self, dv: Obj, src: Source, strategy: clone.Strategy) -> bool:
        taken = self.caches.snapshots.get(src.namespace,
                                          smart.snapshot_name(o.uid(dv))) is not None
        return smartclone.reads_source_next(strategy, snapshot_taken=taken)

    async def _source_wait(self, source: Obj) -> sourcecheck.Wait | None:
        """As the copy waits before its source pod (CDI's IsSourceClaimReady): the source
        Bound, populated, not being deleted, and no pod of its namespace able to write to
        it (those pods are listed here: not watched)."""
        wait = sourcecheck.not_ready(source)
        if wait is not None:
            return wait
        listed = await self.r.client.list(kube.PODS.path(o.namespace(source)))
        return sourcecheck.smart_clone_wait(source, list(listed.get("items") or []))

    async def _create_pvc(self, dv: Obj, body: Obj) -> Obj | None:
        ns, name = o.namespace(dv), o.name(dv)
        made: Obj | None
        try:
            made = await self.r.client.create(kube.PVCS.path(ns), body)
            log.info("created clone target pvc ns=%s pvc=%s type=%s", ns, name,
                     o.annotations(body).get(clone.CLONE_TYPE_ANNOTATION, ""))
        except kube.Conflict:
            made = await self.r.client.get(kube.PVCS.path(ns, name))
        if made is not None:
            self.caches.pvcs.upsert(made)
        return made

    async def _ensure_snapshot(self, dv: Obj, source_pvc: Obj, snapshot_class: str
                               ) -> Obj | None:
        ns, name = o.namespace(source_pvc), smart.snapshot_name(o.uid(dv))
        snap = self.caches.snapshots.get(ns, name)
        if snap is not None:
            return snap
        body = smart.volume_snapshot(source_pvc, name, snapshot_class, snapshot_labels(dv))
        # Same namespace only (a smart clone never crosses namespaces): owned by the
        # DataVolume, so deleting it mid-clone leaves no snapshot behind.
        body["metadata"]["ownerReferences"] = [o.owner_ref(dv)]
        made: Obj | None
        try:
            made = await self.r.client.create(kube.VOLUMESNAPSHOTS.path(ns), body)
            log.info("created volumesnapshot ns=%s name=%s", ns, name)
        except kube.Conflict:
            made = await self.r.client.get(kube.VOLUMESNAPSHOTS.path(ns, name))
        if made is not None:
            self.caches.snapshots.upsert(made)
        return made

    async def _status(self, dv: Obj, pvc: Obj, src: Source) -> float | None:
        strategy = o.annotations(pvc).get(clone.CLONE_TYPE_ANNOTATION, str(clone.Strategy.COPY))
        wffc = self.r._wffc(pvc)
        if strategy != clone.Strategy.COPY:
            phase = smartclone.phase(clone.Strategy(strategy), from_snapshot=src.kind != PVC,
                                     pvc=pvc, wffc=wffc)
            if phase == api.PHASE_SUCCEEDED and strategy == clone.Strategy.SNAPSHOT:
                await self._delete_snapshot(dv, src)
            await self.r.report(dv, dvstatus.Observed(
                dv, pvc, None, wffc, self.r.clock(),
                phases=smartclone.phases(src.namespace, src.name, o.namespace(dv), o.name(dv)),
                fixed_phase=phase))
            return None
        transfer = self._transfer()
        pod = self.r._transfer_pod(transfer, pvc) if transfer else None
        progress = self.r.scrape(dv, transfer, pvc, pod)
        await self.r.report(dv, dvstatus.Observed(
            dv, pvc, pod, wffc, self.r.clock(), progress,
            phases=transfer.phases if transfer else IMPORT_PHASES))
        return None

    async def _delete_snapshot(self, dv: Obj, src: Source) -> None:
        name = smart.snapshot_name(o.uid(dv))
        if src.kind == PVC and self.caches.snapshots.get(src.namespace, name) is not None:
            await self.r.client.delete(kube.VOLUMESNAPSHOTS.path(src.namespace, name))
            self.caches.snapshots.forget(src.namespace, name)
            log.info("deleted volumesnapshot ns=%s name=%s", src.namespace, name)
