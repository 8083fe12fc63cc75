"""The real virtctl (v1.7.0) and cdictl, side by side on the real API server: the same
objects created, the same conversation on stdout, the same refusals and exit codes.

Only what happens before the token API is needed is compared here; virtctl's complete
upload through our stack is tested at integration (tests/controller/e2e).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
DVS = "/apis/cdi.kubevirt.io/v1beta1/namespaces/{ns}/datavolumes"
PVCS = "/api/v1/namespaces/{ns}/persistentvolumeclaims"




def both(cluster: Any, virtctl: Path, *args: str) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run the same image-upload command line with each client; `{name}` becomes the
    client's name, so each makes its own objects."""
    runs = {}
    for client, argv in (("virtctl", [str(virtctl), "image-upload"]),
                         ("cdictl", [sys.executable, "-m", "cdictl.cli", "upload"])):
        runs[client] = subprocess.run(
            [*argv, *(a.replace("{name}", client) for a in args),
             "--kubeconfig", str(cluster.kubeconfig)],
            capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)
    return runs


def lines(text: str, name: str) -> list[str]:
    return [line.replace(name, "{name}") for line in text.splitlines()]


def last_error(run: subprocess.CompletedProcess[str]) -> str:
    return run.stderr.strip().splitlines()[-1]


def test_both_create_the_same_datavolume(crds: Any, virtctl: Path, namespace: str,
                                         small_image: Path) -> None:
    runs = both(crds, virtctl, "dv", "{name}", "-n", namespace, "--size", "64Mi",
                "--image-path", str(small_image), "--storage-class", "local", "--access-mode",
                "ReadWriteOnce", "--volume-mode", "filesystem", "--force-bind",
                "--wait-secs", "0")
    for client, run in runs.items():
        assert run.returncode == 1, f"{client}: {run.stdout}{run.stderr}"
    assert lines(runs["virtctl"].stdout, "virtctl") == lines(runs["cdictl"].stdout, "cdictl")
    api = crds.api()
    made = {c: api.get(f"{DVS.format(ns=namespace)}/{c}") for c in runs}
    assert made["virtctl"]["spec"] == made["cdictl"]["spec"]
    assert made["virtctl"]["metadata"].get("annotations") == made["cdictl"]["metadata"].get(
        "annotations")
    assert made["virtctl"]["metadata"].get("labels") == made["cdictl"]["metadata"].get("labels")


def test_both_create_the_same_upload_pvc(crds: Any, virtctl: Path, namespace: str,
                                         small_image: Path) -> None:
    runs = both(crds, virtctl, "pvc", "{name}", "-n", namespace, "--size", "32Mi",
                "--image-path", str(small_image), "--volume-mode", "block", "--wait-secs", "0")
    for client, run in runs.items():
        assert run.returncode == 1, f"{client}: {run.stdout}{run.stderr}"
    assert lines(runs["virtctl"].stdout, "virtctl") == lines(runs["cdictl"].stdout, "cdictl")
    api = crds.api()
    made = {c: api.get(f"{PVCS.format(ns=namespace)}/{c}") for c in runs}
    mine = {k: v for k, v in made["cdictl"]["metadata"]["annotations"].items()
            if k.startswith("cdi.kubevirt.io/")}
    theirs = {k: v for k, v in made["virtctl"]["metadata"]["annotations"].items()
              if k.startswith("cdi.kubevirt.io/")}
    assert mine == theirs
    assert made["virtctl"]["metadata"]["labels"] == made["cdictl"]["metadata"]["labels"]
    for key in ("accessModes", "resources", "volumeMode", "storageClassName"):
        assert made["virtctl"]["spec"].get(key) == made["cdictl"]["spec"].get(key), key


@pytest.mark.parametrize("args", [
    pytest.param(["pvc", "plain", "--image-path", "{image}"], id="not-an-upload-target"),
    pytest.param(["dv", "plain", "--image-path", "{image}"], id="no-datavolume"),
    pytest.param(["pvc", "absent", "--no-create", "--image-path", "{image}"], id="no-create"),
    pytest.param(["pvc", "new", "--image-path", "{image}"], id="no-size"),
    pytest.param(["dv", "new", "--size", "1Gi", "--image-path", "{image}",
                  "--access-mode", "ReadOnlyMany"], id="read-only"),
    pytest.param(["dv", "new", "--size", "ten", "--image-path", "{image}"], id="bad-size"),
    pytest.param(["dv", "new", "--size", "1Gi", "--image-path", "{image}",
                  "--storage-class", "nope"], id="no-such-class"),
    pytest.param(["dv", "new", "--image-path", "{image}", "--volume-mode", "raw"],
                 id="bad-volume-mode"),
    pytest.param(["dv", "new", "--image-path", "{image}", "--archive-path", "{image}"],
                 id="image-and-archive"),
    pytest.param(["vm", "new", "--image-path", "{image}"], id="bad-kind"),
    pytest.param(["dv", "--image-path", "{image}"], id="one-arg"),
])
def test_both_refuse_alike(crds: Any, virtctl: Path, namespace: str, small_image: Path,
                           args: list[str]) -> None:
    crds.api().create(PVCS.format(ns=namespace), {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "plain"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}}})
    runs = both(crds, virtctl, *(a.replace("{image}", str(small_image)) for a in args),
                "-n", namespace)
    for client, run in runs.items():
        assert run.returncode == 1, f"{client}: {run.stdout}{run.stderr}"
    assert last_error(runs["cdictl"]) == last_error(runs["virtctl"])
    assert runs["cdictl"].stdout == runs["virtctl"].stdout
    assert crds.api().get_or_none(f"{DVS.format(ns=namespace)}/new") is None
    assert crds.api().get_or_none(f"{PVCS.format(ns=namespace)}/new") is None
