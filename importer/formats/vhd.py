"""VHD (Virtual PC, qemu driver `vpc`): footer and dynamic-header inspection.

The virtual size follows qemu's rule (block/vpc.c) so our size checks agree with what
qemu-img will produce: images made by Virtual PC or qemu ('vpc ', 'qemu') have their size
given by the CHS geometry, others (Hyper-V, disk2vhd, Xen, 'qem2') by `current_size`, and
the maximum geometry always means `current_size`.

A footer counts only where a footer is: a fixed VHD is exactly `current_size` bytes of
disk followed by the footer, so the last sector of a raw disk that merely looks like a
footer for a smaller disk never makes us cut the disk short. A dynamic VHD keeps a copy of
its footer at offset 0 and the footer itself at the very end; a file without the latter
is truncated.
"""

from __future__ import annotations

from importer.errors import ImportFailure
from importer.formats.binary import (
    be16,
    be32,
    be64,
    corrupt,
    invalid,
    read_exact,
    unsafe,
)
from importer.formats.model import DiskFormat, ImageInfo, ReadAt
from importer.formats.tables import entries

FOOTER_SIZE = 512
DYNAMIC_HEADER_SIZE = 1024
COOKIE = b"conectix"
DYNAMIC_COOKIE = b"cxsparse"
TYPE_FIXED = 2
TYPE_DYNAMIC = 3
TYPE_DIFFERENCING = 4
MAX_GEOMETRY_SECTORS = 65535 * 16 * 255
MAX_SECTORS = 0xFF000000  # qemu: "Allow a maximum disk size of 2040 GiB"
MAX_BAT_BYTES = 16 * 1024 * 1024
MAX_BLOCK_SIZE = 256 * 1024 * 1024
NO_OFFSET = 0xFFFFFFFFFFFFFFFF
UNALLOCATED = 0xFFFFFFFF
# Footer fields that say how the disk is read: data offset, creator (it picks the size
# rule), sizes, geometry, disk type, identity. Both copies of a dynamic VHD's must agree.
_DEFINING_FIELDS = (
    (16, 24, "data offset"),
    (28, 32, "creator"),
    (40, 56, "size"),
    (56, 60, "geometry"),
    (60, 64, "disk type"),
    (68, 84, "unique id"),
)


def checksum(block: bytes, field: int) -> int:
    """One's complement of the byte sum, with the 4-byte checksum field at `field` zeroed."""
    total = sum(block) - sum(block[field : field + 4])
    return ~total & 0xFFFFFFFF


def footer_valid(footer: bytes) -> bool:
    return (
        len(footer) >= FOOTER_SIZE
        and footer[:8] == COOKIE
        and checksum(footer[:FOOTER_SIZE], 64) == be32(footer, 64)
    )


def disk_type(footer: bytes) -> int:
    return be32(footer, 60)


def virtual_size(footer: bytes) -> int:
    cylinders, heads, sectors = be16(footer, 56), footer[58], footer[59]
    chs_sectors = cylinders * heads * sectors
    current_size = be64(footer, 48)
    creator = footer[28:32]
    use_chs = creator in (b"vpc ", b"qemu")
    if not use_chs or chs_sectors in (MAX_GEOMETRY_SECTORS, 0):
        return current_size // 512 * 512
    return chs_sectors * 512


def vhd_fixed_payload(tail: bytes, total: int) -> int | None:
    """Payload size if `tail`, the last 512 bytes of a `total`-byte stream, is the footer of
    a fixed VHD whose disk is exactly the bytes before it.

    Used when a raw stream could not be inspected up front: the caller then trims the
    footer instead of writing it into the disk. Anything else (a footer declaring another
    size, a checksum mismatch) leaves every byte in place: a raw disk is never cut short.
    """
    if len(tail) != FOOTER_SIZE or not footer_valid(tail) or disk_type(tail) != TYPE_FIXED:
        return None
    payload = total - FOOTER_SIZE
    if be64(tail, 48) != payload or virtual_size(tail) > payload:
        return None
    return payload


def inspect_fixed_tail(tail: bytes, file_size: int) -> ImageInfo | None:
    """Inspect the footer of what looked raw; None when it is not a VHD footer at all."""
    if not footer_valid(tail):
        return None
    kind = disk_type(tail)
    if kind == TYPE_DIFFERENCING:
        raise unsafe("VHD differencing disk: it needs a parent image")
    if kind != TYPE_FIXED:
        raise invalid(f"VHD footer of disk type {kind} without the leading copy of a dynamic VHD")
    payload = file_size - FOOTER_SIZE
    size = virtual_size(tail)
    if be64(tail, 48) != payload or size > payload:
        raise corrupt(
            f"fixed VHD footer declares a disk of {be64(tail, 48)} bytes (read as {size}), "
            f"but {payload} bytes precede it: the file is truncated or the footer is not its own"
        )
    return ImageInfo(DiskFormat.VHD, size, payload_size=payload)


