"""Hostile images are refused by header parsing alone, before any qemu-img process exists."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cdicontract.reasons import Reason
from importer.errors import ImportFailure
from importer.formats import HEAD_SIZE, DiskFormat, detect, ensure_fits, inspect
from tests import imagefactory

Builder = Callable[[Path], Path]

HOSTILE: dict[str, tuple[Builder, Reason, str]] = {
    "qcow2-backing-file": (imagefactory.qcow2_with_backing, Reason.UNSAFE_IMAGE, "backing file"),
    "qcow2-external-data-file": (
        imagefactory.qcow2_with_data_file,
        Reason.UNSAFE_IMAGE,
        "external data file",
    ),
    "qcow2-encrypted": (imagefactory.qcow2_encrypted, Reason.UNSAFE_IMAGE, "encrypted"),  # slow
    "qcow2-absurd-virtual-size": (
        imagefactory.qcow2_absurd_size,
        Reason.UNSAFE_IMAGE,
        "virtual size 72057594037927936",
    ),
    "qcow2-truncated": (imagefactory.qcow2_truncated, Reason.CORRUPT_IMAGE, "beyond the end"),
    "qcow2-truncated-header": (
        lambda d: imagefactory.qcow2_truncated(d, 90),
        Reason.INVALID_IMAGE,
        "truncated",
    ),
    "vmdk-two-gb-extents": (
        imagefactory.vmdk_descriptor_with_extents,
        Reason.UNSAFE_IMAGE,
        "extent files",
    ),
    "vmdk-monolithic-flat": (
        lambda d: imagefactory.vmdk_descriptor_with_extents(d, "monolithicFlat"),
        Reason.UNSAFE_IMAGE,
        "extent files",
    ),
    "vmdk-delta": (imagefactory.vmdk_delta, Reason.UNSAFE_IMAGE, "parent"),
    "vhd-differencing": (imagefactory.vhd_differencing, Reason.UNSAFE_IMAGE, "differencing"),
    "vhdx-differencing": (imagefactory.vhdx_differencing, Reason.UNSAFE_IMAGE, "differencing"),
    "vdi-differencing": (imagefactory.vdi_differencing, Reason.UNSAFE_IMAGE, "differencing"),
}


@pytest.fixture
def no_subprocess(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail if anything tries to start a process (qemu-img included) while it is active."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a process was started during inspection: {args!r}")

    monkeypatch.setattr(subprocess.Popen, "_execute_child", refuse)
    yield


def _inspect_file(path: Path) -> None:
    with path.open("rb") as f:
        head = f.read(HEAD_SIZE)
    inspect(detect(head), imagefactory.read_at_file(path), path.stat().st_size)


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=[pytest.mark.slow] if "encrypted" in n else []) for n in HOSTILE],
)
def test_hostile_image_is_refused_before_qemu_img(
    tmp_path: Path, request: pytest.FixtureRequest, name: str
) -> None:
    builder, reason, fragment = HOSTILE[name]
    path = builder(tmp_path)
    before = imagefactory.sha256_of(path)
    request.getfixturevalue("no_subprocess")

    with pytest.raises(ImportFailure) as failure:
        _inspect_file(path)

    assert failure.value.reason is reason
    assert fragment in failure.value.message
    assert failure.value.permanent
    assert imagefactory.sha256_of(path) == before


def test_hostile_images_really_are_what_they_claim(tmp_path: Path) -> None:
    """Guards the factory: qemu-img itself sees the parent/data file we refuse."""
    backing = imagefactory.qemu_info(imagefactory.qcow2_with_backing(tmp_path), "qcow2")
    assert "backing-filename" in backing
    data_file = imagefactory.qemu_info(imagefactory.qcow2_with_data_file(tmp_path), "qcow2")
    assert "data-file" in str(data_file["format-specific"])
    delta = imagefactory.qemu_info(imagefactory.vmdk_delta(tmp_path), "vmdk")
    assert "backing-filename" in delta


def test_messages_never_repeat_file_names_from_the_image(tmp_path: Path) -> None:
    """A hostile header's strings (paths, possibly URLs with credentials) stay out of errors."""
    for builder in (imagefactory.qcow2_with_backing, imagefactory.vmdk_delta):
        with pytest.raises(ImportFailure) as failure:
            _inspect_file(builder(tmp_path))
        assert str(tmp_path) not in failure.value.message
        assert ".vmdk" not in failure.value.message
        assert ".raw" not in failure.value.message


@pytest.fixture(scope="module")
def foreign_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    # LUKS key setup costs qemu-img a few seconds whatever the iteration time: build once.
    return imagefactory.unsupported_images(tmp_path_factory.mktemp("foreign"))


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["qcow (version 1)", "QED", "Parallels", "LUKS", "Bochs", "cloop", "tar archive"]
)
def test_recognised_foreign_formats_are_unsupported_by_name(
    foreign_images: dict[str, Path], name: str
) -> None:
    path = foreign_images[name]
    with pytest.raises(ImportFailure) as failure:
        detect(path.read_bytes()[:HEAD_SIZE])
    assert failure.value.reason is Reason.UNSUPPORTED_FORMAT
    assert name in failure.value.message


def test_the_no_process_guard_really_stops_processes(no_subprocess: None) -> None:
    with pytest.raises(AssertionError, match="process was started"):
        subprocess.run(["true"], check=False)


def test_image_larger_than_the_volume_is_refused_before_qemu_img(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    path = imagefactory.qcow2_oversized(tmp_path, 1 << 40)
    assert imagefactory.qemu_info(path, "qcow2")["virtual-size"] == 1 << 40
    request.getfixturevalue("no_subprocess")

    info = inspect(DiskFormat.QCOW2, imagefactory.read_at_file(path), path.stat().st_size)
    assert info.virtual_size == 1 << 40
    with pytest.raises(ImportFailure) as failure:
        ensure_fits(info.virtual_size, 1 << 30)
    assert failure.value.reason is Reason.IMAGE_TOO_LARGE
    assert "DataVolume too small to contain image" in failure.value.message
