"""Bounded tar reading: real archives read as tarfile reads them, bombs refused with flat memory."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import subprocess
import tarfile
import time
import tracemalloc
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from cdicontract.reasons import Reason
from importer import tarbounds
from importer.errors import ImportFailure
from importer.tarbounds import TarBounds
from tests import tarbombs

MiB = 1 << 20
SMALL = TarBounds("archive", max_members=1000)


def _read(fileobj: io.BufferedIOBase, bounds: TarBounds = SMALL, *, seekable: bool = False) -> int:
    opener = tarbounds.open_seekable if seekable else tarbounds.open_stream
    with opener(fileobj, bounds) as tar:
        count = sum(1 for _ in tar)
        assert tar.members == []
    return count


def _members(data: bytes, bounds: TarBounds = SMALL, *, seekable: bool = False) -> int:
    return _read(io.BytesIO(data), bounds, seekable=seekable)


def _refused(read: Callable[[], object]) -> tuple[str, int]:
    """The refusal's message and the peak of Python memory while reading."""
    tracemalloc.start()
    try:
        with pytest.raises(ImportFailure) as err:
            read()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert err.value.reason is Reason.ARCHIVE_REFUSED
    assert err.value.permanent
    return err.value.message, peak


def _gunzip_stream(pieces: Iterable[bytes]) -> gzip.GzipFile:
    return gzip.GzipFile(fileobj=io.BytesIO(tarbombs.gzipped(pieces)))


# --- real archives are read exactly as tarfile reads them ---------------------------------


