"""Kubernetes quantities and CDI's size rules: the one implementation both sides use."""

from __future__ import annotations

import pytest

from cdicontract.sizes import (
    MIB,
    SizeError,
    format_quantity,
    parse_overhead,
    parse_quantity,
    required_size,
    usable_size,
)

Gi = 1 << 30


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("123", 123),
        ("10Gi", 10 * Gi),
        ("1Gi", Gi),
        ("10Mi", 10 * MIB),
        ("1G", 10**9),
        ("500M", 5 * 10**8),
        ("1500M", 1500 * 10**6),
        ("1.5Gi", 3 * Gi // 2),
        ("1e3", 1000),
        ("1E3", 1000),
        ("2E", 2 * 10**18),
        ("512Ki", 512 * 1024),
        ("64Mi", 64 * MIB),
        ("1Ti", 1 << 40),
        ("2Ti", 2 << 40),
        ("1k", 1000),
        ("0.5", 1),
        ("100m", 1),
        ("1n", 1),
        (" 5Mi ", 5 * MIB),
        ("+7", 7),
        (".5Ki", 512),
        ("0", 0),
        (42, 42),
    ],
    ids=str,
)
def test_parses_kubernetes_quantities_to_bytes_rounded_up(text: str | int, expected: int) -> None:
    assert parse_quantity(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Gi",
        "10GB",
        "1GB",
        "10 Gi",
        "1 Gi",
        "-1Gi",
        "-x",
        "1.2.3",
        "1e",
        "10gi",
        "0x10",
        "1e999",
        "ten",
        -1,
    ],
    ids=repr,
)
def test_rejects_what_is_not_a_size(text: str | int) -> None:
    with pytest.raises(SizeError):
        parse_quantity(text)


def test_size_error_is_a_value_error_naming_the_input() -> None:
    with pytest.raises(ValueError, match="'10GB'"):
        parse_quantity("10GB")


def test_formats_exact_binary_sizes_compactly() -> None:
    assert format_quantity(1 << 30) == "1Gi"
    assert format_quantity(1090 << 20) == "1090Mi"
    assert format_quantity(1000) == "1000"


@pytest.mark.parametrize(
    ("available", "overhead", "expected"),
    [
        (10 * Gi, 0.0, 10 * Gi),
        (10 * Gi + 12345, 0.0, 10 * Gi),
        (1060 * MIB, 0.06, 996 * MIB),
        (1060 * MIB - 1, 0.06, 996 * MIB),
        (1090 * MIB, 0.06, 1024 * MIB),  # what the controller claims for 1Gi at 6%
        (10 * Gi, 0.06, 9625 * MIB),
        (64 * MIB, 0.06, 60 * MIB),
        (MIB - 1, 0.0, 0),
        (2 * Gi, 0.5, 1024 * MIB),
        (1000 * MIB, 0.055, 945 * MIB),  # 0.945 x 1000 MiB exactly: no float rounding down
    ],
)
def test_usable_size_is_cdis_get_usable_space(
    available: int, overhead: float, expected: int
) -> None:
    assert usable_size(available, overhead) == expected


@pytest.mark.parametrize("overhead", [-0.1, 1.0, float("nan"), float("inf")])
def test_usable_size_refuses_bad_overhead(overhead: float) -> None:
    with pytest.raises(SizeError):
        usable_size(Gi, overhead)


def test_usable_size_refuses_a_negative_size() -> None:
    with pytest.raises(SizeError):
        usable_size(-1, 0.06)


@pytest.mark.parametrize("requested", [1 << 20, 1 << 30, 10 << 30, 5 * 10**9 + 7])
@pytest.mark.parametrize("overhead", [0.0, 0.055, 0.06, 0.5])
def test_required_size_leaves_the_requested_size_usable(requested: int, overhead: float) -> None:
    claim = required_size(requested, overhead)
    assert usable_size(claim, overhead) >= requested // MIB * MIB
    assert claim % MIB == 0 or overhead == 0


@pytest.mark.parametrize(
    ("text", "expected"), [("0.06", 0.06), ("0", 0.0), (" 0.055 ", 0.055), ("0.999", 0.999)]
)
def test_parses_overhead(text: str, expected: float) -> None:
    assert parse_overhead(text) == expected


@pytest.mark.parametrize("text", ["", "1", "1.5", "-0.1", "abc", "nan", "inf", "6%"])
def test_bad_overhead_is_refused(text: str) -> None:
    with pytest.raises(SizeError):
        parse_overhead(text)
