"""Honest progress: one percentage, fanned out to Prometheus, a tqdm bar and the final report.

The percentage only grows. Stages report what they know (bytes read of a known length,
qemu-img's own percentage) and the pipeline maps each stage onto its share of the whole.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from cdicontract import envvars as env


@dataclass
class ImportMetrics:
    """The importer's Prometheus collectors, in a registry of their own."""

    owner_uid: str
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    progress_metric: str = env.IMPORT_PROGRESS_METRIC
    """The percent counter's name: the upload server counts under its own
    (`cdicontract.upload.UPLOAD_PROGRESS_METRIC`), with the same label."""

    def __post_init__(self) -> None:
        self.progress = Counter(
            self.progress_metric.removesuffix("_total"),
            "Progress of the transfer in percent",
            ["ownerUID"],
            registry=self.registry,
        ).labels(ownerUID=self.owner_uid)
        self.bytes_read = Gauge(
            "cdi_importer_source_bytes",
            "Bytes read from the source (as served, before decompression)",
            ["ownerUID"],
            registry=self.registry,
        ).labels(ownerUID=self.owner_uid)
        self.bytes_total = Gauge(
            "cdi_importer_source_size_bytes",
            "Length of the source as announced by the server (0 if unknown)",
            ["ownerUID"],
            registry=self.registry,
        ).labels(ownerUID=self.owner_uid)
        self.throughput = Gauge(
            "cdi_importer_throughput_bytes_per_second",
            "Source bytes per second, averaged over the transfer",
            ["ownerUID"],
            registry=self.registry,
        ).labels(ownerUID=self.owner_uid)
        self.resumes = Gauge(
            "cdi_importer_resumes",
            "How often a dropped transfer was resumed",
            ["ownerUID"],
            registry=self.registry,
        ).labels(ownerUID=self.owner_uid)


class Progress:
    """Thread-safe, monotonic progress in percent (0..100)."""

    def __init__(
        self,
        metrics: ImportMetrics | None = None,
        bar_factory: Callable[[], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._metrics = metrics
        self._bar = bar_factory() if bar_factory else None
        self._clock = clock
        self._lock = threading.Lock()
        self._percent = 0.0
        self._start = clock()
        self.source_bytes = 0

    @property
    def percent(self) -> float:
        return self._percent

    def set(self, percent: float) -> None:
        percent = min(100.0, max(0.0, percent))
        with self._lock:
            delta = percent - self._percent
            if delta <= 0:
                return
            self._percent = percent
            if self._metrics:
                self._metrics.progress.inc(delta)
            if self._bar is not None:
                self._bar.update(delta)

    def stage(self, start: float, end: float) -> Callable[[float], None]:
        """A callback mapping a stage's own 0..100 onto [start, end] of the whole."""

        def report(stage_percent: float) -> None:
            self.set(start + (end - start) * min(100.0, max(0.0, stage_percent)) / 100.0)

        return report

    def add_source_bytes(self, n: int, total: int | None) -> None:
        with self._lock:
            self.source_bytes += n
            read = self.source_bytes
        if self._metrics:
            self._metrics.bytes_read.set(read)
            if total:
                self._metrics.bytes_total.set(total)
            elapsed = self._clock() - self._start
            if elapsed > 0:
                self._metrics.throughput.set(read / elapsed)

    def resumed(self, count: int) -> None:
        if self._metrics:
            self._metrics.resumes.set(count)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
