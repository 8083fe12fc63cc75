"""Hostile images through the real CLI: refused with a precise reason, nothing written.

A watcher on the backing/data files proves that nothing outside the target is read:
their access times must not move (the tests' filesystem is mounted with relatime, so
we set atime into the past first, which makes any read update it).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import imagefactory as f
from tests.importer.e2e.conftest import run_importer

HOSTILE: dict[str, tuple[Callable[[Path], Path], str]] = {
    "qcow2-backing-file": (f.qcow2_with_backing, "UnsafeImage"),
    "qcow2-external-data-file": (f.qcow2_with_data_file, "UnsafeImage"),
    "qcow2-absurd-virtual-size": (f.qcow2_absurd_size, "UnsafeImage"),
    "qcow2-truncated": (f.qcow2_truncated, "CorruptImage"),
    "vmdk-descriptor-with-extents": (f.vmdk_descriptor_with_extents, "UnsafeImage"),
    "vmdk-delta": (f.vmdk_delta, "UnsafeImage"),
    "vhd-differencing": (f.vhd_differencing, "UnsafeImage"),
    "vhdx-differencing": (f.vhdx_differencing, "UnsafeImage"),
    "vdi-differencing": (f.vdi_differencing, "UnsafeImage"),
}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_image_is_refused_and_nothing_is_written(nginx, tmp_path: Path, kind: str) -> None:
    make, reason = HOSTILE[kind]
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    image = make(src_dir)
    others = [p for p in src_dir.rglob("*") if p.is_file() and p != image]
    for p in others:
        os.utime(p, (1_000_000, p.stat().st_mtime))
    name = nginx.publish(image, f"hostile/{kind}/{image.name}")
    out = tmp_path / "out"
    out.mkdir()
    r = run_importer(
        "--endpoint", f"{nginx.http_url}/{name}", "--dest", str(out / "disk.img"), "--size", "1Gi"
    )
    assert r.returncode == 3, r.stderr
    assert r.report["reason"] == reason, r.report
    assert list(out.iterdir()) == []
    for p in others:  # the files the image points at were never opened
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
