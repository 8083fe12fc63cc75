"""Where a clone stream's extents land: an image (file or device) or an archive's files.

`ImageSink` reuses the importer's targets (`importer.targets`): a file is written as
`<dest>.part` (holes stay holes), then sized to the source's logical size, grown to the
volume's usable size, synced and renamed; a device gets the extents in place, every range
the stream skipped zeroed, the tail after the image zeroed, then synced.

`ArchiveSink` feeds the tar bytes to the importer's safe extraction in a thread of its
own; the files move into the volume only once the stream's digest verified.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from cdicontract.reasons import Reason
from importer.archive import extract_tar
from importer.errors import ImportFailure
from importer.targets.base import Target

ZERO_PIECE = 1 << 20


class Sink(Protocol):
    def write(self, offset: int, data: bytes) -> None: ...

    def finish(self, size: int) -> None:
        """The stream is whole and verified: make it the volume's content, durably."""

    def abort(self) -> None:
        """Discard what was written (nothing half-written stays)."""


class ImageSink:
    def __init__(self, target: Target, usable: int | None, preallocate: bool = False) -> None:
        self._target = target
        self._usable = usable
        self._preallocate = preallocate
        self._end = 0
        target.begin()

    def write(self, offset: int, data: bytes) -> None:
        if offset > self._end:
            self._target.zero(self._end, offset)
        self._target.write_data_at(offset, data)
        self._end = offset + len(data)

    def finish(self, size: int) -> None:
        if size > self._end:
            self._target.zero(self._end, size)
        self._target.commit(size, self._usable, self._preallocate)

    def abort(self) -> None:
        self._target.abort()


@dataclass(frozen=True)
class _Done:
    verified: bool


class ArchiveSink:
    """The tar's bytes go through a small queue to `extract_tar` in its own thread."""

    def __init__(self, dest_dir: str) -> None:
        self._q: queue.Queue[bytes | _Done] = queue.Queue(maxsize=8)
        self._end = 0
        self._error: BaseException | None = None
        self._verdict: _Done | None = None
        self._dest_dir = dest_dir
        self._thread = threading.Thread(target=self._extract, name="clone-untar", daemon=True)
        self._thread.start()

    def _chunks(self) -> Iterator[bytes]:
        while True:
            item = self._q.get()
            if isinstance(item, _Done):
                self._verdict = item
                return
            yield item

    def _before_commit(self) -> None:
        while self._verdict is None:  # the tar's end marker came before the stream's end
            item = self._q.get()
            if isinstance(item, _Done):
                self._verdict = item
        if not self._verdict.verified:
            raise ImportFailure(Reason.CANCELLED, "the clone stream was abandoned")

    def _extract(self) -> None:
        try:
            extract_tar(self._chunks(), self._dest_dir, before_commit=self._before_commit)
        except BaseException as e:  # handed to the receiver
            self._error = e

    def _put(self, item: bytes | _Done) -> None:
        while True:
            try:
                self._q.put(item, timeout=0.2)
                return
            except queue.Full:
                if not self._thread.is_alive():
                    self._raise()
                    raise ImportFailure(
                        Reason.INVALID_IMAGE, "the archive ended before the stream"
                    ) from None

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, offset: int, data: bytes) -> None:
        while self._end < offset:  # a gap in a tar stream is zeros
            n = min(ZERO_PIECE, offset - self._end)
            self._put(bytes(n))
            self._end += n
        if data:
            self._put(data)
        self._end = offset + len(data)

    def finish(self, size: int) -> None:
        if size > self._end:
            self.write(size, b"")
        self._put(_Done(verified=True))
        self._thread.join()
        self._raise()

    def abort(self) -> None:
        with contextlib.suppress(queue.Full):
            while True:  # make room: the extractor may be blocked on a full queue
                try:
                    self._q.get_nowait()
                except queue.Empty:
                    break
            self._q.put_nowait(_Done(verified=False))
        self._thread.join(30)
