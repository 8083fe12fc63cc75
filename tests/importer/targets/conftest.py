"""Real peers for target tests: a small tmpfs (ENOSPC) and a loop device full of garbage."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

LOOP_SIZE = 32 << 20
GARBAGE = bytes([0xA5]) * (1 << 20)


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[Path]:
    """A loop device over a sparse file pre-filled with 0xA5 garbage (never zeros)."""
    backing = tmp_path / "backing.img"
    with backing.open("wb") as f:
        for _ in range(LOOP_SIZE // len(GARBAGE)):
            f.write(GARBAGE)
    dev = subprocess.run(
        ["losetup", "-f", "--show", str(backing)], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        yield Path(dev)
    finally:
        subprocess.run(["losetup", "-d", dev], check=True)


def read_device(dev: Path) -> bytes:
    with dev.open("rb", buffering=0) as f:
        return f.read()
