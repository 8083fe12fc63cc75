"""The reconcile functions: read the caches, decide with the pure modules, act, say when again.

Each function takes only a name, re-reads everything, and is safe to run any number of
times (level-triggered): object names are deterministic, so a create from a stale cache
fails with 409 instead of making a duplicate, and every write goes into the cache at once.
Return value: seconds until the key should be looked at again, or None.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from cdicontract import api
from controller import (
    cdiconfig,
    claims,
    dvstatus,
    importpod,
    importsource,
    importstate,
    kube,
    profiles,
)
from controller import objects as o
from controller.cdiconfig import EffectiveConfig
from controller.informer import Informer
from controller.objects import Obj
from controller.podview import view
from controller.progress import Scraper

log = logging.getLogger(__name__)


@dataclass
class Caches:
    dvs: Informer
    pvcs: Informer
    pods: Informer
    storage_classes: Informer
    profiles: Informer
    configs: Informer

    def all(self) -> list[Informer]:
        return [self.dvs, self.pvcs, self.pods, self.storage_classes, self.profiles,
                self.configs]


@dataclass(frozen=True)
class Settings:
    pod: importpod.PodSettings
    progress_interval: float = 2.0
    component: str = "cdi-controller"
    instance: str = ""


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Reconciler:
    def __init__(self, client: kube.Kube, caches: Caches, settings: Settings,
                 scraper: Scraper, clock: Callable[[], str] = now_rfc3339) -> None:
        self.client = client
        self.caches = caches
        self.settings = settings
        self.scraper = scraper
        self.clock = clock

    # ---- shared reads -------------------------------------------------------------

    def config(self) -> EffectiveConfig:
        return cdiconfig.effective(self.caches.configs.get("", api.CDICONFIG_NAME),
                                   self.caches.storage_classes.items())

    def _wffc(self, pvc: Obj) -> bool:
        cls = o.get_path(pvc, "spec", "storageClassName")
        sc = self.caches.storage_classes.get("", str(cls)) if cls else None
        return bool(sc) and (sc or {}).get("volumeBindingMode") == "WaitForFirstConsumer"

    def _importer_pod(self, pvc: Obj) -> Obj | None:
        pod = self.caches.pods.get(o.namespace(pvc), importpod.pod_name(o.name(pvc)))
        # A pod left by an earlier PVC of the same name is not this import's.
        return pod if pod is not None and o.is_owned_by(pod, pvc) else None

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

    async def _ensure_pvc(self, dv: Obj, import_annotations: dict[str, str]
                          ) -> tuple[Obj | None, tuple[str, str] | None]:
        ns, name = o.namespace(dv), o.name(dv)
        pvc = self.caches.pvcs.get(ns, name)
        if pvc is not None:
            if not o.is_owned_by(pvc, dv):
                return None, ("ErrResourceExists",
                              f"Resource {name} already exists and is not managed by "
                              "DataVolume")
            return pvc, None
        cls = self.caches.storage_classes.items()
        profs = {o.name(p): p for p in self.caches.profiles.items()}
        spec = claims.claim_spec(dv, cls, profs, self.config())
        if isinstance(spec, claims.ClaimError):
            return None, (spec.reason, spec.message)
        body = claims.build_pvc(dv, spec, import_annotations)
        try:
            pvc = await self.client.create(kube.PVCS.path(ns), body)
            log.info("created pvc ns=%s pvc=%s", ns, name)
        except kube.Conflict:
            pvc = await self.client.get(kube.PVCS.path(ns, name))
            if pvc is None:
                return None, None
        self.caches.pvcs.upsert(pvc)
        return await self._ensure_pvc(dv, import_annotations)

    async def datavolume(self, ns: str, name: str) -> float | None:
        dv = self.caches.dvs.get(ns, name)
        if dv is None or o.deleting(dv):
            return None
        anns = importsource.pvc_annotations(dv)
        unsupported = anns.message if isinstance(anns, importsource.Unsupported) else None
        pvc: Obj | None = None
        claim_error = None
        if unsupported is None and isinstance(anns, dict):
            pvc, claim_error = await self._ensure_pvc(dv, anns)
        pod = self._importer_pod(pvc) if pvc is not None else None
        progress = None
        if pod is not None and pvc is not None:
            v = view(pod)
            if v.running and v.ip:
                progress = await self.scraper.progress(v.ip, o.uid(pvc))
        observed = dvstatus.Observed(dv, pvc, pod, self._wffc(pvc) if pvc else False,
                                     self.clock(), progress, claim_error, unsupported)
        result = dvstatus.compute(observed)
        if dvstatus.status_changed(o.status(dv), result.status):
            updated = await self.client.merge_patch(
                kube.DATAVOLUMES.path(ns, name, "status"), {"status": result.status})
            self.caches.dvs.upsert(updated)
            for e in result.events:
                await self.event(dv, e)
        if result.phase == api.PHASE_IMPORT_IN_PROGRESS:
            return self.settings.progress_interval
        return None

    # ---- PVC (both APIs) ----------------------------------------------------------

    async def claim(self, ns: str, name: str) -> float | None:
        pvc = self.caches.pvcs.get(ns, name)
        if pvc is None:
            return None
        req = importsource.ImportRequest.from_pvc(pvc)
        if req is None:
            return None
        pod_name = importpod.pod_name(name)
        cached_pod = self.caches.pods.get(ns, pod_name)
        pod = self._importer_pod(pvc)
        if cached_pod is not None and pod is None:
            return 1.0  # the previous PVC's pod is still going away
        decision = importstate.decide(pvc, pod, pod_name, self._wffc(pvc))
        if decision.annotations:
            updated = await self.client.merge_patch(
                kube.PVCS.path(ns, name), {"metadata": {"annotations": decision.annotations}})
            self.caches.pvcs.upsert(updated)
        if decision.create_pod:
            body = importpod.build(pvc, req, self.config(), self.settings.pod)
            try:
                created = await self.client.create(kube.PODS.path(ns), body)
                self.caches.pods.upsert(created)
                log.info("created importer pod ns=%s pod=%s", ns, pod_name)
            except kube.Conflict:
                pass  # made by an earlier reconcile; the watch brings it
        if decision.delete_pod and pod is not None:
            await self.client.delete(kube.PODS.path(ns, pod_name), uid=o.uid(pod))
            log.info("deleted importer pod ns=%s pod=%s", ns, pod_name)
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
        if o.status(current) != want:
            updated = await self.client.merge_patch(
                kube.CDICONFIGS.path(None, api.CDICONFIG_NAME, "status"),
                {"status": {**{k: None for k in o.status(current)}, **want}})
            self.caches.configs.upsert(updated)
        return None

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
