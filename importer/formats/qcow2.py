"""qcow2 (versions 2 and 3) header inspection.

Refuses what would make qemu-img read other files (backing file, external data file),
what it cannot read without secrets (encryption), and header fields that would make it
allocate tables out of proportion to the disk. Limits mirror qemu's own (block/qcow2.h)
so that anything we pass, qemu opens. When the file size is known, every table is then
walked (qcow2_tables) so that a truncated or inconsistent image is refused too.
"""

from __future__ import annotations

from importer.formats import qcow2_tables
from importer.formats.binary import (
    Window,
    be32,
    be64,
    beyond_end,
    ceil_div,
    invalid,
    read_exact,
    unsafe,
    unsupported,
)
from importer.formats.model import DiskFormat, ImageInfo, ReadAt

V2_HEADER_LENGTH = 72
V3_MIN_HEADER_LENGTH = 104
MIN_CLUSTER_BITS = 9
MAX_CLUSTER_BITS = 21
MAX_L1_BYTES = 32 * 1024 * 1024  # QCOW_MAX_L1_SIZE
MAX_REFTABLE_BYTES = 8 * 1024 * 1024  # QCOW_MAX_REFTABLE_SIZE
MAX_SNAPSHOTS = 65536
MAX_VIRTUAL_SIZE = 1 << 62
MAX_HEADER_EXTENSIONS = 4096

INCOMPAT_DIRTY = 1 << 0
INCOMPAT_CORRUPT = 1 << 1
INCOMPAT_DATA_FILE = 1 << 2
INCOMPAT_COMPRESSION = 1 << 3
INCOMPAT_EXTL2 = 1 << 4
KNOWN_INCOMPAT = (
    INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2
)

EXT_END = 0
EXT_DATA_FILE = 0x44415441
EXT_ENCRYPTION = 0x0537BE77


def inspect_qcow2(read_at: ReadAt, file_size: int | None) -> ImageInfo:
    header = read_exact(read_at, 0, V2_HEADER_LENGTH, "qcow2 header")
    if header[:4] != b"QFI\xfb":
        raise invalid("not a qcow2 image: bad magic")
    version = be32(header, 4)
    if version not in (2, 3):
        raise unsupported(f"unsupported image format: qcow version {version}")
    if be64(header, 8) != 0:
        raise unsafe("qcow2 image has a backing file; only standalone images are accepted")
    cluster_bits = be32(header, 20)
    if not MIN_CLUSTER_BITS <= cluster_bits <= MAX_CLUSTER_BITS:
        raise unsafe(f"qcow2 cluster_bits {cluster_bits} outside {MIN_CLUSTER_BITS}..21")
    cluster_size = 1 << cluster_bits
    size = be64(header, 24)
    if be32(header, 32) != 0:
        raise unsafe("qcow2 image is encrypted")

    incompat, header_length, refcount_order = 0, V2_HEADER_LENGTH, 4
    if version == 3:
        incompat, header_length, refcount_order = _v3_fields(read_at, file_size, cluster_size)
    extended_l2 = bool(incompat & INCOMPAT_EXTL2)
    if extended_l2 and cluster_bits < 14:
        raise invalid("qcow2 extended L2 entries need clusters of at least 16 KiB")

    _check_tables(header, size, cluster_size, extended_l2, file_size)
    _check_extensions(read_at, header_length, cluster_size)
    if file_size is not None:
        # Without the size nothing can be said to lie beyond the end: the pipeline always
        # knows it where it converts (a ranged source's length, or the scratch file's).
        layout = qcow2_tables.Layout(
            version, cluster_bits, 1 << refcount_order, size, extended_l2, file_size
        )
        qcow2_tables.check_tables(read_at, header, layout)
    return ImageInfo(DiskFormat.QCOW2, size)


