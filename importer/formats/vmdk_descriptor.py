"""A sparse VMDK's descriptor text, read the way qemu reads it (block/vmdk.c).

qemu does not parse descriptor lines: it searches the text with strstr. A key is found
anywhere, first occurrence first, inside a `#` comment or in the middle of another word,
and the value is whatever follows the key and two more characters up to the next `"`.
A line parser that skips comments or keeps the last duplicate key therefore disagrees
with qemu about which backing file and which createType an image has; every rule here
follows qemu's search instead, and errs on the side of refusing.
"""

from __future__ import annotations

from importer.formats.binary import unsafe

DESC_SIZE = 20 * 512
"""What qemu reads at sector 1 of a sparse file, whatever the header's descriptor offset."""

HINT = b"parentFileNameHint"
SELF_CONTAINED_TYPES = frozenset({b"monolithicSparse", b"streamOptimized"})
NO_PARENT = 0xFFFFFFFF
_C_SPACE = b" \t\n\v\f\r"
_HEX = frozenset(b"0123456789abcdefABCDEF")
_VALUE_MAX = 127  # qemu's createType buffer is 128 bytes; a longer value fails the open


def c_string(data: bytes) -> bytes:
    """`data` up to its first NUL, as C code sees the buffer."""
    return data.split(b"\0", 1)[0]


def parse_description(text: bytes, key: bytes) -> bytes | None:
    """The value qemu's vmdk_parse_description finds for `key` in `text`, or None."""
    at = text.find(key)
    if at < 0:
        return None
    start = at + len(key) + 2  # qemu skips '="' without looking at it
    if start >= len(text):
        return None
    end = text.find(b'"', start)
    if end < 0 or end - start > _VALUE_MAX:
        return None
    return text[start:end]


def scan_hex(text: bytes) -> int | None:
    """sscanf("%x") on `text`: None when no number is there or it has a sign."""
    i = 0
    while i < len(text) and text[i] in _C_SPACE:
        i += 1
    if text[i : i + 1] in (b"+", b"-"):
        return None  # C would negate it modulo 2**32: never what an honest image says
    if text[i : i + 2] in (b"0x", b"0X") and text[i + 2 : i + 3] and text[i + 2] in _HEX:
        i += 2
    start = i
    while i < len(text) and text[i] in _HEX:
        i += 1
    return int(text[start:i], 16) if i > start else None


def check(text: bytes, where: str) -> None:
    """Refuse a descriptor text (already cut at its first NUL) that names a parent or a type
    other than a self-contained sparse file."""
    if HINT in text:
        raise unsafe(f"VMDK {where} names a parent image (parentFileNameHint)")
    create_type = parse_description(text, b"createType")
    if create_type not in SELF_CONTAINED_TYPES:
        raise unsafe(
            f"VMDK createType {printable(create_type)} in the {where} "
            "is not monolithicSparse/streamOptimized"
        )
    at = text.find(b"parentCID")
    if at >= 0 and scan_hex(text[at + len(b"parentCID=") :]) != NO_PARENT:
        raise unsafe(f"VMDK image is a delta disk: its {where} names a parent (parentCID)")


def printable(value: bytes | None, limit: int = 32) -> str:
    """An untrusted header string made safe and short for a one-line error message."""
    if value is None:
        return "(missing)"
    text = value[:limit].decode("latin-1")
    cleaned = "".join(c if c.isascii() and c.isprintable() else "?" for c in text)
    return repr(cleaned + ("..." if len(value) > limit else ""))
