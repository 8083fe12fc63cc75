"""Decompression round-trips against Debian's own encoders, plus the unhappy paths."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdicontract.reasons import Reason
from importer.compression import OUTPUT_CHUNK, Compression, decompress, detect_compression
from importer.errors import ImportFailure

ENCODERS: dict[str, tuple[Compression, list[str]]] = {
    "gzip": (Compression.GZIP, ["gzip", "-c"]),
    "pigz-multi-member": (Compression.GZIP, ["pigz", "-c", "-b", "128", "--independent"]),
    "xz": (Compression.XZ, ["xz", "-c"]),
    "xz-multi-block": (Compression.XZ, ["xz", "-c", "-T2", "--block-size=1MiB"]),
    "zstd": (Compression.ZSTD, ["zstd", "-q", "-c"]),
    "zstd-checksum": (Compression.ZSTD, ["zstd", "-q", "-c", "--check"]),
    "bzip2": (Compression.BZIP2, ["bzip2", "-c"]),
}


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A few MiB that look like a disk: random data, zero runs, text."""
    rnd = os.urandom(1 << 19)
    text = b"".join(b"line %d of some filesystem metadata\n" % i for i in range(20000))
    return rnd + bytes(3 << 20) + text + bytes(12345) + rnd[:77777]


_ENCODED: dict[tuple[tuple[str, ...], bytes], bytes] = {}


def encode(tool: list[str], data: bytes) -> bytes:
    """The encoder's output (memoized: xz and bzip2 are slow on a loaded machine)."""
    key = (tuple(tool), data)
    if key not in _ENCODED:
        _ENCODED[key] = subprocess.run(tool, input=data, capture_output=True, check=True).stdout
    return _ENCODED[key]


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def run(data: bytes, compression: Compression | None, size: int = 65536, **kw: object) -> bytes:
    return b"".join(decompress(chunked(data, size), compression, **kw))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ENCODERS)
def test_round_trips_debian_encoder_output(raw: bytes, name: str) -> None:
    compression, tool = ENCODERS[name]
    blob = encode(tool, raw)
    assert detect_compression(blob[:16]) is compression
    pieces = list(decompress(chunked(blob, 65536), compression))
    assert b"".join(pieces) == raw
    assert max(len(p) for p in pieces) <= OUTPUT_CHUNK


@pytest.mark.parametrize("size", [1, 7, 4096, 1 << 22])
def test_any_input_chunking_gives_the_same_output(raw: bytes, size: int) -> None:
    small = raw[: 200000 if size < 4096 else len(raw)]
    for compression, tool in (ENCODERS["gzip"], ENCODERS["zstd-checksum"], ENCODERS["xz"]):
        assert run(encode(tool, small), compression, size) == small


@pytest.mark.parametrize("compression", list(Compression))
def test_concatenated_streams_decode_as_one(raw: bytes, compression: Compression) -> None:
    tool = {c: t for c, t in ENCODERS.values()}[compression]
    blob = encode(tool, raw[:500000]) + encode(tool, raw[500000:])
    assert run(blob, compression) == raw


def test_zlib_fallback_decodes_gzip_like_isal(raw: bytes) -> None:
    assert run(encode(ENCODERS["gzip"][1], raw), Compression.GZIP, prefer_isal=False) == raw
    blob = encode(ENCODERS["pigz-multi-member"][1], raw)
    assert run(blob, Compression.GZIP, prefer_isal=False) == raw
    with pytest.raises(ImportFailure) as exc:
        run(blob[:-9], Compression.GZIP, prefer_isal=False)
    assert exc.value.reason is Reason.INVALID_IMAGE


@pytest.mark.parametrize("compression", [Compression.GZIP, Compression.XZ])
def test_trailing_zero_padding_is_tolerated(raw: bytes, compression: Compression) -> None:
    tool = {c: t for c, t in ENCODERS.values()}[compression]
    assert run(encode(tool, raw) + bytes(4096), compression) == raw


def _damage(blob: bytes, how: str) -> bytes:
    if how == "truncated-tail":
        return blob[:-7]
    if how == "truncated-half":
        return blob[: len(blob) // 2]
    if how == "flipped-byte":
        pos = len(blob) // 3
        return blob[:pos] + bytes([blob[pos] ^ 0x55]) + blob[pos + 1 :]
    if how == "trailing-garbage":
        return blob + b"this is not compressed data at all"
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how", ["truncated-tail", "truncated-half", "flipped-byte", "trailing-garbage"]
)
@pytest.mark.parametrize("name", ["gzip", "xz", "zstd-checksum", "bzip2"])
def test_corrupt_or_truncated_stream_is_invalid_image(raw: bytes, name: str, how: str) -> None:
    compression, tool = ENCODERS[name]
    bad = _damage(encode(tool, raw), how)
    with pytest.raises(ImportFailure) as exc:
        run(bad, compression)
    assert exc.value.reason is Reason.INVALID_IMAGE
    assert name.split("-", maxsplit=1)[0] in exc.value.message


@pytest.mark.parametrize("compression", list(Compression))
def test_empty_stream_is_invalid_image(compression: Compression) -> None:
    with pytest.raises(ImportFailure) as exc:
        run(b"", compression)
    assert exc.value.reason is Reason.INVALID_IMAGE


def test_output_beyond_limit_is_image_too_large(raw: bytes) -> None:
    blob = encode(ENCODERS["gzip"][1], raw)
    assert run(blob, Compression.GZIP, limit=len(raw)) == raw
    got = 0
    with pytest.raises(ImportFailure) as exc:
        for piece in decompress(chunked(blob, 65536), Compression.GZIP, limit=len(raw) - 1):
            got += len(piece)
    assert exc.value.reason is Reason.IMAGE_TOO_LARGE
    assert f"exceeds the usable size {len(raw) - 1}" in exc.value.message
    assert got <= len(raw) - 1


def test_passthrough_still_enforces_limit() -> None:
    assert run(b"x" * 10, None, 3, limit=10) == b"x" * 10
    with pytest.raises(ImportFailure) as exc:
        run(b"x" * 11, None, 3, limit=10)
    assert exc.value.reason is Reason.IMAGE_TOO_LARGE


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\x1f\x8b\x08\x00rest", Compression.GZIP),
        (b"\xfd7zXZ\x00\x00", Compression.XZ),
        (b"\x28\xb5\x2f\xfd\x00", Compression.ZSTD),
        (b"BZh91AY&SY", Compression.BZIP2),
        (b"BZhx", None),
        (b"\x1f\x8b", None),
        (b"QFI\xfb\x00\x00\x00\x03", None),
        (b"\xeb\x63\x90" + bytes(500), None),
        (b"", None),
    ],
    ids=[
        "gzip",
        "xz",
        "zstd",
        "bzip2",
        "bzip2-no-level",
        "gzip-too-short",
        "qcow2",
        "mbr",
        "empty",
    ],
)
def test_detects_compression_by_magic_only(head: bytes, expected: Compression | None) -> None:
    assert detect_compression(head) is expected


def test_refuses_zstd_window_beyond_memory_budget(tmp_path: Path) -> None:
    data = os.urandom(1 << 16) * 4
    blob = encode(["zstd", "-q", "-c", "--long=27", "--zstd=wlog=27"], data)
    with pytest.raises(ImportFailure) as exc:
        run(blob, Compression.ZSTD)
    assert exc.value.reason is Reason.INVALID_IMAGE
