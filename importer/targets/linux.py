"""The few Linux calls Python's os module lacks: fallocate modes, sync_file_range, block ioctls.

Each wrapper raises OSError with errno like the os module does, so callers translate
errors in one place (`errors_to_failure`).
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import struct

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_ZERO_RANGE = 0x10

SYNC_FILE_RANGE_WAIT_BEFORE = 1
SYNC_FILE_RANGE_WRITE = 2
SYNC_FILE_RANGE_WAIT_AFTER = 4

BLKGETSIZE64 = 0x80081272  # _IOR(0x12, 114, size_t)
BLKZEROOUT = 0x127F  # _IO(0x12, 127)
BLKSSZGET = 0x1268  # _IO(0x12, 104): logical sector size

_libc = ctypes.CDLL(None, use_errno=True)
_fallocate = _libc.fallocate64
_fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
_fallocate.restype = ctypes.c_int
_sync_file_range = _libc.sync_file_range
_sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
_sync_file_range.restype = ctypes.c_int


def _check(result: int) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    _check(_fallocate(fd, mode, offset, length))


def sync_file_range(fd: int, offset: int, length: int, flags: int) -> None:
    _check(_sync_file_range(fd, offset, length, flags))


def block_device_size(fd: int) -> int:
    buf = fcntl.ioctl(fd, BLKGETSIZE64, b"\0" * 8)
    return int(struct.unpack("=Q", buf)[0])


def logical_sector_size(fd: int) -> int:
    buf = fcntl.ioctl(fd, BLKSSZGET, b"\0" * 4)
    return int(struct.unpack("=i", buf)[0])


def blk_zeroout(fd: int, offset: int, length: int) -> None:
    fcntl.ioctl(fd, BLKZEROOUT, struct.pack("=QQ", offset, length))
