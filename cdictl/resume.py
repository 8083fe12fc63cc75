"""What to do after each attempt of an upload: pure decisions, no I/O.

virtctl re-sends the whole file after any error (five times). cdictl resumes instead
(cdicontract.upload: `HEAD` answers `Upload-Offset` while the upload server holds a
paused upload; a POST with `Upload-Offset: N` sends the rest; 416 carries the server's
offset), renews the 5-minute token when the proxy says it expired, and gives up after
`attempts` consecutive attempts that made no progress, so a long upload over a flaky link
finishes while a dead one stops.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from cdicontract.report import TerminationReport

TRANSIENT_STATUSES = frozenset({502, 503, 504})
"""The proxy or the server is not ready (yet): try again after a pause."""


class Step(Enum):
    DONE = "done"
    SEND = "send"
    """POST from `offset`."""
    PROBE = "probe"
    """HEAD to learn where the server stands, then send from there."""
    FAIL = "fail"


@dataclass(frozen=True)
class Next:
    step: Step
    offset: int = 0
    renew_token: bool = False
    pause: bool = False
    """Back off before the next request (the server said it was not ready)."""
    error: str = ""


def parse_offset(value: str | None, size: int) -> int | None:
    """The server's `Upload-Offset`, or None when absent or not a byte offset of the file."""
    if value is None:
        return None
    text = value.strip()
    if not text.isdigit():
        return None
    offset = int(text)
    return offset if offset <= size else None


def after_post(status: int, offset_header: str | None, body: str, size: int, *,
               resent: bool = False) -> Next:
    """The POST got an answer. `resent`: the whole file is being sent again after a drop
    that left nothing paused, so the first try may have arrived whole after all."""
    if status == 200:
        return Next(Step.DONE)
    if status == 409 and resent:
        # "Already succeeded": the first try's bytes all arrived; the processing wait
        # that follows tells the outcome.
        return Next(Step.DONE)
    if status == 416:
        offset = parse_offset(offset_header, size)
        if offset is not None:
            return Next(Step.SEND, offset=offset)
        return Next(Step.PROBE)
    if status == 401:
        return Next(Step.PROBE, renew_token=True)
    if status in TRANSIENT_STATUSES:
        return Next(Step.PROBE, pause=True)
    return Next(Step.FAIL, error=f"unexpected return value {status}, {body}")


def after_result(body: str) -> Next:
    """A 200's body. cdi-py's upload server ends a synchronous answer with its termination
    report as a JSON line (after keep-alive spaces, when it answered early): a report
    other than Completed is a failure the status code could no longer say. CDI's answer
    has no body; anything but a JSON object is taken as its success.
    """
    text = body.strip()
    if not text.startswith("{"):
        return Next(Step.DONE)
    report = TerminationReport.from_json(text)
    if report.ok:
        return Next(Step.DONE)
    return Next(Step.FAIL, error=f"{report.reason}: {report.message}".rstrip(": "))


def after_drop(*, answered: bool) -> Next:
    """The connection broke.

    After a 200 (a synchronous answer cut while the server kept it alive), the server
    has every byte: the processing wait that follows tells the outcome. Before any
    answer, even the last byte leaving this machine proves nothing (socket buffers hold
    megabytes): the server's word decides, in `after_probe`.
    """
    if answered:
        return Next(Step.DONE)
    return Next(Step.PROBE, pause=True)


def after_probe(status: int | None, offset_header: str | None, size: int) -> Next:
    """The HEAD got an answer (status None: it failed too)."""
    if status == 200:
        offset = parse_offset(offset_header, size)
        if offset is not None:
            return Next(Step.SEND, offset=offset)
        # Nothing paused: a server without resume dropped what it had, or every byte
        # arrived and it is processing. Send it all again, as virtctl would: a server
        # that has it answers 409 ("already succeeded") or 503 (busy), not a new upload.
        return Next(Step.SEND, offset=0)
    if status == 401:
        return Next(Step.PROBE, renew_token=True)
    if status is None or status in TRANSIENT_STATUSES:
        return Next(Step.PROBE, pause=True)
    return Next(Step.FAIL, error=f"unexpected return value {status} to HEAD")


def backoff_seconds(fruitless: int, *, base: float = 0.5, cap: float = 10.0) -> float:
    """The pause before the next try, after `fruitless` attempts without progress."""
    if fruitless <= 0:
        return 0.0
    return float(min(cap, base * 2 ** (fruitless - 1)))


@dataclass
class Budget:
    """Consecutive attempts that moved no byte; reset whenever the server's offset grows."""

    attempts: int
    fruitless: int = 0
    best_offset: int = 0

    def record(self, offset: int) -> bool:
        """Count one more attempt that is to start at `offset`; False once spent."""
        if offset > self.best_offset:
            self.best_offset = offset
            self.fruitless = 0
        self.fruitless += 1
        return self.fruitless <= self.attempts
