"""Turning one container of a pod spec into a running sandboxed process.

Why apart from the pod worker: the worker decides *when* a container runs (restart
policy, back-off, deletion); this module knows *how*: the image to pull and run from,
its environment, its mounts and devices, its user, its cgroups. Failures come back
typed, as the kubelet distinguishes them: a container that cannot be created yet stays
*waiting* (``ErrImagePull``, ``ErrImageNeverPull``, ``CreateContainerConfigError``),
one whose program cannot start is *terminated* with ``StartError``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from localcluster import imageconfig, imageref, nodeinit, rootfs, sandbox
from localcluster.api import Api, ApiError, Obj
from localcluster.container import Process
from localcluster.imagestore import Image, ImageStore, PullError, pull_auths
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
    images: ImageStore
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
    image: Image
    uid: int
    gid: int
    groups: list[int]


def identity(pod: Obj, container: Obj) -> tuple[int | None, int | None, list[int]]:
    """uid, gid and supplementary groups from the pod's and container's securityContext."""
    psc = pod["spec"].get("securityContext") or {}
    csc = container.get("securityContext") or {}
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    gid = csc.get("runAsGroup", psc.get("runAsGroup"))
    extra = [psc.get("fsGroup"), *psc.get("supplementalGroups", [])]
    return uid, gid, [g for g in extra if g is not None]


def base_env(rt: Runtime, pod: Obj, image_env: dict[str, str]) -> dict[str, str]:
    """The image's Env under what the node adds (HOSTNAME, the API, service links)."""
    svc = rt.net.kubernetes_service_ip
    env = {
        **image_env,
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


def pull_secrets(api: Api, pod: Obj) -> dict[str, object]:
    """The registry credentials of the pod's imagePullSecrets (missing ones are skipped,
    as the kubelet does)."""
    ns = pod["metadata"]["namespace"]
    datas = []
    for ref in pod["spec"].get("imagePullSecrets") or []:
        try:
            secret = api.get(f"/api/v1/namespaces/{ns}/secrets/{ref['name']}")
        except ApiError:
            continue
        raw = secret.get("data") or {}
        datas.append({k: base64.b64decode(v).decode() for k, v in raw.items()})
    try:
        return pull_auths(datas)
    except (ValueError, AttributeError):
        return {}


def pull(rt: Runtime, pod: Obj, c: Obj) -> Image:
    """The container's image, pulled as its ``imagePullPolicy`` says."""
    try:
        policy = c.get("imagePullPolicy") or imageref.default_policy(c["image"])
    except imageref.InvalidImageName as e:
        raise Waiting("InvalidImageName", f"Failed to apply default image tag: {e}") from e
    try:
        return rt.images.ensure(c["image"], policy, pull_secrets(rt.api, pod))
    except PullError as e:
        raise Waiting(e.reason, e.message) from e


def _read(root: Path, path: str) -> str:
    with contextlib.suppress(OSError, sandbox.PathError):
        return (root / sandbox.inside(root, path).lstrip("/")).read_text(errors="replace")
    return ""


def launch(rt: Runtime, sb: PodSandbox, c: Obj, restart_count: int) -> Launched:
    """Start container ``c``; raise :class:`Waiting` or :class:`StartError`."""
    image = pull(rt, sb.pod, c)
    cfg = image.config
    try:
        env = EnvResolver(rt.api, sb.pod).resolve(
            c, base_env(rt, sb.pod, imageconfig.image_env(cfg))
        )
    except (ConfigError, ApiError) as e:
        raise Waiting("CreateContainerConfigError", str(e)) from e
    command = [expand(a, env) for a in c.get("command") or []]
    args = [expand(a, env) for a in c.get("args") or []]
    argv = imageconfig.process_argv(cfg, command, args)
    if not argv:
        raise StartError("no command specified")
    cid = uuid.uuid4().hex
    cdir = sb.pod_dir / "containers" / c["name"]
    cdir.mkdir(parents=True, exist_ok=True)
    try:
        root = rootfs.mount(image.layers, cdir)
    except rootfs.MountError as e:
        raise StartError(str(e)) from e
    run_as_user, run_as_group, extra = identity(sb.pod, c)
    try:
        who = imageconfig.identity(
            cfg,
            _read(root, "/etc/passwd"),
            _read(root, "/etc/group"),
            run_as_user,
            run_as_group,
            extra,
        )
    except imageconfig.UserError as e:
        rootfs.unmount(cdir)
        raise Waiting("CreateContainerConfigError", str(e)) from e
    env.setdefault("HOME", who.home)
    if sandbox.find_program(root, argv[0], env.get("PATH", imageconfig.DEFAULT_PATH)) is None:
        rootfs.unmount(cdir)
        raise StartError(f'exec: "{argv[0]}": executable file not found in $PATH')
    term = cdir / f"termination-log-{restart_count}"
    term.write_bytes(b"")
    term.chmod(0o666)
    mounts = _mounts(sb, c, cdir, who.uid)
    mounts.append(sandbox.Mount(term, c.get("terminationMessagePath", "/dev/termination-log")))
    mounts.append(sandbox.Mount(sb.pod_dir / "hosts", "/etc/hosts", read_only=True))
    mounts.append(sandbox.Mount(sb.pod_dir / "resolv.conf", "/etc/resolv.conf", read_only=True))
    csc = c.get("securityContext") or {}
    init_fd = nodeinit.open_fd()
    try:
        spec = sandbox.Spec(
            argv=argv,
            hostname=sb.pod["spec"].get("hostname") or sb.pod["metadata"]["name"],
            root=root,
            read_only_root=bool(csc.get("readOnlyRootFilesystem")),
            mounts=mounts,
            workdir=c.get("workingDir") or cfg.workdir or "/",
            init=nodeinit.argv(init_fd, who.uid, who.gid, who.groups),
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
                keep_fds=(init_fd,),
            )
        except (OSError, sandbox.PathError) as e:
            rootfs.unmount(cdir)
            raise StartError(str(e)) from e
    finally:
        os.close(init_fd)
    # For `hack/cluster exec`, which runs in another process than this agent.
    (cdir / "runtime.json").write_text(
        json.dumps({"pid": proc.child_pid, "uid": who.uid, "gid": who.gid, "groups": who.groups})
    )
    return Launched(
        proc, env, argv, term, log_file, f"cdipy://{cid}", image, who.uid, who.gid, who.groups
    )


def enter_argv(pid: int, uid: int, gid: int, groups: list[int], init_fd: int) -> list[str]:
    """The prefix that runs a command inside container ``pid``'s sandbox, as its user
    (``init_fd``: an inheritable descriptor of the nodeinit helper)."""
    enter = ["nsenter", "-t", str(pid), "-m", "-n", "-u", "-i", "--"]
    return [*enter, *nodeinit.argv(init_fd, uid, gid, groups)]


def exec_in(launched: Launched, pod: Obj, c: Obj, cmd: list[str], timeout: float) -> int:
    """Run ``cmd`` inside the running container (exec probes), as its user."""
    pid = launched.proc.child_pid
    if not pid:
        return 1
    fd = nodeinit.open_fd()
    try:
        return subprocess.run(
            [*enter_argv(pid, launched.uid, launched.gid, launched.groups, fd), *cmd],
            env=launched.env,
            capture_output=True,
            timeout=timeout,
            check=False,
            pass_fds=(fd,),
        ).returncode
    finally:
        os.close(fd)
