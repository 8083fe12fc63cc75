"""`vhd_fixed_payload`: recognising a fixed-VHD footer at the end of a raw stream."""

from __future__ import annotations

from importer.formats import vhd_fixed_payload
from tests import imagefactory as factory
from tests.importer.formats.conftest import Sample


def test_real_fixed_vhd_tail_gives_its_payload(samples: dict[str, Sample]) -> None:
    data = samples["vhd-fixed"].path.read_bytes()
    assert vhd_fixed_payload(data[-512:]) == len(data) - 512


def test_dynamic_vhd_footer_is_not_a_fixed_payload(samples: dict[str, Sample]) -> None:
    data = samples["vhd-dynamic"].path.read_bytes()
    assert vhd_fixed_payload(data[-512:]) is None


def test_footer_with_wrong_checksum_is_not_trusted() -> None:
    footer = bytearray(factory.vhd_fixed_footer(1 << 20))
    assert vhd_fixed_payload(bytes(footer)) == 1 << 20
    footer[48] ^= 1
    assert vhd_fixed_payload(bytes(footer)) is None


def test_differencing_footer_is_not_a_fixed_payload() -> None:
    assert vhd_fixed_payload(factory.vhd_fixed_footer(1 << 20, disk_type=4)) is None


def test_tail_of_the_wrong_length_is_ignored() -> None:
    footer = factory.vhd_fixed_footer(1 << 20)
    assert vhd_fixed_payload(footer[:511]) is None
    assert vhd_fixed_payload(footer + b"\0") is None
    assert vhd_fixed_payload(b"") is None


def test_raw_data_tail_is_not_a_footer(samples: dict[str, Sample]) -> None:
    assert vhd_fixed_payload(samples["raw"].path.read_bytes()[-512:]) is None
