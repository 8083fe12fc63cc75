"""Turning one container of a pod spec into a running sandboxed process.

Why apart from the pod worker: the worker decides *when* a container runs (restart
policy, back-off, deletion); this module knows *how*: which program an image stands
for, its environment, its mounts and devices, its user, its cgroups. Failures come
back typed, as the kubelet distinguishes them: a container that cannot be created yet
stays *waiting* (``ErrImagePull``, ``CreateContainerConfigError``), one whose program
cannot start is *terminated* with ``StartError``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from localcluster import images, sandbox
from localcluster.api import Api, ApiError, Obj
from localcluster.container import Process
from localcluster.layout import Network
from localcluster.podenv import ConfigError, EnvResolver, expand, quantity
from localcluster.podvolumes import Volume


class Waiting(Exception):
    """The container cannot be created yet; it stays waiting with this reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class StartError(Exception):
    """The container was created but its program could not start (exit code 128)."""


class Runtime(Protocol):
    """What the node offers every container."""

    api: Api
    net: Network
    repo_root: Path
    unified_cgroup: Path | None
    memory_cgroup: Path | None

    def service_env(self, namespace: str) -> dict[str, str]: ...


@dataclass(frozen=True)
class PodSandbox:
    """What the containers of one pod share."""

    pod: Obj  # with status.podIP/hostIP already filled in
    pod_dir: Path
    log_dir: Path
    netns: str | None
    volumes: dict[str, Volume]
    key: str


@dataclass(frozen=True)
class Launched:
    proc: Process
    env: dict[str, str]
    argv: list[str]
    term_file: Path
    log_file: Path
    container_id: str


def identity(pod: Obj, container: Obj) -> tuple[int | None, int | None, list[int]]:
    """uid, gid and supplementary groups from the pod's and container's securityContext."""
    psc = pod["spec"].get("securityContext") or {}
    csc = container.get("securityContext") or {}
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    gid = csc.get("runAsGroup", psc.get("runAsGroup"))
    extra = [psc.get("fsGroup"), *psc.get("supplementalGroups", [])]
    return uid, gid, [g for g in extra if g is not None]


def base_env(rt: Runtime, pod: Obj) -> dict[str, str]:
    svc = rt.net.kubernetes_service_ip
    env = {
        "PATH": images.search_path(),
        "HOSTNAME": pod["metadata"]["name"],
        "KUBERNETES_SERVICE_HOST": svc,
        "KUBERNETES_SERVICE_PORT": "443",
        "KUBERNETES_SERVICE_PORT_HTTPS": "443",
        "KUBERNETES_PORT": f"tcp://{svc}:443",
        "KUBERNETES_PORT_443_TCP": f"tcp://{svc}:443",
        "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
        "KUBERNETES_PORT_443_TCP_PORT": "443",
        "KUBERNETES_PORT_443_TCP_ADDR": svc,
    }
    if pod["spec"].get("enableServiceLinks", True):
        env.update(rt.service_env(pod["metadata"]["namespace"]))
    return env


def _device_node(vol: Volume, cdir: Path, uid: int | None, fs_group: int | None) -> Path:
    """A private node of the block device, owned so the container's user can open it."""
    st = os.stat(vol.path)
    node = cdir / f"dev-{vol.name}"
    with contextlib.suppress(FileNotFoundError):
        node.unlink()
    try:
        os.mknod(node, 0o660 | (st.st_mode & 0o170000), st.st_rdev)
    except OSError:
        return vol.path
    os.chown(node, uid or 0, fs_group if fs_group is not None else (uid or 0))
    return node


def _mounts(sb: PodSandbox, c: Obj, cdir: Path, uid: int | None) -> list[sandbox.Mount]:
    fs_group = (sb.pod["spec"].get("securityContext") or {}).get("fsGroup")
    mounts = []
    for vm in c.get("volumeMounts", []):
        vol = sb.volumes.get(vm["name"])
        if vol is None:
            continue
        src = vol.path / vm["subPath"] if vm.get("subPath") else vol.path
        if vm.get("subPath") and not src.exists():
            src.mkdir(parents=True, exist_ok=True)
        mounts.append(sandbox.Mount(src, vm["mountPath"], read_only=bool(vm.get("readOnly"))))
    for vd in c.get("volumeDevices", []):
        vol = sb.volumes.get(vd["name"])
        if vol is not None:
            node = _device_node(vol, cdir, uid, fs_group)
            mounts.append(sandbox.Mount(node, vd["devicePath"], device=True))
    return mounts


