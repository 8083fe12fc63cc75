"""Decide the disk format from the leading bytes alone, by our own magic table.

qemu-img is never allowed to probe: what we detect here becomes its explicit `-f`. Bytes
with no magic we know are RAW (a plain disk, a filesystem or an ISO 9660 image). Formats
that qemu could read but we do not support are refused by name rather than silently
written out as raw bytes, which would give the user a disk full of container metadata.
"""

from __future__ import annotations

import re

from importer.formats.binary import be32, unsupported
from importer.formats.model import DiskFormat

QCOW_MAGIC = b"QFI\xfb"
VMDK_SPARSE_MAGIC = b"KDMV"
VMDK_DESCRIPTOR_MAGIC = b"# Disk DescriptorFile"
VHD_COOKIE = b"conectix"
VHDX_SIGNATURE = b"vhdxfile"
VDI_SIGNATURE = b"\x7f\x10\xda\xbe"
VDI_SIGNATURE_OFFSET = 0x40
TAR_MAGIC = b"ustar"
TAR_MAGIC_OFFSET = 257

# (magic at offset 0, name) for formats we recognise and refuse.
_UNSUPPORTED_AT_ZERO: tuple[tuple[bytes, str], ...] = (
    (b"QED\x00", "QED"),
    (b"LUKS\xba\xbe", "LUKS encrypted volume"),
    (b"WithoutFreeSpace", "Parallels"),
    (b"WithouFreSpacExt", "Parallels"),
    (b"#!/bin/sh\n#V2.0 Format\n", "cloop"),
    (b"Bochs Virtual HD Image", "Bochs"),
    (b"COWD", "VMware ESX COWD sparse"),
    (b"PK\x03\x04", "zip archive"),
    (b"Rar!\x1a\x07", "rar archive"),
    (b"7z\xbc\xaf\x27\x1c", "7-zip archive"),
    # Compression the decompress stage should already have removed: a second layer.
    (b"\x1f\x8b\x08", "gzip-compressed data (nested compression)"),
    (b"\xfd7zXZ\x00", "xz-compressed data (nested compression)"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data (nested compression)"),
    (b"\x04\x22\x4d\x18", "lz4-compressed data"),
)
# bzip2's "BZh" alone is too short to trust; require the block or end-of-stream magic too.
_BZIP2 = re.compile(rb"BZh[1-9](1AY&SY|\x17rE8P\x90)")


def detect(head: bytes) -> DiskFormat:
    """The format of the image whose first bytes are `head` (ideally HEAD_SIZE of them).

    A fixed VHD or a dmg cannot be told from its head (their marker is in the last 512
    bytes); `inspect(DiskFormat.RAW, ...)` looks at the tail when the size is known.
    """
    if head.startswith(QCOW_MAGIC):
        return _qcow_version(head)
    if head.startswith(VMDK_SPARSE_MAGIC) or head.startswith(VMDK_DESCRIPTOR_MAGIC):
        return DiskFormat.VMDK
    if head.startswith(VHD_COOKIE):
        return DiskFormat.VHD
    if head.startswith(VHDX_SIGNATURE):
        return DiskFormat.VHDX
    if head[VDI_SIGNATURE_OFFSET : VDI_SIGNATURE_OFFSET + 4] == VDI_SIGNATURE:
        return DiskFormat.VDI
    for magic, name in _UNSUPPORTED_AT_ZERO:
        if head.startswith(magic):
            raise unsupported(f"unsupported image format: {name}")
    if _BZIP2.match(head):
        raise unsupported("unsupported image format: bzip2-compressed data (nested compression)")
    if head[TAR_MAGIC_OFFSET : TAR_MAGIC_OFFSET + 5] == TAR_MAGIC:
        raise unsupported(
            "unsupported image format: tar archive (use contentType: archive to extract it)"
        )
    return DiskFormat.RAW


def _qcow_version(head: bytes) -> DiskFormat:
    if len(head) < 8:
        return DiskFormat.QCOW2  # inspect reports the truncated header precisely
    version = be32(head, 4)
    if version in (2, 3):
        return DiskFormat.QCOW2
    if version == 1:
        raise unsupported("unsupported image format: qcow (version 1)")
    raise unsupported(f"unsupported image format: qcow2 version {version}")
