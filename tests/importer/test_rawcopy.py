"""Streaming a raw image into a target: bytes, holes, limits, errors from either side."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdicontract.reasons import Reason
from importer.compression import Compression, decompress
from importer.errors import ImportFailure
from importer.rawcopy import aligned, copy_raw
from importer.targets import FileTarget
from importer.targets.zeroes import BLOCK
from tests.importer.targets.conftest import small_tmpfs  # noqa: F401 - fixture

MiB = 1 << 20


def odd_chunks(data: bytes, size: int = 65537) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def image() -> bytes:
    return os.urandom(MiB + 123) + bytes(5 * MiB) + os.urandom(3000) + bytes(2 * MiB + 7)


@pytest.mark.parametrize("prefetch", [0, 4])
def test_odd_sized_chunks_land_sparse_and_identical(tmp_path: Path, prefetch: int) -> None:
    img = image()
    dest = tmp_path / "disk.img"
    t = FileTarget(str(dest))
    t.begin()
    seen: list[int] = []
    n = copy_raw(odd_chunks(img), t, limit=None, on_bytes=seen.append, prefetch=prefetch)
    t.commit(n, None)
    assert n == len(img) == sum(seen)
    assert dest.read_bytes() == img
    # Only the two data regions are allocated despite 65537-byte chunks.
    assert dest.stat().st_blocks * 512 <= MiB + 123 + 3000 + 4 * BLOCK + 64 * 1024


def test_aligned_reblocks_to_block_multiples() -> None:
    pieces = list(aligned(odd_chunks(bytes(range(256)) * 40000, 1000), 64 * 1024))
    assert b"".join(pieces) == bytes(range(256)) * 40000
    assert all(len(p) % BLOCK == 0 for p in pieces[:-1])
    passthrough = [b"a" * BLOCK, b"b" * 2 * BLOCK]
    assert all(a is b for a, b in zip(aligned(passthrough), passthrough, strict=True))


@pytest.mark.parametrize("prefetch", [0, 4])
def test_image_beyond_limit_is_refused_before_writing_past_it(
    tmp_path: Path, prefetch: int
) -> None:
    dest = tmp_path / "disk.img"
    t = FileTarget(str(dest))
    t.begin()
    with pytest.raises(ImportFailure) as exc:
        copy_raw(odd_chunks(os.urandom(3 * MiB)), t, limit=2 * MiB, prefetch=prefetch)
    assert exc.value.reason is Reason.IMAGE_TOO_LARGE
    assert "DataVolume too small to contain image" in exc.value.message
    assert os.stat(t.part_path).st_size <= 2 * MiB
    t.abort()
    assert not dest.exists()


def test_exact_fit_is_accepted(tmp_path: Path) -> None:
    t = FileTarget(str(tmp_path / "disk.img"))
    t.begin()
    assert copy_raw(odd_chunks(bytes(2 * MiB)), t, limit=2 * MiB) == 2 * MiB
    t.commit(2 * MiB, 2 * MiB)


@pytest.mark.parametrize("prefetch", [0, 4])
def test_source_error_reaches_the_caller_unchanged(tmp_path: Path, prefetch: int) -> None:
    blob = subprocess.run(["gzip", "-c"], input=image(), capture_output=True, check=True).stdout
    t = FileTarget(str(tmp_path / "disk.img"))
    t.begin()
    with pytest.raises(ImportFailure) as exc:
        copy_raw(
            decompress(odd_chunks(blob[:-100]), Compression.GZIP), t, limit=None, prefetch=prefetch
        )
    assert exc.value.reason is Reason.INVALID_IMAGE
    t.abort()


def test_target_error_stops_the_reader_thread(small_tmpfs: Path) -> None:  # noqa: F811
    produced = 0

    def endless() -> Iterator[bytes]:
        nonlocal produced
        while True:
            produced += 1
            yield os.urandom(MiB)

    t = FileTarget(str(small_tmpfs / "disk.img"))
    t.begin()
    with pytest.raises(ImportFailure) as exc:
        copy_raw(endless(), t, limit=None, prefetch=4)
    assert exc.value.reason is Reason.NO_SPACE
    t.abort()
    stopped_at = produced
    assert stopped_at < 20  # 8 MiB file system + a bounded queue
    assert os.listdir(small_tmpfs) == []


@pytest.mark.slow
def test_page_cache_of_the_written_file_stays_bounded(tmp_path: Path) -> None:
    """CDI #2110: an import must not leave the whole image in (cgroup-charged) page cache."""
    dest = tmp_path / "disk.img"
    t = FileTarget(str(dest))
    t.begin()
    data = os.urandom(MiB)
    resident_during: list[int] = []

    def chunks() -> Iterator[bytes]:
        for i in range(256):
            if i == 200:
                resident_during.append(_resident_bytes(Path(t.part_path)))
            yield data

    copy_raw(chunks(), t, limit=None, prefetch=0)
    t.commit(256 * MiB, None)
    assert resident_during[0] <= 64 * MiB, resident_during
    assert _resident_bytes(dest) <= 16 * MiB


def _resident_bytes(path: Path) -> int:
    out = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(out.split()[0])