def launch(rt: Runtime, sb: PodSandbox, c: Obj, restart_count: int) -> Launched:
    """Start container ``c``; raise :class:`Waiting` or :class:`StartError`."""
    try:
        argv = images.argv_for(c["image"], c.get("command"), c.get("args"))
    except images.ImagePullError as e:
        raise Waiting("ErrImagePull", str(e)) from e
    except FileNotFoundError as e:
        raise StartError(f'exec: "{e.args[0]}": executable file not found in $PATH') from e
    try:
        env = EnvResolver(rt.api, sb.pod).resolve(c, base_env(rt, sb.pod))
    except (ConfigError, ApiError) as e:
        raise Waiting("CreateContainerConfigError", str(e)) from e
    argv = [argv[0], *(expand(a, env) for a in argv[1:])]
    uid, gid, groups = identity(sb.pod, c)
    env.setdefault("HOME", "/" if uid not in (None, 0) else "/root")

    cid = uuid.uuid4().hex
    cdir = sb.pod_dir / "containers" / c["name"]
    cdir.mkdir(parents=True, exist_ok=True)
    term = cdir / f"termination-log-{restart_count}"
    term.write_bytes(b"")
    term.chmod(0o666)
    mounts = _mounts(sb, c, cdir, uid)
    mounts.append(sandbox.Mount(term, c.get("terminationMessagePath", "/dev/termination-log")))
    mounts.append(sandbox.Mount(sb.pod_dir / "hosts", "/etc/hosts", read_only=True))
    mounts.append(sandbox.Mount(sb.pod_dir / "resolv.conf", "/etc/resolv.conf", read_only=True))
    spec = sandbox.Spec(
        argv=argv,
        hostname=sb.pod["spec"].get("hostname") or sb.pod["metadata"]["name"],
        mounts=mounts,
        workdir=c.get("workingDir") or "/",
        uid=uid,
        gid=gid,
        groups=groups,
        extra_roots=[rt.repo_root],
    )
    limit = (c.get("resources") or {}).get("limits", {}).get("memory")
    log_file = sb.log_dir / c["name"] / f"{restart_count}.log"
    group = f"{sb.key}-{cid[:8]}"
    try:
        proc = Process(
            sandbox.argv(spec, sb.netns, "{INFO_FD}"),
            env,
            log_file,
            rt.unified_cgroup / group if rt.unified_cgroup else None,
            rt.memory_cgroup / group if rt.memory_cgroup else None,
            int(quantity(limit)) if limit else None,
        )
    except OSError as e:
        raise StartError(str(e)) from e
    # For `hack/cluster exec`, which runs in another process than this agent.
    (cdir / "runtime.json").write_text(json.dumps({"pid": proc.child_pid, "uid": uid, "gid": gid}))
    return Launched(proc, env, argv, term, log_file, f"cdipy://{cid}")


def enter_argv(pid: int, uid: int | None, gid: int | None) -> list[str]:
    """The prefix that runs a command inside container ``pid``'s sandbox, as its user."""
    argv = ["nsenter", "-t", str(pid), "-m", "-n", "-u", "-i", "--"]
    if uid not in (None, 0):
        group = gid if gid is not None else uid
        argv += ["setpriv", f"--reuid={uid}", f"--regid={group}", "--clear-groups", "--"]
    return argv


def exec_in(launched: Launched, pod: Obj, c: Obj, cmd: list[str], timeout: float) -> int:
    """Run ``cmd`` inside the running container (exec probes), as its user."""
    pid = launched.proc.child_pid
    if not pid:
        return 1
    uid, gid, _ = identity(pod, c)
    return subprocess.run(
        [*enter_argv(pid, uid, gid), *cmd],
        env=launched.env,
        capture_output=True,
        timeout=timeout,
        check=False,
    ).returncode
