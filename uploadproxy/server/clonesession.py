"""The one clone a server in clone mode receives: its state, its requests, how it ends.

State changes happen on the event loop; the bytes go to the receiver (`clonereceiver`)
in a one-thread executor, about a MiB at a time, the next piece read while the previous
one is written (bounded: one piece in flight). A connection that breaks, goes silent or
ends without END pauses the clone: the receiver keeps what it has, and `HEAD` tells the
cloner where to continue. A stream that breaks the format, a digest that does not match,
a source the target cannot hold or a failing volume end the clone for good: the target is
discarded and the server exits with the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum

from cdicontract import clonestream as cs
from cdicontract.reasons import Reason
from cdicontract.report import TerminationReport
from importer.errors import ImportFailure
from importer.targets import select_target
from uploadproxy.server.bodyreader import ClientGone
from uploadproxy.server.clonereceiver import Conflict, Receiver
from uploadproxy.server.config import ServerConfig
from uploadproxy.server.transfer import TargetFactory

log = logging.getLogger(__name__)

PIECE = 1 << 20
EXIT_OK, EXIT_FAILED = 0, 1


class CloneState(StrEnum):
    IDLE = "idle"
    RECEIVING = "receiving"
    PAUSED = "paused"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class Answer:
    status: int
    text: str
    report: TerminationReport | None = None


class CloneSession:
    def __init__(self, config: ServerConfig, target_factory: TargetFactory = select_target) -> None:
        self.config = config
        self.state = CloneState.IDLE
        self.receiver = Receiver(config, target_factory)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clone-write")
        self.final: TerminationReport | None = None
        self.finished = asyncio.Event()
        self._tasks: set[asyncio.Task[Answer]] = set()

    @property
    def offset(self) -> int:
        return self.receiver.covered

    def percent(self) -> float:
        return 100.0 if self.state is CloneState.DONE else self.receiver.percent()

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.final is not None and self.final.ok else EXIT_FAILED

    async def receive(self, chunks: AsyncIterator[bytes]) -> Answer:
        """One POST's body, to its end or its failure."""
        if self.state is CloneState.RECEIVING:
            return Answer(409, "another clone stream is being received")
        if self.state is CloneState.DONE:
            return Answer(409, "the clone is already complete")
        if self.state is CloneState.FAILED:
            message = self.final.message if self.final is not None else ""
            return Answer(409, f"the clone already failed: {message}")
        before = self.state
        self.state = CloneState.RECEIVING
        decoder = cs.Decoder()
        try:
            report = await self._pump(decoder, chunks)
            if report is None:
                decoder.close()  # raises: the body ended without END
                raise AssertionError("unreachable")  # pragma: no cover
        except Conflict as e:
            self.state = before
            return Answer(409, str(e))
        except ClientGone as e:
            return self._pause(str(e))
        except cs.StreamError as e:
            if str(e).startswith("truncated stream"):
                return self._pause(str(e))
            return await self._fail(Reason.CORRUPT_IMAGE, f"bad clone stream: {e}")
        except ImportFailure as e:
            return await self._fail(e.reason, e.message)
        except OSError as e:
            return await self._fail(Reason.INTERNAL, f"writing the clone: {e.strerror or e}")
        self.state = CloneState.DONE
        log.info("clone done size=%s bytes=%s", report.virtual_size, report.bytes_transferred)
        self._end(report)
        return Answer(200, report.to_json(), report)

    async def _pump(
        self, decoder: cs.Decoder, chunks: AsyncIterator[bytes]
    ) -> TerminationReport | None:
        loop = asyncio.get_running_loop()
        pending: asyncio.Future[TerminationReport | None] | None = None
        piece: list[bytes] = []
        held = 0
        try:
            async for chunk in chunks:
                piece.append(chunk)
                held += len(chunk)
                if held < PIECE:
                    continue
                if pending is not None:
                    report = await pending
                    pending = None
                    if report is not None:
                        return report
                batch, piece, held = piece, [], 0
                pending = loop.run_in_executor(self._executor, self.receiver.apply, decoder, batch)
            if pending is not None:
                report = await pending
                pending = None
                if report is not None:
                    return report
            if piece:
                return await loop.run_in_executor(
                    self._executor, self.receiver.apply, decoder, piece
                )
            return None
        finally:
            if pending is not None:  # never leave the worker writing behind our back
                with contextlib.suppress(Exception):
                    await pending

    def _pause(self, why: str) -> Answer:
        self.state = CloneState.PAUSED if self.receiver.header is not None else CloneState.IDLE
        log.info("clone paused offset=%d why=%s", self.offset, why)
        return Answer(400, f"the clone stream broke off ({why}); it continues at {self.offset}")

    async def _fail(self, reason: Reason, message: str) -> Answer:
        self.state = CloneState.FAILED
        log.error("clone failed reason=%s message=%s", reason, message)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.receiver.abort)
        self._end(TerminationReport(reason, message))
        return Answer(400, f"{reason}: {message}")

    def _end(self, report: TerminationReport) -> None:
        if self.finished.is_set():
            return
        self.final = report
        self.finished.set()

    def terminate(self, why: str) -> None:
        """SIGTERM: discard a clone that did not finish, report, let the process end."""
        if self.finished.is_set():
            return
        task = asyncio.get_running_loop().create_task(self._fail(Reason.CANCELLED, why))
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        if self.state not in (CloneState.DONE, CloneState.FAILED):
            await asyncio.get_running_loop().run_in_executor(self._executor, self.receiver.abort)
        self._executor.shutdown(wait=True)
