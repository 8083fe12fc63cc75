"""Real peers for target tests: a small tmpfs (ENOSPC) and a loop device full of garbage."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers import devices

LOOP_SIZE = 32 << 20


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    with devices.tmpfs(tmp_path / "small", "8m") as mnt:
        yield mnt


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[Path]:
    """A loop device over a file pre-filled with 0xA5 garbage (never zeros)."""
    with devices.loop_device(devices.fill(tmp_path / "backing.img", LOOP_SIZE)) as dev:
        yield dev


def read_device(dev: Path) -> bytes:
    with dev.open("rb", buffering=0) as f:
        return f.read()
