"""Every image qemu-img writes passes the table walk; the same image cut short does not.

A broad matrix of real images (qcow2 v2/v3 with 512 B..2 MiB clusters, extended L2,
compressed, metadata preallocation; VMDK sparse and stream; VHD; VHDX; VDI), made from a
reference whose size is no multiple of any cluster and whose data sits in several places,
including the straddling last cluster. Each image must inspect cleanly and as qemu-img
sizes it; cut at 1 MiB or in the middle of its last data cluster (found by `qemu-img map`,
not by our parser) it must be refused as CorruptImage, before any qemu-img runs.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from cdicontract.reasons import Reason
from importer.errors import ImportFailure
from importer.formats import HEAD_SIZE, DiskFormat, ImageInfo, detect, inspect
from tests import imagefactory, tablefactory, vmdkfactory
from tests.importer.formats.conftest import CountingReader

KiB, MiB = 1024, 1024 * 1024
SIZE = 6 * MiB + 1536
MARKS = (
    0,
    700 * KiB + 512,
    2 * MiB - 100 * KiB,
    3 * MiB + 300 * KiB,
    9 * MiB // 2,
    SIZE - 256 * KiB,
)

# id -> (qemu-img format, subformat, options); "compress" means `-c`.
MATRIX: dict[str, tuple[str, str | None, dict[str, str | bool]]] = {
    **{f"qcow2-v2-{c}": ("qcow2", None, {"compat": "0.10", "cluster_size": c}) for c in ("512", "64K", "2M")},
    **{f"qcow2-v3-{c}": ("qcow2", None, {"cluster_size": c}) for c in ("512", "4K", "64K", "2M")},
    **{f"qcow2-extl2-{c}": ("qcow2", None, {"extended_l2": "on", "cluster_size": c}) for c in ("16K", "64K", "2M")},
    **{f"qcow2-v3-{c}-compressed": ("qcow2", None, {"cluster_size": c, "compress": True}) for c in ("512", "64K", "2M")},
    "qcow2-v2-compressed": ("qcow2", None, {"compat": "0.10", "compress": True}),
    "qcow2-zstd-compressed": ("qcow2", None, {"compression_type": "zstd", "compress": True}),
    "qcow2-extl2-compressed": ("qcow2", None, {"extended_l2": "on", "compress": True}),
    "qcow2-v2-prealloc-metadata": ("qcow2", None, {"compat": "0.10", "preallocation": "metadata"}),
    "qcow2-v3-prealloc-metadata": ("qcow2", None, {"preallocation": "metadata"}),
    "qcow2-extl2-prealloc-metadata": ("qcow2", None, {"extended_l2": "on", "preallocation": "metadata"}),
    "vmdk-monolithic-sparse": ("vmdk", "monolithicSparse", {}),
    "vmdk-zeroed-grain": ("vmdk", "monolithicSparse", {"zeroed_grain": "on"}),
    "vmdk-stream-optimized": ("vmdk", "streamOptimized", {}),
    "vhd-dynamic": ("vpc", "dynamic", {}),
    "vhd-dynamic-force-size": ("vpc", "dynamic", {"force_size": "on"}),
    "vhd-fixed": ("vpc", "fixed", {}),
    "vhdx-dynamic": ("vhdx", None, {}),
    "vhdx-1m-blocks": ("vhdx", None, {"block_size": "1M"}),
    "vhdx-fixed": ("vhdx", "fixed", {}),
    "vdi-dynamic": ("vdi", None, {}),
    "vdi-static": ("vdi", None, {"static": "on"}),
}  # fmt: skip
BUILT = {"vmdk-stream-with-footer": "vmdk"}
ALL = [*MATRIX, *BUILT]
FORMAT_OF = {name: DiskFormat(fmt) for name, (fmt, _, _) in MATRIX.items()} | {
    name: DiskFormat(fmt) for name, fmt in BUILT.items()
}
# A fixed VHD cut short has lost its footer: what is left is a raw disk, indistinguishable
# from one (and converted as one, byte for byte), so there is nothing to refuse.
LOOKS_RAW_WHEN_CUT = {"vhd-fixed"}


def mark(offset: int) -> bytes:
    """256 KiB that compress, but not to nothing: 3 KiB of noise per 1 KiB of text."""
    rng = random.Random(offset)
    text = imagefactory.mark_bytes(offset, 1024)
    return b"".join(rng.randbytes(3 * KiB) + text for _ in range(64))


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("table-walk")
    reference = directory / "odd.raw"
    with reference.open("wb") as f:
        f.truncate(SIZE)
        for offset in MARKS:
            f.seek(offset)
            f.write(mark(offset)[: SIZE - offset])
    made = {}
    for name, (fmt, subformat, options) in MATRIX.items():
        made[name] = imagefactory.convert(reference, fmt, subformat, **options)
    made["vmdk-stream-with-footer"] = vmdkfactory.stream_with_footer(directory, source=reference)
    return made


def test_the_matrix_is_what_it_claims(matrix: dict[str, Path]) -> None:
    """Guards the factory: the data is all there, compressed where it says so."""
    reference = matrix["qcow2-v3-64K"].parent / "odd.raw"
    for name, path in matrix.items():
        fmt = FORMAT_OF[name].value
        imagefactory.run("qemu-img", "compare", "-f", fmt, "-F", "raw", path, reference)
        if fmt == "qcow2":
            data = path.read_bytes()
            entries = tablefactory.qcow2_l2(data)
            assert any(e.value & (1 << 62) for e in entries) is ("compressed" in name), name
            assert tablefactory.qcow2_extended(data) is ("extl2" in name), name


def inspect_bytes(data: bytes, reader: CountingReader | None = None) -> ImageInfo:
    reader = reader or CountingReader(data)
    return inspect(detect(data[:HEAD_SIZE]), reader, len(data))


@pytest.mark.parametrize("name", ALL)
def test_image_qemu_img_wrote_passes_and_is_sized_as_qemu_sizes_it(
    matrix: dict[str, Path], name: str
) -> None:
    path = matrix[name]
    data = path.read_bytes()
    reader = CountingReader(data)
    info = inspect_bytes(data, reader)
    assert info.format is FORMAT_OF[name]
    assert info.virtual_size == imagefactory.qemu_info(path, info.format.value)["virtual-size"]
    # The tables of these few-MiB images: a handful of reads, never the data.
    assert len(reader.reads) <= 16, reader.reads
    assert reader.bytes_read <= 3 * MiB


def _expect_corrupt(data: bytes, name: str) -> None:
    if name in LOOKS_RAW_WHEN_CUT:
        assert inspect_bytes(data).format is DiskFormat.RAW
        return
    with pytest.raises(ImportFailure) as failure:
        inspect_bytes(data)
    assert failure.value.reason is Reason.CORRUPT_IMAGE, failure.value.message
    assert failure.value.permanent


@pytest.mark.parametrize("name", ALL)
def test_cut_at_one_mib_is_corrupt(matrix: dict[str, Path], name: str) -> None:
    data = matrix[name].read_bytes()
    assert len(data) > 1 * MiB, "the reference holds enough data to exceed 1 MiB"
    _expect_corrupt(data[: 1 * MiB], name)


def last_cluster_cut(path: Path, name: str) -> int:
    """An offset in the middle of the data furthest into the file."""
    data = path.read_bytes()
    fmt = FORMAT_OF[name]
    if fmt is DiskFormat.QCOW2 and "compressed" in name:
        compressed = [e for e in tablefactory.qcow2_l2(data) if e.value & (1 << 62)]
        end = max(tablefactory.qcow2_compressed_end(data, e.value) for e in compressed)
        # Reading up to one sector past a file end that is not sector-aligned is allowed.
        return end - 513
    if fmt is DiskFormat.VMDK and "stream" in name:
        return tablefactory.vmdk_last_grain_cut(path)
    if fmt is DiskFormat.VHDX:  # qemu-img map gives no host offsets for VHDX
        return tablefactory.vhdx_last_block_cut(path, SIZE)
    placed = tablefactory.last_data_range(path, fmt.value)
    assert placed is not None
    offset, length = placed
    return offset + length // 2


@pytest.mark.parametrize("name", ALL)
def test_cut_in_the_middle_of_the_last_cluster_is_corrupt(
    matrix: dict[str, Path], name: str
) -> None:
    path = matrix[name]
    cut = last_cluster_cut(path, name)
    assert 0 < cut < path.stat().st_size
    _expect_corrupt(path.read_bytes()[:cut], name)


@pytest.mark.parametrize("name", ALL)
def test_size_unknown_skips_the_walk_but_not_the_headers(
    matrix: dict[str, Path], name: str
) -> None:
    """Without a size nothing lies "beyond the end"; the pipeline always knows it."""
    if name in ("vmdk-stream-with-footer", "vhd-fixed"):
        pytest.skip("found from the end of the file: needs the size")
    data = matrix[name].read_bytes()
    info = inspect(detect(data[:HEAD_SIZE]), CountingReader(data), None)
    assert info.format is FORMAT_OF[name]


@pytest.mark.parametrize("fmt", ["qcow2", "vmdk", "vdi"])
def test_qemu_img_converts_these_truncated_images_without_a_word(tmp_path: Path, fmt: str) -> None:
    """The risk the walk removes: qemu reads past the end as zeros, exits 0, and the disk
    has holes where the data was. (qemu refuses truncated VHD and VHDX itself, but only
    once qemu-img runs, and without saying which table.)"""
    cut = tablefactory.cut_short(tmp_path, fmt)
    out = tmp_path / "out.raw"
    imagefactory.run("qemu-img", "convert", "-f", fmt, "-O", "raw", cut, out)
    with pytest.raises(RuntimeError, match="qemu-img failed \\(1\\)"):  # content differs
        imagefactory.run(
            "qemu-img", "compare", "-f", "raw", "-F", "raw", tmp_path / "dense.raw", out
        )
    _expect_corrupt(cut.read_bytes(), fmt)