def inspect_vhd(read_at: ReadAt, file_size: int | None) -> ImageInfo:
    footer = read_exact(read_at, 0, FOOTER_SIZE, "VHD footer")
    if footer[:8] != COOKIE:
        if file_size is not None and file_size >= FOOTER_SIZE:
            tail = read_exact(read_at, file_size - FOOTER_SIZE, FOOTER_SIZE, "VHD footer")
            fixed = inspect_fixed_tail(tail, file_size)
            if fixed is not None:
                return fixed
        raise invalid("not a VHD image: no 'conectix' footer")
    if not footer_valid(footer):
        raise invalid("VHD footer checksum mismatch")
    kind = disk_type(footer)
    if kind == TYPE_DIFFERENCING:
        raise unsafe("VHD differencing disk: it needs a parent image")
    if kind != TYPE_DYNAMIC:
        raise invalid(f"VHD footer at offset 0 has disk type {kind}, expected dynamic (3)")
    size = virtual_size(footer)
    if size // 512 > MAX_SECTORS:
        raise unsafe(f"VHD virtual size {size} exceeds the format's 2040 GiB")
    if file_size is not None:
        _check_trailing_footer(read_at, footer, file_size)
    _check_dynamic_header(read_at, be64(footer, 16), size, file_size)
    return ImageInfo(DiskFormat.VHD, size)


def _check_trailing_footer(read_at: ReadAt, head: bytes, file_size: int) -> None:
    """A dynamic VHD ends with its footer; the copy at offset 0 must say the same."""
    if file_size < 2 * FOOTER_SIZE + DYNAMIC_HEADER_SIZE:
        raise corrupt(f"dynamic VHD of {file_size} bytes is too short to end with its footer")
    tail = read_exact(read_at, file_size - FOOTER_SIZE, FOOTER_SIZE, "VHD footer")
    if not footer_valid(tail):
        raise corrupt(
            f"dynamic VHD does not end with its footer (expected at offset "
            f"{file_size - FOOTER_SIZE}): the file is truncated"
        )
    for start, end, name in _DEFINING_FIELDS:
        if tail[start:end] != head[start:end]:
            raise corrupt(f"VHD footer at the end disagrees with the copy at offset 0 ({name})")


def _check_dynamic_header(read_at: ReadAt, offset: int, size: int, file_size: int | None) -> None:
    header = read_exact(read_at, offset, DYNAMIC_HEADER_SIZE, "VHD dynamic header")
    if header[:8] != DYNAMIC_COOKIE:
        raise invalid("VHD dynamic header has a bad cookie")
    if checksum(header, 36) != be32(header, 36):
        raise invalid("VHD dynamic header checksum mismatch")
    for i in range(8):
        entry = header[576 + 24 * i : 600 + 24 * i]
        if be32(entry, 0) != 0:
            raise unsafe("VHD dynamic header has a parent locator")
    count, block_size = be32(header, 28), be32(header, 32)
    if block_size < 512 or block_size & (block_size - 1) or block_size > MAX_BLOCK_SIZE:
        raise unsafe(f"VHD block size {block_size} is not a power of two in 512..256 MiB")
    if count * 4 > MAX_BAT_BYTES:
        raise unsafe(f"VHD block table of {count} entries is absurd")
    if count * block_size < size:
        raise invalid("VHD block table is too small for the virtual size")
    table_offset = be64(header, 16)
    if file_size is None:
        return
    # Everything, the block table and the blocks, lies before the footer at the end.
    data_end = file_size - FOOTER_SIZE
    if table_offset + count * 4 > data_end:
        raise _past_footer("VHD block table", table_offset, table_offset + count * 4, data_end)
    _check_blocks(read_at, table_offset, count, block_size, data_end)


def _check_blocks(read_at: ReadAt, offset: int, count: int, block_size: int, data_end: int) -> None:
    """Each allocated block, its sector bitmap then its data, ends before the footer.

    qemu itself refuses to open an image whose last block passes the end of the file
    ("The image has been truncated"); this says so before qemu-img runs, and precisely.
    """
    bitmap = (block_size // (8 * 512) + 511) & ~511  # qemu's bitmap_size, bytes
    table = entries(read_at, offset, count, ">I", "VHD block table", empty=UNALLOCATED)
    for first, values in table:
        for i, sector in enumerate(values, first):
            if sector == UNALLOCATED:
                continue
            start = sector * 512
            end = start + bitmap + block_size
            if end > data_end:
                raise _past_footer(f"VHD block {i}", start, end, data_end)


def _past_footer(what: str, start: int, end: int, footer_at: int) -> ImportFailure:
    return corrupt(
        f"{what} at offset {start} ends at {end}, past the footer at offset {footer_at}: "
        "the file is truncated or its block table is corrupt"
    )
