"""A loopback HTTP range server that lets nbdkit's curl plugin read a source it cannot sign for.

nbdkit's curl plugin first sends HEAD, then ranged GETs. Neither S3 presigned URLs (signed
for one method: a GET URL refuses HEAD) nor registries with expiring bearer tokens fit
that, and both would put a credential in nbdkit's argv. So the source serves its own bytes
on a Unix socket in a private 0700 directory: HEAD answers the size, `GET` with `Range`
calls the source's `fetch(start, end)` (which signs, refreshes tokens and pins the ETag as
it does for streaming). nbdkit gets `url=http://localhost/... unix-socket-path=...` and
no secret at all. Bodies are relayed chunk by chunk: memory stays flat.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socketserver
import tempfile
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from typing import Any

from importer.sources.base import RandomAccess

Chunk = bytes | bytearray | memoryview
Fetch = Callable[[int, int], Iterable[Chunk]]
"""fetch(start, end_inclusive) -> chunks of exactly that byte range."""

_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end inclusive) of a single `Range: bytes=a-b` header, clipped to size (pure).

    None means "the whole body"; a malformed or unsatisfiable range raises ValueError.
    """
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if not m:
        raise ValueError("unsupported range")
    start = int(m.group(1))
    end = int(m.group(2)) if m.group(2) else size - 1
    end = min(end, size - 1)
    if start > end:
        raise ValueError("unsatisfiable range")
    return start, end


BLOCK = 8 << 20
BLOCKS_KEPT = 2


class BlockCache:
    """Turns many small ranged reads into few large ones, fetching one block ahead.

    qemu-img reads a qcow2 cluster run at a time (64 KiB to 2 MiB) and mostly in order; to
    S3 or a registry each of those would be a signed request with a round trip (and to
    some stores a whole-object read). Fetching aligned 8 MiB blocks keeps the request
    count near that of a plain download, and fetching the next block while qemu-img
    consumes this one hides the round trip. At most `keep` blocks plus two in flight are
    held: 32 MiB.
    """

    def __init__(
        self, fetch: Fetch, size: int, block: int = BLOCK, keep: int = BLOCKS_KEPT
    ) -> None:
        self._fetch = fetch
        self._size = size
        self._block = block
        self._keep = keep
        self._blocks: dict[int, bytearray] = {}
        self._order: list[int] = []
        self._inflight: dict[int, Future[bytearray]] = {}
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="range-prefetch")
        self._lock = threading.Lock()
        self.fetches = 0

    def _load(self, index: int) -> bytearray:
        start = index * self._block
        end = min(start + self._block, self._size) - 1
        want = end - start + 1
        # Filled in place: joining the chunks would hold the block twice while it loads.
        data = bytearray(want)
        view = memoryview(data)
        got = 0
        with view:
            for chunk in self._fetch(start, end):
                n = len(chunk)
                if got + n > want:
                    raise OSError(f"long read of block {index}")
                view[got : got + n] = chunk
                got += n
        if got != want:
            raise OSError(f"short read of block {index}: {got} bytes")
        return data

    def _future(self, index: int) -> Future[bytearray]:
        """The pending fetch of `index`, started if needed (call with the lock held)."""
        fut = self._inflight.get(index)
        if fut is None:
            fut = self._pool.submit(self._load, index)
            self._inflight[index] = fut
        return fut

    def _get(self, index: int) -> bytearray:
        with self._lock:
            data = self._blocks.get(index)
            if data is not None:
                self._order.remove(index)
                self._order.append(index)
            else:
                fut = self._future(index)
            ahead = index + 1
            if ahead * self._block < self._size and ahead not in self._blocks:
                self._future(ahead)
        if data is not None:
            return data
        try:
            data = fut.result()
        except Exception:
            # One direct retry: a read-ahead that failed (or a passing error) must not fail
            # the read that needs the block; a second failure is the source's answer.
            data = self._load(index)
        finally:
            with self._lock:
                if self._inflight.get(index) is fut:
                    del self._inflight[index]
        with self._lock:
            self.fetches += 1
            if index not in self._blocks:
                self._blocks[index] = data
                self._order.append(index)
            while len(self._order) > self._keep:
                self._blocks.pop(self._order.pop(0), None)
        return data

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __call__(self, start: int, end: int) -> Iterable[Chunk]:
        pos = start
        while pos <= end:
            index = pos // self._block
            data = self._get(index)
            offset = pos - index * self._block
            # A view, not a copy: the block stays alive as long as the view is being sent.
            piece = memoryview(data)[offset : offset + (end - pos + 1)]
            yield piece
            pos += len(piece)


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    fetch: Fetch
    size: int


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: request lines would only repeat what progress already reports."""

    def address_string(self) -> str:
        return "local"

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(self.server.size))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()

    def do_GET(self) -> None:
        size = self.server.size
        try:
            rng = parse_range(self.headers.get("Range"), size)
        except ValueError:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start, end = rng if rng else (0, size - 1)
        try:
            chunks = iter(self.server.fetch(start, end))
            first = next(chunks, b"")
        except Exception:
            # The source's own error (auth, network) reaches the pipeline through qemu-img's
            # failure; here we only refuse the request.
            self.send_response(502)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if rng else 200)
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        try:
            self.wfile.write(first)
            for chunk in chunks:
                self.wfile.write(chunk)
        except Exception:
            # Broken mid-body: drop the connection so curl sees a short read and retries.
            self.close_connection = True
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()


class RangeProxy:
    """Serves `fetch` over HTTP on a private Unix socket until `close()`."""

    def __init__(self, fetch: Fetch, size: int, name: str = "image") -> None:
        self._dir = tempfile.mkdtemp(prefix="cdi-range-")
        os.chmod(self._dir, 0o700)
        self.socket_path = os.path.join(self._dir, "http.sock")
        self._server = _Server(self.socket_path, _Handler)
        self.cache = BlockCache(fetch, size)
        self._server.fetch = self.cache
        self._server.size = size
        self._name = re.sub(r"[^A-Za-z0-9._-]", "_", name) or "image"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="range-proxy", daemon=True
        )
        self._thread.start()

    def random_access(self, extra_params: tuple[str, ...] = ()) -> RandomAccess:
        return RandomAccess(
            plugin="curl",
            params=(
                f"url=http://localhost/{self._name}",
                f"unix-socket-path={self.socket_path}",
                "timeout=120",
                *extra_params,
            ),
        )

    def close(self) -> None:
        self.cache.close()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        with contextlib.suppress(OSError):
            shutil.rmtree(self._dir)
