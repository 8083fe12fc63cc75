"""The route table: every (content type, format, compression, capability) combination."""

from __future__ import annotations

import itertools

import pytest

from importer.compression import Compression
from importer.formats import DiskFormat
from importer.route import NO_RANDOM_ACCESS, Route, Way, route
from importer.sources.base import SourceCapabilities
from importer.transferspec import ContentType

RANGED = SourceCapabilities(restartable=True, random_access=True)
UNRANGED = SourceCapabilities(restartable=True, random_access=False, scratch_reason="no ranges")
BODY = SourceCapabilities(restartable=False, random_access=False, scratch_reason="a body")
SILENT = SourceCapabilities(restartable=True, random_access=False)
CAPS = {"ranged": RANGED, "unranged": UNRANGED, "body": BODY, "silent": SILENT}
COMPRESSIONS: list[Compression | None] = [None, *Compression]
CONVERTED = [f for f in DiskFormat if f is not DiskFormat.RAW]


def expected(fmt: DiskFormat, comp: Compression | None, caps: SourceCapabilities) -> Route:
    if fmt is DiskFormat.RAW:
        return Route(Way.STREAM_RAW)
    if comp is not None:
        return Route(Way.CONVERT_FROM_SCRATCH, f"the {fmt.value} image is {comp.value}-compressed")
    if caps.random_access:
        return Route(Way.CONVERT_RANDOM_ACCESS)
    return Route(Way.CONVERT_FROM_SCRATCH, caps.scratch_reason or NO_RANDOM_ACCESS)


TABLE = list(itertools.product(DiskFormat, COMPRESSIONS, CAPS))


@pytest.mark.parametrize(
    ("fmt", "comp", "caps"), TABLE, ids=[f"{f.value}-{c or 'plain'}-{k}" for f, c, k in TABLE]
)
def test_disk_image_routes(fmt: DiskFormat, comp: Compression | None, caps: str) -> None:
    assert route(fmt, comp, CAPS[caps], ContentType.KUBEVIRT) == expected(fmt, comp, CAPS[caps])


@pytest.mark.parametrize("comp", COMPRESSIONS)
@pytest.mark.parametrize("caps", CAPS)
def test_archives_are_always_extracted(comp: Compression | None, caps: str) -> None:
    assert route(None, comp, CAPS[caps], ContentType.ARCHIVE) == Route(Way.EXTRACT_ARCHIVE)


def test_raw_never_needs_scratch_even_from_a_body() -> None:
    for comp in COMPRESSIONS:
        assert route(DiskFormat.RAW, comp, BODY, ContentType.KUBEVIRT).scratch_reason is None


@pytest.mark.parametrize("fmt", CONVERTED)
def test_an_upload_body_converts_from_scratch_and_says_why(fmt: DiskFormat) -> None:
    assert route(fmt, None, BODY, ContentType.KUBEVIRT) == Route(Way.CONVERT_FROM_SCRATCH, "a body")


def test_a_disk_image_route_needs_the_format() -> None:
    with pytest.raises(ValueError, match="format"):
        route(None, None, RANGED, ContentType.KUBEVIRT)


def test_random_access_with_a_scratch_reason_is_a_contradiction() -> None:
    with pytest.raises(ValueError):
        SourceCapabilities(restartable=True, random_access=True, scratch_reason="why?")


def test_a_compressed_qcow2_goes_through_scratch_even_with_ranges() -> None:
    assert route(DiskFormat.QCOW2, Compression.GZIP, RANGED, ContentType.KUBEVIRT) == Route(
        Way.CONVERT_FROM_SCRATCH, "the qcow2 image is gzip-compressed"
    )


def test_a_plain_vmdk_with_ranges_converts_without_scratch() -> None:
    assert route(DiskFormat.VMDK, None, RANGED, ContentType.KUBEVIRT) == Route(
        Way.CONVERT_RANDOM_ACCESS
    )
