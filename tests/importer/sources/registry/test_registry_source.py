"""RegistrySource against Debian's docker-registry, images written by hand and pushed by skopeo."""

from __future__ import annotations

import hashlib
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from cdicontract.reasons import Reason
from importer.errors import ImportFailure
from importer.sources.registry.source import RegistryOptions, RegistrySource
from tests.importer.sources.conftest import window_convert
from tests.peers.registry import (
    OciLayout,
    Registry,
    disk_entries,
    file_entry,
    oci_archive,
    special_entry,
)


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(raw, qcow2) of an 8 MiB disk with scattered data."""
    tmp = tmp_path_factory.mktemp("disk")
    raw = tmp / "disk.raw"
    with raw.open("wb") as f:
        f.truncate(8 << 20)
        for i in range(0, 8, 2):
            f.seek(i << 20)
            f.write(os.urandom(300_000))
    qcow2 = tmp / "disk.qcow2"
    subprocess.run(
        ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2)], check=True
    )
    return raw, qcow2


def _sha(chunks: object) -> str:
    h = hashlib.sha256()
    for c in chunks:  # type: ignore[attr-defined]
        h.update(c)
    return h.hexdigest()


def _sha_file(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _opts(reg: Registry, **kw: object) -> RegistryOptions:
    base: dict[str, object] = {
        "username": reg.username,
        "password": reg.password,
        "insecure_registries": frozenset() if reg.tls else frozenset({reg.host}),
        "ca_bundle": reg.ca_bundle,
    }
    base.update(kw)
    return RegistryOptions(**base)  # type: ignore[arg-type]


def _push(
    reg: Registry,
    tmp: Path,
    layers: list,
    compression: str,
    repo: str,  # type: ignore[type-arg]
    tag: str = "v1",
) -> str:
    layout = OciLayout(tmp / f"layout-{repo.replace('/', '-')}-{tag}")
    layout.tag(layout.image(layers, compression), tag)
    return reg.push(layout, tag, repo)


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_streams_the_disk_out_of_a_compressed_layer(
    registry: Registry, disk: tuple[Path, Path], tmp_path: Path, compression: str
) -> None:
    _, qcow2 = disk
    url = _push(registry, tmp_path, [disk_entries(qcow2)], compression, f"c/{compression}")
    src = RegistrySource(url, _opts(registry))
    info = src.info()
    assert info.size is None and info.validator and info.validator.startswith("sha256:")
    assert src.scratch_reason == f"layer is {compression}-compressed"
    assert src.random_reads() is None
    stream = src.open()
    assert _sha(stream) == _sha_file(qcow2)
    stream.close()
    src.close()


def test_uncompressed_layer_gives_size_and_random_access_for_qemu_img(
    registry: Registry, disk: tuple[Path, Path], tmp_path: Path
) -> None:
    raw, qcow2 = disk
    url = _push(registry, tmp_path, [disk_entries(qcow2)], "none", "plain/qcow2")
    src = RegistrySource(url, _opts(registry))
    try:
        info = src.info()
        assert info.size == qcow2.stat().st_size, src.scratch_reason
        assert src.scratch_reason is None
        assert _sha(src.open()) == _sha_file(qcow2)
        window = src.random_reads()
        assert window is not None
        out = tmp_path / "out.raw"
        window_convert(window, "qcow2", out)  # verifies the blob's digest too
        assert out.read_bytes() == raw.read_bytes()
    finally:
        src.close()


def test_open_at_offset_resumes_inside_the_disk(registry: Registry, tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    url = _push(registry, tmp_path, [disk_entries(data)], "gzip", "resume/me")
    src = RegistrySource(url, _opts(registry))
    assert b"".join(src.open(1_000_001)) == data[1_000_001:]


def test_disk_in_a_lower_layer_and_other_files_elsewhere(
    registry: Registry, tmp_path: Path
) -> None:
    data = os.urandom(100_000)
    layers = [
        disk_entries(data),
        [file_entry("etc/motd", b"hello"), file_entry("usr/share/doc", b"x" * 5000)],
    ]
    url = _push(registry, tmp_path, layers, "none", "layers/lower")
    src = RegistrySource(url, _opts(registry))
    assert src.info().size == len(data)
    assert b"".join(src.open()) == data


def test_last_layer_wins_and_whiteouts_hide_lower_disks(registry: Registry, tmp_path: Path) -> None:
    old, new = b"old" * 1000, b"new" * 2000
    layers = [
        disk_entries(old, "old.img"),
        [file_entry("disk/.wh.old.img", b""), *disk_entries(new, "new.img")],
    ]
    url = _push(registry, tmp_path, layers, "gzip", "layers/whiteout")
    assert b"".join(RegistrySource(url, _opts(registry)).open()) == new
    hidden = [disk_entries(old), [file_entry("disk/.wh..wh..opq", b"")]]
    url = _push(registry, tmp_path, hidden, "none", "layers/opaque")
    with pytest.raises(ImportFailure) as err:
        RegistrySource(url, _opts(registry)).info()
    assert err.value.reason is Reason.UNSAFE_IMAGE


HOSTILE = {
    "path-escape": [file_entry("../../etc/evil", b"x"), *disk_entries(b"d" * 1024)],
    "absolute-path": [file_entry("/etc/evil", b"x"), *disk_entries(b"d" * 1024)],
    "symlink-in-disk": [
        special_entry("disk", tarfile.DIRTYPE),
        special_entry("disk/disk.img", tarfile.SYMTYPE, "/etc/shadow"),
    ],
    "hardlink-in-disk": [
        file_entry("etc/shadow", b"secret"),
        special_entry("disk", tarfile.DIRTYPE),
        special_entry("disk/disk.img", tarfile.LNKTYPE, "etc/shadow"),
    ],
    "device-in-disk": [
        special_entry("disk", tarfile.DIRTYPE),
        special_entry("disk/sda", tarfile.BLKTYPE),
    ],
    "two-files": [*disk_entries(b"a" * 1024), file_entry("disk/second.img", b"b" * 1024)],
    "no-file": [special_entry("disk", tarfile.DIRTYPE), file_entry("other/disk.img", b"x")],
    "whiteout-escape": [file_entry("disk/.wh.../../etc", b""), *disk_entries(b"d" * 1024)],
}


@pytest.mark.parametrize("compression", ["none", "gzip"])
@pytest.mark.parametrize("entries", HOSTILE.values(), ids=HOSTILE.keys())
def test_refuses_hostile_layers(
    registry: Registry,
    tmp_path: Path,
    entries: list,
    compression: str,  # type: ignore[type-arg]
) -> None:
    repo = f"hostile/{abs(hash(str([e[0].name for e in entries]))) % 10**8}-{compression}"
    url = _push(registry, tmp_path, [entries], compression, repo)
    src = RegistrySource(url, _opts(registry))
    with pytest.raises(ImportFailure) as err:
        src.info()
        b"".join(src.open())
    assert err.value.reason is Reason.UNSAFE_IMAGE


def test_multi_arch_index_picks_the_requested_architecture(
    registry: Registry, tmp_path: Path
) -> None:
    layout = OciLayout(tmp_path / "multi")
    amd = layout.image([disk_entries(b"amd64" * 1000)], "gzip", arch="amd64")
    arm = layout.image([disk_entries(b"arm64" * 1000)], "gzip", arch="arm64")
    layout.tag(layout.multiarch([amd, arm]), "multi")
    url = registry.push(layout, "multi", "multi/arch", all_arch=True)
    for arch in ("amd64", "arm64"):
        src = RegistrySource(url, _opts(registry, architecture=arch))
        assert b"".join(src.open()) == arch.encode() * 1000
    with pytest.raises(ImportFailure) as err:
        RegistrySource(url, _opts(registry, architecture="s390x")).info()
    assert err.value.reason is Reason.SOURCE_NOT_FOUND


def test_pull_by_digest(registry: Registry, tmp_path: Path) -> None:
    url = _push(registry, tmp_path, [disk_entries(b"pinned" * 100)], "gzip", "by/digest")
    digest = RegistrySource(url, _opts(registry)).info().validator
    pinned = url.rsplit(":", 1)[0] + f"@{digest}"
    assert b"".join(RegistrySource(pinned, _opts(registry)).open()) == b"pinned" * 100


def test_missing_tag_and_missing_repository(registry: Registry, tmp_path: Path) -> None:
    url = _push(registry, tmp_path, [disk_entries(b"x" * 10)], "gzip", "exists/repo")
    for missing in (url.rsplit(":", 1)[0] + ":nope", f"docker://{registry.host}/no/such:v1"):
        with pytest.raises(ImportFailure) as err:
            RegistrySource(missing, _opts(registry)).info()
        assert err.value.reason is Reason.SOURCE_NOT_FOUND


def test_corrupted_blob_fails_digest_check_at_the_end(registry: Registry, tmp_path: Path) -> None:
    data = os.urandom(200_000)
    url = _push(registry, tmp_path, [disk_entries(data)], "none", "corrupt/blob")
    src = RegistrySource(url, _opts(registry))
    src.info()
    assert src._manifest is not None
    blob = registry.blob_path(src._manifest.layers[0].digest)
    content = bytearray(blob.read_bytes())
    content[-3000] ^= 0xFF  # tar padding after the disk: the disk bytes are intact
    blob.write_bytes(bytes(content))
    fresh = RegistrySource(url, _opts(registry))
    got = bytearray()
    with pytest.raises(ImportFailure) as err:
        for chunk in fresh.open():
            got += chunk
    assert err.value.reason is Reason.DIGEST_MISMATCH
    assert bytes(got) == data  # delivered, then refused: the pipeline must discard it


def test_tampered_manifest_is_invalid(registry: Registry, tmp_path: Path) -> None:
    url = _push(registry, tmp_path, [disk_entries(b"m" * 100)], "gzip", "tampered/manifest")
    digest = RegistrySource(url, _opts(registry)).info().validator
    assert digest
    path = registry.blob_path(digest)
    path.write_bytes(path.read_bytes().replace(b'"schemaVersion": 2', b'"schemaVersion":2'))
    with pytest.raises(ImportFailure) as err:
        RegistrySource(url, _opts(registry)).info()
    assert err.value.reason is Reason.MANIFEST_INVALID


def test_plain_http_registry_needs_to_be_listed_as_insecure(
    registry: Registry, tmp_path: Path
) -> None:
    url = _push(registry, tmp_path, [disk_entries(b"x" * 10)], "gzip", "insecure/list")
    with pytest.raises(ImportFailure) as err:
        RegistrySource(url, RegistryOptions()).info()
    assert err.value.reason is Reason.TLS_ERROR
    assert "insecureRegistries" in err.value.message


def test_basic_auth(registry_basic: Registry, tmp_path: Path) -> None:
    url = _push(registry_basic, tmp_path, [disk_entries(b"basic" * 10)], "gzip", "auth/basic")
    assert b"".join(RegistrySource(url, _opts(registry_basic)).open()) == b"basic" * 10
    for user, password in (("alice", "wrong-password"), (None, None)):
        with pytest.raises(ImportFailure) as err:
            RegistrySource(url, _opts(registry_basic, username=user, password=password)).info()
        assert err.value.reason is Reason.UNAUTHORIZED
        assert "wrong-password" not in err.value.message


def test_token_auth(registry_token: Registry, tmp_path: Path) -> None:
    url = _push(registry_token, tmp_path, [disk_entries(b"token" * 10)], "none", "auth/token")
    src = RegistrySource(url, _opts(registry_token))
    assert src.info().size == 50
    assert b"".join(src.open()) == b"token" * 10
    src.close()
    with pytest.raises(ImportFailure) as err:
        RegistrySource(url, _opts(registry_token, password="nope")).info()
    assert err.value.reason is Reason.UNAUTHORIZED


def test_token_auth_random_access(
    registry_token: Registry, disk: tuple[Path, Path], tmp_path: Path
) -> None:
    raw, qcow2 = disk
    url = _push(registry_token, tmp_path, [disk_entries(qcow2)], "none", "auth/token-ra")
    src = RegistrySource(url, _opts(registry_token))
    try:
        window = src.random_reads()
        assert window is not None
        out = tmp_path / "out.raw"
        access = window_convert(window, "qcow2", out)
        assert not any("horse" in p for p in access.params)
        assert out.read_bytes() == raw.read_bytes()
    finally:
        src.close()


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_registry_with_ca_and_without(registry_tls: Registry, tmp_path: Path) -> None:
    url = _push(registry_tls, tmp_path, [disk_entries(b"tls" * 10)], "gzip", "tls/img")
    assert b"".join(RegistrySource(url, _opts(registry_tls)).open()) == b"tls" * 10
    with pytest.raises(ImportFailure) as err:
        RegistrySource(url, _opts(registry_tls, ca_bundle=None)).info()
    assert err.value.reason is Reason.TLS_ERROR
    insecure = RegistrySource(url, _opts(registry_tls, ca_bundle=None, insecure_tls=True))
    assert b"".join(insecure.open()) == b"tls" * 10


def test_oci_archive_streams_and_serves_random_access(
    disk: tuple[Path, Path], tmp_path: Path
) -> None:
    raw, qcow2 = disk
    layout = OciLayout(tmp_path / "layout")
    layout.tag(layout.image([disk_entries(qcow2)], "none"), "v1")
    layout.tag(layout.image([disk_entries(b"other")], "gzip"), "v2")
    archive = oci_archive(layout, tmp_path / "image.tar")
    src = RegistrySource(f"oci-archive://{archive}:v1", RegistryOptions())
    assert src.info().size == qcow2.stat().st_size
    assert _sha(src.open()) == _sha_file(qcow2)
    window = src.random_reads()
    assert window is not None
    out = tmp_path / "out.raw"
    window_convert(window, "qcow2", out)
    assert out.read_bytes() == raw.read_bytes()
    v2 = RegistrySource(f"oci-archive://{archive}:v2", RegistryOptions())
    assert b"".join(v2.open()) == b"other"
    with pytest.raises(ImportFailure) as err:
        RegistrySource(f"oci-archive://{archive}:v3", RegistryOptions()).info()
    assert err.value.reason is Reason.SOURCE_NOT_FOUND
