"""The deploy/ tree is consistent: generated CRDs are current and kustomize renders it."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def kubectl() -> str:
    """The control plane's own kubectl (hack/build-control-plane) when built, else any."""
    from localcluster.controlplane import Binaries

    built = Binaries.locate().kubectl
    found = str(built) if built.exists() else shutil.which("kubectl")
    if found is None:
        pytest.skip("kubectl not installed")
    return found


def render(directory: Path) -> list[dict]:
    out = subprocess.run([kubectl(), "kustomize", str(directory)], check=True,
                         capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_generated_crds_are_current():
    r = subprocess.run([sys.executable, str(ROOT / "deploy/crds/generate.py"), "--check"],
                       check=False, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_kustomization_renders_every_object_with_a_namespace_where_needed():
    docs = render(ROOT / "deploy")
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


def _docs(name):
    return [d for d in yaml.safe_load_all((ROOT / "deploy" / name).read_text()) if d]


def _one(name, kind, metadata_name):
    return next(d for d in _docs(name)
                if d["kind"] == kind and d["metadata"]["name"] == metadata_name)


def test_the_shipped_cloner_role_grants_only_cloning_and_is_installed():
    role = _one("rbac-clone.yaml", "ClusterRole", "cdi-cloner")
    assert role["rules"] == [{"apiGroups": ["cdi.kubevirt.io"],
                              "resources": ["datavolumes/source"], "verbs": ["create"]}]
    kustomization = yaml.safe_load((ROOT / "deploy/kustomization.yaml").read_text())
    assert "rbac-clone.yaml" in kustomization["resources"]
    assert "cdi-cloner" in (ROOT / "README.md").read_text()


def test_the_clone_webhooks_are_narrow_and_fail_as_intended():
    from controller import clonemutate, webhook

    configs = {d["metadata"]["name"]: d for d in _docs("webhook.yaml")
               if d["kind"] == "MutatingWebhookConfiguration"}
    assert {name: [w["name"] for w in c["webhooks"]] for name, c in configs.items()} == {
        name: [hook] for name, hook in webhook.MUTATING_CONFIGS.items()}
    dv = configs["cdi-api-datavolume-mutate"]["webhooks"][0]
    pvc = configs["cdi-api-pvc-mutate"]["webhooks"][0]
    assert (dv["failurePolicy"], pvc["failurePolicy"]) == ("Fail", "Ignore")
    assert dv["clientConfig"]["service"]["path"] == clonemutate.DV_PATH
    assert pvc["clientConfig"]["service"]["path"] == clonemutate.PVC_PATH
    for hook, resource, group in ((dv, "datavolumes", "cdi.kubevirt.io"),
                                  (pvc, "persistentvolumeclaims", "")):
        assert hook["sideEffects"] == "None"
        assert hook["timeoutSeconds"] <= 10
        assert hook["rules"] == [{"apiGroups": [group], "apiVersions": [hook["rules"][0][
            "apiVersions"][0]], "operations": ["CREATE"], "resources": [resource],
            "scope": "Namespaced"}]
        assert hook["matchConditions"]
    assert "k8s.io/CloneRequest" in pvc["matchConditions"][0]["expression"]


def test_the_controller_may_review_access_and_inject_every_webhooks_ca():
    from controller import webhook

    rules = _one("rbac-controller.yaml", "ClusterRole", "cdi-controller")["rules"]
    assert {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"],
            "verbs": ["create"]} in rules
    mutating = next(r for r in rules if r["resources"] == ["mutatingwebhookconfigurations"])
    assert sorted(mutating["resourceNames"]) == sorted(webhook.MUTATING_CONFIGS)
    assert mutating["verbs"] == ["get", "patch"]
