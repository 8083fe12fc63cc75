"""The file target on real file systems: holes, growth, atomic commit, abort, ENOSPC."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cdicontract.reasons import Reason
from importer.errors import ImportFailure
from importer.targets import FileTarget, select_target

MiB = 1 << 20


def data_ranges(path: Path) -> list[tuple[int, int]]:
    """Allocated data extents per SEEK_DATA/SEEK_HOLE."""
    out: list[tuple[int, int]] = []
    fd = os.open(path, os.O_RDONLY)
    try:
        size, pos = os.fstat(fd).st_size, 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            out.append((start, end))
            pos = end
    finally:
        os.close(fd)
    return out


def test_zero_blocks_become_holes_and_bytes_match(tmp_path: Path) -> None:
    dest = tmp_path / "disk.img"
    data = os.urandom(MiB)
    image = data + bytes(6 * MiB) + data + bytes(3 * MiB)
    t = select_target(str(dest))
    assert isinstance(t, FileTarget) and not t.is_block
    t.begin()
    for off in range(0, len(image), MiB):
        t.write_at(off, image[off : off + MiB])
    t.commit(len(image), None)
    assert dest.read_bytes() == image
    assert data_ranges(dest) == [(0, MiB), (7 * MiB, 8 * MiB)]
    assert dest.stat().st_blocks * 512 <= 2 * MiB + 64 * 1024
    assert not Path(str(dest) + ".part").exists()


def test_rewriting_a_region_with_zeros_punches_it(tmp_path: Path) -> None:
    dest = tmp_path / "disk.img"
    t = FileTarget(str(dest))
    t.begin()
    t.write_at(0, os.urandom(2 * MiB))
    t.write_at(MiB, bytes(MiB))
    t.commit(2 * MiB, None)
    assert dest.read_bytes()[MiB:] == bytes(MiB)
    assert data_ranges(dest) == [(0, MiB)]


def test_grows_to_usable_size_but_never_below_image(tmp_path: Path) -> None:
    dest = tmp_path / "disk.img"
    t = FileTarget(str(dest))
    assert t.capacity(1060 * MiB, 0.06) == 996 * MiB
    assert t.capacity(None, 0.06) is None
    t.begin()
    t.write_at(0, b"x" * 5000)
    t.commit(5000, 64 * MiB)
    assert dest.stat().st_size == 64 * MiB
    assert dest.read_bytes()[:5001] == b"x" * 5000 + b"\0"
    t2 = FileTarget(str(tmp_path / "b.img"))
    t2.begin()
    t2.write_at(0, b"y" * 3 * MiB)
    t2.commit(3 * MiB, MiB)
    assert (tmp_path / "b.img").stat().st_size == 3 * MiB


def test_preallocation_allocates_every_block(tmp_path: Path) -> None:
    dest = tmp_path / "disk.img"
    t = FileTarget(str(dest))
    t.begin()
    t.write_at(0, os.urandom(MiB))
    t.commit(MiB, 8 * MiB, preallocate=True)
    assert dest.stat().st_size == 8 * MiB
    assert dest.stat().st_blocks * 512 >= 8 * MiB


def test_abort_leaves_no_image_and_keeps_an_existing_one(tmp_path: Path) -> None:
    dest = tmp_path / "disk.img"
    t = FileTarget(str(dest))
    t.begin()
    t.write_at(0, b"partial" * 1000)
    t.abort()
    assert not dest.exists() and not Path(t.part_path).exists()
    dest.write_bytes(b"previous image")
    t.begin()
    t.write_at(0, b"partial" * 1000)
    t.abort()
    t.abort()  # idempotent
    assert dest.read_bytes() == b"previous image"
    assert os.listdir(tmp_path) == ["disk.img"]


def test_commit_replaces_existing_dest_atomically(tmp_path: Path) -> None:
    dest = tmp_path / "disk.img"
    dest.write_bytes(b"old" * 100000)
    t = FileTarget(str(dest))
    t.begin()
    assert dest.read_bytes() == b"old" * 100000  # untouched while writing
    t.write_at(0, b"new")
    t.commit(3, None)
    assert dest.read_bytes() == b"new"


def test_blank_is_a_sparse_image_of_the_usable_size(tmp_path: Path) -> None:
    dest = tmp_path / "disk.img"
    FileTarget(str(dest)).blank(100 * MiB, preallocate=False)
    assert dest.stat().st_size == 100 * MiB
    assert dest.stat().st_blocks == 0
    pre = tmp_path / "pre.img"
    FileTarget(str(pre)).blank(4 * MiB, preallocate=True)
    assert pre.stat().st_blocks * 512 >= 4 * MiB
    assert pre.read_bytes() == bytes(4 * MiB)


def test_full_file_system_is_no_space_and_leaves_nothing(small_tmpfs: Path) -> None:
    dest = small_tmpfs / "disk.img"
    t = FileTarget(str(dest))
    t.begin()
    with pytest.raises(ImportFailure) as exc:
        for off in range(0, 16 * MiB, MiB):
            t.write_at(off, os.urandom(MiB))
    assert exc.value.reason is Reason.NO_SPACE
    t.abort()
    assert os.listdir(small_tmpfs) == []


def test_preallocating_beyond_free_space_is_no_space_and_leaves_nothing(small_tmpfs: Path) -> None:
    dest = small_tmpfs / "disk.img"
    with pytest.raises(ImportFailure) as exc:
        FileTarget(str(dest)).blank(64 * MiB, preallocate=True)
    assert exc.value.reason is Reason.NO_SPACE
    assert os.listdir(small_tmpfs) == []


def test_sparse_image_larger_than_the_file_system_fits(small_tmpfs: Path) -> None:
    dest = small_tmpfs / "disk.img"
    t = FileTarget(str(dest))
    t.begin()
    t.write_at(0, os.urandom(MiB))
    for off in range(MiB, 64 * MiB, MiB):
        t.write_at(off, bytes(MiB))
    t.commit(64 * MiB, None)
    assert dest.stat().st_size == 64 * MiB


def test_missing_directory_is_invalid_config(tmp_path: Path) -> None:
    with pytest.raises(ImportFailure) as exc:
        FileTarget(str(tmp_path / "nope" / "disk.img")).begin()
    assert exc.value.reason is Reason.INVALID_CONFIG


def test_symlinked_part_file_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    os.symlink(victim, tmp_path / "disk.img.part")
    with pytest.raises(ImportFailure):
        FileTarget(str(tmp_path / "disk.img")).begin()
    assert victim.read_bytes() == b"keep"


def test_directory_selects_no_target(tmp_path: Path) -> None:
    with pytest.raises(ImportFailure) as exc:
        select_target(str(tmp_path))
    assert exc.value.reason is Reason.INVALID_CONFIG


def test_a_bad_overhead_is_invalid_config(tmp_path: Path) -> None:
    with pytest.raises(ImportFailure) as e:
        FileTarget(str(tmp_path / "disk.img")).capacity(MiB, 1.0)
    assert e.value.reason is Reason.INVALID_CONFIG
