"""An upload body as an importer `Source`: pushed by the event loop, read by the pipeline.

Interim: the importer's own push-fed `BodySource` (importer/sources/body.py, promised by
the pipeline reshape) replaces this module when it lands; the API is the same on purpose
(put with backpressure, offset, pause/resume, finish, abandon).

The buffer is bounded (`capacity` bytes): `put` blocks while it is full, the event loop
then stops reading the socket and the client's TCP window closes. The body cannot be
re-read: `open` works once, from byte 0.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator

from cdicontract.reasons import Reason
from importer.errors import ImportFailure
from importer.sources.base import SourceInfo
from importer.sources.pinned import Window

DEFAULT_CAPACITY = 4 << 20


class BodyClosed(Exception):
    """`put` after the pipeline stopped reading (it failed or finished) or after abandon."""


class BodyFeed:
    def __init__(
        self,
        size: int | None,
        capacity: int = DEFAULT_CAPACITY,
        on_eof: Callable[[], None] | None = None,
    ) -> None:
        self._size = size
        self._on_eof = on_eof
        self._capacity = capacity
        self._cond = threading.Condition()
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._offset = 0
        self._eof = False
        self._abandoned: str | None = None
        self._reader_closed = False
        self._opened = False
        self._paused = False

    # ---- the pushing side (the server) ------------------------------------------------

    @property
    def offset(self) -> int:
        """Bytes accepted so far: where a resumed body continues."""
        with self._cond:
            return self._offset

    @property
    def paused(self) -> bool:
        with self._cond:
            return self._paused

    def put(self, chunk: bytes, timeout: float | None = None) -> None:
        """Hand over `chunk`; blocks while the buffer is full. TimeoutError after `timeout`."""
        if not chunk:
            return
        with self._cond:
            ok = self._cond.wait_for(
                lambda: self._closed_for_put() or self._buffered < self._capacity, timeout
            )
            if self._closed_for_put():
                raise BodyClosed(self._abandoned or "the pipeline stopped reading the body")
            if not ok:
                raise TimeoutError("the pipeline did not take the body in time")
            self._chunks.append(chunk)
            self._buffered += len(chunk)
            self._offset += len(chunk)
            self._cond.notify_all()

    def pause(self) -> None:
        """The client went away mid-body; the reader keeps waiting for more."""
        with self._cond:
            self._paused = True

    def resume(self, offset: int) -> bool:
        """Continue at `offset`; False (and still paused) when it is not ours."""
        with self._cond:
            if offset != self._offset or self._closed_for_put():
                return False
            self._paused = False
            return True

    def finish(self) -> None:
        """The body is complete: the reader sees the end once the buffer is drained."""
        with self._cond:
            self._eof = True
            self._paused = False
            self._cond.notify_all()

    def abandon(self, reason: str) -> None:
        """Make the reader fail with `reason` (the pipeline then aborts its target)."""
        with self._cond:
            if self._abandoned is None:
                self._abandoned = reason
            self._chunks.clear()
            self._buffered = 0
            self._cond.notify_all()

    def reader_closed(self) -> None:
        """The pipeline is done with the body (success or failure): further puts fail."""
        with self._cond:
            self._reader_closed = True
            self._cond.notify_all()

    def _closed_for_put(self) -> bool:
        return self._reader_closed or self._abandoned is not None or self._eof

    # ---- the importer Source protocol (the pipeline's worker thread) -----------------

    def info(self) -> SourceInfo:
        return SourceInfo(size=self._size, supports_ranges=False, description="upload body")

    def open(self, offset: int = 0) -> _BodyStream:
        with self._cond:
            if self._opened or offset != 0:
                raise ImportFailure(
                    Reason.INTERNAL, "an upload body can be read once, from the start"
                )
            self._opened = True
        return _BodyStream(self)

    def random_reads(self) -> Window | None:
        return None

    def close(self) -> None:
        self.reader_closed()

    def _take(self) -> bytes | None:
        with self._cond:
            self._cond.wait_for(lambda: self._chunks or self._eof or self._abandoned is not None)
            if self._abandoned is not None:
                raise ImportFailure(Reason.CANCELLED, self._abandoned)
            if not self._chunks:
                return None
            chunk = self._chunks.popleft()
            self._buffered -= len(chunk)
            self._cond.notify_all()
            return chunk


class _BodyStream:
    def __init__(self, feed: BodyFeed) -> None:
        self._feed = feed

    def __iter__(self) -> Iterator[bytes]:
        while (chunk := self._feed._take()) is not None:
            yield chunk
        if self._feed._on_eof is not None:
            self._feed._on_eof()

    def close(self) -> None:
        self._feed.reader_closed()
