"""`inspect`: safe header inspection, dispatched on the detected format.

Runs before qemu-img touches the image and reads headers and allocation tables through
`read_at` (bounded reads whose number and size follow the tables, never the data), so
an unsafe, corrupt or truncated image is refused with a precise reason and nothing has
been written yet.
"""

from __future__ import annotations

from collections.abc import Callable

from importer.formats import iso, vhd
from importer.formats.binary import be32, read_exact, unsupported
from importer.formats.model import DiskFormat, ImageInfo, ReadAt
from importer.formats.qcow2 import inspect_qcow2
from importer.formats.vdi import inspect_vdi
from importer.formats.vhdx import inspect_vhdx
from importer.formats.vmdk import inspect_vmdk

Inspector = Callable[[ReadAt, "int | None"], ImageInfo]

_INSPECTORS: dict[DiskFormat, Inspector] = {
    DiskFormat.QCOW2: inspect_qcow2,
    DiskFormat.VMDK: inspect_vmdk,
    DiskFormat.VHD: vhd.inspect_vhd,
    DiskFormat.VHDX: inspect_vhdx,
    DiskFormat.VDI: inspect_vdi,
}

DMG_MAGIC = b"koly"


def inspect(fmt: DiskFormat, read_at: ReadAt, file_size: int | None) -> ImageInfo:
    """Parse and check the headers of an image of format `fmt` (as returned by `detect`).

    Raises ImportFailure: UNSAFE_IMAGE for images that would make qemu-img open other
    files or allocate absurd tables, INVALID_IMAGE for truncated or malformed headers,
    CORRUPT_IMAGE for tables pointing past the end of the file (a truncated download) or
    breaking the format's rules, UNSUPPORTED_FORMAT for variants we do not convert.

    `file_size` is the length of the image as served. When it is None, nothing can be
    said to lie beyond the end, so the table walks are skipped (headers are still
    checked); the pipeline always knows the size where it converts.
    """
    if fmt == DiskFormat.RAW:
        return _inspect_raw(read_at, file_size)
    return _INSPECTORS[fmt](read_at, file_size)


def _inspect_raw(read_at: ReadAt, file_size: int | None) -> ImageInfo:
    """A raw-looking image may still be a fixed VHD or a dmg: both keep their marker last."""
    if file_size is not None and file_size >= vhd.FOOTER_SIZE:
        tail = read_exact(read_at, file_size - vhd.FOOTER_SIZE, vhd.FOOTER_SIZE, "image tail")
        fixed = vhd.inspect_fixed_tail(tail, file_size)
        if fixed is not None:
            return fixed
        if tail[:4] == DMG_MAGIC and be32(tail, 4) == 4 and be32(tail, 8) == 512:
            raise unsupported("unsupported image format: Apple disk image (dmg)")
    return ImageInfo(DiskFormat.RAW, file_size, is_iso=iso.is_iso(read_at))
