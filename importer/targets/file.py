"""A raw image file (Filesystem-mode volumes): written as `<dest>.part`, renamed on commit.

The destination only ever holds a complete image: the part file lives next to it (same
file system, so the rename is atomic) and is removed on abort. A fresh part file is all
holes, so zero blocks beyond what was written cost nothing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

from cdicontract import sizes
from cdicontract.reasons import Reason
from importer.errors import ImportFailure
from importer.targets import linux
from importer.targets.base import Target, errors_to_failure
from importer.targets.writeback import Writeback

FILE_MODE = 0o660


class FileTarget(Target):
    is_block = False

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.part_path = path + ".part"

    @classmethod
    def is_compatible(cls, path: str) -> bool:
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            return True
        return stat.S_ISREG(mode)

    def capacity(self, requested_size: int | None, overhead: float) -> int | None:
        if requested_size is None:
            return None
        try:
            return sizes.usable_size(requested_size, overhead)
        except sizes.SizeError as e:
            raise ImportFailure(Reason.INVALID_CONFIG, str(e)) from e

    def begin(self) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise ImportFailure(
                Reason.INVALID_CONFIG, f"destination directory {directory} does not exist"
            )
        with errors_to_failure(f"creating {self.part_path}"):
            # O_NOFOLLOW: a planted symlink must not redirect our writes elsewhere.
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW
            self._fd = os.open(self.part_path, flags, FILE_MODE)
        self._writeback = Writeback(self._fd)
        self._high_water = 0

    def qemu_output(self) -> str:
        return self.part_path

    def _make_zero(self, start: int, end: int) -> None:
        # Beyond everything written so far the part file is a hole already.
        end = min(end, self._high_water)
        if start < end:
            assert self._fd is not None
            linux.fallocate(
                self._fd, linux.FALLOC_FL_PUNCH_HOLE | linux.FALLOC_FL_KEEP_SIZE, start, end - start
            )

    def commit(self, image_size: int, usable: int | None, preallocate: bool = False) -> None:
        """Grow to max(image, usable), optionally allocate, fsync, rename into place."""
        if self._fd is None:
            raise RuntimeError("commit before begin")
        try:
            with errors_to_failure(f"finishing {self.path}"):
                self._flush_zeros()
                self._close()
                # Reopen by name: qemu-img may have written the part file through its own fd.
                fd = os.open(self.part_path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
                try:
                    size = max(image_size, usable or 0)
                    if os.fstat(fd).st_size < size:  # grow only: never cut image data
                        os.ftruncate(fd, size)
                    if preallocate:
                        linux.fallocate(fd, 0, 0, max(size, os.fstat(fd).st_size))
                    os.fsync(fd)
                    Writeback(fd).finish()
                finally:
                    os.close(fd)
                os.rename(self.part_path, self.path)
                _fsync_dir(os.path.dirname(os.path.abspath(self.path)))
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        self._close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.part_path)

    def blank(self, usable: int, preallocate: bool) -> None:
        self.begin()
        self.commit(0, usable, preallocate)


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems refuse fsync on directories
        if exc.errno != errno.EINVAL:
            raise
    finally:
        os.close(fd)
