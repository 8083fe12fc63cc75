"""One table entry of a real image made to point outside it, or break the spec: CorruptImage.

Each case starts from an image qemu-img wrote (the session samples), finds one entry with
the locators of tests/tablefactory.py and changes only that entry (recomputing the VHD
checksum where the case needs it). The message must name the table and the offset.
"""

from __future__ import annotations

import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from cdicontract.reasons import Reason
from importer.errors import ImportFailure
from importer.formats import HEAD_SIZE, detect, inspect
from tests import imagefactory, tablefactory
from tests.importer.formats.conftest import CountingReader, Sample
from tests.tablefactory import Entry

Patch = Callable[[bytearray], None]
COPIED, COMPRESSED = 1 << 63, 1 << 62
FAR = 1 << 40  # a cluster-aligned offset far past the end of any sample


def first(entries: list[Entry], keep: Callable[[Entry], bool] = lambda e: True) -> Entry:
    return next(e for e in entries if e.value and keep(e))


def set64(locate: Callable[[bytes], Entry], value: Callable[[Entry, bytes], int]) -> Patch:
    def apply(data: bytearray) -> None:
        entry = locate(bytes(data))
        struct.pack_into(">Q", data, entry.at, value(entry, bytes(data)))

    return apply


def set_le(
    fmt: str, locate: Callable[[bytes], Entry], value: Callable[[Entry, bytes], int]
) -> Patch:
    def apply(data: bytearray) -> None:
        entry = locate(bytes(data))
        struct.pack_into(fmt, data, entry.at, value(entry, bytes(data)))

    return apply


def l1(data: bytes) -> Entry:
    return first(tablefactory.qcow2_l1(data))


def l2(data: bytes) -> Entry:
    return first(tablefactory.qcow2_l2(data), lambda e: not e.value & COMPRESSED)


def l2_compressed(data: bytes) -> Entry:
    return first(tablefactory.qcow2_l2(data), lambda e: bool(e.value & COMPRESSED))


def l2_free_slot(data: bytes) -> Entry:
    """An unallocated slot of the first L2 table (the one after its last entry)."""
    last = tablefactory.qcow2_l2(data)[-1]
    width = 16 if tablefactory.qcow2_extended(data) else 8
    return Entry(last.at + width, 0, last.index + 1)


def bitmap_of(locate: Callable[[bytes], Entry]) -> Callable[[bytes], Entry]:
    """The subcluster bitmap that follows an extended L2 entry."""

    def bitmap(data: bytes) -> Entry:
        entry = locate(data)
        return Entry(entry.at + 8, tablefactory.be64(data, entry.at + 8), entry.index)

    return bitmap


def refcount(data: bytes) -> Entry:
    return first(tablefactory.qcow2_refcount_table(data))


def share_first_l2_table(data: bytearray) -> None:
    one, two = [e for e in tablefactory.qcow2_l1(bytes(data)) if e.value][:2]
    struct.pack_into(">Q", data, two.at, one.value)


def compressed_past_the_end(entry: Entry, data: bytes) -> int:
    x = 62 - (tablefactory.qcow2_cluster_bits(data) - 8)
    return COMPRESSED | (4 << x) | (len(data) - 100)


def vhd_footer_field(offset: int, value: bytes) -> Patch:
    """Change the footer at the end only, checksum recomputed: it no longer agrees."""

    def apply(data: bytearray) -> None:
        at = len(data) - 512
        data[at + offset : at + offset + len(value)] = value
        data[at + 64 : at + 68] = imagefactory.vhd_checksum(bytes(data[at : at + 512]), 64)

    return apply


def drop_last_sector(data: bytearray) -> None:
    del data[-512:]


def vhdx_first_present(data: bytes) -> Entry:
    return first(tablefactory.vhdx_bat(data), lambda e: e.value & 7 == 6)


def last_grain_marker_size(size: int) -> Patch:
    def apply(data: bytearray) -> None:
        start = max(e.value for e in tablefactory.vmdk_grains(bytes(data))) * 512
        struct.pack_into("<I", data, start + 8, size)

    return apply


