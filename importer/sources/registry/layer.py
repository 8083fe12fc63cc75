"""Streaming the disk file out of a layer tarball, verifying the blob and refusing hostile entries.

A container disk is the one regular file under `/disk/`. Layers are visited from the top
(last) down; the first layer that holds a regular file under `disk/` wins, unless a higher
layer whited it out (`disk/.wh.NAME`, an opaque `disk/.wh..wh..opq`, or `.wh.disk`).
Within the layers we read, we refuse (UNSAFE_IMAGE): names that are absolute or climb with
`..` anywhere in the layer, and under `disk/` symlinks, hard links, devices, fifos, sparse
members, and more than one regular file. Layers below the winning one are not read.

The digest of the blob (sha256 of the bytes as served, i.e. compressed) is checked by
reading the blob to its end even after the disk file was delivered; a mismatch raises
DIGEST_MISMATCH after the last byte, and the pipeline must then discard what it wrote.

The tar is read through `importer.tarbounds` (ARCHIVE_REFUSED past a bound on header
sizes or on the member count, `REGISTRY_LAYER` unless the caller says otherwise).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, cast

import zstandard
from isal import igzip, igzip_lib

from cdicontract.reasons import Reason
from importer import tarbounds
from importer.errors import ImportFailure
from importer.streams import ChunkReader, tap

CHUNK = 1 << 20
DISK_DIR = "disk"
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


def unsafe(message: str) -> ImportFailure:
    return ImportFailure(Reason.UNSAFE_IMAGE, message)


def normalize(name: str) -> str:
    """Relative, normalized member path; raise UNSAFE_IMAGE if absolute or climbing."""
    if name.startswith("/") or "\x00" in name:
        raise unsafe(f"layer entry with an absolute path: {name[:200]!r}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise unsafe(f"layer entry climbs out of the image: {name[:200]!r}")
    return "/".join(parts)


@dataclass
class Visibility:
    """What higher layers hid from the ones below (whiteouts seen so far)."""

    hidden: set[str] = field(default_factory=set)
    disk_opaque: bool = False
    found: str | None = None
    """The disk file's path once a layer delivered it."""

    def hides(self, path: str) -> bool:
        if self.disk_opaque:
            return True
        parts = path.split("/")
        return any("/".join(parts[:i]) in self.hidden for i in range(1, len(parts) + 1))


@dataclass
class LayerScan:
    """What one layer says about /disk/: its regular files and its whiteouts."""

    files: list[tuple[str, int, int]] = field(default_factory=list)
    """(path, size, data offset in the uncompressed tar)"""
    whiteouts: set[str] = field(default_factory=set)
    opaque: bool = False


def classify(member: tarfile.TarInfo, scan: LayerScan) -> str | None:
    """Record a member in `scan`; returns its path when it is a regular file under disk/."""
    path = normalize(member.name)
    base = path.rsplit("/", 1)[-1]
    parent = path[: -len(base) - 1] if "/" in path else ""
    if base.startswith(WHITEOUT):
        if path == f"{DISK_DIR}/{OPAQUE}":
            scan.opaque = True
        elif base != OPAQUE:
            target = f"{parent}/{base[len(WHITEOUT) :]}" if parent else base[len(WHITEOUT) :]
            target = normalize(target)
            if target == DISK_DIR or target.startswith(f"{DISK_DIR}/"):
                scan.whiteouts.add(target)
        return None
    if not (path.startswith(f"{DISK_DIR}/")):
        return None
    if member.isdir():
        return None
    if member.issym() or member.islnk():
        raise unsafe(f"link in /disk/: {path[:200]!r}")
    if not member.isreg() or member.issparse():
        raise unsafe(f"special file in /disk/: {path[:200]!r}")
    return path


def visible_files(scan: LayerScan, visibility: Visibility) -> list[tuple[str, int, int]]:
    return [f for f in scan.files if not visibility.hides(f[0])]


def apply_whiteouts(scan: LayerScan, visibility: Visibility) -> None:
    """After a layer: its whiteouts and opacity hide lower layers' /disk/ content."""
    visibility.hidden |= scan.whiteouts
    visibility.disk_opaque = visibility.disk_opaque or scan.opaque


