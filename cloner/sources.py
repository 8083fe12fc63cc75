"""What the cloner sends: the data extents of an image (file or device), or a volume as a tar.

Extents are cut from the content alone, so a resumed stream cuts them exactly as the
first one did: the image is read in aligned `CHUNK` windows; in each, only the span the
file system says holds data (SEEK_DATA/SEEK_HOLE, widened to whole `BLOCK`s) is read,
and within it the runs of non-zero blocks are the extents. Holes and zero blocks are
never read twice nor sent.

The tar is made here, member by member (PAX headers, sorted names), so it is the same
bytes every time and its length is known before the first byte goes out.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass

from cdicontract import clonestream as cs
from cdicontract.reasons import Reason
from cloner.errors import CloneFailure

READ = 1 << 20
SKIPPED_TOP_LEVEL = frozenset({"lost+found"})
"""A file system's own directory, root's and unreadable to the pod: never user data."""


def _align_down(n: int, unit: int) -> int:
    return n - n % unit


def _align_up(n: int, unit: int) -> int:
    return -(-n // unit) * unit


def image_size(fd: int) -> int:
    """A regular file's size, or a block device's (seek to its end)."""
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode):
        return st.st_size
    if stat.S_ISBLK(st.st_mode):
        return os.lseek(fd, 0, os.SEEK_END)
    raise CloneFailure(Reason.INVALID_CONFIG, "the source is neither a file nor a block device")


def open_image(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise CloneFailure(Reason.SOURCE_NOT_FOUND, f"the source {path} does not exist") from None
    except OSError as e:
        raise CloneFailure(
            Reason.INVALID_CONFIG, f"cannot open the source {path}: {e.strerror}"
        ) from None


def _data_span(fd: int, start: int, end: int) -> tuple[int, int] | None:
    """The smallest [lo, hi) within [start, end) holding every data range, block-aligned;
    None when the window is all hole."""
    try:
        lo = os.lseek(fd, start, os.SEEK_DATA)
    except OSError as e:
        if e.errno == errno.ENXIO:  # no data at or after `start`
            return None
        if e.errno in (errno.EINVAL, errno.EOPNOTSUPP):
            return start, end
        raise
    if lo >= end:
        return None
    hi = lo
    pos = lo
    while pos < end:
        hole = os.lseek(fd, pos, os.SEEK_HOLE)
        hi = min(hole, end)
        if hole >= end:
            break
        try:
            pos = os.lseek(fd, hole, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:
                break
            raise
    lo = max(start, _align_down(lo, cs.BLOCK))
    hi = min(end, _align_up(hi, cs.BLOCK))
    return (lo, hi) if lo < hi else None


def _pread_full(fd: int, length: int, offset: int) -> bytes:
    """`length` bytes at `offset`: one read into the bytes object it returns (no zeroed
    buffer, no copy) unless the kernel returns less at once."""
    data = os.pread(fd, length, offset)
    if len(data) == length:
        return data
    parts = [data]
    got = len(data)
    while got < length:
        piece = os.pread(fd, length - got, offset + got)
        if not piece:
            raise CloneFailure(
                Reason.SOURCE_CHANGED, f"the source ended at {offset + got}, before its size"
            )
        parts.append(piece)
        got += len(piece)
    return b"".join(parts)


def image_extents(fd: int, size: int, start: int = 0) -> Iterator[tuple[int, bytes]]:
    """(offset, data) of every data extent ending after `start`, in order.

    Raises CloneFailure if an extent straddles `start` (not a boundary of this content:
    the server's offset belongs to another source)."""
    try:
        for window in range(_align_down(start, cs.CHUNK), size, cs.CHUNK):
            span = _data_span(fd, window, min(size, window + cs.CHUNK))
            if span is None:
                continue
            lo, hi = span
            buf = _pread_full(fd, hi - lo, lo)
            for s, e in cs.data_runs(buf, lo):
                offset = lo + s
                if offset + (e - s) <= start:
                    continue
                if offset < start:
                    raise CloneFailure(
                        Reason.SOURCE_CHANGED,
                        f"the server holds the stream up to {start}, which is not an extent "
                        "boundary of this source",
                    )
                yield offset, buf if (s, e) == (0, len(buf)) else buf[s:e]
    except OSError as e:
        raise CloneFailure(Reason.INTERNAL, f"reading the source: {e.strerror or e}") from None


# ---- a volume's files as a tar ---------------------------------------------------------


@dataclass(frozen=True)
class Member:
    path: str
    """Absolute path on this machine."""
    info: tarfile.TarInfo
    header: bytes

    @property
    def padded_size(self) -> int:
        return _align_up(self.info.size, tarfile.BLOCKSIZE) if self.info.isreg() else 0


def _info(root: str, rel: str) -> tarfile.TarInfo:
    path = os.path.join(root, rel)
    st = os.lstat(path)
    info = tarfile.TarInfo(rel)
    info.mode = stat.S_IMODE(st.st_mode)
    info.mtime = int(st.st_mtime)
    info.uid, info.gid = st.st_uid, st.st_gid
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(path)
    elif stat.S_ISREG(st.st_mode):
        info.type = tarfile.REGTYPE
        info.size = st.st_size
    else:
        raise CloneFailure(
            Reason.ARCHIVE_REFUSED,
            f"the volume holds {rel[:200]!r}, neither file, directory nor link",
        )
    return info


def members(root: str) -> Iterator[Member]:
    """The volume's entries in a fixed order (sorted, parents first); hard links are sent
    as separate files (the receiver allows links only to what it extracted itself)."""

    def walk(rel: str) -> Iterator[str]:
        names = sorted(os.listdir(os.path.join(root, rel) if rel else root))
        for name in names:
            if not rel and name in SKIPPED_TOP_LEVEL:
                continue
            child = f"{rel}/{name}" if rel else name
            yield child
            full = os.path.join(root, child)
            if os.path.isdir(full) and not os.path.islink(full):
                yield from walk(child)

    try:
        for rel in walk(""):
            info = _info(root, rel)
            yield Member(os.path.join(root, rel), info, info.tobuf(tarfile.PAX_FORMAT, "utf-8"))
    except OSError as e:
        raise CloneFailure(Reason.INTERNAL, f"reading the volume: {e.strerror or e}") from None


END_OF_ARCHIVE = bytes(2 * tarfile.BLOCKSIZE)


def tar_size(root: str) -> int:
    return sum(len(m.header) + m.padded_size for m in members(root)) + len(END_OF_ARCHIVE)


def tar_extents(root: str, size: int, start: int = 0) -> Iterator[tuple[int, bytes]]:
    """The tar of `root` cut in CHUNK-aligned pieces (offset, data) ending after `start`.

    Raises CloneFailure(SOURCE_CHANGED) when the files no longer make `size` bytes."""
    pending = bytearray()
    base = 0  # the stream offset of pending[0]

    def emit(final: bool) -> Iterator[tuple[int, bytes]]:
        nonlocal base
        while len(pending) >= cs.CHUNK or (final and pending):
            piece = bytes(pending[: cs.CHUNK])
            del pending[: cs.CHUNK]
            offset, base = base, base + len(piece)
            if offset < start < base:
                raise CloneFailure(
                    Reason.SOURCE_CHANGED,
                    f"the server holds the stream up to {start}, not a piece boundary",
                )
            if base > start:
                yield offset, piece

    for m in members(root):
        pending += m.header
        yield from emit(False)
        if not m.info.isreg():
            continue
        remaining = m.info.size
        try:
            fd = os.open(m.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as e:
            raise CloneFailure(
                Reason.INTERNAL, f"reading {m.info.name[:200]!r}: {e.strerror}"
            ) from None
        try:
            while remaining:
                block = os.read(fd, min(READ, remaining))
                if not block:
                    raise CloneFailure(
                        Reason.SOURCE_CHANGED, f"{m.info.name[:200]!r} shrank while sent"
                    )
                pending += block
                remaining -= len(block)
                yield from emit(False)
        finally:
            os.close(fd)
        pending += bytes(m.padded_size - m.info.size)
    pending += END_OF_ARCHIVE
    yield from emit(True)
    if base != size:
        raise CloneFailure(Reason.SOURCE_CHANGED, f"the volume's tar is {base} bytes, not {size}")
