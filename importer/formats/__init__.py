"""Disk-format detection by our own header parsing, and safe header inspection.

`detect(head)` names the format from the leading bytes; `inspect(fmt, read_at, size)`
parses the headers and refuses unsafe or corrupt images before qemu-img opens them;
`ensure_fits` checks the virtual size against the volume before anything is written.
"""

from importer.formats.detect import detect
from importer.formats.fit import ensure_fits, human_size
from importer.formats.inspection import inspect
from importer.formats.model import HEAD_SIZE, DiskFormat, ImageInfo, ReadAt
from importer.formats.vhd import vhd_fixed_payload

__all__ = [
    "HEAD_SIZE",
    "DiskFormat",
    "ImageInfo",
    "ReadAt",
    "detect",
    "ensure_fits",
    "human_size",
    "inspect",
    "vhd_fixed_payload",
]
