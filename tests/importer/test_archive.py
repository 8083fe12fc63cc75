"""Safe tar extraction: what lands on disk, and what is refused without leaving a trace."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdicontract.reasons import Reason
from importer.archive import extract_tar
from importer.errors import ImportFailure


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
