"""Command lines of etcd and the three control-plane daemons, and their kubeconfigs.

Why these flags: kube-apiserver is configured as envtest runs it (own CA, serving cert,
service-account signing key, RBAC, admission webhooks on), plus the aggregation layer
(front-proxy CA and ``--requestheader-*``/``--proxy-client-*``) so an aggregated API
server can serve ``upload.cdi.kubevirt.io``. The controller manager runs upstream's
default controllers (PV binder and protection, garbage collector, namespace, service
account and token, endpoints and slices, replicaset/deployment, root CA publisher...).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from localcluster.layout import Layout, Network, State

HACK = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Binaries:
    k8s: Path
    etcd: Path

    @classmethod
    def locate(cls) -> Binaries:
        """The cache directories ``hack/build-control-plane`` fills."""
        out = subprocess.run(
            [str(HACK / "build-control-plane"), "--print-dirs"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        return cls(k8s=Path(out[0]), etcd=Path(out[1]))

    def complete(self) -> bool:
        return (self.k8s / ".complete").exists() and (self.etcd / ".complete").exists()

    @property
    def kubectl(self) -> Path:
        return self.k8s / "kubectl"


def write_kubeconfig(path: Path, server: str, ca: Path, cert: Path, key: Path, user: str) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "cdi-py", "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [
            {"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}
        ],
        "contexts": [{"name": "cdi-py", "context": {"cluster": "cdi-py", "user": user}}],
        "current-context": "cdi-py",
    }
    # JSON is YAML: no YAML library needed to write it.
    path.write_text(json.dumps(config, indent=2))


def api_url(net: Network, state: State) -> str:
    return f"https://{net.gateway}:{state.api_port}"


def etcd_argv(bins: Binaries, layout: Layout, state: State) -> list[str]:
    client = f"http://127.0.0.1:{state.etcd_port}"
    peer = f"http://127.0.0.1:{state.etcd_peer_port}"
    return [
        str(bins.etcd / "etcd"),
        "--name=default",
        f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=default={peer}",
        # Test data: durability across a machine crash is not worth the fsync latency.
        "--unsafe-no-fsync=true",
        "--quota-backend-bytes=2147483648",
        "--log-level=warn",
    ]


def apiserver_argv(bins: Binaries, layout: Layout, net: Network, state: State) -> list[str]:
    pki = layout.pki
    return [
        str(bins.k8s / "kube-apiserver"),
        f"--etcd-servers=http://127.0.0.1:{state.etcd_port}",
        f"--bind-address={net.gateway}",
        f"--advertise-address={net.gateway}",
        f"--secure-port={state.api_port}",
        f"--service-cluster-ip-range={net.service_cidr}",
        f"--cert-dir={pki}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        "--authorization-mode=Node,RBAC",
        "--allow-privileged=true",
        "--enable-admission-plugins=NodeRestriction",
        # The aggregation layer.
        f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
        f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
        # `kubectl logs` goes through the API server to the node's log endpoint.
        f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
        f"--kubelet-certificate-authority={pki / 'ca.crt'}",
        "--kubelet-preferred-address-types=InternalIP",
        "--profiling=false",
        "--v=1",
    ]


def controller_manager_argv(bins: Binaries, layout: Layout, state: State) -> list[str]:
    pki = layout.pki
    kubeconfig = layout.root / "controller-manager.kubeconfig"
    return [
        str(bins.k8s / "kube-controller-manager"),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={state.kcm_port}",
        f"--cert-dir={layout.root / 'kcm-certs'}",
        f"--root-ca-file={pki / 'ca.crt'}",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--cluster-signing-cert-file={pki / 'ca.crt'}",
        f"--cluster-signing-key-file={pki / 'ca.key'}",
        # Each controller acts as its own service account, so RBAC applies to them
        # as in a kubeadm cluster.
        "--use-service-account-credentials=true",
        "--controllers=*",
        "--leader-elect=false",
        # Quicker reaction than production defaults: tests wait on these loops.
        "--concurrent-gc-syncs=5",
        "--pvclaimbinder-sync-period=2s",
        "--profiling=false",
        "--v=1",
    ]


def scheduler_argv(bins: Binaries, layout: Layout, state: State) -> list[str]:
    kubeconfig = layout.root / "scheduler.kubeconfig"
    return [
        str(bins.k8s / "kube-scheduler"),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={state.scheduler_port}",
        f"--cert-dir={layout.root / 'scheduler-certs'}",
        "--leader-elect=false",
        "--profiling=false",
        "--v=1",
    ]
