"""A block device (Block-mode volumes): written in place, never resized.

A fresh device holds whatever was there before, so zero regions must really be
zeroed: punched (write-zeroes offload, cheap on thin storage), else BLKZEROOUT, else
written. `assume_zeroed` skips that for devices known to read as zeros.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat

from cdicontract.reasons import Reason
from importer.errors import ImportFailure
from importer.targets import linux
from importer.targets.base import Target, errors_to_failure
from importer.targets.writeback import Writeback
from importer.targets.zeroes import BLOCK, zeros

log = logging.getLogger(__name__)

_ZERO_WRITE = 1 << 20
_PUNCH, _ZERO_RANGE, _ZEROOUT, _WRITE = "punch", "zero-range", "zeroout", "write"
_UNSUPPORTED = (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOTTY, errno.ENOSYS)


class BlockTarget(Target):
    is_block = True

    def __init__(self, path: str, *, assume_zeroed: bool = False) -> None:
        super().__init__(path)
        self.assume_zeroed = assume_zeroed
        self._size: int | None = None
        self._handed_to_qemu = False
        self._broken: set[str] = set()  # zeroing methods this device refused

    @classmethod
    def is_compatible(cls, path: str) -> bool:
        try:
            return stat.S_ISBLK(os.stat(path).st_mode)
        except OSError:
            return False

    def device_size(self) -> int:
        if self._size is None:
            with errors_to_failure(f"reading the size of {self.path}"):
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    self._size = linux.block_device_size(fd)
                finally:
                    os.close(fd)
        return self._size

    def capacity(self, requested_size: int | None, overhead: float) -> int | None:
        # Block volumes carry no file system: the whole device is usable (overhead 0).
        return self.device_size()

    def begin(self) -> None:
        try:
            # O_EXCL on a block device: fail instead of writing under a mounted file system.
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC | os.O_EXCL)
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                raise ImportFailure(
                    Reason.INVALID_CONFIG, f"block device {self.path} is in use"
                ) from exc
            with errors_to_failure(f"opening {self.path}"):
                raise
        self._writeback = Writeback(self._fd)
        self._size = linux.block_device_size(self._fd)
        self._high_water = 0

    def qemu_output(self) -> str:
        self._handed_to_qemu = True
        return self.path

    def _make_zero(self, start: int, end: int) -> None:
        if not self.assume_zeroed:
            self._zero_device(start, end, allocate=False)

    def _zero_device(self, start: int, end: int, *, allocate: bool) -> None:
        """Zero [start, end): partial blocks by writing, whole blocks by the best method."""
        assert self._fd is not None
        inner_start = min(end, -(-start // BLOCK) * BLOCK)
        inner_end = max(inner_start, end - end % BLOCK)
        for lo, hi in ((start, inner_start), (inner_end, end)):
            if lo < hi:
                self._pwrite(lo, zeros(hi - lo))
        if inner_start >= inner_end:
            return
        methods = (_ZERO_RANGE,) if allocate else (_PUNCH,)
        for method in (*methods, _ZEROOUT, _WRITE):
            if method in self._broken:
                continue
            try:
                self._zero_with(method, inner_start, inner_end)
                return
            except OSError as exc:
                if exc.errno not in _UNSUPPORTED or method == _WRITE:
                    raise
                log.info(
                    "zeroing method unsupported, falling back method=%s dev=%s", method, self.path
                )
                self._broken.add(method)

    def _zero_with(self, method: str, start: int, end: int) -> None:
        assert self._fd is not None
        if method == _PUNCH:
            mode = linux.FALLOC_FL_PUNCH_HOLE | linux.FALLOC_FL_KEEP_SIZE
            linux.fallocate(self._fd, mode, start, end - start)
        elif method == _ZERO_RANGE:
            mode = linux.FALLOC_FL_ZERO_RANGE | linux.FALLOC_FL_KEEP_SIZE
            linux.fallocate(self._fd, mode, start, end - start)
        elif method == _ZEROOUT:
            linux.blk_zeroout(self._fd, start, end - start)
        else:
            for pos in range(start, end, _ZERO_WRITE):
                self._pwrite(pos, zeros(min(_ZERO_WRITE, end - pos)))

    def commit(self, image_size: int, usable: int | None, preallocate: bool = False) -> None:
        """Zero the tail after the image (unless known zero), fsync. Never resizes."""
        if self._fd is None:
            raise RuntimeError("commit before begin")
        size = self.device_size()
        with errors_to_failure(f"finishing {self.path}"):
            if image_size < size:
                if preallocate:
                    self._flush_zeros()
                    self._zero_device(image_size, size, allocate=True)
                else:
                    self._zero(image_size, size)
            self._flush_zeros()
            os.fsync(self._fd)
            Writeback(self._fd).finish()
            self._close()

    def abort(self) -> None:
        """Best effort: zero what was written, so no half image looks like a real one."""
        if self._fd is None:
            return
        end = self.device_size() if self._handed_to_qemu else self._high_water
        try:
            self._pending_zero = None
            if end and not self.assume_zeroed:
                self._zero_device(0, end, allocate=False)
            os.fsync(self._fd)
        except OSError as exc:
            log.warning("could not discard partial image dev=%s error=%s", self.path, exc.strerror)
        finally:
            with contextlib.suppress(OSError):
                self._close()

    def blank(self, usable: int, preallocate: bool) -> None:
        """Zero the device only with preallocation; a blank block volume is otherwise left as is."""
        self.begin()
        try:
            with errors_to_failure(f"preparing blank {self.path}"):
                if preallocate:
                    self._zero_device(0, self.device_size(), allocate=True)
                assert self._fd is not None
                os.fsync(self._fd)
                self._close()
        except BaseException:
            self.abort()
            raise
