"""A long-lived pod keeps its network while other pods come and go.

Regression: the cluster bridge used to take the lowest MAC among its ports, so each pod's
veth coming or going could change the gateway's MAC under every running pod; the
controller then lost the API server, its lease and the webhook for up to 45 s.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import pytest
from localcluster.cluster import Cluster
from localcluster.layout import Network, State
from localcluster.network import bridge_mac

from tests.cluster.helpers import POD_NAME_ENV, SERVE, phase, pod, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

# Connects to the API server's Service (an address on the bridge) every 0.1 s and
# reports every failed attempt; the test reads the report after the churn.
PROBE = r"""
import os, socket, time
host, port = os.environ["KUBERNETES_SERVICE_HOST"], int(os.environ["KUBERNETES_SERVICE_PORT"])
fails = 0
with open("/tmp/report", "w") as report:
    while True:
        try:
            socket.create_connection((host, port), 1).close()
            report.write("ok\n")
        except OSError as e:
            report.write(f"fail {e}\n")
        report.flush()
        time.sleep(0.1)
"""


def bridge_address(net: Network) -> str:
    out = subprocess.run(
        ["ip", "-j", "link", "show", net.bridge], check=True, capture_output=True, text=True
    ).stdout
    return str(json.loads(out)[0]["address"])


def test_the_bridge_keeps_its_address_and_running_pods_their_gateway(cluster, namespace):
    api = cluster.api()
    index = State.load(Cluster(cluster.root).layout.state_file).index
    net = Network(index)
    before = bridge_address(net)
    assert before == bridge_mac(net)

    pods = f"/api/v1/namespaces/{namespace}/pods"
    api.create(pods, pod("steady", f"python3 -c '{PROBE}'", restart="Always"))
    wait_for("steady running", phase(api, namespace, "steady", "Running"), 60)
    for i in range(6):
        api.create(pods, pod(f"churn{i}", "sleep 0.5"))
    for i in range(6):
        wait_for(f"churn{i} done", phase(api, namespace, f"churn{i}", "Succeeded"), 60)
        api.delete(f"{pods}/churn{i}")
    time.sleep(2)

    assert bridge_address(net) == before
    report = cluster.exec(namespace, "steady", "cat", "/tmp/report").stdout.splitlines()
    assert report.count("ok") > 20
    assert [line for line in report if line.startswith("fail")] == []


def _serving(api, ns, name):
    def check():
        p = api.get(f"/api/v1/namespaces/{ns}/pods/{name}")
        ip = p["status"].get("podIP")
        if p["status"].get("phase") != "Running" or not ip:
            return None
        try:
            with urllib.request.urlopen(f"http://{ip}:8443/", timeout=1) as r:
                return ip if r.read().decode() == name else None
        except OSError:
            return None

    return check


def test_the_host_reaches_a_new_pod_at_once_after_an_old_one_went(cluster, namespace):
    """The host once kept a freed address mapped to the old pod's MAC for up to 45 s."""
    api = cluster.api()
    pods = f"/api/v1/namespaces/{namespace}/pods"
    api.create(pods, pod("first", SERVE, container=POD_NAME_ENV))
    wait_for("first serving", _serving(api, namespace, "first"), 60)
    api.delete(f"{pods}/first", {"gracePeriodSeconds": 0})
    wait_for("first gone", lambda: api.get_or_none(f"{pods}/first") is None, 60)
    api.create(pods, pod("second", SERVE, container=POD_NAME_ENV))
    wait_for("second running", phase(api, namespace, "second", "Running"), 60)
    # Within a few seconds of starting, not after the host's neighbour entry expires.
    wait_for("second serving", _serving(api, namespace, "second"), 8, interval=0.2)
