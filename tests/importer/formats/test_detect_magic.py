"""`detect` on hand-made heads: the magic table, its edges, and the unsupported formats."""

from __future__ import annotations

import struct

import pytest

from cdicontract.reasons import Reason
from importer.errors import ImportFailure
from importer.formats import DiskFormat, detect


def at(offset: int, magic: bytes, size: int = 4096) -> bytes:
    head = bytearray(size)
    head[offset : offset + len(magic)] = magic
    return bytes(head)


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        pytest.param(b"QFI\xfb" + struct.pack(">I", 2), DiskFormat.QCOW2, id="qcow2-v2"),
        pytest.param(b"QFI\xfb" + struct.pack(">I", 3), DiskFormat.QCOW2, id="qcow2-v3"),
        pytest.param(b"QFI\xfb", DiskFormat.QCOW2, id="qcow2-too-short-to-tell"),
        pytest.param(b"KDMV\x01\x00\x00\x00", DiskFormat.VMDK, id="vmdk-sparse"),
        pytest.param(b"# Disk DescriptorFile\nversion=1\n", DiskFormat.VMDK, id="vmdk-text"),
        pytest.param(b"conectix" + bytes(504), DiskFormat.VHD, id="vhd-dynamic"),
        pytest.param(b"vhdxfile" + bytes(504), DiskFormat.VHDX, id="vhdx"),
        pytest.param(at(0x40, b"\x7f\x10\xda\xbe"), DiskFormat.VDI, id="vdi"),
        pytest.param(at(0x8001, b"CD001", 0x9000), DiskFormat.RAW, id="iso-is-raw"),
        pytest.param(b"", DiskFormat.RAW, id="empty"),
        pytest.param(bytes(65536), DiskFormat.RAW, id="zeros"),
        pytest.param(b"\xeb\x63\x90" + bytes(509), DiskFormat.RAW, id="mbr-boot-code"),
        pytest.param(b"BZh", DiskFormat.RAW, id="bzh-alone-is-not-bzip2"),
        pytest.param(b"\x1f\x8b", DiskFormat.RAW, id="gzip-magic-without-method"),
        pytest.param(at(0x40, b"\x7f\x10\xda"), DiskFormat.RAW, id="vdi-partial-signature"),
        pytest.param(b"qfi\xfb" + bytes(8), DiskFormat.RAW, id="magic-is-case-sensitive"),
    ],
)
def test_detects_format_from_magic(head: bytes, expected: DiskFormat) -> None:
    assert detect(head) is expected


@pytest.mark.parametrize(
    ("head", "name"),
    [
        pytest.param(b"QFI\xfb" + struct.pack(">I", 1), "qcow (version 1)", id="qcow1"),
        pytest.param(b"QFI\xfb" + struct.pack(">I", 7), "qcow2 version 7", id="qcow2-v7"),
        pytest.param(b"QED\x00" + bytes(60), "QED", id="qed"),
        pytest.param(b"LUKS\xba\xbe\x00\x01", "LUKS", id="luks"),
        pytest.param(b"WithoutFreeSpace", "Parallels", id="parallels"),
        pytest.param(b"WithouFreSpacExt", "Parallels", id="parallels-ext"),
        pytest.param(b"#!/bin/sh\n#V2.0 Format\nmodprobe cloop", "cloop", id="cloop"),
        pytest.param(b"Bochs Virtual HD Image\0", "Bochs", id="bochs"),
        pytest.param(b"COWD\x01\x00\x00\x00", "COWD", id="vmware-cowd"),
        pytest.param(at(257, b"ustar\x0000"), "tar archive", id="tar"),
        pytest.param(b"PK\x03\x04" + bytes(26), "zip", id="zip"),
        pytest.param(b"\x1f\x8b\x08\x00", "gzip", id="nested-gzip"),
        pytest.param(b"\xfd7zXZ\x00\x00", "xz", id="nested-xz"),
        pytest.param(b"\x28\xb5\x2f\xfd\x00", "zstd", id="nested-zstd"),
        pytest.param(b"BZh91AY&SY", "bzip2", id="nested-bzip2"),
        pytest.param(b"7z\xbc\xaf\x27\x1c", "7-zip", id="7z"),
    ],
)
def test_recognised_unsupported_formats_are_named(head: bytes, name: str) -> None:
    with pytest.raises(ImportFailure) as failure:
        detect(head)
    assert failure.value.reason is Reason.UNSUPPORTED_FORMAT
    assert name in failure.value.message
    assert failure.value.permanent


def test_disk_format_values_are_qemu_driver_names() -> None:
    assert [f.value for f in DiskFormat] == ["raw", "qcow2", "vmdk", "vpc", "vhdx", "vdi"]
