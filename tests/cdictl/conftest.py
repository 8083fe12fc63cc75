"""Fixtures of cdictl's tests on the real API server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def crds(cluster: Any) -> Any:
    """The cluster with CDI's DataVolume and CDIConfig CRDs (what cdictl reads and makes);
    no controller: tests write what it would."""
    for name in ("datavolumes", "cdiconfigs"):
        cluster.kubectl("apply", "-f", str(ROOT / "deploy" / "crds" / f"{name}.yaml"))
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                        f"crd/{name}.cdi.kubevirt.io")
    return cluster


@pytest.fixture
def small_image(tmp_path: Path) -> Path:
    path = tmp_path / "disk.img"
    path.write_bytes(b"\0" * 4096)
    return path
