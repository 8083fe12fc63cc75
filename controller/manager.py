"""Wiring: informers feed a work queue, workers run the reconcilers, only while leader.

Routing is by key `(kind, namespace, name)`: a DataVolume change queues the DataVolume; a
PVC change queues the PVC and its owning DataVolume; an importer pod change queues its
PVC and that PVC's DataVolume; StorageClass changes queue their StorageProfile and the
CDIConfig (whose status lists the classes).
"""

from __future__ import annotations

import asyncio
import logging
import time

from cdicontract import annotations as ann
from cdicontract import api
from controller import kube
from controller import objects as o
from controller.informer import Handler, Informer
from controller.metrics import Metrics
from controller.objects import Obj
from controller.progress import Scraper
from controller.reconciler import Caches, Reconciler, Settings
from controller.workqueue import ShutDown, WorkQueue

log = logging.getLogger(__name__)

Key = tuple[str, str, str]
DV, PVC, CONFIG, PROFILE = "dv", "pvc", "config", "profile"
CONFIG_KEY: Key = (CONFIG, "", api.CDICONFIG_NAME)


def keys_for(kind: str, obj: Obj) -> list[Key]:
    """The reconcile keys an object change concerns (pure)."""
    ns, name = o.namespace(obj), o.name(obj)
    if kind == DV:
        return [(DV, ns, name)]
    if kind == PVC:
        keys: list[Key] = [(PVC, ns, name)]
        owner = o.controller_owner(obj)
        if owner and owner.get("kind") == api.DATAVOLUME_KIND:
            keys.append((DV, ns, str(owner.get("name"))))
        return keys
    if kind == "pod":
        owner = o.controller_owner(obj)
        if owner and owner.get("kind") == "PersistentVolumeClaim":
            pvc = str(owner.get("name"))
            # DataVolume PVCs share the DataVolume's name; a missing DV key is a no-op.
            return [(PVC, ns, pvc), (DV, ns, pvc)]
        return []
    if kind == "storageclass":
        return [(PROFILE, "", name), CONFIG_KEY]
    if kind == "profile":
        return [(PROFILE, "", name)]
    if kind == CONFIG:
        return [CONFIG_KEY]
    return []


class Controller:
    def __init__(self, client: kube.Kube, settings: Settings, metrics: Metrics, *,
                 workers: int = 4) -> None:
        self.client = client
        self.metrics = metrics
        self.queue: WorkQueue[Key] = WorkQueue()
        self.workers = workers

        def route(kind: str) -> Handler:
            def handler(old: Obj | None, new: Obj | None) -> None:
                for key in keys_for(kind, new if new is not None else old or {}):
                    self.queue.add(key)
            return handler

        self.caches = Caches(
            dvs=Informer(client, kube.DATAVOLUMES, route(DV), kind="DataVolume",
                         api_version=api.API_VERSION),
            pvcs=Informer(client, kube.PVCS, route(PVC), kind="PersistentVolumeClaim",
                          api_version="v1"),
            pods=Informer(client, kube.PODS, route("pod"), kind="Pod", api_version="v1",
                          label_selector=f"{ann.LABEL_APP}={ann.LABEL_APP_VALUE}"),
            storage_classes=Informer(client, kube.STORAGECLASSES, route("storageclass"),
                                     kind="StorageClass", api_version="storage.k8s.io/v1"),
            profiles=Informer(client, kube.STORAGEPROFILES, route("profile"),
                              kind=api.STORAGEPROFILE_KIND, api_version=api.API_VERSION),
            configs=Informer(client, kube.CDICONFIGS, route(CONFIG), kind=api.CDICONFIG_KIND,
                             api_version=api.API_VERSION),
        )
        self.scraper = Scraper()
        self.reconciler = Reconciler(client, self.caches, settings, self.scraper)
        metrics.pending_from(self.pending_count)

    def pending_count(self) -> int:
        return sum(1 for dv in self.caches.dvs.items()
                   if o.status(dv).get("phase", "") in ("", api.PHASE_PENDING))

    async def dispatch(self, key: Key) -> float | None:
        kind, ns, name = key
        if kind == DV:
            return await self.reconciler.datavolume(ns, name)
        if kind == PVC:
            return await self.reconciler.claim(ns, name)
        if kind == CONFIG:
            return await self.reconciler.cdiconfig()
        if kind == PROFILE:
            return await self.reconciler.storage_profile(name)
        return None

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            start = time.perf_counter()
            result = "ok"
            try:
                again = await self.dispatch(key)
                self.queue.forget(key)
                if again:
                    self.queue.add_after(key, again)
            except asyncio.CancelledError:
                raise
            except kube.Conflict:
                result = "conflict"
                self.queue.add_rate_limited(key)
            except Exception as exc:  # one bad object must not stop the others
                result = "error"
                delay = self.queue.add_rate_limited(key)
                log.warning("reconcile failed key=%s retry_in=%.2fs error=%s",
                            "/".join(key), delay, exc)
            finally:
                self.queue.done(key)
                self.metrics.reconciles.labels(key[0], result).inc()
                self.metrics.latency.labels(key[0]).observe(time.perf_counter() - start)
                self.metrics.queue_depth.set(len(self.queue))

    async def run(self) -> None:
        """Start informers, wait until every cache is synced, then reconcile forever."""
        tasks = [asyncio.create_task(i.run(), name=f"informer-{i.resource.plural}")
                 for i in self.caches.all()]
        try:
            await asyncio.gather(*(i.synced.wait() for i in self.caches.all()))
            log.info("caches synced datavolumes=%d pvcs=%d", len(self.caches.dvs.store),
                     len(self.caches.pvcs.store))
            self.queue.add(CONFIG_KEY)
            workers = [asyncio.create_task(self._worker(), name=f"worker-{n}")
                       for n in range(self.workers)]
            tasks += workers
            await asyncio.gather(*workers)
        finally:
            await self.queue.shutdown()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.scraper.close()
