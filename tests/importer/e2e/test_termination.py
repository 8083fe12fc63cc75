"""A pod deletion (SIGTERM) mid-import stops cleanly: no partial image, a Cancelled report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.importer.e2e.conftest import MiB, start_importer


@pytest.mark.parametrize("name", ["raw", "qcow2"])
def test_sigterm_mid_transfer_leaves_nothing_behind(
    bad_server, images, tmp_path: Path, name: str
) -> None:
    payload = os.urandom(8 * MiB) if name == "raw" else images.make("qcow2").read_bytes()
    bad_server.add(f"slow-{name}", payload)
    url = bad_server.url(f"slow-{name}", stall_at=len(payload) // 2, stall=30, stall_times=5)
    report = tmp_path / "report.json"
    out = tmp_path / "out"
    out.mkdir()
    proc = start_importer(
        "--endpoint",
        url,
        "--dest",
        str(out / "disk.img"),
        "--termination-log",
        str(report),
    )
    try:
        deadline = time.monotonic() + 6  # qemu-img creates its output only once it writes
        while time.monotonic() < deadline and not any(out.iterdir()):
            time.sleep(0.1)
        time.sleep(0.5)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=15)
        stopped_in = time.monotonic() - t0
    finally:
        proc.kill()
    assert rc == 1
    assert stopped_in < 5  # a pod's grace period is 30 s; we need far less
    assert json.loads(report.read_text())["reason"] == "Cancelled"
    assert list(out.iterdir()) == []
    # No helper process (qemu-img, nbdkit) outlives the importer.
    time.sleep(0.5)
    ps = subprocess.run(
        ["ps", "-eo", "ppid,comm"], check=True, capture_output=True, text=True
    ).stdout
    assert not [
        line
        for line in ps.splitlines()
        if line.split()[0] == "1" and line.split()[1] in ("qemu-img", "nbdkit")
    ]
