"""The wire format of a host-assisted clone stream (cloner -> upload server in clone mode).

One stream is the body of one `POST CLONE_PATH` (chunked). All integers big-endian.

Header (32 bytes)::

    magic    8s  b"CDICLONE"
    version  H   1
    content  B   0 kubevirt (an image: a file's or a device's bytes), 1 archive (a tar)
    mode     B   0 Filesystem, 1 Block (the source's volume mode)
    flags    I   0
    size     Q   the logical size in bytes (the image's, the device's, or the tar's length)
    start    Q   where this request's frames begin: 0, or the offset the server said it
                 holds when the cloner resumes (see RESUME_HEADER)

Frames (24-byte frame header, then `payload_len` bytes)::

    kind        B   DATA_RAW 1, DATA_ZSTD 2, END 3
    flags       B   0
    reserved    H   0
    payload_len I
    offset      Q
    length      Q

- DATA_RAW: `length` bytes of content at `offset`; payload_len == length.
- DATA_ZSTD: one zstd frame that decompresses to exactly `length` bytes; it is only sent
  when it is smaller, so payload_len < length.
- Data extents are in ascending order and never overlap: offset >= the previous extent's
  end (and >= `start`), offset + length <= size, 0 < length <= MAX_EXTENT.
- Holes are implied: a range no DATA frame covers reads as zeros on the target (the
  receiver zeroes it on a device; a fresh file is a hole there already).
- END: offset == size, length == 0, payload = DIGEST_SIZE bytes, the SHA-256 of, for
  every data extent of the whole stream from offset 0 (across resumed requests), in
  order: `pack(">QQ", offset, length) + data`. The receiver checks it before it reports
  success; nothing may follow END. (SHA-256 rather than BLAKE2b: OpenSSL's runs on the
  CPU's SHA instructions, several times faster than hashlib's BLAKE2b, and both ends
  hash every byte.)

The cloner cuts extents deterministically from the content (aligned CHUNK windows, data
runs of whole BLOCKs), so a resumed stream has the same extents, and the same digest, as
an uninterrupted one.

Resume: `HEAD CLONE_PATH` answers 200 with `RESUME_HEADER: <offset>`, the end of the last
data extent the server has written (0 when it has none). A POST whose header's `start`
is not that offset, or whose content/mode/size differ from the stream being received,
is answered 409 with the same header. A POST while another is being received: 409 too.

The decoder here is pure and incremental (`Decoder.feed` -> events); its memory is one
frame at most. Every violation raises `StreamError` with a precise message.
"""

from __future__ import annotations

import collections
import hashlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum

import zstandard

MAGIC = b"CDICLONE"
VERSION = 1
HEADER = struct.Struct(">8sHBBIQQ")
FRAME = struct.Struct(">BBHIQQ")
MAX_EXTENT = 4 << 20
"""The largest data extent (and payload) in one frame."""
CHUNK = MAX_EXTENT
"""The cloner cuts the content in aligned windows of this size: no extent crosses one."""
BLOCK = 64 << 10
"""The granularity of zero detection: a data run is made of whole aligned blocks."""
DIGEST_SIZE = 32
DIGEST_NAME = "sha256"
RESUME_HEADER = "Clone-Offset"
MEDIA_TYPE = "application/x-cdi-clone-stream"
"""The Content-Type of the POST body."""


class Kind(IntEnum):
    DATA_RAW = 1
    DATA_ZSTD = 2
    END = 3


class Content(IntEnum):
    KUBEVIRT = 0
    ARCHIVE = 1


class Mode(IntEnum):
    FILESYSTEM = 0
    BLOCK = 1

    @property
    def volume_mode(self) -> str:
        return "Filesystem" if self is Mode.FILESYSTEM else "Block"

    @classmethod
    def from_volume_mode(cls, text: str) -> Mode:
        for mode in cls:
            if mode.volume_mode.lower() == text.strip().lower():
                return mode
        raise ValueError(f"volume mode must be Filesystem or Block, got {text[:40]!r}")


class StreamError(ValueError):
    """A malformed, hostile or inconsistent stream; the message says what and where."""


@dataclass(frozen=True)
class Header:
    content: Content
    mode: Mode
    size: int
    start: int = 0

    def encode(self) -> bytes:
        return HEADER.pack(MAGIC, VERSION, self.content, self.mode, 0, self.size, self.start)

    def same_stream(self, other: Header) -> bool:
        """Whether `other` (a resumed request's header) continues this stream."""
        return (self.content, self.mode, self.size) == (other.content, other.mode, other.size)


