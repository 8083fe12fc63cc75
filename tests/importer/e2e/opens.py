"""Which of some files anything opened, through inotify (Linux), for the hostile-image tests.

An access-time check only sees reads; qemu-img opens a FLAT extent or a backing file
without reading it when it only reports on an image, so the proof that nothing outside
the image is touched watches `open` itself.
"""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

IN_ACCESS = 0x001
IN_OPEN = 0x020
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then the name, for directories)


@contextmanager
def watch_opens(paths: list[Path]) -> Iterator[set[Path]]:
    """Yields a set that, when the block ends, holds each of `paths` opened or read."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1")
    opened: set[Path] = set()
    try:
        watches = {}
        for path in paths:
            wd = libc.inotify_add_watch(fd, os.fsencode(path), IN_OPEN | IN_ACCESS)
            if wd < 0:
                raise OSError(ctypes.get_errno(), f"inotify_add_watch {path}")
            watches[wd] = path
        yield opened
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            data = b""
        at = 0
        while at + _EVENT.size <= len(data):
            wd, _mask, _cookie, length = _EVENT.unpack_from(data, at)
            if wd in watches:
                opened.add(watches[wd])
            at += _EVENT.size + length
    finally:
        os.close(fd)
