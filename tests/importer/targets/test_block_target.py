"""The block target on a real loop device pre-filled with garbage."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cdicontract.reasons import Reason
from importer.errors import ImportFailure
from importer.targets import BlockTarget, select_target
from tests.importer.targets.conftest import LOOP_SIZE, read_device

MiB = 1 << 20


def test_zero_regions_read_back_as_zeros_and_device_keeps_its_size(loop_device: Path) -> None:
    t = select_target(str(loop_device))
    assert isinstance(t, BlockTarget) and t.is_block
    assert t.capacity(1 << 40, 0.06) == LOOP_SIZE  # overhead 0, size is the device's
    data = os.urandom(MiB)
    image = data + bytes(3 * MiB) + data[:5000] + bytes(1000)  # odd size on purpose
    t.begin()
    for off in range(0, len(image), MiB):
        t.write_at(off, image[off : off + MiB])
    t.commit(len(image), None)
    got = read_device(loop_device)
    assert len(got) == LOOP_SIZE
    assert got[: len(image)] == image
    assert got[len(image) :] == bytes(LOOP_SIZE - len(image))


def test_preallocated_commit_zeroes_the_tail(loop_device: Path) -> None:
    t = BlockTarget(str(loop_device))
    t.begin()
    t.write_at(0, b"\x01" * 4096)
    t.commit(4096, None, preallocate=True)
    got = read_device(loop_device)
    assert got[:4096] == b"\x01" * 4096 and got[4096:] == bytes(LOOP_SIZE - 4096)


def test_assume_zeroed_skips_zeroing(loop_device: Path) -> None:
    t = BlockTarget(str(loop_device), assume_zeroed=True)
    t.begin()
    t.write_at(0, b"\x01" * 4096 + bytes(4096))
    t.commit(8192, None)
    got = read_device(loop_device)
    assert got[:4096] == b"\x01" * 4096 and got[4096:8192] == b"\xa5" * 4096


def test_writing_past_the_end_is_no_space(loop_device: Path) -> None:
    t = BlockTarget(str(loop_device))
    t.begin()
    with pytest.raises(ImportFailure) as exc:
        t.write_at(LOOP_SIZE - 4096, os.urandom(8192))
    assert exc.value.reason is Reason.NO_SPACE
    t.abort()


def test_abort_zeroes_what_was_written(loop_device: Path) -> None:
    t = BlockTarget(str(loop_device))
    t.begin()
    t.write_at(0, os.urandom(2 * MiB))
    t.abort()
    got = read_device(loop_device)
    assert got[: 2 * MiB] == bytes(2 * MiB)


@pytest.mark.parametrize("preallocate", [False, True])
def test_blank_zeroes_only_with_preallocation(loop_device: Path, preallocate: bool) -> None:
    BlockTarget(str(loop_device)).blank(LOOP_SIZE, preallocate)
    got = read_device(loop_device)
    assert len(got) == LOOP_SIZE
    assert got == (bytes(LOOP_SIZE) if preallocate else b"\xa5" * LOOP_SIZE)


def test_qemu_output_is_the_device(loop_device: Path) -> None:
    assert BlockTarget(str(loop_device)).qemu_output() == str(loop_device)
