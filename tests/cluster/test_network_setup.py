"""A pod's network, set up on a throwaway bridge: the host forgets a stale MAC for a reused
address, and the bridge's own MAC does not follow its ports."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator

import pytest
from localcluster import network
from localcluster.layout import Network

pytestmark = pytest.mark.slow
INDEX = 249  # far above what test sessions allocate (they count up from 0)


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def net() -> Iterator[Network]:
    n = Network(INDEX)
    if network.bridge_exists(n):
        pytest.skip(f"bridge {n.bridge} in use")
    network.setup_bridge(n)
    try:
        yield n
    finally:
        network.teardown(n)


def test_a_reused_address_is_not_left_mapped_to_the_previous_pods_mac(net):
    addr = f"{net.pod_prefix}7"
    stale = "02:00:5e:00:de:ad"
    # Another pod keeps the bridge's carrier up, as in a running cluster (a carrier change
    # would flush the table and hide the problem).
    other = network.create_pod_netns(net, "other", f"{net.pod_prefix}8")
    ip("neigh", "replace", addr, "lladdr", stale, "dev", net.bridge, "nud", "reachable")
    assert stale in ip("neigh", "show", addr, "dev", net.bridge)
    name = network.create_pod_netns(net, "reuse", addr)
    try:
        assert stale not in ip("neigh", "show", addr, "dev", net.bridge)
        server = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                name,
                "python3",
                "-c",
                "import socket; s = socket.create_server(('0.0.0.0', 8080)); "
                "print('up', flush=True); s.accept()[0].close()",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "up"
            socket.create_connection((addr, 8080), timeout=2).close()
        finally:
            server.kill()
            server.wait()
    finally:
        network.delete_pod_netns(name)
        network.delete_pod_netns(other)


def test_the_bridge_mac_stays_put_as_ports_come_and_go(net):
    def mac() -> str:
        return str(json.loads(ip("-j", "link", "show", net.bridge))[0]["address"])

    assert mac() == network.bridge_mac(net)
    names = [network.create_pod_netns(net, f"p{i}", f"{net.pod_prefix}{10 + i}") for i in range(4)]
    assert mac() == network.bridge_mac(net)
    for name in names:
        network.delete_pod_netns(name)
        assert mac() == network.bridge_mac(net)