@dataclass(frozen=True)
class Data:
    offset: int
    data: bytes

    @property
    def end(self) -> int:
        return self.offset + len(self.data)


@dataclass(frozen=True)
class End:
    digest: bytes


Event = Header | Data | End


def parse_header(raw: bytes) -> Header:
    magic, version, content, mode, flags, size, start = HEADER.unpack(raw)
    if magic != MAGIC:
        raise StreamError("not a clone stream (bad magic)")
    if version != VERSION:
        raise StreamError(f"clone stream version {version} is not supported (want {VERSION})")
    try:
        header = Header(Content(content), Mode(mode), size, start)
    except ValueError:
        raise StreamError(f"unknown content {content} or volume mode {mode}") from None
    if flags:
        raise StreamError(f"unknown header flags {flags:#x}")
    if start > size:
        raise StreamError(f"stream starts at {start}, beyond its size {size}")
    return header


# ---- the digest ---------------------------------------------------------------------------


class Digest:
    """The running digest of the data extents (see the module docstring)."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()

    def update(self, offset: int, data: bytes | memoryview) -> None:
        self._h.update(struct.pack(">QQ", offset, len(data)))
        self._h.update(data)

    def digest(self) -> bytes:
        return self._h.digest()

    def copy(self) -> Digest:
        clone = Digest()
        clone._h = self._h.copy()
        return clone


# ---- encoding -----------------------------------------------------------------------------


def encode_data(offset: int, data: bytes | memoryview, compressed: bytes | None = None) -> bytes:
    """One DATA frame; `compressed` (a zstd frame of `data`) is used when it is smaller."""
    return b"".join(encode_data_parts(offset, data, compressed))


def encode_data_parts(
    offset: int, data: bytes | memoryview, compressed: bytes | None = None
) -> tuple[bytes, bytes | memoryview]:
    """One DATA frame as (frame header, payload): a sender writes both without joining."""
    length = len(data)
    if not 0 < length <= MAX_EXTENT:
        raise ValueError(f"extent length {length} out of range")
    if compressed is not None and len(compressed) < length:
        return FRAME.pack(Kind.DATA_ZSTD, 0, 0, len(compressed), offset, length), compressed
    return FRAME.pack(Kind.DATA_RAW, 0, 0, length, offset, length), data


def encode_end(size: int, digest: bytes) -> bytes:
    return FRAME.pack(Kind.END, 0, 0, len(digest), size, 0) + digest


def data_runs(buf: bytes | memoryview, base: int, block: int = BLOCK) -> Iterator[tuple[int, int]]:
    """(start, end) of the runs of non-zero blocks in `buf` (offsets relative to it), with
    blocks aligned to absolute offsets (`base` is where `buf` starts).

    A block whose first or last byte is not zero is data at once; only the others are
    compared whole, as bytes (memcmp; a memoryview compares item by item, 60x slower)."""
    data = buf if isinstance(buf, bytes) else bytes(buf)
    zero = bytes(block)
    n = len(data)
    pos = 0
    run_start: int | None = None
    while pos < n:
        end = min(n, pos + block - (base + pos) % block)
        is_zero = (
            data[pos] == 0
            and data[end - 1] == 0
            and data[pos:end] == (zero if end - pos == block else bytes(end - pos))
        )
        if is_zero:
            if run_start is not None:
                yield run_start, pos
                run_start = None
        elif run_start is None:
            run_start = pos
        pos = end
    if run_start is not None:
        yield run_start, n


# ---- decoding -----------------------------------------------------------------------------


class Decoder:
    """Incremental parser of one request's stream; refuses anything out of contract.

    `expected_start` is where the receiver's content stands (its resume offset): a header
    whose `start` differs is refused. Events come out in stream order; `finished` is true
    once END was parsed; `close()` raises if the stream was cut short.
    """

    def __init__(self, max_extent: int = MAX_EXTENT) -> None:
        # The unparsed bytes, as the chunks that brought them: a payload is joined from
        # them once (one copy), or handed on as is when one chunk is exactly it.
        self._parts: collections.deque[bytes] = collections.deque()
        self._skip = 0  # bytes of _parts[0] already parsed
        self._have = 0  # unparsed bytes in _parts
        self._max = max_extent
        self.header: Header | None = None
        self._next = 0
        self.finished = False
        self._dctx = zstandard.ZstdDecompressor()

    def feed(self, chunk: bytes) -> list[Event]:
        if self.finished and chunk:
            raise StreamError("bytes after the END frame")
        if chunk:
            self._parts.append(bytes(chunk))
            self._have += len(chunk)
        events: list[Event] = []
        while not self.finished:
            event = self._next_event()
            if event is None:
                break
            events.append(event)
        if self.finished and self._available():
            raise StreamError("bytes after the END frame")
        return events

    def _next_event(self) -> Event | None:
        if self.header is None:
            if self._available() < HEADER.size:
                return None
            self.header = parse_header(self._take(HEADER.size))
            self._next = self.header.start
            return self.header
        if self._available() < FRAME.size:
            return None
        kind, flags, reserved, payload_len, offset, length = FRAME.unpack(self._peek(FRAME.size))
        where = f"frame at offset {offset}"
        if flags or reserved:
            raise StreamError(f"{where}: unknown flags")
        if kind == Kind.END:
            if payload_len != DIGEST_SIZE or length != 0:
                raise StreamError(f"END frame of payload {payload_len} and length {length}")
        elif kind in (Kind.DATA_RAW, Kind.DATA_ZSTD):
            if not 0 < length <= self._max:
                raise StreamError(f"{where}: extent length {length} (max {self._max})")
            if kind == Kind.DATA_RAW and payload_len != length:
                raise StreamError(f"{where}: raw payload {payload_len} != length {length}")
            if kind == Kind.DATA_ZSTD and not 0 < payload_len < length:
                raise StreamError(f"{where}: compressed payload {payload_len} >= length {length}")
        else:
            raise StreamError(f"unknown frame kind {kind}")
        if self._available() < FRAME.size + payload_len:
            return None
        self._take(FRAME.size)
        payload = self._take(payload_len)
        size = self.header.size
        if kind == Kind.END:
            if offset != size:
                raise StreamError(f"END frame at {offset}, the stream's size is {size}")
            self.finished = True
            return End(payload)
        if offset < self._next:
            raise StreamError(f"{where}: overlaps or goes back (next allowed {self._next})")
        if offset + length > size:
            raise StreamError(f"{where}: extent of {length} bytes ends beyond the size {size}")
        data = payload if kind == Kind.DATA_RAW else self._inflate(payload, length, where)
        self._next = offset + length
        return Data(offset, data)

    def _available(self) -> int:
        return self._have

    def _peek(self, n: int) -> bytes:
        """The next `n` (available) bytes, not consumed."""
        first = self._parts[0]
        if len(first) - self._skip >= n:
            return first[self._skip : self._skip + n]
        out = bytearray(first[self._skip :])
        for i in range(1, len(self._parts)):
            out += self._parts[i]
            if len(out) >= n:
                break
        return bytes(out[:n])

    def _take(self, n: int) -> bytes:
        """Consume the next `n` (available) bytes."""
        if n == 0:
            return b""
        first = self._parts[0]
        if self._skip == 0 and len(first) == n:  # the common big-chunk case: no copy
            self._parts.popleft()
            self._have -= n
            return first
        pieces: list[bytes | memoryview] = []
        need = n
        while need:
            part = self._parts[0]
            rest = len(part) - self._skip
            if rest <= need:
                pieces.append(memoryview(part)[self._skip :] if self._skip else part)
                self._parts.popleft()
                self._skip = 0
                need -= rest
            else:
                pieces.append(memoryview(part)[self._skip : self._skip + need])
                self._skip += need
                need = 0
        self._have -= n
        return b"".join(pieces)

    def _inflate(self, payload: bytes, length: int, where: str) -> bytes:
        try:
            # The frame must declare its size, and declare `length`: libzstd then stops at
            # it (a bomb is refused before anything is inflated).
            declared = zstandard.frame_content_size(payload)
            if declared != length:
                raise StreamError(
                    f"{where}: zstd frame declares {declared} bytes, the extent is {length}"
                )
            inflater = self._dctx.decompressobj()
            out = inflater.decompress(payload)
        except zstandard.ZstdError as e:
            raise StreamError(f"{where}: bad zstd payload: {e}") from None
        if len(out) != length or not inflater.eof or inflater.unused_data:
            raise StreamError(f"{where}: zstd payload is not one frame of {length} bytes")
        return out

    def close(self) -> None:
        """The body ended: refuse a stream cut short (no END, or a partial frame)."""
        if self.finished:
            return
        if self.header is None:
            raise StreamError("truncated stream: no complete header")
        raise StreamError(f"truncated stream: no END frame (data up to {self._next})")
