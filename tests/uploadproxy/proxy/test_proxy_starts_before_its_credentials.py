"""On a fresh cluster the proxy may start before the token API server and the controller
have written its key and certificates: it serves /healthz, answers uploads 503 meanwhile,
and takes them up when they appear, without a restart."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.uploadproxy.proxy.harness import READY, World

pytestmark = pytest.mark.cluster


def test_uploads_wait_for_credentials_then_go_through(cluster: Any, namespace: str,
                                                     tmp_path: Path,
                                                     no_cdi_controller: None) -> None:
    w = World(cluster, namespace, tmp_path)
    try:
        w.pvc("disk", READY)
        w.start_upstream()
        w.start_proxy("--credentials-max-age", "1")
        r = w.request("POST", "/v1beta1/upload", token=w.token("disk"), body=b"abc")
        assert r.status == 503 and b"cannot verify tokens yet" in r.body
        w.create_credentials()
        deadline = time.monotonic() + 15
        while (r := w.request("POST", "/v1beta1/upload", token=w.token("disk"),
                              body=b"abc")).status != 200:
            assert time.monotonic() < deadline, (r.status, r.body)
            time.sleep(0.5)
        [got] = w.received()
        assert got["size"] == 3
        log = w.proxy_log_text()
        assert "does not exist" in log
        assert "BEGIN" not in log  # no key material in the log
    finally:
        w.stop()
