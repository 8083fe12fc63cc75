"""A registry layer with four bytes changed never imports, on the ranged and the streamed path.

The image is pinned by digest (`@sha256:` of its manifest), the manifest names the layer's
digest, and Debian's docker-registry serves whatever its storage holds: we change the
stored blob behind its back. The uncompressed layer is converted through random access
(the pinned view hashes the whole blob before the target is committed); the gzip layer is
streamed (to scratch for qcow2, straight into the target for raw). Every path must end in
DigestMismatch with nothing at the destination.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from importer.sources.registry.source import RegistryOptions, RegistrySource
from tests.importer.e2e.conftest import Images, run_importer
from tests.peers.registry import OciLayout, Registry, disk_entries, file_entry


def _push_pinned(registry: Registry, tmp: Path, disk: Path, layer: str, repo: str) -> str:
    layout = OciLayout(tmp / f"layout-{repo.replace('/', '-')}")
    # A file of its own makes the layer's digest unique: the registry shares equal blobs
    # between repositories, and other tests must not get the one we tamper with.
    entries = [file_entry("etc/test-id", f"{repo} {tmp}".encode()), *disk_entries(disk)]
    layout.tag(layout.image([entries], compression=layer), "v1")
    url = registry.push(layout, "v1", repo)
    digest = RegistrySource(url, RegistryOptions(insecure_registries=frozenset({registry.host})))
    manifest_digest = digest.info().validator
    assert manifest_digest and manifest_digest.startswith("sha256:")
    return url.rsplit(":", 1)[0] + "@" + manifest_digest


def _tamper_layer(registry: Registry, url: str, where: float) -> None:
    src = RegistrySource(url, RegistryOptions(insecure_registries=frozenset({registry.host})))
    src.info()
    assert src._manifest is not None
    blob = registry.blob_path(src._manifest.layers[-1].digest)
    data = bytearray(blob.read_bytes())
    at = int(len(data) * where)
    data[at : at + 4] = bytes(b ^ 0x5A for b in data[at : at + 4])
    blob.write_bytes(bytes(data))
    assert "sha256:" + hashlib.sha256(data).hexdigest() != src._manifest.layers[-1].digest
    src.close()


@pytest.mark.parametrize(
    ("fmt", "layer", "path"),
    [
        ("qcow2", "none", "ranged"),
        ("qcow2", "gzip", "scratch"),
        ("raw", "none", "streamed"),
        ("raw", "gzip", "streamed"),
    ],
)
@pytest.mark.parametrize("where", [0.5, 0.999], ids=["inside-the-disk", "tar-padding"])
def test_a_tampered_layer_of_a_pinned_image_is_digest_mismatch(
    registry: Registry,
    images: Images,
    tmp_path: Path,
    fmt: str,
    layer: str,
    path: str,
    where: float,
) -> None:
    repo = f"tamper/{fmt}-{layer}-{int(where * 1000)}"
    url = _push_pinned(registry, tmp_path, images.make(fmt), layer, repo)
    _tamper_layer(registry, url, where)
    dest = tmp_path / "volume"
    dest.mkdir()
    r = run_importer(
        "--source", "registry", "--endpoint", url, "--dest", str(dest / "disk.img"),
        env={"IMPORTER_INSECURE_REGISTRIES": registry.host},
    )  # fmt: skip
    assert r.returncode == 3, (path, r.report, r.stderr[-1500:])
    assert r.report["reason"] == "DigestMismatch", (path, r.report)
    assert list(dest.iterdir()) == []


def test_an_untouched_pinned_image_imports_through_the_ranged_path(
    registry: Registry, images: Images, tmp_path: Path
) -> None:
    url = _push_pinned(registry, tmp_path, images.make("qcow2"), "none", "tamper/control")
    dest = tmp_path / "disk.img"
    r = run_importer(
        "--source", "registry", "--endpoint", url, "--dest", str(dest),
        env={"IMPORTER_INSECURE_REGISTRIES": registry.host},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.report["scratch_used"] is False
    assert dest.read_bytes()[: images.reference.stat().st_size] == images.reference.read_bytes()
