"""``up`` and ``down`` of a local cluster, and a handle on a running one.

Why one module backs both the command line and the pytest fixtures: a human's
``hack/cluster up`` and a test session must start the very same thing, and ``down``
must undo everything whoever started it did, including after a crash.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests
import urllib3

from localcluster import (
    cgroups,
    controlplane,
    launcher,
    network,
    nodeinit,
    pki,
    processes,
    registry,
    storage,
)
from localcluster.api import Api, Credentials
from localcluster.layout import NODE_NAME, Layout, Network, State, node_names

LOCK = Path("/run/lock/cdi-py-localcluster.lock")
# One file per running cluster of this machine: its directory and owner process.
REGISTRY = Path("/run/cdi-py-localcluster")
_OWNED = (
    "pki", "etcd", "node", "nodes", "storage", "logs", "kcm-certs", "scheduler-certs", "kubeconfig",
    "controller-manager.kubeconfig", "scheduler.kubeconfig", "node.kubeconfig", "state.json",
    "registry.yml", "registry.json",
)  # fmt: skip
# The registry first: nodes pull from it; `down` stops it last.
DAEMONS = (
    "registry",
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "node-agent",
)


class ClusterError(RuntimeError):
    """The cluster could not be started; the message names the log to read."""


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def _global_lock() -> Iterator[None]:
    """Serialise ``up``/``down`` of all clusters: they share the network index space."""
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _wait(what: str, check: Callable[[], bool], timeout: float, log: Path | None = None) -> None:
    # Health checks of the controller manager and scheduler hit their self-signed certs.
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.2)
    hint = ""
    if log is not None:
        # CI shows only this message: carry the end of the log that explains it.
        tail = ""
        with contextlib.suppress(OSError):
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        hint = f"; end of {log}:\n{tail}"
    raise ClusterError(f"timed out waiting for {what}{hint}")


class Cluster:
    """A local cluster rooted at a directory (default ``.cluster/``)."""

    def __init__(self, root: Path | str) -> None:
        self.layout = Layout(Path(root).resolve())
        self._pushing: subprocess.Popen[bytes] | None = None

    # -- facts about a running cluster ------------------------------------------------

    @property
    def root(self) -> Path:
        return self.layout.root

    @property
    def kubeconfig(self) -> Path:
        return self.layout.kubeconfig

    @property
    def node_log_dir(self) -> Path:
        """Node 1's container logs: ``<ns>_<pod>_<uid>/<container>/<restart>.log``."""
        return self.layout.pod_logs

    @property
    def node_log_dirs(self) -> list[Path]:
        """Every node's container logs (each node keeps those of its own pods)."""
        return [self.layout.node_pod_logs(n) for n in self.node_names]

    def pod_log_dir(self, namespace: str, pod: str) -> Path | None:
        """The newest pod of that name's log directory, on whichever node it ran."""
        found = [d for root in self.node_log_dirs for d in root.glob(f"{namespace}_{pod}_*")]
        return max(found, key=lambda p: p.stat().st_mtime) if found else None

    @property
    def state(self) -> State:
        state = State.load(self.layout.state_file)
        if state is None:
            raise ClusterError(f"no cluster at {self.root}")
        return state

    @property
    def network(self) -> Network:
        return Network(self.state.index)

    @property
    def api_url(self) -> str:
        return controlplane.api_url(self.network, self.state)

    @property
    def node_name(self) -> str:
        """The first node (its name is the same in every cluster)."""
        return NODE_NAME

    @property
    def node_names(self) -> list[str]:
        """Every node, the first first: ``cdi-node``, ``cdi-node-2``, ..."""
        return node_names(self.state.nodes)

    @property
    def node_ips(self) -> dict[str, str]:
        """Each node's InternalIP."""
        count = self.state.nodes
        return {n: self.network.node_ip(k, count) for k, n in enumerate(self.node_names, 1)}

    def api(self) -> Api:
        p = self.layout.pki
        return Api(Credentials(self.api_url, p / "ca.crt", p / "admin.crt", p / "admin.key"))

    def kubernetes_client(self) -> Any:
        """A ``kubernetes.client.ApiClient`` for the admin user."""
        from kubernetes import client, config  # optional and slow to import

        cfg = client.Configuration()
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig), client_configuration=cfg
        )
        return client.ApiClient(cfg)

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run the matching kubectl against this cluster; output captured as text."""
        bins = controlplane.Binaries.locate()
        return subprocess.run(
            [str(bins.kubectl), f"--kubeconfig={self.kubeconfig}", *args],
            check=check,
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
        )

    def exec(
        self,
        namespace: str,
        pod: str,
        cmd: list[str],
        *,
        container: str | None = None,
        check: bool = True,
        timeout: float = 60,
        capture: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` in a running container, as its user, with its environment.

        What ``kubectl exec`` would do; that needs the kubelet's streaming API, which
        the simulated node does not serve, so this enters the sandbox directly.
        """
        obj = self.api().get(f"/api/v1/namespaces/{namespace}/pods/{pod}")
        names = [c["name"] for c in obj["spec"]["containers"]]
        name = container or names[0]
        node = obj["spec"].get("nodeName") or NODE_NAME
        pod_dir = self.layout.node_dir(node) / "pods" / obj["metadata"]["uid"]
        runtime = pod_dir / "containers" / name
        try:
            info = json.loads((runtime / "runtime.json").read_text())
        except (OSError, ValueError) as e:
            raise ClusterError(f"container {name} of {namespace}/{pod} is not running") from e
        pid = int(info["pid"] or 0)
        if not pid or not processes.alive(pid):
            raise ClusterError(f"container {name} of {namespace}/{pod} is not running")
        raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        env = dict(e.decode(errors="replace").split("=", 1) for e in raw if b"=" in e)
        fd = nodeinit.open_fd()
        try:
            argv = launcher.enter_argv(
                pid, int(info["uid"]), int(info["gid"]), list(info.get("groups") or []), fd
            )
            return subprocess.run(
                [*argv, *cmd],
                env=env,
                check=check,
                capture_output=capture,
                text=True,
                timeout=timeout,
                pass_fds=(fd,),
            )
        finally:
            os.close(fd)

    def pv_path(self, namespace: str, claim: str) -> Path:
        """The host path backing a bound PVC: a directory (Filesystem) or a loop device."""
        api = self.api()
        pvc = api.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim}")
        volume = pvc["spec"].get("volumeName")
        if not volume:
            raise ClusterError(f"PVC {namespace}/{claim} is not bound")
        pv = api.get(f"/api/v1/persistentvolumes/{volume}")
        spec = pv["spec"]
        path = (spec.get("local") or spec.get("hostPath") or {}).get("path")
        if not path:
            raise ClusterError(f"PV {volume} has no local path")
        return Path(path)

    def healthy(self) -> bool:
        state = State.load(self.layout.state_file)
        if state is None:
            return False
        if any(not processes.alive(state.pids.get(d, 0) or 0) for d in DAEMONS):
            return False
        try:
            self._readyz()
            api = self.api()
            return all(_node_ready(api.get(f"/api/v1/nodes/{n}")) for n in node_names(state.nodes))
        except Exception:
            return False

    def _readyz(self) -> None:
        p = self.layout.pki
        r = requests.get(
            self.api_url + "/readyz",
            verify=str(p / "ca.crt"),
            cert=(str(p / "admin.crt"), str(p / "admin.key")),
            timeout=3,
        )
        r.raise_for_status()

    # -- up ------------------------------------------------------------------------------

    def up(
        self,
        *,
        timeout: float = 120.0,
        owner_pid: int = 0,
        nodes: int | None = None,
        images: bool = True,
    ) -> None:
        """Start everything, or reuse a healthy cluster already running here.

        ``images``: build the images (``hack/build-images``, cached) and push them into the
        cluster's registry, also when a healthy cluster is reused (so it runs this
        checkout's images); without, the registry starts empty.

        ``owner_pid``: a process (a test session) whose death makes this cluster an
        orphan that the next ``up`` of any cluster on this machine tears down.
        ``nodes``: how many simulated nodes a new cluster runs (default 1); a healthy
        cluster is reused with its own count, unless ``nodes`` asks for another one.
        """
        if nodes is not None:
            node_names(nodes)  # a precise error for a count we cannot run
        if self.healthy():
            self._check_count(nodes)
            if images:
                self._push(None)
            return
        bins = controlplane.Binaries.locate()
        if not bins.complete():
            raise ClusterError("control plane not built: run hack/build-control-plane first")
        with _global_lock():
            # Another process may have started it while we waited for the lock.
            if self.healthy():
                self._check_count(nodes)
                if images:
                    self._push(None)
                return
            _reap_orphans()
            if State.load(self.layout.state_file) is not None or self.root.exists():
                self._down_unlocked()
            state = self._allocate(owner_pid, nodes or 1)
            try:
                self._start(bins, state, timeout, images)
            except BaseException:
                if self._pushing is not None:
                    # A build that outlived a failed `up` would push into nothing.
                    processes.stop(self._pushing.pid, grace=2.0)
                    self._pushing = None
                # Leave no half-started cluster; keep its logs for the post-mortem.
                self._down_unlocked(keep_logs=True)
                raise

    def _push(self, running: subprocess.Popen[bytes] | None) -> None:
        """Wait for (or run) ``hack/build-images --push`` into this cluster's registry."""
        addr = registry.address(self.root)
        if addr is None:
            raise ClusterError(f"no registry in the cluster at {self.root}")
        log = self.layout.logs / "build-images.log"
        started = time.monotonic()
        try:
            proc = running or registry.push_images(controlplane.HACK.parent, addr, log)
            registry.wait_pushed(proc, log, timeout=3600)
        except registry.PushError as e:
            raise ClusterError(str(e)) from e
        print(
            f"images built and pushed to {addr} in {time.monotonic() - started:.1f}s",
            file=sys.stderr,
        )

    def _check_count(self, nodes: int | None) -> None:
        running = self.state.nodes
        if nodes is not None and nodes != running:
            raise ClusterError(
                f"the cluster at {self.root} runs {running} node(s), not {nodes}: "
                f"`hack/cluster down --dir {self.root}` first"
            )

    def _allocate(self, owner_pid: int, nodes: int) -> State:
        index = next(
            i
            for i in range(256)
            if not network.bridge_exists(Network(i)) and not (REGISTRY / f"{i}.json").exists()
        )
        net = Network(index)
        REGISTRY.mkdir(parents=True, exist_ok=True)
        (REGISTRY / f"{index}.json").write_text(
            json.dumps({"root": str(self.root), "owner_pid": owner_pid})
        )
        network.setup_bridge(net, [net.node_ip(k, nodes) for k in range(1, nodes + 1)])
        self.root.mkdir(parents=True, exist_ok=True)
        state = State(
            index=index,
            api_port=_free_port(net.gateway),
            etcd_port=_free_port(),
            etcd_peer_port=_free_port(),
            kcm_port=_free_port(),
            scheduler_port=_free_port(),
            kubelet_port=_free_port(net.gateway),
            nodes=nodes,
        )
        state.save(self.layout.state_file)
        return state

    def _start(
        self, bins: controlplane.Binaries, state: State, timeout: float, images: bool
    ) -> None:
        layout, net = self.layout, Network(state.index)
        deadline = time.monotonic() + timeout

        def left() -> float:
            return max(1.0, deadline - time.monotonic())

        cg = cgroups.cluster_group(net.cgroup_name)
        if cg is not None:
            cgroups.make(cg)
        names = node_names(state.nodes)
        keys = pki.create(
            layout.pki,
            apiserver_ips=(net.gateway, net.kubernetes_service_ip),
            nodes=tuple((n, net.node_ip(k, state.nodes)) for k, n in enumerate(names, 1)),
        )
        server = controlplane.api_url(net, state)
        for name, stem in (
            ("kubeconfig", "admin"),
            ("controller-manager.kubeconfig", "controller-manager"),
            ("scheduler.kubeconfig", "scheduler"),
            ("node.kubeconfig", "node"),
        ):
            controlplane.write_kubeconfig(
                layout.root / name,
                server,
                keys.ca_crt,
                keys.path(f"{stem}.crt"),
                keys.path(f"{stem}.key"),
                stem,
            )

        def launch(name: str, argv: list[str]) -> None:
            state.pids[name] = processes.start(name, argv, layout.logs, cgroup=cg)
            state.save(layout.state_file)

        try:
            pid, addr = registry.start(
                layout.root,
                layout.logs,
                _free_port(),
                cg,
                registry.storage_for(controlplane.HACK.parent),
            )
        except RuntimeError as e:
            raise ClusterError(str(e)) from e
        state.pids[registry.NAME] = pid
        state.save(layout.state_file)
        if images:
            # Built and pushed while the control plane starts; waited for at the end.
            try:
                self._pushing = registry.push_images(
                    controlplane.HACK.parent, addr, layout.logs / "build-images.log"
                )
            except registry.PushError as e:
                raise ClusterError(str(e)) from e
        launch("etcd", controlplane.etcd_argv(bins, layout, state))
        _wait(
            "etcd",
            lambda: requests.get(f"http://127.0.0.1:{state.etcd_port}/health", timeout=2).ok,
            left(),
            layout.logs / "etcd.log",
        )
        launch("kube-apiserver", controlplane.apiserver_argv(bins, layout, net, state))

        def api_ready() -> bool:
            self._readyz()
            return True

        _wait("kube-apiserver /readyz", api_ready, left(), layout.logs / "kube-apiserver.log")
        launch("kube-controller-manager", controlplane.controller_manager_argv(bins, layout, state))
        launch("kube-scheduler", controlplane.scheduler_argv(bins, layout, state))
        agent_env = dict(os.environ)
        agent_env["PYTHONPATH"] = os.pathsep.join(
            [str(controlplane.HACK), str(controlplane.HACK.parent)]
            + ([agent_env["PYTHONPATH"]] if agent_env.get("PYTHONPATH") else [])
        )
        agent_env["PYTHONUNBUFFERED"] = "1"
        state.pids["node-agent"] = processes.start(
            "node-agent",
            [sys.executable, "-m", "localcluster.agent", "--dir", str(layout.root)],
            layout.logs,
            cgroup=cg,
            env=agent_env,
        )
        state.save(layout.state_file)

        for name, port in (
            ("kube-controller-manager", state.kcm_port),
            ("kube-scheduler", state.scheduler_port),
        ):
            _wait(
                f"{name} /healthz",
                functools.partial(_healthz, port),
                left(),
                layout.logs / f"{name}.log",
            )
        api = self.api()
        _wait(
            "the nodes and the provisioner",
            lambda: (
                layout.agent_ready.exists()
                and all(_node_ready(api.get(f"/api/v1/nodes/{n}")) for n in names)
            ),
            left(),
            layout.logs / "node-agent.log",
        )
        # The service-account and root-CA controllers have run once pods can be made.
        _wait(
            "the default service account",
            lambda: (
                api.get_or_none("/api/v1/namespaces/default/serviceaccounts/default") is not None
                and api.get_or_none("/api/v1/namespaces/default/configmaps/kube-root-ca.crt")
                is not None
            ),
            left(),
            layout.logs / "kube-controller-manager.log",
        )
        for name in DAEMONS:
            if not processes.alive(state.pids[name]):
                raise ClusterError(f"{name} exited; see {layout.logs / (name + '.log')}")
        if self._pushing is not None:
            self._push(self._pushing)
            self._pushing = None

    # -- down ----------------------------------------------------------------------------

    def down(self) -> None:
        with _global_lock():
            self._down_unlocked()

    def _down_unlocked(self, keep_logs: bool = False) -> None:
        state = State.load(self.layout.state_file)
        # The agent first: it stops pods gracefully; then the control plane.
        if state is not None:
            for name in reversed(DAEMONS):
                pid = state.pids.get(name)
                if pid:
                    processes.stop(pid)
            net = Network(state.index)
            cg = cgroups.cluster_group(net.cgroup_name)
            if cg is not None:
                cgroups.kill(cg)
            with contextlib.suppress(OSError):
                cgroups.kill(Path((self.layout.node / "memory-cgroup").read_text().strip()))
            network.teardown(net)
            (REGISTRY / f"{state.index}.json").unlink(missing_ok=True)
        storage.release_all(self.layout.storage)
        if self.root.exists():
            _unmount_below(self.root)
            # Only what `up` makes: DIR may be a directory the user cares about.
            for name in _OWNED:
                if keep_logs and name in ("logs", "state.json"):
                    continue
                p = self.root / name
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.root.rmdir()


