"""A tiny forwarding HTTP proxy (stdlib) that counts what passes through it.

Plain `GET http://...` requests are forwarded; `CONNECT host:port` opens a tunnel (how
clients reach https through a proxy). It only forwards to 127.0.0.1, so a misdirected
test can never send traffic elsewhere.
"""

from __future__ import annotations

import http.client
import select
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_HOP_HEADERS = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te"}


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _record(self) -> None:
        with self.server.lock:
            self.server.seen.append((self.command, self.path))

    def do_CONNECT(self) -> None:
        self._record()
        host, _, port = self.path.rpartition(":")
        if host != "127.0.0.1":
            self.send_error(403)
            return
        upstream = socket.create_connection((host, int(port)), timeout=30)
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        sockets = [self.connection, upstream]
        try:
            while True:
                readable, _, _ = select.select(sockets, [], [], 30)
                if not readable:
                    break
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        return
                    (upstream if s is self.connection else self.connection).sendall(data)
        except OSError:
            pass
        finally:
            upstream.close()
            self.close_connection = True

    def _forward(self) -> None:
        self._record()
        url = urllib.parse.urlsplit(self.path)
        if url.scheme != "http" or url.hostname != "127.0.0.1":
            self.send_error(403)
            return
        conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=30)
        path = url.path + (f"?{url.query}" if url.query else "")
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
        conn.request(self.command, path, headers=headers)
        resp = conn.getresponse()
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in _HOP_HEADERS:
                self.send_header(k, v)
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            while chunk := resp.read(65536):
                self.wfile.write(chunk)
        conn.close()
        self.close_connection = True

    do_GET = _forward
    do_HEAD = _forward


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.lock = threading.Lock()
        self.seen: list[tuple[str, str]] = []

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients closing probes early is normal


class ForwardProxy:
    def __init__(self, server: _ProxyServer) -> None:
        self._server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}"

    @property
    def seen(self) -> list[tuple[str, str]]:
        with self._server.lock:
            return list(self._server.seen)


@contextmanager
def forward_proxy() -> Iterator[ForwardProxy]:
    server = _ProxyServer()
    thread = threading.Thread(target=server.serve_forever, name="forward-proxy", daemon=True)
    thread.start()
    try:
        yield ForwardProxy(server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
