"""The Prometheus endpoint of the importer, served over HTTPS like CDI's (port 8443)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, start_http_server

from importer.config import MetricsAddr
from importer.selfsigned import write_self_signed

log = logging.getLogger(__name__)


@contextlib.contextmanager
def serve_metrics(registry: CollectorRegistry, addr: MetricsAddr, workdir: str) -> Iterator[int]:
    """Serve `registry` at https://addr/metrics until the block ends; yields the bound port."""
    cert, key = write_self_signed(workdir)
    server, thread = start_http_server(
        addr.port, addr=addr.host, registry=registry, certfile=cert, keyfile=key
    )
    port = int(server.server_address[1])
    log.info("serving metrics addr=%s port=%d", addr.host, port)
    try:
        yield port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
