"""The table walk's cost follows the size of the tables, not of the image.

Every read may be an HTTP range request, so the number of reads matters as much as the
bytes. Images of several GiB are made with metadata preallocation (clusters allocated in
the tables, nothing written: the files are sparse and take no time to make), which costs
the walk exactly what written data would.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from importer.formats import HEAD_SIZE, detect, inspect
from importer.formats.binary import MAX_READ
from tests import imagefactory
from tests.importer.formats.conftest import CountingReader

KiB, MiB, GiB = 1024, 1024 * 1024, 1024 * 1024 * 1024


class FileReader(CountingReader):
    """Counts reads of a file too large to hold in memory."""

    def __init__(self, path: Path) -> None:
        super().__init__(b"")
        self._file = path.open("rb")

    def __call__(self, offset: int, length: int) -> bytes:
        self.reads.append((offset, length))
        self._file.seek(offset)
        return self._file.read(length)


def walk(path: Path) -> FileReader:
    reader = FileReader(path)
    with path.open("rb") as f:
        head = f.read(HEAD_SIZE)
    inspect(detect(head), reader, path.stat().st_size)
    return reader


def qcow2_with_allocated(directory: Path, allocated: str, virtual: str) -> Path:
    path = directory / f"qcow2-{allocated}-of-{virtual}.qcow2"
    options = "preallocation=metadata"
    imagefactory.run("qemu-img", "create", "-q", "-f", "qcow2", "-o", options, path, allocated)
    imagefactory.run("qemu-img", "resize", "-q", path, virtual)
    return path


def test_four_gib_qcow2_with_one_gib_allocated_costs_a_few_small_reads(tmp_path: Path) -> None:
    reader = walk(qcow2_with_allocated(tmp_path, "1G", "4G"))
    # Header and extensions, L1 table, refcount table, two 64 KiB L2 tables.
    assert len(reader.reads) <= 10, reader.reads
    assert reader.bytes_read <= 256 * KiB


def test_more_data_costs_only_its_l2_tables(tmp_path: Path) -> None:
    one = walk(qcow2_with_allocated(tmp_path, "1G", "4G"))
    three = walk(qcow2_with_allocated(tmp_path, "3G", "4G"))
    # 2 GiB more of allocated clusters: four more 64 KiB L2 tables (one per 512 MiB), and
    # one more refcount table entry (8 bytes) for the larger file.
    assert 4 * 64 * KiB <= three.bytes_read - one.bytes_read <= 4 * 64 * KiB + 64
    assert len(three.reads) - len(one.reads) <= 4


@pytest.mark.parametrize(
    ("fmt", "tables"),
    [
        ("vpc", 100 * GiB // (2 * MiB) * 4),  # the BAT: 4 bytes per 2 MiB block
        ("vhdx", 64 * KiB),  # a few BAT entries (32 MiB blocks), next to the headers
        ("vdi", 100 * GiB // MiB * 4),  # the block map: 4 bytes per 1 MiB block
        ("vmdk", 100 * GiB // (64 * KiB) * 4),  # qemu writes every grain table up front
    ],
)
def test_an_empty_hundred_gib_disk_costs_its_tables_only(
    tmp_path: Path, fmt: str, tables: int
) -> None:
    path = tmp_path / f"empty.{fmt}"
    imagefactory.run("qemu-img", "create", "-q", "-f", fmt, path, "100G")
    reader = walk(path)
    assert reader.bytes_read <= tables + 256 * KiB, reader.reads
    assert len(reader.reads) <= 12 + tables // MAX_READ
