"""The disk image a `formats` input stands for: the bytes themselves, or a sparse container.

Real images keep headers far apart (VHDX: 64 KiB, 128 KiB, 192 KiB, then metadata past
2 MiB), so a seed truncated to its first KiB would stop at "truncated" and mutations of a
megabyte of zeros would be wasted. A container input lists only the non-zero extents and
the true file size; holes read as zeros, as in a sparse file:

    MAGIC | size: u64le | (offset: u64le | length: u32le | bytes)*

A size of 2**64-1 means "unknown", as for a stream without Content-Length: `inspect` then
gets no file size and the file ends with its last extent. Any other input is the image
itself, of known size. Decoding never fails: a cut-off extent keeps what
is there, so every mutation still means some image.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

MAGIC = b"cdi-fuzz-sparse\n"
_SIZE = struct.Struct("<Q")
_EXTENT = struct.Struct("<QI")
UNKNOWN = 2**64 - 1


class Image:
    """A read-only file made of extents over zeros (later extents win)."""

    def __init__(self, size: int, extents: list[tuple[int, bytearray]], sparse: bool) -> None:
        self.extents = extents
        self.sparse = sparse
        self.known_size: int | None = None if size == UNKNOWN else size
        """What `inspect` is told: None when the source would not know the length."""
        self.size = size if size != UNKNOWN else max((o + len(d) for o, d in extents), default=0)
        self._encoded_size = size

    @classmethod
    def decode(cls, data: bytes) -> Image:
        if not data.startswith(MAGIC):
            return cls(len(data), [(0, bytearray(data))], sparse=False)
        pos = len(MAGIC)
        size = _SIZE.unpack_from(data, pos)[0] if len(data) >= pos + _SIZE.size else 0
        pos += _SIZE.size
        extents = []
        while pos + _EXTENT.size <= len(data):
            offset, length = _EXTENT.unpack_from(data, pos)
            pos += _EXTENT.size
            extents.append((offset, bytearray(data[pos : pos + length])))
            pos += length
        return cls(size, extents, sparse=True)

    def encode(self) -> bytes:
        if not self.sparse:
            return bytes(self.extents[0][1]) if self.extents else b""
        parts = [MAGIC, _SIZE.pack(self._encoded_size)]
        for offset, data in self.extents:
            parts += [_EXTENT.pack(offset, len(data)), bytes(data)]
        return b"".join(parts)

    def read_at(self, offset: int, length: int) -> bytes:
        """The file's bytes at `offset`: short only at the end of the file, like pread."""
        end = min(offset + length, self.size)
        if offset >= end:
            return b""
        out = bytearray(end - offset)
        for start, data in self.extents:
            lo, hi = max(start, offset), min(start + len(data), end)
            if lo < hi:
                out[lo - offset : hi - offset] = data[lo - start : hi - start]
        return bytes(out)

    def write_at(self, offset: int, value: bytes) -> bool:
        """Overwrite bytes inside one extent (checksum repair); False if no extent holds them."""
        for start, data in reversed(self.extents):
            if start <= offset and offset + len(value) <= start + len(data):
                data[offset - start : offset - start + len(value)] = value
                return True
        return False


def sparse(size: int | None, extents: Iterator[tuple[int, bytes]]) -> bytes:
    """Encode a container (used by the seed maker); size None: unknown to `inspect`."""
    size = UNKNOWN if size is None else size
    return Image(size, [(o, bytearray(d)) for o, d in extents], sparse=True).encode()
