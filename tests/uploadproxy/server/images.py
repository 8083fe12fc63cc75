"""Upload bodies made from real images (qemu-img), and checks of what landed on disk."""

from __future__ import annotations

import gzip
import lzma
import subprocess
from pathlib import Path

from tests import imagefactory


def reference(directory: Path, size: int = imagefactory.REFERENCE_SIZE) -> Path:
    return imagefactory.make_reference(directory, size).path


def body(reference: Path, kind: str) -> Path:
    """The file a user would upload: raw, qcow2, raw.gz or raw.xz of `reference`."""
    if kind == "raw":
        return reference
    if kind == "qcow2":
        return imagefactory.convert(reference, "qcow2")
    data = reference.read_bytes()
    if kind == "raw.gz":
        out = reference.with_name(reference.name + ".gz")
        out.write_bytes(gzip.compress(data, 1))
        return out
    if kind == "raw.xz":
        out = reference.with_name(reference.name + ".xz")
        out.write_bytes(lzma.compress(data, preset=0))
        return out
    raise ValueError(kind)


def same_disk(reference: Path, written: Path) -> bool:
    """qemu-img compare: the written disk reads as the reference (zeros beyond it allowed)."""
    result = subprocess.run(
        ["qemu-img", "compare", "-f", "raw", "-F", "raw", str(reference), str(written)],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode == 0
