"""The report says whether the volume was preallocated, as CDI's importer tells its
controller (which records `storage.preallocation: "true"` on the PVC)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from importer.pipeline import run_transfer
from importer.progress import Progress
from importer.sources.body import BodySource
from importer.transferspec import TransferSpec

MiB = 1 << 20


def spec(tmp_path: Path, preallocation: bool) -> TransferSpec:
    return TransferSpec(dest=str(tmp_path / "disk.img"), requested_size=8 * MiB,
                        filesystem_overhead=0.0, scratch_dir=str(tmp_path),
                        preallocation=preallocation)


@pytest.mark.parametrize("preallocation", [True, False], ids=["asked", "not-asked"])
@pytest.mark.parametrize("kind", ["blank", "raw"])
def test_report_and_disk_agree_on_preallocation(tmp_path: Path, preallocation: bool,
                                                kind: str) -> None:
    source = None
    if kind == "raw":
        data = b"\x01" * MiB
        source = BodySource(len(data))
        source.put(data, timeout=10)
        source.finish()
    report = run_transfer(source, None, spec(tmp_path, preallocation), Progress(),
                          threading.Event())
    assert report.ok
    disk = (tmp_path / "disk.img").stat()
    allocated = disk.st_blocks * 512
    if preallocation:
        assert report.preallocation_applied is True
        assert allocated >= 8 * MiB
        assert '"preallocation_applied":true' in report.to_json()
    else:
        assert report.preallocation_applied is None
        assert allocated < 8 * MiB
