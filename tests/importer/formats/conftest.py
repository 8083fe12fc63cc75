"""Images shared by the format tests: made once per session with the real qemu-img."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from importer.formats import DiskFormat
from tests import imagefactory


@dataclass(frozen=True)
class Sample:
    """A real image, the format our detection must report and qemu-img's name for it."""

    path: Path
    format: DiskFormat


# id -> (qemu-img output format, subformat, extra options, expected DiskFormat)
SUPPORTED: dict[str, tuple[str, str | None, dict[str, str | bool], DiskFormat]] = {
    "qcow2-v2": ("qcow2", None, {"compat": "0.10"}, DiskFormat.QCOW2),
    "qcow2-v3": ("qcow2", None, {}, DiskFormat.QCOW2),
    "qcow2-v3-compressed": ("qcow2", None, {"compress": True}, DiskFormat.QCOW2),
    "qcow2-v2-compressed": ("qcow2", None, {"compat": "0.10", "compress": True}, DiskFormat.QCOW2),
    "qcow2-zstd-compressed": (
        "qcow2",
        None,
        {"compression_type": "zstd", "compress": True},
        DiskFormat.QCOW2,
    ),
    "qcow2-extended-l2": ("qcow2", None, {"extended_l2": "on"}, DiskFormat.QCOW2),
    "qcow2-small-clusters": ("qcow2", None, {"cluster_size": "512"}, DiskFormat.QCOW2),
    "vmdk-monolithic-sparse": ("vmdk", "monolithicSparse", {}, DiskFormat.VMDK),
    "vmdk-stream-optimized": ("vmdk", "streamOptimized", {}, DiskFormat.VMDK),
    "vhd-dynamic": ("vpc", "dynamic", {}, DiskFormat.VHD),
    "vhd-dynamic-current-size": ("vpc", "dynamic", {"force_size": "on"}, DiskFormat.VHD),
    "vhd-fixed": ("vpc", "fixed", {}, DiskFormat.VHD),
    "vhdx-dynamic": ("vhdx", None, {}, DiskFormat.VHDX),
    "vhdx-fixed": ("vhdx", None, {"subformat": "fixed"}, DiskFormat.VHDX),
    "vhdx-1m-blocks": ("vhdx", None, {"block_size": "1M"}, DiskFormat.VHDX),
    "vdi-dynamic": ("vdi", None, {}, DiskFormat.VDI),
    "vdi-static": ("vdi", None, {"static": "on"}, DiskFormat.VDI),
}


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("format-images")


@pytest.fixture(scope="session")
def reference(image_dir: Path) -> imagefactory.Reference:
    return imagefactory.make_reference(image_dir)


@pytest.fixture(scope="session")
def samples(image_dir: Path, reference: imagefactory.Reference) -> dict[str, Sample]:
    made = {"raw": Sample(reference.path, DiskFormat.RAW)}
    for name, (fmt, subformat, opts, expected) in SUPPORTED.items():
        options = dict(opts)
        sub = subformat or options.pop("subformat", None)
        made[name] = Sample(imagefactory.convert(reference, fmt, sub, **options), expected)  # type: ignore[arg-type]
    made["ext4"] = Sample(imagefactory.ext4_image(image_dir), DiskFormat.RAW)
    made["iso"] = Sample(imagefactory.iso_image(image_dir), DiskFormat.RAW)
    return made


class CountingReader:
    """A ReadAt over bytes in memory that records every read, to bound what inspect reads."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.reads: list[tuple[int, int]] = []

    def __call__(self, offset: int, length: int) -> bytes:
        self.reads.append((offset, length))
        return self.data[offset : offset + length]

    @property
    def bytes_read(self) -> int:
        return sum(length for _, length in self.reads)


@pytest.fixture
def counting_reader() -> Callable[[bytes], CountingReader]:
    return CountingReader
