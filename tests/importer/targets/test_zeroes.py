"""The zero-block decision: which parts of a buffer become holes."""

from __future__ import annotations

import itertools
import os

import pytest

from importer.targets.zeroes import BLOCK, zero_runs

D = os.urandom(BLOCK)
Z = bytes(BLOCK)


@pytest.mark.parametrize(
    ("data", "offset", "expected"),
    [
        (b"", 0, []),
        (Z * 4, 0, [(0, 4 * BLOCK, True)]),
        (D * 4, 0, [(0, 4 * BLOCK, False)]),
        (
            D + Z + Z + D,
            0,
            [(0, BLOCK, False), (BLOCK, 3 * BLOCK, True), (3 * BLOCK, 4 * BLOCK, False)],
        ),
        (Z + D, 0, [(0, BLOCK, True), (BLOCK, 2 * BLOCK, False)]),
        (Z * 2 + b"\0" * 10, 0, [(0, 2 * BLOCK, True), (2 * BLOCK, 2 * BLOCK + 10, False)]),
        (
            Z * 3,
            100,
            [
                (0, BLOCK - 100, False),
                (BLOCK - 100, 3 * BLOCK - 100, True),
                (3 * BLOCK - 100, 3 * BLOCK, False),
            ],
        ),
        (b"\0" * 100, 0, [(0, 100, False)]),
        (D[:-1] + b"\0" + Z, 0, [(0, BLOCK, False), (BLOCK, 2 * BLOCK, True)]),
    ],
    ids=[
        "empty",
        "all-zero",
        "all-data",
        "hole-in-middle",
        "leading-hole",
        "short-tail",
        "unaligned",
        "partial-only",
        "zero-byte-not-block",
    ],
)
def test_zero_runs(data: bytes, offset: int, expected: list[tuple[int, int, bool]]) -> None:
    assert zero_runs(data, offset) == expected


def test_runs_cover_the_buffer_and_match_content() -> None:
    blocks = [D if b == "d" else Z for b in "ddzdzzzdzzdddz" * 20]
    data = b"".join(blocks)
    runs = zero_runs(data, 0)
    assert runs[0][0] == 0 and runs[-1][1] == len(data)
    for (_, end, zero), (start, _, next_zero) in itertools.pairwise(runs):
        assert end == start and zero != next_zero
    for start, end, zero in runs:
        assert (data[start:end] == bytes(end - start)) == zero
