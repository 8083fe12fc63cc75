"""One verified view of a remote object: every reader sees the same bytes.

qemu-img inspects an image and then converts it, our own inspection reads its headers and
tables, a checksum or a registry digest covers it. If each of those read the source on
its own, a server could send clean bytes to the first reader and hostile ones to the next
(a backing file for the conversion only), or good bytes to the checksum and others to
qemu-img. `PinnedObject` is the one place they all read from:

- the object is fetched in aligned blocks through a ranged `fetch` that the source pins to
  one representation (If-Match/If-Range for HTTP, IfMatch for S3, a content-addressed
  blob for registries);
- each block gets a fingerprint when first loaded (Poly1305 under a random key that never
  leaves this process, so a server cannot aim for a collision); a block loaded again
  (evicted, then read again) must match it, or the import fails with SOURCE_CHANGED;
- small reads (header and table inspection) fetch only what they ask for; each is checked
  against its block when that block is loaded, and `finish` loads every block that still
  has an unchecked read;
- the whole object (or a window of it) is hashed in order as blocks are loaded: the
  user's checksum and the registry digest therefore cover exactly the bytes qemu-img read,
  and `finish` hashes what was not read and verifies before anything is committed;
- a fetch that breaks mid-block resumes at the byte it reached, after a backoff, so a
  dropped connection never reaches qemu-img.

Memory stays flat: `keep` blocks plus the ones being fetched (32 MiB with the defaults),
a fingerprint per block, and one per small read.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from cryptography.hazmat.primitives.poly1305 import Poly1305

from cdicontract.reasons import Reason
from importer.errors import ImportFailure, RestartRequired, TransientSourceError
from importer.resume import exponential_backoff

log = logging.getLogger(__name__)

Chunk = bytes | bytearray | memoryview
Fetch = Callable[[int, int], Iterable[Chunk]]
"""fetch(start, end_inclusive) -> chunks of exactly that byte range, pinned by the source.

