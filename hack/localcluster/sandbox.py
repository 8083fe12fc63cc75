"""The ``bwrap`` command line that runs a container's process from its image's root.

Why: a container sees its image's file system, not the host's: the root is the image's
unpacked root file system under a per-container writable layer (an overlay the node
mounts, :mod:`localcluster.rootfs`), remounted read-only when the container asks for
``readOnlyRootFilesystem``; on top of it come a fresh /proc and /dev, the host's /sys
read-only, the pod's volumes, devices, /etc/hosts, /etc/resolv.conf and termination-log
file, in the pod's network namespace, under its own hostname. bwrap runs as root (it
mounts); the static ``nodeinit`` helper, executed from a descriptor, then takes the
container's user, groups and capabilities and runs the program.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

# Made by bwrap itself inside the sandbox; mount points below them are bwrap's to create.
_FRESH = ("proc", "dev", "sys")
_MAX_LINKS = 40


@dataclass
class Mount:
    source: Path
    target: str
    read_only: bool = False
    device: bool = False


@dataclass
class Spec:
    argv: list[str]
    hostname: str
    root: Path  # the container's root file system on the host (an overlay mount)
    read_only_root: bool = False
    mounts: list[Mount] = field(default_factory=list)
    workdir: str = "/"
    init: list[str] = field(default_factory=list)  # nodeinit's prefix


class PathError(ValueError):
    """A path inside the container cannot be resolved (a symlink loop)."""


def inside(root: Path, path: str) -> str:
    """``path`` with every symlink resolved as the container sees it (absolute links
    relative to its root, never escaping it)."""
    parts = [p for p in path.split("/") if p and p != "."]
    out: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if out:
                out.pop()
            continue
        candidate = root.joinpath(*out, part)
        if candidate.is_symlink():
            hops += 1
            if hops > _MAX_LINKS:
                raise PathError(f"too many levels of symbolic links in {path}")
            link = os.readlink(candidate)
            if link.startswith("/"):
                out = []
            parts = [p for p in link.split("/") if p and p != "."] + parts
            continue
        out.append(part)
    return "/" + "/".join(out)


def find_program(root: Path, program: str, path_env: str) -> str | None:
    """Where ``program`` is inside the container (PATH lookup as execvp does), or None."""
    candidates = (
        [program] if "/" in program else [f"{d}/{program}" for d in path_env.split(":") if d]
    )
    for c in candidates:
        try:
            real = root / inside(root, c).lstrip("/")
        except PathError:
            continue
        if real.is_file() and os.access(real, os.X_OK):
            return c
    return None


def _prepare(root: Path, target: str, is_dir: bool) -> None:
    """Make the mount point in the container's writable layer, as runc does."""
    host = root / target.lstrip("/")
    if is_dir:
        host.mkdir(parents=True, exist_ok=True)
        return
    host.parent.mkdir(parents=True, exist_ok=True)
    if not host.exists():
        host.touch()


def argv(spec: Spec, netns: str | None, info_fd: str) -> list[str]:
    """The full command: enter the pod's netns, build the sandbox, become the user."""
    bw = ["bwrap", "--new-session", "--unshare-ipc", "--unshare-uts", "--hostname", spec.hostname]
    bw += ["--bind", str(spec.root), "/"]
    bw += ["--proc", "/proc", "--dev", "/dev", "--ro-bind", "/sys", "/sys"]
    resolved = []
    for m in spec.mounts:
        target = inside(spec.root, m.target)
        top = target.split("/")[1] if target != "/" else ""
        if top not in _FRESH:
            _prepare(spec.root, target, m.source.is_dir() and not m.device)
        resolved.append((m, target))
    for m, target in sorted(resolved, key=lambda x: x[1].count("/")):
        op = "--dev-bind" if m.device else "--ro-bind" if m.read_only else "--bind"
        bw += [op, str(m.source), target]
    workdir = inside(spec.root, spec.workdir or "/")
    if workdir.split("/")[1] not in _FRESH:
        _prepare(spec.root, workdir, True)
    if spec.read_only_root:
        bw += ["--remount-ro", "/"]
    bw += ["--chdir", workdir, "--info-fd", info_fd, "--"]
    enter = ["nsenter", f"--net=/run/netns/{netns}", "--"] if netns else []
    return [*enter, *bw, *spec.init, *spec.argv]
