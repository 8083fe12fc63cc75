"""Where the allocation tables of real images are, to corrupt one entry or cut one block.

The locators parse just enough of each format to find the file offset of a table entry;
the cut points come from qemu itself where it can say (`qemu-img map` gives the host
offset of every data range), so the truncation tests do not rest on our own parser.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from tests import imagefactory

KiB, MiB = 1024, 1024 * 1024


@dataclass(frozen=True)
class Entry:
    """One table entry: where it is in the file, its value, and its index in its table."""

    at: int
    value: int
    index: int


def be64(data: bytes, at: int) -> int:
    return int(struct.unpack_from(">Q", data, at)[0])


def le32(data: bytes, at: int) -> int:
    return int(struct.unpack_from("<I", data, at)[0])


# --- qcow2 -------------------------------------------------------------------------------


def qcow2_cluster_bits(data: bytes) -> int:
    return int(struct.unpack_from(">I", data, 20)[0])


def qcow2_extended(data: bytes) -> bool:
    return struct.unpack_from(">I", data, 4)[0] == 3 and bool(be64(data, 72) & (1 << 4))


def qcow2_l1(data: bytes) -> list[Entry]:
    size, offset = struct.unpack_from(">IQ", data, 36)
    return [Entry(offset + 8 * i, be64(data, offset + 8 * i), i) for i in range(size)]


def qcow2_l2(data: bytes) -> list[Entry]:
    """Every non-zero L2 entry (the first 64 bits of extended ones), in L1 order."""
    cluster = 1 << qcow2_cluster_bits(data)
    width = 16 if qcow2_extended(data) else 8
    found = []
    for l1 in qcow2_l1(data):
        table = l1.value & 0x00FFFFFFFFFFFE00
        if not table:
            continue
        for j in range(cluster // width):
            value = be64(data, table + width * j)
            if value:
                found.append(Entry(table + width * j, value, j))
    return found


def qcow2_compressed_end(data: bytes, entry: int) -> int:
    """Where a compressed cluster's data ends, per the descriptor (docs/interop/qcow2.txt)."""
    x = 62 - (qcow2_cluster_bits(data) - 8)
    offset = entry & ((1 << x) - 1)
    sectors = ((entry >> x) & ((1 << (62 - x)) - 1)) + 1
    return (offset & ~511) + sectors * 512


def qcow2_refcount_table(data: bytes) -> list[Entry]:
    offset, clusters = be64(data, 48), struct.unpack_from(">I", data, 56)[0]
    count = clusters * (1 << qcow2_cluster_bits(data)) // 8
    return [Entry(offset + 8 * i, be64(data, offset + 8 * i), i) for i in range(count)]


# --- VMDK (monolithicSparse and streamOptimized, header at offset 0) ------------------------


