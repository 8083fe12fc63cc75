"""A deliberately bad HTTP server for the unhappy paths (CDI's bad-webserver idea, done in-process).

`bad_server.add(name, payload)` registers a body; `bad_server.url(name, **behaviour)` gives a
URL whose query string selects misbehaviours, combinable:

- `norange=1`      ignore Range, send no Accept-Ranges (and no validator)
- `head=403|405`   refuse HEAD with that status
- `drop_at=N,M`    on GETs, close the connection when the body reaches absolute offset N
                   (each drop point fires once per URL, when reached; never on a
                   `Range: bytes=0-0` probe), so resumption can be observed
- `drop=rst`       drop with a TCP reset instead of a clean EOF
- `extra_length=N` announce N more bytes in Content-Length than are sent (always)
- `stall_at=N&stall=S&stall_times=K`  at offset N, go silent for S seconds (first K GETs)
- `trickle=1`      send the body in small slow pieces (slow but never silent for long)
- `status=C&status_times=K`  answer C (404, 403, 500, 503...) to the first K requests (all if no K)
- `redirect=loop`  302 to itself; `redirect=file` 302 to file:///etc/passwd;
  `redirect=<name>` 302 to that name's plain URL
- `redirect_to=<absolute URL>`  302 there (another host: `http://localhost:<port>/...`)
- `bad_range=1`    answer ranged GETs with 206 but a Content-Range starting at 0
- `etag_changes=1` every response carries a new ETag (the representation "changed")
- `alt=<name>&alt_from=N`  from the N-th GET of this URL on (1-based; HEADs and
                   `bytes=0-0` probes not counted), serve the payload registered as <name>
                   instead: clean to the first reader, something else to the next ones
- `alt=<name>&alt_ranged=1`  ranged GETs get <name>'s bytes, plain GETs the real ones
- `alt=<name>&alt_every=K`  every K-th GET gets <name>'s bytes, the others the real ones:
                   the same range read twice may come back different
- `keep_etag=1`    the ETag stays the real payload's even while serving <name> (a server
                   that lies about its validator); otherwise each payload has its own
- `novalidator=1`  ranges work, but no ETag and no Last-Modified
- `drop_first_pct=P`  the first plain GET and the first ranged GET of this URL (probes
                   not counted) are each cut at P% of their body, once
Conditional requests are honoured as nginx does: `If-Match` with another ETag is 412,
`If-Range` with another ETag gets the whole body (200).

Every request is recorded (method, path, Range, If-Range, headers) in `requests`.
"""

from __future__ import annotations

import hashlib
import socket
import struct
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    name: str
    range: str | None
    if_range: str | None
    headers: dict[str, str]


