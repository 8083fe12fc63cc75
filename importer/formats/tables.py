"""Walking an image's allocation tables in bounded reads and bounded memory.

The checks that every allocated cluster, grain or block lies inside the file read the
format's tables, never its data, so their cost follows the size of the tables. Three
tools serve every format:

- `entries` reads one contiguous table (an L1 table, a BAT, a block map) in reads of at
  most MAX_READ and hands out the decoded entries chunk by chunk;
- `Offsets` collects where second-level tables (qcow2 L2 tables, VMDK grain tables) are,
  in a compact array, and gives them back sorted, refusing a table referenced twice;
- `read_tables` reads those second-level tables in file order, one read for neighbours
  that sit close together, because every read may be an HTTP range request.
"""

from __future__ import annotations

import heapq
import struct
from array import array
from collections.abc import Iterable, Iterator

from importer.formats.binary import MAX_READ, corrupt, read_exact
from importer.formats.model import ReadAt

GAP = 64 * 1024
"""Read through a gap this small between two tables rather than start a second request.

Each read may be a new HTTP range request, which costs more than 64 KiB of transfer. The
price is paid by images with tiny clusters: qcow2 with 512-byte clusters puts a 512-byte
L2 table after every 32 KiB of data, so the walk reads through the data, about one 1 MiB
read per MiB of file (a 4 GiB image with 1 GiB of data: 1032 reads and 1 GiB, instead of
32768 requests for 16 MiB of tables). From 64 KiB clusters up, tables are far apart and
only they are read.
"""

_RUN = 1 << 16
"""Offsets are sorted in runs of this many, then merged: no list of every offset at once."""


def entries(
    read_at: ReadAt, offset: int, count: int, fmt: str, what: str, *, empty: int = 0
) -> Iterator[tuple[int, tuple[int, ...]]]:
    """(index of the first entry, entries) for the `count` entries of `fmt` (e.g. ">Q").

    A chunk whose entries are all `empty` (unallocated) is not handed out: a sparse
    multi-TiB disk has megabytes of those, and comparing bytes costs nothing next to
    decoding them one by one.
    """
    width = struct.calcsize(fmt)
    per_read = MAX_READ // width
    blank = struct.pack(fmt, empty)
    for first in range(0, count, per_read):
        n = min(per_read, count - first)
        data = read_exact(read_at, offset + first * width, n * width, what)
        if data != blank * n:
            yield first, struct.unpack(f"{fmt[0]}{n}{fmt[1:]}", data)


class Offsets:
    """The file offsets of second-level tables, 8 bytes each however many there are."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._values = array("Q")

    def add(self, offset: int) -> None:
        self._values.append(offset)

    def __len__(self) -> int:
        return len(self._values)

    def ordered(self) -> Iterator[int]:
        """The offsets in increasing order; a table referenced twice is corrupt.

        No image writer shares a second-level table between two entries of the first
        level (qemu-img check calls it a refcount error), and a hostile image could
        otherwise make us read one table millions of times.
        """
        values = self._values
        for start in range(0, len(values), _RUN):
            values[start : start + _RUN] = array("Q", sorted(values[start : start + _RUN]))
        view = memoryview(values)  # slices of a view are windows, not copies
        runs = [iter(view[start : start + _RUN]) for start in range(0, len(values), _RUN)]
        previous = -1
        for offset in heapq.merge(*runs):
            if offset == previous:
                raise corrupt(f"{self._what} at offset {offset} is referenced twice")
            previous = offset
            yield offset


def read_tables(
    read_at: ReadAt, offsets: Iterable[int], size: int, what: str
) -> Iterator[tuple[int, bytes]]:
    """(offset, table bytes) for tables of `size` bytes at increasing `offsets`.

    Tables at most GAP apart share one read of up to MAX_READ bytes (or one table, if a
    table is larger), so a walk costs about one read per table, or fewer, and never holds
    more than one such read in memory.
    """
    span = max(MAX_READ, size)
    group: list[int] = []
    for offset in offsets:
        if group and (offset - (group[-1] + size) > GAP or offset + size - group[0] > span):
            yield from _read_group(read_at, group, size, what)
            group = []
        group.append(offset)
    if group:
        yield from _read_group(read_at, group, size, what)


def _read_group(
    read_at: ReadAt, group: list[int], size: int, what: str
) -> Iterator[tuple[int, bytes]]:
    start, end = group[0], group[-1] + size
    data = b"".join(
        read_exact(read_at, at, min(MAX_READ, end - at), what) for at in range(start, end, MAX_READ)
    )
    for offset in group:
        yield offset, data[offset - start : offset - start + size]
