"""The simulated nodes' process: kubelets, kube-proxy, DNS names and the provisioner.

Why one process: they share the cluster's network and a handful of watches, and one
process starts in a second. With several nodes (``State.nodes``), each is a
:class:`NodeRuntime` of its own (Node, lease, InternalIP, pod range, log endpoint,
pods, runtime directory) in this same process: the nodes share this host's bridge,
where the one Service proxy listens on every ClusterIP, as a flat pod network would
make every Service reachable from every node.

``python -m localcluster.agent --dir DIR`` is started by ``Cluster.up``; it writes
``DIR/node/agent.ready`` once every node is registered and the provisioner and service
proxy have synced, and stops every container on SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from localcluster import cgroups, logserver, node, nodeinit
from localcluster.api import Api, Credentials, Obj
from localcluster.controlplane import api_url
from localcluster.imagestore import Cache, ImageStore, cache_dir
from localcluster.informer import Informer
from localcluster.ipam import Ipam
from localcluster.layout import Layout, Network, State, node_names
from localcluster.podworker import PodWorker
from localcluster.provisioner import Provisioner
from localcluster.serviceproxy import ServiceProxy

log = logging.getLogger("localcluster.agent")

# Unpacked images no container started from in this many days are removed.
PRUNE_DAYS = 14


class NodeRuntime:
    """One simulated node: its Node object and lease, its address and pod range, its
    log endpoint, its pods (those the scheduler bound to it, and only those) and their
    runtime state under its own directory. What all nodes share (the cgroups, the
    Service proxy on the host's bridge) comes from the agent."""

    def __init__(self, agent: Agent, name: str, k: int, count: int) -> None:
        self.agent = agent
        self.name = name
        self.node_ip = agent.net.node_ip(k, count)
        self.pod_cidr = agent.net.pod_cidr(k, count)
        self.node_dir = agent.layout.node_dir(name)
        self.pod_logs = agent.layout.node_pod_logs(name)
        first, last = agent.net.pod_hosts(k, count)
        self.ipam = Ipam(agent.net.pod_prefix, first, last)
        self.workers: dict[str, PodWorker] = {}
        self.workers_lock = threading.Lock()
        # What a pod worker reads of its node (NodeContext).
        self.api = agent.api
        self.net = agent.net
        self.layout = agent.layout
        # This node's images (which references it has), over the machine's shared cache.
        self.images = ImageStore(
            agent.image_cache, agent.layout.root / "registry.json", self.node_dir / "images"
        )
        self.unified_cgroup = agent.unified_cgroup
        self.memory_cgroup = agent.memory_cgroup
        self.backoff_base = agent.backoff_base
        self.backoff_max = agent.backoff_max

    # -- NodeContext ------------------------------------------------------------------

    def allocate_ip(self, uid: str) -> str:
        return self.ipam.allocate(uid)

    def release_ip(self, uid: str) -> None:
        self.ipam.release(uid)

    def register_hosts(self, pod: Obj, path: Path) -> None:
        self.agent.proxy.register_hosts(pod, path)

    def forget_hosts(self, uid: str) -> None:
        self.agent.proxy.forget_hosts(uid)

    def service_env(self, namespace: str) -> dict[str, str]:
        return self.agent.proxy.env_for(namespace)

    # -- pods ---------------------------------------------------------------------------

    def _on_pod(self, kind: str, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        if kind != "DELETED" and pod["spec"].get("nodeName") != self.name:
            return  # the field selector already says so; never run another node's pod
        with self.workers_lock:
            worker = self.workers.get(uid)
            if kind == "DELETED":
                if worker is not None:
                    worker.gone()
                    del self.workers[uid]
                return
            if worker is None:
                worker = PodWorker(self, pod)
                self.workers[uid] = worker
                worker.start()
            else:
                worker.update(pod)

    def start(self) -> Informer:
        """Register, start heartbeats, the log endpoint and the pod watch."""
        self.node_dir.mkdir(parents=True, exist_ok=True)
        stop = self.agent.stop
        logserver.serve(self.node_ip, self.agent.kubelet_port, self.layout.pki, self.pod_logs, stop)
        node.register(self.api, self.name, self.node_ip, self.agent.kubelet_port, self.pod_cidr)
        threading.Thread(
            target=node.heartbeat, args=(self.api, self.name, stop), daemon=True
        ).start()
        return Informer(
            self.api,
            "/api/v1/pods",
            self._on_pod,
            stop,
            fieldSelector=f"spec.nodeName={self.name}",
        ).start()

    def stop_workers(self) -> list[PodWorker]:
        with self.workers_lock:
            workers = list(self.workers.values())
        for w in workers:
            w.shutdown()
        return workers


class Agent:
    def __init__(self, layout: Layout, backoff_base: float, backoff_max: float) -> None:
        state = State.load(layout.state_file)
        if state is None:
            raise SystemExit(f"no cluster state in {layout.root}")
        self.layout = layout
        self.net = Network(state.index)
        self.kubelet_port = state.kubelet_port
        nodeinit.binary()  # compiled once per machine; fail here rather than at a pod
        self.image_cache = Cache(cache_dir())
        self.image_cache.prune(PRUNE_DAYS)
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        pki = layout.pki
        self.api = Api(
            Credentials(
                api_url(self.net, state), pki / "ca.crt", pki / "node.crt", pki / "node.key"
            )
        )
        self.stop = threading.Event()
        cg = cgroups.cluster_group(self.net.cgroup_name)
        self.unified_cgroup = cgroups.make(cg / "pods") if cg is not None else None
        mem = cgroups.memory_v1_root()
        self.memory_cgroup: Path | None = None
        if mem is not None:
            try:
                self.memory_cgroup = cgroups.make(mem / self.net.cgroup_name)
                # `down` may run from another cgroup: tell it where ours is.
                layout.node.mkdir(parents=True, exist_ok=True)
                (layout.node / "memory-cgroup").write_text(str(self.memory_cgroup))
            except OSError:
                self.memory_cgroup = None
        self.proxy = ServiceProxy(
            self.api,
            self.net,
            self.stop,
            node_ips=[self.net.node_ip(k, state.nodes) for k in range(1, state.nodes + 1)],
        )
        self.nodes = [
            NodeRuntime(self, name, k, state.nodes)
            for k, name in enumerate(node_names(state.nodes), start=1)
        ]

    def run(self) -> None:
        self.layout.node.mkdir(parents=True, exist_ok=True)
        self.layout.agent_ready.unlink(missing_ok=True)
        Provisioner(self.api, self.layout.storage, self.stop, [n.name for n in self.nodes]).start()
        self.proxy.start()
        informers = [n.start() for n in self.nodes]
        for pods in informers:
            pods.synced.wait(30)
        self.layout.agent_ready.write_text("ready\n")
        log.info("nodes ready names=%s", ",".join(n.name for n in self.nodes))
        self.stop.wait()
        workers = [w for n in self.nodes for w in n.stop_workers()]
        for w in workers:
            w.join(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", required=True, type=Path)
    parser.add_argument(
        "--backoff-base", type=float, default=2.0, help="first CrashLoopBackOff delay (s)"
    )
    parser.add_argument("--backoff-max", type=float, default=60.0)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    agent = Agent(Layout(args.dir.resolve()), args.backoff_base, args.backoff_max)
    signal.signal(signal.SIGTERM, lambda *_: agent.stop.set())
    signal.signal(signal.SIGINT, lambda *_: agent.stop.set())
    agent.run()


if __name__ == "__main__":
    main()
