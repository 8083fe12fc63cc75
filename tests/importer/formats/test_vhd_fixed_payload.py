"""`vhd_fixed_payload`: recognising a fixed-VHD footer at the end of a raw stream.

A footer counts only if the disk it declares is exactly the bytes before it: a raw disk
whose last sector is a crafted footer for a smaller disk must keep every byte.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cdicontract.reasons import Reason
from importer.errors import ImportFailure
from importer.formats import DiskFormat, inspect, vhd_fixed_payload
from tests import imagefactory as factory
from tests.importer.formats.conftest import Sample

KiB, MiB = 1024, 1024 * 1024


def tail_of(path: Path) -> tuple[bytes, int]:
    data = path.read_bytes()
    return data[-512:], len(data)


def test_real_fixed_vhd_tail_gives_its_payload(samples: dict[str, Sample]) -> None:
    tail, total = tail_of(samples["vhd-fixed"].path)
    assert vhd_fixed_payload(tail, total) == total - 512


# Sizes that are no multiple of any CHS geometry: qemu rounds the disk up to one ('qemu'
# creator) or, with force_size, keeps the size and writes the 'qem2' creator.
@pytest.mark.parametrize("size", [1 * MiB, 5 * MiB + 1536, 33 * MiB + 512, 127 * KiB])
@pytest.mark.parametrize("force_size", ["off", "on"])
def test_every_fixed_vhd_qemu_img_writes_is_recognised(
    tmp_path: Path, size: int, force_size: str
) -> None:
    reference = factory.make_reference(tmp_path, size, "odd.raw")
    path = factory.convert(reference, "vpc", "fixed", force_size=force_size)
    tail, total = tail_of(path)
    assert vhd_fixed_payload(tail, total) == total - 512
    info = inspect(DiskFormat.RAW, factory.read_at_file(path), total)
    assert info.payload_size == total - 512
    assert info.virtual_size == factory.qemu_info(path, "vpc")["virtual-size"]


def test_footer_for_a_smaller_disk_does_not_cut_a_raw_disk_short() -> None:
    """The attack: 1 MiB of raw disk whose last sector declares a 64 KiB fixed VHD."""
    footer = factory.vhd_fixed_footer(64 * KiB)
    assert vhd_fixed_payload(footer, 1 * MiB) is None
    assert vhd_fixed_payload(footer, 64 * KiB + 512) == 64 * KiB


def test_footer_for_a_larger_disk_is_not_a_payload() -> None:
    assert vhd_fixed_payload(factory.vhd_fixed_footer(2 * MiB), 1 * MiB) is None


def test_inspecting_a_raw_disk_ending_in_a_foreign_footer_refuses_it() -> None:
    """Before anything is written, the same disagreement is a corrupt image, not a VHD."""
    data = bytes(1 * MiB - 512) + factory.vhd_fixed_footer(64 * KiB)
    with pytest.raises(ImportFailure) as failure:
        inspect(DiskFormat.RAW, lambda o, n: data[o : o + n], len(data))
    assert failure.value.reason is Reason.CORRUPT_IMAGE
    assert "65536" in failure.value.message


def test_chs_size_beyond_the_payload_is_not_a_payload() -> None:
    """A 'qemu' footer is read by its geometry: 16 heads x 63 sectors x 2 cylinders here."""
    footer = factory.vhd_fixed_footer(64 * KiB, creator=b"qemu", geometry=(2, 16, 63))
    assert vhd_fixed_payload(footer, 64 * KiB + 512) is None


def test_dynamic_vhd_footer_is_not_a_fixed_payload(samples: dict[str, Sample]) -> None:
    tail, total = tail_of(samples["vhd-dynamic"].path)
    assert vhd_fixed_payload(tail, total) is None


def test_footer_with_wrong_checksum_is_not_trusted() -> None:
    footer = bytearray(factory.vhd_fixed_footer(1 << 20))
    assert vhd_fixed_payload(bytes(footer), (1 << 20) + 512) == 1 << 20
    footer[48] ^= 1
    assert vhd_fixed_payload(bytes(footer), (1 << 20) + 512) is None


def test_differencing_footer_is_not_a_fixed_payload() -> None:
    assert (
        vhd_fixed_payload(factory.vhd_fixed_footer(1 << 20, disk_type=4), (1 << 20) + 512) is None
    )


def test_tail_of_the_wrong_length_is_ignored() -> None:
    footer = factory.vhd_fixed_footer(1 << 20)
    assert vhd_fixed_payload(footer[:511], (1 << 20) + 511) is None
    assert vhd_fixed_payload(footer + b"\0", (1 << 20) + 513) is None
    assert vhd_fixed_payload(b"", 0) is None


def test_raw_data_tail_is_not_a_footer(samples: dict[str, Sample]) -> None:
    tail, total = tail_of(samples["raw"].path)
    assert vhd_fixed_payload(tail, total) is None
