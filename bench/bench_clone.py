#!/usr/bin/env python3
"""Clone benchmark: a cross-namespace, cross-node host-assisted clone, side by side with
`cp --sparse=always` of the source's backing file.

On the local cluster with two nodes (`hack/cluster up --nodes 2`; the product installed
with `kubectl apply -k deploy/`), for the cached realistic disk of bench_importer.py (an
ext4 of N GiB virtual with ~1 GiB of real files from /usr: about a quarter allocated,
text and binaries, compressible and not), alternating in one run, --repeat times:

  clone  source: a Filesystem PVC in namespace A on node 1 (StorageClass `local-<node1>`)
         whose disk.img is the raw disk (written once, sparse, outside the clock);
         target: a DataVolume `source.pvc` in namespace B on node 2 (`local-<node2>`),
         created by the admin (admission signs its clone token). Timed: DV create ->
         Succeeded (everything a user waits for: pods, TLS, the stream, fsync), and the
         cloner container's own run (running -> terminated, second resolution).
  cp     `cp --sparse=always` of the source's disk.img to a file on the same host disk,
         then `sync` of that file (the upload server fsyncs before it reports success).
         The limit: the same bytes moved by the kernel, with no network and no pods.

Bytes on the wire: the cloner's termination report (bytes_transferred: the stream's
bytes, frame headers included), and, independent of the product, the cloner pod's own
network namespace is read while it runs
(/proc/<cloner pid>/net/dev, eth0): tx_bytes, and tx_bytes - 66 * tx_packets (Ethernet,
IP and TCP-with-timestamps headers per (GSO) packet), i.e. the TLS stream's bytes. Both
are compared with the source's allocated bytes (st_blocks * 512 of disk.img).
Peak RSS: VmHWM of the cloner's and the upload server's python process (and the summed
VmRSS of each one's process tree), sampled every 0.3 s (a denser scan of /proc costs this 2-core machine CPU).

Every target is checked against the raw disk (sha256 of its first raw-size bytes, and
zeros after), outside the clock; `sync` runs before every timed run.

Targets (issue 10): clone (create -> Succeeded) <= 1.3x cp; bytes sent <= 1.05x allocated.

Usage: CDI_PY_CLUSTER_DIR=/work/clusters/bench PATH=$VENV/bin:$PATH \\
       $VENV/bin/python bench/bench_clone.py [--size-gib 4] [--repeat 3]
Without CDI_PY_CLUSTER_DIR a two-node cluster is started in a temporary directory and
stopped. Run it with the Python of the venv the cluster's node runs programs from (its
bin directory tells this cluster's processes from other clusters' on the same host).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "hack")]

from localcluster.cluster import Cluster  # noqa: E402
from localcluster.pytest_plugin import ClusterHandle  # noqa: E402

from bench.bench_importer import CACHE, build_images  # noqa: E402
from bench.bench_integrity import sha256_cached  # noqa: E402
from bench.bench_upload import install  # noqa: E402
from cdicontract import clone  # noqa: E402
from tests.cluster.helpers import wait_for  # noqa: E402
from tests.controller.e2e.clonestack import (  # noqa: E402
    Clones,
    bound,
    clone_dv,
    pvc_manifest,
)

MiB = 1 << 20
ROLES = ("cdi-cloner", "cdi-uploadserver")
HEADERS_PER_PACKET = 14 + 20 + 32  # Ethernet, IPv4, TCP with timestamps


# -- sampling the pods' processes ------------------------------------------------------

def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _eth0_tx(pid: int) -> tuple[int, int] | None:
    """(tx_bytes, tx_packets) of eth0 in the network namespace of `pid`."""
    try:
        for line in Path(f"/proc/{pid}/net/dev").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name.strip() == "eth0":
                f = rest.split()
                return int(f[8]), int(f[9])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                kids.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return kids


@dataclass
class Peaks:
    hwm_kib: dict[str, int] = field(default_factory=dict)
    tree_kib: dict[str, int] = field(default_factory=dict)
    tx: tuple[int, int] = (0, 0)
    seen: set[str] = field(default_factory=set)


class Sampler:
    """Every 0.3 s, this cluster's cloner and upload server processes: VmHWM, the
    summed VmRSS of their process trees, and the cloner pod's eth0 tx counters."""

    def __init__(self, bin_dir: Path) -> None:
        self.scripts = {str(bin_dir / r).encode(): r for r in ROLES}
        self.lock = threading.Lock()
        self.peaks = Peaks()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def pids(self) -> dict[str, list[int]]:
        found: dict[str, list[int]] = {}
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if len(argv) > 1 and b"python" in argv[0] and argv[1] in self.scripts:
                found.setdefault(self.scripts[argv[1]], []).append(int(proc.name))
        return found

    def reset(self) -> Peaks:
        with self.lock:
            old, self.peaks = self.peaks, Peaks()
        return old

    def _run(self) -> None:
        while not self._stop.is_set():
            found = self.pids()
            kids = _children() if found else {}
            for role, pids in found.items():
                for pid in pids:
                    hwm = _status_kib(pid, "VmHWM:")
                    total, todo = 0, [pid]
                    while todo:
                        p = todo.pop()
                        total += _status_kib(p, "VmRSS:")
                        todo.extend(kids.get(p, []))
                    tx = _eth0_tx(pid) if role == "cdi-cloner" else None
                    with self.lock:
                        pk = self.peaks
                        pk.seen.add(role)
                        pk.hwm_kib[role] = max(pk.hwm_kib.get(role, 0), hwm)
                        pk.tree_kib[role] = max(pk.tree_kib.get(role, 0), total)
                        if tx is not None and tx[0] > pk.tx[0]:
                            pk.tx = tx
            time.sleep(0.3)

    def stop(self) -> None:
        self._stop.set()
        self._t.join()


