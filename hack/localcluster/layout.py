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
MAX_NODES = 4


def node_names(count: int) -> list[str]:
    """The nodes of a cluster of ``count``: node 1 keeps the historical name."""
    if not 1 <= count <= MAX_NODES:
        raise ValueError(f"a local cluster has 1 to {MAX_NODES} nodes, not {count}")
    return [NODE_NAME, *(f"{NODE_NAME}-{k}" for k in range(2, count + 1))]


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
        """The first simulated node's pods: volumes, termination files, hosts files."""
        return self.root / "node"

    def node_dir(self, name: str) -> Path:
        """A node's own pods and logs: node 1 where it always was, others under nodes/."""
        return self.node if name == NODE_NAME else self.root / "nodes" / name

    def node_pod_logs(self, name: str) -> Path:
        return self.node_dir(name) / "logs"

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

    # -- nodes: each owns an aligned block of the bridge's /24 ----------------------------

    @staticmethod
    def _block(count: int) -> int:
        """Addresses per node: 256 split in a power of two of equal blocks."""
        node_names(count)  # validates the count
        blocks = 1
        while blocks < count:
            blocks *= 2
        return 256 // blocks

    def node_ip(self, k: int, count: int) -> str:
        """Node ``k`` (1-based)'s InternalIP: the first host of its block (node 1's is the
        gateway, as it always was). Every one is an address of the host on the bridge."""
        return f"{self.pod_prefix}{(k - 1) * self._block(count) + 1}"

    def pod_cidr(self, k: int, count: int) -> str:
        block = self._block(count)
        bits = 32 - (block.bit_length() - 1)
        return f"{self.pod_prefix}{(k - 1) * block}/{bits}"

    def pod_hosts(self, k: int, count: int) -> tuple[int, int]:
        """First and last host number node ``k`` gives its pods (its block, less its own
        address and the /24's network and broadcast addresses; pods keep the /24 mask,
        so every pod reaches every other across the bridge, as a flat pod network)."""
        block = self._block(count)
        base = (k - 1) * block
        return base + 2, min(base + block - 1, 254)


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
    nodes: int = 1
    pids: dict[str, int] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> State | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None
