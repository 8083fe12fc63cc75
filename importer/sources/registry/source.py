"""The registry Source: resolves the image, finds its disk file, streams or exposes it.

`info()` resolves the manifest (index -> our platform). When the layers from the top down
to the one holding the disk are uncompressed and the store serves ranges, it reads only
their tar headers (ranged reads) to learn the disk's size and offset, which also enables
`random_reads()` (qemu-img converts without scratch). Otherwise the size is unknown until
streaming and `scratch_reason` says why random access is impossible.

On the ranged path every layer read is a `PinnedObject` over the whole blob, checked
against the blob's digest: the tar headers we walked, the disk bytes qemu-img read and the
rest of the blob are one verified set of bytes, and `Window.finish` (called by the
pipeline before it commits) reads what was not read and fails with DIGEST_MISMATCH if the
blob is not the one the manifest names.

`open()` always streams whole blobs (so their digests are verified) from the top layer
down; see `layer.py` for the rules about /disk/ and the entries we refuse. Unsafe images
are refused with UNSAFE_IMAGE (the registry counterpart of archive's UNSAFE_ARCHIVE).
"""

from __future__ import annotations

import io
import platform
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from cdicontract.reasons import Reason
from importer import tarbounds
from importer.checksum import DigestCheck
from importer.errors import ImportFailure
from importer.sources.base import SourceCapabilities, SourceInfo
from importer.sources.pinned import BLOCK, PinnedObject, Window
from importer.sources.registry.client import ClientOptions, RegistryClient
from importer.sources.registry.layer import (
    LayerScan,
    Visibility,
    apply_whiteouts,
    classify,
    unsafe,
    visible_files,
    walk_layer,
)
from importer.sources.registry.manifest import (
    LAYER_COMPRESSION,
    MAX_MANIFEST_BYTES,
    Descriptor,
    Index,
    Manifest,
    choose_platform,
    parse_manifest,
)
from importer.sources.registry.ociarchive import OciArchive
from importer.sources.registry.reference import DockerReference, parse_reference

_ARCH = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "armv7l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
}


def node_architecture(machine: str | None = None) -> str:
    """The node's architecture in OCI terms (x86_64 -> amd64, aarch64 -> arm64)."""
    m = machine if machine is not None else platform.machine()
    return _ARCH.get(m, m)


@dataclass(frozen=True)
class RegistryOptions:
    username: str | None = None
    password: str | None = None
    ca_bundle: str | None = None
    insecure_tls: bool = False
    insecure_registries: frozenset[str] = frozenset()
    architecture: str = node_architecture()
    max_manifest_bytes: int = MAX_MANIFEST_BYTES
    range_block: int = BLOCK
    deny_local_addresses: bool = False
    layer_bounds: tarbounds.TarBounds = tarbounds.REGISTRY_LAYER


class BlobStore(Protocol):
    @property
    def description(self) -> str: ...

    def manifest(self, reference: str, max_bytes: int) -> tuple[bytes, str | None, str | None]: ...

    def open_blob(self, digest: str, start: int = 0, end: int | None = None) -> Iterator[bytes]: ...

    def serves_ranges(self, digest: str) -> bool: ...

    def close(self) -> None: ...


class RangedFile(io.RawIOBase):
    """A seekable read-only view of a pinned blob, for walking tar headers.

    tarfile in seekable mode reads a 512-byte header and seeks over the data, so only the
    headers (and a small read-ahead) cross the network.
    """

    READ_AHEAD = 64 << 10

    def __init__(self, blob: PinnedObject) -> None:
        self._blob, self._size = blob, blob.size
        self._pos = 0
        self._buf_start = 0
        self._buf = b""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._pos >= self._size or len(b) == 0:
            return 0
        rel = self._pos - self._buf_start
        if not (0 <= rel < len(self._buf)):
            want = min(self._size - self._pos, max(len(b), self.READ_AHEAD))
            self._buf = self._blob.read_at(self._pos, want)
            self._buf_start, rel = self._pos, 0
            if not self._buf:
                return 0
        n = min(len(b), len(self._buf) - rel)
        b[:n] = self._buf[rel : rel + n]
        self._pos += n
        return n


@dataclass(frozen=True)
class DiskLocation:
    layer: Descriptor
    path: str
    size: int
    data_offset: int


class _Stream:
    def __init__(self, gen: Iterator[bytes]) -> None:
        self._gen = gen

    def __iter__(self) -> Iterator[bytes]:
        return self._gen

    def close(self) -> None:
        close = getattr(self._gen, "close", None)
        if close is not None:
            close()