def vmdk_directory(data: bytes) -> list[Entry]:
    capacity, grain = struct.unpack_from("<QQ", data, 12)
    gtes = le32(data, 44)
    gd = struct.unpack_from("<Q", data, 56)[0]
    if gd == 0xFFFFFFFFFFFFFFFF:  # a stream: the footer's header says
        gd = struct.unpack_from("<Q", data, len(data) - 1024 + 56)[0]
    count = -(-capacity // (gtes * grain))
    return [Entry(gd * 512 + 4 * i, le32(data, gd * 512 + 4 * i), i) for i in range(count)]


def vmdk_grains(data: bytes) -> list[Entry]:
    gtes = le32(data, 44)
    found = []
    for gd in vmdk_directory(data):
        if gd.value:
            for j in range(gtes):
                at = gd.value * 512 + 4 * j
                if le32(data, at):
                    found.append(Entry(at, le32(data, at), j))
    return found


# --- VHD dynamic, VHDX, VDI --------------------------------------------------------------


def vhd_bat(data: bytes) -> list[Entry]:
    header = be64(data, 16)
    table = be64(data, header + 16)
    count = struct.unpack_from(">I", data, header + 28)[0]
    values = struct.unpack_from(f">{count}I", data, table)
    return [Entry(table + 4 * i, value, i) for i, value in enumerate(values)]


def vhdx_bat(data: bytes) -> list[Entry]:
    """The BAT entries of a VHDX from qemu-img (BAT region listed in the region table)."""
    bat_guid = bytes.fromhex("6677c22d23f600429d64115e9bfd4a08")
    table = data[192 * KiB : 256 * KiB]
    for i in range(le32(table, 8)):
        entry = table[16 + 32 * i : 48 + 32 * i]
        if entry[:16] == bat_guid:
            offset, length = struct.unpack_from("<QI", entry, 16)
            values = struct.unpack_from(f"<{length // 8}Q", data, offset)
            return [Entry(offset + 8 * k, value, k) for k, value in enumerate(values)]
    raise RuntimeError("VHDX without a BAT region")


def vdi_bmap(data: bytes) -> list[Entry]:
    offset, blocks = le32(data, 0x154), le32(data, 0x180)
    return [Entry(offset + 4 * i, le32(data, offset + 4 * i), i) for i in range(blocks)]


# --- cut points --------------------------------------------------------------------------


def last_data_range(path: Path, fmt: str) -> tuple[int, int] | None:
    """(host offset, length) of the guest data qemu keeps furthest into the file, per
    `qemu-img map`; None when qemu maps no host offsets (compressed formats, VHDX)."""
    ranges = json.loads(imagefactory.run("qemu-img", "map", "--output=json", "-f", fmt, path))
    placed = [(r["offset"], r["length"]) for r in ranges if "offset" in r and r["data"]]
    return max(placed, key=lambda r: r[0] + r[1]) if placed else None


def vhdx_last_block_cut(path: Path, virtual_size: int) -> int:
    """The middle of the guest data in the VHDX block furthest into the file."""
    data = path.read_bytes()
    block_size = imagefactory.qemu_info(path, "vhdx")["cluster-size"]
    assert isinstance(block_size, int)
    present = [e for e in vhdx_bat(data) if e.value & 7 == 6]
    last = max(present, key=lambda e: e.value)
    guest = min(block_size, virtual_size - last.index * block_size)  # small disks: one chunk
    return (last.value & ~0xFFFFF) + guest // 2


def vmdk_last_grain_cut(path: Path) -> int:
    """The middle of the compressed grain furthest into a streamOptimized file."""
    data = path.read_bytes()
    start = max(e.value for e in vmdk_grains(data)) * 512
    return start + 12 + le32(data, start + 8) // 2


def dense_reference(directory: Path, size: int = 8 * MiB) -> Path:
    """A raw disk with 64 KiB of data every 512 KiB: whatever the format, its file has data
    in every part, so a cut anywhere past the headers loses some."""
    path = directory / "dense.raw"
    with path.open("wb") as f:
        f.truncate(size)
        for offset in range(0, size, 512 * KiB):
            f.seek(offset)
            f.write(imagefactory.mark_bytes(offset, 64 * KiB))
    return path


def cut_short(
    directory: Path, fmt: str, subformat: str | None = None, *, at: int | None = None
) -> Path:
    """A real image of the dense reference cut at `at`, as a partial download on a mirror
    leaves it; by default in the middle of its last data cluster, found with qemu-img map
    (VHDX and streams: from their tables, which qemu-img map does not give)."""
    reference = dense_reference(directory)
    image = imagefactory.convert(reference, fmt, subformat)
    if at is None:
        if fmt == "vhdx":
            at = vhdx_last_block_cut(image, reference.stat().st_size)
        elif subformat == "streamOptimized":
            at = vmdk_last_grain_cut(image)
        else:
            placed = last_data_range(image, fmt)
            assert placed is not None
            at = placed[0] + placed[1] // 2
    return imagefactory.truncated(image, at)


def qcow2_compressed_cut(directory: Path) -> Path:
    """A compressed qcow2 cut short of its last compressed cluster's final sector."""
    image = imagefactory.convert(dense_reference(directory), "qcow2", compress=True)
    data = image.read_bytes()
    end = max(qcow2_compressed_end(data, e.value) for e in qcow2_l2(data) if e.value >> 62 & 1)
    return imagefactory.truncated(image, end - 513)
