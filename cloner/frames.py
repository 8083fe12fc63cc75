"""Extents -> the encoded frames of one request, compressed where it pays, with the digest.

Reading and compressing run ahead of the network in a producer thread and a small pool
(zstd and pread release the GIL), through a bounded queue: memory stays a few frames.
Each extent's sample is compressed first; the whole extent is compressed only when that
pays on this wire (`cloner.pays`: random data never, compressible data when the network,
not the CPU, is what limits the clone). The consumer measures the wire as it sends.

For resume, the digest of the stream up to the end of each of the last frames sent is
kept; a resume from an older offset rebuilds it by reading the source again (nothing
is sent for that part).
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import zstandard

from cdicontract import clonestream as cs
from cloner.pays import WireRate, pays

Extents = Callable[[int], Iterator[tuple[int, bytes]]]
"""start -> (offset, data) of every extent ending after start."""

SAMPLE = 64 << 10
CHECKPOINTS = 64
AHEAD = 3


@dataclass
class Counters:
    wire_bytes: int = 0
    """Everything sent, headers included, across all requests (resent bytes too)."""
    data_bytes: int = 0
    """Content bytes of the data extents sent (before compression)."""


@dataclass(frozen=True)
class _Pending:
    offset: int
    data: bytes
    frame: Future[tuple[bytes, bytes | memoryview]]


class Encoder:
    """Thread-safe: one zstd compressor per thread."""

    def __init__(self, level: int, wire: WireRate | None = None, workers: int = 1) -> None:
        self._level = level
        self._local = threading.local()
        self.wire = wire or WireRate()
        self._workers = workers

    def _compressor(self) -> zstandard.ZstdCompressor:
        c: zstandard.ZstdCompressor | None = getattr(self._local, "c", None)
        if c is None:
            c = self._local.c = zstandard.ZstdCompressor(level=self._level)
        return c

    def frame(self, offset: int, data: bytes) -> tuple[bytes, bytes | memoryview]:
        compressed = None
        if self._level > 0:
            c = self._compressor()
            sample = data if len(data) <= SAMPLE else data[:SAMPLE]
            began = time.perf_counter()
            squeezed = c.compress(sample)
            took = time.perf_counter() - began
            ratio = len(squeezed) / len(sample)
            if pays(ratio, took / len(sample), self.wire.seconds_per_byte, self._workers):
                compressed = squeezed if sample is data else c.compress(data)
        return cs.encode_data_parts(offset, data, compressed)


class FrameSource:
    def __init__(
        self,
        header: cs.Header,
        extents: Extents,
        *,
        level: int = 1,
        threads: int = 2,
        wire: WireRate | None = None,
    ) -> None:
        self._template = header
        self._extents = extents
        self._threads = threads
        self._encoder = Encoder(level, wire or WireRate(), threads)
        self._checkpoints: collections.OrderedDict[int, cs.Digest] = collections.OrderedDict()
        self._checkpoints[0] = cs.Digest()
        self.counters = Counters()

    @property
    def size(self) -> int:
        return self._template.size

    def digest_at(self, start: int) -> cs.Digest:
        """The digest of every extent before `start` (a boundary of this stream)."""
        kept = self._checkpoints.get(start)
        if kept is not None:
            return kept.copy()
        digest = cs.Digest()
        for offset, data in self._extents(0):
            if offset >= start:
                break
            digest.update(offset, data)
        return digest

    def frames(self, start: int) -> Iterator[bytes]:
        """The body of one request from `start`: header, data frames, END."""
        digest = self.digest_at(start)
        head = cs.Header(self._template.content, self._template.mode, self.size, start).encode()
        self.counters.wire_bytes += len(head)
        yield head
        for offset, data, (frame_header, payload) in self._encoded(start):
            digest.update(offset, data)
            wire = len(frame_header) + len(payload)
            self.counters.wire_bytes += wire
            self.counters.data_bytes += len(data)
            began = time.perf_counter()
            yield frame_header
            yield payload  # type: ignore[misc]  # requests sends any buffer
            self._encoder.wire.observe(time.perf_counter() - began, wire)
            self._checkpoint(offset + len(data), digest)
        end = cs.encode_end(self.size, digest.digest())
        self.counters.wire_bytes += len(end)
        yield end

    def _checkpoint(self, end: int, digest: cs.Digest) -> None:
        self._checkpoints[end] = digest.copy()
        while len(self._checkpoints) > CHECKPOINTS:
            self._checkpoints.popitem(last=False)

    def _encoded(self, start: int) -> Iterator[tuple[int, bytes, tuple[bytes, bytes | memoryview]]]:
        """(offset, data, frame) in order, produced ahead by a thread and a pool."""
        done = object()
        q: queue.Queue[object] = queue.Queue(maxsize=AHEAD)
        stop = threading.Event()
        pool = ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix="clone-zstd")

        def put(item: object) -> bool:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.2)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                for offset, data in self._extents(start):
                    fut = pool.submit(self._encoder.frame, offset, data)
                    if not put(_Pending(offset, data, fut)):
                        return
            except BaseException as e:  # handed to the consumer, raised there
                put(e)
                return
            put(done)

        producer = threading.Thread(target=produce, name="clone-read", daemon=True)
        producer.start()
        try:
            while True:
                item = q.get()
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, _Pending)
                yield item.offset, item.data, item.frame.result()
        finally:
            stop.set()
            producer.join()
            pool.shutdown(wait=True, cancel_futures=True)
