"""What every target (file, block device) offers: sparse positional writes and an atomic finish.

The sequence is `begin`, then either `write_at` calls (raw streaming) or an external
writer at `qemu_output()` (qemu-img convert), then `commit` — or `abort` on any failure.
Zero blocks never reach the disk as data: runs of them are coalesced and handed to the
subclass's `_make_zero`, which knows whether the region already reads as zeros.
"""

from __future__ import annotations

import contextlib
import errno
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import ClassVar

from cdicontract.reasons import Reason
from importer.errors import ImportFailure
from importer.targets.writeback import Writeback
from importer.targets.zeroes import zero_runs

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@contextlib.contextmanager
def errors_to_failure(what: str) -> Iterator[None]:
    """Translate OSError from target I/O into ImportFailure (the one boundary for targets)."""
    try:
        yield
    except OSError as exc:
        if exc.errno in _NO_SPACE:
            raise ImportFailure(Reason.NO_SPACE, f"{what}: no space left on the volume") from exc
        raise ImportFailure(Reason.INTERNAL, f"{what}: {exc.strerror or exc}") from exc


class Target(ABC):
    is_block: ClassVar[bool]

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._writeback: Writeback | None = None
        self._pending_zero: tuple[int, int] | None = None
        self._high_water = 0  # end of the furthest range written as data

    @classmethod
    @abstractmethod
    def is_compatible(cls, path: str) -> bool:
        """Whether this kind of target can write to `path` (checked in selection order)."""

    @abstractmethod
    def capacity(self, requested_size: int | None, overhead: float) -> int | None:
        """Usable bytes for the image, or None when unbounded (file without a size)."""

    @abstractmethod
    def begin(self) -> None: ...

    @abstractmethod
    def qemu_output(self) -> str: ...

    @abstractmethod
    def commit(self, image_size: int, usable: int | None, preallocate: bool = False) -> None: ...

    @abstractmethod
    def abort(self) -> None: ...

    @abstractmethod
    def blank(self, usable: int, preallocate: bool) -> None: ...

    @abstractmethod
    def _make_zero(self, start: int, end: int) -> None:
        """Make [start, end) read as zeros, by the cheapest means this target has."""

    def write_at(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Write `data` at `offset`; whole zero blocks become holes instead of data."""
        if self._fd is None:
            raise RuntimeError("write_at before begin")
        buf = data if isinstance(data, bytes) else bytes(data)
        with errors_to_failure(f"writing {self.path}"):
            for start, end, zero in zero_runs(buf, offset):
                if zero:
                    self._zero(offset + start, offset + end)
                else:
                    self._flush_zeros()
                    whole = (start, end) == (0, len(buf))
                    self._pwrite(offset + start, buf if whole else memoryview(buf)[start:end])

    def write_data_at(self, offset: int, data: bytes | memoryview) -> None:
        """Write `data` as it is: its sender already left out the zero blocks (a clone
        stream), so looking for them again would only cost time."""
        if self._fd is None:
            raise RuntimeError("write_data_at before begin")
        with errors_to_failure(f"writing {self.path}"):
            self._flush_zeros()
            self._pwrite(offset, data)

    def zero(self, start: int, end: int) -> None:
        """Make [start, end) read as zeros: a range a sparse stream (a clone) skipped."""
        if self._fd is None:
            raise RuntimeError("zero before begin")
        if start < end:
            with errors_to_failure(f"zeroing {self.path}"):
                self._zero(start, end)

    def _zero(self, start: int, end: int) -> None:
        pending = self._pending_zero
        if pending is not None and pending[1] == start:
            self._pending_zero = (pending[0], end)
            return
        self._flush_zeros()
        self._pending_zero = (start, end)

    def _flush_zeros(self) -> None:
        if self._pending_zero is not None:
            start, end = self._pending_zero
            self._pending_zero = None
            self._make_zero(start, end)

    def _pwrite(self, offset: int, data: bytes | memoryview) -> None:
        assert self._fd is not None
        view = memoryview(data)
        pos = 0
        while pos < len(view):
            n = os.pwrite(self._fd, view[pos:], offset + pos)
            if n == 0:  # end of a block device
                raise OSError(errno.ENOSPC, "no space left on device")
            pos += n
        self._high_water = max(self._high_water, offset + len(view))
        if self._writeback is not None:
            self._writeback.wrote(offset, len(view))

    def _close(self) -> None:
        self._pending_zero = None
        if self._fd is not None:
            fd, self._fd, self._writeback = self._fd, None, None
            os.close(fd)
