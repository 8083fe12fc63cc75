"""Hostile layer tars: refused as ARCHIVE_REFUSED, whether walked by ranges or streamed."""

from __future__ import annotations

import tarfile
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdicontract.reasons import Reason
from importer.errors import ImportFailure
from importer.sources.registry.source import RegistryOptions, RegistrySource
from importer.tarbounds import TarBounds
from tests import tarbombs
from tests.peers.registry import OciLayout, Registry, oci_archive

MiB = 1 << 20
FEW = TarBounds("registry layer", max_members=1000)


def _with_disk(bomb: Iterator[bytes]) -> bytes:
    """The bomb, then a disk file the walk would deliver if it got that far."""
    tar = tarbombs.joined(bomb)[: -len(tarbombs.END)]
    disk = tarbombs.header("disk/disk.img", size=512) + b"d" * 512
    return tar + tarbombs.header("disk", tarfile.DIRTYPE) + disk + tarbombs.END


def _archive(tmp_path: Path, layer: bytes, compression: str) -> str:
    layout = OciLayout(tmp_path / "layout")
    layout.tag(layout.image([layer], compression), "v1")
    return f"oci-archive://{oci_archive(layout, tmp_path / 'image.tar')}:v1"


def _refused(src: RegistrySource) -> tuple[str, int]:
    tracemalloc.start()
    try:
        with pytest.raises(ImportFailure) as err:
            src.info()
            for _ in src.open():
                pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        src.close()
    assert err.value.reason is Reason.ARCHIVE_REFUSED
    assert err.value.message.startswith("registry layer refused: ")
    return err.value.message, peak


@pytest.mark.parametrize(
    "compression",
    [
        pytest.param("none", id="headers-by-ranged-reads"),
        pytest.param("gzip", id="streamed"),
    ],
)
def test_more_members_than_the_cap_are_refused(tmp_path: Path, compression: str) -> None:
    fine = RegistrySource(
        _archive(tmp_path / "fine", _with_disk(tarbombs.dot_entries(997)), compression),
        RegistryOptions(layer_bounds=FEW),
    )
    assert b"".join(fine.open()) == b"d" * 512
    url = _archive(tmp_path / "flood", _with_disk(tarbombs.dot_entries(5000)), compression)
    message, _ = _refused(RegistrySource(url, RegistryOptions(layer_bounds=FEW)))
    assert "more than 1000 members" in message


def test_a_50_mib_pax_name_in_a_gzip_layer_is_refused_with_flat_memory(tmp_path: Path) -> None:
    url = _archive(tmp_path, _with_disk(tarbombs.pax_long_name(50 * MiB)), "gzip")
    assert (tmp_path / "image.tar").stat().st_size < 500_000  # gzip -1 of 50 MiB
    message, peak = _refused(RegistrySource(url, RegistryOptions()))
    assert "pax extended header of 52428" in message
    assert peak < 16 * MiB


def test_a_header_declaring_a_gib_is_refused_before_any_ranged_read_of_it(
    tmp_path: Path,
) -> None:
    layer = tarbombs.joined(tarbombs.declared_only(tarfile.GNUTYPE_LONGNAME, 1 << 30))
    url = _archive(tmp_path, layer + tarbombs.END, "none")
    message, peak = _refused(RegistrySource(url, RegistryOptions()))
    assert "GNU long name header of 1073741824 bytes" in message
    assert peak < 4 * MiB


def test_a_member_flood_in_a_real_registry_is_refused_while_scanning_headers(
    registry: Registry, tmp_path: Path
) -> None:
    layout = OciLayout(tmp_path / "layout")
    layout.tag(layout.image([_with_disk(tarbombs.dot_entries(2000))], "none"), "v1")
    url = registry.push(layout, "v1", "bounds/flood")
    options = RegistryOptions(insecure_registries=frozenset({registry.host}), layer_bounds=FEW)
    src = RegistrySource(url, options)
    with pytest.raises(ImportFailure) as err:
        src.info()
    src.close()
    assert err.value.reason is Reason.ARCHIVE_REFUSED
    assert src.scratch_reason is None  # it was the ranged header walk that refused
