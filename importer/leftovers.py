"""What a killed run leaves on the volume, and removing it when the next run starts.

An importer killed with SIGKILL (OOM, node drain, a deleted pod past its grace period)
runs no cleanup, and its temporary files stay on the volume, where they use space the
next run needs (a `.part` file can be most of the volume) or get in its way (the O_DIRECT
probe is created with O_EXCL, and in a pod our pid is the same every run). These are:

- `<dest>.part`: the file target's image being written (importer.targets.file);
- `.cdi-scratch-XXXXXXXX.img`: the scratch copy (importer.pipeline), in the scratch
  directory or next to the destination;
- `.cdi-extract-XXXXXXXX/`: the archive extractor's staging tree (importer.archive),
  possibly with read-only directories inside;
- `.odirect-<pid>`: qemu's O_DIRECT probe (importer.qemu).

`leftover_kind` decides by name alone (pure), `sweep` removes what it matched, only when
it has the type we create (a regular file, or a real directory for staging), never
following a symlink, and logs each removal. One importer owns a volume at a time, so
anything of ours found at the start of a run is from a dead one.
"""

from __future__ import annotations

import enum
import logging
import os
import re
import shutil
import stat
from collections.abc import Iterable

from importer.targets import Target

log = logging.getLogger(__name__)

PART_SUFFIX = ".part"
SCRATCH_PREFIX = ".cdi-scratch-"
SCRATCH_SUFFIX = ".img"
EXTRACT_PREFIX = ".cdi-extract-"
ODIRECT_PREFIX = ".odirect-"

# tempfile's random part is 8 characters of [a-z0-9_]; any length is accepted so that a
# change there does not silently turn the sweep off.
_SCRATCH = re.compile(rf"{re.escape(SCRATCH_PREFIX)}[A-Za-z0-9_]+{re.escape(SCRATCH_SUFFIX)}")
_EXTRACT = re.compile(rf"{re.escape(EXTRACT_PREFIX)}[A-Za-z0-9_]+")
_ODIRECT = re.compile(rf"{re.escape(ODIRECT_PREFIX)}[0-9]+")


class Kind(enum.Enum):
    FILE = "file"
    TREE = "directory"


def leftover_kind(name: str, dest_name: str | None) -> Kind | None:
    """Whether `name` in a directory we write to is ours, and what it must be to be removed.

    `dest_name` is the destination file's name when that directory holds it (its `.part`
    is ours, no other `.part` is).
    """
    if dest_name is not None and name == dest_name + PART_SUFFIX:
        return Kind.FILE
    if _SCRATCH.fullmatch(name) or _ODIRECT.fullmatch(name):
        return Kind.FILE
    if _EXTRACT.fullmatch(name):
        return Kind.TREE
    return None


def places(
    dest: str, scratch_dir: str, *, dest_is_dir: bool, dest_is_block: bool
) -> list[tuple[str, str | None]]:
    """The directories a run writes temporary files to, each with the destination's name
    if it holds the destination file: the destination directory (archive content), the
    one holding the destination file, and the scratch directory. A block device's
    directory (/dev) is none of ours."""
    out: list[tuple[str, str | None]] = []
    if dest_is_dir:
        out.append((os.path.abspath(dest), None))
    elif not dest_is_block:
        out.append((os.path.dirname(os.path.abspath(dest)), os.path.basename(dest)))
    scratch = os.path.abspath(scratch_dir)
    if all(scratch != directory for directory, _ in out):
        out.append((scratch, None))
    return out


def sweep(where: Iterable[tuple[str, str | None]]) -> list[str]:
    """Remove the leftovers in each (directory, destination name); returns their paths.

    Never fails the run: what cannot be removed is logged and left.
    """
    removed: list[str] = []
    for directory, dest_name in where:
        try:
            with os.scandir(directory) as entries:
                found = [
                    (entry.path, kind)
                    for entry in entries
                    if (kind := leftover_kind(entry.name, dest_name)) is not None
                ]
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            log.warning("cannot look for leftovers dir=%s error=%s", directory, exc.strerror)
            continue
        for path, kind in found:
            try:
                if _remove(path, kind):
                    removed.append(path)
            except OSError as exc:
                log.warning("cannot remove leftover path=%s error=%s", path, exc.strerror)
    return removed


def _remove(path: str, kind: Kind) -> bool:
    st = os.lstat(path)
    if kind is Kind.FILE and stat.S_ISREG(st.st_mode):
        os.unlink(path)
    elif kind is Kind.TREE and stat.S_ISDIR(st.st_mode):
        remove_tree(path)
    else:
        log.info("left alone: named like ours, not of our making path=%s", path)
        return False
    # What it held on the volume (a .part file is mostly holes); not walked for a tree.
    held = f" allocated={st.st_blocks * 512}" if kind is Kind.FILE else ""
    log.info("removed leftover of an earlier run path=%s kind=%s%s", path, kind.value, held)
    return True


def sweep_before_run(dest: str, target: Target | None, scratch_dir: str) -> list[str]:
    """`sweep` where one run writes; `target` is None for archive content (`dest` is then
    the directory the archive goes into)."""
    is_block = target is not None and target.is_block
    return sweep(places(dest, scratch_dir, dest_is_dir=target is None, dest_is_block=is_block))


def remove_tree(path: str) -> None:
    """Remove a tree of ours even where it holds read-only directories; never follows links.

    The staging tree of an archive gets the archive's directory modes (0o500, 0o000...)
    before it is emptied, and rmtree cannot list or empty such a directory.
    """
    try:
        top = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(top.st_mode):
        os.unlink(path)
        return
    os.chmod(path, 0o700)
    for dirpath, dirnames, _ in os.walk(path):  # top-down: a directory is opened for
        for d in dirnames:  # reading only after we gave ourselves the right to
            full = os.path.join(dirpath, d)
            if not os.path.islink(full):
                os.chmod(full, 0o700)
    shutil.rmtree(path)