class RegistrySource:
    """A container-disk image as a Source: its bytes are the one regular file under /disk/."""

    def __init__(self, url: str, options: RegistryOptions) -> None:
        self._options = options
        ref = parse_reference(url)
        self._store: BlobStore
        if isinstance(ref, DockerReference):
            self._reference = ref.reference
            self._pinned = ref.digest
            host = ref.registry
            self._store = RegistryClient(
                ref,
                ClientOptions(
                    username=options.username,
                    password=options.password,
                    ca_bundle=options.ca_bundle,
                    insecure_tls=options.insecure_tls,
                    plain_http=host in options.insecure_registries,
                    deny_local_addresses=options.deny_local_addresses,
                ),
            )
        else:
            self._reference = ref.ref or ""
            self._pinned = None
            self._store = OciArchive(ref.path, ref.ref)
        self._manifest: Manifest | None = None
        self._manifest_digest: str | None = None
        self._location: DiskLocation | None = None
        self._blobs: list[PinnedObject] = []
        self._window: Window | None = None
        self.scratch_reason: str | None = None

    # -- resolution ---------------------------------------------------------------------

    def _resolve(self) -> Manifest:
        if self._manifest is not None:
            return self._manifest
        cap = self._options.max_manifest_bytes
        body, ctype, served_digest = self._store.manifest(self._reference, cap)
        expected = self._pinned or served_digest
        parsed = parse_manifest(body, ctype, expected, cap)
        digest = expected
        if isinstance(parsed, Index):
            entry = choose_platform(parsed, self._options.architecture)
            if entry.size > cap:
                raise ImportFailure(Reason.MANIFEST_INVALID, "manifest larger than the cap")
            body, ctype, _ = self._store.manifest(entry.digest, cap)
            if len(body) != entry.size:
                raise ImportFailure(Reason.MANIFEST_INVALID, "manifest size differs from index")
            parsed = parse_manifest(body, ctype or entry.media_type, entry.digest, cap)
            digest = entry.digest
            if isinstance(parsed, Index):
                raise ImportFailure(Reason.MANIFEST_INVALID, "nested image index")
        if parsed.config.size > cap:
            raise ImportFailure(Reason.MANIFEST_INVALID, "image config larger than the cap")
        self._manifest, self._manifest_digest = parsed, digest
        return parsed

    def _scan_headers(self, manifest: Manifest) -> DiskLocation | None:
        """Find the disk by tar headers only, while the layers are uncompressed and ranged."""
        visibility = Visibility()
        for layer in reversed(manifest.layers):
            compression = LAYER_COMPRESSION[layer.media_type]
            if compression != "none":
                self.scratch_reason = f"layer is {compression}-compressed"
                return None
            if not self._store.serves_ranges(layer.digest):
                self.scratch_reason = "registry does not serve byte ranges"
                return None
            scan = LayerScan()
            blob = self._pinned_blob(layer)
            try:
                with tarbounds.open_seekable(RangedFile(blob), self._options.layer_bounds) as tar:
                    for member in tar:
                        path = classify(member, scan)
                        if path is not None:
                            scan.files.append((path, member.size, member.offset_data))
            except tarfile.TarError as exc:
                raise ImportFailure(Reason.INVALID_IMAGE, "layer is not a tar archive") from exc
            files = visible_files(scan, visibility)
            if len(files) > 1:
                raise unsafe("more than one regular file in /disk/")
            if files:
                path, size, offset = files[0]
                return DiskLocation(layer, path, size, offset)
            apply_whiteouts(scan, visibility)
            if visibility.disk_opaque or "disk" in visibility.hidden:
                break
        raise unsafe("image has no regular file under /disk/")

    def _pinned_blob(self, layer: Descriptor) -> PinnedObject:
        """The layer's blob as one pinned, digest-checked object (see the module docstring)."""
        store, digest = self._store, layer.digest

        def fetch(start: int, end: int) -> Iterator[bytes]:
            return store.open_blob(digest, start, end)

        blob = PinnedObject(
            fetch,
            layer.size,
            description=f"layer {digest[:19]}",
            block=self._options.range_block,
        )
        blob.add_verifier(DigestCheck(digest, Reason.DIGEST_MISMATCH, f"layer {digest[:19]}"))
        self._blobs.append(blob)
        return blob

    def info(self) -> SourceInfo:
        manifest = self._resolve()
        if self._location is None:
            self._location = self._scan_headers(manifest)
        loc = self._location
        return SourceInfo(
            size=loc.size if loc else None,
            supports_ranges=True,
            validator=self._manifest_digest,
            description=self._store.description,
        )

    # -- data ---------------------------------------------------------------------------

    def _layers_stream(self, skip: int) -> Iterator[bytes]:
        manifest = self._resolve()
        visibility = Visibility()
        for layer in reversed(manifest.layers):
            yield from walk_layer(
                self._store.open_blob(layer.digest),
                layer.digest,
                layer.size,
                LAYER_COMPRESSION[layer.media_type],
                visibility,
                skip=skip,
                bounds=self._options.layer_bounds,
            )
            if visibility.found is not None:
                return
            if visibility.disk_opaque or "disk" in visibility.hidden:
                break
        raise unsafe("image has no regular file under /disk/")

    def open(self, offset: int = 0) -> _Stream:
        """Stream the disk file; offset > 0 re-reads the blob and skips (digests need all)."""
        return _Stream(self._layers_stream(offset))

    def capabilities(self) -> SourceCapabilities:
        if self._location is None:
            self.info()
        if self._location is not None:
            return SourceCapabilities(restartable=True, random_access=True)
        return SourceCapabilities(
            restartable=True,
            random_access=False,
            scratch_reason=self.scratch_reason or "the disk cannot be read at random offsets",
        )

    def random_reads(self) -> Window | None:
        if self._location is None:
            self.info()
        loc = self._location
        if loc is None:
            return None
        if self._window is None:
            disk = self._blobs[-1]  # the scan stopped at the layer that holds the disk
            self._window = Window(
                disk, loc.data_offset, loc.size, name="disk", companions=tuple(self._blobs[:-1])
            )
        return self._window

    def close(self) -> None:
        for blob in self._blobs:
            blob.close()
        self._store.close()
