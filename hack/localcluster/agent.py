"""The simulated node's process: kubelet, kube-proxy, DNS names and the provisioner.

Why one process: they share the cluster's network and a handful of watches, and one
process starts in a second. ``python -m localcluster.agent --dir DIR`` is started by
``Cluster.up``; it writes ``DIR/node/agent.ready`` once the node is registered and the
provisioner and service proxy have synced, and stops every container on SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from localcluster import cgroups, logserver, node
from localcluster.api import Api, Credentials, Obj
from localcluster.controlplane import HACK, api_url
from localcluster.informer import Informer
from localcluster.ipam import Ipam
from localcluster.layout import NODE_NAME, Layout, Network, State
from localcluster.podworker import PodWorker
from localcluster.provisioner import Provisioner
from localcluster.serviceproxy import ServiceProxy

log = logging.getLogger("localcluster.agent")


class Agent:
    def __init__(self, layout: Layout, backoff_base: float, backoff_max: float) -> None:
        state = State.load(layout.state_file)
        if state is None:
            raise SystemExit(f"no cluster state in {layout.root}")
        self.layout = layout
        self.net = Network(state.index)
        self.kubelet_port = state.kubelet_port
        self.repo_root = HACK.parent
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
        self.workers: dict[str, PodWorker] = {}
        self.workers_lock = threading.Lock()
        self.ipam = Ipam(self.net.pod_prefix)
        self.proxy = ServiceProxy(self.api, self.net, self.stop)

    # -- NodeContext ------------------------------------------------------------------

    def allocate_ip(self, uid: str) -> str:
        return self.ipam.allocate(uid)

    def release_ip(self, uid: str) -> None:
        self.ipam.release(uid)

    def register_hosts(self, pod: Obj, path: Path) -> None:
        self.proxy.register_hosts(pod, path)

    def forget_hosts(self, uid: str) -> None:
        self.proxy.forget_hosts(uid)

    def service_env(self, namespace: str) -> dict[str, str]:
        return self.proxy.env_for(namespace)

    # -- pods ---------------------------------------------------------------------------

    def _on_pod(self, kind: str, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
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

    def run(self) -> None:
        self.layout.node.mkdir(parents=True, exist_ok=True)
        self.layout.agent_ready.unlink(missing_ok=True)
        logserver.serve(
            self.net.gateway, self.kubelet_port, self.layout.pki, self.layout.pod_logs, self.stop
        )
        node.register(self.api, self.net.gateway, self.kubelet_port)
        threading.Thread(
            target=node.heartbeat, args=(self.api, self.net.gateway, self.stop), daemon=True
        ).start()
        Provisioner(self.api, self.layout.storage, self.stop).start()
        self.proxy.start()
        pods = Informer(
            self.api,
            "/api/v1/pods",
            self._on_pod,
            self.stop,
            fieldSelector=f"spec.nodeName={NODE_NAME}",
        ).start()
        pods.synced.wait(30)
        self.layout.agent_ready.write_text("ready\n")
        log.info("node ready name=%s", NODE_NAME)
        self.stop.wait()
        with self.workers_lock:
            workers = list(self.workers.values())
        for w in workers:
            w.shutdown()
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
