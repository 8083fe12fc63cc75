"""syncfs(2): make everything written to one file system durable, named by a path on it.

An extracted archive is many files: an fsync each costs a flush per file, and os.sync()
flushes every file system of the node, other pods' volumes included. syncfs flushes the
one file system that holds the path, and since Linux 5.8 it reports writeback errors.
Python has no os.syncfs, so it comes from libc through ctypes; without it (a libc that
lacks it, a kernel that says ENOSYS) we fall back to os.sync(): slower for the neighbours,
just as durable.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable

SyncFs = Callable[[int], int]
"""syncfs(fd) -> 0, or -1 with errno set (ctypes' use_errno)."""


def _load_syncfs() -> SyncFs | None:
    # CDLL(None) is the running process, which has libc loaded (as in importer.limits).
    try:
        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    syncfs: SyncFs = fn
    return syncfs


LIBC_SYNCFS = _load_syncfs()


def sync_filesystem(path: str, *, syncfs: SyncFs | None = LIBC_SYNCFS) -> None:
    """Flush the file system holding `path` (a directory or a file) to stable storage.

    Raises OSError when the kernel reports a writeback error.
    """
    if syncfs is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if syncfs(fd) == 0:
            return
        err = ctypes.get_errno()
    finally:
        os.close(fd)
    if err == errno.ENOSYS:
        os.sync()
        return
    raise OSError(err, os.strerror(err), path)
