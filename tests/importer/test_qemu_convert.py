"""`qemu.convert` against real qemu-img: file and block targets, progress, stalls, ENOSPC."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdicontract.reasons import Reason
from importer import qemu
from importer.errors import ImportFailure
from importer.nbd import NbdServer, nbd_source
from importer.sources.base import RandomAccess
from tests import imagefactory
from tests.importer.test_qemu_info import FORMATS, children, make_image
from tests.peers import devices


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    before = children()
    yield
    assert children() - before == set(), "qemu-img or nbdkit left running"


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("convert-images")
    return {fmt: make_image(d / f"disk.{fmt}", fmt) for fmt in FORMATS}


def same_content(raw: str, src: Path, fmt: str) -> bool:
    r = subprocess.run(
        ["qemu-img", "compare", "-f", "raw", "-F", fmt, raw, str(src)],
        check=False, capture_output=True, text=True,
    )
    return r.returncode == 0


@pytest.mark.parametrize("fmt", FORMATS)
def test_converts_each_format_into_a_new_sparse_file(
    images: dict[str, Path], fmt: str, tmp_path: Path
) -> None:
    dest = tmp_path / "disk.img.part"
    qemu.convert(str(images[fmt]), fmt, str(dest), dest_is_block=False)
    assert same_content(str(dest), images[fmt], fmt)
    assert dest.stat().st_size == qemu.info(str(images[fmt]), fmt).virtual_size
    # Only the ~4 MiB written by the test are allocated, not the 64 MiB virtual size.
    assert dest.stat().st_blocks * 512 < 16 << 20


@pytest.mark.parametrize("fmt", ["qcow2", "vmdk"])
def test_converts_through_nbdkit(images: dict[str, Path], fmt: str, tmp_path: Path) -> None:
    dest = tmp_path / "disk.img"
    access = RandomAccess("file", (f"file={images[fmt]}",))
    qemu.convert(nbd_source(access, workdir=str(tmp_path)), fmt, str(dest), dest_is_block=False)
    assert same_content(str(dest), images[fmt], fmt)


def test_converts_into_a_pre_zeroed_file_without_recreating_it(
    images: dict[str, Path], tmp_path: Path
) -> None:
    dest = tmp_path / "disk.img"
    size = qemu.info(str(images["qcow2"]), "qcow2").virtual_size
    with open(dest, "wb") as f:
        f.truncate(size)
    inode = dest.stat().st_ino
    qemu.convert(str(images["qcow2"]), "qcow2", str(dest), dest_is_block=False,
                 dest_exists_zeroed=True)
    assert dest.stat().st_ino == inode
    assert same_content(str(dest), images["qcow2"], "qcow2")


def test_progress_rises_to_100(images: dict[str, Path], tmp_path: Path) -> None:
    seen: list[float] = []
    qemu.convert(str(images["vdi"]), "vdi", str(tmp_path / "o"), dest_is_block=False,
                 on_progress=seen.append)
    assert len(seen) >= 3
    assert seen == sorted(seen)
    assert seen[-1] == 100.0
    assert all(0.0 <= p <= 100.0 for p in seen)


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A loop device over an empty file; the test sizes it (write + `losetup -c`)."""
    backing = tmp_path / "block.img"
    backing.touch()
    with devices.loop_device(backing) as dev:
        yield str(dev), backing


def garbage_fill(backing: Path, dev: str, size: int) -> None:
    devices.fill(backing, size, 0x5A)
    subprocess.run(["losetup", "-c", dev], check=True)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_converts_each_format_onto_a_block_device_full_of_garbage(
    images: dict[str, Path], fmt: str, loop_device: tuple[str, Path]
) -> None:
    dev, backing = loop_device
    size = qemu.info(str(images[fmt]), fmt).virtual_size
    garbage_fill(backing, dev, size)
    qemu.convert(str(images[fmt]), fmt, dev, dest_is_block=True)
    # Zero areas of the image must read as zeros although the device held garbage there.
    assert same_content(dev, images[fmt], fmt)
    assert backing.stat().st_size == size  # a block target is never resized


