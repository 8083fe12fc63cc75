"""Where nodes, pods and volumes live: node names and address blocks, the node a new
volume is provisioned on, and whether a PV's node affinity admits a node (pure)."""

from __future__ import annotations

import ipaddress

import pytest
from localcluster.layout import NODE_NAME, Network, node_names
from localcluster.podvolumes import node_matches
from localcluster.provisioner import (
    choose_node,
    node_affinity,
    node_class,
    storage_classes,
    topology_nodes,
)

NODES = ["cdi-node", "cdi-node-2"]


def test_node_1_keeps_its_name_and_address_and_others_are_numbered() -> None:
    assert node_names(1) == [NODE_NAME] == ["cdi-node"]
    assert node_names(3) == ["cdi-node", "cdi-node-2", "cdi-node-3"]
    net = Network(7)
    assert net.node_ip(1, 1) == net.gateway == net.node_ip(1, 2)
    assert net.node_ip(2, 2) == "10.200.7.129"
    assert net.pod_hosts(1, 1) == (2, 254)
    for bad in (0, 5):
        with pytest.raises(ValueError, match="1 to 4 nodes"):
            node_names(bad)


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_each_node_owns_a_disjoint_block_holding_its_address_and_pods(count: int) -> None:
    net = Network(9)
    seen: set[int] = set()
    for k in range(1, count + 1):
        cidr = ipaddress.ip_network(net.pod_cidr(k, count))
        first, last = net.pod_hosts(k, count)
        hosts = set(range(first, last + 1))
        node = int(net.node_ip(k, count).rsplit(".", 1)[1])
        assert node not in hosts and not hosts & seen
        assert all(ipaddress.ip_address(f"{net.pod_prefix}{h}") in cidr for h in [node, *hosts])
        assert 0 not in hosts and 255 not in hosts and 1 not in hosts
        assert len(hosts) >= 60
        seen |= hosts | {node}


def _class(name: str, mode: str = "Immediate", topology: list[str] | None = None) -> dict:
    sc: dict = {"metadata": {"name": name}, "volumeBindingMode": mode}
    if topology is not None:
        sc["allowedTopologies"] = [
            {"matchLabelExpressions": [{"key": "kubernetes.io/hostname", "values": topology}]}
        ]
    return sc


def _claim(selected: str | None = None) -> dict:
    ann = {"volume.kubernetes.io/selected-node": selected} if selected else {}
    return {"metadata": {"annotations": ann}}


def test_immediate_volumes_go_to_node_1_unless_the_class_names_a_node() -> None:
    assert choose_node(_class("local"), _claim(), NODES) == "cdi-node"
    assert choose_node(_class("x", topology=["cdi-node-2"]), _claim(), NODES) == "cdi-node-2"
    # A class for nodes this cluster does not have provisions nothing.
    assert choose_node(_class("x", topology=["elsewhere"]), _claim(), NODES) is None
    # Other topology keys (zones) do not restrict our nodes.
    zoned = {
        "volumeBindingMode": "Immediate",
        "allowedTopologies": [{"matchLabelExpressions": [{"key": "zone", "values": ["a"]}]}],
    }
    assert topology_nodes(zoned) is None
    assert choose_node(zoned, _claim(), NODES) == "cdi-node"


def test_late_binding_volumes_go_to_the_node_the_scheduler_selected() -> None:
    wffc = _class("local-wffc", "WaitForFirstConsumer")
    assert choose_node(wffc, _claim(), NODES) is None
    assert choose_node(wffc, _claim("cdi-node-2"), NODES) == "cdi-node-2"
    assert choose_node(wffc, _claim("not-ours"), NODES) is None


def test_a_class_per_node_only_with_several_nodes() -> None:
    assert [c["metadata"]["name"] for c in storage_classes(["cdi-node"])] == [
        "local",
        "local-wffc",
    ]
    classes = {c["metadata"]["name"]: c for c in storage_classes(NODES)}
    assert set(classes) == {"local", "local-wffc", "local-cdi-node", "local-cdi-node-2"}
    for node in NODES:
        sc = classes[node_class(node)]
        assert sc["volumeBindingMode"] == "Immediate"
        assert topology_nodes(sc) == {node}
        assert choose_node(sc, _claim(), NODES) == node
    assert classes["local"]["metadata"]["annotations"] == {
        "storageclass.kubernetes.io/is-default-class": "true"
    }


def test_a_pv_admits_only_its_node() -> None:
    pv = {"spec": {"nodeAffinity": node_affinity("cdi-node-2")}}
    assert node_matches(pv, "cdi-node-2")
    assert not node_matches(pv, "cdi-node")
    assert node_matches({"spec": {}}, "cdi-node")
    two_terms = {
        "spec": {
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        *node_affinity("a")["required"]["nodeSelectorTerms"],
                        *node_affinity("b")["required"]["nodeSelectorTerms"],
                    ]
                }
            }
        }
    }
    assert node_matches(two_terms, "b") and not node_matches(two_terms, "c")
