"""How targets cut an input into a chunk stream: odd sizes, so no boundary lines up."""

from __future__ import annotations

from collections.abc import Iterator

CHUNK = 511
"""One less than a tar block: every header and every data block straddles two chunks."""


def chunked(data: bytes, size: int = CHUNK) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]
