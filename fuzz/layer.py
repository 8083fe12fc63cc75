"""Target `layer`: `walk_layer` over a registry layer blob (plain, gzip or zstd tar).

The input is the blob as served; its compression is the one its magic announces (as the
manifest's media type would), and its digest and size are the true ones, so parsing goes
past the digest. The blob is walked twice with one `Visibility`, as two stacked layers
whose upper one's whiteouts hide the lower one's files.

Invariant: the disk file is delivered or the layer is refused with ImportFailure, never
DIGEST_MISMATCH (the digest is right), never tarfile's or a decoder's own exceptions; an
uncompressed blob never yields more bytes than it holds.
"""

from __future__ import annotations

import hashlib
import sys

from cdicontract.reasons import Reason
from fuzz import harness
from fuzz.chunks import chunked
from fuzz.harness import require
from importer.errors import ImportFailure
from importer.sources.registry.layer import Visibility, walk_layer

SKIP = 7
"""The second walk resumes mid-file, as a retried layer download does."""


def compression_of(blob: bytes) -> str:
    if blob.startswith(b"\x1f\x8b"):
        return "gzip"
    if blob.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    return "none"


def _walk(blob: bytes, compression: str, visibility: Visibility, skip: int) -> bool:
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    delivered = 0
    try:
        for block in walk_layer(
            chunked(blob), digest, len(blob), compression, visibility, skip=skip
        ):
            require(isinstance(block, bytes) and len(block) > 0, "empty or non-bytes block")
            delivered += len(block)
    except ImportFailure as failure:
        require(failure.reason is not Reason.DIGEST_MISMATCH, f"digest refused: {failure}")
        return False
    if compression == "none":
        require(delivered <= len(blob), f"delivered {delivered} bytes of a {len(blob)} blob")
    return True


def one_input(data: bytes) -> None:
    compression = compression_of(data)
    visibility = Visibility()
    if _walk(data, compression, visibility, 0):
        _walk(data, compression, visibility, SKIP)


TARGET = harness.Target(
    name="layer",
    one_input=one_input,
    instrument=("importer.sources.registry.layer", "importer.streams", "tarfile"),
    max_len=64 * 1024,
)

if __name__ == "__main__":
    harness.run(TARGET, sys.argv[1:])
