"""qcow2: every cluster the tables point at must lie inside the image as served.

qemu reads past the end of its input as zeros, so a qcow2 cut short (a partial file on a
mirror) converts "successfully" into a disk with holes. Walking the L1 table, the L2 tables
it points at, the refcount table and the snapshot table costs reads in proportion to the
tables (for a 64 KiB-cluster image, one 64 KiB L2 table per 512 MiB of disk), never to the
data. Entry layouts and reserved bits follow docs/interop/qcow2.txt in qemu.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from importer.formats.binary import (
    MAX_READ,
    beyond_end,
    ceil_div,
    corrupt,
    invalid,
    read_exact,
    unsafe,
)
from importer.formats.model import ReadAt
from importer.formats.tables import Offsets, entries, read_tables

OFFSET_MASK = 0x00FFFFFFFFFFFE00  # bits 9-55: a host offset
COPIED = 1 << 63
COMPRESSED = 1 << 62
ZERO = 1 << 0
L1_RESERVED = ~(OFFSET_MASK | COPIED) & (2**64 - 1)  # bits 0-8 and 56-62
L2_RESERVED = 0x3F000000000001FE  # bits 1-8 and 56-61 of a standard cluster descriptor
REFTABLE_RESERVED = 0x1FF
SUBCLUSTERS = 32
SNAPSHOT_HEADER = 40
MAX_SNAPSHOT_EXTRA = 1024  # QCOW_MAX_SNAPSHOT_EXTRA_DATA
MAX_SNAPSHOT_TABLE = 64 * 1024 * 1024  # QCOW_MAX_SNAPSHOTS_SIZE
MAX_L1_ENTRIES = 32 * 1024 * 1024 // 8


@dataclass(frozen=True)
class Layout:
    """What the table walk needs from the header, already checked for sanity."""

    version: int
    cluster_bits: int
    refcount_bits: int
    virtual_size: int
    extended_l2: bool
    file_size: int

    @property
    def cluster_size(self) -> int:
        return 1 << self.cluster_bits


def check_tables(read_at: ReadAt, header: bytes, layout: Layout) -> None:
    """Walk every table of the image; refuse (CORRUPT_IMAGE) what points outside the file."""
    _check_refcount_table(read_at, header, layout)
    _check_snapshots(read_at, header, layout)
    _L2Walk(read_at, layout).run(l1_offset=_be64(header, 40), l1_size=_be32(header, 36))


def _be32(data: bytes, offset: int) -> int:
    return int(struct.unpack_from(">I", data, offset)[0])


def _be64(data: bytes, offset: int) -> int:
    return int(struct.unpack_from(">Q", data, offset)[0])


def _check_refcount_table(read_at: ReadAt, header: bytes, layout: Layout) -> None:
    """Refcount blocks lie inside the file.

    Only the entries that describe clusters of the file are read: the table is allocated
    in whole clusters (2 MiB of mostly zeros with 2 MiB clusters), and an entry for
    clusters past the end of the file is never used by a read-only conversion.
    """
    offset, clusters = _be64(header, 48), _be32(header, 56)
    cluster = layout.cluster_size
    per_block = cluster * 8 // layout.refcount_bits
    needed = ceil_div(ceil_div(layout.file_size, cluster), per_block)
    count = min(clusters * cluster // 8, needed)
    for first, values in entries(read_at, offset, count, ">Q", "qcow2 refcount table"):
        for i, entry in enumerate(values, first):
            if not entry:
                continue
            where = f"qcow2 refcount table entry {i}"
            if entry & REFTABLE_RESERVED:
                raise corrupt(f"{where} has reserved bits set (0x{entry:016x})")
            if entry % cluster:
                raise corrupt(f"{where} points at unaligned offset {entry}")
            if entry + cluster > layout.file_size:
                what = f"qcow2 refcount block (refcount table entry {i})"
                raise beyond_end(what, entry, entry + cluster, layout.file_size)


def _check_snapshots(read_at: ReadAt, header: bytes, layout: Layout) -> None:
    """The snapshot table and each snapshot's L1 table lie inside the file.

    qemu reads the whole table when it opens the image; the snapshots' L2 tables are never
    read by a conversion of the active disk, so they are not walked.
    """
    count, start = _be32(header, 60), _be64(header, 64)
    if not count:
        return
    cursor = _Cursor(read_at, start, min(layout.file_size, start + MAX_SNAPSHOT_TABLE))
    for i in range(count):
        cursor.align(8)
        entry = cursor.take(SNAPSHOT_HEADER)
        l1_offset, l1_size = _be64(entry, 0), _be32(entry, 8)
        id_size, name_size = struct.unpack_from(">HH", entry, 12)
        extra = _be32(entry, 36)
        if extra > MAX_SNAPSHOT_EXTRA:
            raise invalid(f"qcow2 snapshot {i} has {extra} bytes of extra data (limit 1024)")
        cursor.skip(extra + id_size + name_size)
        if l1_size > MAX_L1_ENTRIES:
            raise unsafe(f"qcow2 snapshot {i} has an L1 table of {l1_size} entries")
        if l1_offset % layout.cluster_size:
            raise corrupt(f"qcow2 snapshot {i} L1 table offset {l1_offset} is not aligned")
        end = l1_offset + l1_size * 8
        if end > layout.file_size:
            raise beyond_end(f"qcow2 snapshot {i} L1 table", l1_offset, end, layout.file_size)


class _Cursor:
    """Reads a variable-length table front to back, one bounded read at a time."""

    def __init__(self, read_at: ReadAt, start: int, end: int) -> None:
        self._read_at = read_at
        self._start = self._pos = start
        self._end = end
        self._buffer = b""
        self._buffer_at = start

    def align(self, alignment: int) -> None:
        self._pos = self._start + ceil_div(self._pos - self._start, alignment) * alignment

    def skip(self, length: int) -> None:
        self._pos += length

    def take(self, length: int) -> bytes:
        if self._pos + length > self._end:
            raise corrupt(
                f"qcow2 snapshot table starting at offset {self._start} runs past "
                f"offset {self._end} (the end of the image, or 64 MiB)"
            )
        inner = self._pos - self._buffer_at
        if inner < 0 or inner + length > len(self._buffer):
            self._buffer_at = self._pos
            size = min(MAX_READ, self._end - self._pos)
            self._buffer = read_exact(self._read_at, self._pos, size, "qcow2 snapshot table")
            inner = 0
        self._pos += length
        return self._buffer[inner : inner + length]


class _L2Walk:
    """The active L1 table, then each L2 table it points at, in file order."""

    def __init__(self, read_at: ReadAt, layout: Layout) -> None:
        self._read_at = read_at
        self._layout = layout
        cluster = layout.cluster_size
        self._l2_entries = cluster // (16 if layout.extended_l2 else 8)
        # The guest cluster that straddles the end of the disk is only read up to the end.
        tail = layout.virtual_size % cluster
        self._tail: tuple[int, int] | None = None
        self._tail_bytes = tail
        if tail:
            last = layout.virtual_size // cluster
            self._tail = divmod(last, self._l2_entries)
        self._tail_table: int | None = None
        # Compressed descriptors: host offset in bits 0..x-1, extra sectors in x..61.
        self._x = 62 - (layout.cluster_bits - 8)
        # qemu reads compressed data past a file end that is not sector-aligned as zeros,
        # and its own images may end inside the last compressed cluster's final sector.
        self._compressed_limit = ceil_div(layout.file_size, 512) * 512

    def run(self, l1_offset: int, l1_size: int) -> None:
        layout, cluster = self._layout, self._layout.cluster_size
        tables = Offsets("qcow2 L2 table")
        for first, values in entries(self._read_at, l1_offset, l1_size, ">Q", "qcow2 L1 table"):
            for i, entry in enumerate(values, first):
                if not entry:
                    continue
                where = f"qcow2 L1 table entry {i}"
                if entry & L1_RESERVED:
                    raise corrupt(f"{where} has reserved bits set (0x{entry:016x})")
                offset = entry & OFFSET_MASK
                if not offset:
                    raise corrupt(f"{where} has flags but no L2 table (0x{entry:016x})")
                if offset % cluster:
                    raise corrupt(f"{where} points at unaligned offset {offset}")
                if offset + cluster > layout.file_size:
                    what = f"qcow2 L2 table (L1 entry {i})"
                    raise beyond_end(what, offset, offset + cluster, layout.file_size)
                tables.add(offset)
                if self._tail is not None and i == self._tail[0]:
                    self._tail_table = offset
        walk = read_tables(self._read_at, tables.ordered(), cluster, "qcow2 L2 table")
        for offset, table in walk:
            self._check_l2(offset, table)

    def _check_l2(self, table_at: int, table: bytes) -> None:
        values = struct.unpack(f">{len(table) // 8}Q", table)
        tail_index = -1
        if self._tail is not None and table_at == self._tail_table:
            tail_index = self._tail[1]
        if self._layout.extended_l2:
            for index in range(self._l2_entries):
                entry, bitmap = values[2 * index], values[2 * index + 1]
                if entry or bitmap:
                    self._check_entry(table_at, index, entry, bitmap, index == tail_index)
            return
        # The common entry (an aligned cluster well inside the file, no flag but COPIED) is
        # settled here in a few operations: images with small clusters have millions.
        cluster = self._layout.cluster_size
        unusual = ~(OFFSET_MASK | COPIED) & (2**64 - 1) | (cluster - 1)
        last_start = self._layout.file_size - cluster
        for index, entry in enumerate(values):
            if not entry:
                continue
            if entry & unusual or index == tail_index or not 0 < entry & OFFSET_MASK <= last_start:
                self._check_entry(table_at, index, entry, 0, index == tail_index)

    def _check_entry(self, table_at: int, index: int, entry: int, bitmap: int, tail: bool) -> None:
        layout = self._layout
        where = f"qcow2 L2 table at offset {table_at}, entry {index}"
        if entry & COMPRESSED:
            self._check_compressed(where, entry, bitmap)
            return
        if entry & L2_RESERVED:
            raise corrupt(f"{where} has reserved bits set (0x{entry:016x})")
        if entry & ZERO and (layout.version == 2 or layout.extended_l2):
            raise corrupt(f"{where} has the zero flag, which this image cannot use")
        offset = entry & OFFSET_MASK
        cluster = layout.cluster_size
        needed = cluster
        if layout.extended_l2:
            allocated, zeroed = bitmap & 0xFFFFFFFF, bitmap >> 32
            if allocated & zeroed:
                raise corrupt(f"{where} marks subclusters both allocated and zero")
            # Only allocated subclusters are read; qemu's own files end after the last one.
            needed = allocated.bit_length() * (cluster // SUBCLUSTERS)
        if not offset:
            if entry & COPIED or (layout.extended_l2 and needed):
                raise corrupt(f"{where} has no host cluster but is flagged allocated")
            return
        if offset % cluster:
            raise corrupt(f"{where} points at unaligned offset {offset}")
        if tail:
            needed = min(needed, self._tail_bytes)
        if offset + needed > layout.file_size:
            what = f"qcow2 data cluster (L2 table at {table_at}, entry {index})"
            raise beyond_end(what, offset, offset + needed, layout.file_size)

    def _check_compressed(self, where: str, entry: int, bitmap: int) -> None:
        if entry & COPIED:
            raise corrupt(f"{where}: a compressed cluster has the copied flag")
        if bitmap:
            raise corrupt(f"{where}: a compressed cluster has a subcluster bitmap")
        x = self._x
        offset = entry & ((1 << x) - 1)
        if offset >> 56:
            raise corrupt(f"{where}: compressed cluster offset uses reserved bits")
        sectors = ((entry >> x) & ((1 << (62 - x)) - 1)) + 1
        end = (offset & ~511) + sectors * 512
        if end > self._compressed_limit:
            what = f"qcow2 compressed cluster ({where.removeprefix('qcow2 ')})"
            raise beyond_end(what, offset, end, self._layout.file_size)
