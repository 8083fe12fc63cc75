"""Signals of one running transfer, for whoever feeds or watches it from another thread.

The upload server answers an async upload once the body is `drained` (read to its end and
durably stored: in the target, or fsync'd in scratch), and answers at once when the run
fails while the client is still sending. Both are set from the pipeline's worker thread;
listeners run there too, so an event loop should hand them over with
`loop.call_soon_threadsafe`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from importer.errors import ImportFailure


class TransferEvents:
    def __init__(
        self,
        on_drained: Callable[[], None] | None = None,
        on_failed: Callable[[ImportFailure], None] | None = None,
    ) -> None:
        self._on_drained = on_drained
        self._on_failed = on_failed
        self.drained = threading.Event()
        """Set once: the source was read to EOF and every byte read is durably stored."""
        self.failed = threading.Event()
        """Set once: the run failed; `failure` says why. Never set after `drained`'s run
        succeeded, but may follow `drained` (a conversion from scratch can still fail)."""
        self.failure: ImportFailure | None = None

    def mark_drained(self) -> None:
        if self.drained.is_set():
            return
        self.drained.set()
        if self._on_drained is not None:
            self._on_drained()

    def mark_failed(self, failure: ImportFailure) -> None:
        if self.failed.is_set():
            return
        self.failure = failure
        self.failed.set()
        if self._on_failed is not None:
            self._on_failed(failure)
