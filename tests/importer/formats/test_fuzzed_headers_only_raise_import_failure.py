"""Property: whatever the header and table bytes, inspection answers or raises ImportFailure.

A bounded, seeded loop over mutations of real images: bytes and whole fields of the headers
and of the allocation tables (L1/L2/refcount, grain directory and tables, BATs, block
maps) overwritten with boundary values and with offsets around the end of the file,
truncations; for VHD/VHDX the checksums are recomputed half of the time so the mutations
reach the fields behind them. Never a struct.error, IndexError, ZeroDivisionError or
MemoryError, never a read larger than the per-read bound, and the table walks stay within
reads and bytes in proportion to the file, in bounded time.
"""

from __future__ import annotations

import random
import struct
import time

import pytest

from cdicontract.reasons import Reason
from importer.errors import ImportFailure
from importer.formats import HEAD_SIZE, ImageInfo, detect, inspect
from importer.formats.binary import MAX_READ
from importer.formats.crc32c import crc32c
from tests import imagefactory as factory
from tests import tablefactory
from tests.importer.formats.conftest import SUPPORTED, CountingReader, Sample

KiB = 1024
ROUNDS = 80
ROUNDS_VHDX = 30  # pure-Python CRC-32C over 72 KiB per round: keep the loop short
BOUNDARY = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x1FF, 0x200, 0xFFFF, 0xFFFFFFFF, 1 << 31, 1 << 63)
SECONDS_PER_ROUND = 2.0


def pointers(size: int) -> tuple[int, ...]:
    """Offsets a table entry could hold around the end of a file of `size` bytes."""
    return (size, size - 1, size - 512, size + 512, size // 512, size // 512 - 1, size >> 20)


def table_spots(name: str, data: bytes) -> list[tuple[int, int]]:
    """Where the allocation tables of this sample live (start, end), entries first."""
    spans: list[list[tablefactory.Entry]] = []
    if name.startswith("qcow2"):
        spans += [tablefactory.qcow2_l1(data), tablefactory.qcow2_l2(data)[:64]]
        spans.append(tablefactory.qcow2_refcount_table(data)[:16])
    elif name.startswith("vmdk"):
        spans += [tablefactory.vmdk_directory(data), tablefactory.vmdk_grains(data)]
    elif name.startswith("vhd-") and name != "vhd-fixed":
        spans.append(tablefactory.vhd_bat(data)[:64])
    elif name.startswith("vhdx"):
        spans.append(tablefactory.vhdx_bat(data)[:16])
    elif name.startswith("vdi"):
        spans.append(tablefactory.vdi_bmap(data))
    return [(span[0].at, span[-1].at + 8) for span in spans if span]


def windows(name: str, data: bytes) -> list[tuple[int, int]]:
    """Where the headers of this sample live (start, end)."""
    spots = [(0, min(len(data), 4 * KiB)), (max(0, len(data) - 512), len(data))]
    if name.startswith("vhdx"):
        spots += [(64 * KiB, 68 * KiB), (128 * KiB, 132 * KiB), (192 * KiB, 193 * KiB)]
        entry, item = factory.vhdx_metadata_entry(data, factory.VHDX_FILE_PARAMETERS)
        spots += [(entry - 64, entry + 128), (item, item + 64)]
    if name.startswith("vmdk"):
        spots.append((512, 1536))
    if name == "iso":
        spots.append((0x8000, 0x8800))
    return spots + table_spots(name, data)


def fix_checksums(name: str, data: bytearray) -> None:
    if name.startswith("vhd-"):
        for at in (0, len(data) - 512):
            if data[at : at + 8] == b"conectix":
                data[at + 64 : at + 68] = factory.vhd_checksum(bytes(data[at : at + 512]), 64)
        dyn = struct.unpack_from(">Q", data, 16)[0]
        if dyn + 1024 <= len(data):
            data[dyn + 36 : dyn + 40] = factory.vhd_checksum(bytes(data[dyn : dyn + 1024]), 36)
    if name.startswith("vhdx"):
        for at, size in ((64 * KiB, 4 * KiB), (128 * KiB, 4 * KiB), (192 * KiB, 64 * KiB)):
            data[at + 4 : at + 8] = bytes(4)
            struct.pack_into("<I", data, at + 4, crc32c(bytes(data[at : at + size])))


def mutate(rng: random.Random, name: str, original: bytes, spots: list[tuple[int, int]]) -> bytes:
    data = bytearray(original)
    for _ in range(rng.randint(1, 4)):
        start, end = rng.choice(spots)
        at = rng.randrange(start, max(start + 1, end - 8))
        choice = rng.random()
        if choice < 0.4:
            data[at] = rng.randrange(256)
        elif choice < 0.8:
            fmt = rng.choice(("<I", ">I", "<Q", ">Q", "<H", ">H"))
            width = struct.calcsize(fmt)
            value = rng.choice(BOUNDARY + pointers(len(data)))
            # A table entry keeps its flag bits half of the time, so it stays "allocated".
            if rng.random() < 0.5:
                value |= rng.choice((1 << 63, 6, 1 << 62, 0))
            struct.pack_into(fmt, data, at, value & ((1 << (8 * width)) - 1))
        else:
            data[at : at + 16] = rng.randbytes(16)
    if rng.random() < 0.5:
        fix_checksums(name, data)
    if rng.random() < 0.15:
        del data[rng.randrange(len(data)) :]
    return bytes(data)


def check(data: bytes, size_known: bool) -> Reason | None:
    """Inspect mutated bytes; the reason they were refused for, None if accepted."""
    reader = CountingReader(data)
    started = time.monotonic()
    reason = None
    try:
        info = inspect(detect(data[:HEAD_SIZE]), reader, len(data) if size_known else None)
    except ImportFailure as failure:
        assert failure.message
        reason = failure.reason
    else:
        assert isinstance(info, ImageInfo)
        assert info.virtual_size is None or info.virtual_size >= 0
    assert time.monotonic() - started < SECONDS_PER_ROUND
    # Each walk reads its tables once, and tables lie inside the file: the cost follows it.
    assert len(reader.reads) <= 48 + len(data) // (64 * KiB), len(reader.reads)
    assert reader.bytes_read <= 4 * len(data) + 2 * MAX_READ
    assert all(length <= MAX_READ for _, length in reader.reads)
    return reason


@pytest.mark.parametrize("name", ["raw", "iso", *SUPPORTED])
def test_mutated_headers_never_crash(samples: dict[str, Sample], name: str) -> None:
    original = samples[name].path.read_bytes()
    rng = random.Random(f"cdi-formats-{name}")
    spots = windows(name, original)
    seen = set()
    for _ in range(ROUNDS_VHDX if name.startswith("vhdx") else ROUNDS):
        seen.add(check(mutate(rng, name, original, spots), size_known=rng.random() < 0.8))
    if table_spots(name, original):  # the mutations did reach the table walks
        assert Reason.CORRUPT_IMAGE in seen


def test_random_heads_never_crash() -> None:
    rng = random.Random("cdi-formats-random")
    magics = (b"QFI\xfb", b"KDMV", b"conectix", b"vhdxfile", b"# Disk DescriptorFile", b"")
    for _ in range(400):
        data = rng.choice(magics) + rng.randbytes(rng.choice((0, 3, 64, 600, 2048)))
        if rng.random() < 0.3:
            data = data[:0x40] + b"\x7f\x10\xda\xbe" + data[0x44:]
        check(data, size_known=rng.random() < 0.5)
