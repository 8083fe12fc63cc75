"""Decode the independent blocks of multi-threaded xz output on two threads, in order.

Python's lzma decodes on one core; images made with `xz -T`, pixz or most distro tooling
are split into blocks whose headers announce both sizes, so each block can be decoded on
its own. liblzma has no public "decode one block" call that also verifies its check, so
each block is wrapped as a one-block stream (the real stream header, the block verbatim, a
one-record Index and a footer) and fed to `lzma.LZMADecompressor(FORMAT_XZ)`: liblzma then
verifies the block header CRC, the announced sizes, the check and our synthetic Index.
The real Index and footer are parsed here and compared with the blocks seen, so a tampered
stream is refused as the sequential decoder would refuse it.

Memory stays flat: only the compressed bytes of the blocks in the window are buffered, the
window holds at most `workers + 1` blocks and `WINDOW_BUDGET` bytes (compressed + decoded
+ dictionary), and a block too large for that, or one without sizes, is decoded by a
streaming decoder with bounded output instead. Output pieces are at most `out_chunk` bytes.
A stream whose first block has no sizes (single-threaded xz) is decoded exactly as before,
by one streaming decoder for the whole stream.
"""

from __future__ import annotations

import lzma
import struct
import threading
import zlib
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from cdicontract.reasons import Reason
from importer.errors import ImportFailure

MAGIC = b"\xfd7zXZ\x00"
FOOTER_MAGIC = b"YZ"
PARALLEL_MAX_BLOCK = 32 << 20
"""Largest decoded block held in memory at once; bigger blocks are streamed."""
WINDOW_BUDGET = 48 << 20
"""Bytes (compressed + decoded + dictionary) of all blocks in the window together."""
_CHECK_SIZES = (0, 4, 4, 4, 8, 8, 8, 16, 16, 16, 32, 32, 32, 64, 64, 64)
_LZMA2 = 0x21
_ERRORS: tuple[type[Exception], ...] = (lzma.LZMAError, EOFError, ValueError, OSError)


@dataclass
class Stats:
    """What the decoder did, for tests and logs (counters only, updated under a lock)."""

    parallel_blocks: int = 0
    streamed_blocks: int = 0
    sequential_streams: int = 0
    max_decoding: int = 0
    _decoding: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def started(self) -> None:
        with self._lock:
            self._decoding += 1
            self.max_decoding = max(self.max_decoding, self._decoding)

    def finished(self) -> None:
        with self._lock:
            self._decoding -= 1


def _invalid(message: str) -> ImportFailure:
    return ImportFailure(Reason.INVALID_IMAGE, f"corrupt xz data: {message}")


def _truncated() -> ImportFailure:
    return ImportFailure(Reason.INVALID_IMAGE, "xz data is truncated (stream ended mid-stream)")


def _vli(data: bytes, pos: int) -> tuple[int, int]:
    """A multibyte integer at `pos` (at most 9 bytes, minimal encoding) and the next pos."""
    value = 0
    for i in range(9):
        if pos + i >= len(data):
            raise _invalid("truncated integer")
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i:
                raise _invalid("non-minimal integer")
            return value, pos + i + 1
    raise _invalid("integer too long")


