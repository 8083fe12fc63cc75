from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.uploadproxy.proxy.harness import READY, World


@pytest.fixture
def world(cluster: Any, namespace: str, tmp_path: Path) -> Iterator[World]:
    """Credentials and a ready PVC `disk` in a fresh namespace, the stand-in upload
    server and the proxy running."""
    w = World(cluster, namespace, tmp_path)
    try:
        w.create_credentials()
        w.pvc("disk", READY)
        w.start_upstream()
        w.start_proxy()
        yield w
    finally:
        w.stop()
        assert "eyJ" not in (tmp_path / "proxy.log").read_text(errors="replace") \
            if (tmp_path / "proxy.log").exists() else True, "a token reached the proxy's log"
