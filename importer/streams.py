"""Small pure stream stages: peek at the head, tap every chunk, remember the tail.

Each works on an iterator of byte chunks and does no I/O, so the pipeline can stack them
(count and hash the bytes as served, then decompress, then sniff the format) and tests
can drive them with lists.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator


def peek(chunks: Iterable[bytes], size: int) -> tuple[bytes, Iterator[bytes]]:
    """Read at least `size` bytes (fewer at the end) and return them with the whole stream."""
    it = iter(chunks)
    buf: list[bytes] = []
    have = 0
    for chunk in it:
        if chunk:
            buf.append(chunk)
            have += len(chunk)
        if have >= size:
            break
    head = b"".join(buf)

    def rest() -> Iterator[bytes]:
        if head:
            yield head
        yield from it

    return head[:size], rest()


def tap(chunks: Iterable[bytes], *observers: Callable[[bytes], object]) -> Iterator[bytes]:
    """Pass chunks through, showing each to the observers first (hash, count, progress)."""
    for chunk in chunks:
        for observe in observers:
            observe(chunk)
        yield chunk


class Tail:
    """Keeps the last `size` bytes that went through `observe` (e.g. a fixed-VHD footer)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._buf = bytearray()

    def observe(self, chunk: bytes) -> None:
        if len(chunk) >= self.size:
            self._buf[:] = chunk[-self.size :]
        else:
            self._buf += chunk
            del self._buf[: max(0, len(self._buf) - self.size)]

    @property
    def data(self) -> bytes:
        return bytes(self._buf)


class Counter:
    """Counts bytes; its `observe` is a tap observer."""

    def __init__(self, on_change: Callable[[int], None] | None = None) -> None:
        self.count = 0
        self._on_change = on_change

    def observe(self, chunk: bytes) -> None:
        self.count += len(chunk)
        if self._on_change:
            self._on_change(len(chunk))


class ChunkReader(io.RawIOBase):
    """A read-only file object over byte chunks (what tarfile and the decompressors want).

    Keeps an offset into the current chunk instead of slicing it: tarfile reads 10 KiB at
    a time, and re-slicing a 1 MiB chunk for each read copies it a hundred times.
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it: Iterator[bytes] = iter(chunks)
        self._buf = memoryview(b"")
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        while self._pos >= len(self._buf):
            try:
                self._buf = memoryview(next(self._it))
            except StopIteration:
                return 0
            self._pos = 0
        n = min(len(b), len(self._buf) - self._pos)
        b[:n] = self._buf[self._pos : self._pos + n]
        self._pos += n
        return n
