"""Block-parallel xz decoding against the real `xz` CLI's output, happy and unhappy paths."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Generator, Iterator

import pytest

from cdicontract.reasons import Reason
from importer import xzblocks
from importer.compression import OUTPUT_CHUNK, XZ_MEMLIMIT, Compression, decompress
from importer.errors import ImportFailure


def xz(data: bytes, *args: str) -> bytes:
    return subprocess.run(
        ["xz", "-c", "-q", *args], input=data, capture_output=True, check=True
    ).stdout


def disk_like(size: int, seed: int = 1) -> bytes:
    """Compressible but not trivial: text with random words, zero runs, some noise."""
    rnd = os.urandom(4096)
    out = bytearray()
    i = seed
    while len(out) < size:
        out += b"block %d inode %d owner %d\n" % (i, i * 7 % 1013, i % 17)
        if i % 97 == 0:
            out += bytes(3000) + rnd[: i % 4096]
        i += 1
    return bytes(out[:size])


@pytest.fixture(scope="module")
def raw() -> bytes:
    return disk_like(3 << 20)


@pytest.fixture(scope="module")
def multi(raw: bytes) -> bytes:
    return xz(raw, "-T2", "--block-size=256KiB")


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def decode(blob: bytes, size: int = 65536, stats: xzblocks.Stats | None = None, **kw: int) -> bytes:
    pieces = list(
        xzblocks.decode_xz(
            chunked(blob, size), memlimit=XZ_MEMLIMIT, out_chunk=OUTPUT_CHUNK, stats=stats, **kw
        )
    )
    assert all(len(p) <= OUTPUT_CHUNK for p in pieces)
    return b"".join(pieces)


def invalid(blob: bytes, size: int = 65536) -> ImportFailure:
    with pytest.raises(ImportFailure) as exc:
        b"".join(decompress(chunked(blob, size), Compression.XZ))
    assert exc.value.reason is Reason.INVALID_IMAGE, exc.value
    assert "xz" in exc.value.message
    return exc.value


def blocks(blob: bytes) -> list[tuple[int, int]]:
    """(offset, total length) of each block of the first stream, from the headers."""
    pos, out = 12, []
    check = (0, 4, 4, 4, 8, 8, 8, 16, 16, 16, 32, 32, 32, 64, 64, 64)[blob[7] & 15]
    while blob[pos]:
        bh = xzblocks.parse_block_header(blob[pos : pos + (blob[pos] + 1) * 4])
        assert bh.compressed is not None
        length = len(bh.raw) + bh.compressed + (-bh.compressed % 4) + check
        out.append((pos, length))
        pos += length
    return out


def flip(blob: bytes, pos: int) -> bytes:
    return blob[:pos] + bytes([blob[pos] ^ 0x10]) + blob[pos + 1 :]


@pytest.mark.parametrize("check", ["none", "crc32", "crc64", "sha256"])
def test_multi_block_round_trip_with_each_check_type(raw: bytes, check: str) -> None:
    blob = xz(raw, "-T2", "--block-size=256KiB", f"-C{check}")
    stats = xzblocks.Stats()
    assert decode(blob, stats=stats) == raw
    assert stats.parallel_blocks == len(blocks(blob)) == 12
    assert stats.sequential_streams == stats.streamed_blocks == 0
    assert b"".join(decompress(chunked(blob, 65536), Compression.XZ)) == raw


def test_single_block_stream_takes_the_sequential_path(raw: bytes) -> None:
    blob = xz(raw, "-T1")
    stats = xzblocks.Stats()
    assert decode(blob, stats=stats) == raw
    assert (stats.sequential_streams, stats.parallel_blocks) == (1, 0)


def test_concatenated_streams_mixing_both_paths_with_padding(raw: bytes) -> None:
    a, b, c = raw[:1000000], raw[1000000:2000000], raw[2000000:]
    blob = (
        xz(a, "-T2", "--block-size=100KiB", "-Csha256")
        + bytes(4)
        + xz(b, "-T1", "-Ccrc32")
        + bytes(8)
        + xz(c, "-T2", "--block-size=300KiB", "-Cnone")
        + bytes(12)
    )
    stats = xzblocks.Stats()
    assert decode(blob, stats=stats) == raw
    assert stats.sequential_streams == 1
    assert stats.parallel_blocks == 10 + 4


@pytest.mark.parametrize("size", [1, 3, 7, 13, 509, 4093])
def test_any_chunk_boundary_gives_the_same_output(size: int) -> None:
    small = disk_like(60000, seed=5)
    blob = xz(small, "-T2", "--block-size=8KiB", "-Ccrc64") + bytes(4) + xz(small, "-T1")
    assert decode(blob, size) == small + small


def test_oversized_blocks_are_streamed_with_bounded_pieces(raw: bytes) -> None:
    blob = xz(raw, "-T2", "--block-size=1MiB")
    stats = xzblocks.Stats()
    assert decode(blob, stats=stats, max_block=600 << 10) == raw
    assert (stats.streamed_blocks, stats.parallel_blocks) == (3, 0)


def test_two_blocks_decode_at_once(raw: bytes) -> None:
    big = disk_like(24 << 20, seed=9)
    blob = xz(big, "-T2", "-6", "--block-size=3MiB")
    timings = {}
    for workers in (1, 2):
        stats = xzblocks.Stats()
        t0 = time.monotonic()
        assert decode(blob, 1 << 20, stats=stats, workers=workers) == big
        timings[workers] = time.monotonic() - t0
        assert stats.max_decoding == workers
    print(f"xz 24 MiB in 8 blocks: 1 worker {timings[1]:.2f} s, 2 workers {timings[2]:.2f} s")


def test_closing_early_leaves_no_worker_threads(multi: bytes) -> None:
    before = threading.active_count()
    gen = decompress(chunked(multi, 65536), Compression.XZ)
    next(gen)
    assert isinstance(gen, Generator)
    gen.close()
    assert threading.active_count() == before


def test_corrupt_data_in_one_block_is_invalid(multi: bytes) -> None:
    pos, length = blocks(multi)[5]
    invalid(flip(multi, pos + length // 2))


def test_corrupt_block_header_is_invalid(multi: bytes) -> None:
    pos, _ = blocks(multi)[3]
    invalid(flip(multi, pos + 2))


def test_block_header_sizes_that_lie_are_invalid(multi: bytes) -> None:
    """A header whose sizes were edited (CRC recomputed) fails liblzma's block checks."""
    pos, _ = blocks(multi)[2]
    header = bytearray(multi[pos : pos + (multi[pos] + 1) * 4])
    header[2] ^= 0x01  # lowest bit of the compressed size
    header[-4:] = struct.pack("<I", zlib.crc32(bytes(header[:-4])))
    invalid(multi[:pos] + bytes(header) + multi[pos + len(header) :])



