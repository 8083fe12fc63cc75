"""Backing storage of provisioned volumes: loop-mounted ext4 or a bare loop device.

Why ext4 on a loop device for Filesystem volumes: the capacity of the claim is then
enforced by a real filesystem, so "no space left on device" and filesystem overhead are
what the product meets in a real cluster. Block volumes are a sparse file behind a loop
device, whose path the PV names, so a test can read the bytes the product wrote.

Each volume lives in ``DIR/storage/<pv-name>/``: ``disk`` (the sparse file), ``mnt``
(the mount point of Filesystem volumes) and ``loop`` (the device's path).
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

# Below this size mkfs.ext4 cannot fit its own metadata with room to spare; such
# claims get a slightly larger filesystem.
_MIN_EXT4 = 16 * 1024 * 1024


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


def _make_sparse(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        f.truncate(size)


def _attach(backing: Path) -> str:
    return _run("losetup", "--find", "--show", "--direct-io=off", str(backing))


def create_filesystem(root: Path, size: int) -> Path:
    """Return the mount point of a fresh ext4 of ``size`` bytes."""
    root.mkdir(parents=True, exist_ok=True)
    disk, mnt = root / "disk", root / "mnt"
    _make_sparse(disk, max(size, _MIN_EXT4))
    # No journal and no reserved blocks: the usable size is as close to the claim as
    # ext4 allows, and creating it takes milliseconds. `-T default`: the inode density of
    # the volumes real provisioners make (mke2fs would pick the "small" profile for our
    # test-sized claims, whose inode tables take ~8% and would exceed CDI's 6% overhead,
    # so a preallocated image of exactly the requested size could never fit).
    _run(
        "mkfs.ext4", "-q", "-F", "-m", "0", "-T", "default", "-O", "^has_journal",
        "-E", "nodiscard,lazy_itable_init=1,lazy_journal_init=1", str(disk),
    )  # fmt: skip
    loop = _attach(disk)
    (root / "loop").write_text(loop)
    mnt.mkdir(exist_ok=True)
    _run("mount", "-t", "ext4", loop, str(mnt))
    # Leave lost+found out of the volume's visible contents, as most provisioners do.
    with contextlib.suppress(OSError):
        (mnt / "lost+found").rmdir()
    mnt.chmod(0o777)
    return mnt


def create_block(root: Path, size: int) -> str:
    """Return the loop device of a fresh sparse file of ``size`` bytes."""
    root.mkdir(parents=True, exist_ok=True)
    disk = root / "disk"
    _make_sparse(disk, size)
    loop = _attach(disk)
    (root / "loop").write_text(loop)
    return loop


def release(root: Path) -> None:
    """Unmount, detach and delete one volume's backing storage."""
    mnt = root / "mnt"
    if mnt.is_dir() and _is_mount(mnt):
        subprocess.run(["umount", str(mnt)], check=False, capture_output=True)
        if _is_mount(mnt):
            subprocess.run(["umount", "-l", str(mnt)], check=False, capture_output=True)
    for loop in _loops_of(root / "disk"):
        subprocess.run(["losetup", "-d", loop], check=False, capture_output=True)
    subprocess.run(["rm", "-rf", str(root)], check=False)


def release_all(storage: Path) -> None:
    if not storage.is_dir():
        return
    for child in storage.iterdir():
        if child.is_dir():
            release(child)


def _is_mount(path: Path) -> bool:
    target = str(path.resolve())
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            if line.split()[1] == target:
                return True
    return False


def _loops_of(backing: Path) -> list[str]:
    """Every loop device attached to ``backing`` (even one a crash left behind)."""
    out = subprocess.run(
        ["losetup", "--noheadings", "--output", "NAME", "--associated", str(backing)],
        check=False,
        capture_output=True,
        text=True,
    ).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def loops_under(root: Path) -> list[str]:
    """Loop devices whose backing file lies under ``root`` (for leak checks)."""
    out = subprocess.run(
        ["losetup", "--noheadings", "--output", "NAME,BACK-FILE", "--list"],
        check=False,
        capture_output=True,
        text=True,
    ).stdout
    found = []
    for line in out.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[1].strip().startswith(str(root)):
            found.append(parts[0])
    return found
