"""VHD (Virtual PC, qemu driver `vpc`): footer and dynamic-header inspection.

The virtual size follows qemu's rule (block/vpc.c) so our size checks agree with what
qemu-img will produce: images made by Virtual PC or qemu ('vpc ', 'qemu') have their size
given by the CHS geometry, others (Hyper-V, disk2vhd, Xen, 'qem2') by `current_size`, and
the maximum geometry always means `current_size`.
"""

from __future__ import annotations

from importer.formats.binary import be16, be32, be64, invalid, read_exact, unsafe
from importer.formats.model import DiskFormat, ImageInfo, ReadAt

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


def vhd_fixed_payload(tail: bytes) -> int | None:
    """Payload size if `tail` (the last 512 bytes of a stream) is a valid fixed-VHD footer.

    Used when a raw stream could not be inspected up front: the caller then trims the
    footer instead of writing it into the disk.
    """
    if len(tail) != FOOTER_SIZE or not footer_valid(tail) or disk_type(tail) != TYPE_FIXED:
        return None
    return be64(tail, 48)


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
    if be64(tail, 48) > payload or size > payload:
        raise invalid(f"fixed VHD is truncated: footer declares {be64(tail, 48)} bytes")
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
    _check_dynamic_header(read_at, be64(footer, 16), size, file_size)
    return ImageInfo(DiskFormat.VHD, size)


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
    entries, block_size = be32(header, 28), be32(header, 32)
    if block_size < 512 or block_size & (block_size - 1) or block_size > MAX_BLOCK_SIZE:
        raise unsafe(f"VHD block size {block_size} is not a power of two in 512..256 MiB")
    if entries * 4 > MAX_BAT_BYTES:
        raise unsafe(f"VHD block table of {entries} entries is absurd")
    if entries * block_size < size:
        raise invalid("VHD block table is too small for the virtual size")
    table_offset = be64(header, 16)
    if file_size is not None and table_offset + entries * 4 > file_size:
        raise invalid("VHD image is truncated: block table lies beyond the end of the file")
