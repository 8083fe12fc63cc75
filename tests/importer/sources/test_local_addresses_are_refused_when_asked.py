"""The opt-in guard: no loopback or link-local source, checked where the connection lands.

Servers listen on this machine's non-loopback address (an allowed origin) and on
127.0.0.1; the guard must refuse the loopback one directly, after a redirect hop, and
through a DNS name that resolves to it, while the allowed origin imports normally.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cdicontract.reasons import Reason
from importer.errors import ImportFailure
from importer.sources.addressguard import is_local
from importer.sources.http import HttpOptions, HttpSource
from importer.sources.s3 import S3Options, S3Source
from tests.importer.e2e.conftest import run_importer
from tests.peers.badserver import BadServer

GUARD = HttpOptions(deny_local_addresses=True)


def _host_address() -> str | None:
    """This machine's address on its default route, if it has one that is not local."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("198.51.100.1", 9))  # a UDP connect only picks a route: nothing is sent
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if is_local(ipaddress.ip_address(address)) else address


class _Redirector(BaseHTTPRequestHandler):
    target = ""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", self.server.target)  # type: ignore[attr-defined]
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"hello from an allowed address" * 100
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(body)


@pytest.fixture
def allowed_origin() -> Iterator[ThreadingHTTPServer]:
    address = _host_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address to serve from")
    server = ThreadingHTTPServer((address, 0), _Redirector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("address", "local"),
    [
        ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("169.254.169.254", True),
        ("fe80::1", True), ("0.0.0.0", True), ("::ffff:127.0.0.1", True),
        ("::ffff:169.254.169.254", True), ("10.0.0.1", False), ("192.0.2.2", False),
        ("2001:db8::1", False),
    ],
)  # fmt: skip
def test_what_counts_as_local(address: str, local: bool) -> None:
    assert is_local(ipaddress.ip_address(address)) is local


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_loopback_source_is_refused(bad_server: BadServer, host: str) -> None:
    bad_server.add("disk.img", b"x" * 4096)
    with (
        HttpSource(bad_server.url("disk.img", host=host), GUARD) as source,
        pytest.raises(ImportFailure) as err,
    ):
        source.info()
    assert err.value.reason is Reason.ADDRESS_REFUSED
    assert err.value.permanent
    assert bad_server.requests == []  # refused before a request was sent


def test_a_redirect_to_loopback_is_refused_at_the_hop(
    allowed_origin: ThreadingHTTPServer, bad_server: BadServer
) -> None:
    bad_server.add("disk.img", b"x" * 4096)
    allowed_origin.target = bad_server.url("disk.img")  # type: ignore[attr-defined]
    host, port = allowed_origin.server_address[:2]
    with (
        HttpSource(f"http://{host}:{port}/redirect", GUARD) as source,
        pytest.raises(ImportFailure) as err,
    ):
        source.info()
    assert err.value.reason is Reason.ADDRESS_REFUSED
    assert bad_server.requests == []


def test_an_allowed_origin_imports_through_the_cli(
    allowed_origin: ThreadingHTTPServer, tmp_path: Path
) -> None:
    host, port = allowed_origin.server_address[:2]
    dest = tmp_path / "disk.img"
    r = run_importer(
        "--endpoint", f"http://{host}:{port}/disk.img", "--dest", str(dest),
        "--deny-local-addresses",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert dest.read_bytes().startswith(b"hello from an allowed address")


def test_the_cli_refuses_loopback_for_good(bad_server: BadServer, tmp_path: Path) -> None:
    bad_server.add("disk.img", b"x" * 4096)
    r = run_importer(
        "--endpoint", bad_server.url("disk.img"), "--dest", str(tmp_path / "disk.img"),
        env={"IMPORTER_DENY_LOCAL_ADDRESSES": "true"},
    )  # fmt: skip
    assert (r.returncode, r.report["reason"]) == (3, "AddressRefused"), r.report


def test_an_s3_endpoint_on_loopback_is_refused() -> None:
    with pytest.raises(ImportFailure) as err:
        S3Source("http://127.0.0.1:9/bucket/key", S3Options(deny_local_addresses=True))
    assert err.value.reason is Reason.ADDRESS_REFUSED


def test_without_the_guard_loopback_is_fine(bad_server: BadServer) -> None:
    bad_server.add("disk.img", b"x" * 4096)
    with HttpSource(bad_server.url("disk.img"), HttpOptions()) as source:
        assert source.info().size == 4096


def test_a_registry_on_loopback_is_refused(registry) -> None:  # type: ignore[no-untyped-def]
    from importer.sources.registry.source import RegistryOptions, RegistrySource

    opts = RegistryOptions(
        insecure_registries=frozenset({registry.host}), deny_local_addresses=True
    )
    with pytest.raises(ImportFailure) as err:
        RegistrySource(f"docker://{registry.host}/any/image:tag", opts).info()
    assert err.value.reason is Reason.ADDRESS_REFUSED
