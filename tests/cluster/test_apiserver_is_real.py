"""The API server is upstream's: version, OpenAPI v3, server-side apply, watch bookmarks."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.cluster


def test_version_is_the_pinned_release(cluster):
    version = cluster.api().get("/version")
    assert version["gitVersion"] == "v1.37.2"
    assert version["major"] == "1" and version["minor"] == "37"
    out = cluster.kubectl("version", "-o", "json").stdout
    assert json.loads(out)["clientVersion"]["gitVersion"] == "v1.37.2"


def test_openapi_v3_is_served(cluster):
    index = cluster.api().get("/openapi/v3")
    assert "api/v1" in index["paths"]
    assert "apis/apps/v1" in index["paths"]


def test_server_side_apply_records_the_field_manager(cluster, namespace):
    manifest = json.dumps(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "applied", "namespace": namespace},
            "data": {"k": "v"},
        }
    )
    cluster.kubectl("apply", "--server-side", "--field-manager=cdi-test", "-f", "-", input=manifest)
    cm = cluster.api().get(f"/api/v1/namespaces/{namespace}/configmaps/applied")
    managers = {(m["manager"], m["operation"]) for m in cm["metadata"]["managedFields"]}
    assert ("cdi-test", "Apply") in managers


def test_watch_sends_bookmarks(cluster, namespace):
    api = cluster.api()
    api.create(
        f"/api/v1/namespaces/{namespace}/configmaps", {"metadata": {"name": "seen"}, "data": {}}
    )
    events = api.watch(
        f"/api/v1/namespaces/{namespace}/configmaps",
        "",
        sendInitialEvents="true",
        resourceVersionMatch="NotOlderThan",
    )
    kinds = []
    for event in events:
        kinds.append(event["type"])
        if event["type"] == "BOOKMARK":
            annotations = event["object"]["metadata"].get("annotations", {})
            assert annotations.get("k8s.io/initial-events-end") == "true"
            break
    assert kinds[0] == "ADDED" and kinds[-1] == "BOOKMARK"
