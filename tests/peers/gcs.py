"""The real GCS emulator (github.com/fsouza/fake-gcs-server), built by hack/build-fake-gcs-server.

Fixture `gcs_server` (session): the emulator on 127.0.0.1 over plain HTTP, in-memory
backend, speaking GCS's JSON API (`/storage/v1/...`, media downloads with Range and
`generation`). Fixture `fake_gcs_binary`: the static binary's path, for the e2e tests
that run it in a pod. The build is a no-op once cached; the fixtures skip only when this
machine has no Go toolchain, and a build that fails is a test failure with its error.

The emulator checks no credentials: what it proves is the JSON API (paths, ranges,
generations, error statuses); a key's token exchange is proved against a token endpoint.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests

from tests.peers.ports import free_port, stop, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "hack" / "build-fake-gcs-server"
GO = Path("/usr/local/go/bin/go")


@dataclass
class GcsServer:
    endpoint: str

    @property
    def port(self) -> int:
        return int(self.endpoint.rsplit(":", 1)[1])

    def ensure_bucket(self, bucket: str) -> None:
        r = requests.post(f"{self.endpoint}/storage/v1/b", json={"name": bucket}, timeout=10)
        assert r.status_code in (200, 409), r.text

    def put(self, bucket: str, name: str, data: bytes | Path) -> str:
        """Store an object; returns its http URL (CDI's endpoint form)."""
        self.ensure_bucket(bucket)
        body = data.read_bytes() if isinstance(data, Path) else data
        r = requests.post(
            f"{self.endpoint}/upload/storage/v1/b/{quote(bucket, safe='')}/o",
            params={"uploadType": "media", "name": name},
            data=body,
            headers={"Content-Type": "application/octet-stream"},
            timeout=60,
        )
        assert r.status_code == 200, r.text
        return self.url(bucket, name)

    def delete(self, bucket: str, name: str) -> None:
        r = requests.delete(
            f"{self.endpoint}/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}",
            timeout=10,
        )
        assert r.status_code in (200, 204), r.text

    def url(self, bucket: str, name: str) -> str:
        return f"{self.endpoint}/{bucket}/{name}"


def build_fake_gcs_server() -> Path:
    if not GO.exists() and shutil.which("go") is None:
        pytest.skip("no Go toolchain (/usr/local/go/bin/go) to build fake-gcs-server with")
    where = subprocess.run([str(SCRIPT), "--print-path"], check=True, capture_output=True,
                           text=True).stdout.strip()
    built = subprocess.run([str(SCRIPT)], check=False, capture_output=True, text=True)
    if built.returncode != 0:
        pytest.fail(
            f"hack/build-fake-gcs-server failed ({built.returncode}):\n{built.stderr[-4000:]}"
        )
    path = Path(where)
    if not path.is_file():
        pytest.fail(f"hack/build-fake-gcs-server succeeded but {path} is missing")
    return path


@pytest.fixture(scope="session")
def fake_gcs_binary() -> Path:
    return build_fake_gcs_server()


@pytest.fixture(scope="session")
def gcs_server(
    fake_gcs_binary: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GcsServer]:
    port = free_port()
    address = f"127.0.0.1:{port}"
    log = (tmp_path_factory.mktemp("fake-gcs") / "server.log").open("wb")
    proc = subprocess.Popen(
        [str(fake_gcs_binary), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
         "-backend", "memory", "-public-host", address, "-external-url", f"http://{address}",
         "-log-level", "warn"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, proc)
        yield GcsServer(endpoint=f"http://{address}")
    finally:
        stop(proc)
        log.close()


@dataclass
class TokenEndpoint:
    """An OAuth2 token endpoint on 127.0.0.1 for the JWT-bearer grant (RFC 7523), as
    Google's answers it: it verifies the assertion's RS256 signature with the key's public
    half and its claims, and answers an access token, or `invalid_grant` when `refuse`.

    Google's endpoint cannot be reached from here; this one checks the same things the
    real one does with the assertion (signature, issuer, audience, scope, lifetime).
    """

    url: str
    public_key_pem: bytes
    issuer: str
    scope: str
    refuse: bool = False
    exchanges: int = 0
    refused: int = 0


@pytest.fixture
def token_endpoint() -> Iterator[tuple[TokenEndpoint, dict[str, str]]]:
    """(endpoint, service-account key document whose token_uri is the endpoint)."""
    import json
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs

    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    state: dict[str, TokenEndpoint] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _answer(self, status: int, doc: dict[str, object]) -> None:
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            ep = state["ep"]
            length = int(self.headers.get("Content-Length", "0"))
            form = parse_qs(self.rfile.read(length).decode())
            if ep.refuse:
                ep.refused += 1
                self._answer(400, {"error": "invalid_grant", "error_description": "nope"})
                return
            try:
                assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
                claims = jwt.decode(
                    form["assertion"][0], ep.public_key_pem, algorithms=["RS256"],
                    audience=ep.url, issuer=ep.issuer,
                )
                assert claims["scope"] == ep.scope
                assert claims["exp"] - claims["iat"] <= 3600
                assert abs(claims["iat"] - time.time()) < 60
            except (AssertionError, KeyError, jwt.PyJWTError):
                ep.refused += 1
                self._answer(400, {"error": "invalid_grant"})
                return
            ep.exchanges += 1
            self._answer(200, {"access_token": f"ya29.test-{ep.exchanges}",
                               "expires_in": 3599, "token_type": "Bearer"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    url = f"http://127.0.0.1:{server.server_address[1]}/token"
    email = "importer@cdi-py-test.iam.gserviceaccount.com"
    ep = TokenEndpoint(
        url=url, public_key_pem=public, issuer=email,
        scope="https://www.googleapis.com/auth/devstorage.read_only",
    )
    state["ep"] = ep
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    key = {
        "type": "service_account", "project_id": "cdi-py-test", "private_key_id": "k1",
        "private_key": pem, "client_email": email, "client_id": "1", "token_uri": url,
    }
    try:
        yield ep, key
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class FlippingProxy:
    """A TCP proxy on 127.0.0.1 that flips one byte of every response stream at `offset`
    (counted per connection): bytes damaged on the wire, behind the server's back."""

    def __init__(self, target_port: int, offset: int) -> None:
        import socket
        import threading

        self.target_port = target_port
        self.offset = offset
        self.flips = 0
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = int(self._sock.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: Any, dst: Any, responses: bool) -> None:
        import contextlib
        import socket

        seen = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if responses and seen <= self.offset < seen + len(data):
                    i = self.offset - seen
                    data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
                    self.flips += 1
                seen += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()

    def close(self) -> None:
        import contextlib

        with contextlib.suppress(OSError):
            self._sock.close()
        self._thread.join(5)