def _reap_orphans() -> None:
    """Tear down clusters whose owning test session died without its teardown."""
    if not REGISTRY.is_dir():
        return
    for entry in REGISTRY.glob("*.json"):
        try:
            info = json.loads(entry.read_text())
            index = int(entry.stem)
        except (OSError, ValueError):
            continue
        owner = int(info.get("owner_pid") or 0)
        if owner and not processes.alive(owner):
            Cluster(info["root"])._down_unlocked()
            network.teardown(Network(index))
            entry.unlink(missing_ok=True)


def _unmount_below(root: Path) -> None:
    """Lazily unmount anything still mounted under ``root`` (deepest first)."""
    mounts = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            target = line.split()[1].replace("\\040", " ")
            if target == str(root) or target.startswith(str(root) + "/"):
                mounts.append(target)
    for target in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)


def _healthz(port: int) -> bool:
    return requests.get(f"https://127.0.0.1:{port}/healthz", verify=False, timeout=2).ok


# The node lifecycle controller taints a new node until it sees it Ready; pods pinned to
# a node still so tainted would wait for the scheduler's next retry.
_NOT_READY_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")


def _node_ready(node: dict[str, Any]) -> bool:
    taints = (node.get("spec") or {}).get("taints") or []
    return not any(t.get("key") in _NOT_READY_TAINTS for t in taints) and any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in node.get("status", {}).get("conditions", [])
    )
