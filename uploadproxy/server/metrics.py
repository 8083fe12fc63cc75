"""The upload's progress as CDI-style Prometheus metrics (scraped by the controller).

`kubevirt_cdi_upload_progress_total{ownerUID}`: percent of the declared body received and
processed, as the importer's `kubevirt_cdi_import_progress_total`. Read at scrape time
from the session's current progress, so a restarted upload starts again from 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from cdicontract import upload as contract


class ProgressCollector(Collector):
    def __init__(self, owner_uid: str, percent: Callable[[], float]) -> None:
        self._owner_uid = owner_uid
        self._percent = percent

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            contract.UPLOAD_PROGRESS_METRIC.removesuffix("_total"),
            "Progress of the upload in percent",
            labels=["ownerUID"],
        )
        family.add_metric([self._owner_uid], round(self._percent(), 2))
        yield family


def progress_registry(owner_uid: str, percent: Callable[[], float]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProgressCollector(owner_uid, percent))
    return registry
