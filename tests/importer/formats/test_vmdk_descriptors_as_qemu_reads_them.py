"""VMDK descriptors are read the way qemu reads them, and each hostile shape is refused.

For every hostile image the real `qemu-img info` shows what qemu does with it (follows a
backing file, opens a FLAT extent on a host path, takes 1 GiB grains from a footer), so
the test documents the risk; then our inspector must refuse it before qemu-img runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cdicontract.reasons import Reason
from importer.errors import ImportFailure
from importer.formats import DiskFormat, inspect
from importer.formats.vmdk_descriptor import check, parse_description, scan_hex
from tests import imagefactory, vmdkfactory

Info = dict[str, object]


def _extents(info: Info) -> list[dict[str, object]]:
    specific = info["format-specific"]
    assert isinstance(specific, dict)
    extents = specific["data"]["extents"]
    assert isinstance(extents, list)
    return extents


def follows_backing_file(info: Info) -> bool:
    return str(info.get("backing-filename", "")).endswith("named-parent.vmdk")


def opens_host_file(info: Info) -> bool:
    return any(str(e.get("filename", "")).endswith("host-secret.raw") for e in _extents(info))


def takes_footer_grains(info: Info) -> bool:
    return info.get("cluster-size") == 1 << 30


HOSTILE: dict[str, tuple[Callable[[Path], Path], Callable[[Info], bool], Reason, str]] = {
    "hint-at-sector-one-with-descriptor-offset-0": (
        vmdkfactory.hint_at_sector_one,
        follows_backing_file,
        Reason.UNSAFE_IMAGE,
        "parentFileNameHint",
    ),
    "commented-hint": (
        vmdkfactory.commented_hint,
        follows_backing_file,
        Reason.UNSAFE_IMAGE,
        "parentFileNameHint",
    ),
    "capacity-0-flat-extent": (
        vmdkfactory.capacity_zero_flat_extent,
        opens_host_file,
        Reason.UNSAFE_IMAGE,
        "capacity 0",
    ),
    "capacity-0-create-type-in-comment": (
        vmdkfactory.capacity_zero_commented_type,
        opens_host_file,
        Reason.UNSAFE_IMAGE,
        "capacity 0",
    ),
    "capacity-0-duplicate-create-type": (
        vmdkfactory.capacity_zero_duplicate_type,
        opens_host_file,
        Reason.UNSAFE_IMAGE,
        "capacity 0",
    ),
    "hostile-footer": (
        vmdkfactory.hostile_footer,
        takes_footer_grains,
        Reason.UNSAFE_IMAGE,
        "grain size of 2097152 sectors",
    ),
}


def _inspect(path: Path) -> None:
    inspect(DiskFormat.VMDK, imagefactory.read_at_file(path), path.stat().st_size)


@pytest.mark.parametrize("case", list(HOSTILE))
def test_qemu_follows_the_hostile_descriptor_and_we_refuse_it(tmp_path: Path, case: str) -> None:
    build, qemu_does_it, reason, fragment = HOSTILE[case]
    path = build(tmp_path)

    assert qemu_does_it(imagefactory.qemu_info(path, "vmdk")), "the risk is real"
    with pytest.raises(ImportFailure) as failure:
        _inspect(path)
    assert failure.value.reason is reason, failure.value.message
    assert fragment in failure.value.message
    assert str(tmp_path) not in failure.value.message


def test_create_type_in_a_comment_before_the_real_line_is_what_qemu_sees(tmp_path: Path) -> None:
    path = vmdkfactory.create_type_in_comment(tmp_path)
    assert parse_description(vmdkfactory.descriptor_text(path), b"createType") == b"vmfs"
    with pytest.raises(ImportFailure) as failure:
        _inspect(path)
    assert failure.value.reason is Reason.UNSAFE_IMAGE
    assert "createType 'vmfs'" in failure.value.message


def test_the_first_of_two_parent_cids_counts(tmp_path: Path) -> None:
    path = vmdkfactory._sparse(tmp_path, "two-parent-cids")
    text = vmdkfactory.descriptor_text(path)
    vmdkfactory.set_descriptor(
        path, text.replace(b"parentCID=ffffffff", b"parentCID=1234abcd\nparentCID=ffffffff")
    )
    specific = imagefactory.qemu_info(path, "vmdk")["format-specific"]
    assert isinstance(specific, dict)
    assert specific["data"]["parent-cid"] == 0x1234ABCD
    with pytest.raises(ImportFailure) as failure:
        _inspect(path)
    assert "parentCID" in failure.value.message


def test_stream_with_a_genuine_footer_converts_like_the_reference(tmp_path: Path) -> None:
    path = vmdkfactory.stream_with_footer(tmp_path)
    reference = tmp_path / "stream-with-footer-source.raw"
    imagefactory.run("qemu-img", "compare", "-f", "vmdk", "-F", "raw", path, reference)
    _inspect(path)


DESCRIPTION = [
    pytest.param(b'createType="monolithicSparse"', b"monolithicSparse", id="plain"),
    pytest.param(b'# createType="vmfs"\ncreateType="monolithicSparse"', b"vmfs", id="comment"),
    pytest.param(b'createType="a"\ncreateType="b"', b"a", id="first-duplicate"),
    pytest.param(b'xcreateType="a"', b"a", id="inside-a-word"),
    pytest.param(b'createType = "a"', b" ", id="spaces-shift-the-value"),
    pytest.param(b'createType="a', None, id="no-closing-quote"),
    pytest.param(b"createType", None, id="key-at-the-end"),
    pytest.param(b"version=1", None, id="missing"),
    pytest.param(b'createType="' + b"x" * 128 + b'"', None, id="longer-than-qemu-buffer"),
]


@pytest.mark.parametrize(("text", "value"), DESCRIPTION)
def test_parse_description_finds_what_qemu_finds(text: bytes, value: bytes | None) -> None:
    assert parse_description(text, b"createType") == value


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (b"ffffffff\n", 0xFFFFFFFF),
        (b"  FFFFFFFF", 0xFFFFFFFF),
        (b"0xffffffff", 0xFFFFFFFF),
        (b"1234abcd", 0x1234ABCD),
        (b"0xg", 0),
        (b"-1", None),
        (b"zz", None),
        (b"", None),
    ],
)
def test_scan_hex_reads_like_sscanf(text: bytes, value: int | None) -> None:
    assert scan_hex(text) == value


@pytest.mark.parametrize(
    "text",
    [
        b'createType="monolithicSparse"\nparentFileNameHint="p.vmdk"',
        b'createType="monolithicSparse"\n#parentFileNameHint="p.vmdk"',
        b'createType="monolithicSparse"\nddb.comment="parentFileNameHint"',
        b'createType="monolithicSparse"\nparentCID=-1',
        b'createType="monolithicSparse"\nparentCID=',
        b'createType="monolithicFlat"',
        b"",
    ],
)
def test_check_refuses_conservatively(text: bytes) -> None:
    with pytest.raises(ImportFailure) as failure:
        check(text, "descriptor")
    assert failure.value.reason is Reason.UNSAFE_IMAGE


@pytest.mark.parametrize(
    "text",
    [
        b'createType="streamOptimized"\nparentCID=ffffffff\n',
        b'CID=1\ncreateType="monolithicSparse"\n',
    ],
)
def test_check_accepts_self_contained_descriptors(text: bytes) -> None:
    check(text, "descriptor")


def test_unprintable_create_type_is_not_echoed() -> None:
    with pytest.raises(ImportFailure) as failure:
        check(b'createType="\x1b[31mevil\x07"', "descriptor")
    assert "\x1b" not in failure.value.message
    assert "\x07" not in failure.value.message
