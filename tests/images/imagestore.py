"""The tests' edge to buildah: build once per session, inspect, mount, run."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def build_all() -> None:
    """hack/build-images, which rebuilds only what changed (a no-op when all is current)."""
    subprocess.run([str(ROOT / "hack/build-images")], check=True, stdout=subprocess.DEVNULL)


def config(name: str) -> dict[str, Any]:
    out = subprocess.run(["buildah", "inspect", "--type", "image", name],
                         check=True, text=True, stdout=subprocess.PIPE).stdout
    found: dict[str, Any] = json.loads(out)["OCIv1"]["config"]
    return found


def size(name: str) -> int:
    out = subprocess.run(["buildah", "images", "--json", name],
                         check=True, text=True, stdout=subprocess.PIPE).stdout
    return int(json.loads(out)[0]["size"])


@contextmanager
def container(name: str) -> Iterator[str]:
    """A working container of IMAGE, removed afterwards."""
    c = subprocess.run(["buildah", "from", "--pull-never", "--quiet", name],
                       check=True, text=True, stdout=subprocess.PIPE).stdout.strip()
    try:
        yield c
    finally:
        subprocess.run(["buildah", "rm", c], check=False, stdout=subprocess.DEVNULL)


@contextmanager
def rootfs(name: str) -> Iterator[Path]:
    """IMAGE's root file system, mounted read-write on a throwaway container."""
    with container(name) as c:
        path = subprocess.run(["buildah", "mount", c], check=True, text=True,
                              stdout=subprocess.PIPE).stdout.strip()
        try:
            yield Path(path)
        finally:
            subprocess.run(["buildah", "umount", c], check=False, stdout=subprocess.DEVNULL)


def run(name: str, argv: list[str], user: str = "107:107") -> subprocess.CompletedProcess[str]:
    """ARGV in a container of IMAGE as USER (chroot isolation), its output captured."""
    with container(name) as c:
        return subprocess.run(
            ["buildah", "run", "--isolation", "chroot", "--user", user, c, "--", *argv],
            check=False, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
