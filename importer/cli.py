"""`cdi-importer`: the importer pod's entry point and a plain CLI.

Exit codes: 0 imported (or, with a `ScratchSpaceRequired` report, stopped to be restarted
with a scratch volume, as CDI's importer exits); 1 failed, a retry may help; 2 bad usage or
configuration; 3 failed for good (checksum, unsafe or too large image, unsupported format).
The JSON termination report says the same with a precise `reason`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from types import FrameType

from cdicontract.reasons import Reason
from cdicontract.report import TerminationReport
from cdicontract.sourcekinds import SourceKind
from importer.config import ImporterConfig, default_termination_log, parse
from importer.errors import ImportFailure
from importer.pipeline import run_transfer
from importer.progress import ImportMetrics, Progress
from importer.redact import redact
from importer.sourcefactory import build_source

log = logging.getLogger("cdi-importer")

EXIT_OK = 0
EXIT_RETRY = 1
EXIT_USAGE = 2
EXIT_PERMANENT = 3


def _write_report(path: str | None, report: TerminationReport) -> None:
    if not path:
        return
    try:
        with open(path, "w") as f:
            f.write(report.to_json())
    except OSError as e:
        log.warning("cannot write termination report path=%s error=%s", path, e.strerror)


def _usage_report_path(args: Sequence[str]) -> str | None:
    """`--termination-log PATH` from a command line that did not parse (last one wins)."""
    path = None
    for i, arg in enumerate(args):
        if arg == "--termination-log" and i + 1 < len(args):
            path = args[i + 1]
        elif arg.startswith("--termination-log="):
            path = arg.partition("=")[2]
    return path or None


@contextlib.contextmanager
def _cancel_on_signals(cancel: threading.Event) -> Iterator[None]:
    """SIGTERM (pod deletion) and SIGINT stop the import; the pipeline cleans the target up."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        first = not cancel.is_set()
        cancel.set()
        if first:
            raise ImportFailure(Reason.CANCELLED, f"import cancelled by signal {signum}")

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _progress(config: ImporterConfig, metrics: ImportMetrics | None) -> Progress:
    bar_factory = None
    if config.progress_bar:
        from tqdm import tqdm

        def bar_factory() -> object:
            return tqdm(total=100.0, unit="%", bar_format="{l_bar}{bar}| {n:.1f}% [{elapsed}]")

    return Progress(metrics, bar_factory)


def run(config: ImporterConfig, cancel: threading.Event) -> TerminationReport:
    metrics = ImportMetrics(config.owner_uid) if config.metrics else None
    with contextlib.ExitStack() as stack:
        workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="cdi-importer-"))
        if metrics is not None and config.metrics is not None:
            from importer.metricsserver import serve_metrics  # HTTPS + cert: only when asked

            stack.enter_context(serve_metrics(metrics.registry, config.metrics, workdir))
        progress = _progress(config, metrics)
        stack.callback(progress.close)
        source = None
        if config.source is not SourceKind.BLANK:
            source = build_source(config, workdir)
            stack.callback(source.close)
        return run_transfer(source, None, config.transfer_spec(), progress, cancel)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=os.environ.get("IMPORTER_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    args = sys.argv[1:] if argv is None else argv
    try:
        config = parse(args, os.environ, isatty=sys.stderr.isatty())
    except ImportFailure as e:
        # A pod's configuration error must reach the controller like any failure, or the
        # DataVolume restarts forever without a word: the report goes where the command
        # line would have sent it, else to the kubelet's default termination path.
        print(f"cdi-importer: {e.message}", file=sys.stderr)
        report = TerminationReport(e.reason, e.message)
        _write_report(_usage_report_path(args) or default_termination_log(os.environ), report)
        return EXIT_USAGE

    if config.insecure_tls:
        # The user asked for it; one warning per request would drown the log.
        import urllib3

        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        log.warning("TLS verification is disabled for this import")
    cancel = threading.Event()
    try:
        with _cancel_on_signals(cancel):
            report = run(config, cancel)
    except ImportFailure as e:
        message = redact(e.message, config.secrets())
        report = TerminationReport(reason=e.reason, message=message)
        print(f"cdi-importer: {e.reason}: {message}", file=sys.stderr)
        _write_report(config.termination_log, report)
        if e.reason is Reason.INVALID_CONFIG:
            return EXIT_USAGE
        if e.reason is Reason.SCRATCH_SPACE_REQUIRED:
            # As CDI's importer: exit 0 so the kubelet does not restart it in place; the
            # controller reads the report and starts a pod with a scratch volume.
            return EXIT_OK
        return EXIT_PERMANENT if e.permanent else EXIT_RETRY
    except Exception as e:  # a bug: report it without leaking secrets, keep the traceback in logs
        log.exception("unexpected failure")
        message = redact(f"unexpected {type(e).__name__}: {e}", config.secrets())
        report = TerminationReport(reason=Reason.INTERNAL, message=message)
        print(f"cdi-importer: {message}", file=sys.stderr)
        _write_report(config.termination_log, report)
        return EXIT_RETRY
    _write_report(config.termination_log, report)
    print(
        f"cdi-importer: imported {report.format or 'image'} "
        f"({report.bytes_written or 0} bytes written, {report.bytes_transferred or 0} transferred, "
        f"{report.duration_seconds}s)" + (" via scratch" if report.scratch_used else ""),
        file=sys.stderr,
    )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
