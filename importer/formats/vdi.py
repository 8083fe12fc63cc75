"""VDI (VirtualBox) header inspection, with qemu's limits (block/vdi.c).

When the file size is known, the block map is walked too: every allocated block must be
one of the image's blocks and lie inside the file, or qemu would read zeros for it.
"""

from __future__ import annotations

from importer.formats.binary import (
    beyond_end,
    ceil_div,
    corrupt,
    invalid,
    le32,
    le64,
    read_exact,
    unsafe,
    unsupported,
)
from importer.formats.model import DiskFormat, ImageInfo, ReadAt
from importer.formats.tables import entries

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
FREE = 0xFFFFFFFF  # the block reads as zeros (never written)
ZERO = 0xFFFFFFFE  # the block reads as zeros (discarded)


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
    # qemu rounds sizes VirtualBox left unaligned up to whole sectors.
    size = ceil_div(disk_size, 512) * 512
    if file_size is not None:
        if offset_bmap + blocks * 4 > file_size:
            raise beyond_end("VDI block map", offset_bmap, offset_bmap + blocks * 4, file_size)
        _check_blocks(read_at, offset_bmap, blocks, data=offset_data, size=size, end=file_size)
    return ImageInfo(DiskFormat.VDI, size)


def _check_blocks(
    read_at: ReadAt, offset_bmap: int, blocks: int, *, data: int, size: int, end: int
) -> None:
    """Allocated entries name one of the `blocks` blocks at `data`, inside the `end` bytes."""
    for first, values in entries(read_at, offset_bmap, blocks, "<I", "VDI block map", empty=FREE):
        for i, entry in enumerate(values, first):
            if entry in (FREE, ZERO):
                continue
            if entry >= blocks:  # qemu-img check calls this "block index too large"
                raise corrupt(f"VDI block map entry {i} names block {entry} of {blocks}")
            start = data + entry * BLOCK_SIZE
            # The block that straddles the end of the disk is read up to the end only.
            tail = size - i * BLOCK_SIZE
            needed = tail if 0 < tail < BLOCK_SIZE else BLOCK_SIZE
            if start + needed > end:
                what = f"VDI block {entry} (block map entry {i})"
                raise beyond_end(what, start, start + needed, end)
