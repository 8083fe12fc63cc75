"""Detect compression by magic bytes and strip it from a stream, with flat memory.

Every decoder is driven with an output bound (`max_length` or a bounded `read`), so a
decompression bomb costs at most one output chunk of memory before `limit` cuts it off.
Multi-member streams (pigz, `cat a.gz b.gz`, concatenated xz/bzip2 streams, multi-frame
zstd) are decoded member by member; zero padding after a member is tolerated (as gzip and
xz do), anything else after a member must be another valid member.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from collections.abc import Callable, Iterable, Iterator
from enum import StrEnum
from typing import IO, Protocol, cast

import zstandard

from cdicontract.reasons import Reason
from importer import xzblocks
from importer.errors import ImportFailure

try:
    from isal import igzip_lib

    _HAVE_ISAL = True
except ImportError:  # pragma: no cover - isal is a hard dependency, zlib is the fallback
    _HAVE_ISAL = False

OUTPUT_CHUNK = 1 << 20
"""Largest piece of decompressed output produced at once (memory bound per step)."""
XZ_MEMLIMIT = 80 << 20
"""xz -9 needs 65 MiB to decode; custom dictionaries beyond that would break the RSS budget."""
ZSTD_MAX_WINDOW = 1 << 26
"""zstd levels up to 19 use <= 8 MiB windows; --long/--ultra frames above 64 MiB are refused."""


class Compression(StrEnum):
    GZIP = "gzip"
    XZ = "xz"
    ZSTD = "zstd"
    BZIP2 = "bzip2"


def detect_compression(head: bytes) -> Compression | None:
    """The compression announced by the first bytes of a stream, or None (magic bytes only).

    gzip also needs the deflate method byte (08) and bzip2 the block-size digit, which
    every encoder writes; the extra byte makes a raw disk that happens to start with the
    two-byte magic much less likely to be taken for a compressed one.
    """
    if head.startswith(b"\x1f\x8b\x08"):
        return Compression.GZIP
    if head.startswith(b"\xfd7zXZ\x00"):
        return Compression.XZ
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return Compression.ZSTD
    if len(head) >= 4 and head.startswith(b"BZh") and 0x31 <= head[3] <= 0x39:
        return Compression.BZIP2
    return None


class _Bounded(Protocol):
    """The decompressor-object shape shared by lzma, bz2 and isal's IgzipDecompressor."""

    @property
    def eof(self) -> bool: ...

    @property
    def needs_input(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...


class _ZlibBounded:
    """zlib's decompressobj (unconsumed_tail style) behind the `_Bounded` shape.

    Python 3.11 has no zlib._ZlibDecompressor; this is what it would do.
    """

    def __init__(self) -> None:
        self._d = zlib.decompressobj(wbits=31)
        self._full = False

    @property
    def eof(self) -> bool:
        return self._d.eof

    @property
    def needs_input(self) -> bool:
        # Output may still be pending inside zlib when the last call filled max_length.
        return not self._d.unconsumed_tail and not self._full

    @property
    def unused_data(self) -> bytes:
        return self._d.unused_data

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        tail = self._d.unconsumed_tail
        out = self._d.decompress(tail + data if tail else data, max(max_length, 0))
        self._full = max_length > 0 and len(out) >= max_length and not self._d.eof
        return out


def _gzip_member(prefer_isal: bool) -> Callable[[], _Bounded]:
    if prefer_isal and _HAVE_ISAL:
        return lambda: igzip_lib.IgzipDecompressor(flag=igzip_lib.DECOMP_GZIP)
    return _ZlibBounded


_ERRORS: tuple[type[Exception], ...] = (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError)
if _HAVE_ISAL:
    _ERRORS += (cast(type[Exception], igzip_lib.IsalError),)


class _MultiMember:
    """Decodes a sequence of members, each with a fresh decompressor, output bounded."""

    def __init__(self, name: str, factory: Callable[[], _Bounded]) -> None:
        self._name = name
        self._factory = factory
        self._d: _Bounded | None = None
        self._members = 0

    def feed(self, data: bytes) -> Iterator[bytes]:
        while True:
            if self._d is None:
                data = data.lstrip(b"\x00") if self._members else data
                if not data:
                    return
                self._d = self._factory()
            d = self._d
            try:
                out = d.decompress(data, OUTPUT_CHUNK)
            except _ERRORS as exc:
                raise _invalid(self._name, exc) from exc
            data = b""
            if out:
                yield out
            if d.eof:
                self._members += 1
                data = d.unused_data
                self._d = None
                continue
            if d.needs_input:
                return

    def finish(self) -> None:
        if self._members == 0:
            raise ImportFailure(
                Reason.INVALID_IMAGE, f"{self._name} data is truncated (stream ended mid-member)"
            )
        if self._d is not None:
            raise ImportFailure(
                Reason.INVALID_IMAGE,
                f"{self._name} data is truncated or has trailing garbage after member "
                f"{self._members}",
            )


def _invalid(name: str, exc: BaseException) -> ImportFailure:
    return ImportFailure(Reason.INVALID_IMAGE, f"corrupt {name} data: {exc}")


def _decode_members(chunks: Iterable[bytes], decoder: _MultiMember) -> Iterator[bytes]:
    for chunk in chunks:
        if chunk:
            yield from decoder.feed(chunk)
    decoder.finish()


def decompress(
    chunks: Iterable[bytes],
    compression: Compression | None,
    *,
    limit: int | None = None,
    prefer_isal: bool = True,
) -> Iterator[bytes]:
    """Decompressed chunks (each <= OUTPUT_CHUNK bytes) of a compressed chunk stream.

    `limit` bounds the total output: the chunk that would cross it is not yielded and
    IMAGE_TOO_LARGE is raised instead. `prefer_isal=False` forces the zlib gzip decoder.
    """
    if compression is None:
        out: Iterable[bytes] = chunks
    elif compression is Compression.ZSTD:
        out = _zstd_stream(chunks)
    elif compression is Compression.GZIP:
        out = _decode_members(chunks, _MultiMember("gzip", _gzip_member(prefer_isal)))
    elif compression is Compression.XZ:
        # Sized blocks (xz -T, pixz) decode on two threads; single-block streams as before.
        out = xzblocks.decode_xz(chunks, memlimit=XZ_MEMLIMIT, out_chunk=OUTPUT_CHUNK, limit=limit)
    elif compression is Compression.BZIP2:
        out = _decode_members(chunks, _MultiMember("bzip2", bz2.BZ2Decompressor))
    else:  # pragma: no cover - exhaustive enum
        raise ImportFailure(Reason.UNSUPPORTED_FORMAT, f"unsupported compression {compression}")
    return _limited(out, limit)


_ZSTD_MAGIC = 0xFD2FB528
_ZSTD_SKIPPABLE = 0x184D2A50
_MAGIC, _FHD, _HEADER_REST, _BLOCK, _CHECKSUM, _SKIP_SIZE = range(6)


class _ZstdFrames:
    """Walks the zstd frame/block structure of the compressed bytes (headers only).

    python-zstandard's stream reader silently ends on a truncated frame; this walker
    knows whether the input stopped on a frame boundary, at the cost of a few integer
    operations per block (blocks are up to 128 KiB; contents are skipped, not parsed).
    """

    def __init__(self) -> None:
        self._state = _MAGIC
        self._need = 4
        self._buf = bytearray()
        self._skip = 0
        self._checksum = False
        self._frames = 0

    def feed(self, data: bytes) -> None:
        pos, end = 0, len(data)
        while pos < end:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
                continue
            take = min(self._need - len(self._buf), end - pos)
            self._buf += data[pos : pos + take]
            pos += take
            if len(self._buf) == self._need:
                self._advance(bytes(self._buf))
                self._buf.clear()

    def _advance(self, field: bytes) -> None:
        value = int.from_bytes(field, "little")
        if self._state == _MAGIC:
            if value == _ZSTD_MAGIC:
                self._state, self._need = _FHD, 1
            elif value & 0xFFFFFFF0 == _ZSTD_SKIPPABLE:
                self._state, self._need = _SKIP_SIZE, 4
            else:
                raise ImportFailure(Reason.INVALID_IMAGE, "corrupt zstd data: no frame magic")
        elif self._state == _FHD:
            if value & 0x08:
                raise ImportFailure(Reason.INVALID_IMAGE, "corrupt zstd data: reserved bit set")
            single_segment = bool(value & 0x20)
            self._checksum = bool(value & 0x04)
            fcs = (1 if single_segment else 0, 2, 4, 8)[value >> 6]
            rest = (0 if single_segment else 1) + (0, 1, 2, 4)[value & 3] + fcs
            self._state, self._need = (_HEADER_REST, rest) if rest else (_BLOCK, 3)
        elif self._state == _HEADER_REST:
            self._state, self._need = _BLOCK, 3
        elif self._state == _BLOCK:
            block_type, size = (value >> 1) & 3, value >> 3
            if block_type == 3:
                raise ImportFailure(Reason.INVALID_IMAGE, "corrupt zstd data: reserved block type")
            self._skip = 1 if block_type == 1 else size
            if not value & 1:
                self._state, self._need = _BLOCK, 3
            elif self._checksum:
                self._state, self._need = _CHECKSUM, 4
            else:
                self._end_frame()
        elif self._state == _CHECKSUM:
            self._end_frame()
        else:  # _SKIP_SIZE
            self._skip = value
            self._end_frame()

    def _end_frame(self) -> None:
        self._frames += 1
        self._state, self._need = _MAGIC, 4

    def finish(self) -> None:
        if self._frames == 0 or self._state != _MAGIC or self._buf or self._skip:
            raise ImportFailure(
                Reason.INVALID_IMAGE, "zstd data is truncated (stream ended mid-frame)"
            )


class _ChunkFile:
    """A read()-able view of a chunk iterator for zstandard's stream reader."""

    def __init__(self, chunks: Iterable[bytes], frames: _ZstdFrames) -> None:
        self._it = iter(chunks)
        self._frames = frames
        self._buf = memoryview(b"")

    def read(self, size: int = -1) -> bytes:
        if not self._buf:
            for chunk in self._it:
                if chunk:
                    self._buf = memoryview(chunk)
                    break
            else:
                return b""
        if 0 <= size < len(self._buf):
            out, self._buf = self._buf[:size], self._buf[size:]
        else:
            out, self._buf = self._buf, memoryview(b"")
        data = bytes(out)
        self._frames.feed(data)
        return data


def _zstd_stream(chunks: Iterable[bytes]) -> Iterator[bytes]:
    frames = _ZstdFrames()
    dctx = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
    reader = dctx.stream_reader(
        cast(IO[bytes], _ChunkFile(chunks, frames)),
        read_size=1 << 18,
        read_across_frames=True,
        closefd=False,
    )
    while True:
        try:
            out = reader.read(OUTPUT_CHUNK)
        except zstandard.ZstdError as exc:
            raise _invalid("zstd", exc) from exc
        if not out:
            break
        yield out
    frames.finish()


def _limited(chunks: Iterable[bytes], limit: int | None) -> Iterator[bytes]:
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if limit is not None and total > limit:
            raise ImportFailure(
                Reason.IMAGE_TOO_LARGE,
                f"decompressed data exceeds the usable size {limit} bytes "
                "(DataVolume too small to contain image)",
            )
        yield chunk


__all__ = ["OUTPUT_CHUNK", "Compression", "decompress", "detect_compression"]
