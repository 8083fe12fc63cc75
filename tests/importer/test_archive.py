"""Safe tar extraction: what lands on disk, and what is refused without leaving a trace."""

from __future__ import annotations

import gzip
import io
import os
import stat
import subprocess
import tarfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdicontract.reasons import Reason
from importer.archive import extract_tar
from importer.errors import ImportFailure
from importer.redact import redact
from importer.tarbounds import TarBounds
from tests import tarbombs

MiB = 1 << 20


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _file(name: str, data: bytes, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.uid = 4242
    return info, data


def _entry(
    name: str, kind: bytes, linkname: str = "", mode: int = 0o755
) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = mode
    return info, None


def _chunks(data: bytes, size: int = 777) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_extracts_files_dirs_links_and_permissions(tmp_path: Path) -> None:
    big = os.urandom(3 << 20)
    data = _tar(
        _entry("./", tarfile.DIRTYPE),
        _entry("dir", tarfile.DIRTYPE, mode=0o750),
        _file("dir/big.bin", big, 0o600),
        _file("run.sh", b"#!/bin/sh\n", 0o4755),
        _entry("dir/link", tarfile.SYMTYPE, "big.bin"),
        _entry("hard", tarfile.LNKTYPE, "dir/big.bin"),
    )
    (tmp_path / "lost+found").mkdir()
    n = extract_tar(_chunks(data), str(tmp_path))
    assert n == len(big) + 10
    assert (tmp_path / "dir" / "big.bin").read_bytes() == big
    assert (tmp_path / "dir" / "link").read_bytes() == big
    assert os.readlink(tmp_path / "dir" / "link") == "big.bin"
    assert (tmp_path / "hard").stat().st_ino == (tmp_path / "dir" / "big.bin").stat().st_ino
    assert stat.S_IMODE((tmp_path / "dir").stat().st_mode) == 0o750
    assert stat.S_IMODE((tmp_path / "dir" / "big.bin").stat().st_mode) == 0o600
    # setuid is dropped, the rest of the permission bits kept; ownership is ours, not 4242
    assert stat.S_IMODE((tmp_path / "run.sh").stat().st_mode) == 0o755
    assert (tmp_path / "run.sh").stat().st_uid == os.getuid()
    assert sorted(os.listdir(tmp_path)) == ["dir", "hard", "lost+found", "run.sh"]


def test_extracts_into_existing_directories_and_over_old_files(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "keep").write_text("old")
    (tmp_path / "dir" / "f").write_text("old")
    extract_tar(_chunks(_tar(_file("dir/f", b"new"))), str(tmp_path))
    assert (tmp_path / "dir" / "f").read_text() == "new"
    assert (tmp_path / "dir" / "keep").read_text() == "old"


HOSTILE = {
    "absolute-path": [_file("/etc/passwd", b"x")],
    "dotdot": [_file("a/../../escape", b"x")],
    "symlink-absolute": [_entry("l", tarfile.SYMTYPE, "/etc")],
    "symlink-climbs": [_entry("l", tarfile.SYMTYPE, "a/../../etc")],
    "write-through-symlink": [
        _entry("d", tarfile.DIRTYPE),
        _entry("d/l", tarfile.SYMTYPE, "x"),
        _file("d/l/evil", b"x"),
    ],
    "file-replaced-by-link": [_file("f", b"x"), _entry("f", tarfile.SYMTYPE, "g")],
    "hardlink-outside": [_entry("h", tarfile.LNKTYPE, "../../etc/shadow")],
    "hardlink-unknown": [_entry("h", tarfile.LNKTYPE, "not-here")],
    "char-device": [_entry("null", tarfile.CHRTYPE)],
    "block-device": [_entry("sda", tarfile.BLKTYPE)],
    "fifo": [_entry("pipe", tarfile.FIFOTYPE)],
}


@pytest.mark.parametrize("members", HOSTILE.values(), ids=HOSTILE.keys())
def test_refuses_hostile_members_and_leaves_nothing(tmp_path: Path, members: list) -> None:  # type: ignore[type-arg]
    data = _tar(_file("first-ok.txt", b"fine"), *members)
    with pytest.raises(ImportFailure) as err:
        extract_tar(_chunks(data), str(tmp_path))
    assert err.value.reason is Reason.UNSAFE_ARCHIVE
    assert os.listdir(tmp_path) == []


def test_limit_on_extracted_bytes(tmp_path: Path) -> None:
    data = _tar(_file("a", b"x" * 1000), _file("b", b"y" * 1000))
    with pytest.raises(ImportFailure) as err:
        extract_tar(_chunks(data), str(tmp_path), limit=1500)
    assert err.value.reason is Reason.IMAGE_TOO_LARGE
    assert os.listdir(tmp_path) == []
    assert extract_tar(_chunks(data), str(tmp_path), limit=2000) == 2000


def test_truncated_archive_is_invalid_and_leaves_nothing(tmp_path: Path) -> None:
    data = _tar(_file("a", os.urandom(100_000)))
    with pytest.raises(ImportFailure) as err:
        extract_tar(_chunks(data[:50_000]), str(tmp_path))
    assert err.value.reason is Reason.INVALID_IMAGE
    assert os.listdir(tmp_path) == []


def test_not_a_tar_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(ImportFailure) as err:
        extract_tar([os.urandom(4096)], str(tmp_path))
    assert err.value.reason is Reason.INVALID_IMAGE
    assert os.listdir(tmp_path) == []


def test_read_only_directory_in_refused_archive_is_cleaned(tmp_path: Path) -> None:
    data = _tar(
        _entry("ro", tarfile.DIRTYPE, mode=0o500),
        _file("ro/f", b"x"),
        _entry("dev", tarfile.CHRTYPE),
    )
    with pytest.raises(ImportFailure):
        extract_tar(_chunks(data), str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_real_gnu_tar_archive_round_trips(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "file").write_bytes(os.urandom(1 << 20))
    os.symlink("sub/file", src / "ln")
    out = subprocess.run(
        ["tar", "-C", str(src), "-cf", "-", "."], check=True, capture_output=True
    ).stdout
    dest = tmp_path / "dest"
    dest.mkdir()
    extract_tar(_chunks(out, 65536), str(dest))
    assert (dest / "sub" / "file").read_bytes() == (src / "sub" / "file").read_bytes()
    assert os.readlink(dest / "ln") == "sub/file"


# --- links, directory modes and memory without per-member bookkeeping ---------------------

HOSTILE_LINKS = {
    "hardlink-to-directory": [_entry("d", tarfile.DIRTYPE), _entry("h", tarfile.LNKTYPE, "d")],
    "hardlink-through-symlink": [
        _entry("d", tarfile.DIRTYPE),
        _file("d/f", b"x"),
        _entry("s", tarfile.SYMTYPE, "d"),
        _entry("h", tarfile.LNKTYPE, "s/f"),
    ],
    "hardlink-to-symlink": [_entry("l", tarfile.SYMTYPE, "x"), _entry("h", tarfile.LNKTYPE, "l")],
    "hardlink-to-dot": [_entry("h", tarfile.LNKTYPE, "./")],
    "hardlink-to-itself": [_entry("h", tarfile.LNKTYPE, "h")],
}


@pytest.mark.parametrize("members", HOSTILE_LINKS.values(), ids=HOSTILE_LINKS.keys())
def test_hard_links_only_reach_regular_files_through_real_directories(
    tmp_path: Path,
    members: list,  # type: ignore[type-arg]
) -> None:
    with pytest.raises(ImportFailure) as err:
        extract_tar(_chunks(_tar(_file("first-ok.txt", b"fine"), *members)), str(tmp_path))
    assert err.value.reason is Reason.UNSAFE_ARCHIVE
    assert os.listdir(tmp_path) == []


def test_hard_links_to_files_and_to_links_of_files_are_kept(tmp_path: Path) -> None:
    data = _tar(
        _file("a/b/f", b"data"),
        _entry("h1", tarfile.LNKTYPE, "a/b/f"),
        _entry("a/h2", tarfile.LNKTYPE, "./h1"),
    )
    extract_tar(_chunks(data), str(tmp_path))
    inode = (tmp_path / "a" / "b" / "f").stat().st_ino
    assert (tmp_path / "h1").stat().st_ino == inode == (tmp_path / "a" / "h2").stat().st_ino


def test_directory_modes_apply_deepest_first_and_last_listing_wins(tmp_path: Path) -> None:
    data = _tar(
        _entry("a/b/c", tarfile.DIRTYPE, mode=0o750),
        _file("a/b/c/f", b"x"),
        _entry("a/b", tarfile.DIRTYPE, mode=0o500),
        _entry("a", tarfile.DIRTYPE, mode=0o700),
        _entry("a", tarfile.DIRTYPE, mode=0o555),
        _entry("new\nline", tarfile.DIRTYPE, mode=0o711),
    )
    extract_tar(_chunks(data), str(tmp_path))
    modes = {p: stat.S_IMODE((tmp_path / p).stat().st_mode) for p in ("a", "a/b", "a/b/c")}
    assert modes == {"a": 0o555, "a/b": 0o500, "a/b/c": 0o750}
    assert stat.S_IMODE((tmp_path / "new\nline").stat().st_mode) == 0o711
    assert (tmp_path / "a" / "b" / "c" / "f").read_bytes() == b"x"
    assert sorted(os.listdir(tmp_path)) == ["a", "new\nline"]


def test_a_wide_directory_is_moved_into_place_whole(tmp_path: Path) -> None:
    names = [f"f{i:05d}" for i in range(3000)]
    extract_tar(_chunks(_tar(*(_file(n, n.encode()) for n in names)), 1 << 20), str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == names
    assert (tmp_path / "f02999").read_bytes() == b"f02999"


def test_memory_stays_flat_over_many_members(tmp_path: Path) -> None:
    data = tarbombs.joined(tarbombs.empty_files(5000))
    chunks = [data[i : i + MiB] for i in range(0, len(data), MiB)]
    tracemalloc.start()
    try:
        extract_tar(iter(chunks), str(tmp_path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(os.listdir(tmp_path)) == 5000
    # Keeping tarfile's member list and a set of names cost 3.6 MiB here (~740 B a member).
    assert peak < 2 * MiB


# --- bounds -------------------------------------------------------------------------------


def test_member_flood_is_refused_at_the_cap_and_leaves_nothing(tmp_path: Path) -> None:
    bounds = TarBounds("archive", max_members=1000)
    assert (
        extract_tar(
            _chunks(tarbombs.joined(tarbombs.empty_files(1000))), str(tmp_path), bounds=bounds
        )
        == 0
    )
    for p in tmp_path.iterdir():
        p.unlink()
    with pytest.raises(ImportFailure) as err:
        extract_tar(
            _chunks(tarbombs.joined(tarbombs.empty_files(1001))), str(tmp_path), bounds=bounds
        )
    assert err.value.reason is Reason.ARCHIVE_REFUSED
    assert "more than 1000 members" in err.value.message
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "bomb",
    [
        pytest.param(lambda: tarbombs.pax_long_name(50 * MiB), id="pax-long-name-50MiB"),
        pytest.param(lambda: tarbombs.gnu_long_name(50 * MiB), id="gnu-long-name-50MiB"),
        pytest.param(lambda: tarbombs.long_name_chain(10_000), id="long-name-chain"),
    ],
)
def test_header_bombs_are_refused_and_leave_nothing(tmp_path: Path, bomb) -> None:  # type: ignore[no-untyped-def]
    gz = tarbombs.gzipped(bomb())
    stream = gzip.GzipFile(fileobj=io.BytesIO(gz))
    tracemalloc.start()
    try:
        with pytest.raises(ImportFailure) as err:
            extract_tar(iter(lambda: stream.read(1 << 20), b""), str(tmp_path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert err.value.reason is Reason.ARCHIVE_REFUSED
    assert os.listdir(tmp_path) == []
    assert peak < 8 * MiB


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("b" * (MiB - 100), id="path-of-a-MiB"),
        pytest.param("d/" + "c" * 300, id="component-over-NAME_MAX"),
    ],
)
def test_names_the_volume_cannot_hold_are_refused_in_a_short_message(
    tmp_path: Path, name: str
) -> None:
    data = tarbombs.joined(tarbombs.pax_long_name(len(name)))
    data = data.replace(b"a" * len(name), name.encode())
    started = time.monotonic()
    with pytest.raises(ImportFailure) as err:
        extract_tar(_chunks(data, MiB), str(tmp_path))
    assert err.value.reason is Reason.ARCHIVE_REFUSED
    assert len(err.value.message) < 200
    assert redact(err.value.message) == err.value.message
    assert time.monotonic() - started < 5
    assert os.listdir(tmp_path) == []


# --- durability ---------------------------------------------------------------------------


def test_files_are_synced_once_they_are_in_place(tmp_path: Path) -> None:
    synced: list[tuple[str, bool]] = []

    def sync(path: str) -> None:
        synced.append((path, (Path(path) / "dir" / "f").exists()))

    extract_tar(_chunks(_tar(_file("dir/f", b"x"))), str(tmp_path), sync=sync)
    assert synced == [(str(tmp_path), True)]


def test_a_refused_archive_is_not_synced(tmp_path: Path) -> None:
    synced: list[str] = []
    with pytest.raises(ImportFailure):
        extract_tar(_chunks(_tar(_file("/abs", b"x"))), str(tmp_path), sync=synced.append)
    assert synced == []
