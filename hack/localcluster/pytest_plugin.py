"""Pytest fixtures for tests that need the real control plane: ``cluster``, ``namespace``.

Why a plugin: every component's tests (controller, upload, clone) share one cluster per
test session, started by the same code as ``hack/cluster up``. Importing this module
has no side effects; the cluster starts only when a test asks for it.

- ``cluster`` (session): a :class:`ClusterHandle` with ``kubeconfig``, ``api_url``,
  ``kubectl(*args)``, ``client()`` (a ``kubernetes.client.ApiClient``),
  ``core()`` (``CoreV1Api``), ``node_log_dir``, ``pv_path(ns, pvc)``, ``api()``.
  ``node_name`` (the first node), ``node_names`` (all, first first), ``node_ips``,
  ``node_class(node)`` (the StorageClass whose volumes live on that node).
  Set ``CDI_PY_CLUSTER_DIR`` to reuse a cluster started with ``hack/cluster up``
  (it is then left running, with its own node count); otherwise the session starts
  its own of ``CDI_PY_CLUSTER_NODES`` nodes (default 2) under a temporary
  directory and stops it at the end, failing if anything is left behind. Set
  ``CDI_PY_KEEP_CLUSTER_LOGS=DIR`` to keep its daemon and container logs.
- ``namespace`` (function): a fresh namespace name whose ``default`` ServiceAccount
  exists; deleted after the test.

Tests using them carry ``@pytest.mark.cluster``; under xdist they all run in one worker
(``xdist_group("cluster")``) so one cluster serves them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localcluster import provisioner, storage
from localcluster.cluster import Cluster

# Clone tests need volumes on two nodes; everything else runs on either.
DEFAULT_NODES = 2


class ClusterHandle:
    """What a test needs of the running cluster."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self.root = cluster.root
        self.kubeconfig: Path = cluster.kubeconfig
        self.api_url: str = cluster.api_url
        self.node_name: str = cluster.node_name
        self.node_names: list[str] = cluster.node_names
        self.node_ips: dict[str, str] = cluster.node_ips
        self.node_log_dir: Path = cluster.node_log_dir
        self.node_log_dirs: list[Path] = cluster.node_log_dirs

    def node_class(self, node: str) -> str:
        """The Immediate StorageClass whose volumes live on ``node`` (2+ node clusters):
        ``local-<node>``."""
        if node not in self.node_names:
            raise ValueError(f"no node {node!r} in this cluster: {self.node_names}")
        if len(self.node_names) < 2:
            raise ValueError("a one-node cluster has no per-node classes; use 'local'")
        return provisioner.node_class(node)

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return self._cluster.kubectl(*args, check=check, input=input, timeout=timeout)

    def client(self) -> Any:
        """A fresh ``kubernetes.client.ApiClient`` authenticated as the admin."""
        return self._cluster.kubernetes_client()

    kubernetes_client = client

    def core(self) -> Any:
        from kubernetes import client  # optional and slow to import

        return client.CoreV1Api(self.client())

    def api(self) -> Any:
        """The small dict-based client the node agent uses (``localcluster.api.Api``)."""
        return self._cluster.api()

    def exec(
        self, namespace: str, pod: str, *cmd: str, container: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in a running container (what ``kubectl exec`` would do)."""
        return self._cluster.exec(namespace, pod, list(cmd), container=container, check=check)

    def pv_path(self, namespace: str, claim: str) -> Path:
        """Host path behind a bound PVC: the mounted directory, or the loop device."""
        return self._cluster.pv_path(namespace, claim)

    def logs(self, namespace: str, pod: str, container: str | None = None) -> str:
        """The latest run's log of a container (``hack/cluster logs`` as a function)."""
        pod_dir = self._cluster.pod_log_dir(namespace, pod)
        if pod_dir is None:
            return ""
        cdirs = sorted(pod_dir.iterdir())
        cdir = next(
            (d for d in cdirs if d.name == container),
            cdirs[0] if container is None and cdirs else None,
        )
        if cdir is None:
            return ""
        runs = sorted(cdir.glob("*.log"), key=lambda p: int(p.stem))
        return runs[-1].read_text(errors="replace") if runs else ""


def leftovers(root: Path) -> list[str]:
    """Processes, mounts and loop devices a cluster at ``root`` left behind."""
    found: list[str] = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        target = line.split()[1]
        if target.startswith(str(root)):
            found.append(f"mount {target}")
    found += [f"loop device {d}" for d in storage.loops_under(root)]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(root) in cmdline:
            found.append(f"process {proc.name}: {cmdline[:120]}")
    return found


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cluster: needs the local Kubernetes control plane (hack/cluster)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if item.get_closest_marker("cluster") is not None or "cluster" in fixtures:
            item.add_marker(pytest.mark.xdist_group("cluster"))


@pytest.fixture(scope="session")
def cluster() -> Iterator[ClusterHandle]:
    reuse = os.environ.get("CDI_PY_CLUSTER_DIR")
    images = os.environ.get("CDI_PY_CLUSTER_IMAGES", "1") != "0"
    if reuse:
        c = Cluster(reuse)
        c.up(images=images)
        yield ClusterHandle(c)
        return
    nodes = int(os.environ.get("CDI_PY_CLUSTER_NODES") or DEFAULT_NODES)
    root = Path(tempfile.mkdtemp(prefix="cdi-py-cluster-"))
    c = Cluster(root)
    keep = os.environ.get("CDI_PY_KEEP_CLUSTER_LOGS")
    try:
        c.up(owner_pid=os.getpid(), nodes=nodes, images=images)
        yield ClusterHandle(c)
    finally:
        if keep:
            # For a post-mortem: daemon and container logs outlive the cluster.
            dest = Path(keep) / root.name
            logs = [(c.layout.logs, "daemons"), (c.layout.pod_logs, "containers")]
            logs += [(c.layout.node_pod_logs(n), f"containers-{n}") for n in c.node_names[1:]]
            for src, name in logs:
                if src.is_dir():
                    shutil.copytree(src, dest / name, dirs_exist_ok=True)
        c.down()
        left = leftovers(root)
        shutil.rmtree(root, ignore_errors=True)
        if left:
            pytest.fail("hack/cluster down left behind: " + "; ".join(left))


@pytest.fixture
def namespace(cluster: ClusterHandle) -> Iterator[str]:
    api = cluster.api()
    name = f"t-{uuid.uuid4().hex[:10]}"
    api.create(
        "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    deadline = time.monotonic() + 30
    while api.get_or_none(f"/api/v1/namespaces/{name}/serviceaccounts/default") is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no default ServiceAccount in {name}")
        time.sleep(0.1)
    yield name
    api.delete(f"/api/v1/namespaces/{name}")
