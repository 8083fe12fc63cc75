"""The vocabulary of format detection: formats, the random-read callable, the inspection result."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class DiskFormat(StrEnum):
    """A disk image format we convert; the value is qemu-img's driver name, passed as `-f`."""

    RAW = "raw"
    QCOW2 = "qcow2"
    VMDK = "vmdk"
    VHD = "vpc"
    VHDX = "vhdx"
    VDI = "vdi"


ReadAt = Callable[[int, int], bytes]
"""`read_at(offset, length)`: the bytes at offset; shorter than `length` only at end of file."""

HEAD_SIZE = 64 * 1024
"""Leading bytes `detect` wants: covers every header magic, including ISO 9660's at 0x8001."""


@dataclass(frozen=True)
class ImageInfo:
    """What safe header inspection learned about an image, before qemu-img ever sees it."""

    format: DiskFormat
    virtual_size: int | None
    """Guest-visible size in bytes, as qemu-img reports it; None for RAW of unknown length."""
    is_iso: bool = False
    payload_size: int | None = None
    """For a fixed VHD: the bytes before the 512-byte footer, which are the raw disk."""