def test_filter_flags_running_into_the_header_crc_are_invalid() -> None:
    """Two filters in a 12-byte header whose last filter's id and property size are the
    CRC's own bytes (0x21 = LZMA2, size 1), so its one property byte lies past the header.
    It raised IndexError (the `compression` fuzz target exited 77 on it) instead of refusing."""
    header = bytes.fromhex("02010306c17e0100d6a92101")
    assert header[-4:] == struct.pack("<I", zlib.crc32(header[:-4]))
    with pytest.raises(ImportFailure, match="block header overflows"):
        xzblocks.parse_block_header(header)
    flags = b"\x00\x01"
    stream = xzblocks.MAGIC + flags + struct.pack("<I", zlib.crc32(flags)) + header
    assert "block header overflows" in invalid(stream).message

def _index_start(blob: bytes) -> int:
    pos, length = blocks(blob)[-1]
    return pos + length


@pytest.mark.parametrize("offset", [0, 1, 2, 5, -1])
def test_flipped_byte_in_index_is_invalid(multi: bytes, offset: int) -> None:
    start = _index_start(multi)
    end = len(multi) - 12
    invalid(flip(multi, (start if offset >= 0 else end) + offset))


def test_index_record_edited_with_valid_crc_is_invalid(multi: bytes) -> None:
    start, end = _index_start(multi), len(multi) - 12
    index = bytearray(multi[start:end])
    index[3] ^= 0x04  # in the first record (unpadded size) - same length, other value
    index[-4:] = struct.pack("<I", zlib.crc32(bytes(index[:-4])))
    failure = invalid(multi[:start] + bytes(index) + multi[end:])
    assert "index" in failure.message


@pytest.mark.parametrize("offset", range(12))
def test_flipped_byte_in_footer_is_invalid(multi: bytes, offset: int) -> None:
    invalid(flip(multi, len(multi) - 12 + offset))


@pytest.mark.parametrize("cut", [1, 4, 12, 13, 100, 2000, -1, -12, -13])
def test_truncated_stream_is_invalid(multi: bytes, cut: int) -> None:
    invalid(multi[:cut], 1000)


def test_trailing_garbage_after_a_stream_is_invalid(multi: bytes) -> None:
    invalid(multi + bytes(4) + b"not xz at all")


def test_limit_cuts_output_at_the_exact_byte(raw: bytes, multi: bytes) -> None:
    assert b"".join(decompress(chunked(multi, 65536), Compression.XZ, limit=len(raw))) == raw
    got = 0
    with pytest.raises(ImportFailure) as exc:
        for piece in decompress(chunked(multi, 65536), Compression.XZ, limit=len(raw) - 1):
            got += len(piece)
    assert exc.value.reason is Reason.IMAGE_TOO_LARGE
    assert len(raw) - OUTPUT_CHUNK <= got <= len(raw) - 1


# 256 MiB of zeros in 4 MiB blocks (xz -T2), repeated forty times: 10 GiB announced.
BOMB_CHILD = r"""
import json, resource, subprocess, sys
from importer import xzblocks
from importer.compression import Compression, decompress
from importer.errors import ImportFailure

limit = int(sys.argv[1])
member = subprocess.run(
    "head -c 256M /dev/zero | xz -c -T2 -0 --block-size=4MiB",
    shell=True, capture_output=True, check=True,
).stdout
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
fed = 0

def chunks():
    global fed
    for _ in range(40):
        for i in range(0, len(member), 4096):
            fed += len(member[i : i + 4096])
            yield member[i : i + 4096]

out, reason = 0, None
try:
    for piece in decompress(chunks(), Compression.XZ, limit=limit):
        out += len(piece)
except ImportFailure as exc:
    reason = str(exc.reason)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"reason": reason, "out": out, "growth_kib": peak - base,
                  "fed": fed, "member": len(member)}))
"""


@pytest.mark.slow
def test_multi_block_bomb_is_cut_at_the_limit_with_flat_memory() -> None:
    limit = 1100 << 20
    proc = subprocess.run(
        [sys.executable, "-c", BOMB_CHILD, str(limit)],
        capture_output=True,
        text=True,
        check=True,
        timeout=240,
    )
    result = json.loads(proc.stdout)
    assert result["reason"] == "ImageTooLarge"
    assert limit - OUTPUT_CHUNK <= result["out"] <= limit
    assert result["growth_kib"] < 48 * 1024, result
    # Input stopped within a few blocks of the limit, not after all 10 GiB.
    fed_blocks = result["fed"] / (result["member"] / 64)
    assert fed_blocks < limit / (4 << 20) + 8, result
