"""ISO 9660 recognition: an ISO is written as a raw disk, but callers want to know."""

from __future__ import annotations

from importer.formats.model import ReadAt

ISO_MAGIC = b"CD001"
# The first volume descriptor sits at sector 16 (2048-byte sectors); its identifier at +1.
ISO_MAGIC_OFFSET = 0x8001


def is_iso(read_at: ReadAt) -> bool:
    return read_at(ISO_MAGIC_OFFSET, len(ISO_MAGIC)) == ISO_MAGIC
