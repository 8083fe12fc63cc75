"""Sparse VMDKs patched into the shapes qemu reads differently from a line parser.

Each builder starts from a real image written by qemu-img and changes only what the case
is about: the header fields, the descriptor text at sector 1 (20 sectors qemu always
reads, NUL-padded) or a footer appended the way VMware writes streams. `qemu-img info`
on the result shows what qemu would do with it; the tests put both side by side.
"""

from __future__ import annotations

import struct
from pathlib import Path

from tests import imagefactory

MiB = 1024 * 1024
GD_AT_END = 0xFFFFFFFFFFFFFFFF
DESC_AT, DESC_SIZE = 512, 20 * 512
CID_LINES = b"# Disk DescriptorFile\nversion=1\nCID=7d5f1d3f\nparentCID=ffffffff\n"


def _sparse(
    directory: Path, name: str, subformat: str = "monolithicSparse", source: Path | None = None
) -> Path:
    """A qemu-img VMDK of `source` (by default a fresh 1 MiB reference) named `name`."""
    if source is None:
        source = imagefactory.make_reference(directory, 1 * MiB, f"{name}-source.raw").path
    path = directory / f"{name}.vmdk"
    path.write_bytes(imagefactory.convert(source, "vmdk", subformat).read_bytes())
    return path


def descriptor_text(path: Path) -> bytes:
    data = path.read_bytes()
    return data[DESC_AT : DESC_AT + DESC_SIZE].split(b"\0", 1)[0]


def set_descriptor(path: Path, text: bytes) -> Path:
    """Replace the text at sector 1 (the layout does not move: it is NUL-padded)."""
    assert len(text) < DESC_SIZE
    return imagefactory.patch(path, DESC_AT, text.ljust(DESC_SIZE, b"\0"))


def set_header(path: Path, **fields: int) -> Path:
    """Overwrite VMDK4 header fields at offset 0 (`capacity`, `grain`, `desc_offset`, ...)."""
    for name, value in fields.items():
        offset, fmt = HEADER_FIELDS[name]
        imagefactory.patch(path, offset, struct.pack(fmt, value))
    return path


HEADER_FIELDS: dict[str, tuple[int, str]] = {
    "flags": (8, "<I"),
    "capacity": (12, "<Q"),
    "grain": (20, "<Q"),
    "desc_offset": (28, "<Q"),
    "desc_size": (36, "<Q"),
    "gd_offset": (56, "<Q"),
}


def parent(directory: Path) -> Path:
    """A real VMDK a hint can name: qemu opens it if it follows the hint."""
    path = directory / "named-parent.vmdk"
    imagefactory.run("qemu-img", "create", "-q", "-f", "vmdk", path, "1M")
    return path


def host_file(directory: Path) -> Path:
    """A file standing for anything on the importer's filesystem a FLAT extent could name."""
    path = directory / "host-secret.raw"
    path.write_bytes(b"host secret " * 512)
    return path


def hint_at_sector_one(directory: Path) -> Path:
    """Descriptor offset 0 in the header, yet a parentFileNameHint in the text at sector 1."""
    path = _sparse(directory, "hint-at-sector-one")
    hint = f'parentFileNameHint="{parent(directory)}"\n'.encode()
    set_descriptor(path, descriptor_text(path) + hint)
    return set_header(path, desc_offset=0, desc_size=0)


def commented_hint(directory: Path) -> Path:
    """A `#`-commented parentFileNameHint: qemu's strstr still finds it."""
    path = _sparse(directory, "commented-hint")
    hint = f'# parentFileNameHint="{parent(directory)}"\n'.encode()
    return set_descriptor(path, descriptor_text(path) + hint)


def create_type_in_comment(directory: Path) -> Path:
    """createType="vmfs" in a comment before the real line: qemu's first occurrence wins."""
    path = _sparse(directory, "create-type-in-comment")
    text = descriptor_text(path).replace(b"createType=", b'# createType="vmfs"\ncreateType=', 1)
    return set_descriptor(path, text)


def _descriptor_file(directory: Path, name: str, type_lines: bytes) -> Path:
    """Capacity 0 and a descriptor offset: qemu opens the text as a descriptor *file*."""
    path = _sparse(directory, name)
    extent = f'RW 8 FLAT "{host_file(directory)}" 0\n'.encode()
    set_descriptor(path, CID_LINES + type_lines + extent)
    return set_header(path, capacity=0, desc_offset=1, desc_size=20)


def capacity_zero_flat_extent(directory: Path) -> Path:
    return _descriptor_file(directory, "capacity-zero", b'createType="monolithicFlat"\n')


def capacity_zero_commented_type(directory: Path) -> Path:
    """The comment says monolithicFlat, the line monolithicSparse; qemu takes the comment."""
    lines = b'# createType="monolithicFlat"\ncreateType="monolithicSparse"\n'
    return _descriptor_file(directory, "capacity-zero-commented-type", lines)


def capacity_zero_duplicate_type(directory: Path) -> Path:
    """Two createType lines: qemu takes the first, a dict-building parser the last."""
    lines = b'createType="monolithicFlat"\ncreateType="monolithicSparse"\n'
    return _descriptor_file(directory, "capacity-zero-duplicate-type", lines)


def footer(header_sector: bytes) -> bytes:
    """What VMware ends a stream with: footer marker, footer (the header copy), end marker."""
    marker = struct.pack("<QII", 1, 0, 3).ljust(512, b"\0")
    return marker + header_sector + bytes(512)


def stream_with_footer(
    directory: Path, name: str = "stream-with-footer", source: Path | None = None
) -> Path:
    """A streamOptimized VMDK laid out as VMware writes it: grain directory "at the end"."""
    path = _sparse(directory, name, "streamOptimized", source)
    data = bytearray(path.read_bytes())
    header = bytes(data[:512])
    struct.pack_into("<Q", data, 56, GD_AT_END)
    path.write_bytes(bytes(data) + footer(header))
    return path


def hostile_footer(directory: Path) -> Path:
    """A stream whose footer, which qemu prefers, declares 1 GiB grains (header: 64 KiB)."""
    path = stream_with_footer(directory, "hostile-footer")
    data = bytearray(path.read_bytes())
    struct.pack_into("<Q", data, len(data) - 1024 + 20, 0x200000)
    path.write_bytes(bytes(data))
    return path


def stream_without_footer(directory: Path) -> Path:
    """Grain directory "at the end", and no footer there: a stream cut short."""
    path = stream_with_footer(directory, "stream-without-footer")
    data = path.read_bytes()
    path.write_bytes(data[:-1536])
    return path