class DigestReader(ChunkReader):
    """Raw blob chunks as a file object, hashing and counting everything read."""

    def __init__(self, chunks: Iterable[bytes], digest: str, size: int) -> None:
        self._hash = hashlib.sha256()
        self._digest = digest
        self._size = size
        self.count = 0
        super().__init__(tap(chunks, self._hash.update, self._count))

    def _count(self, chunk: bytes) -> None:
        self.count += len(chunk)

    def drain_and_verify(self) -> None:
        while self.count <= self._size and self.read(CHUNK):
            pass
        if self.count != self._size:
            raise ImportFailure(
                Reason.DIGEST_MISMATCH,
                f"layer {self._digest} is {self.count} bytes, its manifest says {self._size}",
            )
        if "sha256:" + self._hash.hexdigest() != self._digest:
            raise ImportFailure(Reason.DIGEST_MISMATCH, f"layer does not match {self._digest}")


def decompressing(raw: io.RawIOBase, compression: str) -> IO[bytes]:
    """A bounded-read decompressor over the raw blob (flat memory even for a bomb)."""
    if compression == "gzip":
        gz = cast(IO[bytes], igzip.IGzipFile(fileobj=raw, mode="rb"))  # type: ignore[no-untyped-call]
        return gz
    if compression == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(
            cast(IO[bytes], raw), read_across_frames=True
        )
    return io.BufferedReader(raw, CHUNK)


# isal's inflate errors are IsalError, a class of its own (found by fuzz/layer).
_DECODE_ERRORS: tuple[type[Exception], ...] = (
    EOFError,
    zlib.error,
    zstandard.ZstdError,
    gzip.BadGzipFile,
    cast(type[Exception], igzip_lib.IsalError),
)
# tarfile raises plain ValueError for some malformed headers and OverflowError for a pax
# record length past ssize_t, not only TarError.
_TAR_ERRORS: tuple[type[Exception], ...] = (tarfile.TarError, ValueError, OverflowError)


def _digest_first(raw: DigestReader) -> None:
    """Before calling a layer corrupt, check its digest: a blob that is not the one the
    manifest names was tampered with or damaged in transit, and that is the precise reason
    (DIGEST_MISMATCH). Reads the rest of the blob (bounded by its declared size)."""
    raw.drain_and_verify()


def walk_layer(
    raw_chunks: Iterable[bytes],
    digest: str,
    size: int,
    compression: str,
    visibility: Visibility,
    *,
    skip: int = 0,
    bounds: tarbounds.TarBounds = tarbounds.REGISTRY_LAYER,
) -> Iterator[bytes]:
    """Stream one layer: yield the bytes (from `skip`) of its visible disk file, if any.

    Yields nothing when the layer holds no visible disk file; always reads the blob to its
    end and verifies it. Updates `visibility` with the layer's whiteouts. Raises
    UNSAFE_IMAGE for hostile entries or a second disk file (possibly after yielding).
    """
    raw = DigestReader(raw_chunks, digest, size)
    body = decompressing(raw, compression)
    scan = LayerScan()
    chosen: str | None = None
    try:
        tar = tarbounds.open_stream(body, bounds)
    except (*_TAR_ERRORS, *_DECODE_ERRORS) as exc:
        _digest_first(raw)
        raise ImportFailure(Reason.INVALID_IMAGE, "layer is not a tar archive") from exc
    with tar:
        try:
            for member in tar:
                path = classify(member, scan)
                if path is None:
                    continue
                scan.files.append((path, member.size, member.offset_data))
                if visibility.hides(path):
                    continue
                if chosen is not None:
                    raise unsafe("more than one regular file in /disk/")
                chosen = path
                visibility.found = path
                reader = tar.extractfile(member)
                assert reader is not None
                remaining_skip = skip
                while True:
                    block = reader.read(CHUNK)
                    if not block:
                        break
                    if remaining_skip:
                        cut = min(remaining_skip, len(block))
                        remaining_skip -= cut
                        block = block[cut:]
                        if not block:
                            continue
                    yield block
        except _TAR_ERRORS as exc:
            _digest_first(raw)
            raise ImportFailure(Reason.INVALID_IMAGE, f"corrupt layer tar: {exc}") from exc
        except _DECODE_ERRORS as exc:
            _digest_first(raw)
            raise ImportFailure(Reason.INVALID_IMAGE, "layer is not valid compressed data") from exc
    raw.drain_and_verify()
    apply_whiteouts(scan, visibility)
