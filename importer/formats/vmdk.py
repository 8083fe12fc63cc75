"""VMDK inspection: only self-contained sparse files (monolithicSparse, streamOptimized).

A text descriptor file is refused outright: its extent lines make qemu-img open other
files by name (anything on the importer's filesystem). A sparse file carries an embedded
descriptor that qemu reads for `parentFileNameHint`, i.e. a backing file, so that
descriptor is checked too. Table limits are tighter than qemu's (vmdk.c allows a 512 MiB
L1 table) because the importer runs under a 600 MB memory limit.
"""

from __future__ import annotations

from importer.formats.binary import (
    ceil_div,
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
SELF_CONTAINED_TYPES = frozenset({"monolithicSparse", "streamOptimized"})
NO_PARENT = "ffffffff"


def inspect_vmdk(read_at: ReadAt, file_size: int | None) -> ImageInfo:
    header = read_exact(read_at, 0, len(DESCRIPTOR_MAGIC), "VMDK header")
    if header.startswith(DESCRIPTOR_MAGIC):
        raise unsafe("VMDK descriptor file: it references extent files, upload a monolithic VMDK")
    header = read_exact(read_at, 0, HEADER_SIZE, "VMDK header")
    if header[:4] != MAGIC:
        raise invalid("not a VMDK image: bad magic")
    version = le32(header, 4)
    if not 1 <= version <= 3:
        raise unsupported(f"unsupported VMDK version {version}")

    capacity, grain = le64(header, 12), le64(header, 20)
    if capacity > MAX_CAPACITY_SECTORS:
        raise unsafe(f"VMDK capacity of {capacity} sectors is absurd")
    if grain == 0 or grain & (grain - 1) or grain > MAX_GRAIN_SECTORS:
        raise unsafe(f"VMDK grain size of {grain} sectors is not a power of two up to 8 MiB")
    gtes = le32(header, 44)
    if gtes == 0 or gtes > MAX_GTES_PER_GT:
        raise unsafe(f"VMDK grain table of {gtes} entries is outside 1..512")
    if ceil_div(capacity, gtes * grain) * 4 > MAX_L1_BYTES:
        raise unsafe(f"VMDK capacity of {capacity} sectors needs an absurd grain directory")
    if le16(header, 77) not in (0, 1):
        raise unsupported(f"VMDK compression algorithm {le16(header, 77)} is not supported")
    gd_offset = le64(header, 56)
    if gd_offset != GD_AT_END and file_size is not None and gd_offset * 512 >= file_size:
        raise invalid("VMDK image is truncated: grain directory lies beyond the end of the file")

    _check_embedded_descriptor(read_at, le64(header, 28), le64(header, 36))
    return ImageInfo(DiskFormat.VMDK, capacity * 512)


def _check_embedded_descriptor(read_at: ReadAt, offset: int, sectors: int) -> None:
    if offset == 0 or sectors == 0:
        return  # no descriptor: qemu treats the file as monolithicSparse
    if sectors > MAX_DESCRIPTOR_SECTORS:
        raise unsafe(f"VMDK embedded descriptor of {sectors} sectors is absurd")
    text = read_exact(read_at, offset * 512, sectors * 512, "VMDK embedded descriptor")
    fields = parse_descriptor(text)
    create_type = fields.get("createType")
    if create_type not in SELF_CONTAINED_TYPES:
        shown = _printable(create_type)
        raise unsafe(f"VMDK createType {shown} is not monolithicSparse/streamOptimized")
    if fields.get("parentFileNameHint") or fields.get("parentCID", NO_PARENT).lower() != NO_PARENT:
        raise unsafe("VMDK image is a delta disk: it names a parent image")


def _printable(value: str | None, limit: int = 32) -> str:
    """An untrusted header string made safe and short for a one-line error message."""
    if value is None:
        return "(missing)"
    cleaned = "".join(c if c.isascii() and c.isprintable() else "?" for c in value[:limit])
    return repr(cleaned + ("..." if len(value) > limit else ""))


def parse_descriptor(text: bytes) -> dict[str, str]:
    """`key=value` lines of a VMDK descriptor (up to the first NUL), quotes removed."""
    fields: dict[str, str] = {}
    for raw_line in text.split(b"\0", 1)[0].decode("latin-1").splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        fields[key.strip()] = value.strip().strip('"')
    return fields
