"""A real Kubernetes control plane on this machine, with one simulated node.

Why it exists: no Docker engine runs here (no kind, k3s or minikube), yet the product
must be proven against a real API server. The control plane (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler) is upstream code built by
``hack/build-control-plane``; only the node (kubelet, kube-proxy, DNS) and a local
volume provisioner are simulated, in ``localcluster.agent``.

Importing this package has no side effects; ``localcluster.cluster.Cluster`` starts
and stops everything, ``hack/cluster`` is its command line and
``localcluster.pytest_plugin`` its pytest fixtures.
"""
