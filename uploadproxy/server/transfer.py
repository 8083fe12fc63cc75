"""One run of the importer's pipeline over an upload body, in a worker thread.

The event loop sees two futures: `drained` (the pipeline took the whole body: an async
upload answers then) and `result` (the termination report, success or failure). Every
failure is a report with its reason; the pipeline has aborted the target by then, so
nothing half-written is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import tempfile
import threading
from collections.abc import Callable

from cdicontract.reasons import Reason
from cdicontract.report import TerminationReport
from importer.checksum import Checksum
from importer.config import ContentType, ImporterConfig, SourceKind
from importer.errors import ImportFailure
from importer.pipeline import ImportPipeline
from importer.progress import Progress
from importer.targets import Target, select_target
from uploadproxy.server.bodyfeed import BodyFeed
from uploadproxy.server.config import ServerConfig

log = logging.getLogger(__name__)

TargetFactory = Callable[[str], Target]
COMPLETE_MESSAGE = "Upload Complete"
"""CDI's upload server says this in its termination message on success."""


class Transfer:
    def __init__(
        self,
        config: ServerConfig,
        *,
        content_type: ContentType,
        checksum: Checksum | None,
        declared_size: int | None,
        progress: Progress,
        target_factory: TargetFactory = select_target,
    ) -> None:
        self._config = config
        self.content_type = content_type
        self.checksum = checksum
        self._progress = progress
        self._target_factory = target_factory
        self._cancel = threading.Event()
        self._loop = asyncio.get_running_loop()
        self.drained: asyncio.Future[None] = self._loop.create_future()
        self.result: asyncio.Future[TerminationReport] = self._loop.create_future()
        self.body = BodyFeed(declared_size, on_eof=self._on_eof)
        self._thread = threading.Thread(target=self._run, name="upload-pipeline", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def cancel(self, why: str) -> None:
        """Stop the run (pod terminating, paused too long, client started over)."""
        self._cancel.set()
        self.body.abandon(why)

    # ---- worker thread -----------------------------------------------------------------

    def _on_eof(self) -> None:
        self._post(_set, self.drained, None)

    def _post(self, fn: Callable[..., None], *args: object) -> None:
        # The loop may be gone when the server stopped before the pipeline did.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(fn, *args)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            report = self._pipeline()
        except ImportFailure as e:
            report = TerminationReport(reason=e.reason, message=e.message)
        except Exception as e:  # a bug: reported, and the traceback kept in the log
            log.exception("upload pipeline failed unexpectedly")
            report = TerminationReport(
                reason=Reason.INTERNAL, message=f"unexpected {type(e).__name__}: {e}"
            )
        finally:
            self.body.reader_closed()
        self._post(self._finish, report)

    def _finish(self, report: TerminationReport) -> None:
        _set(self.drained, None)
        _set(self.result, report)

    def _pipeline(self) -> TerminationReport:
        cfg = self._config
        archive = self.content_type is ContentType.ARCHIVE
        dest = cfg.archive_dir() if archive else cfg.dest
        importer_config = ImporterConfig(
            source=SourceKind.HTTP,  # read only to tell blank from the rest
            endpoint="upload",
            dest=dest,
            content_type=self.content_type,
            size=cfg.image_size,
            checksum=self.checksum,
            filesystem_overhead=cfg.filesystem_overhead,
            preallocation=cfg.preallocation,
            owner_uid=cfg.owner_uid,
        )
        target = None if archive else self._target_factory(dest)
        with tempfile.TemporaryDirectory(prefix="cdi-uploadserver-") as workdir:
            pipeline = ImportPipeline(
                importer_config,
                self._progress,
                workdir,
                self.body,
                target=target,
                cancel=self._cancel,
            )
            report = pipeline.run()
        return dataclasses.replace(report, message=COMPLETE_MESSAGE)


def _set(future: asyncio.Future[TerminationReport] | asyncio.Future[None], value: object) -> None:
    with contextlib.suppress(asyncio.InvalidStateError):
        if not future.done():
            future.set_result(value)  # type: ignore[arg-type]
