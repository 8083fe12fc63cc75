"""A loopback HTTP range server: how qemu-img (through nbdkit's curl plugin) reads a source.

Every source with random access is read by qemu-img through this server, never directly:
its `fetch` is a `importer.sources.pinned.Window`, so qemu-img reads the same verified
bytes as our inspection and the checksum (see pinned.py). It also keeps every credential
out of nbdkit: the source signs (S3), refreshes tokens (registries) and sends its headers
(HTTP) in-process, and nbdkit gets `url=http://localhost/... unix-socket-path=...` in a
private 0700 directory and no secret at all. HEAD answers the size, `GET` with `Range`
serves `fetch(start, end)`. Bodies are relayed as views of cached blocks: memory stays flat.
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
        self._server.fetch = fetch
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
                # The window's own retries may take minutes on a flaky source; qemu-img's
                # stall watchdog, not curl, decides when a read hangs.
                "timeout=3600",
                *extra_params,
            ),
        )

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        with contextlib.suppress(OSError):
            shutil.rmtree(self._dir)
