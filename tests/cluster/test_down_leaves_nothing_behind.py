"""`hack/cluster down` stops every process and removes every mount and loop device."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from localcluster import cgroups, network
from localcluster.cluster import Cluster
from localcluster.layout import Network, State
from localcluster.pytest_plugin import leftovers

from tests.cluster.helpers import phase, pod, pvc, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

HACK = Path(__file__).resolve().parents[2] / "hack"


def test_up_is_idempotent_and_down_leaves_nothing(tmp_path):
    root = tmp_path / "c"

    def run(*args):
        return subprocess.run(
            [str(HACK / "cluster"), *args, "--dir", str(root)],
            check=True,
            capture_output=True,
            text=True,
            timeout=180,
        )

    run("up")
    assert "reused healthy cluster" in run("up").stdout
    c = Cluster(root)
    api = c.api()
    api.create("/api/v1/namespaces/default/persistentvolumeclaims", pvc("fs", "16Mi"))
    api.create("/api/v1/namespaces/default/persistentvolumeclaims", pvc("blk", "8Mi", mode="Block"))
    api.create(
        "/api/v1/namespaces/default/pods",
        pod(
            "sleeper",
            "sleep 3600",
            volumes=[
                {"name": "a", "persistentVolumeClaim": {"claimName": "fs"}},
                {"name": "b", "persistentVolumeClaim": {"claimName": "blk"}},
            ],
            container={
                "volumeMounts": [{"name": "a", "mountPath": "/data"}],
                "volumeDevices": [{"name": "b", "devicePath": "/dev/xvdb"}],
            },
        ),
    )
    wait_for("Running", phase(api, "default", "sleeper", "Running"), 60)
    assert leftovers(root), "the running cluster should be visible to the leak check"
    net = Network(State.load(c.layout.state_file).index)
    run("down")
    assert leftovers(root) == []
    assert not root.exists()
    netns = subprocess.run(["ip", "netns", "list"], check=True, capture_output=True, text=True)
    netns = netns.stdout
    assert f"{net.bridge}-" not in netns
    assert not network.bridge_exists(net)
    group = cgroups.cluster_group(net.cgroup_name)
    assert group is None or not group.exists()
