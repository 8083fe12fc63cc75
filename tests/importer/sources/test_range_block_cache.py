import os

from importer.sources.rangeproxy import BlockCache


def test_small_reads_become_few_block_fetches_and_bytes_are_exact() -> None:
    data = os.urandom(100_000)
    calls: list[tuple[int, int]] = []

    def fetch(start: int, end: int):
        calls.append((start, end))
        yield data[start : end + 1]

    cache = BlockCache(fetch, len(data), block=16_384, keep=2)
    for start in range(0, len(data), 1000):
        end = min(len(data) - 1, start + 999)
        assert b"".join(cache(start, end)) == data[start : end + 1]
    assert cache.fetches == len(calls) == -(-len(data) // 16_384)  # each block fetched once
    # A read spanning several blocks, including the short last one.
    assert b"".join(cache(10_000, len(data) - 1)) == data[10_000:]
    assert all(e - s + 1 <= 16_384 for s, e in calls)


def test_only_the_last_blocks_are_kept() -> None:
    data = bytes(range(256)) * 64
    fetched: list[int] = []

    def fetch(start: int, end: int):
        fetched.append(start)
        yield data[start : end + 1]

    cache = BlockCache(fetch, len(data), block=1024, keep=2)
    for block in (0, 1, 2, 3, 0):
        assert (
            b"".join(cache(block * 1024, block * 1024 + 9))
            == data[block * 1024 : block * 1024 + 10]
        )
    # Block 0 was evicted by the later blocks and fetched again; the read-ahead fetched at
    # most one block beyond the last one read.
    assert fetched.count(0) == 2
    assert set(fetched) <= {0, 1024, 2048, 3072, 4096}


def test_reads_ahead_and_retries_a_failed_prefetch() -> None:
    import threading

    data = os.urandom(4096)
    fail_once = {2048}
    seen: list[int] = []
    lock = threading.Lock()

    def fetch(start: int, end: int):
        with lock:
            seen.append(start)
            if start in fail_once:
                fail_once.discard(start)
                raise OSError("dropped")
        yield data[start : end + 1]

    cache = BlockCache(fetch, len(data), block=1024, keep=3)
    assert b"".join(cache(0, 10)) == data[:11]
    assert b"".join(cache(1024, 2047)) == data[1024:2048]  # was already being read ahead
    assert b"".join(cache(2048, 4095)) == data[2048:]  # its prefetch failed: fetched again
    assert seen.count(2048) == 2
    cache.close()


def test_a_block_arriving_in_pieces_is_assembled_and_a_wrong_length_is_an_error() -> None:
    import pytest

    data = os.urandom(5000)
    extra = {"long": False}

    def fetch(start: int, end: int):
        piece = data[start : end + 1]
        for i in range(0, len(piece), 333):  # many small chunks, as a socket delivers them
            yield piece[i : i + 333]
        if extra["long"]:
            yield b"x"

    cache = BlockCache(fetch, len(data), block=2048, keep=2)
    out = list(cache(100, 4999))
    assert b"".join(out) == data[100:]
    assert all(isinstance(p, memoryview) for p in out)  # served without copying the block
    cache.close()

    def short(start: int, end: int):
        yield data[start:end]  # one byte missing

    with pytest.raises(OSError, match="short read"):
        b"".join(BlockCache(short, len(data), block=2048)(0, 10))
    extra["long"] = True
    with pytest.raises(OSError, match="long read"):
        b"".join(BlockCache(fetch, len(data), block=2048)(0, 10))
