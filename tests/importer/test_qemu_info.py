"""`qemu.info` and `qemu.check_safe` against real qemu-img, on local files and over nbdkit."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdicontract.reasons import Reason
from importer import qemu
from importer.errors import ImportFailure
from importer.limits import Limits
from importer.nbd import NbdServer
from importer.sources.base import RandomAccess

FORMATS = ["raw", "qcow2", "vmdk", "vpc", "vhdx", "vdi"]
SIZE = 64 << 20


def children() -> set[int]:
    """Our live child processes, from /proc (no psutil)."""
    me = str(os.getpid())
    found = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me and fields[0] != "Z":
            found.add(int(pid))
    return found


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    before = children()
    yield
    assert children() - before == set(), "qemu-img or nbdkit left running"


def make_image(path: Path, fmt: str, size: int = SIZE) -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(path), str(size)], check=True)
    subprocess.run(
        ["qemu-io", "-f", fmt, "-c", "write -P 0xab 0 1M", "-c", "write -P 0xcd 10M 3M",
         "-c", "write -P 0x11 50M 64k", str(path)],
        check=True, stdout=subprocess.DEVNULL,
    )
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("images")
    return {fmt: make_image(d / f"disk.{fmt}", fmt) for fmt in FORMATS}


@pytest.mark.parametrize("fmt", FORMATS)
def test_info_reports_each_format_of_a_local_file(images: dict[str, Path], fmt: str) -> None:
    qi = qemu.info(str(images[fmt]), fmt)
    assert qi.format == fmt
    assert qi.virtual_size >= SIZE
    assert qi.backing_file is None and qi.data_file is None
    qemu.check_safe(qi)


@pytest.mark.parametrize("fmt", FORMATS)
def test_info_reads_each_format_through_nbdkit(
    images: dict[str, Path], fmt: str, tmp_path: Path
) -> None:
    local = qemu.info(str(images[fmt]), fmt)
    access = RandomAccess("file", (f"file={images[fmt]}",))
    with NbdServer(access, workdir=str(tmp_path)) as nbd:
        assert nbd.uri.startswith("nbd+unix:///?socket=")
        qi = qemu.info(nbd.uri, fmt)
    assert qi.format == fmt
    assert qi.virtual_size == local.virtual_size
    qemu.check_safe(qi)


def test_info_never_probes_a_raw_file_that_looks_like_qcow2(tmp_path: Path) -> None:
    # A raw disk whose first bytes are a qcow2 header (a guest wrote one): read as raw,
    # it is raw; probing would have made qemu-img interpret it as qcow2.
    fake = tmp_path / "inner.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(fake), "1G"], check=True)
    raw = tmp_path / "looks-like-qcow2.raw"
    with open(raw, "wb") as f:
        f.write(fake.read_bytes())
        f.truncate(8 << 20)
    qi = qemu.info(str(raw), "raw")
    assert qi.format == "raw"
    assert qi.virtual_size == 8 << 20


def test_info_with_the_wrong_format_is_an_invalid_image(images: dict[str, Path]) -> None:
    with pytest.raises(ImportFailure) as e:
        qemu.info(str(images["raw"]), "qcow2")
    assert e.value.reason is Reason.INVALID_IMAGE
    assert "qcow2" in e.value.message


def test_info_of_a_missing_file_is_an_invalid_image(tmp_path: Path) -> None:
    with pytest.raises(ImportFailure) as e:
        qemu.info(str(tmp_path / "nope.qcow2"), "qcow2")
    assert e.value.reason is Reason.INVALID_IMAGE
    assert "No such file" in e.value.message


def test_a_tiny_address_space_limit_fails_info_cleanly(images: dict[str, Path]) -> None:
    tiny = Limits(address_space=16 << 20, cpu_seconds=5, wall_seconds=10.0)
    with pytest.raises(ImportFailure) as e:
        qemu.info(str(images["qcow2"]), "qcow2", limits=tiny)
    assert e.value.reason is Reason.INVALID_IMAGE
    assert e.value.message == "qemu-img info exceeded its resource limits"


def test_check_safe_refuses_a_backing_file(images: dict[str, Path], tmp_path: Path) -> None:
    child = tmp_path / "child.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(images["qcow2"]), "-F", "qcow2",
         str(child)],
        check=True,
    )
    qi = qemu.info(str(child), "qcow2")
    assert qi.backing_file == str(images["qcow2"])
    with pytest.raises(ImportFailure) as e:
        qemu.check_safe(qi)
    assert e.value.reason is Reason.UNSAFE_IMAGE
    assert str(images["qcow2"]) not in e.value.message


def test_check_safe_refuses_an_external_data_file(tmp_path: Path) -> None:
    img = tmp_path / "ext.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-o",
         f"data_file={tmp_path / 'data.raw'},data_file_raw=on", str(img), "16M"],
        check=True,
    )
    qi = qemu.info(str(img), "qcow2")
    assert qi.data_file is not None
    with pytest.raises(ImportFailure) as e:
        qemu.check_safe(qi)
    assert e.value.reason is Reason.UNSAFE_IMAGE


def test_check_safe_refuses_a_vmdk_with_extent_files(tmp_path: Path) -> None:
    img = tmp_path / "split.vmdk"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse",
         str(img), "16M"],
        check=True,
    )
    with pytest.raises(ImportFailure) as e:
        qemu.check_safe(qemu.info(str(img), "vmdk"))
    assert e.value.reason is Reason.UNSAFE_IMAGE


def test_info_over_nbd_of_a_dead_server_is_a_network_error(
    images: dict[str, Path], tmp_path: Path
) -> None:
    access = RandomAccess("file", (f"file={images['qcow2']}",))
    with NbdServer(access, workdir=str(tmp_path)) as nbd:
        uri = nbd.uri
    with pytest.raises(ImportFailure) as e:
        qemu.info(uri, "qcow2")
    assert e.value.reason is Reason.NETWORK_ERROR
    assert not e.value.permanent
