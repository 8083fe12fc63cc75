"""Which images hack/build-images makes, and where --push puts them (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest
from imagebuild import inputs, spec

from cdicontract import images


def test_one_product_image_per_component_and_the_test_images() -> None:
    names = [s.name for s in spec.all_images("0.1.0")]
    assert names == [
        *(f"quay.io/cdi-py/{c}:0.1.0" for c in images.COMPONENTS),
        "docker.io/cdi-py/testutil:latest",
        "docker.io/library/busybox:latest",
        "docker.io/cdi-py/importer-misbehaving:latest",
    ]


@pytest.mark.parametrize(
    ("reference", "normal"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        ("cdi-py/testutil", "docker.io/cdi-py/testutil:latest"),
        ("quay.io/cdi-py/importer:0.1.0", "quay.io/cdi-py/importer:0.1.0"),
        ("localhost/x", "localhost/x:latest"),
        ("127.0.0.1:5000/a/b", "127.0.0.1:5000/a/b:latest"),
        ("quay.io/a/b@sha256:" + "0" * 64, "quay.io/a/b@sha256:" + "0" * 64),
    ],
    ids=["bare", "tagged", "two-elements", "full", "localhost", "host-port", "digest"],
)
def test_references_are_read_as_a_kubelet_reads_them(reference: str, normal: str) -> None:
    assert spec.normalize(reference) == normal


def test_push_goes_to_the_mirror_layout() -> None:
    assert (spec.mirror_reference("127.0.0.1:5000", "quay.io/cdi-py/importer:0.1.0")
            == "127.0.0.1:5000/quay.io/cdi-py/importer:0.1.0")
    assert (spec.mirror_reference("127.0.0.1:5000", "busybox")
            == "127.0.0.1:5000/docker.io/library/busybox:latest")


@pytest.mark.parametrize("address", ["", "http://127.0.0.1:5000", " 127.0.0.1:5000"])
def test_a_bad_push_address_is_refused(address: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        spec.mirror_reference(address, "busybox")


def test_only_accepts_short_or_full_names_and_names_the_unknown() -> None:
    specs = spec.all_images("0.1.0")
    assert [s.short for s in spec.select(specs, ["importer", "docker.io/library/busybox:latest"])] \
        == ["importer", "busybox"]
    with pytest.raises(ValueError, match=r"unknown image.*importr"):
        spec.select(specs, ["importr"])


def test_the_key_changes_with_content_and_ignores_bytecode(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text("x = 1\n")
    first = inputs.key(tmp_path, ["pkg"])
    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"junk")
    assert inputs.key(tmp_path, ["pkg"]) == first
    (tmp_path / "pkg" / "m.py").write_text("x = 2\n")
    assert inputs.key(tmp_path, ["pkg"]) != first
    assert inputs.key(tmp_path, ["pkg"], extra=["version=2"]) != inputs.key(tmp_path, ["pkg"])


def test_a_missing_input_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothere"):
        inputs.key(tmp_path, ["nothere"])
