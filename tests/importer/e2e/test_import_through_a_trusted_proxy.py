"""The real `cdi-importer` through Debian's squid as an HTTPS proxy (TLS to the proxy).

CDI mounts the ConfigMap named by CDIConfig importProxy.trustedCAProxy at /proxycerts and
sets IMPORTER_PROXY_CERT_DIR; the importer trusts those certificates besides the others.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.importer.e2e.conftest import Images, run_importer, same_disk
from tests.peers import squid


@pytest.fixture(scope="module")
def proxy() -> Iterator[squid.Squid]:
    with squid.https_proxy() as p:
        yield p


def _env(proxy: squid.Squid, origin_certs: Path, cert_dir: Path | None) -> dict[str, str]:
    env = {"http_proxy": proxy.url, "https_proxy": proxy.url, "no_proxy": "",
           "HTTP_PROXY": proxy.url, "HTTPS_PROXY": proxy.url, "NO_PROXY": "",
           "IMPORTER_CERT_DIR": str(origin_certs)}
    if cert_dir is not None:
        env["IMPORTER_PROXY_CERT_DIR"] = str(cert_dir)
    return env


def test_an_import_through_a_tls_proxy_needs_the_trusted_proxy_ca(
    proxy: squid.Squid, nginx, images: Images, tmp_path: Path
) -> None:
    name = nginx.publish(images.make("qcow2"), "proxied/disk.qcow2")
    url = f"{nginx.https_url}/{name}"
    origin_certs = tmp_path / "certs"  # the origin's CA (the DataVolume's certConfigMap)
    origin_certs.mkdir()
    (origin_certs / "ca.crt").write_bytes(nginx.ca_file.read_bytes())
    certs = tmp_path / "proxycerts"
    certs.mkdir()
    (certs / "ca.pem").write_bytes(proxy.ca_file.read_bytes())

    dest = tmp_path / "refused.img"
    refused = run_importer("--source", "http", "--endpoint", url, "--dest", str(dest),
                           env=_env(proxy, origin_certs, None))
    assert refused.returncode != 0
    assert "proxy" in str(refused.report.get("message", "")).lower(), refused.report
    assert "TCP_TUNNEL/200" not in _log(proxy)

    dest = tmp_path / "disk.img"
    r = run_importer("--source", "http", "--endpoint", url, "--dest", str(dest),
                     env=_env(proxy, origin_certs, certs))
    assert r.returncode == 0, r.stderr
    assert same_disk(images.reference, dest)
    assert "TCP_TUNNEL/200" in _log(proxy)  # the bytes went through the proxy


def _log(proxy: squid.Squid) -> str:
    return proxy.access_log.read_text() if proxy.access_log.exists() else ""


def test_the_tls_proxy_of_a_plain_http_origin_is_verified_too(
    proxy: squid.Squid, nginx, images: Images, tmp_path: Path
) -> None:
    # requests would not check the proxy's certificate for an http:// URL: the proxy's
    # credentials would go to whoever answers.
    name = nginx.publish(images.make("raw"), "proxied/plain.raw")
    url = f"{nginx.http_url}/{name}"
    certs = tmp_path / "proxycerts"
    certs.mkdir()
    (certs / "ca.pem").write_bytes(proxy.ca_file.read_bytes())
    env = {k: v for k, v in _env(proxy, certs, None).items() if k != "IMPORTER_CERT_DIR"}
    before = _log(proxy).count(name)
    refused = run_importer("--source", "http", "--endpoint", url, "--dest",
                           str(tmp_path / "refused.img"), env=env)
    assert refused.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in str(refused.report.get("message", "")), refused.report
    assert _log(proxy).count(name) == before

    env["IMPORTER_PROXY_CERT_DIR"] = str(certs)
    dest = tmp_path / "disk.img"
    r = run_importer("--source", "http", "--endpoint", url, "--dest", str(dest), env=env)
    assert r.returncode == 0, r.stderr
    assert same_disk(images.reference, dest)
    assert _log(proxy).count(name) > before
