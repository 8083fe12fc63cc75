"""deploy/ names every image through one setting: kustomization.yaml's `images:`, which
rewrites the Deployments' `image:` and the controller's IMPORTER_IMAGE,
UPLOADSERVER_IMAGE and CLONER_IMAGE (images-config.yaml), at the package's version."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest
import yaml

from cdicontract import images
from tests.controller.test_deploy_manifests import ROOT, render

ENV_IMAGES = {"IMPORTER_IMAGE": "importer", "UPLOADSERVER_IMAGE": "uploadserver",
              "CLONER_IMAGE": "cloner"}
DEPLOYMENTS = {"cdi-deployment": "controller", "cdi-apiserver": "apiserver",
               "cdi-uploadproxy": "uploadproxy"}


def pyproject_version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def containers(docs: list[dict]) -> list[tuple[str, dict]]:
    """(owner name, container) for every container of every pod template or pod."""
    out = []
    for d in docs:
        spec = d.get("spec") or {}
        pod = spec.get("template", {}).get("spec") if "template" in spec else (
            spec if d["kind"] == "Pod" else None)
        for c in [*(pod or {}).get("initContainers", []), *(pod or {}).get("containers", [])]:
            out.append((d["metadata"]["name"], c))
    return out


def image_settings(docs: list[dict]) -> list[str]:
    """Every place an image is named: container images and the controller's image env."""
    found = [c["image"] for _, c in containers(docs)]
    for _, c in containers(docs):
        found += [e["value"] for e in c.get("env", []) if e["name"] in ENV_IMAGES]
    return found


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    return render(ROOT / "deploy")


def test_the_default_names_the_six_release_images_at_the_package_version(rendered):
    version = pyproject_version()
    expected = sorted(f"quay.io/cdi-py/{c}:{version}" for c in images.COMPONENTS)
    assert sorted(image_settings(rendered)) == expected


def test_kustomization_pins_each_component_once_at_the_package_version():
    k = yaml.safe_load((ROOT / "deploy/kustomization.yaml").read_text())
    entries = {e["name"]: e for e in k["images"]}
    assert sorted(entries) == sorted(f"{images.REGISTRY}/{c}" for c in images.COMPONENTS)
    assert {e["newTag"] for e in entries.values()} == {pyproject_version()}
    assert "images-config.yaml" in k["configurations"]


def test_each_deployment_runs_its_entry_point_from_its_component_image(rendered):
    version = pyproject_version()
    for name, component in DEPLOYMENTS.items():
        (c,) = [c for owner, c in containers(rendered) if owner == name]
        assert c["image"] == f"quay.io/cdi-py/{component}:{version}"
        assert c["command"] == [f"/opt/cdi-py/bin/cdi-{component}"]


def test_each_deployment_runs_as_107_with_a_read_only_root_and_tmp(rendered):
    for d in rendered:
        if d["kind"] != "Deployment":
            continue
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 107
        (c,) = pod["containers"]
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        tmp = next(m for m in c["volumeMounts"] if m["mountPath"] == "/tmp")
        volume = next(v for v in pod["volumes"] if v["name"] == tmp["name"])
        assert "emptyDir" in volume, d["metadata"]["name"]


def _overlay(tmp_path: Path, entries: list[dict]) -> Path:
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        # kustomize takes a base only by a relative path.
        "resources": [os.path.relpath(ROOT / "deploy", tmp_path)], "images": entries}))
    return tmp_path


def test_an_overlay_moves_every_image_env_included(tmp_path):
    # What `kustomize edit set image quay.io/cdi-py/<c>=registry.example/me/<c>:dev` writes.
    entries = [{"name": f"quay.io/cdi-py/{c}", "newName": f"registry.example/me/{c}",
                "newTag": "dev"} for c in images.COMPONENTS]
    docs = render(_overlay(tmp_path, entries))
    assert sorted(image_settings(docs)) == sorted(
        f"registry.example/me/{c}:dev" for c in images.COMPONENTS)
    assert "quay.io/cdi-py" not in yaml.safe_dump_all(docs)


def test_one_entry_moves_only_its_component_in_manifest_and_env(tmp_path):
    digest = "sha256:" + "ab" * 32
    docs = render(_overlay(tmp_path, [{"name": "quay.io/cdi-py/importer",
                                      "newName": "mirror.local:5000/cdi/importer",
                                      "digest": digest}]))
    (controller,) = [c for owner, c in containers(docs) if owner == "cdi-deployment"]
    env = {e["name"]: e.get("value") for e in controller["env"]}
    version = pyproject_version()
    assert env["IMPORTER_IMAGE"] == f"mirror.local:5000/cdi/importer@{digest}"
    assert env["UPLOADSERVER_IMAGE"] == f"quay.io/cdi-py/uploadserver:{version}"
    assert env["CLONER_IMAGE"] == f"quay.io/cdi-py/cloner:{version}"
    assert env["PULL_POLICY"] == "IfNotPresent"
    assert controller["image"] == f"quay.io/cdi-py/controller:{version}"


def test_the_controllers_env_defaults_match_what_it_would_choose_alone(rendered):
    # The Deployment's env and the controller's own defaults (cdicontract.images) agree,
    # so a controller run without that env creates the same pods.
    (controller,) = [c for owner, c in containers(rendered) if owner == "cdi-deployment"]
    env = {e["name"]: e.get("value") for e in controller["env"]}
    assert {n: env[n] for n in ENV_IMAGES} == {
        n: images.default_image(c) for n, c in ENV_IMAGES.items()}
