"""Only the proxy's verified certificate may upload; the readiness probe needs none."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import requests

from cdicontract import upload as contract


def test_healthz_answers_without_a_client_certificate(upload_server) -> None:
    server = upload_server()
    with requests.Session() as s:
        s.trust_env = False
        r = s.get(server.url("/healthz"), verify=server.pki.server_ca)
    assert r.status_code == 200
    assert r.text == "OK"


@pytest.mark.parametrize("path", (*contract.PROXY_PATHS, contract.archive_path("v1beta1")))
def test_upload_without_a_certificate_is_401(upload_server, path: str) -> None:
    server = upload_server()
    with requests.Session() as s:
        s.trust_env = False
        r = s.post(server.url(path), data=b"x" * 1024, verify=server.pki.server_ca)
    assert r.status_code == 401
    assert not Path(server.config.dest).exists()
    assert server.state == "idle"


def test_upload_with_another_name_is_403(upload_server) -> None:
    server = upload_server()
    with server.client(server.pki.wrong_name) as c:
        r = c.post(server.url("/v1beta1/upload"), data=b"x" * 1024)
        head = c.head(server.url("/v1beta1/upload-async"))
    assert r.status_code == 403
    assert head.status_code == 403
    assert not Path(server.config.dest).exists()


def test_a_certificate_from_another_ca_fails_the_handshake(upload_server) -> None:
    server = upload_server()
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        sock = server.tls_socket(server.pki.foreign)
        # TLS 1.3 reports a refused client certificate on the first read.
        sock.sendall(b"POST /v1beta1/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx")
        if not sock.recv(1024):
            raise ConnectionError("closed")
    assert server.state == "idle"


def test_head_on_every_upload_path_is_200(upload_server) -> None:
    server = upload_server()
    with server.client() as c:
        for path in contract.PROXY_PATHS:
            r = c.head(server.url(path))
            assert r.status_code == 200, path
            assert contract.UPLOAD_OFFSET_HEADER not in r.headers


def test_other_methods_are_404(upload_server) -> None:
    server = upload_server()
    with server.client() as c:
        assert c.get(server.url("/v1beta1/upload")).status_code == 404
        assert c.put(server.url("/v1beta1/upload"), data=b"x").status_code == 404
