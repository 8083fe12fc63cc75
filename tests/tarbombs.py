"""Hostile tar streams for tests: huge extended headers, endless chains, member floods.

Each builder yields the uncompressed tar in pieces, so a bomb of a GiB never sits in the
test's memory; `gzipped` compresses such a stream into the small file an attacker would
serve. Headers are made by tarfile itself where it can (`TarInfo.tobuf`); what tarfile
will not write (GNU sparse extension blocks) is patched in by hand, checksum recomputed.
"""

from __future__ import annotations

import tarfile
import zlib
from collections.abc import Iterable, Iterator

BLOCK = tarfile.BLOCKSIZE
END = bytes(2 * BLOCK)


def header(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, **fields: object) -> bytes:
    """One 512-byte header as GNU tar writes it (without the data that follows)."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    for key, value in fields.items():
        setattr(info, key, value)
    return info.tobuf(tarfile.GNU_FORMAT)


def padding(size: int) -> bytes:
    return bytes(-size % BLOCK)


def repeated(byte: bytes, size: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    block = byte * chunk
    for _ in range(size // chunk):
        yield block
    yield byte * (size % chunk)


def pax_long_name(name_size: int) -> Iterator[bytes]:
    """A pax header whose `path` record is `name_size` bytes, then an empty file."""
    prefix = b" path="
    body = name_size + len(prefix) + 1
    length = body + len(str(body))
    if len(str(length)) != len(str(body)):
        length += 1
    yield header("././@PaxHeader", tarfile.XHDTYPE, length)
    yield str(length).encode() + prefix
    yield from repeated(b"a", name_size)
    yield b"\n" + padding(length)
    yield header("short-name") + END


def gnu_long_name(name_size: int, kind: bytes = tarfile.GNUTYPE_LONGNAME) -> Iterator[bytes]:
    """A GNU long name (or long link) of `name_size` bytes, then the member it names."""
    yield header("././@LongLink", kind, name_size + 1)
    yield from repeated(b"b", name_size)
    yield b"\0" + padding(name_size + 1)
    yield header("short-name", tarfile.SYMTYPE, linkname="x") + END


def declared_only(kind: bytes, size: int) -> Iterator[bytes]:
    """An extended header that declares `size` bytes and holds a few: the size alone counts."""
    yield header("././@PaxHeader", kind, size)
    yield b"1" * BLOCK


def long_name_chain(count: int) -> Iterator[bytes]:
    """`count` small GNU long-name headers in a row before one member."""
    for i in range(count):
        name = f"name-{i}".encode() + b"\0"
        yield header("././@LongLink", tarfile.GNUTYPE_LONGNAME, len(name))
        yield name + padding(len(name))
    yield header("member") + END


def _with_checksum(block: bytearray) -> bytes:
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def sparse_chain(extension_blocks: int) -> Iterator[bytes]:
    """An old-GNU sparse member ('S') whose map continues over `extension_blocks` blocks."""
    first = bytearray(header("sparse", tarfile.GNUTYPE_SPARSE, 0))
    first[482] = 1  # isextended
    yield _with_checksum(first)
    # Every slot of the map used, so that a reader that keeps the map grows with it.
    extension = bytearray(b"%011o\0%011o\0" % (1, 1) * 21 + bytes(BLOCK - 21 * 24))
    extension[504] = 1
    for _ in range(extension_blocks):
        yield bytes(extension)
    yield END


def pax_sparse_map(entries: int) -> Iterator[bytes]:
    """A GNU sparse 1.0 member: pax says so, and its data starts with a map of `entries`."""
    records = b""
    for key, value in (
        ("GNU.sparse.major", "1"),
        ("GNU.sparse.minor", "0"),
        ("GNU.sparse.name", "sparse"),
        ("GNU.sparse.realsize", "1"),
    ):
        body = f" {key}={value}\n".encode()
        records += str(len(body) + 2).encode() + body
    yield header("././@PaxHeader", tarfile.XHDTYPE, len(records))
    yield records + padding(len(records))
    map_size = len(f"{entries}\n") + entries * 2 * len("0\n")
    yield header("GNUSparseFile.0/sparse", tarfile.REGTYPE, map_size)
    yield f"{entries}\n".encode()
    yield from repeated(b"0\n", entries * 2, 1 << 18)
    yield padding(map_size) + END


def pax_global(records: dict[str, str]) -> bytes:
    """A pax global header ('g') carrying `records`."""
    return tarfile.TarInfo.create_pax_global_header(records)


def dot_entries(count: int) -> Iterator[bytes]:
    """`count` "./" directory entries: a member flood that writes nothing to disk."""
    entry = header("./", tarfile.DIRTYPE, mode=0o755)
    batch = entry * 2048
    for _ in range(count // 2048):
        yield batch
    yield entry * (count % 2048)
    yield END


def empty_files(count: int) -> Iterator[bytes]:
    """`count` distinct empty files."""
    for i in range(count):
        yield header(f"f{i}", mode=0o644)
    yield END


def gzipped(pieces: Iterable[bytes], level: int = 6) -> bytes:
    enc = zlib.compressobj(level, zlib.DEFLATED, 31)
    return b"".join(enc.compress(p) for p in pieces) + enc.flush()


def joined(pieces: Iterable[bytes]) -> bytes:
    return b"".join(pieces)
