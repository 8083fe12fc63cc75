"""The Node object: registration, Ready status and lease heartbeats.

Why: the scheduler only places pods on a registered, Ready node without the
not-ready taint, and the node lifecycle controller taints and evicts a node whose
Lease in ``kube-node-lease`` stops being renewed.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time

from localcluster.api import Api, ApiError, Obj
from localcluster.podstatus import now

log = logging.getLogger(__name__)

CAPACITY = {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"}
LEASE_SECONDS = 40


def _micro_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# The conditions never change while the agent lives: they last changed when it started.
_SINCE = now()


def _conditions() -> list[Obj]:
    t = now()
    base = [
        ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID"),
        ("Ready", "True", "KubeletReady"),
    ]
    return [
        {
            "type": k,
            "status": s,
            "reason": r,
            "message": r,
            "lastHeartbeatTime": t,
            "lastTransitionTime": _SINCE,
        }
        for k, s, r in base
    ]


def status(name: str, address: str, port: int) -> Obj:
    return {
        "capacity": CAPACITY,
        "allocatable": CAPACITY,
        "conditions": _conditions(),
        "addresses": [
            {"type": "InternalIP", "address": address},
            {"type": "Hostname", "address": name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "nodeInfo": {
            "architecture": "amd64",
            "operatingSystem": "linux",
            "osImage": "cdi-py simulated node",
            "kernelVersion": "",
            "kubeletVersion": "v1.37.2",
            "kubeProxyVersion": "",
            "containerRuntimeVersion": "cdipy://1",
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
        },
    }


def register(api: Api, name: str, address: str, port: int, pod_cidr: str) -> None:
    """Create (or adopt) Node ``name``, publish its status and take its lease."""
    body = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node-role.kubernetes.io/worker": "",
            },
        },
        # Where this node's pods get their addresses (set once: the field is immutable).
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
    }
    try:
        api.create("/api/v1/nodes", body)
    except ApiError as e:
        if e.status != 409:
            raise
    api.merge_patch(f"/api/v1/nodes/{name}/status", {"status": status(name, address, port)})
    _renew_lease(api, name)


def _renew_lease(api: Api, name: str) -> None:
    path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"
    spec = {
        "holderIdentity": name,
        "leaseDurationSeconds": LEASE_SECONDS,
        "renewTime": _micro_now(),
    }
    try:
        api.merge_patch(path, {"spec": spec})
    except ApiError as e:
        if e.status != 404:
            raise
        api.create(
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": name},
                "spec": spec,
            },
        )


def heartbeat(api: Api, name: str, stop: threading.Event, period: float = 10.0) -> None:
    """Renew node ``name``'s lease every period and refresh its Ready condition."""
    while not stop.wait(period):
        try:
            _renew_lease(api, name)
            api.merge_patch(
                f"/api/v1/nodes/{name}/status", {"status": {"conditions": _conditions()}}
            )
        except Exception as e:
            log.warning("heartbeat failed node=%s error=%s", name, e)
            time.sleep(1)
