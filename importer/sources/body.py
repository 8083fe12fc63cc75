"""An upload body as a Source: pushed in by the upload server, read by the pipeline.

The server's event loop `put`s the request body's chunks; the pipeline's worker thread
reads them through `open(0)`. The buffer between them is bounded, so a client can never
send faster than the pipeline writes (`put` blocks: backpressure) and memory stays flat.

The body is read once, in order: the source cannot restart and has no random access, so
a non-raw image goes through scratch and a broken transfer fails instead of starting over.
What it can do is wait: when the client's connection drops, the server `pause`s the body
(the pipeline simply waits for more bytes) and a returning client `resume`s at `offset`,
the bytes already taken. A paused body whose client does not come back within
`pause_timeout` seconds fails the transfer.

    state        put            reader (pipeline)
    receiving    accepts        takes chunks, waits when empty
    paused       BodyError      waits, fails after pause_timeout
    finished     BodyClosed     takes what is left, then EOF
    failed       BodyClosed     raises the failure (abandon, pause timeout, bad length)
    closed       BodyClosed     (the reader stopped: the pipeline failed or is done)
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterator
from enum import StrEnum

from cdicontract.reasons import Reason
from importer.errors import ImportFailure
from importer.sources.base import SourceCapabilities, SourceInfo

DEFAULT_BUFFER_BYTES = 4 << 20
DEFAULT_PAUSE_TIMEOUT = 600.0
SCRATCH_REASON = "an upload body is read once, in order, as the client sends it"


class BodyError(Exception):
    """The body cannot take this call now (paused, wrong length); the message says why."""


class BodyClosed(BodyError):
    """The body takes no more bytes: it was finished or abandoned, or nobody reads it."""


class BodyState(StrEnum):
    RECEIVING = "receiving"
    PAUSED = "paused"
    FINISHED = "finished"
    FAILED = "failed"
    CLOSED = "closed"


class BodySource:
    """A Source fed by `put` from one thread and read by the pipeline from another."""

    def __init__(
        self,
        size: int | None = None,
        *,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        pause_timeout: float = DEFAULT_PAUSE_TIMEOUT,
        description: str = "upload body",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if buffer_bytes < 1:
            raise ValueError("buffer_bytes must be positive")
        if size is not None and size < 0:
            raise ValueError("a body cannot have a negative size")
        self._size = size
        self._capacity = buffer_bytes
        self._pause_timeout = pause_timeout
        self._description = description
        self._clock = clock
        self._cond = threading.Condition()
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._offset = 0
        self._state = BodyState.RECEIVING
        self._paused_at: float | None = None
        self._failure: ImportFailure | None = None
        self._opened = False

    # ---- the feeding side (the upload server) -------------------------------------------

    @property
    def offset(self) -> int:
        """Bytes accepted so far: everything before it belongs to the pipeline."""
        with self._cond:
            return self._offset

    @property
    def state(self) -> BodyState:
        with self._cond:
            return self._state

    def put(self, chunk: bytes, timeout: float | None = None) -> None:
        """Hand `chunk` to the pipeline, waiting while the buffer is full.

        All or nothing: on TimeoutError, BodyError or BodyClosed the chunk was not taken
        and `offset` did not move. A chunk larger than the buffer is taken once the
        buffer is empty.
        """
        if not chunk:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                self._check_writable()
                if self._size is not None and self._offset + len(chunk) > self._size:
                    self._fail(
                        ImportFailure(
                            Reason.INVALID_IMAGE,
                            f"{self._description}: more bytes than the declared {self._size}",
                        )
                    )
                    raise BodyClosed(f"more bytes than the declared {self._size}")
                if self._buffered == 0 or self._buffered + len(chunk) <= self._capacity:
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError("the pipeline did not take the chunk in time")
                self._cond.wait(remaining)
            self._chunks.append(bytes(chunk))
            self._buffered += len(chunk)
            self._offset += len(chunk)
            self._cond.notify_all()

    def pause(self) -> None:
        """The client went away mid-body; the pipeline waits up to `pause_timeout` for it."""
        with self._cond:
            if self._state is BodyState.RECEIVING:
                self._state = BodyState.PAUSED
                self._paused_at = self._clock()
                self._cond.notify_all()

    def resume(self, offset: int) -> bool:
        """A client is back and continues at `offset`; False unless that is our `offset`
        and the body is paused (or still receiving, when no pause was noticed)."""
        with self._cond:
            if self._state not in (BodyState.PAUSED, BodyState.RECEIVING):
                return False
            if offset != self._offset:
                return False
            self._state = BodyState.RECEIVING
            self._paused_at = None
            self._cond.notify_all()
            return True

    def finish(self) -> None:
        """The body ended: the reader gets EOF once it has taken the buffered bytes.

        A body shorter than its declared size is no body: the transfer fails instead.
        """
        with self._cond:
            self._check_writable(paused_ok=True)
            if self._size is not None and self._offset != self._size:
                message = f"body ended at byte {self._offset} of the declared {self._size}"
                self._fail(ImportFailure(Reason.INVALID_IMAGE, f"{self._description}: {message}"))
                raise BodyClosed(message)
            self._state = BodyState.FINISHED
            self._cond.notify_all()

    def abandon(self, reason: str, code: Reason = Reason.CANCELLED) -> None:
        """Make the reader fail with `reason`; the pipeline aborts the target."""
        with self._cond:
            if self._state in (BodyState.RECEIVING, BodyState.PAUSED):
                self._fail(ImportFailure(code, f"{self._description} abandoned: {reason}"))

    # ---- the Source side (the pipeline's worker thread) ---------------------------------

    def info(self) -> SourceInfo:
        return SourceInfo(size=self._size, supports_ranges=False, description=self._description)

    def capabilities(self) -> SourceCapabilities:
        return SourceCapabilities(
            restartable=False, random_access=False, scratch_reason=SCRATCH_REASON
        )

    def random_reads(self) -> None:
        return None

    def open(self, offset: int = 0) -> _BodyStream:
        with self._cond:
            if offset != 0 or self._opened:
                raise ImportFailure(
                    Reason.INTERNAL, f"{self._description} is read once, from its start"
                )
            self._opened = True
        return _BodyStream(self)

    def close(self) -> None:
        """Nobody reads any more: a feeder's `put` fails at once from now on."""
        with self._cond:
            if self._state in (BodyState.RECEIVING, BodyState.PAUSED) or self._chunks:
                self._state = BodyState.CLOSED
            self._chunks.clear()
            self._buffered = 0
            self._cond.notify_all()

    def _take(self) -> bytes | None:
        """The next chunk, None at EOF; waits while the body is receiving or paused."""
        with self._cond:
            while True:
                if self._chunks:
                    chunk = self._chunks.popleft()
                    self._buffered -= len(chunk)
                    self._cond.notify_all()
                    return chunk
                state = self._state
                if state is BodyState.FINISHED:
                    return None
                if state is BodyState.FAILED:
                    assert self._failure is not None
                    raise self._failure
                if state is BodyState.CLOSED:
                    raise ImportFailure(Reason.INTERNAL, f"{self._description} was closed")
                if state is BodyState.PAUSED:
                    assert self._paused_at is not None
                    left = self._paused_at + self._pause_timeout - self._clock()
                    if left <= 0:
                        self._fail(
                            ImportFailure(
                                Reason.NETWORK_ERROR,
                                f"{self._description}: the client disconnected at byte "
                                f"{self._offset} and did not resume within "
                                f"{self._pause_timeout:g} s",
                            )
                        )
                        continue
                    self._cond.wait(left)
                else:
                    self._cond.wait()

    # ---- helpers (lock held) ------------------------------------------------------------

    def _check_writable(self, *, paused_ok: bool = False) -> None:
        state = self._state
        if state is BodyState.RECEIVING or (paused_ok and state is BodyState.PAUSED):
            return
        if state is BodyState.PAUSED:
            raise BodyError("the body is paused: resume(offset) first")
        if state is BodyState.FAILED and self._failure is not None:
            raise BodyClosed(self._failure.message)
        if state is BodyState.FINISHED:
            raise BodyClosed("the body is already finished")
        raise BodyClosed("the transfer no longer reads the body (it failed or is done)")

    def _fail(self, failure: ImportFailure) -> None:
        self._state = BodyState.FAILED
        self._failure = failure
        self._chunks.clear()
        self._buffered = 0
        self._cond.notify_all()


class _BodyStream:
    """The reader's view: chunks in order until EOF; `close` before EOF closes the body."""

    def __init__(self, body: BodySource) -> None:
        self._body = body
        self._eof = False

    def __iter__(self) -> Iterator[bytes]:
        while True:
            chunk = self._body._take()  # the stream is the body's own reader
            if chunk is None:
                self._eof = True
                return
            yield chunk

    def close(self) -> None:
        if not self._eof:
            self._body.close()
