"""The image factory makes what it claims: the other format tests rest on it."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest

from tests import imagefactory as factory
from tests.importer.formats.conftest import SUPPORTED, Sample


def test_reference_has_marks_and_holes(reference: factory.Reference) -> None:
    data = reference.path.read_bytes()
    assert len(data) == reference.size
    assert len(reference.marks) >= 4
    for offset, mark in reference.marks.items():
        assert data[offset : offset + len(mark)] == mark
    assert data[512 * 1024 : 512 * 1024 + 4096] == bytes(4096)
    # Holes are real holes: the file takes less room on disk than its length.
    assert reference.path.stat().st_blocks * 512 < reference.size


@pytest.mark.parametrize("name", list(SUPPORTED))
def test_converted_image_holds_the_reference(
    samples: dict[str, Sample], reference: factory.Reference, name: str
) -> None:
    sample = samples[name]
    result = subprocess.run(
        ["qemu-img", "compare", "-f", "raw", "-F", sample.format.value,
         reference.path, sample.path],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", ["qcow2-v3-compressed", "qcow2-v2-compressed"])
def test_compressed_qcow2_really_has_compressed_clusters(
    samples: dict[str, Sample], name: str
) -> None:
    data = samples[name].path.read_bytes()
    l1_offset = struct.unpack_from(">Q", data, 40)[0]
    l2_offset = struct.unpack_from(">Q", data, l1_offset)[0] & ((1 << 56) - 512)
    first_l2_entry = struct.unpack_from(">Q", data, l2_offset)[0]
    assert first_l2_entry & (1 << 62), "cluster 0 is not compressed"


def test_ext4_image_holds_the_files(tmp_path: Path) -> None:
    path = factory.ext4_image(tmp_path, {"dir/a.txt": b"alpha\n"})
    listing = factory.run("debugfs", "-R", "cat /dir/a.txt", path)
    assert listing == "alpha\n"


def test_iso_image_is_iso9660(tmp_path: Path) -> None:
    data = factory.iso_image(tmp_path).read_bytes()
    assert data[0x8001:0x8006] == b"CD001"
