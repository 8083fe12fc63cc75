"""One header field at a time made hostile or corrupt, in real images: the precise reason.

Each case starts from a real image written by qemu-img, changes one field (recomputing the
format's checksum where it has one, so only the field under test is wrong) and inspects
the bytes in memory.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from cdicontract.reasons import Reason
from importer.errors import ImportFailure
from importer.formats import HEAD_SIZE, DiskFormat, detect, inspect
from importer.formats.crc32c import crc32c
from tests import imagefactory as factory
from tests import vmdkfactory
from tests.importer.formats.conftest import CountingReader, Sample

Patch = Callable[[bytearray], None]
KiB, MiB = 1024, 1024 * 1024
UNKNOWN_GUID = "00000000-0000-0000-0000-000000000001"
UNSAFE, INVALID, UNSUPPORTED = Reason.UNSAFE_IMAGE, Reason.INVALID_IMAGE, Reason.UNSUPPORTED_FORMAT
CORRUPT = Reason.CORRUPT_IMAGE


def put(fmt: str, offset: int, value: int) -> Patch:
    def apply(data: bytearray) -> None:
        struct.pack_into(fmt, data, offset, value)

    return apply


def replace(old: bytes, new: bytes) -> Patch:
    """Same-length replacement of the first occurrence (layout must not move)."""

    def apply(data: bytearray) -> None:
        at = data.index(old)
        data[at : at + len(old)] = new.ljust(len(old))

    return apply


def both(*patches: Patch) -> Patch:
    def apply(data: bytearray) -> None:
        for p in patches:
            p(data)

    return apply


# --- VHD: footer copies at 0 and at the end, dynamic header at 512, all checksummed -----


def vhd_footer(fmt: str, offset: int, value: int, *, tail: bool = False) -> Patch:
    def apply(data: bytearray) -> None:
        at = len(data) - 512 if tail else 0
        struct.pack_into(fmt, data, at + offset, value)
        data[at + 64 : at + 68] = factory.vhd_checksum(bytes(data[at : at + 512]), 64)

    return apply


def vhd_dynamic(fmt: str, offset: int, value: int) -> Patch:
    def apply(data: bytearray) -> None:
        at = struct.unpack_from(">Q", data, 16)[0]
        struct.pack_into(fmt, data, at + offset, value)
        data[at + 36 : at + 40] = factory.vhd_checksum(bytes(data[at : at + 1024]), 36)

    return apply


# --- VHDX: headers and region tables carry CRC-32C, metadata does not -------------------


def vhdx_headers(fmt: str, offset: int, value: bytes | int) -> Patch:
    def apply(data: bytearray) -> None:
        for at in (64 * KiB, 128 * KiB):
            if isinstance(value, bytes):
                data[at + offset : at + offset + len(value)] = value
            else:
                struct.pack_into(fmt, data, at + offset, value)
            data[at + 4 : at + 8] = bytes(4)
            struct.pack_into("<I", data, at + 4, crc32c(bytes(data[at : at + 4 * KiB])))

    return apply


def vhdx_item(item: str, fmt: str, value: int) -> Patch:
    def apply(data: bytearray) -> None:
        _, at = factory.vhdx_metadata_entry(bytes(data), item)
        struct.pack_into(fmt, data, at, value)

    return apply


def vhdx_item_guid(item: str, new_guid: str, flags: int | None = None) -> Patch:
    def apply(data: bytearray) -> None:
        entry, _ = factory.vhdx_metadata_entry(bytes(data), item)
        data[entry : entry + 16] = uuid.UUID(new_guid).bytes_le
        if flags is not None:
            struct.pack_into("<I", data, entry + 24, flags)

    return apply


def qcow2_first_extension(kind: int | None = None, length: int | None = None) -> Patch:
    def apply(data: bytearray) -> None:
        at = struct.unpack_from(">I", data, 100)[0]
        assert struct.unpack_from(">I", data, at)[0] != 0, "expected a header extension"
        if kind is not None:
            struct.pack_into(">I", data, at, kind)
        if length is not None:
            struct.pack_into(">I", data, at + 4, length)

    return apply


def vmdk_descriptor_line(key: bytes, line: bytes) -> Patch:
    def apply(data: bytearray) -> None:
        start = data.index(key)
        end = data.index(b"\n", start)
        data[start:end] = line.ljust(end - start)

    return apply


CASES: dict[str, tuple[str, Patch, Reason, str]] = {
    # qcow2 (v3, 64 KiB clusters)
    "qcow2-cluster-bits-too-big": ("qcow2-v3", put(">I", 20, 30), UNSAFE, "cluster_bits"),
    "qcow2-cluster-bits-too-small": ("qcow2-v3", put(">I", 20, 8), UNSAFE, "cluster_bits"),
    "qcow2-l1-absurd": ("qcow2-v3", put(">I", 36, 1 << 30), UNSAFE, "L1 table"),
    "qcow2-l1-too-small": ("qcow2-v3", put(">I", 36, 0), INVALID, "too small"),
    "qcow2-l1-unaligned": ("qcow2-v3", put(">Q", 40, 0x30001), INVALID, "aligned"),
    "qcow2-l1-past-eof": ("qcow2-v3", put(">Q", 40, 1 << 40), CORRUPT, "beyond the end"),
    "qcow2-refcount-absurd": ("qcow2-v3", put(">I", 56, 1 << 20), UNSAFE, "refcount table"),
    "qcow2-refcount-missing": ("qcow2-v3", put(">I", 56, 0), INVALID, "refcount"),
    "qcow2-snapshots-absurd": ("qcow2-v3", put(">I", 60, 1 << 24), UNSAFE, "snapshots"),
    "qcow2-encrypted-aes": ("qcow2-v2", put(">I", 32, 1), UNSAFE, "encrypted"),
    "qcow2-version-4": ("qcow2-v3", put(">I", 4, 4), UNSUPPORTED, "version 4"),
    "qcow2-marked-corrupt": ("qcow2-v3", put(">Q", 72, 2), INVALID, "corrupt"),
    "qcow2-data-file-bit": ("qcow2-v3", put(">Q", 72, 4), UNSAFE, "external data file"),
    "qcow2-unknown-incompat": ("qcow2-v3", put(">Q", 72, 1 << 40), UNSUPPORTED, "incompatible"),
    "qcow2-header-length-short": ("qcow2-v3", put(">I", 100, 50), INVALID, "header length"),
    "qcow2-header-length-huge": ("qcow2-v3", put(">I", 100, 1 << 20), INVALID, "header length"),
    "qcow2-refcount-order": ("qcow2-v3", put(">I", 96, 7), INVALID, "refcount_order"),
    "qcow2-compression-type": ("qcow2-zstd-compressed", put(">B", 104, 9), UNSUPPORTED, "type 9"),
    "qcow2-zstd-without-bit": ("qcow2-zstd-compressed", put(">Q", 72, 0), INVALID, "feature"),
    "qcow2-data-file-extension": (
        "qcow2-v3",
        qcow2_first_extension(kind=0x44415441),
        UNSAFE,
        "external data file",
    ),
    "qcow2-encryption-extension": (
        "qcow2-v3",
        qcow2_first_extension(kind=0x0537BE77),
        UNSAFE,
        "encrypted",
    ),
    "qcow2-extension-overflows": (
        "qcow2-v3",
        qcow2_first_extension(length=1 << 20),
        INVALID,
        "overflows",
    ),
    # vmdk (monolithicSparse)
    "vmdk-version-9": ("vmdk-monolithic-sparse", put("<I", 4, 9), UNSUPPORTED, "version"),
    "vmdk-grain-odd": ("vmdk-monolithic-sparse", put("<Q", 20, 3), UNSAFE, "grain"),
    "vmdk-grain-absurd": ("vmdk-monolithic-sparse", put("<Q", 20, 1 << 22), UNSAFE, "grain"),
    "vmdk-gtes-zero": ("vmdk-monolithic-sparse", put("<I", 44, 0), UNSAFE, "grain table"),
    "vmdk-gtes-absurd": ("vmdk-monolithic-sparse", put("<I", 44, 4096), UNSAFE, "grain table"),
    "vmdk-capacity-absurd": ("vmdk-monolithic-sparse", put("<Q", 12, 1 << 60), UNSAFE, "capacity"),
    "vmdk-capacity-huge-gd": (
        "vmdk-monolithic-sparse",
        put("<Q", 12, 1 << 50),
        UNSAFE,
        "grain directory",
    ),
    "vmdk-compression": ("vmdk-stream-optimized", put("<H", 77, 7), UNSUPPORTED, "compression"),
    "vmdk-descriptor-absurd": (
        "vmdk-monolithic-sparse",
        put("<Q", 36, 1 << 30),
        UNSAFE,
        "descriptor",
    ),
    "vmdk-descriptor-past-eof": (
        "vmdk-monolithic-sparse",
        put("<Q", 28, 1 << 30),
        CORRUPT,
        "beyond the end",
    ),
    "vmdk-gd-past-eof": (
        "vmdk-monolithic-sparse",
        put("<Q", 56, 1 << 30),
        CORRUPT,
        "grain directory at offset 549755813888",
    ),
    "vmdk-create-type-vmfs": (
        "vmdk-monolithic-sparse",
        vmdk_descriptor_line(b"createType=", b'createType="vmfs"'),
        UNSAFE,
        "createType",
    ),
    "vmdk-parent-cid": (
        "vmdk-stream-optimized",
        replace(b"parentCID=ffffffff", b"parentCID=1234abcd"),
        UNSAFE,
        "parent",
    ),
    "vmdk-parent-hint": (
        "vmdk-monolithic-sparse",
        vmdk_descriptor_line(b"createType=", b'parentFileNameHint="x"'),
        UNSAFE,
        "parentFileNameHint",
    ),
    # VHD dynamic
    "vhd-footer-checksum": ("vhd-dynamic", put(">I", 64, 1), INVALID, "checksum"),
    "vhd-footer-fixed-at-head": ("vhd-dynamic", vhd_footer(">I", 60, 2), INVALID, "disk type"),
    "vhd-footer-differencing": ("vhd-dynamic", vhd_footer(">I", 60, 4), UNSAFE, "differencing"),
    "vhd-size-beyond-2040g": (
        "vhd-dynamic-current-size",
        vhd_footer(">Q", 48, 3 << 40),
        UNSAFE,
        "2040 GiB",
    ),
    "vhd-dynamic-cookie": ("vhd-dynamic", put(">Q", 512, 0), INVALID, "cookie"),
    "vhd-dynamic-checksum": ("vhd-dynamic", put(">I", 512 + 36, 1), INVALID, "checksum"),
    "vhd-block-size-odd": ("vhd-dynamic", vhd_dynamic(">I", 32, 3000), UNSAFE, "block size"),
    "vhd-block-size-huge": ("vhd-dynamic", vhd_dynamic(">I", 32, 1 << 31), UNSAFE, "block size"),
    "vhd-bat-absurd": ("vhd-dynamic", vhd_dynamic(">I", 28, 1 << 28), UNSAFE, "block table"),
    "vhd-bat-too-small": ("vhd-dynamic", vhd_dynamic(">I", 28, 1), INVALID, "too small"),
    "vhd-bat-past-eof": ("vhd-dynamic", vhd_dynamic(">Q", 16, 1 << 40), CORRUPT, "past the footer"),
    "vhd-parent-locator": (
        "vhd-dynamic",
        vhd_dynamic(">I", 576, 0x57326B75),
        UNSAFE,
        "parent locator",
    ),
    # VHD fixed (footer at the tail only)
    "vhd-fixed-truncated": (
        "vhd-fixed",
        vhd_footer(">Q", 48, 1 << 30, tail=True),
        CORRUPT,
        "1073741824 bytes",
    ),
    "vhd-tail-differencing": (
        "vhd-fixed",
        vhd_footer(">I", 60, 4, tail=True),
        UNSAFE,
        "differencing",
    ),
    "vhd-tail-dynamic-without-head": (
        "vhd-fixed",
        vhd_footer(">I", 60, 3, tail=True),
        INVALID,
        "dynamic",
    ),
    # VHDX
    "vhdx-headers-corrupt": (
        "vhdx-dynamic",
        both(put("<I", 64 * KiB + 4, 1), put("<I", 128 * KiB + 4, 1)),
        INVALID,
        "no valid header",
    ),
    "vhdx-log-needs-replay": (
        "vhdx-dynamic",
        vhdx_headers("", 48, b"\x01" * 16),
        INVALID,
        "log needs replay",
    ),
    "vhdx-version-2": ("vhdx-dynamic", vhdx_headers("<H", 66, 2), UNSUPPORTED, "version"),
    "vhdx-region-tables-corrupt": (
        "vhdx-dynamic",
        both(put("<I", 192 * KiB + 4, 1), put("<I", 256 * KiB + 4, 1)),
        INVALID,
        "region table",
    ),
    "vhdx-block-size-odd": (
        "vhdx-dynamic",
        vhdx_item(factory.VHDX_FILE_PARAMETERS, "<I", 3 * MiB),
        UNSAFE,
        "block size",
    ),
    "vhdx-has-parent": (
        "vhdx-1m-blocks",
        vhdx_item(factory.VHDX_FILE_PARAMETERS, "<Q", MiB | (2 << 32)),
        UNSAFE,
        "differencing",
    ),
    "vhdx-size-beyond-64t": (
        "vhdx-dynamic",
        vhdx_item(factory.VHDX_VIRTUAL_DISK_SIZE, "<Q", 1 << 50),
        UNSAFE,
        "64 TiB",
    ),
    "vhdx-bat-too-small": (
        "vhdx-1m-blocks",
        vhdx_item(factory.VHDX_VIRTUAL_DISK_SIZE, "<Q", 1 << 40),
        INVALID,
        "BAT",
    ),
    "vhdx-sector-size": (
        "vhdx-dynamic",
        vhdx_item(factory.VHDX_LOGICAL_SECTOR_SIZE, "<I", 1000),
        INVALID,
        "sector size",
    ),
    "vhdx-parent-locator-item": (
        "vhdx-dynamic",
        vhdx_item_guid(factory.VHDX_LOGICAL_SECTOR_SIZE, "A8D35F2D-B30B-454D-ABF7-D3D84834AB0C"),
        UNSAFE,
        "parent locator",
    ),
    "vhdx-unknown-required-item": (
        "vhdx-dynamic",
        vhdx_item_guid(factory.VHDX_VIRTUAL_DISK_SIZE, UNKNOWN_GUID, flags=4),
        UNSUPPORTED,
        "unknown metadata",
    ),
    "vhdx-missing-size": (
        "vhdx-dynamic",
        vhdx_item_guid(factory.VHDX_VIRTUAL_DISK_SIZE, UNKNOWN_GUID, flags=0),
        INVALID,
        "virtual disk size",
    ),
    # VDI
    "vdi-version": ("vdi-dynamic", put("<I", 0x44, 0x00010000), UNSUPPORTED, "version"),
    "vdi-type-undo": ("vdi-dynamic", put("<I", 0x4C, 3), UNSAFE, "differencing"),
    "vdi-type-unknown": ("vdi-dynamic", put("<I", 0x4C, 9), INVALID, "type 9"),
    "vdi-parent-uuid": ("vdi-static", put("<Q", 0x1B8, 7), UNSAFE, "differencing"),
    "vdi-link-uuid": ("vdi-static", put("<Q", 0x1A8, 7), UNSAFE, "differencing"),
    "vdi-block-size": ("vdi-dynamic", put("<I", 0x178, 2 * MiB), UNSUPPORTED, "block size"),
    "vdi-sector-size": ("vdi-dynamic", put("<I", 0x168, 4096), UNSUPPORTED, "sector size"),
    "vdi-blocks-absurd": ("vdi-dynamic", put("<I", 0x180, 1 << 28), UNSAFE, "block map"),
    "vdi-blocks-too-few": ("vdi-dynamic", put("<I", 0x180, 1), INVALID, "too small"),
    "vdi-size-absurd": ("vdi-dynamic", put("<Q", 0x170, 1 << 60), UNSAFE, "virtual size"),
    "vdi-bmap-unaligned": ("vdi-dynamic", put("<I", 0x154, 0x201), INVALID, "aligned"),
    "vdi-bmap-past-eof": ("vdi-dynamic", put("<I", 0x154, 1 << 30), CORRUPT, "beyond the end"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_corrupt_field_is_refused_precisely(samples: dict[str, Sample], case: str) -> None:
    name, apply, reason, fragment = CASES[case]
    data = bytearray(samples[name].path.read_bytes())
    apply(data)
    reader = CountingReader(bytes(data))

    with pytest.raises(ImportFailure) as failure:
        inspect(detect(bytes(data[:HEAD_SIZE])), reader, len(data))

    assert failure.value.reason is reason, failure.value.message
    assert fragment in failure.value.message


def test_dmg_trailer_is_unsupported(samples: dict[str, Sample]) -> None:
    data = bytearray(samples["raw"].path.read_bytes())
    trailer = bytearray(512)
    trailer[:12] = b"koly" + struct.pack(">II", 4, 512)
    data[-512:] = trailer
    with pytest.raises(ImportFailure) as failure:
        inspect(DiskFormat.RAW, CountingReader(bytes(data)), len(data))
    assert failure.value.reason is UNSUPPORTED
    assert "dmg" in failure.value.message


def test_vhd_footer_with_bad_checksum_at_the_tail_is_just_raw_data(
    samples: dict[str, Sample],
) -> None:
    """Only a checksummed footer turns raw into VHD: a look-alike stays part of the disk."""
    data = bytearray(samples["vhd-fixed"].path.read_bytes())
    data[-512 + 64] ^= 0xFF
    info = inspect(DiskFormat.RAW, CountingReader(bytes(data)), len(data))
    assert (info.format, info.virtual_size, info.payload_size) == (DiskFormat.RAW, len(data), None)


def test_stream_optimized_with_grain_directory_at_end_is_accepted(tmp_path: Path) -> None:
    """VMware writes streamOptimized files with the directory in a footer (GD_AT_END)."""
    path = vmdkfactory.stream_with_footer(tmp_path)
    data = path.read_bytes()
    assert struct.unpack_from("<Q", data, 56)[0] == 0xFFFFFFFFFFFFFFFF
    info = inspect(DiskFormat.VMDK, CountingReader(data), len(data))
    assert info.virtual_size == factory.qemu_info(path, "vmdk")["virtual-size"] == 1024 * 1024


def test_stream_whose_footer_is_missing_is_corrupt(tmp_path: Path) -> None:
    """No footer where the header says the directory is: a stream cut short."""
    data = vmdkfactory.stream_without_footer(tmp_path).read_bytes()
    with pytest.raises(ImportFailure) as failure:
        inspect(DiskFormat.VMDK, CountingReader(data), len(data))
    assert failure.value.reason is CORRUPT
    assert "footer" in failure.value.message


def test_inspect_accepts_the_format_as_its_string_value(samples: dict[str, Sample]) -> None:
    data = samples["raw"].path.read_bytes()
    info = inspect("raw", CountingReader(data), len(data))  # type: ignore[arg-type]
    assert info.format is DiskFormat.RAW
