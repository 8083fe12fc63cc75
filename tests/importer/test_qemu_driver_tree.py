"""The driver trees against the real qemu-img 7.2: what each driver accepts, what info still
reports, and that a referenced file is never opened, from a local path or over NBD.

"Never opened" is checked on access times (as tests/importer/e2e/test_hostile_images.py
does): the file system is mounted relatime, so once a file's atime is set into the past,
any read moves it. `test_the_atime_watch_sees_a_read` shows that the watch works.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cdicontract.reasons import Reason
from importer import drivertree, qemu
from importer.errors import ImportFailure
from importer.limits import INFO_LIMITS
from importer.nbd import NbdServer
from importer.sources.base import RandomAccess
from importer.watchdog import run_watched
from tests import imagefactory
from tests.importer.test_qemu_info import FORMATS, children, make_image

PAST = 1_000_000


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    before = children()
    yield
    assert children() - before == set(), "qemu-img or nbdkit left running"


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tree-images")
    return {fmt: make_image(d / f"disk.{fmt}", fmt) for fmt in FORMATS}


@contextlib.contextmanager
def source(path: Path, proto: str, workdir: Path) -> Iterator[str]:
    """`path` as qemu.info/convert take it: the path itself, or an nbdkit export of it."""
    if proto == "file":
        yield str(path)
        return
    with NbdServer(RandomAccess("file", (f"file={path}",)), workdir=str(workdir)) as nbd:
        yield nbd.uri


def watch(*paths: Path) -> list[Path]:
    for p in paths:
        os.utime(p, (PAST, p.stat().st_mtime))
    return list(paths)


def untouched(paths: list[Path]) -> bool:
    return all(p.stat().st_atime == PAST for p in paths)


def qemu_img(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["qemu-img", *args], capture_output=True, text=True, check=False)


def json_name(tree: dict[str, Any]) -> str:
    return drivertree.json_filename(tree)


# --- what the drivers accept -----------------------------------------------------------


@pytest.mark.parametrize("proto", ["file", "nbd"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_opens_and_converts_through_its_tree(
    images: dict[str, Path], fmt: str, proto: str, tmp_path: Path
) -> None:
    dest = tmp_path / "out.raw"
    with source(images[fmt], proto, tmp_path) as src:
        qi = qemu.info(src, fmt)
        qemu.convert(src, fmt, str(dest), dest_is_block=False, verified=src)
    assert qi.format == fmt
    # The image keeps a plain name under a tree, so VMDK self-extents still match it.
    own = qi.raw["filename"]
    assert isinstance(own, str)
    if proto == "file":
        assert own == str(images[fmt])
    else:
        assert own == f"nbd+unix://?socket={drivertree.nbd_unix_socket(src)}"
    qemu.check_safe(qi)
    same = qemu_img("compare", "-f", "raw", "-F", fmt, str(dest), str(images[fmt]))
    assert same.returncode == 0, same.stdout + same.stderr


@pytest.mark.parametrize("fmt", FORMATS)
def test_only_qcow2_and_vmdk_take_a_backing_node(
    images: dict[str, Path], fmt: str, tmp_path: Path
) -> None:
    """Why `backing` is only in the qcow2 and vmdk trees: the other drivers have no backing
    (qemu 7.2 strips a null `backing` before any driver sees it; a real node is refused).
    Convert, not info: info opens images without their backing, so it refuses every node."""
    other = make_image(tmp_path / "other.raw", "raw")
    tree = {
        "driver": fmt,
        "backing": {"driver": "raw", "file": {"driver": "file", "filename": str(other)}},
        "file": {"driver": "file", "filename": str(images[fmt])},
    }
    r = qemu_img("convert", "-O", "raw", json_name(tree), str(tmp_path / "out.raw"))
    refused = "Driver doesn't support backing files" in r.stderr
    assert refused is (fmt not in drivertree.BACKING_FORMATS), r.stderr


def test_a_format_option_would_override_the_tree(images: dict[str, Path]) -> None:
    """Why the argv carries no `-f`: qemu-img lets it replace the tree's driver."""
    name = drivertree.image_filename(str(images["qcow2"]), "qcow2")
    r = qemu_img("info", "--output=json", "-U", "-f", "raw", name)
    assert json.loads(r.stdout)["format"] == "raw"
    assert "-f" not in qemu.info_command(str(images["qcow2"]), "qcow2")


