"""Fixtures for end-to-end runs of the real `cdi-importer` program against real servers."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import zstandard

from tests.peers import devices

MiB = 1 << 20
REF_SIZE = 16 * MiB


def make_reference(path: Path) -> Path:
    """A raw disk with recognisable data at several offsets and holes in between."""
    with open(path, "wb") as f:
        f.truncate(REF_SIZE)
        for i, off in enumerate([0, 1 * MiB + 512, 5 * MiB, 9 * MiB + 4096, REF_SIZE - 64 * 1024]):
            f.seek(off)
            f.write(os.urandom(48 * 1024) + bytes([i + 1]) * 16 * 1024)
    return path


FORMATS: dict[str, tuple[str, list[str]]] = {
    "raw": ("raw", []),
    "qcow2": ("qcow2", ["-o", "compat=1.1"]),
    "qcow2v2": ("qcow2", ["-o", "compat=0.10"]),
    "qcow2c": ("qcow2", ["-c"]),
    "vmdk": ("vmdk", []),
    "vmdkso": ("vmdk", ["-o", "subformat=streamOptimized"]),
    "vhd": ("vpc", []),
    "vhdfixed": ("vpc", ["-o", "subformat=fixed"]),
    "vhdx": ("vhdx", []),
    "vdi": ("vdi", []),
}


def compress(src: Path, kind: str) -> Path:
    if kind == "none":
        return src
    out = src.with_name(src.name + {"gz": ".gz", "xz": ".xz", "zst": ".zst", "bz2": ".bz2"}[kind])
    data = src.read_bytes()
    if kind == "gz":
        out.write_bytes(gzip.compress(data, 1))
    elif kind == "xz":
        out.write_bytes(lzma.compress(data, preset=0))
    elif kind == "zst":
        out.write_bytes(zstandard.ZstdCompressor(level=1).compress(data))
    elif kind == "bz2":
        out.write_bytes(bz2.compress(data, 1))
    return out


@dataclass
class Images:
    dir: Path
    reference: Path

    def make(self, name: str, compression: str = "none") -> Path:
        fmt, opts = FORMATS[name]
        path = self.dir / f"{name}.img"
        if not path.exists():
            if name == "raw":
                shutil.copyfile(self.reference, path)
            else:
                subprocess.run(
                    [
                        "qemu-img",
                        "convert",
                        "-f",
                        "raw",
                        "-O",
                        fmt,
                        *opts,
                        str(self.reference),
                        str(path),
                    ],
                    check=True,
                )
        out = compress(path, compression)
        return out


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    d = tmp_path_factory.mktemp("e2e-images")
    return Images(d, make_reference(d / "reference.raw"))


@dataclass
class Run:
    returncode: int
    stderr: str
    report: dict[str, object]


IMPORTER = [sys.executable, "-m", "importer.cli", "--no-progress"]


def importer_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment minus anything that would make the CLI think it is a pod."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMPORTER_")}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    env.update(extra or {})
    return env


def start_importer(*args: str) -> subprocess.Popen[str]:
    """The real CLI in the background (for tests that act while it runs)."""
    return subprocess.Popen(
        [*IMPORTER, *args], env=importer_env(), stderr=subprocess.PIPE, text=True
    )


def run_importer(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Run:
    report_dir = Path(os.environ.get("TMPDIR", "/tmp"))
    report = report_dir / f"report-{os.getpid()}-{os.urandom(4).hex()}.json"
    proc = subprocess.run(
        [*IMPORTER, "--termination-log", str(report), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=importer_env(env),
        check=False,
    )
    doc: dict[str, object] = {}
    if report.exists():
        doc = json.loads(report.read_text())
        report.unlink()
    return Run(proc.returncode, proc.stderr, doc)


def same_disk(reference: Path, out: Path, *, prefix_only: bool = False) -> bool:
    if prefix_only:
        with open(reference, "rb") as a, open(out, "rb") as b:
            while True:
                x = a.read(MiB)
                if not x:
                    return True
                if b.read(len(x)) != x:
                    return False
    r = subprocess.run(
        ["qemu-img", "compare", "-f", "raw", "-F", "raw", str(reference), str(out)],
        capture_output=True,
        check=False,
    )
    return r.returncode == 0


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[Path]:
    """A 20 MiB loop device full of garbage, like a reused volume."""
    with devices.loop_device(devices.fill(tmp_path / "block.img", 20 * MiB)) as dev:
        yield dev
