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

from cdicontract import clone
from cdicontract import upload as contract


class ProgressCollector(Collector):
    def __init__(
        self,
        owner_uid: str,
        percent: Callable[[], float],
        metric: str = contract.UPLOAD_PROGRESS_METRIC,
        what: str = "upload",
    ) -> None:
        self._owner_uid = owner_uid
        self._percent = percent
        self._metric = metric
        self._what = what

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            self._metric.removesuffix("_total"),
            f"Progress of the {self._what} in percent",
            labels=["ownerUID"],
        )
        family.add_metric([self._owner_uid], round(self._percent(), 2))
        yield family


def progress_registry(owner_uid: str, percent: Callable[[], float]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProgressCollector(owner_uid, percent))
    return registry


def clone_progress_registry(owner_uid: str, percent: Callable[[], float]) -> CollectorRegistry:
    """`kubevirt_cdi_clone_progress_total{ownerUID}`: percent of the source's logical size
    the target holds (a clone target's server, in clone mode)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProgressCollector(owner_uid, percent, clone.PROGRESS_METRIC, "clone"))
    return registry
