"""The importer's one exception type, carrying the termination reason.

Third-party exceptions are translated into `ImportFailure` at the boundary where they
happen (HTTP source, qemu-img runner, sink), chained with `raise ... from`, so the
driver only ever sees a reason and a human message without secrets in it.
"""

from __future__ import annotations

from cdicontract.reasons import Failure, Reason


class ImportFailure(Failure):
    """A failed import with a machine-readable reason and a one-line human message."""


class TransientSourceError(ImportFailure):
    """A failure of the source that a retry (resume from the last byte) may fix."""

    def __init__(self, message: str, reason: Reason = Reason.NETWORK_ERROR) -> None:
        super().__init__(reason, message)


class RestartRequired(TransientSourceError):
    """The stream broke and the source cannot resume in the middle: start the transfer over."""
