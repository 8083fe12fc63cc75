"""syncfs on the file system of a path: the real one from libc, errors, the os.sync fallback."""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

import pytest

from importer import syncfs


def test_libc_has_syncfs_and_it_syncs_a_directory_and_a_file(tmp_path: Path) -> None:
    assert syncfs.LIBC_SYNCFS is not None  # glibc has had it since 2.14
    (tmp_path / "f").write_bytes(b"x")
    syncfs.sync_filesystem(str(tmp_path))
    syncfs.sync_filesystem(str(tmp_path / "f"))


def test_syncs_the_file_system_holding_the_path(tmp_path: Path) -> None:
    devices: list[int] = []

    def fake(fd: int) -> int:
        devices.append(os.fstat(fd).st_dev)
        return 0

    syncfs.sync_filesystem(str(tmp_path), syncfs=fake)
    assert devices == [tmp_path.stat().st_dev]


def test_a_writeback_error_is_raised(tmp_path: Path) -> None:
    def failing(fd: int) -> int:
        ctypes.set_errno(errno.EIO)
        return -1

    with pytest.raises(OSError) as err:
        syncfs.sync_filesystem(str(tmp_path), syncfs=failing)
    assert err.value.errno == errno.EIO


def test_without_syncfs_it_falls_back_to_sync(tmp_path: Path) -> None:
    def enosys(fd: int) -> int:
        ctypes.set_errno(errno.ENOSYS)
        return -1

    syncfs.sync_filesystem(str(tmp_path), syncfs=enosys)
    syncfs.sync_filesystem(str(tmp_path), syncfs=None)
