"""`hack/cluster down` stops every process (the registry too) and removes every mount
and loop device, of every node of a two-node cluster."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import requests
from localcluster import cgroups, network, registry
from localcluster.cluster import Cluster
from localcluster.layout import Network, State
from localcluster.pytest_plugin import leftovers

from tests.cluster.helpers import phase, pod, pvc, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

HACK = Path(__file__).resolve().parents[2] / "hack"


def test_up_is_idempotent_and_down_leaves_nothing(tmp_path):
    """Two nodes, a pod with a Filesystem and a Block volume on each."""
    root = tmp_path / "c"

    def run(*args):
        return subprocess.run(
            [str(HACK / "cluster"), *args, "--dir", str(root)],
            check=True,
            capture_output=True,
            text=True,
            # `up` builds (cached) and pushes the images into the new cluster's registry,
            # and a reused cluster is pushed to again: minutes when CI's two session
            # clusters build and push at the same time.
            timeout=900,
        )

    run("up", "--nodes", "2")
    # Reuse keeps the running count; asking for another one is refused, not ignored.
    reused = run("up").stdout
    assert "reused healthy cluster" in reused and "cdi-node-2" in reused
    assert "cdi-node-2" in run("status").stdout
    refused = subprocess.run(
        [str(HACK / "cluster"), "up", "--nodes", "1", "--dir", str(root)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1 and "runs 2 node(s), not 1" in refused.stderr
    c = Cluster(root)
    assert c.node_names == ["cdi-node", "cdi-node-2"]
    api = c.api()
    for node in c.node_names:
        sc = f"local-{node}"
        ns = "default"
        api.create(
            f"/api/v1/namespaces/{ns}/persistentvolumeclaims", pvc(f"fs-{node}", "16Mi", sc=sc)
        )
        api.create(
            f"/api/v1/namespaces/{ns}/persistentvolumeclaims",
            pvc(f"blk-{node}", "8Mi", mode="Block", sc=sc),
        )
        api.create(
            f"/api/v1/namespaces/{ns}/pods",
            pod(
                f"sleeper-{node}",
                "sleep 3600",
                volumes=[
                    {"name": "a", "persistentVolumeClaim": {"claimName": f"fs-{node}"}},
                    {"name": "b", "persistentVolumeClaim": {"claimName": f"blk-{node}"}},
                ],
                container={
                    "volumeMounts": [{"name": "a", "mountPath": "/data"}],
                    "volumeDevices": [{"name": "b", "devicePath": "/dev/xvdb"}],
                },
            ),
        )
    for node in c.node_names:
        p = wait_for("Running", phase(api, "default", f"sleeper-{node}", "Running"), 60)
        assert p["spec"]["nodeName"] == node
    assert leftovers(root), "the running cluster should be visible to the leak check"
    net = Network(State.load(c.layout.state_file).index)
    node2_ip = c.node_ips["cdi-node-2"]
    mirror = registry.address(root)
    assert mirror and requests.get(f"http://{mirror}/v2/", timeout=5).ok
    run("down")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://{mirror}/v2/", timeout=5)
    assert leftovers(root) == []
    assert not root.exists()
    netns = subprocess.run(["ip", "netns", "list"], check=True, capture_output=True, text=True)
    netns = netns.stdout
    assert f"{net.bridge}-" not in netns
    assert not network.bridge_exists(net)
    addrs = subprocess.run(["ip", "-o", "addr"], check=True, capture_output=True, text=True)
    assert f" {node2_ip}/" not in addrs.stdout
    group = cgroups.cluster_group(net.cgroup_name)
    assert group is None or not group.exists()
