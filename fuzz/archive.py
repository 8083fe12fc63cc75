"""Target `archive`: `importer.archive.extract_tar` of a (decompressed) tar stream.

Invariant: the archive is extracted or refused with ImportFailure (never OSError,
UnicodeError, OverflowError, ...); a refused archive leaves the destination as it was
(empty here) and nothing anywhere else; an extracted one has no symlink that resolves
outside the destination, no setuid/setgid bit, and the returned byte count is the size of
the regular files written. The destination starts with an empty lost+found/, as a
fresh volume does, so merging into existing directories is fuzzed too.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import stat
import sys
import tempfile

from fuzz import harness
from fuzz.chunks import chunked
from fuzz.harness import require
from importer.archive import extract_tar
from importer.errors import ImportFailure

LIMIT = 32 * 1024
"""Small enough that the fuzzer reaches IMAGE_TOO_LARGE with inputs of a few blocks."""

PREFIX = "cdi-fuzz-archive-"
LOST_FOUND = "lost+found"


@functools.cache
def _scratch() -> str:
    """One private directory per process (tmpfs when there is one: this runs 1000s/s).

    A fuzzer that crashes or times out is ended by libFuzzer without atexit handlers, so
    the directories of processes that are gone are swept here instead.
    """
    base = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    for name in os.listdir(base):
        pid = name.removeprefix(PREFIX)
        if name.startswith(PREFIX) and pid.isdigit() and not _alive(int(pid)):
            _wipe(os.path.join(base, name))
    root = os.path.join(base, f"{PREFIX}{os.getpid()}")
    os.makedirs(root, mode=0o700, exist_ok=True)
    atexit.register(_wipe, root)
    return root


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wipe(path: str) -> None:
    """rmtree that also gets through the read-only directories an archive may create."""
    if not os.path.lexists(path):
        return
    os.chmod(path, 0o700)
    for dirpath, dirnames, _ in os.walk(path):
        for name in dirnames:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                os.chmod(full, 0o700)
    shutil.rmtree(path)


def _check_extracted(dest: str, total: int) -> None:
    real_dest = os.path.realpath(dest)
    written, inodes = 0, set()
    for dirpath, dirnames, filenames in os.walk(dest):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            require(not st.st_mode & (stat.S_ISUID | stat.S_ISGID), f"setid bit on {full}")
            if stat.S_ISLNK(st.st_mode):
                resolved = os.path.realpath(full)
                inside = resolved == real_dest or resolved.startswith(real_dest + os.sep)
                require(inside, f"symlink {full} resolves outside: {os.readlink(full)!r}")
            elif stat.S_ISREG(st.st_mode) and st.st_ino not in inodes:
                inodes.add(st.st_ino)
                written += st.st_size
            else:
                require(stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode), f"{full} kind")
    require(written == total, f"extract_tar returned {total}, files hold {written}")


def one_input(data: bytes) -> None:
    root = _scratch()
    dest = os.path.join(root, "dest")
    os.mkdir(dest)
    # A fresh ext4 volume is not empty: extraction merges into what is there.
    os.mkdir(os.path.join(dest, LOST_FOUND))
    try:
        try:
            total = extract_tar(chunked(data), dest, limit=LIMIT)
        except ImportFailure:
            left = [(d, sorted(n + f)) for d, n, f in os.walk(dest)]
            require(
                left == [(dest, [LOST_FOUND]), (os.path.join(dest, LOST_FOUND), [])],
                f"a refused archive changed the destination: {left}",
            )
        else:
            _check_extracted(dest, total)
        require(os.listdir(root) == ["dest"], f"files outside dest: {os.listdir(root)}")
    finally:
        for name in os.listdir(root):
            path = os.path.join(root, name)
            if os.path.isdir(path) and not os.path.islink(path):
                _wipe(path)
            else:
                os.unlink(path)


TARGET = harness.Target(
    name="archive",
    one_input=one_input,
    instrument=("importer.archive", "importer.streams", "tarfile"),
    max_len=64 * 1024,
)

if __name__ == "__main__":
    harness.run(TARGET, sys.argv[1:])
