"""When compression pays: the wire's time saved against the CPU time it costs both ends."""

from __future__ import annotations

import pytest

from cloner.pays import ASSUMED_WIRE, WORTH, WireRate, pays

GBIT = 8 / 1e9  # seconds per byte of a 1 Gbit/s link
TEN_GBIT = GBIT / 10
ZSTD_FAST = 1 / 300e6  # seconds per byte of a fast zstd level on ordinary data


def test_compressible_data_is_compressed_on_a_slow_link_not_on_a_fast_one() -> None:
    assert pays(0.5, ZSTD_FAST, GBIT, workers=2)
    assert not pays(0.5, ZSTD_FAST, TEN_GBIT, workers=2)


def test_more_workers_make_compression_cheaper() -> None:
    wire = 1 / 250e6
    assert not pays(0.5, ZSTD_FAST, wire, workers=1)
    assert pays(0.5, ZSTD_FAST, wire, workers=4)


def test_what_does_not_shrink_enough_is_never_compressed() -> None:
    assert not pays(WORTH, 1e-12, 1.0, workers=8)
    assert not pays(1.2, 1e-12, 1.0, workers=8)
    assert pays(WORTH - 0.01, 1e-12, 1.0, workers=8)


def test_data_that_compresses_fast_and_well_pays_even_on_a_fast_wire() -> None:
    assert pays(0.01, 1 / 3e9, TEN_GBIT, workers=1)


def test_the_wire_is_assumed_until_measured_then_smoothed() -> None:
    w = WireRate()
    assert (w.seconds_per_byte, w.measured) == (ASSUMED_WIRE, False)
    w.observe(1.0, 1000)
    assert (w.seconds_per_byte, w.measured) == (1e-3, True)
    for _ in range(80):
        w.observe(1.0, 1_000_000)
    assert w.seconds_per_byte == pytest.approx(1e-6, rel=1e-3)
    w.observe(1.0, 0)  # nothing sent: nothing learned
    assert w.seconds_per_byte == pytest.approx(1e-6, rel=1e-3)
