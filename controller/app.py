"""The controller's domain wired onto the runtime: caches, routing, transfers, reconcilers.

Informers: DataVolumes, PVCs, transfer pods (app label), transfer Services (transfer
label), StorageClasses, StorageProfiles, CDIConfig and the upload proxy's Service. Each
transfer kind is registered here once; the reconciler asks them in order.
"""

from __future__ import annotations

import asyncio

from cdicontract import annotations as ann
from cdicontract import api, clone, upload
from controller import clonekey, clonesource, pendingdvs, routing, scrapemark
from controller.progress import Fetcher, Target
from controller.reconciler import Caches, ProgressKey, Reconciler, Settings
from controller.runtime import kube
from controller.runtime import objects as o
from controller.runtime.informer import Informer
from controller.runtime.manager import Key, Manager
from controller.runtime.metrics import Metrics
from controller.runtime.poller import Poller
from controller.transfers.clone import objects as cloneobjects
from controller.transfers.clone.transfer import CloneTransfer
from controller.transfers.importing import pod as importpod
from controller.transfers.importing.transfer import ImportTransfer
from controller.transfers.protocol import Transfer
from controller.transfers.upload import authority
from controller.transfers.upload import objects as uploadobjects
from controller.transfers.upload.transfer import UploadTransfer


