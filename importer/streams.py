"""Small pure stream stages: peek at the head, tap every chunk, remember the tail.

Each works on an iterator of byte chunks and does no I/O, so the pipeline can stack them
(count and hash the bytes as served, then decompress, then sniff the format) and tests
can drive them with lists.
"""

from __future__ import annotations

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
