"""The one upload a server pod accepts: its state, its pipeline run, and how it ends.

All state changes happen on the event loop, between awaits, so the decision taken for a
request (`decisions.decide_post`) and the change it causes are atomic. The pipeline runs
in a worker thread (`transfer.Transfer`); bodies are handed to it through a one-thread
executor, so a slow pipeline stops the reads and the client's TCP window closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from cdicontract.reasons import Reason
from cdicontract.report import TerminationReport
from importer.checksum import Checksum
from importer.progress import Progress
from importer.sources.body import BodyClosed
from importer.targets import select_target
from importer.transferspec import ContentType
from uploadproxy.server import decisions
from uploadproxy.server.bodyreader import BadBody, ClientGone
from uploadproxy.server.config import ServerConfig
from uploadproxy.server.decisions import State
from uploadproxy.server.transfer import TargetFactory, Transfer

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
FORM_SHARE = 60.0
"""The share of progress a form's bytes may claim: its file's length is unknown (the
request's length includes the form around it), so the pipeline cannot count it; the rest
comes from the pipeline (conversion) as for any body."""


@dataclass(frozen=True)
class Received:
    """How one request's body ended."""

    complete: bool
    """The body arrived whole and the pipeline has it all."""
    early: TerminationReport | None = None
    """The pipeline ended before the body did (a failure detected from the first bytes)."""
    bad_body: str | None = None


class UploadSession:
    def __init__(self, config: ServerConfig, target_factory: TargetFactory = select_target) -> None:
        self.config = config
        self._target_factory = target_factory
        self.state = State.IDLE
        self.transfer: Transfer | None = None
        self.progress = Progress()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="upload-body")
        self._answered_early = False
        self._abandoning = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._form_length: int | None = None
        self.final: TerminationReport | None = None
        self.finished = asyncio.Event()
        """Set once the upload succeeded or failed for good: the process should exit."""

    @property
    def offset(self) -> int:
        return self.transfer.body.offset if self.transfer is not None else 0

    def percent(self) -> float:
        """The upload's progress: the pipeline's, or for a form an estimate from its bytes."""
        pipeline = self.progress.percent
        transfer, total = self.transfer, self._form_length
        if transfer is None or transfer.declared_size is not None or not total:
            return pipeline
        return max(pipeline, FORM_SHARE * min(1.0, transfer.body.offset / total))

    def form_length(self, length: int | None) -> None:
        """A form request's length, for the progress estimate (the rest of the body after a
        resume: the total is then the offset plus it)."""
        self._form_length = None if length is None else self.offset + length

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.final is not None and self.final.ok else EXIT_FAILED

    # ---- starting and resuming ---------------------------------------------------------

    def start(
        self, content_type: ContentType, checksum: Checksum | None, declared_size: int | None
    ) -> Transfer:
        assert self.state is State.IDLE, self.state
        self.progress = Progress()
        self._answered_early = False
        transfer = Transfer(
            self.config,
            content_type=content_type,
            checksum=checksum,
            declared_size=declared_size,
            progress=self.progress,
            target_factory=self._target_factory,
        )
        self.transfer = transfer
        self.state = State.RECEIVING
        transfer.start()
        self._spawn(self._watch(transfer))
        log.info(
            "upload started content=%s declared_size=%s checksum=%s",
            content_type,
            declared_size,
            checksum.algorithm if checksum else "none",
        )
        return transfer

    def resume(self) -> Transfer | None:
        """Continue the paused upload; None when it ended meanwhile (pause timeout)."""
        assert self.state is State.PAUSED and self.transfer is not None
        if not self.transfer.body.resume(self.transfer.body.offset):
            return None
        self.state = State.RECEIVING
        self.transfer.client_resumes += 1
        log.info("upload resumed offset=%d", self.transfer.body.offset)
        return self.transfer

    async def abandon_paused(self) -> None:
        """Drop the paused upload (its target is aborted) so a new one can start."""
        assert self.state is State.PAUSED and self.transfer is not None
        transfer = self.transfer
        self.state = State.RECEIVING  # busy for everyone else while the old run unwinds
        self._abandoning = True
        try:
            transfer.cancel("the client started the upload over")
            await asyncio.shield(transfer.result)
        finally:
            self._abandoning = False
        self.state = State.IDLE
        log.info("paused upload abandoned offset=%d", transfer.body.offset)

    # ---- the body ----------------------------------------------------------------------

    async def receive(self, chunks: AsyncIterator[bytes]) -> Received:
        """Feed one request's body into the pipeline; pauses the upload when it breaks off."""
        transfer = self.transfer
        assert transfer is not None and self.state is State.RECEIVING
        loop = asyncio.get_running_loop()
        pending = chunks.__aiter__()
        try:
            while True:
                # The next read races the pipeline's end: a failure seen in the first bytes
                # is answered while the client is still sending.
                step: asyncio.Future[bytes] = asyncio.ensure_future(anext(pending))
                racers: set[asyncio.Future[object]] = {step, transfer.result}  # type: ignore[arg-type]
                await asyncio.wait(racers, return_when=asyncio.FIRST_COMPLETED)
                if not step.done():
                    step.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await step
                    raise BodyClosed("the pipeline ended before the body")
                try:
                    chunk = step.result()
                except StopAsyncIteration:
                    break
                await loop.run_in_executor(self._executor, transfer.body.put, chunk)
        except BodyClosed:
            report = await asyncio.shield(transfer.result)
            return Received(complete=False, early=report)
        except ClientGone as e:
            self._pause(transfer, str(e))
            return Received(complete=False)
        except BadBody as e:
            if transfer.body.offset == 0:
                transfer.cancel(f"bad request: {e}")
                await asyncio.shield(transfer.result)
                return Received(complete=False, bad_body=str(e))
            self._pause(transfer, f"bad request: {e}")
            return Received(complete=False, bad_body=str(e))
        try:
            transfer.body.finish()
        except BodyClosed:  # shorter than declared, or the run ended meanwhile
            return Received(complete=False, early=await asyncio.shield(transfer.result))
        if self.state is State.RECEIVING:
            self.state = State.PROCESSING
        log.info("upload body received bytes=%d", transfer.body.offset)
        return Received(complete=True)

    def _pause(self, transfer: Transfer, why: str) -> None:
        """The body waits for its client (the body itself fails after the pause timeout)."""
        if transfer.result.done() or self.state is not State.RECEIVING:
            return
        transfer.body.pause()
        self.state = State.PAUSED
        log.info("upload paused offset=%d why=%s", transfer.body.offset, why)

    def answered_early(self) -> None:
        """An async answer went out: a later failure can only be told by the report."""
        self._answered_early = True

    # ---- the end -----------------------------------------------------------------------

    async def _watch(self, transfer: Transfer) -> None:
        report = await transfer.result
        if transfer is not self.transfer or self.finished.is_set():
            return
        if report.ok:
            self.state = State.DONE
            log.info("upload done bytes=%s", transfer.body.offset)
            self._end(report)
        elif decisions.ends_server(report.reason, self._answered_early):
            self.state = State.FAILED
            log.error("upload failed for good reason=%s message=%s", report.reason, report.message)
            self._end(report)
        else:
            if not self._abandoning:  # abandon_paused moves on to IDLE itself
                self.state = State.IDLE
            log.warning("upload failed reason=%s message=%s", report.reason, report.message)

    def _end(self, report: TerminationReport) -> None:
        if self.finished.is_set():  # the first outcome is the one reported
            return
        self.final = report
        self.finished.set()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)

    def terminate(self, why: str) -> None:
        """The pod is being stopped: cancel any upload, then report and let the process end.

        The cancelled run is waited for (its target aborted, or committed if it was
        finishing: then the success is what the report says)."""
        if not self.finished.is_set():
            self._spawn(self._terminate(why))

    async def _terminate(self, why: str, timeout: float = 20.0) -> None:
        transfer = self.transfer
        if transfer is not None and not transfer.result.done():
            transfer.cancel(why)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(transfer.result), timeout)
        if transfer is not None and transfer.result.done() and transfer.result.result().ok:
            self._end(transfer.result.result())
            return
        self.state = State.FAILED
        self._end(TerminationReport(reason=Reason.CANCELLED, message=why))

    async def aclose(self, timeout: float = 30.0) -> None:
        """Stop any running upload (its target aborted) and wait for its worker thread."""
        transfer = self.transfer
        if transfer is not None:
            if not transfer.result.done():
                transfer.cancel("the upload server stopped")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(transfer.result), timeout)
            await asyncio.to_thread(transfer.join, timeout)
        self._executor.shutdown(wait=False, cancel_futures=True)
