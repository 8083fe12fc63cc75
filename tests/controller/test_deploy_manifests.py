"""The deploy/ tree is consistent: generated CRDs are current and kustomize renders it."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_generated_crds_are_current():
    r = subprocess.run([sys.executable, str(ROOT / "deploy/crds/generate.py"), "--check"],
                       check=False, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_kustomization_renders_every_object_with_a_namespace_where_needed():
    try:
        out = subprocess.run(["kubectl", "kustomize", str(ROOT / "deploy")], check=True,
                             capture_output=True, text=True).stdout
    except FileNotFoundError:
        pytest.skip("kubectl not installed")
    docs = [d for d in yaml.safe_load_all(out) if d]
    kinds = sorted({d["kind"] for d in docs})
    assert {"CustomResourceDefinition", "Deployment", "ValidatingWebhookConfiguration",
            "ClusterRole", "ServiceAccount", "Namespace"} <= set(kinds)
    namespaced = {"Deployment", "Service", "ServiceAccount", "Role", "RoleBinding"}
    for d in docs:
        if d["kind"] in namespaced:
            # The one exception: reading the kube-apiserver's front-proxy settings is
            # granted in kube-system, where that ConfigMap and its reader Role live.
            reader = d.get("roleRef", {}).get("name") == "extension-apiserver-authentication-reader"
            wanted = "kube-system" if reader else "cdi"
            assert d["metadata"].get("namespace") == wanted, d["metadata"]["name"]


def test_every_schema_field_is_described():
    def walk(schema, path):
        if "description" not in schema and path.count(".") > 1:
            yield path
        for name, sub in (schema.get("properties") or {}).items():
            if name != "metadata":
                yield from walk(sub, f"{path}.{name}")
        if "items" in schema:
            yield from walk(schema["items"], path + "[]")

    for crd in (ROOT / "deploy/crds").glob("*.yaml"):
        doc = yaml.safe_load(crd.read_text())
        schema = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        missing = list(walk(schema, doc["spec"]["names"]["kind"]))
        assert missing == [], (crd.name, missing[:5])