def _v3_fields(read_at: ReadAt, file_size: int | None, cluster_size: int) -> tuple[int, int, int]:
    """(incompatible features, header length, refcount order) of a version 3 header."""
    header = read_exact(read_at, 0, V3_MIN_HEADER_LENGTH, "qcow2 v3 header")
    header_length = be32(header, 100)
    if header_length < V3_MIN_HEADER_LENGTH:
        raise invalid(f"qcow2 header length {header_length} is shorter than 104")
    if header_length > cluster_size:
        raise invalid(f"qcow2 header length {header_length} exceeds the cluster size")
    if file_size is not None and file_size < header_length:
        raise invalid(f"qcow2 header is truncated: declares {header_length} bytes")

    incompat = be64(header, 72)
    if incompat & INCOMPAT_DATA_FILE:
        raise unsafe("qcow2 image uses an external data file")
    if incompat & INCOMPAT_CORRUPT:
        raise invalid("qcow2 image is marked corrupt")
    if incompat & ~KNOWN_INCOMPAT:
        raise unsupported(
            f"qcow2 image uses unknown incompatible features 0x{incompat & ~KNOWN_INCOMPAT:x}"
        )
    refcount_order = be32(header, 96)
    if refcount_order > 6:
        raise invalid(f"qcow2 refcount_order {refcount_order} is larger than 6")

    compression = 0
    if header_length > V3_MIN_HEADER_LENGTH:
        compression = read_exact(read_at, V3_MIN_HEADER_LENGTH, 1, "qcow2 header")[0]
    if compression not in (0, 1):
        raise unsupported(f"qcow2 compression type {compression} is not supported")
    if compression != 0 and not incompat & INCOMPAT_COMPRESSION:
        raise invalid("qcow2 compression type set without its incompatible feature bit")
    return incompat, header_length, refcount_order


def _check_tables(
    header: bytes, size: int, cluster_size: int, extended_l2: bool, file_size: int | None
) -> None:
    """The L1/refcount/snapshot tables must be proportionate to the disk and inside the file."""
    if size > MAX_VIRTUAL_SIZE:
        raise unsafe(f"qcow2 virtual size {size} is absurd")
    l2_entries = cluster_size // (16 if extended_l2 else 8)
    l1_needed = ceil_div(size, cluster_size * l2_entries)
    if l1_needed * 8 > MAX_L1_BYTES:
        raise unsafe(f"qcow2 virtual size {size} needs an L1 table of {l1_needed} entries")
    l1_size = be32(header, 36)
    l1_offset = be64(header, 40)
    if l1_size * 8 > MAX_L1_BYTES:
        raise unsafe(f"qcow2 L1 table of {l1_size} entries is absurd")
    if l1_size < l1_needed:
        raise invalid(f"qcow2 L1 table ({l1_size} entries) too small for virtual size {size}")
    if l1_size and l1_offset % cluster_size:
        raise invalid("qcow2 L1 table offset is not cluster aligned")
    if l1_size and file_size is not None and l1_offset + l1_size * 8 > file_size:
        raise beyond_end("qcow2 L1 table", l1_offset, l1_offset + l1_size * 8, file_size)

    refcount_offset = be64(header, 48)
    refcount_clusters = be32(header, 56)
    if refcount_clusters == 0:
        raise invalid("qcow2 image has no refcount table")
    if refcount_clusters * cluster_size > MAX_REFTABLE_BYTES:
        raise unsafe(f"qcow2 refcount table of {refcount_clusters} clusters is absurd")
    if refcount_offset % cluster_size:
        raise invalid("qcow2 refcount table offset is not cluster aligned")
    refcount_end = refcount_offset + refcount_clusters * cluster_size
    if file_size is not None and refcount_end > file_size:
        raise beyond_end("qcow2 refcount table", refcount_offset, refcount_end, file_size)

    snapshots = be32(header, 60)
    if snapshots > MAX_SNAPSHOTS:
        raise unsafe(f"qcow2 image declares {snapshots} snapshots")
    if snapshots and be64(header, 64) % cluster_size:
        raise invalid("qcow2 snapshot table offset is not cluster aligned")


def _check_extensions(read_at: ReadAt, start: int, cluster_size: int) -> None:
    """Walk the header extensions in the first cluster, refusing references to other files."""
    window = Window(read_at, cluster_size, "qcow2 header extensions")
    offset = start
    for _ in range(MAX_HEADER_EXTENSIONS):
        if offset + 8 > cluster_size:
            return  # the area ends with the cluster; qemu accepts a missing end marker
        entry = window.get(offset, 8)
        kind, length = be32(entry, 0), be32(entry, 4)
        if kind == EXT_END:
            return
        if kind == EXT_DATA_FILE:
            raise unsafe("qcow2 image names an external data file")
        if kind == EXT_ENCRYPTION:
            raise unsafe("qcow2 image is encrypted")
        offset += 8 + (length + 7) // 8 * 8
        if offset > cluster_size:
            raise invalid("qcow2 header extension overflows the first cluster")
    raise invalid("qcow2 image has too many header extensions")
