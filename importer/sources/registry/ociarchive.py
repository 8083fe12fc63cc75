"""A local OCI archive (`oci-archive:///path/image.tar[:ref]`): an OCI layout inside a tar.

Blobs are read in place from the archive file (tar member offsets), never unpacked;
random access to an uncompressed layer is ranged reads of the blob, like a registry's.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator

from cdicontract.reasons import Reason
from importer.errors import ImportFailure
from importer.sources.registry.layer import normalize
from importer.sources.registry.manifest import MANIFEST_TYPES, OCI_INDEX

CHUNK = 1 << 20
REF_ANNOTATION = "org.opencontainers.image.ref.name"


class OciArchive:
    def __init__(self, path: str, ref: str | None) -> None:
        self.path = path
        self.ref = ref
        self._members: dict[str, tuple[int, int]] = {}
        try:
            with tarfile.open(path, mode="r:") as tar:
                for m in tar:
                    if m.isreg():
                        self._members[normalize(m.name)] = (m.offset_data, m.size)
        except FileNotFoundError as exc:
            raise ImportFailure(Reason.SOURCE_NOT_FOUND, f"no OCI archive at {path}") from exc
        except (tarfile.TarError, OSError) as exc:
            raise ImportFailure(Reason.INVALID_IMAGE, f"{path} is not an OCI archive") from exc

    @property
    def description(self) -> str:
        return f"oci-archive://{self.path}" + (f":{self.ref}" if self.ref else "")

    def _member(self, name: str, what: str) -> tuple[int, int]:
        try:
            return self._members[name]
        except KeyError as exc:
            raise ImportFailure(Reason.SOURCE_NOT_FOUND, f"{what} missing from archive") from exc

    def _read_small(self, name: str, max_bytes: int, what: str) -> bytes:
        offset, size = self._member(name, what)
        if size > max_bytes:
            raise ImportFailure(Reason.MANIFEST_INVALID, f"{what} larger than {max_bytes}")
        with open(self.path, "rb") as f:
            f.seek(offset)
            return f.read(size)

    @staticmethod
    def _blob_name(digest: str) -> str:
        algo, _, hexd = digest.partition(":")
        return f"blobs/{algo}/{hexd}"

    def manifest(self, reference: str, max_bytes: int) -> tuple[bytes, str | None, str | None]:
        if reference.startswith("sha256:"):
            return self._read_small(self._blob_name(reference), max_bytes, "manifest"), None, None
        index = json.loads(self._read_small("index.json", max_bytes, "index.json"))
        entries = index.get("manifests") if isinstance(index, dict) else None
        if not isinstance(entries, list):
            raise ImportFailure(Reason.MANIFEST_INVALID, "index.json has no manifests")
        wanted = self.ref
        chosen = [
            e
            for e in entries
            if isinstance(e, dict)
            and (wanted is None or (e.get("annotations") or {}).get(REF_ANNOTATION) == wanted)
        ]
        if wanted is None and len(chosen) > 1:
            raise ImportFailure(Reason.INVALID_CONFIG, "archive holds several images: name one")
        if not chosen:
            raise ImportFailure(Reason.SOURCE_NOT_FOUND, f"no image {wanted!r} in the archive")
        entry = chosen[0]
        digest = str(entry.get("digest", ""))
        media_type = str(entry.get("mediaType") or "")
        if media_type not in (*MANIFEST_TYPES, OCI_INDEX, ""):
            raise ImportFailure(Reason.MANIFEST_INVALID, "unsupported manifest media type")
        body = self._read_small(self._blob_name(digest), max_bytes, "manifest")
        return body, media_type or None, digest

    def open_blob(self, digest: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        offset, size = self._member(self._blob_name(digest), f"blob {digest[:19]}")
        stop = size if end is None else min(size, end + 1)
        with open(self.path, "rb") as f:
            f.seek(offset + start)
            remaining = stop - start
            while remaining > 0:
                block = f.read(min(CHUNK, remaining))
                if not block:
                    break
                remaining -= len(block)
                yield block

    def serves_ranges(self, digest: str) -> bool:
        return True

    def close(self) -> None:
        pass
