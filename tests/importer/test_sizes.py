"""Kubernetes quantities and CDI's usable-size rule."""

from __future__ import annotations

import pytest

from cdicontract.reasons import Reason
from importer.errors import ImportFailure
from importer.sizes import MIB, parse_overhead, parse_quantity, usable_size

Gi = 1 << 30


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("123", 123),
        ("10Gi", 10 * Gi),
        ("1G", 10**9),
        ("1500M", 1500 * 10**6),
        ("1.5Gi", 3 * Gi // 2),
        ("1e3", 1000),
        ("1E3", 1000),
        ("2E", 2 * 10**18),
        ("512Ki", 512 * 1024),
        ("64Mi", 64 * MIB),
        ("1Ti", 1 << 40),
        ("1k", 1000),
        ("0.5", 1),
        ("100m", 1),
        (" 5Mi ", 5 * MIB),
        ("+7", 7),
        (".5Ki", 512),
        ("0", 0),
    ],
)
def test_parses_quantity(text: str, expected: int) -> None:
    assert parse_quantity(text) == expected


@pytest.mark.parametrize(
    "text", ["", "Gi", "10GB", "10 Gi", "-1Gi", "1.2.3", "1e", "10gi", "0x10", "1e999", "ten"]
)
def test_bad_quantity_is_invalid_config(text: str) -> None:
    with pytest.raises(ImportFailure) as exc:
        parse_quantity(text)
    assert exc.value.reason is Reason.INVALID_CONFIG


@pytest.mark.parametrize(
    ("available", "overhead", "expected"),
    [
        (10 * Gi, 0.0, 10 * Gi),
        (10 * Gi + 12345, 0.0, 10 * Gi),
        (1060 * MIB, 0.06, 1000 * MIB),
        (1060 * MIB - 1, 0.06, 999 * MIB),
        (10 * Gi, 0.06, 9660 * MIB),
        (64 * MIB, 0.06, 60 * MIB),
        (MIB - 1, 0.0, 0),
        (2 * Gi, 0.5, 1365 * MIB),
    ],
)
def test_usable_size_follows_cdi_rule(available: int, overhead: float, expected: int) -> None:
    assert usable_size(available, overhead) == expected


@pytest.mark.parametrize("overhead", [-0.1, 1.0, float("nan"), float("inf")])
def test_usable_size_refuses_bad_overhead(overhead: float) -> None:
    with pytest.raises(ImportFailure):
        usable_size(Gi, overhead)


@pytest.mark.parametrize(
    ("text", "expected"), [("0.06", 0.06), ("0", 0.0), (" 0.055 ", 0.055), ("0.999", 0.999)]
)
def test_parses_overhead(text: str, expected: float) -> None:
    assert parse_overhead(text) == expected


@pytest.mark.parametrize("text", ["", "1", "1.5", "-0.1", "abc", "nan", "inf", "6%"])
def test_bad_overhead_is_invalid_config(text: str) -> None:
    with pytest.raises(ImportFailure) as exc:
        parse_overhead(text)
    assert exc.value.reason is Reason.INVALID_CONFIG
