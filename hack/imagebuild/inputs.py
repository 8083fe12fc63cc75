"""An image's cache key: a digest of the files it is built from (pure but for reading)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path

# Never part of an image (.containerignore drops them), so never part of a key.
_SKIPPED_DIRS = {"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
_SKIPPED_SUFFIXES = (".pyc", ".pyo")


def _files(root: Path, relative: str) -> Iterator[Path]:
    path = root / relative
    if path.is_file():
        yield path
        return
    if not path.is_dir():
        raise FileNotFoundError(f"build input {relative} is missing under {root}")
    for child in sorted(path.rglob("*")):
        parts = set(child.relative_to(root).parts)
        if parts & _SKIPPED_DIRS or child.name.endswith(_SKIPPED_SUFFIXES):
            continue
        if child.is_file():
            yield child


def key(root: Path, relatives: Iterable[str], extra: Iterable[str] = ()) -> str:
    """sha256 over each input file's path, mode and content, then the extra strings (build
    arguments, the base's key), so that any change to what goes in changes the key."""
    digest = hashlib.sha256()
    for relative in relatives:
        for path in _files(root, relative):
            rel = path.relative_to(root).as_posix()
            executable = "x" if path.stat().st_mode & 0o111 else "-"
            digest.update(f"file {rel} {executable}\n".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    for item in extra:
        digest.update(f"extra {item}\n".encode())
    return digest.hexdigest()
