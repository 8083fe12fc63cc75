"""VMDK inspection: only self-contained sparse files (monolithicSparse, streamOptimized).

A text descriptor file is refused outright: its extent lines make qemu-img open other
files by name (anything on the importer's filesystem). A sparse file is opened the way
qemu opens it (block/vmdk.c), and every path by which qemu would leave the file is shut:

- a header with capacity 0 and a descriptor offset makes qemu open that descriptor as a
  descriptor *file*, FLAT extents on any local path included: refused;
- qemu reads the descriptor at sector 1 for `parentFileNameHint`, whatever the header's
  descriptor offset says: that text is always checked, as is the one at the offset;
- a grain directory "at the end" (streamOptimized) means qemu takes the header from the
  footer instead, so every header check applies to the footer's copy too.

Table limits are tighter than qemu's (vmdk.c allows a 512 MiB L1 table) because the
importer runs under a 600 MB memory limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from importer.formats import vmdk_descriptor, vmdk_tables
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
from importer.formats.model import DiskFormat, ImageInfo, ReadAt

HEADER_SIZE = 512
MAGIC = b"KDMV"
DESCRIPTOR_MAGIC = b"# Disk DescriptorFile"
GD_AT_END = 0xFFFFFFFFFFFFFFFF
MAX_GTES_PER_GT = 512
MAX_GRAIN_SECTORS = 16384  # 8 MiB: qemu allocates grain-sized buffers
MAX_L1_BYTES = 32 * 1024 * 1024
MAX_DESCRIPTOR_SECTORS = 2048
MAX_CAPACITY_SECTORS = 1 << 53
FOOTER_SIZE = 1536  # footer marker, footer (magic + header), end-of-stream marker
MARKER_FOOTER = 3
MARKER_END_OF_STREAM = 0


@dataclass(frozen=True)
class Header:
    """The fields of a VMDK4 header (the sector at offset 0, or the footer's copy)."""

    version: int
    flags: int
    capacity: int
    grain: int
    desc_offset: int
    desc_size: int
    gtes: int
    rgd_offset: int
    gd_offset: int
    grain_offset: int
    compression: int

    @classmethod
    def parse(cls, sector: bytes) -> Header:
        """`sector` starts with the magic, as the first sector and the footer's both do."""
        return cls(
            version=le32(sector, 4),
            flags=le32(sector, 8),
            capacity=le64(sector, 12),
            grain=le64(sector, 20),
            desc_offset=le64(sector, 28),
            desc_size=le64(sector, 36),
            gtes=le32(sector, 44),
            rgd_offset=le64(sector, 48),
            gd_offset=le64(sector, 56),
            grain_offset=le64(sector, 64),
            compression=le16(sector, 77),
        )


def inspect_vmdk(read_at: ReadAt, file_size: int | None) -> ImageInfo:
    if read_exact(read_at, 0, len(DESCRIPTOR_MAGIC), "VMDK header") == DESCRIPTOR_MAGIC:
        raise unsafe("VMDK descriptor file: it references extent files, upload a monolithic VMDK")
    sector = read_exact(read_at, 0, HEADER_SIZE, "VMDK header")
    if sector[:4] != MAGIC:
        raise invalid("not a VMDK image: bad magic")
    header = Header.parse(sector)
    _check_header(header, "header", file_size)
    headers = [("header", header)]
    if header.gd_offset == GD_AT_END:
        footer = _read_footer(read_at, file_size)
        _check_header(footer, "footer", file_size)
        if footer.gd_offset == GD_AT_END:
            raise corrupt("VMDK footer does not say where the grain directory is")
        headers.append(("footer", footer))
    _check_descriptors(read_at, headers, file_size)
    effective = headers[-1][1]  # qemu: "The footer takes precedence over the header"
    if file_size is not None:
        vmdk_tables.check_tables(read_at, _layout(effective, file_size))
    return ImageInfo(DiskFormat.VMDK, effective.capacity * 512)


def _check_header(header: Header, where: str, file_size: int | None) -> None:
    if not 1 <= header.version <= 3:
        raise unsupported(f"unsupported VMDK version {header.version}")
    if header.capacity == 0:
        if header.desc_offset:
            raise unsafe(
                f"VMDK {where} has capacity 0 and a descriptor offset: qemu would open "
                "that descriptor as a descriptor file, with extents naming other files"
            )
        raise invalid(f"VMDK {where} declares a capacity of 0")
    if header.capacity > MAX_CAPACITY_SECTORS:
        raise unsafe(f"VMDK capacity of {header.capacity} sectors is absurd")
    grain = header.grain
    if grain == 0 or grain & (grain - 1) or grain > MAX_GRAIN_SECTORS:
        raise unsafe(f"VMDK grain size of {grain} sectors is not a power of two up to 8 MiB")
    if header.gtes == 0 or header.gtes > MAX_GTES_PER_GT:
        raise unsafe(f"VMDK grain table of {header.gtes} entries is outside 1..512")
    if ceil_div(header.capacity, header.gtes * grain) * 4 > MAX_L1_BYTES:
        raise unsafe(f"VMDK capacity of {header.capacity} sectors needs an absurd grain directory")
    if header.compression not in (0, 1):
        raise unsupported(f"VMDK compression algorithm {header.compression} is not supported")
    if header.desc_offset and header.desc_size > MAX_DESCRIPTOR_SECTORS:
        raise unsafe(f"VMDK embedded descriptor of {header.desc_size} sectors is absurd")
    if file_size is None:
        return
    if header.grain_offset * 512 > file_size:
        raise corrupt(
            f"VMDK {where} puts the first grain at offset {header.grain_offset * 512}, "
            f"beyond the end of the image ({file_size} bytes)"
        )
    if header.desc_offset:
        start, end = header.desc_offset * 512, (header.desc_offset + header.desc_size) * 512
        if end > file_size:
            raise beyond_end(f"VMDK embedded descriptor ({where})", start, end, file_size)


def _read_footer(read_at: ReadAt, file_size: int | None) -> Header:
    """The header copy qemu reads from the end, where it expects a stream's footer."""
    if file_size is None:
        raise invalid("VMDK grain directory is in the footer, which needs the file size")
    # qemu counts the file in whole sectors and reads 1536 bytes back from that end.
    at = ceil_div(file_size, 512) * 512 - FOOTER_SIZE
    if at < HEADER_SIZE:
        raise corrupt(f"VMDK image of {file_size} bytes is too short to end with a footer")
    data = read_at(at, FOOTER_SIZE).ljust(FOOTER_SIZE, b"\0")
    if (
        le32(data, 8) != 0
        or le32(data, 12) != MARKER_FOOTER
        or data[512:516] != MAGIC
        or le64(data, 1024) != 0
        or le32(data, 1032) != 0
        or le32(data, 1036) != MARKER_END_OF_STREAM
    ):
        raise corrupt(
            f"VMDK footer expected at offset {at} (the grain directory is at the end) is "
            "missing: the stream is truncated"
        )
    return Header.parse(data[512:1024])


def _check_descriptors(
    read_at: ReadAt, headers: list[tuple[str, Header]], file_size: int | None
) -> None:
    """The text at sector 1, and at each header's descriptor offset, qemu-style."""
    sector_one = vmdk_descriptor.c_string(read_at(512, vmdk_descriptor.DESC_SIZE))
    vmdk_descriptor.check(sector_one, "descriptor at sector 1")
    for where, header in headers:
        offset, size = header.desc_offset, header.desc_size * 512
        if not offset or (offset == 1 and size <= vmdk_descriptor.DESC_SIZE):
            continue
        text = read_at(offset * 512, max(size, vmdk_descriptor.DESC_SIZE))
        vmdk_descriptor.check(vmdk_descriptor.c_string(text), f"descriptor named by the {where}")


def _layout(header: Header, file_size: int) -> vmdk_tables.Layout:
    return vmdk_tables.Layout(
        capacity=header.capacity,
        grain=header.grain,
        gtes=header.gtes,
        gd_offset=header.gd_offset,
        rgd_offset=header.rgd_offset if header.flags & vmdk_tables.FLAG_RGD else 0,
        zero_grain=bool(header.flags & vmdk_tables.FLAG_ZERO_GRAIN),
        compressed=header.compression == 1,
        markers=bool(header.flags & vmdk_tables.FLAG_MARKER),
        file_size=file_size,
    )
