"""Every format qemu-img writes is detected by our own parsing and sized as qemu-img sizes it."""

from __future__ import annotations

import pytest

from importer.formats import HEAD_SIZE, DiskFormat, detect, inspect
from tests import imagefactory
from tests.importer.formats.conftest import SUPPORTED, CountingReader, Sample

ALL = ["raw", "ext4", "iso", *SUPPORTED]
# A fixed VHD keeps its only footer at the end: from the head it is indistinguishable from raw.
HEAD_LOOKS_RAW = {"raw", "ext4", "iso", "vhd-fixed"}


@pytest.mark.parametrize("name", ALL)
def test_detect_names_the_format_from_the_head(samples: dict[str, Sample], name: str) -> None:
    sample = samples[name]
    with sample.path.open("rb") as f:
        head = f.read(HEAD_SIZE)
    expected = DiskFormat.RAW if name in HEAD_LOOKS_RAW else sample.format
    assert detect(head) is expected


@pytest.mark.parametrize("name", ALL)
def test_inspect_reports_qemu_img_virtual_size(samples: dict[str, Sample], name: str) -> None:
    sample = samples[name]
    data = sample.path.read_bytes()
    reader = CountingReader(data)
    info = inspect(detect(data[:HEAD_SIZE]), reader, len(data))

    assert info.format is sample.format
    qemu = imagefactory.qemu_info(sample.path, info.format.value)
    assert info.virtual_size == qemu["virtual-size"]
    assert info.is_iso == (name == "iso")


@pytest.mark.parametrize("name", ALL)
def test_inspect_reads_only_a_few_small_headers(samples: dict[str, Sample], name: str) -> None:
    data = samples[name].path.read_bytes()
    reader = CountingReader(data)
    inspect(detect(data[:HEAD_SIZE]), reader, len(data))
    assert len(reader.reads) <= 12
    assert max(length for _, length in reader.reads) <= 64 * 1024
    assert reader.bytes_read <= 256 * 1024


def test_fixed_vhd_payload_is_everything_but_the_footer(samples: dict[str, Sample]) -> None:
    path = samples["vhd-fixed"].path
    size = path.stat().st_size
    info = inspect(DiskFormat.RAW, imagefactory.read_at_file(path), size)
    assert info.format is DiskFormat.VHD
    assert info.payload_size == size - 512
    # The payload really is the raw disk: the reference's marks are where they should be.
    with path.open("rb") as f:
        f.seek(1024 * 1024)
        assert f.read(64).startswith(b"<cdi-ref offset=1048576>")


def test_fixed_vhd_inspected_as_vhd_is_found_by_its_tail(samples: dict[str, Sample]) -> None:
    path = samples["vhd-fixed"].path
    size = path.stat().st_size
    info = inspect(DiskFormat.VHD, imagefactory.read_at_file(path), size)
    assert (info.format, info.payload_size) == (DiskFormat.VHD, size - 512)


def test_raw_of_unknown_size_has_no_virtual_size(samples: dict[str, Sample]) -> None:
    path = samples["raw"].path
    info = inspect(DiskFormat.RAW, imagefactory.read_at_file(path), None)
    assert info.format is DiskFormat.RAW
    assert info.virtual_size is None


def test_qcow2_of_unknown_file_size_is_still_inspected(samples: dict[str, Sample]) -> None:
    path = samples["qcow2-v3-compressed"].path
    info = inspect(DiskFormat.QCOW2, imagefactory.read_at_file(path), None)
    assert info.virtual_size == imagefactory.REFERENCE_SIZE


def test_head_size_covers_the_iso_magic() -> None:
    assert HEAD_SIZE >= 0x8001 + 5
