"""Starting and stopping the cluster's background processes.

Why its own module: ``up`` and ``down`` may run in different shells (a human's, CI's,
a pytest session), so each daemon is started detached in its own session, with its pid
recorded and its output in ``DIR/logs/<name>.log``, and stopped by process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from localcluster import cgroups


def start(
    name: str,
    argv: list[str],
    logs: Path,
    *,
    cgroup: Path | None = None,
    env: dict[str, str] | None = None,
) -> int:
    logs.mkdir(parents=True, exist_ok=True)
    groups = [cgroups.make(cgroup / name)] if cgroup is not None else []
    with open(logs / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(
            cgroups.wrap(groups, argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            close_fds=True,
        )
    return proc.pid


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours is dead for our purposes.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            return False
    return True


def stop(pid: int, grace: float = 5.0) -> None:
    """SIGTERM the process group, then SIGKILL it after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if not alive(pid):
                return
            time.sleep(0.05)
