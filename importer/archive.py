"""Safe extraction of a tar stream into a directory (`contentType: archive`).

The stream arrives already decompressed (the pipeline strips gz/xz/zstd first). We never
trust a member name: absolute paths, `..` components, device nodes, fifos, sparse members
and links that could lead outside the destination are refused with
`ImportFailure(UNSAFE_ARCHIVE)`. Link policy (documented choice):

- symbolic links are allowed only with a *relative* target whose lexical resolution stays
  inside the destination and that contains no `..` component at all. With downward-only
  targets no chain of links can climb out, whatever other links exist; and the extractor
  itself never writes through a link (every parent of a member must be a real directory
  it created), so a link cannot redirect a later member either;
- hard links are allowed only to a regular file extracted earlier from the same archive.
  That is checked on disk, in the private staging tree that only the extractor writes, so
  no set of names grows with the archive.

Everything is extracted into a private temporary directory inside `dest_dir` and moved
into place only when the whole archive was accepted, so a refused or truncated archive
leaves nothing behind. Ownership is not preserved (the pod is not root); permission bits
are, except setuid/setgid, which a volume of user data has no business carrying.

Memory does not grow with the number of members: the tar is read through
`importer.tarbounds` (header sizes and the member count are bounded, members are not
kept), directory modes wait in a journal on disk (`importer.dirmodes`), and the staging
tree is listed lazily when moved into place. The moved files are then synced (syncfs) so
that success is reported only for data that would survive a crash.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator

from cdicontract.reasons import Reason
from importer import leftovers, syncfs, tarbounds
from importer.dirmodes import DirModes
from importer.errors import ImportFailure
from importer.streams import ChunkReader

CHUNK = 1 << 20
_MODE_MASK = 0o1777  # permission bits and sticky; setuid/setgid dropped on purpose
# tarfile raises plain ValueError for some malformed headers (a GNU sparse 1.0 map without
# its newline) and OverflowError for a pax record length past ssize_t, not only TarError
# (both found by fuzz/archive and fuzz/layer).
_TAR_ERRORS = (tarfile.TarError, ValueError, OverflowError)


def _unsafe(message: str) -> ImportFailure:
    return ImportFailure(Reason.UNSAFE_ARCHIVE, message)


def safe_member_path(name: str) -> str:
    """The normalized relative path of a member, or raise if it is absolute or climbs."""
    if not name or "\x00" in name:
        raise _unsafe("archive member with an empty or invalid name")
    if name.startswith("/"):
        raise _unsafe(f"archive member with an absolute path: {name[:200]!r}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise _unsafe(f"archive member climbs out of the directory: {name[:200]!r}")
    return "/".join(parts)


def check_symlink_target(path: str, target: str) -> None:
    """Refuse a symlink target that is absolute, climbs, or is empty (see module docstring)."""
    if not target or target.startswith("/"):
        raise _unsafe(f"symbolic link {path[:200]!r} points to an absolute or empty target")
    if any(p == ".." for p in target.split("/")):
        raise _unsafe(f"symbolic link {path[:200]!r} points outside its directory")


def _ensure_real_dirs(root: str, rel_dir: str) -> None:
    """Create the parents of a member as real directories, refusing to pass through a link."""
    current = root
    for part in [p for p in rel_dir.split("/") if p]:
        current = os.path.join(current, part)
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            os.mkdir(current, 0o700)
            continue
        if not _is_dir(st.st_mode):
            raise _unsafe(f"archive member path goes through a non-directory: {part[:200]!r}")


def _is_dir(mode: int) -> bool:
    return stat.S_ISDIR(mode)


def _link_source(root: str, rel: str, linkname: str) -> str:
    """The path of the earlier regular file a hard link `rel` names, or raise.

    Only the extractor writes in `root` (a private staging tree), so a regular file found
    there through real directories was extracted from this archive.
    """
    target = safe_member_path(linkname)
    current = root
    parts = target.split("/") if target else []
    for i, part in enumerate(parts):
        current = os.path.join(current, part)
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            break
        if stat.S_ISREG(mode) and i == len(parts) - 1:
            return current
        if not _is_dir(mode):
            break
    raise _unsafe(f"hard link {rel[:200]!r} to a file not in the archive")


def _write_file(
    tar: tarfile.TarFile, member: tarfile.TarInfo, path: str, budget: int | None
) -> int:
    src = tar.extractfile(member)
    if src is None:  # pragma: no cover - regular members always have a reader
        raise _unsafe(f"unreadable archive member {member.name[:200]!r}")
    written = 0
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "wb") as out:
        while True:
            block = src.read(CHUNK)
            if not block:
                break
            written += len(block)
            if budget is not None and written > budget:
                raise ImportFailure(
                    Reason.IMAGE_TOO_LARGE, "archive content is larger than the target volume"
                )
            out.write(block)
    if written != member.size:
        raise ImportFailure(Reason.INVALID_IMAGE, "archive is truncated")
    return written


def _extract_into(
    chunks: Iterable[bytes],
    root: str,
    modes: DirModes,
    limit: int | None,
    bounds: tarbounds.TarBounds,
) -> int:
    total = 0
    try:
        tar = tarbounds.open_stream(ChunkReader(chunks), bounds)
    except _TAR_ERRORS as exc:
        raise ImportFailure(Reason.INVALID_IMAGE, f"content is not a tar archive: {exc}") from exc
    with tar:
        try:
            for member in tar:
                rel = safe_member_path(member.name)
                if rel == "":
                    continue  # the archive's own "./" entry
                parent = posixpath.dirname(rel)
                _ensure_real_dirs(root, parent)
                path = os.path.join(root, rel)
                if member.isdir():
                    try:
                        st = os.lstat(path)
                        if not _is_dir(st.st_mode):
                            raise _unsafe(f"directory {rel[:200]!r} replaces a non-directory")
                    except FileNotFoundError:
                        os.mkdir(path, 0o700)
                    modes.record(rel, member.mode & _MODE_MASK)
                    continue
                if os.path.lexists(path):
                    # A later member replacing an earlier one could swap a file for a link.
                    raise _unsafe(f"archive member {rel[:200]!r} appears twice")
                if member.issym():
                    check_symlink_target(rel, member.linkname)
                    os.symlink(member.linkname, path)
                elif member.islnk():
                    os.link(_link_source(root, rel, member.linkname), path, follow_symlinks=False)
                elif member.isreg() and not member.issparse():
                    budget = None if limit is None else limit - total
                    total += _write_file(tar, member, path, budget)
                    os.chmod(path, member.mode & _MODE_MASK)
                    os.utime(path, (member.mtime, member.mtime))
                else:
                    kind = "sparse file" if member.issparse() else "device node or fifo"
                    raise _unsafe(f"archive member {rel[:200]!r} is a {kind}")
        except _TAR_ERRORS as exc:
            raise ImportFailure(Reason.INVALID_IMAGE, f"corrupt tar archive: {exc}") from exc
    # Directory modes last, deepest first, so a read-only directory did not block its content.
    modes.apply(root)
    return total


def _drain(directory: str) -> Iterator[str]:
    """The names in `directory`, listed lazily, while the caller moves each one out.

    Never the whole listing at once (an archive can put a million files in one
    directory). Entries that were not returned yet are not affected by moving returned
    ones away; the second pass only proves the directory is empty.
    """
    while True:
        listed = False
        with os.scandir(directory) as entries:
            for entry in entries:
                listed = True
                yield entry.name
        if not listed:
            return


def _move_into_place(src_root: str, dest_root: str) -> None:
    """Move extracted entries into dest, merging into existing directories (e.g. lost+found)."""
    for name in _drain(src_root):
        src = os.path.join(src_root, name)
        dst = os.path.join(dest_root, name)
        src_is_dir = os.path.isdir(src) and not os.path.islink(src)
        if src_is_dir and os.path.isdir(dst) and not os.path.islink(dst):
            mode = os.lstat(src).st_mode
            os.chmod(src, 0o700)
            _move_into_place(src, dst)
            os.rmdir(src)
            os.chmod(dst, mode & _MODE_MASK)
            continue
        if os.path.isdir(dst) and not os.path.islink(dst):
            shutil.rmtree(dst)
        os.replace(src, dst)


def _os_failure(exc: OSError) -> ImportFailure:
    """An OSError as a failure whose message holds no path.

    Member names come from the archive and may be a MiB long (within tarbounds' bound on
    a header); the CLI logs and redacts messages, and redact's URL pattern is quadratic
    in a long run of letters: an OSError naming such a path cost hours of CPU.
    """
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ImportFailure(Reason.NO_SPACE, "no space left extracting archive")
    if exc.errno == errno.ENAMETOOLONG:
        return ImportFailure(
            Reason.ARCHIVE_REFUSED,
            "archive refused: a member name is longer than the volume's file system allows",
        )
    return ImportFailure(Reason.INTERNAL, f"extracting the archive failed: {exc.strerror}")


def extract_tar(
    chunks: Iterable[bytes],
    dest_dir: str,
    *,
    limit: int | None = None,
    bounds: tarbounds.TarBounds = tarbounds.ARCHIVE_CONTENT,
    sync: Callable[[str], None] = syncfs.sync_filesystem,
    before_commit: Callable[[], None] | None = None,
) -> int:
    """Extract a (decompressed) tar stream into `dest_dir`; returns the bytes of file content.

    Raises ImportFailure: UNSAFE_ARCHIVE for hostile members, ARCHIVE_REFUSED past one of
    `bounds` or for a name the file system cannot hold, IMAGE_TOO_LARGE past `limit`,
    INVALID_IMAGE for a corrupt or truncated tar, NO_SPACE when the volume fills up,
    INTERNAL for other I/O errors. On any of these `dest_dir` is left as it was. Once
    the files are in place, `sync` makes them durable (syncfs on the volume).

    `before_commit` runs once the tar is read and before anything moves into `dest_dir`
    (the caller reads the stream's end and verifies its checksum there): what it raises
    also leaves `dest_dir` as it was.
    """
    staging = tempfile.mkdtemp(prefix=leftovers.EXTRACT_PREFIX, dir=dest_dir)
    tree = os.path.join(staging, "tree")
    journal = os.path.join(staging, "dirmodes")
    try:
        try:
            os.mkdir(tree, 0o700)
            os.mkdir(journal, 0o700)
            total = _extract_into(chunks, tree, DirModes(journal), limit, bounds)
            if before_commit is not None:
                before_commit()
            _move_into_place(tree, dest_dir)
            sync(dest_dir)
        except OSError as exc:
            raise _os_failure(exc) from exc
        return total
    finally:
        # Never hide the failure being raised; what stays is swept by the next run.
        with contextlib.suppress(OSError):
            leftovers.remove_tree(staging)