CASES: dict[str, tuple[str, Patch, str]] = {
    # qcow2: the L1 table
    "qcow2-l2-table-past-the-end": ("qcow2-v3", set64(l1, lambda e, d: COPIED | FAR), "qcow2 L2 table (L1 entry 0) at offset 1099511627776"),
    "qcow2-l2-table-unaligned": ("qcow2-v3", set64(l1, lambda e, d: e.value + 512), "L1 table entry 0 points at unaligned"),
    "qcow2-l1-reserved-bit": ("qcow2-v3", set64(l1, lambda e, d: e.value | 1 << 60), "L1 table entry 0 has reserved bits"),
    "qcow2-l1-flag-without-table": ("qcow2-v3", set64(l1, lambda e, d: COPIED), "no L2 table"),
    "qcow2-l2-table-shared": ("qcow2-small-clusters", share_first_l2_table, "is referenced twice"),
    # qcow2: standard L2 entries
    "qcow2-cluster-past-the-end": ("qcow2-v3", set64(l2, lambda e, d: COPIED | FAR), "qcow2 data cluster (L2 table at"),
    "qcow2-cluster-past-the-end-v2": ("qcow2-v2", set64(l2, lambda e, d: COPIED | FAR), "at offset 1099511627776"),
    "qcow2-cluster-unaligned": ("qcow2-v3", set64(l2, lambda e, d: e.value + 512), "unaligned"),
    "qcow2-l2-reserved-bit": ("qcow2-v3", set64(l2, lambda e, d: e.value | 1 << 3), "reserved bits"),
    "qcow2-zero-flag-in-v2": ("qcow2-v2", set64(l2, lambda e, d: e.value | 1), "zero flag"),
    "qcow2-copied-without-cluster": ("qcow2-v3", set64(l2_free_slot, lambda e, d: COPIED), "no host cluster"),
    # qcow2: compressed descriptors
    "qcow2-compressed-past-the-end": ("qcow2-v3-compressed", set64(l2_compressed, compressed_past_the_end), "qcow2 compressed cluster"),
    "qcow2-compressed-copied": ("qcow2-v3-compressed", set64(l2_compressed, lambda e, d: e.value | COPIED), "copied flag"),
    "qcow2-compressed-offset-high-bits": ("qcow2-small-clusters", set64(l2, lambda e, d: COMPRESSED | 1 << 57), "reserved bits"),
    # qcow2: extended L2 entries
    "qcow2-subcluster-allocated-and-zero": ("qcow2-extended-l2", set64(bitmap_of(l2), lambda e, d: e.value | (e.value & 0xFFFFFFFF) << 32), "both allocated and zero"),
    "qcow2-subclusters-without-cluster": ("qcow2-extended-l2", set64(bitmap_of(l2_free_slot), lambda e, d: 1), "no host cluster"),
    "qcow2-zero-flag-in-extended-l2": ("qcow2-extended-l2", set64(l2, lambda e, d: e.value | 1), "zero flag"),
    "qcow2-compressed-with-bitmap": ("qcow2-extended-l2", set64(l2, lambda e, d: COMPRESSED | 4096), "subcluster bitmap"),
    # qcow2: the refcount table
    "qcow2-refcount-block-past-the-end": ("qcow2-v3", set64(refcount, lambda e, d: FAR), "qcow2 refcount block (refcount table entry 0)"),
    "qcow2-refcount-reserved-bit": ("qcow2-v3", set64(refcount, lambda e, d: e.value | 1), "reserved bits"),
    # VMDK
    "vmdk-grain-table-past-the-end": ("vmdk-monolithic-sparse", set_le("<I", lambda d: first(tablefactory.vmdk_directory(d)), lambda e, d: 1 << 30), "VMDK grain table (directory entry 0) at offset 549755813888"),
    "vmdk-grain-past-the-end": ("vmdk-monolithic-sparse", set_le("<I", lambda d: first(tablefactory.vmdk_grains(d)), lambda e, d: 1 << 30), "VMDK grain (grain table at"),
    "vmdk-stream-grain-marker-start-past-the-end": ("vmdk-stream-optimized", set_le("<I", lambda d: first(tablefactory.vmdk_grains(d)), lambda e, d: len(d) // 512), "VMDK grain (grain table at"),
    "vmdk-stream-last-grain-longer-than-the-file": ("vmdk-stream-optimized", last_grain_marker_size(128 * 1024), "VMDK compressed grain at offset"),
    "vmdk-stream-last-grain-empty": ("vmdk-stream-optimized", last_grain_marker_size(0), "declares 0 bytes"),
    # VHD dynamic
    "vhd-block-past-the-footer": ("vhd-dynamic", set_le(">I", lambda d: first(tablefactory.vhd_bat(d), lambda e: e.value != 0xFFFFFFFF), lambda e, d: len(d) // 512 - 1), "VHD block 0 at offset"),
    "vhd-footer-missing-at-the-end": ("vhd-dynamic", drop_last_sector, "does not end with its footer"),
    "vhd-footer-copies-disagree-on-size": ("vhd-dynamic", vhd_footer_field(48, struct.pack(">Q", 1 << 30)), "disagrees with the copy at offset 0 (size)"),
    "vhd-footer-copies-disagree-on-identity": ("vhd-dynamic", vhd_footer_field(68, b"\x01" * 16), "(unique id)"),
    # VHDX
    "vhdx-block-past-the-end": ("vhdx-dynamic", set_le("<Q", vhdx_first_present, lambda e, d: (1 << 20) << 20 | 6), "VHDX data block 0 (BAT entry 0) at offset 1099511627776"),
    "vhdx-block-in-the-headers": ("vhdx-dynamic", set_le("<Q", vhdx_first_present, lambda e, d: 6), "in the headers"),
    "vhdx-undefined-block-state": ("vhdx-dynamic", set_le("<Q", vhdx_first_present, lambda e, d: e.value & ~7 | 4), "undefined state 4"),
    # VDI
    "vdi-block-index-too-large": ("vdi-dynamic", set_le("<I", lambda d: first(tablefactory.vdi_bmap(d), lambda e: e.value < 0xFFFFFFFE), lambda e, d: 4), "names block 4 of 4"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_corrupt_table_entry_is_refused(samples: dict[str, Sample], case: str) -> None:
    name, apply, fragment = CASES[case]
    data = bytearray(samples[name].path.read_bytes())
    apply(data)
    with pytest.raises(ImportFailure) as failure:
        inspect(detect(bytes(data[:HEAD_SIZE])), CountingReader(bytes(data)), len(data))
    assert failure.value.reason is Reason.CORRUPT_IMAGE, failure.value.message
    assert fragment in failure.value.message
    assert failure.value.message.isprintable()


def test_vdi_block_past_the_end_of_the_file(tmp_path: Path) -> None:
    """8 MiB of disk, data in the first 4 MiB: block 7 would lie past the end."""
    reference = imagefactory.make_reference(tmp_path, 8 * 1024 * 1024)
    data = bytearray(imagefactory.convert(reference, "vdi").read_bytes())
    free = [e for e in tablefactory.vdi_bmap(bytes(data)) if e.value == 0xFFFFFFFF]
    struct.pack_into("<I", data, free[-1].at, 7)
    with pytest.raises(ImportFailure) as failure:
        inspect(detect(bytes(data[:HEAD_SIZE])), CountingReader(bytes(data)), len(data))
    assert failure.value.reason is Reason.CORRUPT_IMAGE
    assert "VDI block 7 (block map entry 7)" in failure.value.message


@pytest.fixture
def with_snapshot(samples: dict[str, Sample], tmp_path: Path) -> Path:
    path = tmp_path / "with-snapshot.qcow2"
    shutil.copyfile(samples["qcow2-v3"].path, path)
    imagefactory.run("qemu-img", "snapshot", "-c", "before-upgrade", path)
    return path


def test_qcow2_with_an_internal_snapshot_passes(with_snapshot: Path) -> None:
    data = with_snapshot.read_bytes()
    assert struct.unpack_from(">I", data, 60)[0] == 1
    inspect(detect(data[:HEAD_SIZE]), CountingReader(data), len(data))


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        pytest.param(0, FAR, "snapshot 0 L1 table at offset 1099511627776", id="l1-past-the-end"),
        pytest.param(0, 512, "L1 table offset 512 is not aligned", id="l1-unaligned"),
        pytest.param(None, None, "snapshot table starting at offset", id="table-past-the-end"),
    ],
)
def test_qcow2_snapshot_tables_must_lie_inside(
    with_snapshot: Path, field: int | None, value: int | None, fragment: str
) -> None:
    data = bytearray(with_snapshot.read_bytes())
    table = struct.unpack_from(">Q", data, 64)[0]
    if field is None:  # move the table to the first cluster past the end of the file
        struct.pack_into(">Q", data, 64, -(-len(data) // 65536) * 65536)
    else:
        struct.pack_into(">Q", data, table + field, value)
    with pytest.raises(ImportFailure) as failure:
        inspect(detect(bytes(data[:HEAD_SIZE])), CountingReader(bytes(data)), len(data))
    assert failure.value.reason is Reason.CORRUPT_IMAGE
    assert fragment in failure.value.message
