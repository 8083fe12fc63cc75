"""Property: whatever the header bytes, detection and inspection answer or raise ImportFailure.

A bounded, seeded loop over mutations of real images: bytes and whole fields overwritten
with boundary values, truncations; for VHD/VHDX the checksums are recomputed half of the
time so the mutations reach the fields behind them. Never a struct.error, IndexError,
ZeroDivisionError or MemoryError, never a read larger than the per-read bound.
"""

from __future__ import annotations

import random
import struct

import pytest

from importer.errors import ImportFailure
from importer.formats import HEAD_SIZE, ImageInfo, detect, inspect
from importer.formats.binary import MAX_READ
from importer.formats.crc32c import crc32c
from tests import imagefactory as factory
from tests.importer.formats.conftest import SUPPORTED, CountingReader, Sample

KiB = 1024
ROUNDS = 80
ROUNDS_VHDX = 30  # pure-Python CRC-32C over 72 KiB per round: keep the loop short
BOUNDARY = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x1FF, 0x200, 0xFFFF, 0xFFFFFFFF, 1 << 31, 1 << 63)


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
    return spots


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


def mutate(rng: random.Random, name: str, original: bytes) -> bytes:
    data = bytearray(original)
    spots = windows(name, original)
    for _ in range(rng.randint(1, 4)):
        start, end = rng.choice(spots)
        at = rng.randrange(start, max(start + 1, end - 8))
        choice = rng.random()
        if choice < 0.4:
            data[at] = rng.randrange(256)
        elif choice < 0.8:
            fmt = rng.choice(("<I", ">I", "<Q", ">Q", "<H", ">H"))
            width = struct.calcsize(fmt)
            value = rng.choice(BOUNDARY) & ((1 << (8 * width)) - 1)
            struct.pack_into(fmt, data, at, value)
        else:
            data[at : at + 16] = rng.randbytes(16)
    if rng.random() < 0.5:
        fix_checksums(name, data)
    if rng.random() < 0.15:
        del data[rng.randrange(len(data)) :]
    return bytes(data)


def check(data: bytes, size_known: bool) -> None:
    reader = CountingReader(data)
    try:
        info = inspect(detect(data[:HEAD_SIZE]), reader, len(data) if size_known else None)
    except ImportFailure as failure:
        assert failure.message
    else:
        assert isinstance(info, ImageInfo)
        assert info.virtual_size is None or info.virtual_size >= 0
    assert len(reader.reads) <= 32
    assert all(length <= MAX_READ for _, length in reader.reads)


@pytest.mark.parametrize("name", ["raw", "iso", *SUPPORTED])
def test_mutated_headers_never_crash(samples: dict[str, Sample], name: str) -> None:
    original = samples[name].path.read_bytes()
    rng = random.Random(f"cdi-formats-{name}")
    for _ in range(ROUNDS_VHDX if name.startswith("vhdx") else ROUNDS):
        check(mutate(rng, name, original), size_known=rng.random() < 0.8)


def test_random_heads_never_crash() -> None:
    rng = random.Random("cdi-formats-random")
    magics = (b"QFI\xfb", b"KDMV", b"conectix", b"vhdxfile", b"# Disk DescriptorFile", b"")
    for _ in range(400):
        data = rng.choice(magics) + rng.randbytes(rng.choice((0, 3, 64, 600, 2048)))
        if rng.random() < 0.3:
            data = data[:0x40] + b"\x7f\x10\xda\xbe" + data[0x44:]
        check(data, size_known=rng.random() < 0.5)
