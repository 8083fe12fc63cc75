"""Proxies come from http_proxy / https_proxy / no_proxy, as for curl and CDI's importer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from importer.sources.http import HttpOptions, HttpSource
from tests.importer.sources.conftest import (
    Payload,
    assert_same_raw,
    sha256_through_reader,
    window_convert,
)
from tests.importer.sources.forward_proxy import ForwardProxy, forward_proxy
from tests.peers.nginx import Nginx

_PROXY_VARS = ("http_proxy", "https_proxy", "no_proxy", "all_proxy")


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[ForwardProxy]:
    for name in _PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    with forward_proxy() as p:
        yield p


@pytest.fixture(scope="module")
def served(nginx: Nginx, payload: Payload) -> str:
    return nginx.publish(payload.path, "disk.img")


def test_http_goes_through_http_proxy(
    proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
    nginx: Nginx,
    payload: Payload,
    served: str,
) -> None:
    monkeypatch.setenv("http_proxy", proxy.url)
    url = f"{nginx.http_url}/{served}"
    with HttpSource(url, HttpOptions()) as source:
        assert sha256_through_reader(source)[0] == payload.sha256
    assert ("HEAD", url) in proxy.seen and ("GET", url) in proxy.seen


def test_https_tunnels_through_https_proxy(
    proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
    nginx: Nginx,
    payload: Payload,
    served: str,
) -> None:
    monkeypatch.setenv("https_proxy", proxy.url)
    opts = HttpOptions(ca_bundle=str(nginx.ca_file))
    with HttpSource(f"{nginx.https_url}/{served}", opts) as source:
        assert sha256_through_reader(source)[0] == payload.sha256
    netloc = urlsplit(nginx.https_url).netloc
    assert proxy.seen and all(seen == ("CONNECT", netloc) for seen in proxy.seen)


def test_no_proxy_bypasses_the_proxy(
    proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
    nginx: Nginx,
    payload: Payload,
    served: str,
) -> None:
    monkeypatch.setenv("http_proxy", proxy.url)
    monkeypatch.setenv("no_proxy", "localhost,127.0.0.1")
    with HttpSource(f"{nginx.http_url}/{served}", HttpOptions()) as source:
        assert sha256_through_reader(source)[0] == payload.sha256
    assert proxy.seen == []


def test_ranged_reads_also_use_the_proxy_from_env(
    proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
    nginx: Nginx,
    payload: Payload,
    served: str,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("http_proxy", proxy.url)
    url = f"{nginx.http_url}/{served}"
    with HttpSource(url, HttpOptions()) as source:
        window = source.random_reads()
        assert window is not None
        before = len(proxy.seen)
        # nbdkit itself only talks to the local range proxy; the source's ranged GETs,
        # made in-process, go through the proxy.
        window_convert(window, "raw", tmp_path / "out")
    assert_same_raw(tmp_path / "out", payload.data)
    assert any(method == "GET" and seen == url for method, seen in proxy.seen[before:])
