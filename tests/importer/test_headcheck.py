"""Refusals from the head of the stream: conclusive ones only, never a guess."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from cdicontract.reasons import Reason
from importer import formats
from importer.errors import ImportFailure
from importer.formats import DiskFormat
from importer.headcheck import check_head
from tests import imagefactory

MiB = 1 << 20
HEAD = formats.HEAD_SIZE


def created(tmp_path: Path, fmt: str, size: str) -> bytes:
    path = tmp_path / f"img.{fmt}"
    imagefactory.run("qemu-img", "create", "-q", "-f", fmt, path, size)
    return path.read_bytes()[:HEAD]


@pytest.mark.parametrize(
    ("fmt", "detected"),
    [("qcow2", DiskFormat.QCOW2), ("vmdk", DiskFormat.VMDK), ("vpc", DiskFormat.VHD),
     ("vdi", DiskFormat.VDI)],
)
def test_a_header_too_large_for_the_volume_is_refused(
    tmp_path: Path, fmt: str, detected: DiskFormat
) -> None:
    head = created(tmp_path, fmt, "8G")
    assert formats.detect(head) is detected
    with pytest.raises(ImportFailure) as e:
        check_head(detected, head, usable=64 * MiB, declared_size=None)
    assert e.value.reason is Reason.IMAGE_TOO_LARGE
    check_head(detected, head, usable=16 << 30, declared_size=None)
    check_head(detected, head, usable=None, declared_size=None)


def test_vhdx_keeps_its_size_beyond_the_head_and_is_left_to_inspection(tmp_path: Path) -> None:
    head = created(tmp_path, "vhdx", "8G")
    check_head(DiskFormat.VHDX, head, usable=64 * MiB, declared_size=None)


def test_a_cut_head_is_no_reason_to_refuse(tmp_path: Path) -> None:
    head = created(tmp_path, "qcow2", "8G")
    check_head(DiskFormat.QCOW2, head[:40], usable=64 * MiB, declared_size=None)


def test_a_backing_file_is_refused_from_the_head(tmp_path: Path) -> None:
    head = imagefactory.qcow2_with_backing(tmp_path).read_bytes()[:HEAD]
    with pytest.raises(ImportFailure) as e:
        check_head(DiskFormat.QCOW2, head, usable=None, declared_size=None)
    assert e.value.reason is Reason.UNSAFE_IMAGE


def test_absurd_header_fields_are_refused_from_the_head(tmp_path: Path) -> None:
    head = bytearray(created(tmp_path, "qcow2", "1G"))
    struct.pack_into(">I", head, 20, 30)  # cluster bits: unsafe, whatever follows
    with pytest.raises(ImportFailure) as e:
        check_head(DiskFormat.QCOW2, bytes(head), usable=None, declared_size=None)
    assert e.value.reason is Reason.UNSAFE_IMAGE


@pytest.mark.parametrize(
    ("declared", "refused"),
    [(None, False), (64 * MiB, False), (64 * MiB + 512, False), (64 * MiB + 513, True)],
)
def test_a_raw_body_may_exceed_the_volume_by_a_fixed_vhd_footer_only(
    declared: int | None, refused: bool
) -> None:
    if refused:
        with pytest.raises(ImportFailure) as e:
            check_head(DiskFormat.RAW, b"\0" * 512, usable=64 * MiB, declared_size=declared)
        assert e.value.reason is Reason.IMAGE_TOO_LARGE
    else:
        check_head(DiskFormat.RAW, b"\0" * 512, usable=64 * MiB, declared_size=declared)