@pytest.fixture(scope="module")
def gnu_tar_archives(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Archives written by GNU tar in each format, with long names, links and sparse files."""
    if shutil.which("tar") is None:
        pytest.skip("GNU tar is not installed")
    tmp = tmp_path_factory.mktemp("gnutar")
    src = tmp / "src"
    deep = src / ("d" * 120)
    deep.mkdir(parents=True)
    (deep / ("f" * 150)).write_text("hi")
    os.symlink("l" * 200, src / "longlink")
    with open(src / "sparse", "wb") as f:  # 60 data regions: more than one header holds
        f.truncate(10 * MiB)
        for i in range(60):
            f.seek(i * 160 * 1024)
            f.write(os.urandom(100))
    os.link(src / "sparse", src / "hard")
    out = []
    variants = [
        ("gnu", []),
        ("oldgnu", []),
        ("posix", ["--sparse-version=0.0"]),
        ("posix", ["--sparse-version=0.1"]),
        ("posix", ["--sparse-version=1.0"]),
    ]
    for fmt, extra in variants:
        path = tmp / f"{fmt}{''.join(extra)}.tar"
        cmd = ["tar", f"--format={fmt}", "--sparse", *extra, "-cf", str(path), "-C", str(src), "."]
        subprocess.run(cmd, check=True, capture_output=True)
        out.append(path)
    return out


def _describe(member: tarfile.TarInfo) -> tuple[object, ...]:
    return (
        member.name,
        member.type,
        member.size,
        member.linkname,
        member.mode,
        member.mtime,
        member.offset,
        member.offset_data,
        member.sparse,
        dict(member.pax_headers),
    )


@pytest.mark.parametrize("seekable", [False, True], ids=["stream", "seekable"])
def test_gnu_tar_archives_read_as_tarfile_reads_them(
    gnu_tar_archives: list[Path], seekable: bool
) -> None:
    for path in gnu_tar_archives:
        data = path.read_bytes()
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:" if seekable else "r|") as tar:
            expected = [_describe(m) for m in tar]
        opener = tarbounds.open_seekable if seekable else tarbounds.open_stream
        with opener(io.BytesIO(data), SMALL) as tar:
            got = [_describe(m) for m in tar]
        assert got == expected, path.name
        assert any(m[8] for m in got), f"{path.name}: no sparse member"


def test_python_pax_archive_with_xattrs_and_global_header_reads_the_same() -> None:
    buf = io.BytesIO()
    with tarfile.open(
        fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"comment": "abc123"}
    ) as tar:
        for i in range(5):
            info = tarfile.TarInfo("é/" + "n" * 300 + str(i))
            info.size = 3
            info.pax_headers = {"SCHILY.xattr.user.k": "v" * 1000, "mtime": "1.5"}
            tar.addfile(info, io.BytesIO(b"abc"))
    data = buf.getvalue()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tar:
        expected = [_describe(m) for m in tar]
    with tarbounds.open_stream(io.BytesIO(data), SMALL) as tar:
        got = [(_describe(m), tar.extractfile(m).read()) for m in tar]  # type: ignore[union-attr]
    assert [g for g, _ in got] == expected
    assert {body for _, body in got} == {b"abc"}


# --- oversized extended headers -----------------------------------------------------------


def test_pax_long_name_of_50_mib_in_a_small_gzip_is_refused_before_it_is_read() -> None:
    gz = tarbombs.gzipped(tarbombs.pax_long_name(50 * MiB))
    assert len(gz) < 200_000
    message, peak = _refused(lambda: _read(gzip.GzipFile(fileobj=io.BytesIO(gz))))
    assert "pax extended header of 52428" in message
    assert "bound of 1048576 bytes per extended header" in message
    assert peak < 8 * MiB


def test_pax_header_declaring_a_gib_is_refused_by_its_size_alone() -> None:
    data = tarbombs.joined(tarbombs.declared_only(tarfile.XHDTYPE, 1 << 30))
    message, peak = _refused(lambda: _members(data))
    assert "pax extended header of 1073741824 bytes" in message
    assert peak < MiB


@pytest.mark.parametrize(
    ("kind", "label"),
    [(tarfile.GNUTYPE_LONGNAME, "GNU long name"), (tarfile.GNUTYPE_LONGLINK, "GNU long link")],
)
def test_gnu_long_name_bomb_is_refused(kind: bytes, label: str) -> None:
    stream = _gunzip_stream(tarbombs.gnu_long_name(50 * MiB, kind))
    message, peak = _refused(lambda: _read(stream))
    assert f"{label} header of {50 * MiB + 1} bytes" in message
    assert peak < 8 * MiB


def test_headers_at_the_bound_are_read() -> None:
    bounds = TarBounds("archive", max_members=10, max_header_bytes=4096)
    assert _members(tarbombs.joined(tarbombs.pax_long_name(4000)), bounds) == 1
    assert _members(tarbombs.joined(tarbombs.gnu_long_name(4095)), bounds) == 1
    with pytest.raises(ImportFailure):
        _members(tarbombs.joined(tarbombs.pax_long_name(4100)), bounds)
    with pytest.raises(ImportFailure):
        _members(tarbombs.joined(tarbombs.gnu_long_name(4096)), bounds)


def test_an_endless_chain_of_long_names_is_refused_not_a_recursion_error() -> None:
    data = tarbombs.joined(tarbombs.long_name_chain(5000))
    message, _ = _refused(lambda: _members(data))
    assert "more than 8 extended headers in a row" in message
    assert _members(tarbombs.joined(tarbombs.long_name_chain(8))) == 1


def test_an_endless_gnu_sparse_map_is_refused_with_flat_memory() -> None:
    stream = _gunzip_stream(tarbombs.sparse_chain(20_000))  # 10 MiB of map, 420k entries
    message, peak = _refused(lambda: _read(stream))
    assert "GNU sparse map longer than the bound of 1048576 bytes" in message
    assert peak < 16 * MiB
    assert _members(tarbombs.joined(tarbombs.sparse_chain(100))) == 1


def test_a_huge_gnu_sparse_1_0_map_is_refused_with_flat_memory() -> None:
    # tarfile turns each "0\n" of the map into a list entry: at the default bound that is
    # half a million allocations, which tracemalloc makes slow; a smaller bound shows the same.
    bounds = TarBounds("archive", max_members=10, max_header_bytes=64 * 1024)
    stream = _gunzip_stream(tarbombs.pax_sparse_map(10_000_000))
    message, peak = _refused(lambda: _read(stream, bounds))
    assert "GNU sparse map longer than the bound of 65536 bytes" in message
    assert peak < 2 * MiB


def test_global_pax_records_are_bounded_in_number_and_size() -> None:
    many = tarbombs.pax_global({f"k{i}": "v" for i in range(65)}) + tarbombs.header("f")
    message, _ = _refused(lambda: _members(many + tarbombs.END))
    assert "more than 64 pax global records" in message
    big = b"".join(tarbombs.pax_global({"comment": "c" * 600_000}) for _ in range(2))
    message, _ = _refused(lambda: _members(big + tarbombs.header("f") + tarbombs.END))
    assert "pax global headers exceed the bound of 1048576 bytes in all" in message
    fine = tarbombs.pax_global({"comment": "abc"}) + tarbombs.header("f") + tarbombs.END
    assert _members(fine) == 1


# --- members ------------------------------------------------------------------------------


@pytest.mark.parametrize("seekable", [False, True], ids=["stream", "seekable"])
def test_more_members_than_the_cap_are_refused(seekable: bool) -> None:
    assert _members(tarbombs.joined(tarbombs.empty_files(1000)), seekable=seekable) == 1000
    data = tarbombs.joined(tarbombs.empty_files(1001))
    message, _ = _refused(lambda: _members(data, seekable=seekable))
    assert (
        message == "archive refused: more than 1000 members (the bound on members of one archive)"
    )


def test_memory_is_flat_however_many_members_pass() -> None:
    bounds = TarBounds("archive", max_members=1_000_000)
    stream = _gunzip_stream(tarbombs.dot_entries(20_000))
    tracemalloc.start()
    try:
        with tarbounds.open_stream(stream, bounds) as tar:
            count = 0
            for _ in tar:
                count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 20_000
    assert peak < 2 * MiB  # tarfile alone would keep ~10 MiB of TarInfo for these


def test_a_member_flood_from_a_small_gzip_is_refused_at_the_cap() -> None:
    gz = tarbombs.gzipped(tarbombs.dot_entries(1001))
    assert len(gz) < 10_000
    message, peak = _refused(lambda: _read(gzip.GzipFile(fileobj=io.BytesIO(gz))))
    assert "more than 1000 members" in message
    assert peak < 2 * MiB


# --- malformed headers fail as corrupt tars, quickly --------------------------------------


def test_pax_records_that_made_tarfile_regexes_quadratic_fail_fast() -> None:
    # CVE-2024-6232: 64 KiB of these took tarfile 10 s on 3.11.7; a MiB, hours.
    for body in (b"1" * MiB, b"2 " * (MiB // 2 - 2) + b"=x\n"):
        data = tarbombs.header("././@PaxHeader", tarfile.XHDTYPE, len(body))
        data += body + tarbombs.padding(len(body)) + tarbombs.header("f") + tarbombs.END
        started = time.monotonic()
        with pytest.raises(tarfile.ReadError):
            _members(data)
        assert time.monotonic() - started < 2.0


def test_long_digit_runs_in_a_valid_pax_value_parse_in_linear_time() -> None:
    value = b"1" * (MiB - 100)
    record = b" comment=" + value + b"\n"
    record = str(len(record) + 7).encode() + record
    data = tarbombs.header("././@PaxHeader", tarfile.XHDTYPE, len(record))
    data += record + tarbombs.padding(len(record)) + tarbombs.header("f") + tarbombs.END
    started = time.monotonic()
    assert _members(data) == 1
    assert time.monotonic() - started < 2.0


def test_negative_size_is_corrupt() -> None:
    block = bytearray(tarbombs.header("f", size=0))
    block[124:136] = b"\xff" * 12  # base-256: -1
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    with pytest.raises(tarfile.ReadError):
        _members(bytes(block) + bytes(512) + tarbombs.END)


VALID = {
    "one": (b"9 path=a\n", [(b"path", b"a")]),
    "empty-value": (b"5 k=\n", [(b"k", b"")]),
    "value-with-equals-and-newline": (b"11 k=a=b\nc\n", [(b"k", b"a=b\nc")]),
    "two-then-padding": (
        b"9 path=a\n11 mtime=1\n" + bytes(20),
        [(b"path", b"a"), (b"mtime", b"1")],
    ),
}
MALFORMED = {
    "no-length": b"path=a\n",
    "too-short": b"4 k=\n",
    "overruns": b"99 path=a\n",
    "no-newline": b"9 path=ab",
    "no-equals": b"8 patha\n",
    "empty-keyword": b"6 =ab\n",
    "length-too-long": b"1" * 30 + b" k=v\n",
}


@pytest.mark.parametrize(("data", "records"), VALID.values(), ids=VALID.keys())
def test_pax_records_parse(data: bytes, records: list[tuple[bytes, bytes]]) -> None:
    assert list(tarbounds.pax_records(data)) == records


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_pax_records_are_errors(data: bytes) -> None:
    with pytest.raises(tarfile.ReadError):
        list(tarbounds.pax_records(data))


def _three_files() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in ("a", "b", "c"):
            data = name.encode() * 700
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_a_corrupt_header_in_the_middle_is_an_error_not_the_end_of_the_archive() -> None:
    data = bytearray(_three_files())
    second = 512 + 1024  # header, then 700 bytes of data padded to two blocks
    assert data[second : second + 1] == b"b"
    data[second + 148 : second + 156] = b"0000000\0"  # a checksum that does not add up
    with pytest.raises(tarfile.ReadError, match="corrupt tar header"):
        _members(bytes(data))
    assert _members(_three_files()) == 3  # tarfile alone stops after "a", silently


def test_a_header_cut_short_after_the_first_member_is_an_error() -> None:
    data = _three_files()[: 512 + 1024 + 300]
    with pytest.raises(tarfile.ReadError, match="corrupt tar header"):
        _members(data)


def test_an_archive_ending_at_a_member_boundary_without_zero_blocks_is_read() -> None:
    data = _three_files()
    assert _members(data[: 3 * (512 + 1024)]) == 3
