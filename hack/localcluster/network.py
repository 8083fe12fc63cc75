"""The cluster network: a bridge, one network namespace per pod, service addresses.

Why namespaces: each pod needs its own IP so two pods can both listen on 0.0.0.0:8443,
as in a real cluster. Pod namespaces hang off the cluster's bridge by veth pairs; the
host owns the bridge's first address (the API server listens there) and the Service
ClusterIPs (as /32s on the bridge), which the node agent's service proxy listens on.
Nothing is routed beyond this machine: no forwarding or NAT is enabled.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from localcluster.layout import Network


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def bridge_exists(net: Network) -> bool:
    return _ip("link", "show", net.bridge, check=False).returncode == 0


def bridge_mac(net: Network) -> str:
    """A fixed, locally administered address for the cluster's bridge.

    Why: a Linux bridge without an assigned address takes the lowest address among its
    ports, so it changes whenever a pod's veth comes or goes. Pods cache the gateway's
    address, so every such change cut long-lived pods (the controller) off the API
    server and the Services until their ARP entry expired, 10-45 s later.
    """
    return f"02:cd:1f:00:{net.index // 256:02x}:{net.index % 256:02x}"


def setup_bridge(net: Network, node_ips: Sequence[str] = ()) -> None:
    """The bridge with the host's address, the API's Service address and the
    InternalIP of every further node (node 1's is the gateway): all nodes share this
    host, so each node's address is the host's too, and what a node serves (NodePorts,
    its log endpoint) listens on its own."""
    if not bridge_exists(net):
        _ip("link", "add", net.bridge, "type", "bridge")
    _ip("link", "set", net.bridge, "address", bridge_mac(net))
    _ip("addr", "replace", f"{net.gateway}/24", "dev", net.bridge)
    _ip("addr", "replace", f"{net.kubernetes_service_ip}/32", "dev", net.bridge)
    for ip in node_ips:
        if ip != net.gateway:
            _ip("addr", "replace", f"{ip}/32", "dev", net.bridge)
    _ip("link", "set", net.bridge, "up")


def netns_name(net: Network, pod_key: str) -> str:
    return f"cdipy{net.index}-{pod_key}"


def netns_path(name: str) -> Path:
    return Path("/run/netns") / name


def create_pod_netns(net: Network, pod_key: str, ip: str) -> str:
    """Make a namespace with ``eth0`` at ``ip`` on the bridge; return its name."""
    name = netns_name(net, pod_key)
    delete_pod_netns(name)
    # veth names are limited to 15 characters and must be unique on the host.
    host_if = f"vc{net.index}x{ip.rsplit('.', 1)[1]}"
    _ip("link", "del", host_if, check=False)
    _ip("netns", "add", name)
    _ip("link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", name)
    _ip("link", "set", host_if, "master", net.bridge, "up")
    _ip("-n", name, "addr", "add", f"{ip}/24", "dev", "eth0")
    _ip("-n", name, "link", "set", "lo", "up")
    _ip("-n", name, "link", "set", "eth0", "up")
    _ip("-n", name, "route", "add", "default", "via", net.gateway)
    # The host may still map this address to a previous pod's MAC (see ipam.py).
    _ip("neigh", "flush", "to", ip, "dev", net.bridge, check=False)
    return name


def delete_pod_netns(name: str) -> None:
    # Deleting the namespace destroys its veth end, and with it the host's peer.
    _ip("netns", "del", name, check=False)


def add_service_ip(net: Network, ip: str) -> None:
    _ip("addr", "replace", f"{ip}/32", "dev", net.bridge)


def del_service_ip(net: Network, ip: str) -> None:
    _ip("addr", "del", f"{ip}/32", "dev", net.bridge, check=False)


def teardown(net: Network) -> None:
    """Remove every pod namespace of this cluster, then the bridge."""
    prefix = f"cdipy{net.index}-"
    out = _ip("netns", "list", check=False).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.strip() else ""
        if name.startswith(prefix):
            delete_pod_netns(name)
    _ip("link", "del", net.bridge, check=False)
