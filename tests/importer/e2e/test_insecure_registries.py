"""The real `cdi-importer` run with CDI's own environment against Debian's docker-registry.

CDI's controller tells its importer a registry is insecure with `INSECURE_TLS=true` only
(no list of hosts); CDI's importer (containers/image) then skips TLS verification and falls
back to plain HTTP. Ours must import from both kinds of insecure registry in that
environment, and refuse both without it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.importer.e2e.conftest import Images, run_importer, same_disk
from tests.peers.registry import OciLayout, Registry, disk_entries

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")


def _pushed(reg: Registry, images: Images, tmp_path: Path, repo: str) -> str:
    layout = OciLayout(tmp_path / f"layout-{repo.replace('/', '-')}")
    layout.tag(layout.image([disk_entries(images.make("raw"))], compression="none"), "v1")
    return reg.push(layout, "v1", repo)


@pytest.mark.parametrize("kind", ["plain-http", "self-signed-https"])
def test_insecure_tls_reaches_a_plain_or_self_signed_registry_as_cdi_does(
    kind: str, registry: Registry, registry_tls: Registry, images: Images, tmp_path: Path
) -> None:
    reg = registry if kind == "plain-http" else registry_tls
    url = _pushed(reg, images, tmp_path, f"e2e/insecure-{kind}")
    dest = tmp_path / "disk.img"
    refused = run_importer("--source", "registry", "--endpoint", url, "--dest", str(dest))
    assert refused.returncode != 0
    assert refused.report["reason"] == "TLSError", refused.report
    assert not dest.exists() or dest.stat().st_size == 0

    r = run_importer(
        "--source", "registry", "--endpoint", url, "--dest", str(dest),
        env={"INSECURE_TLS": "true"},
    )
    assert r.returncode == 0, r.stderr
    assert same_disk(images.reference, dest)


def test_insecure_tls_keeps_its_narrow_meaning_for_http_sources(
    nginx, images: Images, tmp_path: Path
) -> None:
    # An https:// URL is never downgraded to plain HTTP for other sources.
    name = nginx.publish(images.make("raw"), "insecure/disk.raw")
    https_on_plain_port = nginx.http_url.replace("http://", "https://") + f"/{name}"
    r = run_importer(
        "--source", "http", "--endpoint", https_on_plain_port, "--dest", str(tmp_path / "d"),
        env={"INSECURE_TLS": "true"},
    )
    assert r.returncode != 0
