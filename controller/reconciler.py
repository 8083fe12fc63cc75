"""The reconcile functions: read the caches, plan with the transfer's pure protocol, act.

Each function takes only a name, re-reads everything, and is safe to run any number of
times (level-triggered): object names are deterministic, so a create from a stale cache
fails with 409 instead of making a duplicate, and every write goes into the cache at once.
Which transfer (import, upload, ...) a DataVolume or PVC is for is the first transfer
that claims it; everything after that is the transfer's plan and the executor.
Return value: seconds until the key should be looked at again, or None.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cdicontract import annotations as ann
from cdicontract import api, clone, upload
from cdicontract import scratch as cdiscratch
from controller import (
    boundcondition,
    cdiconfig,
    claims,
    clonesource,
    datasources,
    dvkeeper,
    dvstatus,
    profiles,
    routing,
    scrapemark,
)
from controller.cdiconfig import EffectiveConfig
from controller.clonedv import CloneDataVolumes
from controller.podview import view
from controller.progress import Target
from controller.runtime import kube
from controller.runtime import objects as o
from controller.runtime.actions import Patch
from controller.runtime.executor import Executor
from controller.runtime.informer import Informer
from controller.runtime.objects import Obj
from controller.runtime.poller import Poller
from controller.transfers import podstate, protocol
from controller.transfers.clone import sourcecheck
from controller.transfers.clone.transfer import CloneTransfer
from controller.transfers.importing.transfer import PHASES as IMPORT_PHASES
from controller.transfers.protocol import (
    ClaimView,
    CloneSeen,
    PvcEvent,
    Recheck,
    Transfer,
    Unsupported,
)

log = logging.getLogger(__name__)
IN_USE_RECHECK_SECONDS = 5.0
BOUND_EVENTS_RECHECK_SECONDS = 10.0
ProgressKey = tuple[str, str, str]
"""The DataVolume's work-queue key (`routing.DV`, namespace, name)."""


@dataclass
class Caches:
    dvs: Informer
    pvcs: Informer
    pods: Informer
    storage_classes: Informer
    profiles: Informer
    configs: Informer
    services: Informer
    """Transfers' Services (by TRANSFER_LABEL), indexed by owner UID."""
    proxy: Informer
    """The upload proxy's Service in the controller's namespace (zero or one object)."""
    datasources: Informer
    """Indexed by `clonesource.INDEX` (what each points at)."""
    snapshots: Informer
    """VolumeSnapshots (optional API), indexed by owner UID label."""
    snapshot_classes: Informer
    """VolumeSnapshotClasses (optional API)."""
    csi_drivers: Informer
    """CSIDrivers: a smart clone needs its class's provisioner to be one."""

    def all(self) -> list[Informer]:
        return [self.dvs, self.pvcs, self.pods, self.storage_classes, self.profiles,
                self.configs, self.services, self.proxy, self.datasources, self.snapshots,
                self.snapshot_classes, self.csi_drivers]

    def written(self) -> list[Informer]:
        """The caches the executor records its writes in (one per resource)."""
        return [self.dvs, self.pvcs, self.pods, self.services]


