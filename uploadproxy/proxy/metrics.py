"""Prometheus metrics of the proxy, on the health port's /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "cdi_uploadproxy_requests", "Upload requests answered, by status code.",
            ["code"], registry=self.registry)
        self.bytes = Counter(
            "cdi_uploadproxy_bytes", "Body bytes passed on to upload servers.",
            registry=self.registry)
        self.in_flight = Gauge(
            "cdi_uploadproxy_uploads_in_flight", "Uploads being streamed right now.",
            registry=self.registry)
