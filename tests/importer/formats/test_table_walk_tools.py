"""The three tools every table walk rests on (importer/formats/tables.py), on bytes in memory."""

from __future__ import annotations

import random
import struct

import pytest

from cdicontract.reasons import Reason
from importer.errors import ImportFailure
from importer.formats.binary import MAX_READ
from importer.formats.tables import GAP, Offsets, entries, read_tables
from tests.importer.formats.conftest import CountingReader

KiB, MiB = 1024, 1024 * 1024


def test_entries_come_in_bounded_chunks_and_skip_empty_ones() -> None:
    values = [0] * 300_000
    values[5] = 7
    values[299_999] = 9
    reader = CountingReader(struct.pack(f">{len(values)}Q", *values))
    got = {}
    for first, chunk in entries(reader, 0, len(values), ">Q", "t"):
        got.update((i, v) for i, v in enumerate(chunk, first) if v)
    assert got == {5: 7, 299_999: 9}
    assert all(length <= MAX_READ for _, length in reader.reads)
    assert reader.bytes_read == len(values) * 8


def test_entries_of_a_table_past_the_end_are_refused() -> None:
    with pytest.raises(ImportFailure) as failure:
        list(entries(CountingReader(bytes(100)), 64, 100, "<I", "VDI block map"))
    assert failure.value.reason is Reason.INVALID_IMAGE
    assert "VDI block map" in failure.value.message


def test_offsets_come_back_sorted_across_many_runs() -> None:
    rng = random.Random(7)
    offsets = rng.sample(range(0, 1 << 40, 512), 200_000)
    collected = Offsets("t")
    for offset in offsets:
        collected.add(offset)
    assert list(collected.ordered()) == sorted(offsets)


def test_an_offset_twice_is_corrupt_even_in_different_runs() -> None:
    collected = Offsets("qcow2 L2 table")
    for offset in [*range(512, 512 * 70_000, 512), 4096]:
        collected.add(offset)
    with pytest.raises(ImportFailure) as failure:
        list(collected.ordered())
    assert failure.value.reason is Reason.CORRUPT_IMAGE
    assert "qcow2 L2 table at offset 4096 is referenced twice" in failure.value.message


def test_close_tables_share_a_read_and_far_ones_do_not() -> None:
    data = bytes(range(256)) * (16 * 1024)  # 4 MiB
    reader = CountingReader(data)
    offsets = [0, 4 * KiB, 4 * KiB + GAP, 3 * MiB]
    got = list(read_tables(reader, offsets, 512, "t"))
    assert [offset for offset, _ in got] == offsets
    assert all(table == data[offset : offset + 512] for offset, table in got)
    assert reader.reads == [(0, 4 * KiB + GAP + 512), (3 * MiB, 512)]


def test_a_table_larger_than_one_read_is_read_in_pieces() -> None:
    data = bytes(range(256)) * (16 * 1024)
    reader = CountingReader(data)
    [(offset, table)] = list(read_tables(reader, [MiB], 2 * MiB, "qcow2 L2 table"))
    assert offset == MiB
    assert table == data[MiB : 3 * MiB]
    assert reader.reads == [(MiB, MiB), (2 * MiB, MiB)]
