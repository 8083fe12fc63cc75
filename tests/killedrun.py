"""What an importer killed with SIGKILL leaves on a volume, and look-alikes that are not ours."""

from __future__ import annotations

import os
from pathlib import Path


def plant_leftovers(directory: Path, dest_name: str) -> list[Path]:
    """What a SIGKILLed run leaves: a part file, scratch, probe, a staging tree with
    read-only and unreadable directories in it. Returns their paths."""
    part = directory / f"{dest_name}.part"
    with part.open("wb") as f:
        f.truncate(64 << 20)
        f.write(os.urandom(4096))
    scratch = directory / ".cdi-scratch-q8w7e6r5.img"
    scratch.write_bytes(os.urandom(8192))
    probe = directory / ".odirect-7"
    probe.touch()
    return [part, scratch, probe, plant_staging_tree(directory)]


def plant_staging_tree(directory: Path) -> Path:
    """An archive extractor's staging tree, killed after it applied the archive's modes:
    read-only and unreadable directories with files below them."""
    staging = directory / ".cdi-extract-z9y8x7w6"
    deep = staging / "tree" / "ro" / "locked" / "deeper"
    deep.mkdir(parents=True)
    (deep / "file").write_bytes(b"x" * 1000)
    (staging / "tree" / "ro" / "f").write_bytes(b"y")
    (staging / "dirmodes").mkdir()
    (staging / "dirmodes" / "depth-0").write_bytes(b"500 ro\0")
    os.chmod(deep, 0o500)
    os.chmod(deep.parent, 0o000)
    os.chmod(deep.parent.parent, 0o500)
    return staging


def plant_decoys(directory: Path, outside: Path) -> list[Path]:
    """Things named like ours that are not, and user data: all must survive a sweep."""
    (directory / "other.img.part").write_bytes(b"user's")
    (directory / "data").mkdir()
    (directory / "data" / ".cdi-scratch-aaaaaaaa.img").write_bytes(b"not at the top")
    link = directory / ".cdi-scratch-zzzzzzzz.img"
    link.symlink_to(outside)
    (directory / ".cdi-extract-linked").symlink_to(outside.parent)
    (directory / ".odirect-5").mkdir()
    (directory / ".cdi-extract-filename").write_bytes(b"a file, not a staging tree")
    return sorted(directory.iterdir())
