"""Bounded dirty page cache: written ranges are flushed and dropped as the copy proceeds.

Buffered writes are charged to the importer's memory cgroup; left alone, a multi-GiB
import fills the page cache and gets the pod OOM-killed (CDI #2110). Every `window`
bytes we start writeback of the batch just written (async) and wait for the batch
before it, then drop it from the cache, so at most about two windows are resident.
"""

from __future__ import annotations

import errno
import os

from importer.targets import linux

WINDOW = 16 << 20


class Writeback:
    def __init__(self, fd: int, window: int = WINDOW) -> None:
        self._fd = fd
        self._window = window
        self._lo: int | None = None
        self._hi = 0
        self._dirty = 0
        self._previous: tuple[int, int] | None = None
        self._ranged = True  # sync_file_range works on this fd

    def wrote(self, offset: int, length: int) -> None:
        self._lo = offset if self._lo is None else min(self._lo, offset)
        self._hi = max(self._hi, offset + length)
        self._dirty += length
        if self._dirty >= self._window:
            self._cycle()

    def _cycle(self) -> None:
        assert self._lo is not None
        current = (self._lo, self._hi)
        self._lo, self._hi, self._dirty = None, 0, 0
        if self._ranged:
            try:
                linux.sync_file_range(
                    self._fd, current[0], current[1] - current[0], linux.SYNC_FILE_RANGE_WRITE
                )
                if self._previous is not None:
                    lo, hi = self._previous
                    linux.sync_file_range(
                        self._fd,
                        lo,
                        hi - lo,
                        linux.SYNC_FILE_RANGE_WAIT_BEFORE
                        | linux.SYNC_FILE_RANGE_WRITE
                        | linux.SYNC_FILE_RANGE_WAIT_AFTER,
                    )
                    os.posix_fadvise(self._fd, lo, hi - lo, os.POSIX_FADV_DONTNEED)
                self._previous = current
                return
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.ESPIPE, errno.EOPNOTSUPP):
                    raise
                self._ranged = False
        # No ranged writeback on this file system: a full flush per window still bounds it.
        os.fdatasync(self._fd)
        os.posix_fadvise(self._fd, current[0], current[1] - current[0], os.POSIX_FADV_DONTNEED)

    def finish(self) -> None:
        """After the final fsync: drop whatever of the file is still cached."""
        self._lo, self._hi, self._dirty, self._previous = None, 0, 0, None
        os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_DONTNEED)