Raises TransientSourceError for what a retry may fix (the block is resumed where it
broke), RestartRequired when the source says its representation changed, and a permanent
ImportFailure otherwise."""

BLOCK = 8 << 20
BLOCKS_KEPT = 2
HASH_AHEAD = 2
"""Blocks loaded ahead of the hashing that are held for it (beyond the cache)."""
MAX_ATTEMPTS = 8
_KEY = 32


class Verifier(Protocol):
    """A whole-object check fed in order: a checksum, a registry digest."""

    def update(self, data: bytes | bytearray | memoryview) -> None: ...

    def verify(self) -> None: ...


@dataclass
class _Feed:
    verifier: Verifier
    start: int
    end: int
    """The verifier sees bytes [start, end) of the object."""


@dataclass(frozen=True)
class _Piece:
    """A small read served before its block was loaded: checked when the block is."""

    offset: int
    length: int
    key: bytes
    tag: bytes


@dataclass
class _Stats:
    fetched: int = 0
    """Bytes received from the source, re-fetches and resumed parts included."""
    block_loads: int = 0
    piece_reads: int = 0
    resumes: int = 0
    reloads: int = 0
    pieces_checked: int = 0


def _tag(key: bytes, data: Chunk) -> bytes:
    return Poly1305.generate_tag(key, data)


def changed(description: str, what: str) -> ImportFailure:
    return ImportFailure(Reason.SOURCE_CHANGED, f"{description}: {what}")


class PinnedObject:
    """A remote object of `size` bytes that every reader of this import reads through."""

    def __init__(
        self,
        fetch: Fetch,
        size: int,
        *,
        description: str,
        block: int = BLOCK,
        keep: int = BLOCKS_KEPT,
        max_attempts: int = MAX_ATTEMPTS,
        backoff: Callable[[int], float] = exponential_backoff,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if size < 0 or block <= 0 or keep < 1:
            raise ValueError("bad PinnedObject geometry")
        self._fetch = fetch
        self.size = size
        self.description = description
        self._block = block
        self._keep = keep
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._sleep = sleep
        self._blocks: OrderedDict[int, bytearray] = OrderedDict()
        self._inflight: dict[int, Future[bytearray]] = {}
        self._fingerprints: dict[int, tuple[bytes, bytes]] = {}
        self._pending: dict[int, list[_Piece]] = {}
        self._feeds: list[_Feed] = []
        self._cursor = 0  # the next block to hash, in order
        self._unhashed: dict[int, bytearray] = {}  # loaded, not hashed yet (HASH_AHEAD)
        self._lock = threading.Lock()  # cache, fingerprints, pending pieces
        self._hash_lock = threading.Lock()  # in-order hashing
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="pinned-fetch")
        # Hashing runs on its own thread, in order, so a reader waiting for a block never
        # waits for that block's checksum too.
        self._hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pinned-hash")
        self._closed = False
        self.failure: ImportFailure | None = None
        """The first failure a reader got (kept for the pipeline: qemu-img only says EIO)."""
        self.stats = _Stats()

    @property
    def blocks(self) -> int:
        return -(-self.size // self._block)

    # -- verifiers ------------------------------------------------------------------------

    def add_verifier(self, verifier: Verifier, start: int = 0, end: int | None = None) -> None:
        """Feed `verifier` bytes [start, end) in order; `finish` calls its `verify`.

        Must be added before the hashing passes `start` (blocks are hashed as they load).
        """
        stop = self.size if end is None else end
        if not 0 <= start <= stop <= self.size:
            raise ValueError("verifier range outside the object")
        with self._hash_lock:
            if self._cursor * self._block > start:
                raise RuntimeError("verifier added after its bytes were hashed")
            self._feeds.append(_Feed(verifier, start, stop))

    # -- blocks ---------------------------------------------------------------------------

    def _range(self, index: int) -> tuple[int, int]:
        start = index * self._block
        return start, min(start + self._block, self.size)

    def _download(self, start: int, end: int) -> bytearray:
        """Bytes [start, end) from the source, resuming a broken fetch where it stopped."""
        want = end - start
        data = bytearray(want)
        view = memoryview(data)
        got = 0
        failures = 0
        with view:
            while got < want:
                try:
                    for chunk in self._fetch(start + got, end - 1):
                        n = len(chunk)
                        if got + n > want:
                            raise ImportFailure(
                                Reason.SERVER_ERROR,
                                f"{self.description}: more bytes than asked for at {start + got}",
                            )
                        view[got : got + n] = chunk
                        got += n
                        with self._lock:
                            self.stats.fetched += n
                        failures = 0
                    if got < want:
                        raise TransientSourceError(
                            f"{self.description}: range ended at byte {start + got} of {end}"
                        )
                except RestartRequired as e:
                    raise changed(self.description, e.message) from e
                except TransientSourceError as e:
                    failures += 1
                    if failures >= self._max_attempts or self._closed:
                        raise
                    log.info(
                        "ranged read broke, resuming src=%s at=%d attempt=%d error=%s",
                        self.description, start + got, failures, e.message,
                    )
                    with self._lock:
                        self.stats.resumes += 1
                    self._sleep(self._backoff(failures))
        return data

    def _load(self, index: int) -> bytearray:
        start, end = self._range(index)
        data = self._download(start, end)
        self._check(index, data)
        with self._lock:
            self.stats.block_loads += 1
            self._blocks[index] = data
            self._blocks.move_to_end(index)
            while len(self._blocks) > self._keep:
                self._blocks.popitem(last=False)
            # The block is in the cache now: a read-ahead's future must not keep it alive
            # after it is evicted (a reader already waiting holds its own reference).
            self._inflight.pop(index, None)
        self._offer(index, data)
        return data

    def _check(self, index: int, data: bytearray) -> None:
        """Record the block's fingerprint, or compare with it; check small reads inside it."""
        with self._lock:
            known = self._fingerprints.get(index)
            pieces = self._pending.pop(index, [])
        if known is None:
            key = os.urandom(_KEY)
            fingerprint = (key, _tag(key, data))
            with self._lock:
                known = self._fingerprints.setdefault(index, fingerprint)
            if known is not fingerprint and _tag(known[0], data) != known[1]:
                raise self._changed_block(index)
        else:
            with self._lock:
                self.stats.reloads += 1
            if _tag(known[0], data) != known[1]:
                raise self._changed_block(index)
        start = index * self._block
        with memoryview(data) as view:
            for piece in pieces:
                rel = piece.offset - start
                if _tag(piece.key, view[rel : rel + piece.length]) != piece.tag:
                    raise changed(
                        self.description,
                        f"bytes {piece.offset}-{piece.offset + piece.length - 1} differ "
                        "between two reads",
                    )
                with self._lock:
                    self.stats.pieces_checked += 1

    def _changed_block(self, index: int) -> ImportFailure:
        start, end = self._range(index)
        return changed(
            self.description, f"bytes {start}-{end - 1} differ between two reads"
        )

    def _offer(self, index: int, data: bytearray) -> None:
        """Give a loaded block to the hasher if it will need it soon, and let it run."""
        if not self._feeds:
            return
        with self._lock:
            if self._cursor <= index < self._cursor + HASH_AHEAD:
                self._unhashed[index] = data
        if not self._closed:
            self._hasher.submit(self._drain)

    def _drain(self) -> None:
        """Hash blocks in order while the next one is at hand (held for us, or cached).

        Runs on the hasher thread (and `finish` waits for it).
        """
        with self._hash_lock:
            while self._cursor < self.blocks:
                with self._lock:
                    data = self._unhashed.pop(self._cursor, None)
                    if data is None:
                        data = self._blocks.get(self._cursor)
                if data is None:
                    return
                self._feed(self._cursor, data)
                with self._lock:
                    self._cursor += 1

    def _feed(self, index: int, data: bytearray) -> None:
        start, end = self._range(index)
        with memoryview(data) as view:
            for feed in self._feeds:
                lo, hi = max(start, feed.start), min(end, feed.end)
                if lo < hi:
                    feed.verifier.update(view[lo - start : hi - start])

    def _future(self, index: int) -> Future[bytearray]:
        """The pending load of `index`, started if needed (call with the lock held)."""
        fut = self._inflight.get(index)
        if fut is None:
            fut = self._pool.submit(self._load, index)
            self._inflight[index] = fut
        return fut

    def _get(self, index: int, *, read_ahead: bool = True) -> bytearray:
        with self._lock:
            data = self._blocks.get(index)
            if data is not None:
                self._blocks.move_to_end(index)
            else:
                fut = self._future(index)
            ahead = index + 1
            if read_ahead and ahead < self.blocks and ahead not in self._blocks:
                self._future(ahead)
        if data is not None:
            return data
        try:
            return fut.result()
        except TransientSourceError as e:
            if e.reason is Reason.SOURCE_CHANGED:
                raise
            # A read-ahead that gave up must not decide for the read that needs the
            # block: one more direct load, with its own retries.
            return self._load(index)
        finally:
            with self._lock:
                if self._inflight.get(index) is fut:
                    del self._inflight[index]  # a failed load never reached the cache

    def _block_for_reader(self, index: int, *, read_ahead: bool = True) -> bytearray:
        """`_get`, remembering the failure for the pipeline (qemu-img only sees EIO)."""
        try:
            return self._get(index, read_ahead=read_ahead)
        except ImportFailure as e:
            if self.failure is None:
                self.failure = e
            raise

    # -- readers --------------------------------------------------------------------------

    def serve(self, start: int, end: int) -> Iterator[memoryview]:
        """Bytes [start, end] (inclusive) as views of cached blocks (the range proxy's fetch)."""
        if start < 0 or end >= self.size or start > end:
            raise ValueError(f"range {start}-{end} outside the object")
        pos = start
        while pos <= end:
            index = pos // self._block
            data = self._block_for_reader(index)
            offset = pos - index * self._block
            # A view, not a copy: the block stays alive as long as the view is being sent.
            piece = memoryview(data)[offset : offset + (end - pos + 1)]
            yield piece
            pos += len(piece)

    def read_at(self, offset: int, length: int) -> bytes:
        """A small read (header inspection): from the cache, else fetched alone and checked
        against its block later. Shorter than `length` only at the end of the object."""
        if offset < 0 or length < 0:
            raise ValueError("negative read")
        end = min(self.size, offset + length)
        out = bytearray()
        pos = offset
        while pos < end:
            index = pos // self._block
            block_end = min(end, (index + 1) * self._block)
            try:
                out += self._piece(index, pos, block_end)
            except ImportFailure as e:
                if self.failure is None:
                    self.failure = e
                raise
            pos = block_end
        return bytes(out)

    def _piece(self, index: int, start: int, end: int) -> bytes:
        with self._lock:
            data = self._blocks.get(index)
        if data is not None:
            rel = start - index * self._block
            return bytes(data[rel : rel + end - start])
        piece = self._download(start, end)
        key = os.urandom(_KEY)
        record = _Piece(start, end - start, key, _tag(key, piece))
        with self._lock:
            self._pending.setdefault(index, []).append(record)
            self.stats.piece_reads += 1
        return bytes(piece)

    # -- the end --------------------------------------------------------------------------

    def finish(self) -> None:
        """Hash what was not read yet, check every small read, run the verifiers.

        Raises the first reader's failure if there was one, SOURCE_CHANGED if any bytes
        differed between two reads, and whatever a verifier raises on a mismatch.
        """
        if self.failure is not None:
            raise self.failure
        while self._feeds:
            with self._lock:
                cursor = self._cursor
            if cursor >= self.blocks:
                break
            data = self._block_for_reader(cursor)
            with self._lock:
                self._unhashed[cursor] = data
            self._hasher.submit(self._drain).result()
        with self._lock:
            unchecked = sorted(self._pending)
        for index in unchecked:
            self._block_for_reader(index, read_ahead=False)
        with self._lock:
            left = sum(len(p) for p in self._pending.values())
        with self._hash_lock:
            unhashed = bool(self._feeds) and self._cursor < self.blocks
        if left or unhashed:
            raise ImportFailure(
                Reason.INTERNAL, f"{self.description}: {left} reads left unchecked"
            )
        for feed in self._feeds:
            feed.verifier.verify()

    def close(self) -> None:
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._hasher.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            self._blocks.clear()
            self._unhashed.clear()


