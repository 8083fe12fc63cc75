"""`ensure_fits`: the CDI phrase users grep for, and both sizes exactly and readably."""

from __future__ import annotations

import pytest

from cdicontract.reasons import Reason
from importer.errors import ImportFailure
from importer.formats import ensure_fits, human_size

GiB = 1024**3


@pytest.mark.parametrize(
    ("virtual", "usable"),
    [(0, 0), (GiB, GiB), (GiB - 1, GiB), (1, 10 * GiB)],
    ids=["empty", "exact-fit", "one-byte-spare", "tiny-image"],
)
def test_images_that_fit_pass(virtual: int, usable: int) -> None:
    ensure_fits(virtual, usable)


def test_too_large_image_names_both_sizes() -> None:
    with pytest.raises(ImportFailure) as failure:
        ensure_fits(10 * GiB, 9 * GiB + 512 * 1024**2)
    assert failure.value.reason is Reason.IMAGE_TOO_LARGE
    assert failure.value.permanent
    message = failure.value.message
    assert message.startswith("DataVolume too small to contain image")
    assert "virtual size 10737418240 bytes (10 GiB)" in message
    assert "usable size 10200547328 bytes (9.5 GiB)" in message


def test_one_byte_over_is_refused() -> None:
    with pytest.raises(ImportFailure, match="DataVolume too small to contain image"):
        ensure_fits(GiB + 1, GiB)


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 bytes"),
        (1023, "1023 bytes"),
        (1024, "1 KiB"),
        (1536, "1.5 KiB"),
        (10 * 1024**2, "10 MiB"),
        (4212736, "4.02 MiB"),
        (3 * 1024**4, "3 TiB"),
        (2**63, "8 EiB"),
    ],
)
def test_human_size(size: int, text: str) -> None:
    assert human_size(size) == text
