"""The userspace kube-proxy listens where clients expect a Service: its ClusterIP, and for
NodePort Services also every node's InternalIP at the nodePort."""

from __future__ import annotations

from typing import Any

from localcluster.serviceproxy import listen_addresses

NODE = "10.200.3.1"
NODE2 = "10.200.3.129"


def svc(name: str, ip: str, ports: list[dict[str, Any]], kind: str = "ClusterIP") -> dict[str, Any]:
    return {
        "metadata": {"namespace": "cdi", "name": name},
        "spec": {"type": kind, "clusterIP": ip, "ports": ports},
    }


def test_cluster_ip_services_listen_only_on_their_cluster_ip() -> None:
    got = listen_addresses([svc("a", "10.201.3.5", [{"name": "http", "port": 80}])], [NODE])
    assert got == {("10.201.3.5", 80): ("cdi", "a", "http")}


def test_node_port_services_also_listen_on_the_node_address() -> None:
    got = listen_addresses(
        [
            svc(
                "cdi-uploadproxy",
                "10.201.3.9",
                [
                    {"name": "https", "port": 443, "nodePort": 31001},
                    {"name": "udp", "port": 53, "nodePort": 31002, "protocol": "UDP"},
                ],
                kind="NodePort",
            )
        ],
        [NODE],
    )
    assert got == {
        ("10.201.3.9", 443): ("cdi", "cdi-uploadproxy", "https"),
        (NODE, 31001): ("cdi", "cdi-uploadproxy", "https"),
    }


def test_load_balancer_services_have_node_ports_too_and_headless_have_nothing() -> None:
    got = listen_addresses(
        [
            svc("lb", "10.201.3.7", [{"port": 8443, "nodePort": 30500}], kind="LoadBalancer"),
            svc("headless", "None", [{"port": 1, "nodePort": 30600}], kind="NodePort"),
        ],
        [NODE],
    )
    assert got == {("10.201.3.7", 8443): ("cdi", "lb", ""), (NODE, 30500): ("cdi", "lb", "")}


def test_node_ports_listen_on_every_node_of_a_two_node_cluster() -> None:
    got = listen_addresses(
        [
            svc(
                "p",
                "10.201.3.9",
                [{"name": "https", "port": 443, "nodePort": 31001}],
                kind="NodePort",
            )
        ],
        [NODE, NODE2],
    )
    assert got == {
        ("10.201.3.9", 443): ("cdi", "p", "https"),
        (NODE, 31001): ("cdi", "p", "https"),
        (NODE2, 31001): ("cdi", "p", "https"),
    }
