"""Payloads and helpers shared by the HTTP source tests."""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from importer.resume import ResumingReader
from importer.sources.base import RandomAccess
from importer.sources.http import HttpSource
from importer.sources.pinned import Window
from importer.sources.rangeproxy import RangeProxy


@dataclass(frozen=True)
class Payload:
    path: Path
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@pytest.fixture(scope="session")
def payload(tmp_path_factory: pytest.TempPathFactory) -> Payload:
    """3 MiB and a bit of random bytes: several 1 MiB chunks and a ragged tail."""
    data = os.urandom(3 * 1024 * 1024 + 12345)
    path = tmp_path_factory.mktemp("payload") / "disk.img"
    path.write_bytes(data)
    return Payload(path, data)


def sha256_through_reader(source: HttpSource) -> tuple[str, ResumingReader]:
    """Read the whole body through ResumingReader (no real sleeping), hashing as it streams."""
    reader = ResumingReader(source, source.info(), sleep=lambda _s: None)
    digest = hashlib.sha256()
    for chunk in reader:
        assert len(chunk) <= 1024 * 1024
        digest.update(chunk)
    return digest.hexdigest(), reader


def nbdkit_convert(access: RandomAccess, fmt: str, out: Path) -> None:
    """What the converter does: nbdkit serves the URL read-only, qemu-img converts from it."""
    cmd = [
        "nbdkit", "-r", "-U", "-", "--exit-with-parent",
        *(f"--filter={f}" for f in access.filters),
        access.plugin, *access.params, *access.filter_params,
        "--run", f"qemu-img convert -f {fmt} -O raw \"$nbd\" {out}",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]


def window_convert(window: Window, fmt: str, out: Path) -> RandomAccess:
    """What the pipeline does: the range proxy serves the pinned view, nbdkit exposes it,
    qemu-img converts from it. Returns the nbdkit access used (to inspect its argv)."""
    proxy = RangeProxy(window.fetch, window.length, window.name)
    try:
        access = proxy.random_access()
        nbdkit_convert(access, fmt, out)
    finally:
        proxy.close()
    window.finish()
    return access


def assert_same_raw(out: Path, data: bytes) -> None:
    """qemu's block layer rounds a raw export up to 512 bytes: the tail must be zeros."""
    got = out.read_bytes()
    assert got[: len(data)] == data
    assert len(got) - len(data) < 512 and not got[len(data) :].strip(b"\0")
