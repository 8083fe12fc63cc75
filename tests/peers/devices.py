"""Real block devices and small filesystems for tests: loop devices and a tiny tmpfs.

A loop device over a file the caller prepared (garbage, sparse, to be resized with
`losetup -c`) stands in for a Block-mode volume; a tmpfs of a few MiB makes ENOSPC real.
Both are released however the test ends.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

MiB = 1 << 20


def fill(path: Path, size: int, byte: int = 0xA5) -> Path:
    """Write `size` bytes of `byte` (never zeros: garbage a volume may hold) to `path`."""
    chunk = bytes([byte]) * MiB
    with path.open("wb") as f:
        for _ in range(size // MiB):
            f.write(chunk)
        f.write(chunk[: size % MiB])
    return path


@contextlib.contextmanager
def loop_device(backing: Path) -> Iterator[Path]:
    """`backing` attached as a loop device, detached afterwards."""
    dev = subprocess.run(
        ["losetup", "-f", "--show", str(backing)], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        yield Path(dev)
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


@contextlib.contextmanager
def tmpfs(mnt: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` (e.g. "2m") mounted on a new directory `mnt`."""
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