@dataclass(frozen=True)
class Window:
    """The image inside a pinned object: the whole of it, or a registry layer's disk file.

    `companions` are other objects whose bytes decided something (the registry layers above
    the disk's, whose whiteouts were read): they are verified by `finish` too.
    """

    object: PinnedObject
    offset: int
    length: int
    name: str = "image"
    companions: Sequence[PinnedObject] = ()

    def fetch(self, start: int, end: int) -> Iterator[memoryview]:
        """The range proxy's fetch: bytes [start, end] of the image."""
        return self.object.serve(self.offset + start, self.offset + end)

    def read_at(self, offset: int, length: int) -> bytes:
        """`formats.ReadAt` over the image."""
        if offset >= self.length:
            return b""
        return self.object.read_at(self.offset + offset, min(length, self.length - offset))

    def add_verifier(self, verifier: Verifier) -> None:
        """Feed `verifier` the image's bytes (not the object's) in order."""
        self.object.add_verifier(verifier, self.offset, self.offset + self.length)

    @property
    def failure(self) -> ImportFailure | None:
        for obj in (self.object, *self.companions):
            if obj.failure is not None:
                return obj.failure
        return None

    def finish(self) -> None:
        for obj in (*self.companions, self.object):
            obj.finish()

    def close(self) -> None:
        for obj in (self.object, *self.companions):
            obj.close()
