"""Which way the bytes go, decided purely from what the head of the stream and the source say.

    archive content                  -> extract the tar into the target directory
    raw (or ISO, or a fixed VHD)     -> stream into the target, zero blocks as holes
    other format, plain, random access -> qemu-img reads the source's pinned view, no copy
    anything else                    -> download to scratch, then convert from there

The table is the whole decision; `tests/importer/test_route.py` walks every row.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from importer.compression import Compression
from importer.formats import DiskFormat
from importer.sources.base import SourceCapabilities
from importer.transferspec import ContentType

NO_RANDOM_ACCESS = "the source does not support random access (range requests)"


class Way(StrEnum):
    EXTRACT_ARCHIVE = "ExtractArchive"
    STREAM_RAW = "StreamRaw"
    CONVERT_RANDOM_ACCESS = "ConvertRandomAccess"
    CONVERT_FROM_SCRATCH = "ConvertFromScratch"


@dataclass(frozen=True)
class Route:
    way: Way
    scratch_reason: str | None = None
    """Why the image goes through scratch (only for CONVERT_FROM_SCRATCH), for the report."""


def route(
    fmt: DiskFormat | None,
    compression: Compression | None,
    capabilities: SourceCapabilities,
    content_type: ContentType,
) -> Route:
    """`fmt` is the format detected after decompression (None: not detected, archives)."""
    if content_type is ContentType.ARCHIVE:
        return Route(Way.EXTRACT_ARCHIVE)
    if fmt is None:
        raise ValueError("a disk image's route needs its detected format")
    if fmt is DiskFormat.RAW:
        return Route(Way.STREAM_RAW)
    if compression is not None:
        return Route(
            Way.CONVERT_FROM_SCRATCH, f"the {fmt.value} image is {compression.value}-compressed"
        )
    if capabilities.random_access:
        return Route(Way.CONVERT_RANDOM_ACCESS)
    return Route(Way.CONVERT_FROM_SCRATCH, capabilities.scratch_reason or NO_RANDOM_ACCESS)
