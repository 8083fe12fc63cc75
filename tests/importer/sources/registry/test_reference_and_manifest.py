"""Pure decisions of the registry source: references, manifests, platforms, layer entries."""

from __future__ import annotations

import json
import tarfile

import pytest

from cdicontract.reasons import Reason
from importer.errors import ImportFailure
from importer.sources.rangeproxy import parse_range
from importer.sources.registry.layer import LayerScan, Visibility, apply_whiteouts, classify
from importer.sources.registry.manifest import (
    OCI_INDEX,
    OCI_MANIFEST,
    Index,
    Manifest,
    choose_platform,
    parse_manifest,
    sha256_digest,
)
from importer.sources.registry.reference import (
    DockerReference,
    OciArchiveReference,
    parse_reference,
)
from importer.sources.registry.source import node_architecture

D = "sha256:" + "a" * 64

REFS = {
    "host-port-tag": (
        "docker://127.0.0.1:5000/kubevirt/fedora:39",
        DockerReference("127.0.0.1:5000", "kubevirt/fedora", "39", None),
    ),
    "default-tag": (
        "docker://quay.io/containerdisks/fedora",
        DockerReference("quay.io", "containerdisks/fedora", None, None),
    ),
    "digest": (f"docker://localhost/a/b@{D}", DockerReference("localhost", "a/b", None, D)),
    "hub-library": (
        "docker://busybox",
        DockerReference("registry-1.docker.io", "library/busybox", None, None),
    ),
    "hub-user": (
        "docker://kubevirt/cirros:latest",
        DockerReference("registry-1.docker.io", "kubevirt/cirros", "latest", None),
    ),
    "oci-archive": ("oci-archive:///data/img.tar:v1", OciArchiveReference("/data/img.tar", "v1")),
    "oci-archive-no-ref": ("oci-archive:/data/img.tar", OciArchiveReference("/data/img.tar")),
}


@pytest.mark.parametrize(("url", "expected"), REFS.values(), ids=REFS.keys())
def test_parses_image_references(url: str, expected: object) -> None:
    assert parse_reference(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://h/x",
        "docker://h.io/UPPER/case",
        "docker://h.io/a@sha256:short",
        "oci-archive://relative.tar",
        "docker://h.io/a:bad tag",
    ],
)
def test_refuses_malformed_references(url: str) -> None:
    with pytest.raises(ImportFailure) as err:
        parse_reference(url)
    assert err.value.reason is Reason.INVALID_CONFIG


def _manifest(**over: object) -> bytes:
    doc: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": D,
            "size": 10,
        },
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": D, "size": 5}
        ],
    }
    doc.update(over)
    return json.dumps(doc).encode()


def test_parses_a_manifest_and_checks_its_digest() -> None:
    body = _manifest()
    parsed = parse_manifest(body, OCI_MANIFEST, sha256_digest(body))
    assert isinstance(parsed, Manifest) and parsed.layers[0].size == 5
    with pytest.raises(ImportFailure) as err:
        parse_manifest(body + b" ", OCI_MANIFEST, sha256_digest(body))
    assert err.value.reason is Reason.MANIFEST_INVALID


BAD = {
    "too-big": (_manifest(), 100),
    "not-json": (b"{nope", 4096),
    "schema1": (_manifest(schemaVersion=1), 4096),
    "unknown-type": (_manifest(mediaType="application/x-evil"), 4096),
    "unknown-layer": (_manifest(layers=[{"mediaType": "x/y", "digest": D, "size": 1}]), 4096),
    "no-layers": (_manifest(layers=[]), 4096),
    "bad-digest": (
        _manifest(
            layers=[
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": "md5:00",
                    "size": 1,
                }
            ]
        ),
        4096,
    ),
}


@pytest.mark.parametrize(("body", "cap"), BAD.values(), ids=BAD.keys())
def test_refuses_invalid_manifests(body: bytes, cap: int) -> None:
    with pytest.raises(ImportFailure) as err:
        parse_manifest(body, None, None, cap)
    assert err.value.reason is Reason.MANIFEST_INVALID


def test_chooses_platform_from_index() -> None:
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": D,
                    "size": 1,
                    "platform": {"architecture": "arm64", "os": "linux"},
                },
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": "sha256:" + "b" * 64,
                    "size": 1,
                    "platform": {"architecture": "amd64", "os": "linux"},
                },
            ],
        }
    ).encode()
    index = parse_manifest(body, OCI_INDEX)
    assert isinstance(index, Index)
    assert choose_platform(index, "amd64").digest.endswith("b" * 64)
    with pytest.raises(ImportFailure) as err:
        choose_platform(index, "riscv64")
    assert err.value.reason is Reason.SOURCE_NOT_FOUND


@pytest.mark.parametrize(
    ("machine", "arch"), [("x86_64", "amd64"), ("aarch64", "arm64"), ("s390x", "s390x")]
)
def test_node_architecture_in_oci_terms(machine: str, arch: str) -> None:
    assert node_architecture(machine) == arch


def _member(name: str, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info


def test_classifies_layer_entries_and_whiteouts() -> None:
    scan = LayerScan()
    assert classify(_member("disk/disk.img"), scan) == "disk/disk.img"
    assert classify(_member("./disk/sub/x.img"), scan) == "disk/sub/x.img"
    assert classify(_member("etc/passwd"), scan) is None
    assert classify(_member("disk", tarfile.DIRTYPE), scan) is None
    assert classify(_member("disk/.wh.old.img"), scan) is None
    assert classify(_member("disk/.wh..wh..opq"), scan) is None
    assert classify(_member(".wh.etc"), scan) is None
    assert scan.whiteouts == {"disk/old.img"} and scan.opaque
    vis = Visibility()
    apply_whiteouts(scan, vis)
    assert vis.hides("disk/anything")


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("../x", tarfile.REGTYPE),
        ("/abs", tarfile.REGTYPE),
        ("disk/l", tarfile.SYMTYPE),
        ("disk/h", tarfile.LNKTYPE),
        ("disk/c", tarfile.CHRTYPE),
        ("disk/f", tarfile.FIFOTYPE),
        ("disk/.wh.../../etc", tarfile.REGTYPE),
    ],
)
def test_refuses_hostile_entries(name: str, kind: bytes) -> None:
    with pytest.raises(ImportFailure) as err:
        classify(_member(name, kind), LayerScan())
    assert err.value.reason is Reason.UNSAFE_IMAGE


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-99", (0, 99)),
        ("bytes=10-", (10, 999)),
        ("bytes=900-5000", (900, 999)),
    ],
)
def test_parses_range_headers(header: str | None, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5-1", "bytes=-5", "items=0-1"])
def test_refuses_unsatisfiable_ranges(header: str) -> None:
    with pytest.raises(ValueError):
        parse_range(header, 1000)
