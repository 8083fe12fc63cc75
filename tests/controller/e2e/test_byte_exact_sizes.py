"""Sizes as CDI computes them, end to end: the PVC a `spec.storage` DataVolume asks for is
CDI's byte figure (not rounded to a MiB), an image of exactly the requested size fits it
and one MiB-aligned step more does not, and a Block claim is not inflated at all.

The figures are CDI's Go formulas evaluated once (float64): for 16Mi + 1 bytes at the
default 0.06 overhead the claim is ceil(17Mi / 0.94) = 18963609 bytes, whose usable part
is 17Mi. The old rule (ceil(n / 0.94) rounded up to a MiB, 18Mi) left only 16Mi usable:
the requested image did not fit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.controller.e2e.conftest import Images, disk_of, dv_manifest, sha256_prefix
from tests.imagefactory import sha256_of

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

MiB = 1 << 20
ODD = 16 * MiB + 1
CDI_CLAIM_FOR_ODD = 18963609  # ceil(roundUp(16Mi + 1, 1Mi) / (1 - 0.06))
USABLE_OF_CLAIM = 17 * MiB  # roundDown(ceil(0.94 x 18963609), 1Mi)


def _raw(path: Path, size: int) -> Path:
    """A sparse raw image of exactly `size` bytes with data in its last byte and MiB."""
    with path.open("wb") as f:
        f.truncate(size)
        f.seek(size - MiB - 1)
        f.write(b"\x5a" * (MiB + 1))
    return path


def _pvc(cdi: Any, ns: str, name: str) -> dict[str, Any]:
    got: dict[str, Any] = cdi.api.get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{name}")
    return got


def test_an_image_of_the_odd_requested_size_gets_cdis_claim_and_fits(
    cdi: Any, cluster: Any, namespace: str, images: Images, tmp_path: Path
) -> None:
    image = _raw(tmp_path / "odd.raw", ODD)
    images.server.publish(image, "odd-exact.raw")
    src = {"http": {"url": images.url("odd-exact.raw")}}
    cdi.create_dv(namespace, dv_manifest("odd", src, size=str(ODD)))
    dv = cdi.wait_phase(namespace, "odd", "Succeeded", "Failed", timeout=180)
    assert dv["status"]["phase"] == "Succeeded", dv["status"]
    pvc = _pvc(cdi, namespace, "odd")
    assert pvc["spec"]["volumeMode"] == "Filesystem"
    assert pvc["spec"]["resources"]["requests"]["storage"] == str(CDI_CLAIM_FOR_ODD)
    disk = disk_of(cluster, namespace, "odd")
    assert sha256_prefix(disk, ODD) == sha256_of(image)
    # Grown to the usable size of the claim, never beyond it.
    assert disk.stat().st_size == USABLE_OF_CLAIM


def test_an_image_one_byte_past_the_usable_size_is_refused(
    cdi: Any, namespace: str, images: Images, tmp_path: Path
) -> None:
    images.server.publish(_raw(tmp_path / "over.raw", USABLE_OF_CLAIM + 1), "odd-over.raw")
    src = {"http": {"url": images.url("odd-over.raw")}}
    cdi.create_dv(namespace, dv_manifest("over", src, size=str(ODD)))
    dv = cdi.wait_phase(namespace, "over", "Failed", "Succeeded", timeout=180)
    assert dv["status"]["phase"] == "Failed", dv["status"]
    running = {c["type"]: c for c in dv["status"]["conditions"]}["Running"]
    assert running["reason"] == "ImageTooLarge"
    assert "DataVolume too small to contain image" in running["message"]
    assert _pvc(cdi, namespace, "over")["spec"]["resources"]["requests"]["storage"] == str(
        CDI_CLAIM_FOR_ODD)


def test_a_block_claim_is_not_inflated_nor_aligned(cdi: Any, namespace: str) -> None:
    size = 16 * MiB + 512
    cdi.create_dv(namespace, dv_manifest("blk", {"blank": {}}, size=str(size), mode="Block"))
    dv = cdi.wait_phase(namespace, "blk", "Succeeded", "Failed", timeout=120)
    assert dv["status"]["phase"] == "Succeeded", dv["status"]
    pvc = _pvc(cdi, namespace, "blk")
    assert pvc["spec"]["volumeMode"] == "Block"
    assert pvc["spec"]["resources"]["requests"]["storage"] == str(size)
