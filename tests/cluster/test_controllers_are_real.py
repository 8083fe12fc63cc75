"""The controller manager's loops run for real: namespaces, garbage collection, RBAC."""

from __future__ import annotations

import uuid

import pytest

from tests.cluster.helpers import wait_for

pytestmark = pytest.mark.cluster


def test_namespace_deletion_completes(cluster):
    api = cluster.api()
    name = f"gone-{uuid.uuid4().hex[:8]}"
    api.create("/api/v1/namespaces", {"metadata": {"name": name}})
    api.create(f"/api/v1/namespaces/{name}/configmaps", {"metadata": {"name": "x"}})
    api.delete(f"/api/v1/namespaces/{name}")
    wait_for("namespace deleted", lambda: api.get_or_none(f"/api/v1/namespaces/{name}") is None, 60)


def test_deleting_an_owner_collects_its_dependents(cluster, namespace):
    api = cluster.api()
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    owner = api.create(base, {"metadata": {"name": "owner"}})
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
    }
    api.create(base, {"metadata": {"name": "dependent", "ownerReferences": [ref]}})
    api.delete(f"{base}/owner")
    wait_for("dependent collected", lambda: api.get_or_none(f"{base}/dependent") is None, 60)


def test_rbac_denies_what_a_service_account_was_not_granted(cluster, namespace):
    sa = f"system:serviceaccount:{namespace}:default"
    denied = cluster.kubectl(
        "auth", "can-i", "list", "secrets", "-n", namespace, f"--as={sa}", check=False
    )
    assert denied.stdout.strip() == "no"
    cluster.kubectl(
        "create", "role", "cm-reader", "--verb=get,list", "--resource=configmaps", "-n", namespace
    )
    cluster.kubectl(
        "create",
        "rolebinding",
        "cm-reader",
        "--role=cm-reader",
        f"--serviceaccount={namespace}:default",
        "-n",
        namespace,
    )
    allowed = cluster.kubectl(
        "auth", "can-i", "list", "configmaps", "-n", namespace, f"--as={sa}", check=False
    )
    assert allowed.stdout.strip() == "yes"


def test_deployment_creates_replicaset_and_pods(cluster, namespace):
    api = cluster.api()
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "c", "image": "cdi-py/testutil", "command": ["sleep", "3600"]}
                    ],
                    "terminationGracePeriodSeconds": 1,
                },
            },
        },
    }
    api.create(f"/apis/apps/v1/namespaces/{namespace}/deployments", deploy)

    def available():
        d = api.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/web")
        return d.get("status", {}).get("availableReplicas") == 2

    wait_for("deployment available", available, 90)
