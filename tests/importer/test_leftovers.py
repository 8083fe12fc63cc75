"""Leftovers of a killed run: which names are ours, and removing exactly those, links unfollowed."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from importer import leftovers
from importer.leftovers import Kind, leftover_kind
from tests.killedrun import plant_decoys, plant_leftovers

NAMES = {
    "part-of-dest": ("disk.img.part", "disk.img", Kind.FILE),
    "part-of-another-file": ("other.img.part", "disk.img", None),
    "part-without-dest-here": ("disk.img.part", None, None),
    "dest-itself": ("disk.img", "disk.img", None),
    "scratch": (".cdi-scratch-k2j_9xq1.img", None, Kind.FILE),
    "scratch-other-length": (".cdi-scratch-abc.img", None, Kind.FILE),
    "scratch-no-random-part": (".cdi-scratch-.img", None, None),
    "scratch-other-suffix": (".cdi-scratch-k2j_9xq1.img.bak", None, None),
    "scratch-no-dot": ("cdi-scratch-k2j_9xq1.img", None, None),
    "staging": (".cdi-extract-abcd1234", None, Kind.TREE),
    "staging-no-random-part": (".cdi-extract-", None, None),
    "staging-odd-characters": (".cdi-extract-ab.cd", None, None),
    "odirect-probe": (".odirect-4242", None, Kind.FILE),
    "odirect-not-a-pid": (".odirect-x1", None, None),
    "user-data": ("lost+found", None, None),
}


@pytest.mark.parametrize(("name", "dest_name", "kind"), NAMES.values(), ids=NAMES.keys())
def test_which_names_are_ours(name: str, dest_name: str | None, kind: Kind | None) -> None:
    assert leftover_kind(name, dest_name) is kind


def test_places_of_a_file_target_an_archive_and_a_block_device(tmp_path: Path) -> None:
    vol, scratch = str(tmp_path / "vol"), str(tmp_path / "scratch")
    places = leftovers.places
    assert places(f"{vol}/disk.img", scratch, dest_is_dir=False, dest_is_block=False) == [
        (vol, "disk.img"),
        (scratch, None),
    ]
    assert places(f"{vol}/disk.img", vol, dest_is_dir=False, dest_is_block=False) == [
        (vol, "disk.img")
    ]
    assert places(vol, scratch, dest_is_dir=True, dest_is_block=False) == [
        (vol, None),
        (scratch, None),
    ]
    assert places("/dev/loop7", scratch, dest_is_dir=False, dest_is_block=True) == [(scratch, None)]


def test_sweep_removes_leftovers_and_nothing_else(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    vol, scratch_dir = tmp_path / "vol", tmp_path / "scratch"
    vol.mkdir()
    scratch_dir.mkdir()
    outside = tmp_path / "outside" / "precious"
    outside.parent.mkdir()
    outside.write_bytes(b"must stay")
    decoys = plant_decoys(vol, outside)
    planted = plant_leftovers(vol, "disk.img")
    planted.append(scratch_dir / ".cdi-scratch-11112222.img")
    planted[-1].write_bytes(b"s")
    with caplog.at_level(logging.INFO, logger="importer.leftovers"):
        removed = leftovers.sweep([(str(vol), "disk.img"), (str(scratch_dir), None)])
    assert sorted(removed) == sorted(str(p) for p in planted)
    assert sorted(vol.iterdir()) == decoys
    assert list(scratch_dir.iterdir()) == []
    assert outside.read_bytes() == b"must stay"
    assert (vol / "data" / ".cdi-scratch-aaaaaaaa.img").exists()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"removed leftover of an earlier run path={vol}/disk.img.part kind=file" in logged
    assert f"path={vol}/.cdi-extract-z9y8x7w6 kind=directory" in logged
    assert f"left alone: named like ours, not of our making path={vol}/.odirect-5" in logged


def test_sweep_of_missing_directories_does_nothing(tmp_path: Path) -> None:
    assert leftovers.sweep([(str(tmp_path / "absent"), "x"), (str(tmp_path / "f"), None)]) == []


def test_remove_tree_handles_unreadable_directories_and_leaves_link_targets(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("k")
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "link").symlink_to(outside)
    os.chmod(tree / "a" / "b", 0o000)
    os.chmod(tree / "a", 0o000)
    os.chmod(outside, 0o755)
    leftovers.remove_tree(str(tree))
    assert not tree.exists()
    assert (outside / "keep").read_text() == "k"
    assert os.stat(outside).st_mode & 0o777 == 0o755
