"""Two simulated nodes: each a Ready Node of its own, volumes local to one node, pods
placed with their volumes by the real scheduler, Services and pods reachable across
nodes, and logs/exec for pods on either node."""

from __future__ import annotations

import ipaddress
import time
import urllib.request

import pytest

from tests.cluster.helpers import POD_NAME_ENV, SERVE, phase, pod, pvc, wait_for

pytestmark = pytest.mark.cluster


@pytest.fixture
def two(cluster):
    if len(cluster.node_names) < 2:
        pytest.fail(
            "these tests need a cluster of 2+ nodes (hack/cluster up --nodes 2, or the "
            "session cluster's default)"
        )
    return cluster.node_names[:2]


def _pods(api, ns):
    return f"/api/v1/namespaces/{ns}/pods"


def _bound_pv(api, ns, claim):
    def check():
        c = api.get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{claim}")
        name = c["spec"].get("volumeName")
        return c["status"].get("phase") == "Bound" and api.get(f"/api/v1/persistentvolumes/{name}")

    return wait_for(f"{claim} bound", check, 60)


def _pv_node(pv):
    terms = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    assert len(terms) == 1 and len(terms[0]["matchExpressions"]) == 1
    expr = terms[0]["matchExpressions"][0]
    assert (expr["key"], expr["operator"]) == ("kubernetes.io/hostname", "In")
    assert len(expr["values"]) == 1
    return expr["values"][0]


def _ready(api, ns, name):
    def check():
        p = api.get(f"/api/v1/namespaces/{ns}/pods/{name}")
        conds = {c["type"]: c["status"] for c in p["status"].get("conditions", [])}
        return conds.get("Ready") == "True" and p

    return wait_for(f"{name} ready", check, 60)


def on(node):
    return {"nodeSelector": {"kubernetes.io/hostname": node}}


def test_both_nodes_are_ready_with_their_own_address_range_and_lease(cluster, two):
    api = cluster.api()
    seen_ips, seen_cidrs = set(), set()
    for name in two:
        node = api.get(f"/api/v1/nodes/{name}")
        conds = {c["type"]: c["status"] for c in node["status"]["conditions"]}
        assert conds["Ready"] == "True"
        assert node["metadata"]["labels"]["kubernetes.io/hostname"] == name
        taints = {t["key"] for t in node["spec"].get("taints") or []}
        assert not taints & {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}
        ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
        assert ip == cluster.node_ips[name]
        cidr = ipaddress.ip_network(node["spec"]["podCIDR"])
        assert ipaddress.ip_address(ip) in cidr
        seen_ips.add(ip)
        seen_cidrs.add(cidr)
        lease = api.get(f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}")
        assert lease["spec"]["holderIdentity"] == name
        # The node's log endpoint answers at its own address (the API server dials it).
        assert node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] > 0
    assert len(seen_ips) == 2
    a, b = seen_cidrs
    assert not a.overlaps(b)


def test_each_class_puts_its_volumes_on_its_node(cluster, namespace, two):
    api = cluster.api()
    node1, node2 = two
    claims = {"default": None, "one": cluster.node_class(node1), "two": cluster.node_class(node2)}
    assert claims["two"] == "local-cdi-node-2"
    for name, sc in claims.items():
        api.create(
            f"/api/v1/namespaces/{namespace}/persistentvolumeclaims", pvc(name, "16Mi", sc=sc)
        )
    assert _pv_node(_bound_pv(api, namespace, "default")) == node1
    assert _pv_node(_bound_pv(api, namespace, "one")) == node1
    assert _pv_node(_bound_pv(api, namespace, "two")) == node2
    # Late binding: the volume goes where the scheduler put its first consumer.
    api.create(
        f"/api/v1/namespaces/{namespace}/persistentvolumeclaims",
        pvc("late", "16Mi", mode="Block", sc="local-wffc"),
    )
    api.create(
        _pods(api, namespace),
        pod(
            "consumer",
            "test -b /dev/xvda",
            volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "late"}}],
            container={"volumeDevices": [{"name": "d", "devicePath": "/dev/xvda"}]},
            **on(node2),
        ),
    )
    pv = _bound_pv(api, namespace, "late")
    assert _pv_node(pv) == node2
    done = wait_for("consumer done", phase(api, namespace, "consumer", "Succeeded", "Failed"), 60)
    assert done["status"]["phase"] == "Succeeded", cluster.logs(namespace, "consumer")
    assert done["spec"]["nodeName"] == node2