def test_a_block_target_that_is_not_a_block_device_is_refused(
    images: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(ImportFailure) as e:
        qemu.convert(str(images["raw"]), "raw", str(tmp_path / "f"), dest_is_block=True)
    assert e.value.reason is Reason.INVALID_CONFIG


def test_a_backing_file_is_refused_by_convert_itself(
    images: dict[str, Path], tmp_path: Path
) -> None:
    child = imagefactory.qcow2_with_backing(tmp_path)
    dest = tmp_path / "out"
    with pytest.raises(ImportFailure) as e:
        qemu.convert(str(child), "qcow2", str(dest), dest_is_block=False)
    assert e.value.reason is Reason.UNSAFE_IMAGE
    assert not dest.exists()


def test_only_the_source_the_caller_verified_skips_the_recheck(
    images: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first attempt reads the very server the pipeline inspected: no second
    `qemu-img info`. A fresh server on a retry, or any other source, is checked again."""
    checked: list[str] = []
    real_info = qemu.info

    def spy(filename: str, fmt: str, **kw: object) -> qemu.QemuInfo:
        checked.append(filename)
        return real_info(filename, fmt)

    monkeypatch.setattr(qemu, "info", spy)
    src = str(images["qcow2"])
    qemu.convert(src, "qcow2", str(tmp_path / "a"), dest_is_block=False, verified=src)
    assert checked == []
    qemu.convert(src, "qcow2", str(tmp_path / "b"), dest_is_block=False,
                 verified=str(tmp_path / "elsewhere"))
    assert checked == [src]
    assert same_content(str(tmp_path / "a"), images["qcow2"], "qcow2")


def test_verifying_one_source_does_not_let_another_through(
    images: dict[str, Path], tmp_path: Path
) -> None:
    child = imagefactory.qcow2_with_backing(tmp_path)
    with pytest.raises(ImportFailure) as e:
        qemu.convert(str(child), "qcow2", str(tmp_path / "out"), dest_is_block=False,
                     verified=str(images["qcow2"]))
    assert e.value.reason is Reason.UNSAFE_IMAGE


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    with devices.tmpfs(tmp_path / "small", "2m") as mnt:
        yield mnt


def test_a_full_target_is_no_space_and_leaves_no_partial_file(
    images: dict[str, Path], small_tmpfs: Path
) -> None:
    dest = small_tmpfs / "disk.img.part"
    with pytest.raises(ImportFailure) as e:
        qemu.convert(str(images["qcow2"]), "qcow2", str(dest), dest_is_block=False)
    assert e.value.reason is Reason.NO_SPACE
    assert "No space left on device" in e.value.message
    assert os.listdir(small_tmpfs) == []


def stalling_source(tmp_path: Path, image: Path, stall_from: int) -> RandomAccess:
    """An nbdkit `sh` plugin serving `image` that hangs on any read at or past `stall_from`:
    the header reads of `info` succeed, the conversion stops moving mid-way."""
    script = tmp_path / "stall.sh"
    script.write_text(
        "#!/bin/bash\n"
        'case "$1" in\n'
        f"  get_size) stat -L -c %s {image} ;;\n"
        f'  pread) if [ "$4" -ge {stall_from} ]; then sleep 3600; fi\n'
        f'         dd if={image} skip="$4" count="$3" iflag=skip_bytes,count_bytes status=none ;;\n'
        "  thread_model) echo parallel ;;\n"
        "  *) exit 2 ;;\n"
        "esac\n"
    )
    script.chmod(0o755)
    return RandomAccess("sh", (str(script),))


@pytest.fixture
def random_raw(tmp_path: Path) -> Path:
    img = tmp_path / "random.raw"
    img.write_bytes(os.urandom(16 << 20))
    return img


@pytest.mark.slow
def test_a_stalled_source_is_killed_retried_then_reported_stalled(
    random_raw: Path, tmp_path: Path
) -> None:
    access = stalling_source(tmp_path, random_raw, stall_from=4 << 20)
    starts: list[int] = []
    servers: list[int] = []

    @contextlib.contextmanager
    def counting() -> Iterator[str]:
        starts.append(1)
        with NbdServer(access, workdir=str(tmp_path)) as nbd:
            assert nbd.pid is not None
            servers.append(nbd.pid)
            yield nbd.uri

    dest = tmp_path / "out.img"
    t0 = time.monotonic()
    with pytest.raises(ImportFailure) as e:
        qemu.convert(counting, "raw", str(dest), dest_is_block=False, stall_timeout=1.5,
                     attempts=2)
    assert e.value.reason is Reason.STALLED
    assert len(starts) == 2
    assert time.monotonic() - t0 < 20
    for pid in servers:  # each nbdkit and its sleeping helper are gone
        assert not Path(f"/proc/{pid}").exists()
    assert not dest.exists()


@pytest.mark.slow
def test_a_fixed_uri_is_retried_against_the_same_server(
    random_raw: Path, tmp_path: Path
) -> None:
    access = stalling_source(tmp_path, random_raw, stall_from=4 << 20)
    with NbdServer(access, workdir=str(tmp_path)) as nbd:
        with pytest.raises(ImportFailure) as e:
            qemu.convert(nbd.uri, "raw", str(tmp_path / "o"), dest_is_block=False,
                         stall_timeout=1.0, attempts=2)
        assert e.value.reason is Reason.STALLED
        assert "2 attempts" in e.value.message


def test_cancel_stops_a_running_conversion(random_raw: Path, tmp_path: Path) -> None:
    access = stalling_source(tmp_path, random_raw, stall_from=4 << 20)
    cancel = threading.Event()
    timer = threading.Timer(1.0, cancel.set)
    timer.start()
    t0 = time.monotonic()
    with pytest.raises(ImportFailure) as e:
        qemu.convert(nbd_source(access, workdir=str(tmp_path)), "raw", str(tmp_path / "o"),
                     dest_is_block=False, stall_timeout=60.0, cancel=cancel)
    timer.cancel()
    assert e.value.reason is Reason.CANCELLED
    assert "cancelled" in e.value.message
    assert time.monotonic() - t0 < 10


def test_a_tiny_address_space_limit_fails_convert_cleanly(
    images: dict[str, Path], tmp_path: Path
) -> None:
    from importer.limits import Limits

    dest = tmp_path / "out"
    with pytest.raises(ImportFailure) as e:
        qemu.convert(str(images["qcow2"]), "qcow2", str(dest), dest_is_block=False,
                     limits=Limits(address_space=32 << 20, cpu_seconds=None, wall_seconds=None))
    assert e.value.reason is Reason.CONVERSION_FAILED
    assert e.value.message == "qemu-img convert exceeded its resource limits"
    assert not dest.exists()
