"""The harness's own pieces: the sparse image container and libFuzzer's argv."""

from __future__ import annotations

import shlex
import subprocess
import sys

from fuzz import harness, images, targets
from fuzz.harness import REPO_ROOT


def test_plain_input_is_the_image_itself() -> None:
    image = images.Image.decode(b"abcdef")
    assert (image.size, image.known_size) == (6, 6)
    assert image.read_at(2, 10) == b"cdef"
    assert image.read_at(6, 1) == b""
    assert image.encode() == b"abcdef"


def test_sparse_container_reads_holes_as_zeros_and_round_trips() -> None:
    data = images.sparse(100, iter([(10, b"xy"), (50, b"z")]))
    image = images.Image.decode(data)
    assert image.known_size == 100
    assert image.read_at(8, 6) == b"\0\0xy\0\0"
    assert image.read_at(98, 10) == b"\0\0"
    assert image.encode() == data


def test_sparse_container_of_unknown_size_ends_with_its_last_extent() -> None:
    image = images.Image.decode(images.sparse(None, iter([(4, b"abc")])))
    assert image.known_size is None
    assert image.read_at(0, 100) == b"\0\0\0\0abc"


def test_cut_off_container_still_decodes() -> None:
    data = images.sparse(100, iter([(10, b"xyz")]))
    for cut in range(len(data)):
        images.Image.decode(data[:cut]).read_at(0, 100)


def test_write_at_patches_only_inside_an_extent() -> None:
    image = images.Image.decode(images.sparse(100, iter([(10, b"xyz")])))
    assert image.write_at(11, b"Y")
    assert not image.write_at(12, b"ZZ")
    assert image.read_at(10, 3) == b"xYz"


def test_argv_zero_restarts_the_target_and_callers_flags_come_last() -> None:
    target = targets.load("text")
    argv = harness.libfuzzer_argv(target, ["-runs=0", "corpus"])
    assert argv[-2:] == ["-runs=0", "corpus"]
    assert any(a.startswith("-max_len=") for a in argv[1:-2])
    # libFuzzer's -merge re-runs argv[0] through sh: it must start this very target.
    assert shlex.split(argv[0]) == [sys.executable, "-m", "fuzz", "text"]


def test_runner_lists_the_targets() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fuzz", "--list"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert done.stdout.split("targets: ")[1].split() == list(targets.NAMES)
