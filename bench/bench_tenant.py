#!/usr/bin/env python3
"""Benchmark: importing DataVolumes beside importer pods that hang or flood their metrics.

The controller runs with IMPORTER_IMAGE moved to the misbehaving importer
(hack/images/misbehave.py; one kustomize `images:` entry, as an installer does). Two
phases in one run, after a warm-up import (images unpacked on the node):

- **alone**: `--good` DataVolumes importing a small raw disk from the in-cluster nginx;
  the time until all are Succeeded;
- **beside bad pods**: first `--hang` DataVolumes whose pods hang their metrics endpoint
  and `--flood` whose pods flood it (1 MiB per scrape), waited until they run; then the
  same `--good` imports, timed the same way.

Prints the ratio (beside / alone; the issue's target: <= 1.2) and the controller's peak
RSS over the run (VmHWM of its process, found by its pod's HOSTNAME; target < 150 MiB),
and the scrape outcomes the controller counted.

Usage: CDI_PY_CLUSTER_DIR=/path python3 bench/bench_tenant.py [--good 175 --hang 20
--flood 5] [--json out]. Needs the cluster's images (hack/cluster up builds and pushes
them, the misbehaving importer among them). deploy/ is re-applied at the end.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "hack")]

from localcluster.cluster import Cluster  # noqa: E402

from tests import imagefactory  # noqa: E402
from tests.controller.e2e import imageserver  # noqa: E402

DV_PATH = "/apis/cdi.kubevirt.io/v1beta1/namespaces/{ns}/datavolumes"
DEPLOY = "/apis/apps/v1/namespaces/cdi/deployments/cdi-deployment"
MISBEHAVING = "docker.io/cdi-py/importer-misbehaving:latest"
MiB = 1 << 20


def controller_pod(api: Any) -> dict[str, Any]:
    pods = [p for p in api.get("/api/v1/namespaces/cdi/pods",
                               labelSelector="cdi.kubevirt.io=cdi-deployment")["items"]
            if not p["metadata"].get("deletionTimestamp")
            and p["status"].get("phase") == "Running"]
    if len(pods) != 1:
        raise RuntimeError(f"expected one running controller pod, found {len(pods)}")
    return pods[0]


def controller_pid(pod_name: str) -> int:
    """The controller's python process in this cluster (HOSTNAME is its pod's name: other
    clusters on the machine run controllers too)."""
    want = f"HOSTNAME={pod_name}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if not (any(a.endswith(b"/cdi-controller") for a in argv[:2])
                    and b"python" in argv[0]):
                continue
            if want in (proc / "environ").read_bytes().split(b"\0"):
                return int(proc.name)
        except OSError:
            continue
    raise RuntimeError(f"no controller process for pod {pod_name}")


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def install(cluster: Cluster, image: str | None) -> None:
    """deploy/, with IMPORTER_IMAGE moved to `image` (None: as shipped); waits for the
    controller to run it."""
    api = cluster.api()
    with tempfile.TemporaryDirectory() as tmp:
        target = str(ROOT / "deploy")
        if image is not None:
            name, _, tag = image.rpartition(":")
            Path(tmp, "kustomization.yaml").write_text(yaml.safe_dump({
                "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                "resources": [os.path.relpath(ROOT / "deploy", tmp)],
                "images": [{"name": "quay.io/cdi-py/importer", "newName": name,
                            "newTag": tag}]}))
            target = tmp
        cluster.kubectl("apply", "-k", target)
    cluster.kubectl("-n", "cdi", "rollout", "status", "deployment/cdi-deployment",
                    "--timeout=180s")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            pod = controller_pod(api)
            envs = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
            if image is None or envs.get("IMPORTER_IMAGE") == image:
                controller_pid(pod["metadata"]["name"])
                time.sleep(5)  # the webhook's caBundle, the leader's lease
                return
        except RuntimeError:
            pass
        time.sleep(1)
    raise SystemExit("the controller did not come up with the wanted importer image")


def dv(name: str, url: str) -> dict[str, Any]:
    return {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
            "metadata": {"name": name},
            "spec": {"source": {"http": {"url": url}},
                     "storage": {"resources": {"requests": {"storage": "16Mi"}}}}}


def create_all(api: Any, ns: str, manifests: list[dict[str, Any]]) -> dict[str, float]:
    created: dict[str, float] = {}

    def one(m: dict[str, Any]) -> None:
        for attempt in range(20):
            try:
                api.create(DV_PATH.format(ns=ns), m)
                break
            except Exception as exc:  # the webhook right after a restart
                if "failed calling webhook" not in str(exc) or attempt == 19:
                    raise
                time.sleep(0.5)
        created[m["metadata"]["name"]] = time.monotonic()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(one, manifests))
    return created


def wait_phase(api: Any, ns: str, names: set[str], phases: set[str], timeout: float
               ) -> dict[str, float]:
    """When each of `names` was first seen in one of `phases` (polled each second)."""
    seen: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < len(names) and time.monotonic() < deadline:
        for item in api.get(DV_PATH.format(ns=ns))["items"]:
            name = item["metadata"]["name"]
            phase = item.get("status", {}).get("phase", "")
            if name in names and name not in seen:
                if phase == "Failed":
                    raise SystemExit(f"{ns}/{name} Failed: {item['status']}")
                if phase in phases:
                    seen[name] = time.monotonic()
        time.sleep(1)
    if len(seen) < len(names):
        raise SystemExit(f"{len(names) - len(seen)} DataVolumes not in {phases} "
                         f"after {timeout:.0f}s")
    return seen


def namespace(api: Any, prefix: str) -> str:
    ns = f"{prefix}-{uuid.uuid4().hex[:6]}"
    api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                      "metadata": {"name": ns}})
    while api.get_or_none(f"/api/v1/namespaces/{ns}/serviceaccounts/default") is None:
        time.sleep(0.2)
    return ns


def drop(api: Any, ns: str) -> None:
    api.delete(f"/api/v1/namespaces/{ns}")
    deadline = time.monotonic() + 300
    while api.get_or_none(f"/api/v1/namespaces/{ns}") is not None:
        if time.monotonic() > deadline:
            raise SystemExit(f"namespace {ns} not gone after 300 s")
        time.sleep(1)


def good_phase(api: Any, ns: str, n: int, url: str, tag: str) -> dict[str, Any]:
    names = [f"{tag}-{i:04d}" for i in range(n)]
    start = time.monotonic()
    created = create_all(api, ns, [dv(name, url) for name in names])
    done = wait_phase(api, ns, set(names), {"Succeeded"}, timeout=3600)
    each = [done[k] - created[k] for k in names]
    return {"datavolumes": n,
            "seconds_until_all_succeeded": round(max(done.values()) - start, 2),
            "mean_seconds_to_succeed": round(statistics.mean(each), 2),
            "p95_seconds_to_succeed": round(sorted(each)[int(0.95 * (n - 1))], 2)}


def scrape_counts(cluster: Cluster) -> dict[str, float]:
    pod = controller_pod(cluster.api())
    text = requests.get(f"http://{pod['status']['podIP']}:8080/metrics", timeout=5).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("cdi_controller_progress_scrapes_total{"):
            label = line.split('result="', 1)[1].split('"', 1)[0]
            out[label] = float(line.rsplit(" ", 1)[1])
    return out


def run(cluster: Cluster, good: int, hang: int, flood: int) -> dict[str, Any]:
    api = cluster.api()
    install(cluster, MISBEHAVING)
    pod_name = controller_pod(api)["metadata"]["name"]
    pid = controller_pid(pod_name)
    work = Path(tempfile.mkdtemp(prefix="bench-tenant-"))
    ref = imagefactory.make_reference(work, 4 * MiB)
    images_ns = namespace(api, "bench-images")
    server = imageserver.start(api, images_ns, work / "docroot")
    server.publish(ref.path, "disk.raw")
    url = f"{server.http}/disk.raw"
    result: dict[str, Any] = {"controller_pod": pod_name}
    try:
        warm = namespace(api, "bench-warm")
        good_phase(api, warm, 2, url, "warm")
        drop(api, warm)

        alone = namespace(api, "bench-alone")
        result["alone"] = good_phase(api, alone, good, url, "good")
        drop(api, alone)

        beside = namespace(api, "bench-beside")
        bad = [dv(f"hang-{i:03d}", url + "?cdi-py-misbehave=hang") for i in range(hang)]
        bad += [dv(f"flood-{i:03d}", url + "?cdi-py-misbehave=flood") for i in range(flood)]
        create_all(api, beside, bad)
        wait_phase(api, beside, {m["metadata"]["name"] for m in bad}, {"ImportInProgress"},
                   timeout=600)
        time.sleep(5)  # every bad endpoint met once (a hang costs a full timeout)
        result["beside_bad_pods"] = good_phase(api, beside, good, url, "good")
        result["bad_pods"] = {"hang": hang, "flood": flood}
        result["scrapes"] = scrape_counts(cluster)
        result["controller_peak_rss_mib"] = round(status_kib(pid, "VmHWM") / 1024, 1)
        result["controller_rss_now_mib"] = round(status_kib(pid, "VmRSS") / 1024, 1)
        if controller_pid(controller_pod(api)["metadata"]["name"]) != pid:
            raise SystemExit("the controller restarted during the run")
        drop(api, beside)
    finally:
        drop(api, images_ns)
        install(cluster, None)
    a = result["alone"]["seconds_until_all_succeeded"]
    b = result["beside_bad_pods"]["seconds_until_all_succeeded"]
    result["ratio_all_succeeded"] = round(b / a, 3)
    result["ratio_mean_to_succeed"] = round(
        result["beside_bad_pods"]["mean_seconds_to_succeed"]
        / result["alone"]["mean_seconds_to_succeed"], 3)
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--good", type=int, default=175)
    p.add_argument("--hang", type=int, default=20)
    p.add_argument("--flood", type=int, default=5)
    p.add_argument("--json", help="also write the result here")
    a = p.parse_args()
    reuse = os.environ.get("CDI_PY_CLUSTER_DIR")
    cluster = Cluster(reuse or tempfile.mkdtemp(prefix="cdi-bench-"))
    cluster.up()
    try:
        result = run(cluster, a.good, a.hang, a.flood)
    finally:
        if not reuse:
            cluster.down()
    text = json.dumps(result, indent=2)
    print(text)
    print(f"ratio (beside bad pods / alone, all {a.good} Succeeded): "
          f"{result['ratio_all_succeeded']}; controller peak RSS "
          f"{result['controller_peak_rss_mib']} MiB")
    if a.json:
        Path(a.json).write_text(text + "\n")
    ok = result["ratio_all_succeeded"] <= 1.2 and result["controller_peak_rss_mib"] < 150
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