@dataclass
class _State:
    payloads: dict[str, bytes] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)
    fired: dict[str, set[int]] = field(default_factory=dict)  # URL -> drop points used
    counts: dict[tuple[str, str], int] = field(default_factory=dict)  # (URL, kind) -> n
    lock: threading.Lock = field(default_factory=threading.Lock)
    etag_serial: int = 0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    # -- helpers ---------------------------------------------------------------

    def _count(self, kind: str) -> int:
        """How many times this URL has been asked for `kind` before (0 the first time)."""
        st = self.server.state
        with st.lock:
            n = st.counts.get((self.path, kind), 0)
            st.counts[(self.path, kind)] = n + 1
            return n

    def _simple(self, code: int, headers: dict[str, str] | None = None) -> None:
        body = f"{code}\n".encode()
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _drop(self, rst: bool) -> None:
        self.wfile.flush()
        self.close_connection = True
        if rst:
            # Linger 0 + close: the kernel answers with RST instead of FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        else:
            self.connection.shutdown(socket.SHUT_RDWR)

    def _serve(self, head: bool) -> None:
        parsed = urllib.parse.urlsplit(self.path)
        name = parsed.path.lstrip("/")
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(parsed.query).items()}
        st = self.server.state
        with st.lock:
            st.requests.append(
                RecordedRequest(
                    method=self.command,
                    path=self.path,
                    name=name,
                    range=self.headers.get("Range"),
                    if_range=self.headers.get("If-Range"),
                    headers={k: v for k, v in self.headers.items()},
                )
            )
            payload = st.payloads.get(name)

        if "status" in q:
            times = int(q.get("status_times", "-1"))
            if times < 0 or self._count("status") < times:
                self._simple(int(q["status"]))
                return
        if "redirect_to" in q:
            self._simple(302, {"Location": q["redirect_to"]})
            return
        redirect = q.get("redirect")
        if redirect == "loop":
            self._simple(302, {"Location": self.path})
            return
        if redirect == "file":
            self._simple(302, {"Location": "file:///etc/passwd"})
            return
        if redirect:
            self._simple(302, {"Location": "/" + redirect})
            return
        if payload is None:
            self._simple(404)
            return
        if head and "head" in q:
            self._simple(int(q["head"]))
            return

        norange = q.get("norange") == "1"
        rng = self.headers.get("Range")
        probe = rng == "bytes=0-0"
        real_etag = '"' + hashlib.sha256(payload).hexdigest()[:16] + '"'
        nth_get = 0 if head or probe else self._count("get") + 1
        alt = st.payloads.get(q.get("alt", ""))
        if alt is not None and not probe and not head:
            ranged = rng is not None
            if (
                (q.get("alt_ranged") == "1" and ranged)
                or ("alt_from" in q and nth_get >= int(q["alt_from"]))
                or ("alt_every" in q and nth_get % int(q["alt_every"]) == 0)
            ):
                payload = alt
        size = len(payload)
        start, end = 0, size - 1
        partial = False
        etag = '"' + hashlib.sha256(payload).hexdigest()[:16] + '"'
        if q.get("keep_etag") == "1":
            etag = real_etag
        if q.get("etag_changes") == "1":
            with st.lock:
                st.etag_serial += 1
                etag = f'"{st.etag_serial}"'
        validators = q.get("novalidator") != "1" and not norange
        if_match = self.headers.get("If-Match")
        if if_match is not None and validators and if_match not in ("*", etag):
            self._simple(412)
            return
        if_range = self.headers.get("If-Range")
        if rng and not norange and (if_range is None or if_range == etag):
            spec = rng.removeprefix("bytes=")
            first, _, last = spec.partition("-")
            start = int(first)
            end = min(int(last), size - 1) if last else size - 1
            if start >= size:
                self._simple(416, {"Content-Range": f"bytes */{size}"})
                return
            partial = True

        if partial and q.get("bad_range") == "1":
            start = 0  # lie: serve from 0 but still call it partial
        body_len = end - start + 1
        self.send_response(206 if partial else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(body_len + int(q.get("extra_length", "0"))))
        if partial:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        if not norange:
            self.send_header("Accept-Ranges", "bytes")
        if validators:
            self.send_header("ETag", etag)
        self.end_headers()
        if head:
            return

        drop_at: int | None = None
        # One-byte probes (Range: bytes=0-0) never drop: when ranges are ignored they get
        # the whole body, and whether the drop point was reached before the client hung up
        # would be a race.
        if "drop_at" in q and rng != "bytes=0-0":
            points = sorted(int(p) for p in q["drop_at"].split(","))
            with st.lock:
                fired = st.fired.get(self.path, set())
                drop_at = next((p for p in points if p > start and p not in fired), None)
        first_of_kind = not probe and self._count("ranged" if rng else "plain") == 0
        if "drop_first_pct" in q and first_of_kind:
            drop_at = start + max(1, (end - start + 1) * int(q["drop_first_pct"]) // 100)
        stall_at: int | None = None
        if "stall_at" in q and self._count("stall") < int(q.get("stall_times", "1")):
            stall_at = int(q["stall_at"])
        trickle = q.get("trickle") == "1"

        pos = start
        piece = 4096 if trickle else 64 * 1024
        try:
            while pos <= end:
                limit = end + 1
                if drop_at is not None and pos < drop_at <= limit:
                    limit = drop_at
                if stall_at is not None and pos < stall_at < limit:
                    limit = stall_at
                n = min(piece, limit - pos)
                if n > 0:
                    self.wfile.write(payload[pos : pos + n])
                    pos += n
                if drop_at is not None and pos == drop_at:
                    # Fired only once reached: a client that hung up earlier (a probe) did
                    # not see this drop.
                    with st.lock:
                        st.fired.setdefault(self.path, set()).add(drop_at)
                    self._drop(q.get("drop") == "rst")
                    return
                if stall_at is not None and pos == stall_at:
                    self.wfile.flush()
                    time.sleep(float(q.get("stall", "5")))
                    stall_at = None
                if trickle:
                    self.wfile.flush()
                    time.sleep(0.002)
            if "extra_length" in q:
                self._drop(rst=False)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = _State()

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients hanging up mid-body is the normal case here (probes, drops, stalls).
        exc = sys.exc_info()[1]
        if not isinstance(exc, ConnectionError | TimeoutError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class BadServer:
    """Handle on the running bad server: register payloads, build URLs, read the request log."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        self.base_url = f"http://127.0.0.1:{server.server_address[1]}"

    def add(self, name: str, payload: bytes) -> None:
        with self._server.state.lock:
            self._server.state.payloads[name] = payload

    def url(self, name: str, *, host: str = "127.0.0.1", **behaviour: object) -> str:
        """The URL of `name` with misbehaviours; `host="localhost"` names the same server
        under another host name (another origin, for redirect tests)."""
        query = urllib.parse.urlencode({k: str(v) for k, v in behaviour.items()})
        base = self.base_url.replace("127.0.0.1", host, 1)
        return f"{base}/{name}" + (f"?{query}" if query else "")

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._server.state.lock:
            return list(self._server.state.requests)

    def requests_for(self, name: str, method: str | None = None) -> list[RecordedRequest]:
        return [r for r in self.requests if r.name == name and method in (None, r.method)]

    def reset(self) -> None:
        st = self._server.state
        with st.lock:
            st.payloads.clear()
            st.requests.clear()
            st.fired.clear()
            st.counts.clear()


@pytest.fixture(scope="session")
def _bad_server_session() -> Iterator[BadServer]:
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, name="bad-server", daemon=True)
    thread.start()
    try:
        yield BadServer(server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def bad_server(_bad_server_session: BadServer) -> BadServer:
    """The session's bad server, with a clean request log and no payloads."""
    _bad_server_session.reset()
    return _bad_server_session
