"""`cdi-uploadserver`: the per-PVC upload server pod's entry point.

Serves one upload on UPLOAD_SERVER_PORT (mutual TLS, certificates from TLS_DIR) and its
progress on UPLOAD_SERVER_METRICS_PORT, then writes the termination report and exits:
0 when the image is written, 1 when the upload failed for good or was stopped (SIGTERM),
2 for a bad configuration (nothing served).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Sequence
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry

from cdicontract.reasons import Reason
from cdicontract.report import TerminationReport
from importer.config import MetricsAddr
from uploadproxy.server import cloneapp, tlsauth
from uploadproxy.server import config as server_config
from uploadproxy.server.app import make_app
from uploadproxy.server.cloneapp import make_clone_app
from uploadproxy.server.clonesession import CloneSession
from uploadproxy.server.config import ServerConfig
from uploadproxy.server.metrics import clone_progress_registry, progress_registry
from uploadproxy.server.session import UploadSession

log = logging.getLogger("cdi-uploadserver")

EXIT_USAGE = 2
EXIT_GRACE_SECONDS = 0.5
"""After the last answer, before the listener closes (lets the answer reach the proxy)."""


def write_report(path: str | None, report: TerminationReport) -> None:
    if not path:
        return
    try:
        with open(path, "w") as f:
            f.write(report.to_json())
    except OSError as e:
        log.warning("cannot write termination report path=%s error=%s", path, e.strerror)


class _Session(Protocol):
    """What `_run` needs of an upload or a clone session."""

    finished: asyncio.Event

    @property
    def final(self) -> TerminationReport | None: ...

    @property
    def exit_code(self) -> int: ...

    def terminate(self, message: str) -> None: ...

    def percent(self) -> float: ...


async def _run(config: ServerConfig, session: _Session, app: web.Application,
               registry: CollectorRegistry, *, what: str, stopper: str,
               **runner_args: Any) -> int:
    """Serve `app` until `session` ends (or SIGTERM), with its progress on the metrics
    port; write the termination report; return the exit code."""
    ssl_context = tlsauth.server_context(config.tls_cert, config.tls_key, config.client_ca)
    # In-flight handlers get a short while: a refused body is not waited for (lingering).
    runner = web.AppRunner(app, shutdown_timeout=2.0, access_log=None, **runner_args)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, ssl_context=ssl_context)
    await site.start()
    log.info("serving %s host=%s port=%d dest=%s", what, config.host, config.port, config.dest)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(
            signum, session.terminate, f"{stopper} stopped by signal {signum}"
        )
    with contextlib.ExitStack() as stack:
        if config.metrics_port is not None:
            from importer.metricsserver import serve_metrics  # HTTPS + self-signed cert

            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="cdi-upload-m-"))
            stack.enter_context(
                serve_metrics(registry, MetricsAddr(config.host, config.metrics_port), workdir)
            )
        try:
            await session.finished.wait()
            report = session.final
            assert report is not None
            write_report(config.termination_log, report)
            await asyncio.sleep(EXIT_GRACE_SECONDS)
        finally:
            await runner.cleanup()
    log.info("server exiting reason=%s", report.reason)
    return session.exit_code


async def serve(config: ServerConfig) -> int:
    """Serve until the upload ends (or SIGTERM); returns the exit code."""
    session = UploadSession(config)
    return await _run(config, session, make_app(config, session),
                      progress_registry(config.owner_uid, session.percent),
                      what="uploads", stopper="upload server")


async def serve_clone(config: ServerConfig) -> int:
    """Clone mode: receive the one cloner's stream, then report and exit."""
    session = CloneSession(config)
    return await _run(config, session, make_clone_app(config, session),
                      clone_progress_registry(config.owner_uid, session.percent),
                      what="a clone", stopper="clone", read_bufsize=cloneapp.READ_BUFSIZE)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=os.environ.get("UPLOADSERVER_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    args = sys.argv[1:] if argv is None else argv
    try:
        config = server_config.parse(args, os.environ)
    except server_config.ConfigError as e:
        print(f"cdi-uploadserver: {e}", file=sys.stderr)
        write_report(
            os.environ.get("UPLOADSERVER_TERMINATION_LOG") or None,
            TerminationReport(Reason.INVALID_CONFIG, str(e)),
        )
        return EXIT_USAGE
    try:
        return asyncio.run(serve_clone(config) if config.is_clone else serve(config))
    except (OSError, ValueError) as e:  # certificates unreadable, port taken
        message = f"cannot serve: {e}"
        print(f"cdi-uploadserver: {message}", file=sys.stderr)
        write_report(config.termination_log, TerminationReport(Reason.INVALID_CONFIG, message))
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
