"""VHDX inspection: headers, region table and metadata, with qemu's rules (block/vhdx.c).

qemu-img reads the whole BAT region into memory, so its length is checked against what
the virtual size needs. A log that needs replaying cannot be handled read-only and a
differencing disk needs its parent: both are refused before qemu-img opens the file.
When the file size is known, every present block the BAT points at must lie inside it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from importer.formats.binary import (
    beyond_end,
    ceil_div,
    corrupt,
    invalid,
    le16,
    le32,
    le64,
    read_exact,
    unsafe,
    unsupported,
)
from importer.formats.crc32c import crc32c
from importer.formats.model import DiskFormat, ImageInfo, ReadAt
from importer.formats.tables import entries

KiB, MiB = 1024, 1024 * 1024
SIGNATURE = b"vhdxfile"
HEADER_OFFSETS = (64 * KiB, 128 * KiB)
HEADER_SIZE = 4 * KiB
REGION_TABLE_OFFSETS = (192 * KiB, 256 * KiB)
REGION_TABLE_SIZE = 64 * KiB
METADATA_TABLE_SIZE = 64 * KiB
MAX_ENTRIES = 2047
MAX_VIRTUAL_SIZE = 64 * 1024**4
MAX_SECTORS_PER_BLOCK = 1 << 23


def _guid(text: str) -> bytes:
    return uuid.UUID(text).bytes_le


BAT_REGION = _guid("2DC27766-F623-4200-9D64-115E9BFD4A08")
METADATA_REGION = _guid("8B7CA206-4790-4B9A-B8FE-575F050F886E")
FILE_PARAMETERS = _guid("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
VIRTUAL_DISK_SIZE = _guid("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
PAGE83_DATA = _guid("BECA12AB-B2E6-4523-93EF-C309E000C746")
LOGICAL_SECTOR_SIZE = _guid("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
PHYSICAL_SECTOR_SIZE = _guid("CDA348C7-445D-4471-9CC9-E9885251C556")
PARENT_LOCATOR = _guid("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")
KNOWN_METADATA = frozenset(
    {FILE_PARAMETERS, VIRTUAL_DISK_SIZE, PAGE83_DATA, LOGICAL_SECTOR_SIZE, PHYSICAL_SECTOR_SIZE}
)
HAS_PARENT = 1 << 1
METADATA_IS_REQUIRED = 1 << 2
# BAT entry states (bits 0-2); the file offset is in bits 20-63, in MiB.
STATE_MASK = 0x7
OFFSET_MASK = ~0xFFFFF & (2**64 - 1)
PAYLOAD_FULLY_PRESENT = 6
PAYLOAD_PARTIALLY_PRESENT = 7
PAYLOAD_UNKNOWN = 4  # undefined by the spec; qemu fails the read
SB_PRESENT = 6


def inspect_vhdx(read_at: ReadAt, file_size: int | None) -> ImageInfo:
    if read_exact(read_at, 0, 8, "VHDX file identifier") != SIGNATURE:
        raise invalid("not a VHDX image: bad file identifier")
    _check_header(read_at)
    regions = _region_table(read_at)
    if BAT_REGION not in regions or METADATA_REGION not in regions:
        raise invalid("VHDX region table lacks the BAT or metadata region")
    for offset, length in regions.values():
        if offset % MiB or offset < MiB:
            raise invalid("VHDX region is not 1 MiB aligned")
        if file_size is not None and offset + length > file_size:
            raise beyond_end("VHDX region", offset, offset + length, file_size)
    size, block_size, sector_size = _metadata(read_at, *regions[METADATA_REGION])
    count = _check_bat(size, block_size, sector_size, regions[BAT_REGION][1])
    if file_size is not None:
        geometry = _Geometry(size, block_size, sector_size, file_size)
        _check_blocks(read_at, regions[BAT_REGION][0], count, geometry)
    return ImageInfo(DiskFormat.VHDX, size)


def _check_header(read_at: ReadAt) -> None:
    """Pick the current header (valid checksum, highest sequence number) and check it."""
    current: bytes | None = None
    for offset in HEADER_OFFSETS:
        header = read_exact(read_at, offset, HEADER_SIZE, "VHDX header")
        if header[:4] != b"head" or not _checksum_ok(header):
            continue
        if current is None or le64(header, 8) > le64(current, 8):
            current = header
    if current is None:
        raise invalid("VHDX has no valid header (signature or checksum mismatch)")
    if le16(current, 66) != 1:
        raise unsupported(f"unsupported VHDX version {le16(current, 66)}")
    if current[48:64] != bytes(16):
        raise invalid("VHDX log needs replay (image was not closed cleanly)")


def _checksum_ok(block: bytes) -> bool:
    zeroed = block[:4] + bytes(4) + block[8:]
    return crc32c(zeroed) == le32(block, 4)


def _region_table(read_at: ReadAt) -> dict[bytes, tuple[int, int]]:
    """The first valid region table: GUID -> (file offset, length)."""
    for offset in REGION_TABLE_OFFSETS:
        table = read_exact(read_at, offset, REGION_TABLE_SIZE, "VHDX region table")
        if table[:4] == b"regi" and _checksum_ok(table):
            break
    else:
        raise invalid("VHDX has no valid region table (signature or checksum mismatch)")
    count = le32(table, 8)
    if count > MAX_ENTRIES:
        raise invalid(f"VHDX region table has {count} entries")
    regions: dict[bytes, tuple[int, int]] = {}
    for i in range(count):
        entry = table[16 + 32 * i : 48 + 32 * i]
        guid, required = entry[:16], le32(entry, 28) & 1
        if guid in regions:
            raise invalid("VHDX region table lists a region twice")
        if guid not in (BAT_REGION, METADATA_REGION) and required:
            raise unsupported("VHDX image requires an unknown region")
        regions[guid] = (le64(entry, 16), le32(entry, 24))
    return regions


def _metadata(read_at: ReadAt, region_offset: int, region_length: int) -> tuple[int, int, int]:
    """(virtual size, block size, logical sector size) from the metadata region."""
    if region_length < METADATA_TABLE_SIZE:
        raise invalid("VHDX metadata region is too small")
    table = read_exact(read_at, region_offset, METADATA_TABLE_SIZE, "VHDX metadata table")
    if table[:8] != b"metadata":
        raise invalid("VHDX metadata table has a bad signature")
    count = le16(table, 10)
    if count > MAX_ENTRIES:
        raise invalid(f"VHDX metadata table has {count} entries")
    items: dict[bytes, tuple[int, int]] = {}
    for i in range(count):
        entry = table[32 + 32 * i : 64 + 32 * i]
        guid, offset, length, flags = entry[:16], le32(entry, 16), le32(entry, 20), le32(entry, 24)
        if guid == PARENT_LOCATOR:
            raise unsafe("VHDX differencing disk: it has a parent locator")
        if guid not in KNOWN_METADATA and flags & METADATA_IS_REQUIRED:
            raise unsupported("VHDX image requires unknown metadata")
        if length and (offset < METADATA_TABLE_SIZE or offset + length > region_length):
            raise invalid("VHDX metadata item lies outside its region")
        items[guid] = (region_offset + offset, length)

    def item(guid: bytes, size: int, what: str) -> bytes:
        if guid not in items or items[guid][1] < size:
            raise invalid(f"VHDX metadata lacks the {what}")
        return read_exact(read_at, items[guid][0], size, f"VHDX {what}")

    params = item(FILE_PARAMETERS, 8, "file parameters")
    if le32(params, 4) & HAS_PARENT:
        raise unsafe("VHDX differencing disk: it needs a parent image")
    block_size = le32(params, 0)
    if not MiB <= block_size <= 256 * MiB or block_size & (block_size - 1):
        raise unsafe(f"VHDX block size {block_size} is not a power of two in 1..256 MiB")
    size = le64(item(VIRTUAL_DISK_SIZE, 8, "virtual disk size"), 0)
    sector_size = le32(item(LOGICAL_SECTOR_SIZE, 4, "logical sector size"), 0)
    if sector_size not in (512, 4096):
        raise invalid(f"VHDX logical sector size {sector_size} is not 512 or 4096")
    if le32(item(PHYSICAL_SECTOR_SIZE, 4, "physical sector size"), 0) not in (512, 4096):
        raise invalid("VHDX physical sector size is not 512 or 4096")
    if size > MAX_VIRTUAL_SIZE:
        raise unsafe(f"VHDX virtual size {size} exceeds the format's 64 TiB")
    return size, block_size, sector_size


def _chunk_ratio(block_size: int, sector_size: int) -> int:
    """Payload blocks per sector bitmap block: the BAT interleaves one after each chunk."""
    return MAX_SECTORS_PER_BLOCK * sector_size // block_size


def _check_bat(size: int, block_size: int, sector_size: int, bat_length: int) -> int:
    """The number of BAT entries (qemu's count for a disk without a parent)."""
    data_blocks = ceil_div(size, block_size)
    count = data_blocks + max(data_blocks - 1, 0) // _chunk_ratio(block_size, sector_size)
    if bat_length < count * 8:
        raise invalid("VHDX BAT region is too small for the virtual size")
    if bat_length > ceil_div(count * 8, MiB) * MiB + MiB:
        raise unsafe(f"VHDX BAT region of {bat_length} bytes is absurd for its virtual size")
    return count


@dataclass(frozen=True)
class _Geometry:
    size: int
    block_size: int
    sector_size: int
    file_size: int


def _check_blocks(read_at: ReadAt, bat_offset: int, count: int, geometry: _Geometry) -> None:
    """Present payload blocks (and sector bitmaps) lie inside the file, past its headers."""
    period = _chunk_ratio(geometry.block_size, geometry.sector_size) + 1
    for first, values in entries(read_at, bat_offset, count, "<Q", "VHDX BAT"):
        for i, entry in enumerate(values, first):
            state, offset = entry & STATE_MASK, entry & OFFSET_MASK
            if (i + 1) % period == 0:  # a sector bitmap entry
                if state == SB_PRESENT and offset + MiB > geometry.file_size:
                    what = f"VHDX sector bitmap (BAT entry {i})"
                    raise beyond_end(what, offset, offset + MiB, geometry.file_size)
                continue
            if state == PAYLOAD_UNKNOWN:
                raise corrupt(f"VHDX BAT entry {i} has the undefined state {state}")
            if state not in (PAYLOAD_FULLY_PRESENT, PAYLOAD_PARTIALLY_PRESENT):
                continue
            if offset < MiB:
                raise corrupt(f"VHDX BAT entry {i} puts a data block in the headers")
            # The block that straddles the end of the disk is read up to the end only.
            block = i - i // period
            end = offset + min(geometry.block_size, geometry.size - block * geometry.block_size)
            if end > geometry.file_size:
                what = f"VHDX data block {block} (BAT entry {i})"
                raise beyond_end(what, offset, end, geometry.file_size)
