"""The node's log endpoint, so ``kubectl logs`` works as against a real kubelet.

Why: engineers debugging a failed importer reach for ``kubectl logs`` first. The API
server proxies ``pods/log`` to ``https://<node InternalIP>:<kubeletEndpoint port>/
containerLogs/<ns>/<pod>/<container>`` with its kubelet client certificate; this
serves that path (and only that) from the files the node writes, verifying the
caller's certificate against the cluster CA.
"""

from __future__ import annotations

import http.server
import ssl
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse


def latest_logs(root: Path, ns: str, pod: str, container: str) -> list[Path]:
    """The container's run logs, oldest first, from the newest pod of that name."""
    pods = sorted(root.glob(f"{ns}_{pod}_*"), key=lambda p: p.stat().st_mtime)
    if not pods:
        return []
    return sorted((pods[-1] / container).glob("*.log"), key=lambda p: int(p.stem))


def _tail_lines(data: bytes, n: int) -> bytes:
    lines = data.splitlines(keepends=True)
    return b"".join(lines[-n:]) if n >= 0 else data


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the API server polls and streams often."""

    def do_GET(self) -> None:
        url = urlparse(self.path)
        parts = url.path.strip("/").split("/")
        if parts == ["healthz"]:
            self._send(200, b"ok")
            return
        if len(parts) != 4 or parts[0] != "containerLogs":
            self._send(404, b"not found")
            return
        _, ns, pod, container = parts
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        runs = latest_logs(self.server.log_root, ns, pod, container)
        previous = query.get("previous") == "true"
        if not runs or (previous and len(runs) < 2):
            self._send(404, f'previous terminated container "{container}" not found'.encode())
            return
        path = runs[-2] if previous else runs[-1]
        data = path.read_bytes()
        if "tailLines" in query:
            data = _tail_lines(data, int(query["tailLines"]))
        if "limitBytes" in query:
            data = data[: int(query["limitBytes"])]
        follow = query.get("follow") == "true" and not previous
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        if not follow:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        if follow:
            self._follow(path, path.stat().st_size)

    def _follow(self, path: Path, offset: int) -> None:
        """Stream appended output until a newer run starts or the client leaves."""
        idle = 0.0
        while not self.server.stopping.is_set():
            with open(path, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            if chunk:
                offset += len(chunk)
                idle = 0.0
                try:
                    self.wfile.write(chunk)
                    self.wfile.flush()
                except OSError:
                    return
            else:
                idle += 0.2
                newer = list(path.parent.glob("*.log"))
                if len(newer) > 1 and max(newer, key=lambda p: int(p.stem)) != path:
                    return
                if idle > 3600:
                    return
                time.sleep(0.2)

    def _send(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    log_root: Path
    stopping: threading.Event


def serve(address: str, port: int, pki: Path, log_root: Path, stop: threading.Event) -> None:
    """Start serving in a background thread."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / "kubelet.crt", pki / "kubelet.key")
    ctx.load_verify_locations(pki / "ca.crt")
    ctx.verify_mode = ssl.CERT_REQUIRED
    server = _Server((address, port), _Handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.log_root = log_root
    server.stopping = stop
    threading.Thread(target=server.serve_forever, name="log server", daemon=True).start()
