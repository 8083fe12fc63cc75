"""The static helper that takes a container's identity inside its sandbox (nodeinit.c).

Why compiled here: the container's root is its image, which need not hold ``setpriv``;
bwrap runs as root (it mounts), so the switch to the container's user must happen after
bwrap, inside the sandbox, by a program the image does not have to carry. It is built
once per machine with the host's C compiler, cached by the source's hash, and executed
from an open descriptor (``/proc/self/fd/N``) so that no host file appears inside.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name("nodeinit.c")


def cache_root() -> Path:
    base = os.environ.get("CDI_PY_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cdi-py"
    )
    return Path(base)


def binary() -> Path:
    """The helper's path, compiling it first if this source was never built here."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    path = cache_root() / f"nodeinit-{digest}"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".nodeinit-")
    os.close(fd)
    try:
        done = subprocess.run(
            ["gcc", "-static", "-O2", "-o", tmp, str(SOURCE)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"cannot build the node's init helper: {done.stderr.strip()}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return path


def open_fd() -> int:
    """A descriptor of the helper, inheritable, for one container start or exec."""
    fd = os.open(binary(), os.O_RDONLY)
    os.set_inheritable(fd, True)
    return fd


def argv(fd: int, uid: int, gid: int, groups: list[int]) -> list[str]:
    """The prefix that runs a program as ``uid:gid`` with ``groups``, from inside."""
    listed = ",".join(str(g) for g in groups) or "-"
    return [f"/proc/self/fd/{fd}", str(fd), str(uid), str(gid), listed, "--"]