class Controller:
    def __init__(self, client: kube.Kube, settings: Settings, metrics: Metrics, *,
                 importer: importpod.PodSettings,
                 uploadserver: uploadobjects.PodSettings | None = None,
                 cloner: cloneobjects.SourcePodSettings | None = None,
                 workers: int = 4, scrape_concurrency: int = 8) -> None:
        self.client = client
        self.settings = settings
        self.manager = Manager(metrics, workers=workers)
        h = self.manager.handler
        self.caches = Caches(
            dvs=Informer(client, kube.DATAVOLUMES, h(routing.DV), kind="DataVolume",
                         api_version=api.API_VERSION,
                         indexers={clonesource.INDEX: clonesource.dv_index_keys}),
            pvcs=Informer(client, kube.PVCS, h(routing.PVC), kind="PersistentVolumeClaim",
                          api_version="v1", index_annotation=clone.CLONE_REQUEST_ANNOTATION),
            pods=Informer(client, kube.PODS, h(routing.POD), kind="Pod", api_version="v1",
                          label_selector=f"{ann.LABEL_APP}={ann.LABEL_APP_VALUE}",
                          index_label=ann.OWNER_UID_LABEL),
            storage_classes=Informer(client, kube.STORAGECLASSES, h(routing.STORAGECLASS),
                                     kind="StorageClass", api_version="storage.k8s.io/v1"),
            profiles=Informer(client, kube.STORAGEPROFILES, h(routing.PROFILE),
                              kind=api.STORAGEPROFILE_KIND, api_version=api.API_VERSION),
            configs=Informer(client, kube.CDICONFIGS, h(routing.CONFIG),
                             kind=api.CDICONFIG_KIND, api_version=api.API_VERSION),
            services=Informer(client, kube.SERVICES, h(routing.SERVICE), kind="Service",
                              api_version="v1", label_selector=ann.TRANSFER_LABEL,
                              index_label=ann.OWNER_UID_LABEL),
            proxy=Informer(client, kube.SERVICES, h(routing.PROXY), kind="Service",
                           api_version="v1", namespace=settings.namespace,
                           field_selector=f"metadata.name={upload.PROXY_SERVICE}"),
            datasources=Informer(client, kube.DATASOURCES, h(routing.DATASOURCE),
                                 kind="DataSource", api_version=api.API_VERSION,
                                 indexers={clonesource.INDEX:
                                           clonesource.datasource_index_keys}),
            snapshots=Informer(client, kube.VOLUMESNAPSHOTS, h(routing.SNAPSHOT),
                               kind="VolumeSnapshot",
                               api_version="snapshot.storage.k8s.io/v1",
                               index_label=ann.OWNER_UID_LABEL, optional=True),
            snapshot_classes=Informer(client, kube.VOLUMESNAPSHOTCLASSES, lambda _o, _n: None,
                                      kind="VolumeSnapshotClass",
                                      api_version="snapshot.storage.k8s.io/v1",
                                      optional=True),
            csi_drivers=Informer(client, kube.CSIDRIVERS, lambda _o, _n: None,
                                 kind="CSIDriver", api_version="storage.k8s.io/v1"),
        )
        owners = routing.Owners(dv=self.caches.dvs.by_uid, pvc=self.caches.pvcs.by_uid,
                                dependents=self.dependents,
                                clone_targets=self.caches.pvcs.by_annotation,
                                default_class_waiters=self.default_class_waiters)
        self.manager.route_with(lambda kind, obj: routing.keys_for(kind, obj, owners))
        self.uploads = UploadTransfer(uploadserver or uploadobjects.PodSettings())
        self.clones = CloneTransfer(uploadserver or uploadobjects.PodSettings(),
                                    cloner or cloneobjects.SourcePodSettings())
        self.transfers: list[Transfer] = [ImportTransfer(importer), self.uploads, self.clones]
        # Progress is scraped in the background, never in a reconcile: a pod that hangs
        # or floods its metrics endpoint costs one slot for one timeout, now and then.
        self.fetcher = Fetcher(count=lambda outcome: metrics.scrapes.labels(outcome).inc())
        self.progress: Poller[ProgressKey, Target] = Poller(
            self.fetcher, interval=settings.progress_interval,
            concurrency=scrape_concurrency, on_change=self.manager.queue.add)
        self.reconciler = Reconciler(client, self.caches, settings, self.progress,
                                     self.transfers)
        metrics.gauge_from(pendingdvs.METRIC, pendingdvs.HELP, self.pending_count)

    def dependents(self, source: str) -> list[Key]:
        """The DataVolumes and DataSources waiting on, or reading, clone source `source`."""
        return ([(routing.DV, o.namespace(d), o.name(d))
                 for d in self.caches.dvs.by_index(clonesource.INDEX, source)]
                + [(routing.DATASOURCE, o.namespace(d), o.name(d))
                   for d in self.caches.datasources.by_index(clonesource.INDEX, source)])

    def pending_count(self) -> int:
        return pendingdvs.count(self.caches.dvs.items())

    def default_class_waiters(self) -> list[Key]:
        """The DataVolumes a new default StorageClass may unblock."""
        return [(routing.DV, o.namespace(d), o.name(d)) for d in self.caches.dvs.items()
                if pendingdvs.waiting(d)]

    async def dispatch(self, key: Key) -> float | None:
        kind, ns, name = key
        if kind == routing.DV:
            return await self.reconciler.datavolume(ns, name)
        if kind == routing.PVC:
            return await self.reconciler.claim(ns, name)
        if kind == routing.CONFIG:
            return await self.reconciler.cdiconfig()
        if kind == routing.PROFILE:
            return await self.reconciler.storage_profile(name)
        if kind == routing.DATASOURCE:
            return await self.reconciler.datasource(ns, name)
        return None

    async def _load_authority(self) -> None:
        self.uploads.authority = await authority.ensure(self.client, self.settings.namespace)
        self.clones.authority = self.uploads.authority
        key = await clonekey.ensure(self.client, self.settings.namespace)
        self.clones.key = key
        self.reconciler.clones.key = key
        self.reconciler.mark_key = scrapemark.key_from(key)

    async def run(self) -> None:
        """Reconcile until cancelled (the leader only)."""
        poller = asyncio.create_task(self.progress.run(), name="progress-poller")
        try:
            await self.manager.run(self.caches.all(), self.dispatch,
                                   initial=[routing.CONFIG_KEY],
                                   on_synced=self._load_authority,
                                   on_stop=self.fetcher.close)
        finally:
            poller.cancel()
            await asyncio.gather(poller, return_exceptions=True)


