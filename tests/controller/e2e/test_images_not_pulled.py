"""The controller pointed at an importer or cloner image that is in no registry, the way
an installer moves it (one kustomize `images:` entry in an overlay of deploy/, which
rewrites the controller's IMPORTER_IMAGE / CLONER_IMAGE): the pod gets ErrImagePull then
ImagePullBackOff from the node, and the DataVolume says so as CDI does (Running False,
reason ImagePullFailed, "failed to pull image: <image>: ...", one Warning event), does not
fail (the image may yet appear), and leaves nothing half-written behind."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.helpers import wait_for
from tests.controller.e2e import clonestack
from tests.controller.e2e.conftest import ROOT, MiB, deployment_available, dv_manifest

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

MISSING = "quay.io/cdi-py/importer:does-not-exist"
MISSING_CLONER = "quay.io/cdi-py/cloner:does-not-exist"
DEPLOYMENT = "/apis/apps/v1/namespaces/cdi/deployments/cdi-deployment"
LEASE = "/apis/coordination.k8s.io/v1/namespaces/cdi/leases/cdi-controller-leader"


def _image_env(deployment: dict[str, Any], name: str) -> str:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return next(e["value"] for e in container["env"] if e["name"] == name)


def _leader_runs_with(cdi: Any, env: str, image: str) -> bool:
    """The Lease is held by a live controller pod whose `env` is `image` (the old one
    has stopped reconciling, so no pod is made with the previous image)."""
    holder = (cdi.api.get_or_none(LEASE) or {}).get("spec", {}).get("holderIdentity")
    pods = cdi.api.get("/api/v1/namespaces/cdi/pods",
                       labelSelector="cdi.kubevirt.io=cdi-deployment")["items"]
    return any(p["metadata"]["name"] == holder and "deletionTimestamp" not in p["metadata"]
               and _image_env({"spec": {"template": p}}, env) == image for p in pods)


def _install(cdi: Any, kustomization: Path, env: str, image: str) -> None:
    cdi.kubectl("apply", "-k", str(kustomization))
    assert _image_env(cdi.api.get(DEPLOYMENT), env) == image
    cdi.kubectl("-n", "cdi", "rollout", "status", "deployment/cdi-deployment",
                "--timeout=120s")
    wait_for("cdi-deployment Available", lambda: deployment_available(cdi.api), timeout=60)
    wait_for(f"a controller leader with {env}={image}",
             lambda: _leader_runs_with(cdi, env, image), timeout=60)


@contextlib.contextmanager
def _controller_with(cdi: Any, tmp_path: Path, component: str, image: str) -> Iterator[str]:
    """deploy/ with one `images:` entry moving `component` to `image`, applied; deploy/
    itself re-applied afterwards, whatever happened."""
    env = f"{component.upper()}_IMAGE"
    original = _image_env(cdi.api.get(DEPLOYMENT), env)
    name, _, tag = image.rpartition(":")
    # What `kustomize edit set image quay.io/cdi-py/<component>=<image>` writes.
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(ROOT / "deploy", tmp_path)],
        "images": [{"name": f"quay.io/cdi-py/{component}", "newName": name,
                    "newTag": tag}]}))
    try:
        _install(cdi, tmp_path, env, image)
        yield image
    finally:
        _install(cdi, ROOT / "deploy", env, original)


@pytest.fixture
def missing_importer_image(cdi: Any, tmp_path: Path) -> Iterator[str]:
    with _controller_with(cdi, tmp_path, "importer", MISSING) as image:
        yield image


@pytest.fixture
def missing_cloner_image(cdi: Any, tmp_path: Path) -> Iterator[str]:
    with _controller_with(cdi, tmp_path, "cloner", MISSING_CLONER) as image:
        yield image


def _running(dv: dict[str, Any] | None) -> dict[str, Any] | None:
    conds = {c["type"]: c for c in (dv or {}).get("status", {}).get("conditions", [])}
    running = conds.get("Running")
    return running if running and running.get("reason") == "ImagePullFailed" else None


def test_a_missing_importer_image_is_reported_on_the_datavolume(
        cdi, cluster, namespace, images, missing_importer_image):
    src = {"http": {"url": images.url("disk.qcow2")}}
    cdi.create_dv(namespace, dv_manifest("nopull", src, size="32Mi"))
    pods = f"/api/v1/namespaces/{namespace}/pods"

    pod = wait_for("importer pod waiting on its image", lambda: next(
        (p for p in [cdi.api.get_or_none(f"{pods}/importer-nopull")] if p and (
            (p["status"].get("containerStatuses") or [{}])[0].get("state", {})
            .get("waiting", {}).get("reason") in ("ErrImagePull", "ImagePullBackOff"))),
        None), timeout=90)
    assert pod["spec"]["containers"][0]["image"] == missing_importer_image

    running = wait_for("Running condition ImagePullFailed",
                       lambda: _running(cdi.dv(namespace, "nopull")), timeout=60)
    assert running["status"] == "False"
    assert running["message"].startswith(f"failed to pull image: {missing_importer_image}: ")
    assert "ErrImagePull" in running["message"] or "ImagePullBackOff" in running["message"]
    warnings = wait_for("ImagePullFailed event", lambda: [
        e for e in cdi.events(namespace, "nopull")
        if e["reason"] == "ImagePullFailed" and e["type"] == "Warning"], timeout=30)
    assert warnings[0]["message"] == running["message"]

    # Waiting, not failed: the image may yet appear, as a kubelet keeps pulling.
    dv = cdi.dv(namespace, "nopull")
    assert dv["status"]["phase"] == "ImportScheduled"
    pvc = cdi.api.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/nopull")
    assert pvc["metadata"]["annotations"].get("cdi.kubevirt.io/storage.pod.phase") == "Pending"
    volume = cluster.pv_path(namespace, "nopull")
    assert [p.name for p in volume.iterdir() if p.name != "lost+found"] == []

    # Deleting the DataVolume takes its claim and the waiting pod with it.
    cdi.api.delete(f"/apis/cdi.kubevirt.io/v1beta1/namespaces/{namespace}/datavolumes/nopull")
    wait_for("claim and importer pod gone", lambda: (
        cdi.api.get_or_none(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/nopull")
        is None and cdi.api.get_or_none(f"{pods}/importer-nopull") is None), timeout=60)


def test_a_missing_cloner_image_is_reported_on_the_clone_datavolume(
        cdi, cluster, namespace, missing_cloner_image):
    src = clonestack.make_source(cluster, namespace, "golden", data_len=MiB)
    cdi.create_dv(namespace, clonestack.clone_dv("copy", clonestack.pvc_source(src)))
    running = wait_for("Running condition ImagePullFailed",
                       lambda: _running(cdi.dv(namespace, "copy")), timeout=120)
    assert running["status"] == "False"
    assert running["message"].startswith(f"failed to pull image: {missing_cloner_image}: ")
    wait_for("ImagePullFailed event", lambda: [
        e for e in cdi.events(namespace, "copy")
        if e["reason"] == "ImagePullFailed" and e["type"] == "Warning"], timeout=30)
    dv = cdi.dv(namespace, "copy")
    assert dv["status"]["phase"] not in ("Failed", "Succeeded"), dv["status"]
    source_pods = [p for p in cdi.api.get(f"/api/v1/namespaces/{namespace}/pods")["items"]
                   if p["spec"]["containers"][0]["image"] == missing_cloner_image]
    assert len(source_pods) == 1
    # The target holds nothing yet: no byte came from a source pod that never ran.
    target = clonestack.target_path(cluster, namespace, "copy")
    assert not target.exists() or target.stat().st_blocks == 0
