"""Progress is visible while an import runs: Prometheus over HTTPS, as CDI's controller scrapes it."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import requests
import urllib3

from tests.importer.e2e.conftest import MiB, start_importer
from tests.peers.nginx import free_port


def scrape(port: int) -> str | None:
    try:
        r = requests.get(f"https://127.0.0.1:{port}/metrics", verify=False, timeout=2)
    except requests.RequestException:
        return None
    return r.text if r.ok else None


def value(text: str, metric: str) -> float | None:
    m = re.search(rf'^{metric}\{{ownerUID="uid-42"\}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else None


def test_progress_counter_grows_while_the_transfer_is_paused_midway(
    bad_server, tmp_path: Path
) -> None:
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    payload = os.urandom(8 * MiB)
    bad_server.add("paused", payload)
    port = free_port()
    url = bad_server.url("paused", stall_at=len(payload) // 2, stall=4, stall_times=1)
    proc = start_importer(
        "--endpoint",
        url,
        "--dest",
        str(tmp_path / "disk.img"),
        "--metrics-addr",
        f"127.0.0.1:{port}",
        "--owner-uid",
        "uid-42",
    )
    try:
        seen: list[float] = []
        read: list[float] = []
        sizes: set[float] = set()
        rates: list[float] = []
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            text = scrape(port)
            if text:
                if (v := value(text, "kubevirt_cdi_import_progress_total")) is not None:
                    seen.append(v)
                if (v := value(text, "cdi_importer_source_bytes")) is not None:
                    read.append(v)
                if (v := value(text, "cdi_importer_source_size_bytes")) is not None:
                    sizes.add(v)
                if (v := value(text, "cdi_importer_throughput_bytes_per_second")) is not None:
                    rates.append(v)
            time.sleep(0.2)
        assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        proc.kill()
    # While the server was silent half-way, the scraped value sat near 50%.
    assert any(40.0 <= v <= 60.0 for v in seen), seen
    assert seen == sorted(seen)
    # The companion gauges carry values, not just names: the bytes read grow up to the
    # announced length, which is the payload's, at a positive rate once data flows.
    assert read == sorted(read) and 0 < max(read) <= len(payload), read
    assert any(v >= len(payload) // 2 for v in read), read
    assert sizes <= {0.0, float(len(payload))} and float(len(payload)) in sizes, sizes
    assert any(v > 0 for v in rates), rates
    assert (tmp_path / "disk.img").read_bytes() == payload
