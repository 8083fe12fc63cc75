"""In a pod, the copy a conversion needs goes only to the scratch volume, never next to the
image or into the container's /tmp: without one, the run stops before copying a byte and
says `ScratchSpaceRequired` (the controller then mounts a scratch PVC).

The source is in memory and cannot be read at random offsets, so a qcow2 needs a copy; the
image is a real qcow2 made by qemu-img, the target a real file.
"""

from __future__ import annotations

import functools
import gzip
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cdicontract.reasons import Reason
from importer import cli
from importer.errors import ImportFailure
from importer.pipeline import run_transfer
from importer.progress import Progress
from importer.sources.base import SourceCapabilities, SourceInfo
from importer.transferspec import TransferSpec
from tests import imagefactory

MiB = 1 << 20


@dataclass
class _Stream:
    data: bytes

    def __iter__(self) -> Iterator[bytes]:
        for i in range(0, len(self.data), 256 * 1024):
            yield self.data[i : i + 256 * 1024]

    def close(self) -> None:
        pass


@dataclass
class InOrderOnly:
    data: bytes

    def info(self) -> SourceInfo:
        return SourceInfo(len(self.data), supports_ranges=False, description="in-order source")

    def capabilities(self) -> SourceCapabilities:
        return SourceCapabilities(True, False, "no ranges")

    def open(self, offset: int = 0) -> _Stream:
        return _Stream(self.data[offset:])

    def random_reads(self) -> None:
        return None

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[imagefactory.Reference, bytes]:
    work = tmp_path_factory.mktemp("img")
    ref = imagefactory.make_reference(work, 4 * MiB)
    return ref, imagefactory.convert(ref, "qcow2").read_bytes()


def _spec(tmp_path: Path, scratch_dir: Path | None) -> TransferSpec:
    return TransferSpec(dest=str(tmp_path / "data" / "disk.img"), requested_size=8 * MiB,
                        filesystem_overhead=0.0,
                        scratch_dir=str(scratch_dir) if scratch_dir else None,
                        scratch_volume_only=True)


def _tmp_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    (tmp_path / "data").mkdir()
    return tmp


def _files(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())


def test_without_a_scratch_volume_the_run_stops_before_copying(tmp_path, monkeypatch, images):
    _, qcow2 = images
    tmp = _tmp_env(tmp_path, monkeypatch)
    with pytest.raises(ImportFailure) as e:
        run_transfer(InOrderOnly(qcow2), None, _spec(tmp_path, None), Progress(),
                     threading.Event())
    assert e.value.reason is Reason.SCRATCH_SPACE_REQUIRED
    assert "scratch space required and none found" in e.value.message
    assert not e.value.permanent
    assert _files(tmp_path / "data") == []
    assert _files(tmp) == []


def test_with_a_scratch_volume_the_copy_goes_there_and_is_removed(tmp_path, monkeypatch, images):
    ref, qcow2 = images
    tmp = _tmp_env(tmp_path, monkeypatch)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    report = run_transfer(InOrderOnly(qcow2), None, _spec(tmp_path, scratch), Progress(),
                          threading.Event())
    assert report.scratch_used is True
    out = (tmp_path / "data" / "disk.img").read_bytes()
    assert out[: ref.size] == ref.path.read_bytes()
    assert _files(scratch) == [] and _files(tmp) == []


def test_a_raw_image_needs_no_scratch_volume(tmp_path, monkeypatch, images):
    ref, _ = images
    _tmp_env(tmp_path, monkeypatch)
    report = run_transfer(InOrderOnly(ref.path.read_bytes()), None, _spec(tmp_path, None),
                          Progress(), threading.Event())
    assert not report.scratch_used
    assert (tmp_path / "data" / "disk.img").read_bytes()[: ref.size] == ref.path.read_bytes()


def test_the_importer_in_a_pod_exits_0_with_the_typed_report(tmp_path, images):
    """As CDI's importer: a clean exit, so the kubelet does not restart it in place."""
    _, qcow2 = images
    served = tmp_path / "www"
    served.mkdir()
    (served / "disk.qcow2.gz").write_bytes(gzip.compress(qcow2, 1))
    (tmp_path / "data").mkdir()
    log = tmp_path / "termination-log"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "OWNER_UID": "uid-1",
           "IMPORTER_METRICS_ADDR": "off"}
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/disk.qcow2.gz"
        r = subprocess.run(
            [sys.executable, "-m", "importer.cli", "--source", "http", "--endpoint", url,
             "--dest", str(tmp_path / "data" / "disk.img"), "--termination-log", str(log)],
            env=env, capture_output=True, text=True, timeout=60, check=False)
        server.shutdown()
    assert r.returncode == cli.EXIT_OK, r.stderr
    report = json.loads(log.read_text())
    assert report["reason"] == "ScratchSpaceRequired"
    assert _files(tmp_path / "data") == []
