"""Decompression bombs: 10 GiB of zeros behind a few MiB is cut off at the limit, memory flat.

Each bomb is decoded in a fresh interpreter so its peak RSS is its own (ru_maxrss of a
pytest worker would include every earlier test).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from importer.compression import Compression

# The child builds a member of 1 GiB of zeros (256 MiB for bzip2) and repeats it ten
# times (multi-member gzip/xz/bzip2, multi-frame zstd): up to 10 GiB, cheap to produce.
CHILD = r"""
import bz2, json, lzma, resource, sys, zlib
import zstandard
from importer.compression import Compression, decompress
from importer.errors import ImportFailure

kind = Compression(sys.argv[1])
limit = int(sys.argv[2])
zeros = bytes(1 << 20)
if kind is Compression.GZIP:
    enc = zlib.compressobj(9, zlib.DEFLATED, 31)
    member = b"".join(enc.compress(zeros) for _ in range(1024)) + enc.flush()
elif kind is Compression.XZ:
    enc = lzma.LZMACompressor(preset=0)
    member = b"".join(enc.compress(zeros) for _ in range(1024)) + enc.flush()
elif kind is Compression.BZIP2:
    enc = bz2.BZ2Compressor(9)
    member = b"".join(enc.compress(zeros) for _ in range(256)) + enc.flush()
else:
    member = zstandard.ZstdCompressor().compress(bytes(1 << 30))
del zeros
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

def chunks():
    for _ in range(10):
        for i in range(0, len(member), 1 << 20):
            yield member[i : i + (1 << 20)]

out = 0
reason = None
try:
    for piece in decompress(chunks(), kind, limit=limit):
        out += len(piece)
except ImportFailure as exc:
    reason = str(exc.reason)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"reason": reason, "out": out, "growth_kib": peak - base, "member": len(member)}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("compression", list(Compression))
def test_bomb_is_cut_off_at_the_limit_with_flat_memory(compression: Compression) -> None:
    limit = 1100 << 20  # crosses at least one member boundary
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(compression), str(limit)],
        capture_output=True,
        text=True,
        check=True,
        timeout=240,
    )
    result = json.loads(proc.stdout)
    assert result["reason"] == "ImageTooLarge"
    assert limit - (1 << 20) <= result["out"] <= limit
    # A decoder that buffered a member's output would grow by ~1 GiB.
    assert result["growth_kib"] < 48 * 1024, result