@pytest.fixture
def with_data_file(tmp_path: Path) -> tuple[Path, Path]:
    """A qcow2 whose clusters live in an external data file (written, so reads touch it)."""
    data = tmp_path / "external-data.raw"
    img = tmp_path / "with-data-file.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-o", f"data_file={data}", str(img), "4M"],
        check=True,
    )
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", "write -P 0xab 0 1M", str(img)],
        check=True, stdout=subprocess.DEVNULL,
    )
    return img, data


def test_a_data_file_cannot_be_nulled_in_a_tree(
    images: dict[str, Path], with_data_file: tuple[Path, Path], tmp_path: Path
) -> None:
    """Why the qcow2 tree has no `data-file`: a null one is ignored (the header's file is
    opened all the same), and any node is an error for the images without a data file.
    The data file is left to check_safe and the sandbox."""
    img, data = with_data_file
    nulled = {"driver": "qcow2", "backing": None, "data-file": None,
              "file": {"driver": "file", "filename": str(img)}}
    watched = watch(data)
    r = qemu_img("convert", "-O", "raw", json_name(nulled), str(tmp_path / "a.raw"))
    assert r.returncode == 0, r.stderr
    assert not untouched(watched)  # read through the header's name despite the null

    plain = {"driver": "qcow2", "data-file": {"driver": "null-co"},
             "file": {"driver": "file", "filename": str(images["qcow2"])}}
    r = qemu_img("convert", "-O", "raw", json_name(plain), str(tmp_path / "b.raw"))
    assert r.returncode != 0
    assert "'data-file' can only be set for images with an external data file" in r.stderr


def test_the_atime_watch_sees_a_read(tmp_path: Path) -> None:
    child = make_backed_image(tmp_path)
    base = tmp_path / "base.raw"
    watched = watch(base)
    r = qemu_img("convert", "-f", "qcow2", "-O", "raw", str(child), str(tmp_path / "o.raw"))
    assert r.returncode == 0, r.stderr
    assert not untouched(watched)  # a plain filename follows the backing file


# --- references are reported, never opened ---------------------------------------------


def make_backed_image(directory: Path, *, relative: bool = False) -> Path:
    """A qcow2 over a raw backing file with data in it, so reading the child reads it."""
    base = directory / "base.raw"
    with base.open("wb") as f:
        f.write(b"\x5a" * (1 << 20))
        f.truncate(4 << 20)
    child = directory / "child.qcow2"
    name = base.name if relative else str(base)
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", name, "-F", "raw", str(child)],
        check=True, cwd=directory,
    )
    return child


@pytest.mark.parametrize("proto", ["file", "nbd"])
@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
def test_a_backing_file_is_reported_but_never_opened(
    tmp_path: Path, proto: str, relative: bool
) -> None:
    child = make_backed_image(tmp_path, relative=relative)
    watched = watch(tmp_path / "base.raw")
    with source(child, proto, tmp_path) as src:
        qi = qemu.info(src, "qcow2")
        assert qi.backing_file is not None and qi.backing_file.endswith("base.raw")
        with pytest.raises(ImportFailure) as e:
            qemu.check_safe(qi)
        assert e.value.reason is Reason.UNSAFE_IMAGE
        # Straight to convert, as if the check had passed: it converts the child alone.
        qemu.convert(src, "qcow2", str(tmp_path / "out.raw"), dest_is_block=False,
                     verified=src)
    assert untouched(watched)
    with open(tmp_path / "out.raw", "rb") as f:
        assert f.read(1 << 20) == bytes(1 << 20)  # zeros: the backing data never came in


