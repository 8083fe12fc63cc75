"""Kubernetes quantities and CDI's size rules: the one implementation both sides use."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdicontract.sizes import (
    MIB,
    SizeError,
    format_quantity,
    parse_overhead,
    parse_quantity,
    required_size,
    scratch_size,
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


# CDI's own figures: computed by CDI's Go formulas (float64, `GetRequiredSpace` dividing by
# 1 - overhead, `GetUsableSpace`) with the overhead parsed by strconv.ParseFloat.
@pytest.mark.parametrize(
    ("overhead", "requested", "required", "usable"),
    [
        ("0", 1, 1048576, 1 * MIB),
        ("0", MIB + 1, 2097152, 2 * MIB),
        ("0.06", 1, 1115507, 1 * MIB),
        ("0.06", MIB, 1115507, 1 * MIB),
        ("0.06", 47 * MIB, 52428800, 47 * MIB),
        ("0.06", 100 * MIB + 1, 112666145, 101 * MIB),
        ("0.06", Gi, 1142278537, 1024 * MIB),
        ("0.06", Gi + 1, 1143394043, 1025 * MIB),
        ("0.06", 5000000007, 5319849941, 4769 * MIB),
        ("0.06", 10 * Gi, 11422785362, 10240 * MIB),
        ("0.055", 10 * Gi, 11362347344, 10240 * MIB),
        ("0.1", Gi + 1, 1194211556, 1025 * MIB),
        ("0.5", 5000000007, 10001317888, 4769 * MIB),
        ("0.999", Gi, 1073741824000, 1024 * MIB),
        ("0.06", 3 << 40, 3509079663115, 3145728 * MIB),
    ],
)
def test_required_size_is_cdis_byte_exact_figure(
    overhead: str, requested: int, required: int, usable: int
) -> None:
    o = parse_overhead(overhead)
    assert required_size(requested, o) == required
    assert usable_size(required, o) == usable


def test_required_size_is_not_rounded_to_a_mib() -> None:
    assert required_size(Gi, 0.06) % MIB != 0


@settings(max_examples=3000, deadline=None)
@given(
    requested=st.integers(min_value=0, max_value=2**62),
    overhead=st.one_of(
        st.floats(min_value=0, max_value=1, exclude_max=True),
        st.integers(min_value=0, max_value=999).map(lambda k: parse_overhead(f"{k / 1000}")),
    ),
)
def test_an_image_of_the_requested_size_always_fits(requested: int, overhead: float) -> None:
    """The promise both sides rely on: a claim sized by the controller for `requested` bytes
    leaves the importer at least `requested` usable bytes, for every size and overhead."""
    claim = required_size(requested, overhead)
    assert usable_size(claim, overhead) >= requested
    assert claim >= requested


@settings(max_examples=500, deadline=None)
@given(
    requested=st.integers(min_value=0, max_value=2**50),
    overhead=st.integers(min_value=0, max_value=999).map(lambda k: k / 1000),
)
def test_required_size_is_the_smallest_claim_with_that_usable_size(
    requested: int, overhead: float
) -> None:
    """Not inflated beyond CDI's figure: one byte less than a claim that is more than the
    aligned request would no longer hold it (the claim is CDI's ceil, not a rounded-up MiB)."""
    claim = required_size(requested, overhead)
    aligned = -(-requested // MIB) * MIB
    assert claim <= math.ceil(aligned / (1 - overhead)) + 1


def test_scratch_size_holds_what_fits_the_target() -> None:
    # CDI: RoundUp(GetRequiredSpace(scratch, GetUsableSpace(target, request)), 1 MiB)
    claim = required_size(Gi + 1, 0.06)
    assert scratch_size(claim, 0.06, 0.06) == 1091 * MIB
    assert scratch_size(Gi, 0.0, 0.06) == 1090 * MIB
    assert usable_size(scratch_size(claim, 0.06, 0.1), 0.1) >= usable_size(claim, 0.06)


@pytest.mark.parametrize(
    ("text", "expected"), [("0.06", 0.06), ("0", 0.0), (" 0.055 ", 0.055), ("0.999", 0.999)]
)
def test_parses_overhead(text: str, expected: float) -> None:
    assert parse_overhead(text) == expected


@pytest.mark.parametrize("text", ["", "1", "1.5", "-0.1", "abc", "nan", "inf", "6%"])
def test_bad_overhead_is_refused(text: str) -> None:
    with pytest.raises(SizeError):
        parse_overhead(text)
