"""``hack/cluster``: the command line of the local cluster.

hack/cluster up [--dir DIR] [--nodes N] [--no-images]
                                   start (or reuse) a cluster of N simulated nodes
                                   (default 1; a reused cluster keeps its own count,
                                   and another explicit N is refused); default DIR .cluster/;
                                   starts its registry and pushes hack/build-images' images
                                   into it (also into a reused cluster) unless --no-images
hack/cluster down [--dir DIR]      stop it and remove every trace
hack/cluster status [--dir DIR]    exit 0 if healthy
hack/cluster kubectl ARGS...       the matching kubectl against it
hack/cluster logs NS/POD [-c NAME] [--previous]   a container's log (or kubectl logs)
hack/cluster exec NS/POD [-c NAME] -- CMD...      run CMD in a running container
hack/cluster env [--dir DIR]       shell exports (KUBECONFIG, PATH with kubectl)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from localcluster import registry
from localcluster.cluster import Cluster, ClusterError
from localcluster.controlplane import HACK, Binaries

DEFAULT_DIR = HACK.parent / ".cluster"


def _dir_from_env() -> Path:
    return Path(os.environ.get("CDI_PY_CLUSTER_DIR", str(DEFAULT_DIR)))


def cmd_up(cluster: Cluster, nodes: int | None = None, images: bool = True) -> int:
    started = time.monotonic()
    reused = cluster.healthy()
    try:
        cluster.up(nodes=nodes, images=images)
    except (ClusterError, ValueError) as e:
        print(f"cluster: {e}", file=sys.stderr)
        return 1
    took = time.monotonic() - started
    what = "reused healthy cluster" if reused else f"started in {took:.1f}s"
    kubectl = Binaries.locate().kubectl
    print(
        f"cluster {what}: API {cluster.api_url}, "
        f"node(s) {', '.join(f'{n} ({ip})' for n, ip in cluster.node_ips.items())}, "
        f"registry {registry.address(cluster.root)}\n"
        f"  export KUBECONFIG={cluster.kubeconfig}\n"
        f"  {kubectl} get nodes          (or: hack/cluster kubectl get nodes)\n"
        f"  hack/cluster logs NS/POD [-c CONTAINER]\n"
        f"  hack/cluster down --dir {cluster.root}"
    )
    return 0


def cmd_logs(cluster: Cluster, target: str, container: str | None, previous: bool) -> int:
    ns, _, pod = target.partition("/")
    if not pod:
        ns, pod = "default", ns
    pod_dir = cluster.pod_log_dir(ns, pod)
    if pod_dir is None:
        print(f"no logs for pod {ns}/{pod}", file=sys.stderr)
        return 1
    names = sorted(p.name for p in pod_dir.iterdir())
    if container is None:
        if len(names) != 1:
            print(f"pod has containers {names}: choose one with -c", file=sys.stderr)
            return 1
        container = names[0]
    runs = sorted((pod_dir / container).glob("*.log"), key=lambda p: int(p.stem))
    if not runs or (previous and len(runs) < 2):
        print(f"no {'previous ' if previous else ''}log for {container}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write((runs[-2] if previous else runs[-1]).read_bytes())
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "kubectl":
        cluster = Cluster(_dir_from_env())
        bins = Binaries.locate()
        os.execv(
            str(bins.kubectl), [str(bins.kubectl), f"--kubeconfig={cluster.kubeconfig}", *argv[1:]]
        )
    parser = argparse.ArgumentParser(
        prog="hack/cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("up", "down", "status", "env"):
        p = sub.add_parser(name)
        p.add_argument("--dir", type=Path, default=_dir_from_env())
        if name == "up":
            p.add_argument("--nodes", type=int, default=None, help="simulated nodes (1-4)")
            p.add_argument(
                "--no-images",
                dest="images",
                action="store_false",
                help="do not build and push the images into the cluster's registry",
            )
    p = sub.add_parser("exec", help="run a command in a running container")
    p.add_argument("target", help="NS/POD")
    p.add_argument("-c", "--container")
    p.add_argument("--dir", type=Path, default=_dir_from_env())
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    p = sub.add_parser("logs")
    p.add_argument("target", help="NS/POD")
    p.add_argument("-c", "--container")
    p.add_argument("-p", "--previous", action="store_true")
    p.add_argument("--dir", type=Path, default=_dir_from_env())
    args = parser.parse_args(argv)
    cluster = Cluster(args.dir)
    if args.cmd == "up":
        return cmd_up(cluster, args.nodes, args.images)
    if args.cmd == "down":
        cluster.down()
        print(f"cluster at {cluster.root} stopped and removed")
        return 0
    if args.cmd == "status":
        ok = cluster.healthy()
        print(f"healthy, nodes {' '.join(cluster.node_names)}" if ok else "not running")
        return 0 if ok else 1
    if args.cmd == "env":
        print(f"export KUBECONFIG={cluster.kubeconfig}")
        print(f"export PATH={Binaries.locate().k8s}:$PATH")
        return 0
    if args.cmd == "exec":
        ns, _, pod = args.target.partition("/")
        if not pod:
            ns, pod = "default", ns
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command:
            parser.error("exec needs a command after --")
        try:
            done = cluster.exec(
                ns,
                pod,
                command,
                container=args.container,
                check=False,
                capture=False,
                timeout=24 * 3600,
            )
        except ClusterError as e:
            print(f"cluster: {e}", file=sys.stderr)
            return 1
        return done.returncode
    return cmd_logs(cluster, args.target, args.container, args.previous)


if __name__ == "__main__":
    sys.exit(main())
