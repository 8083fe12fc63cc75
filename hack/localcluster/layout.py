"""Where a cluster keeps its state under its directory, and its network addresses.

Why one place: ``up``, ``down``, the node agent and the fixtures all need the same
paths, and ``down`` must find everything an earlier (maybe crashed) ``up`` made.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

NODE_NAME = "cdi-node"
CLUSTER_DOMAIN = "cluster.local"


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def node(self) -> Path:
        """The simulated node's pods: volumes, termination files, hosts files."""
        return self.root / "node"

    @property
    def pod_logs(self) -> Path:
        return self.root / "node" / "logs"

    @property
    def storage(self) -> Path:
        """Backing files and mount points of provisioned volumes."""
        return self.root / "storage"

    @property
    def agent_ready(self) -> Path:
        return self.root / "node" / "agent.ready"


@dataclass(frozen=True)
class Network:
    """Addresses of cluster number ``index``: a /24 for pods, a /24 for services.

    Everything lives on a bridge this cluster creates, so nothing is exposed beyond
    this machine, and two clusters (say the test session's and a test of up/down)
    never share an address.
    """

    index: int

    @property
    def bridge(self) -> str:
        return f"cdipy{self.index}"

    @property
    def gateway(self) -> str:
        """The host's address on the bridge: where the API server listens."""
        return f"10.200.{self.index}.1"

    @property
    def pod_prefix(self) -> str:
        return f"10.200.{self.index}."

    @property
    def service_cidr(self) -> str:
        return f"10.201.{self.index}.0/24"

    @property
    def kubernetes_service_ip(self) -> str:
        """The first address of the service range, which the API server takes."""
        return f"10.201.{self.index}.1"

    @property
    def cgroup_name(self) -> str:
        return f"cdipy{self.index}"


@dataclass
class State:
    """What ``up`` started, so ``down`` can stop exactly that."""

    index: int
    api_port: int
    etcd_port: int
    etcd_peer_port: int
    kcm_port: int
    scheduler_port: int
    kubelet_port: int = 0
    pids: dict[str, int] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> State | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None
