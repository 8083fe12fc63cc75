"""A container's root file system: its image's, under a writable layer of its own.

Why an overlay the node mounts (bwrap 0.8 has no overlay option): the unpacked image is
shared by every container of that digest and must never change, while a container with
a writable root may write anywhere in it (its /tmp is the image's) and must start from
the image again when it restarts, as a new container does. The upper layer lives in the
container's directory; a read-only root is the same overlay, remounted read-only inside
the sandbox after its mount points are made.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


class MountError(OSError):
    pass


def mount(layers: list[Path], cdir: Path) -> Path:
    """A fresh overlay of the image's ``layers`` (lowest first) at ``cdir/root``."""
    merged, upper, work = cdir / "root", cdir / "upper", cdir / "work"
    unmount(cdir)
    for d in (upper, work):
        shutil.rmtree(d, ignore_errors=True)
    for d in (merged, upper, work):
        d.mkdir(parents=True, exist_ok=True)
    if not layers:
        (cdir / "empty").mkdir(exist_ok=True)
        layers = [cdir / "empty"]
    lower = ":".join(str(p) for p in reversed(layers))
    options = f"lowerdir={lower},upperdir={upper},workdir={work}"
    done = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", options, str(merged)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise MountError(f"cannot mount the container's root: {done.stderr.strip()}")
    return merged


def mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == target for line in f)


def unmount(cdir: Path) -> None:
    merged = cdir / "root"
    for _ in range(5):
        if not mounted(merged):
            return
        subprocess.run(["umount", "-l", str(merged)], capture_output=True, check=False)


def unmount_all(pod_dir: Path) -> None:
    """Every container root of a pod (before its directory is removed)."""
    containers = pod_dir / "containers"
    if containers.is_dir():
        for cdir in containers.iterdir():
            unmount(cdir)
