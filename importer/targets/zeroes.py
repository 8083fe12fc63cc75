"""Which parts of a buffer are whole zero blocks: the decision behind sparse writing.

Pure functions over bytes. Only blocks aligned to the target's offsets can become
holes; a partial block at either end of a buffer is always reported as data (writing a
few zero bytes is correct, punching a partial block is not possible).
"""

from __future__ import annotations

import functools

BLOCK = 4096

Run = tuple[int, int, bool]
"""(start, end, is_zero), offsets relative to the buffer."""


@functools.lru_cache(maxsize=16)
def zeros(length: int) -> bytes:
    """A shared all-zero buffer (comparisons against it run at memcmp speed)."""
    return bytes(length)


def is_zero(data: bytes) -> bool:
    return data == zeros(len(data))


def zero_runs(data: bytes, offset: int, block: int = BLOCK) -> list[Run]:
    """Split `data`, which will be written at `offset`, into data and zero-block runs.

    Adjacent runs of the same kind are merged, so a typical chunk (all data or all
    zeros) gives one run. Cost: one memcmp for an all-zero chunk, one substring search
    for a chunk without any zero block, a 4 KiB compare per block otherwise.
    """
    n = len(data)
    if n == 0:
        return []
    first = min((-offset) % block, n)
    last = first + (n - first) // block * block
    runs: list[Run] = []
    if first:
        runs.append((0, first, False))
    if last > first:
        middle = data if (first, last) == (0, n) else data[first:last]
        _classify(middle, first, block, runs)
    if last < n:
        _append(runs, last, n, False)
    return runs


def _classify(middle: bytes, base: int, block: int, runs: list[Run]) -> None:
    size = len(middle)
    if is_zero(middle):
        _append(runs, base, base + size, True)
        return
    hit = middle.find(zeros(block))
    if hit < 0:
        _append(runs, base, base + size, False)
        return
    # Blocks before the first zero-block candidate are data; classify from there on.
    start = hit - hit % block
    if start:
        _append(runs, base, base + start, False)
    zero_block = zeros(block)
    for pos in range(start, size, block):
        _append(runs, base + pos, base + pos + block, middle[pos : pos + block] == zero_block)


def _append(runs: list[Run], start: int, end: int, zero: bool) -> None:
    if runs and runs[-1][2] == zero and runs[-1][1] == start:
        runs[-1] = (runs[-1][0], end, zero)
    else:
        runs.append((start, end, zero))
