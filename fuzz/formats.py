"""Target `formats`: `detect` and `inspect` (every DiskFormat), `vhd_fixed_payload`.

Invariant: an image is answered with an ImageInfo of the asked format or refused with
ImportFailure, and never by struct.error, IndexError, OverflowError or a MemoryError; no
header read is negative or larger than the per-read bound (a hostile length field must
never size a read). The custom mutator repairs VHD/VHDX checksums half of the time, so
mutations also reach the fields a checksum guards.
"""

from __future__ import annotations

import struct
import sys

from fuzz import adapters, harness
from fuzz.harness import require
from fuzz.images import Image
from importer.errors import ImportFailure
from importer.formats import HEAD_SIZE, DiskFormat, ImageInfo, detect, inspect

MAX_READ = 1024 * 1024
"""importer.formats.binary.MAX_READ, restated: the harness checks the promise, not the code."""
MAX_READS = 64
KiB = 1024


class Reads:
    """`read_at` over the image that checks every request before serving it."""

    def __init__(self, image: Image) -> None:
        self.image = image
        self.count = 0

    def __call__(self, offset: int, length: int) -> bytes:
        self.count += 1
        require(self.count <= MAX_READS, f"more than {MAX_READS} header reads")
        require(offset >= 0 and 0 <= length <= MAX_READ, f"read of {length} at {offset}")
        return self.image.read_at(offset, length)


def _inspect(fmt: DiskFormat, image: Image, size: int | None) -> None:
    try:
        info = inspect(fmt, Reads(image), size)
    except ImportFailure as failure:
        require(bool(failure.message), "ImportFailure without a message")
        return
    require(isinstance(info, ImageInfo), f"inspect returned {type(info).__name__}")
    expected = (DiskFormat.RAW, DiskFormat.VHD) if fmt is DiskFormat.RAW else (fmt,)
    require(info.format in expected, f"inspect({fmt}) answered {info.format}")
    vsize = info.virtual_size
    require(vsize is None or (isinstance(vsize, int) and vsize >= 0), f"virtual size {vsize}")
    if info.payload_size is not None:
        require(0 <= info.payload_size <= image.size, f"payload {info.payload_size}")


def one_input(data: bytes) -> None:
    image = Image.decode(data)
    try:
        detected: DiskFormat | None = detect(image.read_at(0, HEAD_SIZE))
    except ImportFailure:
        detected = None
    require(detected is None or isinstance(detected, DiskFormat), f"detect gave {detected!r}")
    for fmt in DiskFormat:
        _inspect(fmt, image, image.known_size)
    if image.size >= 512:
        payload = adapters.vhd_fixed_payload(image.read_at(image.size - 512, 512), image.size)
        require(payload is None or payload >= 0, f"fixed VHD payload {payload}")


# -- checksum repair ---------------------------------------------------------------------


def _vhd_checksum(block: bytes, field: int) -> bytes:
    total = sum(block) - sum(block[field : field + 4])
    return struct.pack(">I", ~total & 0xFFFFFFFF)


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return tuple(table)


_CRC32C = _crc32c_table()


def _crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def repair_checksums(image: Image) -> None:
    """Make the VHD footer/dynamic header and VHDX header/region checksums valid again."""
    head = image.read_at(0, 8)
    tail_at = max(image.size - 512, 0)
    if head == b"conectix" or image.read_at(tail_at, 8) == b"conectix":
        for at in (0, tail_at):
            footer = image.read_at(at, 512)
            if footer[:8] == b"conectix" and len(footer) == 512:
                image.write_at(at + 64, _vhd_checksum(footer, 64))
        footer = image.read_at(0, 512)
        if len(footer) == 512:
            dyn = struct.unpack_from(">Q", footer, 16)[0]
            header = image.read_at(dyn, 1024)
            if len(header) == 1024:
                image.write_at(dyn + 36, _vhd_checksum(header, 36))
    if head == b"vhdxfile":
        # Both headers (4 KiB each), and only the first region table that looks like one:
        # CRC-32C in Python costs ~15 ms per 64 KiB.
        blocks = [(64 * KiB, 4 * KiB), (128 * KiB, 4 * KiB)]
        for at in (192 * KiB, 256 * KiB):
            if image.read_at(at, 4) == b"regi":
                blocks.append((at, 64 * KiB))
                break
        for at, size in blocks:
            block = bytearray(image.read_at(at, size))
            if len(block) == size:
                block[4:8] = bytes(4)
                image.write_at(at + 4, struct.pack("<I", _crc32c(bytes(block))))


def mutate(data: bytes, max_size: int, seed: int) -> bytes:
    import atheris

    out: bytes = atheris.Mutate(data, max_size)
    if seed % 2:  # half of the time, so broken checksums stay in the corpus too
        image = Image.decode(out)
        repair_checksums(image)
        out = image.encode()[:max_size]
    return out


TARGET = harness.Target(
    name="formats",
    one_input=one_input,
    instrument=("importer.formats",),
    max_len=300 * KiB,
    mutator=mutate,
)

if __name__ == "__main__":
    harness.run(TARGET, sys.argv[1:])
