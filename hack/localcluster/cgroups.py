"""Control groups: one per cluster, one per container inside it.

Why: a container's processes may fork and outlive their parent, and the agent may die;
a cgroup is the one reliable list of what a cluster started, so ``down`` can kill all of
it (``cgroup.kill``) and leave no process behind. The memory controller (cgroup v1 on
this kind of machine, v2 where it is delegated) enforces container memory limits, so
``OOMKilled`` is real.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

UNIFIED_CANDIDATES = (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup"))


def unified_root() -> Path | None:
    """The cgroup v2 hierarchy, if mounted (needed for ``cgroup.kill``)."""
    for p in UNIFIED_CANDIDATES:
        if (p / "cgroup.procs").exists() and (p / "cgroup.subtree_control").exists():
            return p
    return None


def memory_v1_root() -> Path | None:
    """This process's own cgroup-v1 memory group: we nest below it, never above."""
    base = Path("/sys/fs/cgroup/memory")
    if not (base / "memory.limit_in_bytes").exists():
        return None
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(","):
                return base / path.lstrip("/")
    return base


def cluster_group(name: str) -> Path | None:
    root = unified_root()
    return None if root is None else root / name


def make(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def wrap(groups: list[Path], argv: list[str]) -> list[str]:
    """``argv`` run after moving itself into each of ``groups``.

    A shell enters the groups then execs, so every descendant inherits them without a
    preexec hook (unsafe in the threaded agent).
    """
    if not groups:
        return argv
    script = 'for g in $CDIPY_CGROUPS; do echo $$ > "$g/cgroup.procs" || exit 126; done; exec "$@"'
    joined = " ".join(str(g) for g in groups)
    return ["env", f"CDIPY_CGROUPS={joined}", "sh", "-c", script, "sh", *argv]


def pids(path: Path) -> list[int]:
    found: list[int] = []
    if not path.exists():
        return found
    for procs in path.rglob("cgroup.procs"):
        with contextlib.suppress(OSError, ValueError):
            found += [int(x) for x in procs.read_text().split()]
    return found


def kill(path: Path) -> None:
    """Kill everything in ``path`` and below, then remove the groups."""
    if not path.exists():
        return
    if (path / "cgroup.kill").exists():
        with contextlib.suppress(OSError):
            (path / "cgroup.kill").write_text("1")
    else:
        for pid in pids(path):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    remove(path)


def remove(path: Path, timeout: float = 5.0) -> None:
    """Remove empty groups bottom-up, waiting for killed processes to be reaped."""
    deadline = time.monotonic() + timeout
    dirs = sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
    for d in [*dirs, path]:
        while True:
            try:
                d.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
