#!/usr/bin/env python3
"""Benchmark: N blank DataVolumes at once on the local cluster.

Measures the wall time until all are Succeeded, and the controller process's own CPU
(user+system, from /proc) and peak RSS (VmHWM) over the run. Targets from the issue:
< 50 ms of controller CPU per DataVolume and < 150 MiB RSS.

Usage: CDI_PY_CLUSTER_DIR=.cluster python3 bench/bench_controller.py [-n 200] [--json out]
Without CDI_PY_CLUSTER_DIR a cluster is started under a temporary directory and stopped.
The product is installed with `kubectl apply -k deploy/` (a no-op when already there).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "hack")]

from localcluster.cluster import Cluster  # noqa: E402

DV_PATH = "/apis/cdi.kubevirt.io/v1beta1/namespaces/{ns}/datavolumes"
TICKS = os.sysconf("SC_CLK_TCK")


def controller_pids() -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        # The python process itself (not bwrap/setpriv/nsenter wrappers around it).
        if any(a.endswith(b"/cdi-controller") for a in argv[:2]) and b"python" in argv[0]:
            pids.append(int(proc.name))
    return pids


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_available(api: Any, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d = api.get_or_none("/apis/apps/v1/namespaces/cdi/deployments/cdi-deployment")
        st = (d or {}).get("status", {})
        if st.get("availableReplicas", 0) >= 1 and controller_pids():
            return
        time.sleep(0.5)
    raise SystemExit("cdi-deployment did not become Available")


def run(cluster: Cluster, n: int, size: str) -> dict[str, Any]:
    cluster.kubectl("apply", "-k", str(ROOT / "deploy"))
    api = cluster.api()
    wait_available(api)
    time.sleep(3)  # let the webhook's caBundle land
    pids = controller_pids()
    pid = pids[0]
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                      "metadata": {"name": ns}})
    while api.get_or_none(f"/api/v1/namespaces/{ns}/serviceaccounts/default") is None:
        time.sleep(0.2)
    cpu0 = cpu_seconds(pid)
    start = time.monotonic()

    def create(i: int) -> None:
        api.create(DV_PATH.format(ns=ns), {
            "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
            "metadata": {"name": f"blank-{i:04d}"},
            "spec": {"source": {"blank": {}},
                     "storage": {"resources": {"requests": {"storage": size}}}}})

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(create, range(n)))
    created = time.monotonic() - start
    phases: dict[str, int] = {}
    while True:
        items = api.get(DV_PATH.format(ns=ns))["items"]
        phases = {}
        for dv in items:
            p = dv.get("status", {}).get("phase", "")
            phases[p] = phases.get(p, 0) + 1
        if phases.get("Succeeded", 0) == n or phases.get("Failed", 0):
            break
        if time.monotonic() - start > 1800:
            break
        time.sleep(1)
    elapsed = time.monotonic() - start
    cpu = cpu_seconds(pid) - cpu0
    result = {
        "datavolumes": n,
        "size": size,
        "phases": phases,
        "seconds_to_create": round(created, 2),
        "seconds_until_all_succeeded": round(elapsed, 2),
        "controller_cpu_seconds": round(cpu, 3),
        "controller_cpu_ms_per_datavolume": round(cpu * 1000 / n, 2),
        "controller_peak_rss_mib": round(peak_rss_mib(pid), 1),
        "controller_replicas_seen": len(pids),
    }
    api.delete(f"/api/v1/namespaces/{ns}")
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("-n", type=int, default=200)
    p.add_argument("--size", default="16Mi")
    p.add_argument("--json", help="also write the result here")
    a = p.parse_args()
    reuse = os.environ.get("CDI_PY_CLUSTER_DIR")
    cluster = Cluster(reuse or tempfile.mkdtemp(prefix="cdi-bench-"))
    cluster.up()
    try:
        result = run(cluster, a.n, a.size)
    finally:
        if not reuse:
            cluster.down()
    text = json.dumps(result, indent=2)
    print(text)
    if a.json:
        Path(a.json).write_text(text + "\n")
    ok = (result["phases"].get("Succeeded") == a.n
          and result["controller_cpu_ms_per_datavolume"] < 50
          and result["controller_peak_rss_mib"] < 150)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
