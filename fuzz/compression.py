"""Target `compression`: `detect_compression` and `decompress` with a small output limit.

The input is the compressed stream; it is decoded as the compression its magic announces
(as the pipeline does), twice: as one chunk and cut into odd chunks, gzip also with the
zlib fallback. Invariant: `detect_compression` never raises; `decompress` yields
non-empty chunks of at most OUTPUT_CHUNK bytes, never more than `limit` in total, and ends
or fails with ImportFailure (a bomb with IMAGE_TOO_LARGE), never zlib.error, LZMAError,
EOFError, ZstdError or an isal error; both chunkings (and both gzip decoders) give the
same bytes or both fail.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable

from fuzz import harness
from fuzz.chunks import chunked
from fuzz.harness import require
from importer.compression import OUTPUT_CHUNK, Compression, decompress, detect_compression
from importer.errors import ImportFailure

LIMIT = 256 * 1024
"""Bombs must stop here; a 16 KiB input can still decode to far more."""
SMALL_CHUNK = 13
ZLIB_STRICTER = ("unknown header flags set",)
"""Where the zlib fallback refuses what isal (and Python's gzip module) decode: reserved
FLG bits, which RFC 1952 says must be zero. Known and harmless; see
fuzz/regressions/compression/gzip-reserved-flag-bits.gz."""


def _decode(chunks: Iterable[bytes], compression: Compression, prefer_isal: bool) -> str:
    """The sha256 of the output, or the reason it failed."""
    digest, total = hashlib.sha256(), 0
    out = decompress(chunks, compression, limit=LIMIT, prefer_isal=prefer_isal)
    try:
        for chunk in out:
            require(0 < len(chunk) <= OUTPUT_CHUNK, f"chunk of {len(chunk)} bytes")
            total += len(chunk)
            require(total <= LIMIT, f"{total} bytes out past the limit")
            digest.update(chunk)
    except ImportFailure as failure:
        return f"failed: {failure.reason}: {failure.message}"
    finally:
        close = getattr(out, "close", None)
        if close is not None:
            close()  # stops xz's decoding threads on the failure paths
    return digest.hexdigest()


def one_input(data: bytes) -> None:
    compression = detect_compression(data)
    require(compression is None or isinstance(compression, Compression), "detect answer")
    if compression is None:
        return
    whole = _decode([data], compression, True)
    pieces = _decode(chunked(data, SMALL_CHUNK), compression, True)
    _same(f"{compression} in one chunk and in small ones", whole, pieces)
    if compression is Compression.GZIP:
        fallback = _decode([data], compression, False)
        if not any(known in fallback for known in ZLIB_STRICTER):
            _same("gzip by isal and by zlib", whole, fallback)


def _same(what: str, a: str, b: str) -> None:
    """Both decoded to the same bytes, or both failed (which failure first may differ:
    a corrupt member is found before or after the limit, depending on the chunking)."""
    require(a == b or (a.startswith("failed") and b.startswith("failed")), f"{what}: {a} {b}")


TARGET = harness.Target(
    name="compression",
    one_input=one_input,
    instrument=("importer.compression", "importer.xzblocks"),
    max_len=16 * 1024,
)

if __name__ == "__main__":
    harness.run(TARGET, sys.argv[1:])
