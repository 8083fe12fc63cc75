"""Turn a source's dropped streams into one uninterrupted body (CDI restarts from zero instead).

`ResumingReader` yields the source's bytes in order, exactly once. When the stream breaks
with a `TransientSourceError` it re-opens the source at the first byte not yet delivered
(a Range request for HTTP and S3), after a backoff. Bytes count as delivered once the
consumer has taken them, so the consumer's "last byte safely written" and ours agree.

It works for any `Source`; it knows nothing of HTTP.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator

from cdicontract.reasons import Reason
from importer.errors import ImportFailure, RestartRequired, TransientSourceError
from importer.sources.base import Source, SourceInfo, Stream


def exponential_backoff(attempt: int) -> float:
    """Seconds to wait before retry number `attempt` (1-based): 0.5, 1, 2, ... capped at 30."""
    return float(min(30.0, 0.5 * 2 ** max(0, attempt - 1)))


class ResumingReader:
    """Iterate a source's body across connection drops, resuming at `position`."""

    def __init__(
        self,
        source: Source,
        info: SourceInfo,
        *,
        max_attempts: int = 8,
        backoff: Callable[[int], float] = exponential_backoff,
        sleep: Callable[[float], None] = time.sleep,
        on_resume: Callable[[int, ImportFailure], None] | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._source = source
        self._info = info
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._sleep = sleep
        self._on_resume = on_resume
        self.position = 0
        """Bytes delivered to the consumer so far: where the next re-open starts."""
        self.resumes = 0
        """How many times the source was re-opened after a transient failure."""

    def __iter__(self) -> Generator[bytes, None, None]:
        failures = 0  # consecutive failures without a delivered byte in between
        while True:
            stream: Stream | None = None
            try:
                stream = self._source.open(self.position)
                for chunk in stream:
                    if not chunk:
                        continue
                    self._check_not_too_long(len(chunk))
                    self.position += len(chunk)
                    failures = 0
                    yield chunk
                self._check_complete()
                return
            except RestartRequired:
                raise
            except TransientSourceError as e:
                failures += 1
                if self.position > 0 and not self._info.supports_ranges:
                    raise RestartRequired(
                        f"{e.message}; the source cannot resume at byte {self.position}",
                        e.reason,
                    ) from e
                if failures >= self._max_attempts:
                    raise
                if self._on_resume is not None:
                    self._on_resume(self.position, e)
                self._sleep(self._backoff(failures))
                self.resumes += 1
            finally:
                if stream is not None:
                    stream.close()

    def _check_not_too_long(self, n: int) -> None:
        size = self._info.size
        if size is not None and self.position + n > size:
            raise ImportFailure(
                Reason.SERVER_ERROR,
                f"{self._info.description}: more bytes than the announced {size}",
            )

    def _check_complete(self) -> None:
        size = self._info.size
        if size is not None and self.position < size:
            raise TransientSourceError(
                f"{self._info.description}: body ended at byte {self.position} of {size}"
            )
