"""Micro benchmark: decompress + sparse copy of a local compressed raw image.

    python3 bench/bench_rawcopy.py IMAGE.raw.gz [--out DIR] [--prefetch N] [--reference]

Reads the file in 256 KiB chunks (as the HTTP source does), so it measures our decode
and write path without the network. `--reference` also times `gzip|xz|zstd -dc > out`.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import time
from collections.abc import Iterator

from importer.compression import decompress, detect_compression
from importer.rawcopy import copy_raw
from importer.targets import FileTarget

TOOLS = {"gzip": "gzip", "xz": "xz", "zstd": "zstd", "bzip2": "bzip2"}


def read_chunks(path: str, size: int = 256 << 10) -> Iterator[bytes]:
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(size):
            yield chunk


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("image")
    ap.add_argument("--out", default="/var/tmp")
    ap.add_argument("--prefetch", type=int, default=4)
    ap.add_argument("--reference", action="store_true")
    args = ap.parse_args()
    with open(args.image, "rb") as f:
        compression = detect_compression(f.read(16))
    out = os.path.join(args.out, "bench-out.img")
    target = FileTarget(out)
    start = time.perf_counter()
    target.begin()
    size = copy_raw(
        decompress(read_chunks(args.image), compression), target, limit=None, prefetch=args.prefetch
    )
    target.commit(size, None)
    ours = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    st = os.stat(out)
    print(
        f"ours: {ours:.2f}s {size / ours / 2**20:.0f} MiB/s maxrss={rss} MiB "
        f"allocated={st.st_blocks * 512 >> 20} MiB compression={compression}"
    )
    os.unlink(out)
    if args.reference and compression is not None:
        start = time.perf_counter()
        with open(args.image, "rb") as src, open(out, "wb") as dst:
            subprocess.run([TOOLS[compression], "-dc"], stdin=src, stdout=dst, check=True)
            os.fsync(dst.fileno())
        ref = time.perf_counter() - start
        print(f"{TOOLS[compression]} -dc: {ref:.2f}s speedup={ref / ours:.2f}x")
        os.unlink(out)


if __name__ == "__main__":
    main()
