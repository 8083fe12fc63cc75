"""Hostile images through the real CLI: refused with a precise reason, nothing written.

Watchers on the files an image points at (backing files, data files, FLAT extents, a
VMDK's parent) prove that nothing outside the target is touched: inotify sees any open,
and their access times must not move (the tests' filesystem is mounted with relatime, so
we set atime into the past first, which makes any read update it). The report's message
must be the header inspector's: the image was refused before qemu-img ever ran.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import imagefactory as f
from tests import tablefactory as t
from tests import vmdkfactory
from tests.importer.e2e.conftest import run_importer
from tests.importer.e2e.opens import watch_opens

MiB = 1024 * 1024

HOSTILE: dict[str, tuple[Callable[[Path], Path], str, str]] = {
    # kind: (builder, reason, a fragment of the inspector's own message)
    "qcow2-backing-file": (f.qcow2_with_backing, "UnsafeImage", "backing file"),
    "qcow2-external-data-file": (f.qcow2_with_data_file, "UnsafeImage", "external data file"),
    "qcow2-absurd-virtual-size": (f.qcow2_absurd_size, "UnsafeImage", "virtual size"),
    "qcow2-truncated": (f.qcow2_truncated, "CorruptImage", "L1 table"),
    "vmdk-descriptor-with-extents": (f.vmdk_descriptor_with_extents, "UnsafeImage", "extent"),
    "vmdk-delta": (f.vmdk_delta, "UnsafeImage", "parent"),
    "vhd-differencing": (f.vhd_differencing, "UnsafeImage", "differencing"),
    "vhdx-differencing": (f.vhdx_differencing, "UnsafeImage", "differencing"),
    "vdi-differencing": (f.vdi_differencing, "UnsafeImage", "differencing"),
    # Cut short, as a partial file on a mirror: nginx serves the cut file, so the
    # Content-Length agrees with it and only the image's own tables can tell.
    "qcow2-cut-at-1mib": (lambda d: t.cut_short(d, "qcow2", at=1 * MiB), "CorruptImage", "qcow2 data cluster"),
    "qcow2-cut-in-last-cluster": (lambda d: t.cut_short(d, "qcow2"), "CorruptImage", "qcow2 data cluster"),
    "qcow2-compressed-cut": (t.qcow2_compressed_cut, "CorruptImage", "qcow2 compressed cluster"),
    "vmdk-sparse-cut": (lambda d: t.cut_short(d, "vmdk"), "CorruptImage", "VMDK grain"),
    "vmdk-stream-cut": (lambda d: t.cut_short(d, "vmdk", "streamOptimized"), "CorruptImage", "VMDK compressed grain"),
    "vmdk-stream-without-footer": (vmdkfactory.stream_without_footer, "CorruptImage", "footer"),
    "vhd-dynamic-cut": (lambda d: t.cut_short(d, "vpc"), "CorruptImage", "does not end with its footer"),
    "vhdx-cut": (lambda d: t.cut_short(d, "vhdx"), "CorruptImage", "VHDX data block"),
    "vdi-cut": (lambda d: t.cut_short(d, "vdi"), "CorruptImage", "VDI block"),
    # VMDK descriptors as qemu reads them (tests/vmdkfactory.py): qemu would follow each to
    # another file (a parent, a FLAT extent on a host path) or take 1 GiB grains.
    "vmdk-hint-at-sector-one": (vmdkfactory.hint_at_sector_one, "UnsafeImage", "parentFileNameHint"),
    "vmdk-commented-hint": (vmdkfactory.commented_hint, "UnsafeImage", "parentFileNameHint"),
    "vmdk-capacity-0-flat-extent": (vmdkfactory.capacity_zero_flat_extent, "UnsafeImage", "capacity 0"),
    "vmdk-create-type-in-comment": (vmdkfactory.capacity_zero_commented_type, "UnsafeImage", "capacity 0"),
    "vmdk-duplicate-create-type": (vmdkfactory.capacity_zero_duplicate_type, "UnsafeImage", "capacity 0"),
    "vmdk-hostile-footer": (vmdkfactory.hostile_footer, "UnsafeImage", "grain size"),
}  # fmt: skip


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_image_is_refused_and_nothing_is_written(nginx, tmp_path: Path, kind: str) -> None:
    make, reason, fragment = HOSTILE[kind]
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    image = make(src_dir)
    others = [p for p in src_dir.rglob("*") if p.is_file() and p != image]
    for p in others:
        os.utime(p, (1_000_000, p.stat().st_mtime))
    name = nginx.publish(image, f"hostile/{kind}/{image.name}")
    out = tmp_path / "out"
    out.mkdir()
    with watch_opens(others) as opened:
        r = run_importer(
            "--endpoint",
            f"{nginx.http_url}/{name}",
            "--dest",
            str(out / "disk.img"),
            "--size",
            "1Gi",
        )
    assert r.returncode == 3, r.stderr
    assert r.report["reason"] == reason, r.report
    # Refused by header inspection, before any qemu-img ran, not by a later safety net.
    assert fragment in str(r.report["message"]), r.report
    assert list(out.iterdir()) == []
    assert opened == set()  # the files the image points at were never even opened
    for p in others:  # nor read
        assert p.stat().st_atime == 1_000_000, p


def test_oversized_image_is_refused_before_conversion(nginx, tmp_path: Path) -> None:
    image = f.qcow2_oversized(tmp_path, virtual_size=1 << 40)
    name = nginx.publish(image, "hostile/oversized.qcow2")
    out = tmp_path / "out"
    out.mkdir()
    r = run_importer(
        "--endpoint", f"{nginx.http_url}/{name}", "--dest", str(out / "disk.img"), "--size", "1Gi"
    )
    assert r.returncode == 3
    assert r.report["reason"] == "ImageTooLarge"
    assert "DataVolume too small to contain image" in str(r.report["message"])
    assert list(out.iterdir()) == []


def test_unsupported_formats_are_named(nginx, tmp_path: Path) -> None:
    for label, image in f.unsupported_images(tmp_path).items():
        name = nginx.publish(image, f"unsupported/{label}")
        r = run_importer(
            "--endpoint", f"{nginx.http_url}/{name}", "--dest", str(tmp_path / "x.img")
        )
        assert r.report["reason"] == "UnsupportedFormat", (label, r.report)
        assert not (tmp_path / "x.img").exists()


def test_raw_disk_ending_in_a_footer_for_a_smaller_disk_keeps_every_byte(
    nginx, tmp_path: Path
) -> None:
    """The last sector looks like a fixed VHD footer declaring 64 KiB: the disk is raw."""
    disk = tmp_path / "raw-with-footer.img"
    disk.write_bytes(os.urandom(1 * MiB - 512) + f.vhd_fixed_footer(64 * 1024))
    name = nginx.publish(disk, "hostile/raw-with-footer.img")
    dest = tmp_path / "disk.img"
    r = run_importer("--endpoint", f"{nginx.http_url}/{name}", "--dest", str(dest))
    assert r.returncode == 0, r.stderr
    assert r.report["format"] == "raw"
    assert dest.read_bytes() == disk.read_bytes()
