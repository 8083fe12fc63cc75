"""VDI (VirtualBox) header inspection, with qemu's limits (block/vdi.c)."""

from __future__ import annotations

from importer.formats.binary import ceil_div, invalid, le32, le64, read_exact, unsafe, unsupported
from importer.formats.model import DiskFormat, ImageInfo, ReadAt

HEADER_SIZE = 512
SIGNATURE = 0xBEDA107F
VERSION_1_1 = 0x00010001
TYPE_NORMAL = 1
TYPE_FIXED = 2
TYPE_UNDO = 3
TYPE_DIFF = 4
BLOCK_SIZE = 1024 * 1024  # the only block size qemu reads
MAX_BLOCKS = 0x3FFFFFFF // 4  # keeps the block map qemu allocates under 1 GiB
MAX_DISK_SIZE = MAX_BLOCKS * BLOCK_SIZE
SLACK_BLOCKS = 1024
NULL_UUID = bytes(16)


def inspect_vdi(read_at: ReadAt, file_size: int | None) -> ImageInfo:
    header = read_exact(read_at, 0, HEADER_SIZE, "VDI header")
    if le32(header, 0x40) != SIGNATURE:
        raise invalid("not a VDI image: bad signature")
    version = le32(header, 0x44)
    if version != VERSION_1_1:
        raise unsupported(f"unsupported VDI version 0x{version:08x}")
    image_type = le32(header, 0x4C)
    if image_type in (TYPE_UNDO, TYPE_DIFF) or header[0x1A8:0x1C8] != NULL_UUID * 2:
        raise unsafe("VDI differencing image: it needs a parent image")
    if image_type not in (TYPE_NORMAL, TYPE_FIXED):
        raise invalid(f"VDI image type {image_type} is unknown")

    offset_bmap, offset_data = le32(header, 0x154), le32(header, 0x158)
    if offset_bmap % 512 or offset_data % 512:
        raise invalid("VDI block map or data offset is not sector aligned")
    if le32(header, 0x168) != 512:
        raise unsupported(f"VDI sector size {le32(header, 0x168)} is not supported")
    if le32(header, 0x178) != BLOCK_SIZE:
        raise unsupported(f"VDI block size {le32(header, 0x178)} is not supported")

    disk_size = le64(header, 0x170)
    blocks = le32(header, 0x180)
    if disk_size > MAX_DISK_SIZE:
        raise unsafe(f"VDI virtual size {disk_size} is absurd")
    needed = ceil_div(disk_size, BLOCK_SIZE)
    if blocks < needed:
        raise invalid("VDI block map is too small for the virtual size")
    if blocks > needed + SLACK_BLOCKS:
        raise unsafe(f"VDI block map of {blocks} entries is absurd for its virtual size")
    if file_size is not None and offset_bmap + blocks * 4 > file_size:
        raise invalid("VDI image is truncated: block map lies beyond the end of the file")
    # qemu rounds sizes VirtualBox left unaligned up to whole sectors.
    return ImageInfo(DiskFormat.VDI, ceil_div(disk_size, 512) * 512)