@pytest.mark.parametrize("proto", ["file", "nbd"])
def test_the_tree_alone_keeps_a_backing_file_closed(tmp_path: Path, proto: str) -> None:
    """The argv alone, without `qemu.info`/`qemu.convert` around them, keep it closed."""
    child = make_backed_image(tmp_path)
    watched = watch(tmp_path / "base.raw")
    out = tmp_path / "out.raw"
    with source(child, proto, tmp_path) as src:
        info = run_watched(qemu.info_command(src, "qcow2"), limits=INFO_LIMITS,
                           capture_stdout=True)
        conv = run_watched(
            qemu.convert_command(src, "qcow2", str(out), create=True, target_is_zero=False,
                                 direct=False),
            limits=INFO_LIMITS,
        )
    assert info.returncode == 0 and conv.returncode == 0, (info, conv)
    assert json.loads(info.stdout)["backing-filename"] == str(tmp_path / "base.raw")
    assert untouched(watched)


@pytest.mark.parametrize(
    ("make", "fmt", "opens"),
    [
        (imagefactory.vhd_differencing, "vpc", True),
        (imagefactory.vhdx_differencing, "vhdx", False),
        (imagefactory.vdi_differencing, "vdi", False),
    ],
    ids=["vhd", "vhdx", "vdi"],
)
def test_differencing_images_of_formats_without_backing_name_no_parent(
    tmp_path: Path, make: Callable[[Path], Path], fmt: str, opens: bool
) -> None:
    """Why their trees need no `backing`: qemu has no parent for them to follow."""
    image = make(tmp_path)
    if opens:
        qi = qemu.info(str(image), fmt)
        assert qi.backing_file is None
    else:
        with pytest.raises(ImportFailure) as e:
            qemu.info(str(image), fmt)
        assert e.value.reason is Reason.INVALID_IMAGE


@pytest.mark.parametrize("proto", ["file", "nbd"])
def test_a_data_file_is_reported_but_never_opened(
    with_data_file: tuple[Path, Path], proto: str, tmp_path: Path
) -> None:
    img, data = with_data_file
    watched = watch(data)
    out = tmp_path / "out.raw"
    with source(img, proto, tmp_path) as src:
        qi = qemu.info(src, "qcow2")
        assert qi.data_file == str(data)
        with pytest.raises(ImportFailure) as e:
            qemu.check_safe(qi)
        assert e.value.reason is Reason.UNSAFE_IMAGE
        # Straight to convert, as if the check had passed: the sandbox denies the open.
        with pytest.raises(ImportFailure) as e:
            qemu.convert(src, "qcow2", str(out), dest_is_block=False, verified=src)
    assert e.value.reason is Reason.UNSAFE_IMAGE
    assert str(data) not in e.value.message
    assert untouched(watched)
    assert not out.exists()


@pytest.mark.parametrize("proto", ["file", "nbd"])
def test_vmdk_extents_outside_the_image_are_refused(tmp_path: Path, proto: str) -> None:
    img = tmp_path / "split.vmdk"
    subprocess.run(["qemu-img", "create", "-q", "-f", "vmdk", "-o",
                    "subformat=twoGbMaxExtentSparse", str(img), "4M"], check=True)
    extent = tmp_path / "split-s001.vmdk"
    watched = watch(extent)
    # A local descriptor's extent is denied by the sandbox (an unsafe image); over NBD,
    # qemu cannot even resolve a name relative to the export (an invalid one).
    expected = Reason.UNSAFE_IMAGE if proto == "file" else Reason.INVALID_IMAGE
    with source(img, proto, tmp_path) as src:
        with pytest.raises(ImportFailure) as e:
            qemu.check_safe(qemu.info(src, "vmdk"))
        assert e.value.reason is expected
        with pytest.raises(ImportFailure) as e:
            qemu.convert(src, "vmdk", str(tmp_path / "out.raw"), dest_is_block=False,
                         verified=src)
        assert e.value.reason is (
            Reason.UNSAFE_IMAGE if proto == "file" else Reason.CONVERSION_FAILED
        )
    assert untouched(watched)
