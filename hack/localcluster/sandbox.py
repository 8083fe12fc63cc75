"""The ``bwrap`` command line that makes a local process look like a container.

Why: the product expects its volumes at fixed paths (``/data``, ``/scratch``,
``/dev/cdi-block-volume``, the service-account directory), a private ``/tmp`` and
``/dev``, its own hostname, ``/etc/hosts`` naming the cluster's Services, and a
non-root user. bubblewrap builds that view from the host's own read-only directories
(our console scripts and Python live there), in the pod's network namespace.

The sandbox root is a tmpfs; host directories are bound read-only into it. Where a
volume must be mounted inside a host directory (``/etc/foo``), that directory is
rebuilt one level at a time so the mount point can be created.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from localcluster import images

# Host top-level directories a container sees (read-only). Machine-specific or
# machinery directories are deliberately absent.
_TOP = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "opt", "srv", "var", "home")
# Made by bwrap itself.
_FRESH = {"proc", "dev", "tmp", "run", "sys"}
# Owner-only on the host, but the Python we run from may live inside.
_ALWAYS_EXPAND = {Path("/root")}


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
    mounts: list[Mount] = field(default_factory=list)
    workdir: str = "/"
    uid: int | None = None
    gid: int | None = None
    groups: list[int] = field(default_factory=list)
    extra_roots: list[Path] = field(default_factory=list)


# The product's packages: with an editable install their source is wherever the checkout
# is (CI clones into a fresh folder, possibly under /tmp), not on sys.path.
_PRODUCT_PACKAGES = ("cdicontract", "importer", "controller", "uploadproxy")


def _product_roots() -> set[Path]:
    roots: set[Path] = set()
    for name in _PRODUCT_PACKAGES:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is not None and spec.origin:
            roots.add(Path(spec.origin).resolve().parent.parent)
    return roots


def _needed_host_paths(extra: list[Path]) -> list[Path]:
    """Paths outside the usual directories that the container's Python needs."""
    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).parent, *extra}
    paths |= _product_roots()
    for p in sys.path:
        if p and os.path.isabs(p) and os.path.exists(p):
            paths.add(Path(p))
    return sorted(paths)


def _under_fresh(p: Path) -> bool:
    return len(p.parts) > 1 and p.parts[1] in _FRESH


def _realpath(target: str) -> Path:
    return Path(os.path.realpath(target))


class _Layout:
    """Emits bwrap ops for the host tree, expanding directories that get mounts inside."""

    def __init__(self, expand: set[Path], keep: set[Path]) -> None:
        self.expand = expand
        self.keep = keep
        self.args: list[str] = []

    def emit_root(self) -> None:
        for name in sorted(os.listdir("/")):
            if name in _FRESH:
                continue
            p = Path("/") / name
            if name in _TOP or p in self.expand or p in self.keep:
                self._emit(p)

    def _emit(self, p: Path) -> None:
        if p.is_symlink():
            self.args += ["--symlink", os.readlink(p), str(p)]
        elif p in self.expand and p.is_dir():
            self.args += ["--perms", "0755", "--dir", str(p)]
            try:
                children = sorted(os.listdir(p))
            except OSError:
                return
            for name in children:
                child = p / name
                if child in self.expand or child in self.keep or p not in _ALWAYS_EXPAND:
                    self._emit(child)
        elif p.exists():
            self.args += ["--ro-bind", str(p), str(p)]


def _rebind_shadowed(keep: set[Path], targets: list[Path]) -> list[str]:
    """Binds again the needed host paths that a pod's own volume hides.

    Why: a pod with a read-only root mounts an emptyDir at /tmp, which covers a checkout
    that lives under /tmp (CI clones into /tmp/fresh), and the product's Python is then
    gone from the container. A real node's image carries its code; ours keeps it visible
    by binding it again on top of the volume (bwrap makes the mount point in it).
    """
    out: list[str] = []
    for p in sorted(keep):
        if not any(t == p or t in p.parents for t in targets):
            continue
        for parent in reversed(p.parents):
            if len(parent.parts) < 3 or any(parent == t or parent in t.parents for t in targets):
                continue
            out += ["--perms", "0755", "--dir", str(parent)]
        out += ["--ro-bind", str(p), str(p)]
    return out


def argv(spec: Spec, netns: str | None, info_fd: str) -> list[str]:
    """The full command: enter the pod's netns, build the sandbox, drop to the user."""
    targets = [_realpath(m.target) for m in spec.mounts]
    keep = set(_needed_host_paths(spec.extra_roots))
    # A kept path inside another kept path is bound with it.
    keep = {k for k in keep if not any(a in keep for a in k.parents)}
    expand: set[Path] = set(_ALWAYS_EXPAND)
    for t in [*targets, *keep]:
        for parent in t.parents:
            if parent == Path("/"):
                continue
            if parent.parts[1] in _FRESH:
                break
            if parent.exists() and not parent.is_symlink():
                expand.add(parent)
    layout = _Layout(expand, keep)
    layout.emit_root()

    bw = ["bwrap", "--new-session", "--unshare-ipc", "--unshare-uts", "--hostname", spec.hostname]
    bw += layout.args
    bw += ["--ro-bind", "/sys", "/sys", "--proc", "/proc", "--dev", "/dev"]
    bw += ["--perms", "1777", "--tmpfs", "/tmp", "--perms", "0755", "--tmpfs", "/run"]
    # Needed host paths under /tmp or /run (e.g. a checkout in /tmp) go on top of the fresh
    # tmpfs, with traversable parents.
    made: set[Path] = set()
    for p in sorted(k for k in keep if _under_fresh(k) and k.parts[1] in ("tmp", "run")):
        for parent in reversed(p.parents):
            if len(parent.parts) < 3 or parent in made:
                continue
            bw += ["--perms", "0755", "--dir", str(parent)]
            made.add(parent)
        bw += ["--ro-bind", str(p), str(p)]
    # Parents bwrap would create itself get mode 0700; a non-root user must traverse them.
    for real in sorted(targets, key=lambda t: len(t.parts)):
        for parent in reversed(real.parents):
            if len(parent.parts) < 3 or parent in made:
                continue
            fresh = parent.parts[1] in _FRESH
            if fresh or not parent.exists():
                bw += ["--perms", "0755", "--dir", str(parent)]
                made.add(parent)
    for m, real in sorted(zip(spec.mounts, targets, strict=True), key=lambda x: len(x[1].parts)):
        if m.device:
            op = "--dev-bind"
        elif m.read_only:
            op = "--ro-bind"
        else:
            op = "--bind"
        bw += [op, str(m.source), str(real)]
    bw += _rebind_shadowed(keep, targets)
    bw += ["--chdir", spec.workdir, "--info-fd", info_fd, "--"]

    drop: list[str] = []
    if spec.uid not in (None, 0) or spec.gid not in (None, 0):
        uid = spec.uid or 0
        gid = spec.gid if spec.gid is not None else uid
        groups = ",".join(str(g) for g in spec.groups)
        drop = ["setpriv", f"--reuid={uid}", f"--regid={gid}"]
        drop += [f"--groups={groups}"] if groups else ["--clear-groups"]
        if uid != 0:
            drop += ["--inh-caps=-all", "--bounding-set=-all"]
        drop += ["--"]
    enter = ["nsenter", f"--net=/run/netns/{netns}", "--"] if netns else []
    return [*enter, *bw, *drop, *spec.argv]


__all__ = ["Mount", "Spec", "argv", "images"]