class PodTimes:
    """The cloner container's running -> terminated times, seen while its pod exists."""

    def __init__(self, api: Any, ns: str) -> None:
        self.api, self.ns = api, ns
        self.started: str | None = None
        self.finished: str | None = None
        self.report: dict[str, Any] = {}
        self.nodes: dict[str, str] = {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                for p in self.api.get(f"/api/v1/namespaces/{self.ns}/pods")["items"]:
                    if p["spec"].get("nodeName"):
                        self.nodes[p["metadata"]["name"]] = p["spec"]["nodeName"]
                    if not p["metadata"]["name"].endswith(clone.SOURCE_POD_SUFFIX):
                        continue
                    for cs in p.get("status", {}).get("containerStatuses", []):
                        state = cs.get("state", {})
                        if "running" in state:
                            self.started = self.started or state["running"].get("startedAt")
                        if "terminated" in state:
                            t = state["terminated"]
                            self.started = self.started or t.get("startedAt")
                            self.finished = t.get("finishedAt")
                            with contextlib.suppress(ValueError, TypeError):
                                self.report = json.loads(t.get("message") or "{}")
            self._stop.wait(0.2)

    def __enter__(self) -> PodTimes:
        self._t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._t.join(5)

    def seconds(self) -> float | None:
        if not (self.started and self.finished):
            return None
        parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
        return (parse(self.finished) - parse(self.started)).total_seconds()


# -- the runs ----------------------------------------------------------------------------

@dataclass
class Results:
    clone_s: list[float] = field(default_factory=list)
    cloner_s: list[float] = field(default_factory=list)
    cp_s: list[float] = field(default_factory=list)
    tx_bytes: list[int] = field(default_factory=list)
    tls_bytes: list[int] = field(default_factory=list)
    reported_bytes: list[int] = field(default_factory=list)
    reported_s: list[float] = field(default_factory=list)
    hwm: dict[str, int] = field(default_factory=dict)
    tree: dict[str, int] = field(default_factory=dict)
    nodes: list[str] = field(default_factory=list)


def verify(path: Path, length: int, sha: str) -> None:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        left = length
        while left:
            chunk = f.read(min(left, 8 * MiB))
            if not chunk:
                raise AssertionError(f"{path}: only {length - left} of {length} bytes")
            digest.update(chunk)
            left -= len(chunk)
        if digest.hexdigest() != sha:
            raise AssertionError(f"{path}: the first {length} bytes differ from the source")
        zero = bytes(8 * MiB)
        while chunk := f.read(8 * MiB):
            if chunk != zero[:len(chunk)]:
                raise AssertionError(f"{path}: non-zero bytes past the source's end")


def run_clone(clones: Clones, sampler: Sampler, src_ns: str, dst_ns: str, size: str,
              sc: str | None, raw: Path, sha: str, res: Results, check: bool) -> None:
    name = f"bench-{uuid.uuid4().hex[:6]}"
    subprocess.run(["sync"], check=True)
    sampler.reset()
    with PodTimes(clones.api, src_ns) as times:
        t0 = time.monotonic()
        clones.cdi.create_dv(dst_ns, clone_dv(name, {"pvc": {"namespace": src_ns,
                                                            "name": "golden"}},
                                              size=size, sc=sc))
        dv = clones.wait_phase(dst_ns, name, "Succeeded", "Failed", timeout=1800,
                               src_ns=src_ns)
        elapsed = time.monotonic() - t0
        time.sleep(0.5)
    pk = sampler.reset()
    if dv["status"]["phase"] != "Succeeded":
        raise SystemExit(clones.diagnose(dst_ns, name, "Failed", src_ns))
    res.clone_s.append(elapsed)
    if (s := times.seconds()) is not None:
        res.cloner_s.append(s)
    if isinstance(times.report.get("bytes_transferred"), int):
        res.reported_bytes.append(times.report["bytes_transferred"])
    if isinstance(times.report.get("duration_seconds"), int | float):
        res.reported_s.append(float(times.report["duration_seconds"]))
    if pk.tx[0]:
        res.tx_bytes.append(pk.tx[0])
        res.tls_bytes.append(pk.tx[0] - HEADERS_PER_PACKET * pk.tx[1])
    for role in ROLES:
        res.hwm[role] = max(res.hwm.get(role, 0), pk.hwm_kib.get(role, 0))
        res.tree[role] = max(res.tree.get(role, 0), pk.tree_kib.get(role, 0))
    pvc = clones.pvc(dst_ns, name) or {}
    target_node = json.dumps(clones.api.get(
        f"/api/v1/persistentvolumes/{pvc['spec']['volumeName']}")["spec"].get("nodeAffinity"))
    res.nodes.append(f"cloner on {sorted(set(times.nodes.values()))}, target PV {target_node}")
    print(f"  clone {elapsed:7.2f} s (cloner container {times.seconds()} s), tx {pk.tx[0]} B "
          f"in {pk.tx[1]} packets, peak HWM {pk.hwm_kib} KiB; the cloner's report: "
          f"{ {k: v for k, v in times.report.items() if k != 'message'} }", flush=True)
    if check:
        verify(Path(clones.cluster.pv_path(dst_ns, name)) / "disk.img", raw.stat().st_size,
               sha)
    clones.api.delete(f"/apis/cdi.kubevirt.io/v1beta1/namespaces/{dst_ns}/datavolumes/{name}")
    wait_for("the target PVC gone", lambda: clones.pvc(dst_ns, name) is None, timeout=120)


def run_cp(source: Path, work: Path, res: Results) -> None:
    dst = work / "cp-target.img"
    dst.unlink(missing_ok=True)
    subprocess.run(["sync"], check=True)
    t0 = time.monotonic()
    subprocess.run(["cp", "--sparse=always", str(source), str(dst)], check=True)
    subprocess.run(["sync", str(dst)], check=True)
    elapsed = time.monotonic() - t0
    res.cp_s.append(elapsed)
    print(f"  cp    {elapsed:7.2f} s", flush=True)
    dst.unlink()


def report(res: Results, allocated: int, logical: int) -> None:
    med = statistics.median
    print(f"\n== clone of {logical / (1 << 30):.1f} GiB ({allocated / MiB:.0f} MiB allocated), "
          f"{len(res.clone_s)} rounds")
    print(f"clone (DV create -> Succeeded) median {med(res.clone_s):.2f} s  runs "
          f"{[round(x, 2) for x in res.clone_s]}")
    if res.cloner_s:
        print(f"cloner container running      median {med(res.cloner_s):.2f} s")
    print(f"cp --sparse=always + sync     median {med(res.cp_s):.2f} s  runs "
          f"{[round(x, 2) for x in res.cp_s]}")
    ratio = med(res.clone_s) / med(res.cp_s)
    print(f"ratio clone/cp {ratio:.2f}x (target <= 1.3x) -> "
          f"{'OK' if ratio <= 1.3 else 'MISSED'}")
    if res.cloner_s:
        print(f"ratio cloner-run/cp {med(res.cloner_s) / med(res.cp_s):.2f}x")
    if res.tx_bytes:
        tx, tls = med(res.tx_bytes), med(res.tls_bytes)
        print(f"sent on the wire: eth0 tx {tx / MiB:.1f} MiB = {tx / allocated:.3f}x allocated; "
              f"TLS stream ~{tls / MiB:.1f} MiB = {tls / allocated:.3f}x (target <= 1.05x) -> "
              f"{'OK' if tls / allocated <= 1.05 else 'MISSED'}")
    else:
        print("sent on the wire: no cloner process was seen (no tx counters)")
    if res.reported_bytes:
        rb = med(res.reported_bytes)
        print(f"the cloner reports {rb / MiB:.1f} MiB of stream = {rb / allocated:.3f}x "
              f"allocated" + (f", in {med(res.reported_s):.2f} s of its own clock"
                              if res.reported_s else ""))
    else:
        print("the cloner's termination report gave no bytes_transferred")
    for role in ROLES:
        print(f"peak {role}: VmHWM {res.hwm.get(role, 0) / 1024:.0f} MiB, process tree "
              f"{res.tree.get(role, 0) / 1024:.0f} MiB")
    for n in res.nodes[:1]:
        print(f"placement: {n}")


def start_cluster() -> tuple[Cluster, bool]:
    reuse = os.environ.get("CDI_PY_CLUSTER_DIR")
    if reuse:
        c = Cluster(reuse)
        c.up()
        return c, False
    root = tempfile.mkdtemp(prefix="cdi-bench-clone-")
    subprocess.run([str(ROOT / "hack" / "cluster"), "up", "--dir", root, "--nodes", "2"],
                   check=True)
    c = Cluster(root)
    c.up()
    return c, True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-gib", type=int, default=4)
    ap.add_argument("--fill-gib", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-verify", action="store_true", help="skip the target checks")
    args = ap.parse_args()

    raw = build_images(args.size_gib, args.fill_gib)["raw"]
    sha = sha256_cached(raw) if not args.no_verify else ""
    logical = raw.stat().st_size
    c, started = start_cluster()
    cluster = ClusterHandle(c)
    cdi = install(cluster)
    clones = Clones(cluster, cdi)
    nodes = clones.node_names()
    if len(nodes) < 2:
        print("WARNING: one node only: the clone is not cross-node "
              "(hack/cluster up --nodes 2)", flush=True)
    src_sc, dst_sc = (f"local-{nodes[0]}", f"local-{nodes[1]}") if len(nodes) > 1 else (None,
                                                                                        None)
    work = Path(tempfile.mkdtemp(prefix="bench-clone-", dir=CACHE))
    sampler = Sampler(Path(sys.executable).parent)
    size = f"{(logical * 11 // 10) // MiB}Mi"  # room for ext4's own overhead
    try:
        src_ns, dst_ns = clones.ns.new("bench-a"), clones.ns.new("bench-b")
        clones.api.create(f"/api/v1/namespaces/{src_ns}/persistentvolumeclaims",
                          pvc_manifest("golden", size, sc=src_sc))
        bound(clones.api, src_ns, "golden")
        source = Path(cluster.pv_path(src_ns, "golden")) / "disk.img"
        print(f"writing the source ({raw}) into {source} ...", flush=True)
        subprocess.run(["cp", "--sparse=always", str(raw), str(source)], check=True)
        source.chmod(0o644)
        subprocess.run(["sync"], check=True)
        allocated = source.stat().st_blocks * 512
        print(f"source: {logical} bytes, {allocated} allocated; nodes {nodes}", flush=True)
        res = Results()
        for i in range(args.repeat):
            print(f"round {i + 1}/{args.repeat}", flush=True)
            cases = [lambda: run_clone(clones, sampler, src_ns, dst_ns, size, dst_sc, raw,
                                       sha, res, not args.no_verify),
                     lambda: run_cp(source, work, res)]
            for case in cases[i % 2:] + cases[: i % 2]:
                case()
        report(res, allocated, logical)
    finally:
        sampler.stop()
        clones.ns.cleanup()
        with contextlib.suppress(OSError):
            for p in work.iterdir():
                p.unlink()
            work.rmdir()
        if started:
            c.down()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
