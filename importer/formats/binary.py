"""Bounded reads and the four ways an image can be refused.

Every parser reads through `read_exact`, so a file shorter than its header declares is an
`INVALID_IMAGE` rather than a `struct.error` or an `IndexError` deep in a parser. A header
that parses but whose tables point past the end of the file is `CORRUPT_IMAGE`: qemu would
read zeros there and convert a truncated download "successfully".
"""

from __future__ import annotations

import struct

from cdicontract.reasons import Reason
from importer.errors import ImportFailure
from importer.formats.model import ReadAt

MAX_READ = 1024 * 1024
"""No single header read is larger: a hostile length field must never size a read."""


def invalid(message: str) -> ImportFailure:
    return ImportFailure(Reason.INVALID_IMAGE, message)


def unsafe(message: str) -> ImportFailure:
    return ImportFailure(Reason.UNSAFE_IMAGE, message)


def unsupported(message: str) -> ImportFailure:
    return ImportFailure(Reason.UNSUPPORTED_FORMAT, message)


def corrupt(message: str) -> ImportFailure:
    return ImportFailure(Reason.CORRUPT_IMAGE, message)


def beyond_end(what: str, offset: int, end: int, file_size: int) -> ImportFailure:
    """`what`, spanning [offset, end), does not fit in the `file_size` bytes served."""
    return corrupt(
        f"{what} at offset {offset} ends at {end}, beyond the end of the image "
        f"({file_size} bytes): the file is truncated or its tables are corrupt"
    )


def read_exact(read_at: ReadAt, offset: int, length: int, what: str) -> bytes:
    """Read exactly `length` bytes at `offset` or fail with INVALID_IMAGE naming `what`."""
    if offset < 0 or length < 0 or length > MAX_READ:
        raise invalid(f"{what}: out-of-range read of {length} bytes at offset {offset}")
    data = read_at(offset, length)
    if len(data) < length:
        raise invalid(f"{what} is truncated: expected {length} bytes at offset {offset}")
    return data[:length]


def u8(data: bytes, offset: int) -> int:
    return data[offset]


def be16(data: bytes, offset: int) -> int:
    return int(struct.unpack_from(">H", data, offset)[0])


def be32(data: bytes, offset: int) -> int:
    return int(struct.unpack_from(">I", data, offset)[0])


def be64(data: bytes, offset: int) -> int:
    return int(struct.unpack_from(">Q", data, offset)[0])


def le16(data: bytes, offset: int) -> int:
    return int(struct.unpack_from("<H", data, offset)[0])


def le32(data: bytes, offset: int) -> int:
    return int(struct.unpack_from("<I", data, offset)[0])


def le64(data: bytes, offset: int) -> int:
    return int(struct.unpack_from("<Q", data, offset)[0])


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class Window:
    """Reads a bounded region of the file lazily, in blocks, caching what it fetched.

    Used to walk variable-length structures (qcow2 header extensions) without one read
    per field and without ever reading past `end`.
    """

    BLOCK = 64 * 1024

    def __init__(self, read_at: ReadAt, end: int, what: str) -> None:
        self._read_at = read_at
        self._end = end
        self._what = what
        self._blocks: dict[int, bytes] = {}

    def get(self, offset: int, length: int) -> bytes:
        if offset < 0 or offset + length > self._end:
            raise invalid(f"{self._what} extends beyond its bounds (offset {offset})")
        out = bytearray()
        pos = offset
        while len(out) < length:
            index = pos // self.BLOCK
            block = self._blocks.get(index)
            if block is None:
                start = index * self.BLOCK
                block = self._read_at(start, min(self.BLOCK, self._end - start))
                self._blocks[index] = block
            inner = pos - index * self.BLOCK
            piece = block[inner : inner + length - len(out)]
            if not piece:
                raise invalid(f"{self._what} is truncated at offset {pos}")
            out += piece
            pos += len(piece)
        return bytes(out)
