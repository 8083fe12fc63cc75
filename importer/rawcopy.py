"""Stream a raw (already decompressed) image into a target, sparsely, with a size limit.

The stream is re-blocked so every write starts on a 4 KiB boundary (sources deliver
chunks of arbitrary sizes; unaligned writes could not leave holes). Reading and
decompressing run in one background thread while this thread writes: decoders and
syscalls release the GIL, so the two overlap on separate cores. The queue between them
is bounded, which bounds memory.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator

from cdicontract.reasons import Reason
from importer.errors import ImportFailure
from importer.targets.base import Target
from importer.targets.zeroes import BLOCK

CHUNK = 1 << 20
"""Size of the aligned pieces handed to the target."""
PREFETCH = 4
"""Chunks buffered between the reading thread and the writer (memory: PREFETCH * ~CHUNK)."""


def copy_raw(
    chunks: Iterable[bytes],
    target: Target,
    *,
    limit: int | None,
    on_bytes: Callable[[int], None] | None = None,
    prefetch: int = PREFETCH,
) -> int:
    """Write the stream at offsets 0.. of `target`; returns the image size in bytes.

    The caller owns `target.begin()` / `commit()` / `abort()`. A stream longer than
    `limit` fails with IMAGE_TOO_LARGE before any byte beyond the limit is written.
    `prefetch=0` reads in the calling thread (for sources that must stay on it).
    """
    source = aligned(chunks, CHUNK)
    offset = 0
    with _prefetched(source, prefetch) as pieces:
        for piece in pieces:
            n = len(piece)
            if limit is not None and offset + n > limit:
                raise ImportFailure(
                    Reason.IMAGE_TOO_LARGE,
                    f"DataVolume too small to contain image: the image exceeds the usable "
                    f"size of {limit} bytes",
                )
            target.write_at(offset, piece)
            offset += n
            if on_bytes is not None:
                on_bytes(n)
    return offset


def aligned(chunks: Iterable[bytes], size: int = CHUNK) -> Iterator[bytes]:
    """Re-block a stream into pieces whose lengths are multiples of BLOCK (but the last).

    Chunks that are already block multiples pass through without a copy.
    """
    pending = bytearray()
    for chunk in chunks:
        if not pending and len(chunk) % BLOCK == 0:
            if chunk:
                yield chunk
            continue
        pending += chunk
        if len(pending) >= size:
            cut = len(pending) - len(pending) % BLOCK
            yield bytes(pending[:cut])
            del pending[:cut]
    if pending:
        yield bytes(pending)


_DONE = object()


class _prefetched:
    """Iterates `source` in a background thread, handing items over a bounded queue.

    Exceptions raised by the source are re-raised in the consumer. When the consumer
    stops early (error, limit), the producer is told to stop and the source is closed in
    the producer thread, the only one that ever runs it.
    """

    def __init__(self, source: Iterator[bytes], depth: int) -> None:
        self._source = source
        self._depth = depth
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max(depth, 1))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Iterator[bytes]:
        if self._depth <= 0:
            return self._source
        self._thread = threading.Thread(target=self._produce, name="rawcopy-reader", daemon=True)
        self._thread.start()
        return self._consume()

    def _produce(self) -> None:
        try:
            for item in self._source:
                if not self._put(item):
                    return
            self._put(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(exc)
        finally:
            close = getattr(self._source, "close", None)
            if close is not None:
                close()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _consume(self) -> Iterator[bytes]:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, bytes)
            yield item

    def __exit__(self, *exc_info: object) -> None:
        if self._thread is None:
            return
        self._stop.set()
        # A producer blocked in a network read only notices when the read returns (or the
        # source's read timeout fires). On failure or cancellation don't wait for that: the
        # daemon thread ends with its read, and a pod being deleted must exit promptly.
        self._thread.join(timeout=10 if exc_info[0] is None else 0.5)
