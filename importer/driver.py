"""A small phase machine: each handler returns the next phase; the driver refuses loops.

CDI's importer drives Info -> Transfer -> Convert -> Resize -> Complete the same way; the
explicit machine keeps every path through the importer visible in one table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum

from cdicontract.reasons import Reason
from importer.errors import ImportFailure


class Phase(StrEnum):
    INFO = "Info"
    BLANK = "Blank"
    TRANSFER_RAW = "TransferRaw"
    CONVERT_NBD = "ConvertFromSource"
    DOWNLOAD_SCRATCH = "DownloadToScratch"
    CONVERT_SCRATCH = "ConvertFromScratch"
    EXTRACT_ARCHIVE = "ExtractArchive"
    COMPLETE = "Complete"


Handler = Callable[[], Phase]


def drive(
    handlers: Mapping[Phase, Handler],
    *,
    start: Phase = Phase.INFO,
    allowed_visits: Callable[[Phase], int] = lambda _p: 1,
    on_phase: Callable[[Phase], None] | None = None,
) -> list[Phase]:
    """Run handlers from `start` until COMPLETE; returns the phases walked, in order."""
    walked: list[Phase] = []
    phase = start
    while phase is not Phase.COMPLETE:
        handler = handlers.get(phase)
        if handler is None:
            raise ImportFailure(Reason.INTERNAL, f"no handler for phase {phase}")
        if walked.count(phase) >= allowed_visits(phase):
            raise ImportFailure(Reason.INTERNAL, f"phase {phase} would run again: refused loop")
        walked.append(phase)
        if on_phase:
            on_phase(phase)
        phase = handler()
    walked.append(Phase.COMPLETE)
    return walked
