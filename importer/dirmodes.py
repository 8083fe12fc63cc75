"""The permissions of extracted directories, applied at the end, deepest first, kept on disk.

A directory's mode from the archive is applied only after everything was extracted (a
read-only directory must not block its own content), and children before parents (a
parent without search permission blocks chmod below it). Holding the pending modes in a
dict costs memory per directory, which an archive of a million directories turns into
a lot; instead each is appended to a journal file per depth, in the extractor's private
staging area, and the files are replayed deepest first. Within one depth the order does
not matter (no directory blocks another of the same depth), except that a directory
listed twice gets its last mode, as the file is read in order.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

_SEP = b"\0"  # member names cannot hold NUL; they can hold newlines
_READ = 1 << 20


class DirModes:
    def __init__(self, journal_dir: str) -> None:
        """`journal_dir` must be private to the extractor and empty."""
        self._dir = journal_dir
        self._deepest = -1

    def _journal(self, depth: int) -> str:
        return os.path.join(self._dir, f"depth-{depth}")

    def record(self, rel: str, mode: int) -> None:
        """Remember that directory `rel` (relative, normalized) gets `mode` in the end."""
        depth = rel.count("/")
        self._deepest = max(self._deepest, depth)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW
        fd = os.open(self._journal(depth), flags, 0o600)
        try:
            os.write(fd, b"%o " % mode + os.fsencode(rel) + _SEP)
        finally:
            os.close(fd)

    def apply(self, root: str) -> None:
        """chmod every recorded directory under `root`, the deepest first."""
        for depth in range(self._deepest, -1, -1):
            path = self._journal(depth)
            if not os.path.exists(path):
                continue
            for record in _records(path):
                mode, _, rel = record.partition(b" ")
                os.chmod(os.path.join(root, os.fsdecode(rel)), int(mode, 8))


def _records(path: str) -> Iterator[bytes]:
    """The NUL-terminated records of a journal, read in blocks (never the whole file)."""
    with open(path, "rb") as f:
        rest = b""
        while block := f.read(_READ):
            *whole, rest = (rest + block).split(_SEP)
            yield from whole