def test_a_pod_mounting_a_node_2_volume_runs_on_node_2(cluster, namespace, two):
    api = cluster.api()
    node2 = two[1]
    api.create(
        f"/api/v1/namespaces/{namespace}/persistentvolumeclaims",
        pvc("data", "16Mi", sc=f"local-{node2}"),
    )
    api.create(
        f"/api/v1/namespaces/{namespace}/persistentvolumeclaims",
        pvc("raw", "8Mi", mode="Block", sc=f"local-{node2}"),
    )
    # No nodeSelector: the scheduler follows the volumes' node affinity.
    api.create(
        _pods(api, namespace),
        pod(
            "writer",
            "echo from-node-2 > /data/f && printf raw-bytes > /dev/xvdb && echo started "
            "&& sleep 3600",
            restart="Always",
            volumes=[
                {"name": "d", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "b", "persistentVolumeClaim": {"claimName": "raw"}},
            ],
            container={
                "volumeMounts": [{"name": "d", "mountPath": "/data"}],
                "volumeDevices": [{"name": "b", "devicePath": "/dev/xvdb"}],
            },
        ),
    )
    p = wait_for("writer running", phase(api, namespace, "writer", "Running"), 60)
    assert p["spec"]["nodeName"] == node2
    assert p["status"]["hostIP"] == cluster.node_ips[node2]
    node = api.get(f"/api/v1/nodes/{node2}")
    assert ipaddress.ip_address(p["status"]["podIP"]) in ipaddress.ip_network(
        node["spec"]["podCIDR"]
    )
    wait_for("written", lambda: "started" in cluster.logs(namespace, "writer"), 30)
    assert (cluster.pv_path(namespace, "data") / "f").read_text() == "from-node-2\n"
    with open(cluster.pv_path(namespace, "raw"), "rb") as f:
        assert f.read(9) == b"raw-bytes"
    # exec and logs (ours and kubectl's, through the API server to node 2) reach it.
    assert cluster.exec(namespace, "writer", "cat", "/data/f").stdout == "from-node-2\n"
    assert cluster.kubectl("logs", "-n", namespace, "writer").stdout == "started\n"
    assert cluster.logs(namespace, "writer") == "started\n"


def test_a_pod_bound_to_the_other_node_cannot_mount_the_volume(cluster, namespace, two):
    """The backing file is on this machine's disk, but the volume is node 2's: a pod
    placed on node 1 by hand (past the scheduler) waits for it, as a kubelet would."""
    api = cluster.api()
    node1, node2 = two
    api.create(
        f"/api/v1/namespaces/{namespace}/persistentvolumeclaims",
        pvc("far", "16Mi", sc=f"local-{node2}"),
    )
    _bound_pv(api, namespace, "far")
    api.create(
        _pods(api, namespace),
        pod(
            "misplaced",
            "ls /data",
            nodeName=node1,
            volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "far"}}],
            container={"volumeMounts": [{"name": "d", "mountPath": "/data"}]},
        ),
    )
    # Node 1's worker says why it waits (the agent's log), then the pod still waits.
    agent_log = cluster.root / "logs" / "node-agent.log"
    wait_for(
        "node 1 refusing the volume",
        lambda: (
            f"pod={namespace}/misplaced reason=volume" in agent_log.read_text()
            and "local to another node, not " + node1 in agent_log.read_text()
        ),
        30,
    )
    time.sleep(2)
    p = api.get(f"/api/v1/namespaces/{namespace}/pods/misplaced")
    assert p["status"]["phase"] == "Pending"
    waiting = p["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == "ContainerCreating"
    assert not cluster.logs(namespace, "misplaced")


def test_pods_on_two_nodes_talk_through_a_service_and_a_node_port(cluster, namespace, two):
    api = cluster.api()
    node1, node2 = two
    api.create(
        _pods(api, namespace),
        pod(
            "backend",
            SERVE,
            restart="Always",
            labels={"app": "backend"},
            container=POD_NAME_ENV
            | {"readinessProbe": {"tcpSocket": {"port": 8443}, "periodSeconds": 1}},
            **on(node2),
        ),
    )
    api.create(
        f"/api/v1/namespaces/{namespace}/services",
        {
            "metadata": {"name": "backend"},
            "spec": {
                "type": "NodePort",
                "selector": {"app": "backend"},
                "ports": [{"name": "http", "port": 80, "targetPort": 8443}],
            },
        },
    )
    backend = _ready(api, namespace, "backend")
    assert backend["spec"]["nodeName"] == node2
    pod_ip = backend["status"]["podIP"]
    fetch = "python3 -c \"import urllib.request as u; print(u.urlopen('{}').read().decode())\""
    script = f"{fetch.format('http://backend/')} && {fetch.format(f'http://{pod_ip}:8443/')}"
    api.create(
        _pods(api, namespace),
        pod(
            "client",
            f"for i in $(seq 60); do ({script}) && exit 0; sleep 1; done; exit 1",
            **on(node1),
        ),
    )
    p = wait_for("client done", phase(api, namespace, "client", "Succeeded", "Failed"), 90)
    assert p["spec"]["nodeName"] == node1
    assert p["status"]["phase"] == "Succeeded", cluster.logs(namespace, "client")
    assert cluster.logs(namespace, "client").split()[-2:] == ["backend", "backend"]
    # An outside client reaches the NodePort at either node's InternalIP.
    svc = api.get(f"/api/v1/namespaces/{namespace}/services/backend")
    port = svc["spec"]["ports"][0]["nodePort"]
    for name in two:

        def answers(name=name):
            url = f"http://{cluster.node_ips[name]}:{port}/"
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.read() == b"backend"

        wait_for(f"NodePort on {name}", answers, 30)