@dataclass(frozen=True)
class Settings:
    namespace: str = "cdi"
    progress_interval: float = 2.0
    component: str = "cdi-controller"
    instance: str = ""


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Reconciler:
    def __init__(self, client: kube.Kube, caches: Caches, settings: Settings,
                 progress: Poller[ProgressKey, Target], transfers: Sequence[Transfer], *,
                 clock: Callable[[], str] = now_rfc3339) -> None:
        self.client = client
        self.caches = caches
        self.settings = settings
        self.progress = progress
        self.mark_key: bytes | None = None
        """The key of `scrapemark` (loaded with the clone key): until then nothing is
        marked, and so nothing scraped."""
        self.transfers = tuple(transfers)
        self.executor = Executor(client, caches.written())
        self.clock = clock
        self.clones = CloneDataVolumes(self)
        self.keeper = dvkeeper.DataVolumeKeeper(self)

    # ---- shared reads -------------------------------------------------------------

    def config(self) -> EffectiveConfig:
        return cdiconfig.effective(self.caches.configs.get("", api.CDICONFIG_NAME),
                                   self.caches.storage_classes.items())

    def _wffc(self, pvc: Obj) -> bool:
        cls = o.get_path(pvc, "spec", "storageClassName")
        sc = self.caches.storage_classes.get("", str(cls)) if cls else None
        return bool(sc) and (sc or {}).get("volumeBindingMode") == "WaitForFirstConsumer"

    def _for_dv(self, dv: Obj) -> tuple[Transfer | None, dict[str, str] | Unsupported]:
        for t in self.transfers:
            anns = t.claim_annotations(dv)
            if anns is not None:
                return t, anns
        kind = protocol.source_type(dv) or "none"
        return None, Unsupported(kind, f"source type {kind!r} is not supported by this "
                                       "controller yet")

    def _for_pvc(self, pvc: Obj) -> Transfer | None:
        return next((t for t in self.transfers if t.targets(pvc)), None)

    def _owned(self, cache: Informer, pvc: Obj, kind: protocol.Kind) -> list[Obj]:
        ns = o.namespace(pvc)
        return [x for x in cache.by_label(protocol.owner_uid(pvc))
                if o.namespace(x) == ns and protocol.is_transfer_object(x, pvc, kind)]

    def _transfer_pod(self, t: Transfer, pvc: Obj) -> Obj | None:
        """The transfer's pod, found by owner label; a pod of the same name left by an
        earlier PVC is not this transfer's. Pods made before the labels: by owner ref."""
        name = t.pod_name(o.name(pvc))
        pod = next((p for p in self._owned(self.caches.pods, pvc, t.kind)
                    if o.name(p) == name), None)
        if pod is not None:
            return pod
        pod = self.caches.pods.get(o.namespace(pvc), name)
        if pod is not None and protocol.is_transfer_object(pod, pvc, t.kind):
            return pod
        return None

    async def event(self, involved: Obj, e: dvstatus.Event) -> None:
        now = self.clock()
        ns = o.namespace(involved)
        body: Obj = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{o.name(involved)}.{time.time_ns():x}", "namespace": ns},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion", ""), "kind": involved.get("kind", ""),
                "name": o.name(involved), "namespace": ns, "uid": o.uid(involved),
                "resourceVersion": o.meta(involved).get("resourceVersion", ""),
            },
            "reason": e.reason,
            "message": e.message[:1024],
            "type": e.type,
            "source": {"component": self.settings.component},
            "reportingComponent": self.settings.component,
            "reportingInstance": self.settings.instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self.client.create(kube.EVENTS.path(ns), body)
        except kube.ApiError as exc:  # events are best effort
            log.warning("event not recorded reason=%s error=%s", e.reason, exc)

    # ---- DataVolume ---------------------------------------------------------------

    async def _ensure_pvc(self, dv: Obj, claim_annotations: dict[str, str]
                          ) -> tuple[Obj | None, tuple[str, str] | None]:
        ns, name = o.namespace(dv), o.name(dv)
        pvc = self.caches.pvcs.get(ns, name)
        if pvc is not None:
            if not o.is_owned_by(pvc, dv):
                return None, ("ErrResourceExists",
                              f'Resource "{name}" already exists and is not managed by '
                              "DataVolume")
            return pvc, None
        cls = self.caches.storage_classes.items()
        profs = {o.name(p): p for p in self.caches.profiles.items()}
        spec = claims.claim_spec(dv, cls, profs, self.config())
        if isinstance(spec, claims.ClaimError):
            return None, (spec.reason, spec.message)
        body = claims.build_pvc(dv, spec, claim_annotations,
                                preallocation=self.config().preallocation)
        try:
            pvc = await self.client.create(kube.PVCS.path(ns), body)
            log.info("created pvc ns=%s pvc=%s", ns, name)
        except kube.Conflict:
            pvc = await self.client.get(kube.PVCS.path(ns, name))
            if pvc is None:
                return None, None
        self.caches.pvcs.upsert(pvc)
        return await self._ensure_pvc(dv, claim_annotations)

    async def datavolume(self, ns: str, name: str) -> float | None:
        dv = self.caches.dvs.get(ns, name)
        if dv is None or o.deleting(dv):
            self.progress.forget((routing.DV, ns, name))
            return None
        settled = await self.keeper.before_transfer(dv)
        if settled is not None:
            return settled.recheck
        dv = self.caches.dvs.get(ns, name) or dv
        if clonesource.is_clone(dv):
            return await self.clones.datavolume(dv)
        transfer, anns = self._for_dv(dv)
        unsupported = anns.message if isinstance(anns, Unsupported) else None
        pvc: Obj | None = None
        claim_error = None
        if transfer is not None and isinstance(anns, dict):
            pvc, claim_error = await self._ensure_pvc(dv, anns)
        pod = self._transfer_pod(transfer, pvc) if pvc is not None and transfer else None
        progress = self.scrape(dv, transfer, pvc, pod)
        observed = dvstatus.Observed(dv, pvc, pod, self._wffc(pvc) if pvc else False,
                                     self.clock(), progress, claim_error, unsupported,
                                     transfer.phases if transfer else IMPORT_PHASES)
        await self.report(dv, observed)
        return None

    async def report(self, dv: Obj, observed: dvstatus.Observed) -> dvstatus.Result:
        """Write the DataVolume's status computed from `observed` (if it changed) and
        record the events of the change."""
        result = dvstatus.compute(observed)
        if dvstatus.status_changed(o.status(dv), result.status):
            updated = await self.client.merge_patch(
                kube.DATAVOLUMES.path(o.namespace(dv), o.name(dv), "status"),
                {"status": result.status})
            self.caches.dvs.upsert(updated)
            for e in result.events:
                await self.event(dv, e)
        return result

    def scrape(self, dv: Obj, transfer: Transfer | None, pvc: Obj | None,
               pod: Obj | None) -> str | None:
        """The transfer pod's last scraped progress (`NN.NN%`), from the poller's cache.

        Only a running pod that the controller made (its mark on the PVC verifies) is
        polled; the poller asks for this DataVolume's reconcile when the value changes."""
        key = (routing.DV, o.namespace(dv), o.name(dv))
        if transfer is None or pvc is None or pod is None:
            self.progress.forget(key)
            return None
        v = view(pod)
        if not (v.running and v.ip) or not scrapemark.made_by_controller(
                self.mark_key, pvc, pod):
            self.progress.forget(key)
            return None
        return self.progress.track(key, Target(v.ip, transfer.phases.progress_port,
                                               transfer.phases.progress_metric, o.uid(pvc)))

    # ---- PVC (both APIs) ----------------------------------------------------------

    async def claim(self, ns: str, name: str) -> float | None:
        pvc = self.caches.pvcs.get(ns, name)
        if pvc is None:
            return None
        transfer = self._for_pvc(pvc)
        if transfer is None:
            return None
        pod = self._transfer_pod(transfer, pvc)
        if pod is None and self.caches.pods.get(ns, transfer.pod_name(name)) is not None:
            return 1.0  # the previous PVC's pod is still going away
        users: tuple[str, ...] = ()
        wffc = self._wffc(pvc)
        if (transfer.exclusive and pod is None and not podstate.is_finished(pvc)
                and not podstate.needs_consumer(pvc, wffc) and not o.deleting(pvc)):
            # Only before the transfer's pod exists, so this list is rare; the caches hold
            # only CDI's own pods.
            listed = await self.client.list(kube.PODS.path(ns))
            users = protocol.pods_using(pvc, list(listed.get("items") or []))
        clone_seen = (await self._clone_seen(transfer, pvc)
                      if isinstance(transfer, CloneTransfer) else None)
        seen = ClaimView(pvc, pod, wffc, self.config(),
                         tuple(self._owned(self.caches.services, pvc, transfer.kind)), users,
                         clone_seen,
                         scratch=self.caches.pvcs.get(ns, cdiscratch.scratch_name(name)))
        steps = transfer.plan(seen)
        created = await self.executor.apply(
            s for s in steps if not isinstance(s, PvcEvent | Recheck))
        await self._mark(pvc, transfer, created)
        for s in steps:
            if isinstance(s, PvcEvent):
                await self.event(pvc, dvstatus.Event(s.type, s.reason, s.message))
        rechecks = [s.seconds for s in steps if isinstance(s, Recheck)]
        # The users' pods are not watched: look again until they are gone.
        if users:
            rechecks.append(IN_USE_RECHECK_SECONDS)
        if not await self._bound_condition(pvc):
            rechecks.append(BOUND_EVENTS_RECHECK_SECONDS)
        return min(rechecks) if rechecks else None

    async def _bound_condition(self, pvc: Obj) -> bool:
        """Write CDI's bound condition annotations; False: the PVC is Pending and nothing
        was said about it yet (events are not watched: look again later)."""
        events: list[Obj] = []
        if boundcondition.needs_events(pvc):
            listed = await self.client.list(kube.EVENTS.path(o.namespace(pvc)), {
                "fieldSelector": boundcondition.event_selector(pvc)})
            events = list(listed.get("items") or [])
        changes = boundcondition.patch(pvc, events)
        if changes:
            await self.executor.apply([Patch(kube.PVCS, o.namespace(pvc), o.name(pvc),
                                             {"metadata": {"annotations": changes}})])
        return bool(events) or not boundcondition.needs_events(pvc)

    async def _mark(self, pvc: Obj, transfer: Transfer,
                    created: list[tuple[kube.Resource, Obj]]) -> None:
        """Record on the PVC the transfer pod this reconcile made (`scrapemark`)."""
        name = transfer.pod_name(o.name(pvc))
        for resource, obj in created:
            if (resource == kube.PODS and self.mark_key is not None
                    and o.namespace(obj) == o.namespace(pvc) and o.name(obj) == name):
                updated = await self.client.merge_patch(
                    kube.PVCS.path(o.namespace(pvc), o.name(pvc)),
                    {"metadata": {"annotations": scrapemark.mark(self.mark_key, pvc, obj)}})
                self.caches.pvcs.upsert(updated)

    def _source_pod(self, pvc: Obj, source_ns: str) -> Obj | None:
        """The clone's source pod: by owner label, transfer kind and name, in the source
        namespace (no owner reference can point across namespaces)."""
        name = clone.source_pod_name(o.uid(pvc))
        return next((p for p in self.caches.pods.by_label(protocol.owner_uid(pvc))
                     if o.namespace(p) == source_ns and o.name(p) == name
                     and o.labels(p).get(ann.TRANSFER_LABEL) == protocol.Kind.CLONE), None)

    async def _clone_seen(self, transfer: CloneTransfer, pvc: Obj) -> CloneSeen:
        ref = transfer.source_of(pvc)
        if ref is None:
            return CloneSeen()
        src_ns, src_name = ref
        source = self.caches.pvcs.get(src_ns, src_name)
        source_pod = self._source_pod(pvc, src_ns)
        writers: tuple[str, ...] = ()
        if (source is not None and source_pod is None and not podstate.is_finished(pvc)
                and not o.deleting(pvc) and not o.deleting(source)
                and transfer.may_read_source(pvc)):
            # Only before the source pod exists; the users' pods are not cached.
            listed = await self.client.list(kube.PODS.path(src_ns))
            writers = sourcecheck.writers(source, list(listed.get("items") or []),
                                          protocol.owner_uid(pvc))
        return CloneSeen(source, source_pod, writers)

    # ---- DataSource ---------------------------------------------------------------

    async def datasource(self, ns: str, name: str) -> float | None:
        """Keep a DataSource's status (Ready) current with what it points at."""
        ds = self.caches.datasources.get(ns, name)
        if ds is None or o.deleting(ds):
            return None
        pvc = dv = snapshot = None
        ref = datasources.reference_of(ds)
        referenced = self.caches.datasources.get(*ref) if ref is not None else None
        target = datasources.source_of(referenced if ref is not None and referenced else ds)
        if target is not None and (ref is None or referenced is not None):
            kind, src_ns, src_name = target
            if kind == clonesource.PVC:
                pvc = self.caches.pvcs.get(src_ns, src_name)
                dv = self.caches.dvs.get(src_ns, src_name)
            else:
                snapshot = self.caches.snapshots.get(src_ns, src_name)
        want = datasources.status(ds, pvc=pvc, dv=dv, snapshot=snapshot, now=self.clock(),
                                  referenced=referenced)
        if o.status(ds) != want:
            # Written whole (a merge patch would keep a stale `status.source` when it goes
            # back to {}); the resourceVersion makes a stale write a 409, retried.
            updated = await self.client.replace(
                kube.DATASOURCES.path(ns, name, "status"), {**ds, "status": want})
            self.caches.datasources.upsert(updated)
        return None

    # ---- cluster-scoped configuration ---------------------------------------------

    async def cdiconfig(self) -> float | None:
        current = self.caches.configs.get("", api.CDICONFIG_NAME)
        if current is None:
            try:
                current = await self.client.create(kube.CDICONFIGS.path(), {
                    "apiVersion": api.API_VERSION, "kind": api.CDICONFIG_KIND,
                    "metadata": {"name": api.CDICONFIG_NAME}, "spec": {}})
            except kube.Conflict:
                current = await self.client.get(kube.CDICONFIGS.path(None, api.CDICONFIG_NAME))
                if current is None:
                    return 1.0
            self.caches.configs.upsert(current)
        want = self.config().status()
        url = await self._upload_proxy_url()
        if url:
            want["uploadProxyURL"] = url
        if o.status(current) != want:
            updated = await self.client.merge_patch(
                kube.CDICONFIGS.path(None, api.CDICONFIG_NAME, "status"),
                {"status": {**{k: None for k in o.status(current)}, **want}})
            self.caches.configs.upsert(updated)
        return None

    async def _upload_proxy_url(self) -> str:
        override = self.config().upload_proxy_url
        service = self.caches.proxy.get(self.settings.namespace, upload.PROXY_SERVICE)
        nodes: list[Obj] = []
        if not override and service is not None and o.spec(service).get("type") == "NodePort":
            nodes = list((await self.client.list(kube.NODES.path())).get("items") or [])
        return cdiconfig.upload_proxy_url(override, service, nodes)

    async def storage_profile(self, name: str) -> float | None:
        sc = self.caches.storage_classes.get("", name)
        if sc is None:
            return None
        profile = self.caches.profiles.get("", name)
        if profile is None:
            try:
                profile = await self.client.create(kube.STORAGEPROFILES.path(), {
                    "apiVersion": api.API_VERSION, "kind": api.STORAGEPROFILE_KIND,
                    "metadata": {"name": name}, "spec": {}})
            except kube.Conflict:
                profile = await self.client.get(kube.STORAGEPROFILES.path(None, name))
                if profile is None:
                    return 1.0
            self.caches.profiles.upsert(profile)
        want = profiles.status(sc, profile)
        if o.status(profile) != want:
            updated = await self.client.merge_patch(
                kube.STORAGEPROFILES.path(None, name, "status"), {"status": want})
            self.caches.profiles.upsert(updated)
        return None
