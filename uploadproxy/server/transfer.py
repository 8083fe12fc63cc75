"""One run of the importer's pipeline over an upload body, in a worker thread.

The event loop sees two futures: `drained` (the pipeline holds the whole body durably, in
the target or in fsync'd scratch: an async upload answers then) and `result` (the
termination report, success or failure). Every failure is a report with its reason; the
pipeline has aborted the target by then, so nothing half-written is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable

from cdicontract.reasons import Reason
from cdicontract.report import TerminationReport
from importer.checksum import Checksum
from importer.errors import ImportFailure
from importer.events import TransferEvents
from importer.pipeline import run_transfer
from importer.progress import Progress
from importer.sources.body import BodySource
from importer.targets import Target, select_target
from importer.transferspec import ContentType, TransferSpec
from uploadproxy.server.config import ServerConfig

log = logging.getLogger(__name__)

TargetFactory = Callable[[str], Target]
COMPLETE_MESSAGE = "Upload Complete"
"""CDI's upload server says this in its termination message on success."""


def transfer_spec(
    config: ServerConfig, content_type: ContentType, checksum: Checksum | None
) -> TransferSpec:
    archive = content_type is ContentType.ARCHIVE
    return TransferSpec(
        dest=config.archive_dir() if archive else config.dest,
        content_type=content_type,
        requested_size=config.image_size,
        filesystem_overhead=config.filesystem_overhead,
        checksum=checksum,
        preallocation=config.preallocation,
    )


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
        self.spec = transfer_spec(config, content_type, checksum)
        self.checksum = checksum
        self.declared_size = declared_size
        """The whole body's length, from the first request's Content-Length (raw only)."""
        self.client_resumes = 0
        """How often the client continued a paused body (the report's `resumes`)."""
        self._progress = progress
        self._target_factory = target_factory
        self._cancel = threading.Event()
        self._loop = asyncio.get_running_loop()
        self.drained: asyncio.Future[None] = self._loop.create_future()
        self.result: asyncio.Future[TerminationReport] = self._loop.create_future()
        self.body = BodySource(declared_size, pause_timeout=config.pause_timeout)
        self._thread = threading.Thread(target=self._run, name="upload-pipeline", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def cancel(self, why: str) -> None:
        """Stop the run (pod terminating, client started over); the target is aborted."""
        self._cancel.set()
        self.body.abandon(why)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    # ---- worker thread -----------------------------------------------------------------

    def _post(self, fn: Callable[..., None], *args: object) -> None:
        # The loop may be gone when the server stopped before the pipeline did.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(fn, *args)

    def _run(self) -> None:
        events = TransferEvents(on_drained=lambda: self._post(_set, self.drained, None))
        try:
            archive = self.spec.content_type is ContentType.ARCHIVE
            target = None if archive else self._target_factory(self.spec.dest)
            report = run_transfer(
                self.body, target, self.spec, self._progress, self._cancel, events=events
            )
            report = dataclasses.replace(report, message=COMPLETE_MESSAGE)
        except ImportFailure as e:
            report = TerminationReport(reason=e.reason, message=e.message)
        except Exception as e:  # a bug: reported, and the traceback kept in the log
            log.exception("upload pipeline failed unexpectedly")
            report = TerminationReport(
                reason=Reason.INTERNAL, message=f"unexpected {type(e).__name__}: {e}"
            )
        finally:
            self.body.close()
        self._post(self._finish, report)

    def _finish(self, report: TerminationReport) -> None:
        if self.client_resumes:
            report = dataclasses.replace(report, resumes=self.client_resumes)
        _set(self.drained, None)
        _set(self.result, report)


def _set(future: asyncio.Future[TerminationReport] | asyncio.Future[None], value: object) -> None:
    with contextlib.suppress(asyncio.InvalidStateError):
        if not future.done():
            future.set_result(value)  # type: ignore[arg-type]
