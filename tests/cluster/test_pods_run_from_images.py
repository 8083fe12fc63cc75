"""The node pulls a pod's image from a registry and runs the container from it: the
image's root, entry point, env, user and workdir; pull policies, digests, pull secrets,
pull failures as a kubelet reports them; one unpack per digest."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from localcluster import imagestore, registry

from tests.cluster import nodeimages
from tests.cluster.helpers import phase, wait_for

pytestmark = pytest.mark.cluster

SCRIPT = (
    "echo cmd $GREETING; id -u; id -g; pwd; cat /etc/cdi-py-node-test; echo; "
    "test -e /usr/bin/bwrap && echo host-usr-visible; "
    "test -e /work/wt-node && echo host-checkout-visible; true"
)


class Images:
    def __init__(self, mirror: str) -> None:
        self.mirror = mirror
        self.token = uuid.uuid4().hex[:12]
        self.built: list[str] = []

    def build(self, name: str, marker: str, cmd: str) -> str:
        self.built.append(nodeimages.build(name, marker, cmd=cmd))
        return name

    def tag(self, tag: str) -> str:
        """A tag of this session: a reused cluster's node still has earlier sessions'
        (and IfNotPresent rightly keeps using them)."""
        return f"{tag}-{self.token}"

    def ref(self, tag: str) -> str:
        return f"nodetest/app:{self.tag(tag)}"

    def variant(self, tag: str, marker: str, cmd: str = SCRIPT) -> str:
        """Builds and pushes ``docker.io/nodetest/app:<tag>-<token>`` (through the mirror)."""
        local = self.build(f"localhost/nodetest/app:{self.tag(tag)}", marker, cmd)
        return nodeimages.push(local, f"{self.mirror}/docker.io/{self.ref(tag)}")


@pytest.fixture(scope="module")
def images(cluster) -> Iterator[Images]:
    mirror = registry.address(cluster.root)
    assert mirror, "the cluster runs no registry"
    imgs = Images(mirror)
    imgs.digest = imgs.variant("v1", f"only-in-the-image-{imgs.token}")  # type: ignore[attr-defined]
    yield imgs
    nodeimages.remove(imgs.built)


def _pod(name: str, image: str, **container: Any) -> dict[str, Any]:
    spec = container.pop("pod_spec", {})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": image, **container}],
            **spec,
        },
    }


def _run(cluster, ns: str, manifest: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    api = cluster.api()
    api.create(f"/api/v1/namespaces/{ns}/pods", manifest)
    name = manifest["metadata"]["name"]
    p = wait_for(f"{name} done", phase(api, ns, name, "Succeeded", "Failed"), 120)
    return p, cluster.logs(ns, name).split()


def _waiting(cluster, ns: str, name: str, reason: str) -> dict[str, Any]:
    api = cluster.api()

    def check() -> dict[str, Any] | None:
        p = api.get(f"/api/v1/namespaces/{ns}/pods/{name}")
        for s in p.get("status", {}).get("containerStatuses", []):
            w = s["state"].get("waiting") or {}
            if w.get("reason") == reason:
                return w
        return None

    return wait_for(f"{name} waiting with {reason}", check, 60, 0.1)


def test_a_pod_runs_its_images_entry_point_as_its_user_from_its_root(cluster, namespace, images):
    p, out = _run(cluster, namespace, _pod("plain", images.ref("v1")))
    assert p["status"]["phase"] == "Succeeded", out
    # Entrypoint + Cmd, the image's Env, User nobody, WorkingDir, a file only it has,
    # and nothing of the host's /usr or of this checkout.
    assert out == ["cmd", "from-image", "65534", "65534", "/srv/work",
                   f"only-in-the-image-{images.token}"]  # fmt: skip
    status = p["status"]["containerStatuses"][0]
    assert status["image"] == f"docker.io/{images.ref('v1')}"
    assert status["imageID"] == f"docker.io/nodetest/app@{images.digest}"


def test_args_replace_cmd_and_command_replaces_both(cluster, namespace, images):
    _, out = _run(cluster, namespace, _pod("args", images.ref("v1"), args=["echo args $GREETING"]))
    assert out == ["args", "from-image"]
    _, out = _run(
        cluster,
        namespace,
        _pod("command", images.ref("v1"), command=["echo"], args=["$(WHO)", "b"],
             env=[{"name": "WHO", "value": "pod-env"}]),
    )  # fmt: skip
    assert out == ["pod-env", "b"]


def test_run_as_user_group_and_working_dir_override_the_image(cluster, namespace, images):
    manifest = _pod(
        "who",
        images.ref("v1"),
        args=["id -u; id -g; pwd"],
        workingDir="/var/tmp",
        securityContext={"runAsUser": 107, "runAsGroup": 108},
    )
    _, out = _run(cluster, namespace, manifest)
    assert out == ["107", "108", "/var/tmp"]


def test_a_read_only_root_refuses_writes_outside_its_volumes(cluster, namespace, images):
    probe = (
        "touch /etc/written 2>/dev/null && echo root-rw || echo root-ro; "
        "touch /tmp/written 2>/dev/null && echo tmp-rw || echo tmp-ro; "
        "touch /scratch/written && echo volume-rw"
    )
    mounts = {"volumeMounts": [{"name": "s", "mountPath": "/scratch"}]}
    volumes = {"volumes": [{"name": "s", "emptyDir": {}}]}
    root = {"runAsUser": 0}
    _, out = _run(
        cluster,
        namespace,
        _pod("ro", images.ref("v1"), args=[probe], pod_spec=volumes, **mounts,
             securityContext={**root, "readOnlyRootFilesystem": True}),
    )  # fmt: skip
    assert out == ["root-ro", "tmp-ro", "volume-rw"]
    _, out = _run(
        cluster,
        namespace,
        _pod("rw", images.ref("v1"), args=[probe], pod_spec=volumes, **mounts,
             securityContext=root),
    )  # fmt: skip
    assert out == ["root-rw", "tmp-rw", "volume-rw"]
    # The container wrote into its own layer, never into the node's copy of the image.
    cache = imagestore.Cache(imagestore.cache_dir())
    found = cache.load(images.digest)
    assert found is not None
    layers, _ = found
    assert any((layer / "etc" / "passwd").exists() for layer in layers)
    assert not any((layer / "etc" / "written").exists() for layer in layers)


def test_a_pod_pulls_an_image_by_digest(cluster, namespace, images):
    p, out = _run(cluster, namespace, _pod("pinned", f"nodetest/app@{images.digest}"))
    assert out[-1] == f"only-in-the-image-{images.token}"
    assert p["status"]["containerStatuses"][0]["imageID"].endswith(images.digest)


def test_always_picks_up_a_tag_pushed_again(cluster, namespace, images):
    first = images.variant("moving", f"first-{images.token}", cmd="cat /etc/cdi-py-node-test")
    p, out = _run(cluster, namespace, _pod("one", images.ref("moving"), imagePullPolicy="Always"))
    assert out == [f"first-{images.token}"]
    assert p["status"]["containerStatuses"][0]["imageID"].endswith(first)
    second = images.variant("moving", f"second-{images.token}", cmd="cat /etc/cdi-py-node-test")
    p, out = _run(cluster, namespace, _pod("two", images.ref("moving"), imagePullPolicy="Always"))
    assert out == [f"second-{images.token}"]
    assert p["status"]["containerStatuses"][0]["imageID"].endswith(second) and second != first


def test_never_without_the_image_on_the_node_is_err_image_never_pull(cluster, namespace, images):
    images.variant("never", "never", cmd="true")
    manifest = _pod("never", images.ref("never"), imagePullPolicy="Never")
    cluster.api().create(f"/api/v1/namespaces/{namespace}/pods", manifest)
    waiting = _waiting(cluster, namespace, "never", "ErrImageNeverPull")
    assert "not present with pull policy of Never" in waiting["message"]


def test_an_image_not_in_the_registry_is_err_image_pull_then_back_off(cluster, namespace, images):
    manifest = _pod("absent", f"nodetest/absent:{images.token}")
    cluster.api().create(f"/api/v1/namespaces/{namespace}/pods", manifest)
    waiting = _waiting(cluster, namespace, "absent", "ErrImagePull")
    assert (
        "not found" in waiting["message"]
        and f"nodetest/absent:{images.token}" in waiting["message"]
    )
    waiting = _waiting(cluster, namespace, "absent", "ImagePullBackOff")
    assert waiting["message"] == f'Back-off pulling image "nodetest/absent:{images.token}"'
    p = cluster.api().get(f"/api/v1/namespaces/{namespace}/pods/absent")
    assert p["status"]["phase"] == "Pending"


def _pull_secret(cluster, ns: str, name: str, host: str, user: str, password: str) -> None:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    config = json.dumps({"auths": {host: {"auth": auth}}})
    cluster.api().create(
        f"/api/v1/namespaces/{ns}/secrets",
        {
            "metadata": {"name": name},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64.b64encode(config.encode()).decode()},
        },
    )


def test_a_private_registry_takes_the_right_pull_secret_only(
    cluster, namespace, images, registry_basic
):
    local = images.build(
        f"localhost/nodetest/private:{images.token}", "private", "cat /etc/cdi-py-node-test"
    )
    creds = f"{registry_basic.username}:{registry_basic.password}"
    nodeimages.push(local, f"{registry_basic.host}/private/app:v1", creds=creds)
    host = registry_basic.host
    _pull_secret(
        cluster, namespace, "right", host, registry_basic.username, registry_basic.password
    )
    _pull_secret(cluster, namespace, "wrong", host, registry_basic.username, "not-the-password")
    image = f"{host}/private/app:v1"
    _, out = _run(
        cluster, namespace, _pod("right", image, pod_spec={"imagePullSecrets": [{"name": "right"}]})
    )
    assert out == ["private"]
    # Always: with IfNotPresent the node's copy would serve, as a kubelet's does.
    manifest = _pod(
        "wrong",
        image,
        imagePullPolicy="Always",
        pod_spec={"imagePullSecrets": [{"name": "wrong"}]},
    )
    cluster.api().create(f"/api/v1/namespaces/{namespace}/pods", manifest)
    waiting = _waiting(cluster, namespace, "wrong", "ErrImagePull")
    assert "unauthorized" in waiting["message"]
    assert "not-the-password" not in waiting["message"]
    manifest = _pod("none", image, imagePullPolicy="Always")
    cluster.api().create(f"/api/v1/namespaces/{namespace}/pods", manifest)
    assert "unauthorized" in _waiting(cluster, namespace, "none", "ErrImagePull")["message"]


def test_an_image_is_unpacked_once_for_pods_that_start_together(cluster, namespace, images):
    digest = images.variant("shared", f"shared-{images.token}", cmd="cat /etc/cdi-py-node-test")
    api = cluster.api()
    names = [f"together-{i}" for i in range(3)]
    for name in names:
        api.create(f"/api/v1/namespaces/{namespace}/pods", _pod(name, images.ref("shared")))
    for name in names:
        p = wait_for(name, phase(api, namespace, name, "Succeeded", "Failed"), 120)
        assert p["status"]["phase"] == "Succeeded"
        assert cluster.logs(namespace, name).split() == [f"shared-{images.token}"]
    agent_log = (cluster.root / "logs" / "node-agent.log").read_text()
    assert agent_log.count(f"image unpacked digest={digest}") == 1