def _enc_vli(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _crc(data: bytes) -> bytes:
    return struct.pack("<I", zlib.crc32(data))


def _pad4(n: int) -> int:
    return -n % 4


@dataclass(frozen=True)
class BlockHeader:
    raw: bytes
    compressed: int | None
    uncompressed: int | None
    dict_size: int


def parse_block_header(raw: bytes) -> BlockHeader:
    """The sizes and LZMA2 dictionary announced by a whole block header (CRC verified)."""
    if _crc(raw[:-4]) != raw[-4:]:
        raise _invalid("block header CRC mismatch")
    flags = raw[1]
    if flags & 0x3C:
        raise _invalid("reserved block flags set")
    pos = 2
    compressed = uncompressed = None
    if flags & 0x40:
        compressed, pos = _vli(raw, pos)
        if compressed == 0:
            raise _invalid("zero compressed size")
    if flags & 0x80:
        uncompressed, pos = _vli(raw, pos)
    dict_size = 0
    for _ in range((flags & 3) + 1):
        fid, pos = _vli(raw, pos)
        psize, pos = _vli(raw, pos)
        props = raw[pos : pos + psize]
        pos += psize
        # Each filter must end before the CRC: filter flags running into (or past) it
        # would otherwise be read from the CRC's bytes, or from nothing.
        if pos > len(raw) - 4:
            raise _invalid("block header overflows")
        if fid == _LZMA2 and psize == 1 and props[0] <= 40:
            b = props[0]
            dict_size = (1 << 32) - 1 if b == 40 else (2 | (b & 1)) << (b // 2 + 11)
    return BlockHeader(raw, compressed, uncompressed, dict_size)


def one_record_tail(stream_flags: bytes, unpadded: int, uncompressed: int) -> bytes:
    """The Index (one record) and stream footer that close a one-block stream."""
    index = b"\x00" + _enc_vli(1) + _enc_vli(unpadded) + _enc_vli(uncompressed)
    index += bytes(_pad4(len(index)))
    index += _crc(index)
    backward = struct.pack("<I", len(index) // 4 - 1) + stream_flags
    return index + _crc(backward) + backward + FOOTER_MAGIC


class _Input:
    """The compressed chunks with just enough buffered for the field being read."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = iter(chunks)
        self._buf = bytearray()
        self._pos = 0

    def _fill(self) -> bool:
        for chunk in self._it:
            if chunk:
                if self._pos:
                    del self._buf[: self._pos]
                    self._pos = 0
                self._buf += chunk
                return True
        return False

    def take(self, n: int) -> bytes:
        while len(self._buf) - self._pos < n:
            if not self._fill():
                raise _truncated()
        out = bytes(self._buf[self._pos : self._pos + n])
        self._pos += n
        return out

    def skip_zeros(self) -> bool:
        """Drop zero padding; True when more (non-zero) input follows."""
        while True:
            while self._pos < len(self._buf) and self._buf[self._pos] == 0:
                self._pos += 1
            if self._pos < len(self._buf):
                return True
            if not self._fill():
                return False

    def pieces(self, n: int, size: int) -> Iterator[bytes]:
        """The next `n` bytes in pieces of at most `size`."""
        while n:
            piece = self.take(min(n, size, max(1, len(self._buf) - self._pos)))
            n -= len(piece)
            yield piece

    def rest(self) -> Iterator[bytes]:
        """Everything left, buffered bytes first; `unread` may push some back meanwhile."""
        while True:
            if self._pos < len(self._buf):
                out = bytes(self._buf[self._pos :])
                self._buf.clear()
                self._pos = 0
                yield out
            elif not self._fill():
                return

    def unread(self, data: bytes) -> None:
        self._buf[self._pos : self._pos] = data


def _bounded(d: lzma.LZMADecompressor, data: bytes, out_chunk: int) -> Iterator[bytes]:
    """All output of feeding `data`, in pieces of at most `out_chunk` bytes."""
    try:
        out = d.decompress(data, out_chunk)
        while True:
            if out:
                yield out
            if d.eof or d.needs_input:
                return
            out = d.decompress(b"", out_chunk)
    except _ERRORS as exc:
        raise _invalid(str(exc)) from exc


def _decode_block(
    parts: tuple[bytes, bytes, bytes], size: int, memlimit: int, out_chunk: int, stats: Stats
) -> list[bytes]:
    """A whole block, decoded and verified on a worker thread (liblzma drops the GIL).

    The output comes as `out_chunk` pieces: equal-sized allocations that the allocator
    reuses, where one block-sized buffer per block would fragment the heap of each thread.
    """
    stats.started()
    try:
        d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=memlimit)
        out: list[bytes] = []
        for data in parts:
            out.extend(_bounded(d, data, out_chunk))
        if not d.eof or d.unused_data or sum(map(len, out)) != size:
            raise _invalid("block does not match its header")
        return out
    finally:
        stats.finished()


@dataclass
class _Stream:
    header: bytes
    check_size: int
    records: list[tuple[int, int]] = field(default_factory=list)


class XzBlockDecoder:
    """Decodes an xz chunk stream, decoding sized blocks on `workers` threads, in order."""

    def __init__(
        self,
        *,
        memlimit: int,
        out_chunk: int,
        limit: int | None = None,
        workers: int = 2,
        max_block: int = PARALLEL_MAX_BLOCK,
        stats: Stats | None = None,
    ) -> None:
        self._memlimit = memlimit
        self._out_chunk = out_chunk
        self._limit = limit
        self._workers = max(1, workers)
        self._max_block = max_block
        self.stats = stats or Stats()
        self._announced = 0
        self._window: deque[tuple[Future[list[bytes]], int]] = deque()
        self._window_bytes = 0

    def decode(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        inp = _Input(chunks)
        pool = ThreadPoolExecutor(self._workers, thread_name_prefix="xz-block")
        try:
            streams = 0
            while not streams or inp.skip_zeros():
                yield from self._stream(inp, pool)
                streams += 1
            yield from self._drain(0)
        finally:
            for fut, _cost in self._window:
                fut.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    def _stream(self, inp: _Input, pool: ThreadPoolExecutor) -> Iterator[bytes]:
        header = inp.take(12)
        if header[:6] != MAGIC:
            raise _invalid("not an xz stream (bad magic)")
        if _crc(header[6:8]) != header[8:12] or header[6] or header[7] & 0xF0:
            raise _invalid("bad stream header")
        st = _Stream(header, _CHECK_SIZES[header[7] & 0x0F])
        first = True
        while True:
            size_byte = inp.take(1)
            if size_byte == b"\x00":
                yield from self._index(inp, st)
                return
            bh = parse_block_header(size_byte + inp.take((size_byte[0] + 1) * 4 - 1))
            if first and bh.compressed is None:
                yield from self._drain(0)
                yield from self._sequential(inp, header + bh.raw)
                return
            first = False
            if bh.compressed is None:
                raise ImportFailure(
                    Reason.UNSUPPORTED_FORMAT,
                    "xz stream has a block without a compressed size after sized blocks",
                )
            unpadded = len(bh.raw) + bh.compressed + st.check_size
            body_len = bh.compressed + _pad4(bh.compressed) + st.check_size
            cost = self._parallel_cost(bh)
            if cost is None:
                yield from self._drain(0)
                size = yield from self._streamed(inp, st, bh, body_len, unpadded)
            else:
                size = bh.uncompressed or 0
                yield from self._drain(WINDOW_BUDGET - cost)
                tail = one_record_tail(header[6:8], unpadded, size)
                parts = (header + bh.raw, inp.take(body_len), tail)
                fut = pool.submit(
                    _decode_block, parts, size, self._memlimit, self._out_chunk, self.stats
                )
                self._window.append((fut, cost))
                self._window_bytes += cost
                self._announced += size
                self.stats.parallel_blocks += 1
            st.records.append((unpadded, size))

    def _parallel_cost(self, bh: BlockHeader) -> int | None:
        """The window bytes a block would take, or None when it must be streamed instead."""
        if bh.uncompressed is None or bh.compressed is None:
            return None
        if bh.uncompressed > self._max_block or bh.compressed > self._max_block + (1 << 20):
            return None
        if self._limit is not None and self._announced + bh.uncompressed > self._limit:
            return None  # streamed, so the limit cuts it off at the exact byte
        dictionary = min(bh.dict_size, bh.uncompressed) if bh.dict_size else bh.uncompressed
        cost = bh.compressed + bh.uncompressed + dictionary
        return cost if cost <= WINDOW_BUDGET else None

    def _drain(self, room: int) -> Iterator[bytes]:
        """Yield finished blocks, oldest first, until the window has `room` bytes and a slot."""
        while self._window and (
            self._window_bytes > max(room, 0) or len(self._window) > self._workers
        ):
            fut, cost = self._window[0]
            pieces = fut.result()
            self._window.popleft()
            # The cost stays counted while the pieces go out: they are still in memory.
            while pieces:
                yield pieces.pop(0)
            self._window_bytes -= cost

    def _streamed(
        self, inp: _Input, st: _Stream, bh: BlockHeader, body_len: int, unpadded: int
    ) -> Generator[bytes, None, int]:
        """One block through a wrapped one-block stream, with bounded output; its size."""
        d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=self._memlimit)
        size = 0
        yield from _bounded(d, st.header + bh.raw, self._out_chunk)  # headers: no output
        for piece in inp.pieces(body_len, 1 << 20):
            for out in _bounded(d, piece, self._out_chunk):
                size += len(out)
                yield out
        if bh.uncompressed is not None and size != bh.uncompressed:
            raise _invalid("block size does not match its header")
        tail = one_record_tail(st.header[6:8], unpadded, size)
        for out in _bounded(d, tail, self._out_chunk):
            size += len(out)
            yield out
        if not d.eof or d.unused_data:
            raise _invalid("block does not match its header")
        self._announced += size
        self.stats.streamed_blocks += 1
        return size

    def _sequential(self, inp: _Input, head: bytes) -> Iterator[bytes]:
        """A whole stream through one streaming decoder (blocks without sizes)."""
        self.stats.sequential_streams += 1
        d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=self._memlimit)
        yield from _bounded(d, head, self._out_chunk)  # headers only: no output
        for piece in inp.rest():
            for out in _bounded(d, piece, self._out_chunk):
                self._announced += len(out)
                yield out
            if d.eof:
                inp.unread(d.unused_data)
                return
        raise _truncated()

    def _index(self, inp: _Input, st: _Stream) -> Iterator[bytes]:
        """Check the real Index and footer against the blocks decoded (nothing to yield)."""
        body = bytearray(b"\x00")
        count_raw = self._take_vli(inp, body)
        if count_raw != len(st.records):
            raise _invalid("index record count does not match the blocks")
        for unpadded, size in st.records:
            if (self._take_vli(inp, body), self._take_vli(inp, body)) != (unpadded, size):
                raise _invalid("index record does not match its block")
        pad = inp.take(_pad4(len(body)))
        if any(pad):
            raise _invalid("non-zero index padding")
        body += pad
        if _crc(bytes(body)) != inp.take(4):
            raise _invalid("index CRC mismatch")
        footer = inp.take(12)
        backward = struct.pack("<I", (len(body) + 4) // 4 - 1)
        if (
            footer[10:12] != FOOTER_MAGIC
            or footer[4:8] != backward
            or footer[8:10] != st.header[6:8]
            or _crc(footer[4:10]) != footer[:4]
        ):
            raise _invalid("bad stream footer")
        yield from ()

    @staticmethod
    def _take_vli(inp: _Input, into: bytearray) -> int:
        start = len(into)
        while True:
            into += inp.take(1)
            if not into[-1] & 0x80 or len(into) - start >= 9:
                break
        value, _ = _vli(bytes(into), start)
        return value


def decode_xz(
    chunks: Iterable[bytes],
    *,
    memlimit: int,
    out_chunk: int,
    limit: int | None = None,
    workers: int = 2,
    max_block: int = PARALLEL_MAX_BLOCK,
    stats: Stats | None = None,
) -> Iterator[bytes]:
    """Decompressed pieces (each <= out_chunk) of xz `chunks` (concatenated streams too).

    `limit` only steers which blocks are decoded ahead: a block that would cross it is
    streamed, so the caller's limit check stops decoding at the limit itself.
    """
    decoder = XzBlockDecoder(
        memlimit=memlimit,
        out_chunk=out_chunk,
        limit=limit,
        workers=workers,
        max_block=max_block,
        stats=stats,
    )
    return decoder.decode(chunks)


__all__ = ["Stats", "XzBlockDecoder", "decode_xz", "one_record_tail", "parse_block_header"]
