"""The controller's own Prometheus metrics, in a registry of its own (no process globals)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class _Computed(Collector):
    """A gauge computed at scrape time (from a cache, say)."""

    def __init__(self, name: str, help_text: str, count: Callable[[], int]) -> None:
        self._name, self._help, self._count = name, help_text, count

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(self._name, self._help, value=self._count())


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.reconciles = Counter("cdi_controller_reconcile_total",
                                  "Reconciles by object kind and result",
                                  ["kind", "result"], registry=self.registry)
        self.latency = Histogram("cdi_controller_reconcile_duration_seconds",
                                 "Time spent in one reconcile", ["kind"],
                                 registry=self.registry,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5))
        self.leader = Gauge("cdi_controller_leader", "1 when this replica is the leader",
                            registry=self.registry)
        self.queue_depth = Gauge("cdi_controller_workqueue_depth", "Keys waiting",
                                 registry=self.registry)
        self.scrapes = Counter("cdi_controller_progress_scrapes_total",
                               "Scrapes of transfer pods' progress by outcome (ok, absent, "
                               "oversized, timeout, http_error, error)",
                               ["result"], registry=self.registry)

    def gauge_from(self, name: str, help_text: str, count: Callable[[], int]) -> None:
        self.registry.register(_Computed(name, help_text, count))
