"""VMDK sparse extents: the grain directory, its grain tables and their grains, inside the file.

qemu reads a grain that lies past the end of the file as zeros (or, compressed, fails on
it mid-conversion), so a truncated download must be refused before qemu-img opens it.
The walk reads the directory and the grain tables only: 2 KiB of table per 32 MiB of disk
with the usual 64 KiB grains. A compressed grain's length is in its marker, next to the
data: reading every marker would cost one read per grain, so only the marker of the grain
furthest into the file is read, which is the one a truncation cuts (the others only need
their marker's start inside the file).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from importer.formats.binary import beyond_end, ceil_div, corrupt, le32, read_exact
from importer.formats.model import ReadAt
from importer.formats.tables import Offsets, entries, read_tables

FLAG_RGD = 1 << 1
FLAG_ZERO_GRAIN = 1 << 2
FLAG_MARKER = 1 << 17
ZERO_GRAIN = 1  # a grain table entry meaning "reads as zeros" when FLAG_ZERO_GRAIN is set
MARKER_SIZE = 12  # lba (8) + size (4) before a compressed grain's data


@dataclass(frozen=True)
class Layout:
    """What the walk needs from the effective header (the footer's, for a stream)."""

    capacity: int  # sectors
    grain: int  # sectors
    gtes: int
    gd_offset: int  # sectors
    rgd_offset: int  # sectors; 0 when there is no redundant directory
    zero_grain: bool
    compressed: bool
    markers: bool
    file_size: int


def check_tables(read_at: ReadAt, layout: Layout) -> None:
    size = layout.file_size
    count = ceil_div(layout.capacity, layout.gtes * layout.grain)
    directories = [("VMDK grain directory", layout.gd_offset)]
    if layout.rgd_offset:  # qemu reads the redundant copy too, to keep it up to date
        directories.append(("VMDK redundant grain directory", layout.rgd_offset))
    for what, sector in directories:
        if sector * 512 + count * 4 > size:
            raise beyond_end(what, sector * 512, sector * 512 + count * 4, size)
    table_bytes = layout.gtes * 4
    tables = Offsets("VMDK grain table")
    # The grain that straddles the end of the disk is only read up to the end.
    last_grain, tail_sectors = divmod(layout.capacity, layout.grain)
    tail_directory, tail_entry = divmod(last_grain, layout.gtes)
    tail_table: int | None = None
    gd = entries(read_at, layout.gd_offset * 512, count, "<I", "VMDK grain directory")
    for first, values in gd:
        for i, sector in enumerate(values, first):
            if not sector:
                continue
            start = sector * 512
            if start + table_bytes > size:
                what = f"VMDK grain table (directory entry {i})"
                raise beyond_end(what, start, start + table_bytes, size)
            tables.add(start)
            if tail_sectors and i == tail_directory:
                tail_table = start
    walk = read_tables(read_at, tables.ordered(), table_bytes, "VMDK grain table")
    last = 0
    for table_at, table in walk:
        tail = tail_entry if table_at == tail_table else -1
        last = max(last, _check_grain_table(layout, table_at, table, tail, tail_sectors * 512))
    if last and layout.compressed and layout.markers:
        _check_last_marker(read_at, layout, last)


def _check_last_marker(read_at: ReadAt, layout: Layout, start: int) -> None:
    """The compressed grain furthest into the file ends inside it."""
    length = le32(read_exact(read_at, start, MARKER_SIZE, "VMDK grain marker"), 8)
    if not 0 < length <= 2 * layout.grain * 512:  # qemu refuses these when it reads them
        raise corrupt(f"VMDK compressed grain at offset {start} declares {length} bytes")
    end = start + MARKER_SIZE + length
    if end > layout.file_size:
        raise beyond_end("VMDK compressed grain", start, end, layout.file_size)


def _check_grain_table(
    layout: Layout, table_at: int, table: bytes, tail: int, tail_bytes: int
) -> int:
    """Check one grain table; return the largest grain offset it names (0 if none)."""
    size = layout.file_size
    last = 0
    for index, sector in enumerate(struct.unpack(f"<{len(table) // 4}I", table)):
        if not sector or (sector == ZERO_GRAIN and layout.zero_grain):
            continue
        if layout.compressed:
            needed = MARKER_SIZE if layout.markers else 1
        else:
            needed = tail_bytes if index == tail else layout.grain * 512
        start = sector * 512
        if start + needed > size:
            what = f"VMDK grain (grain table at {table_at}, entry {index})"
            raise beyond_end(what, start, start + needed, size)
        last = max(last, start)
    return last
