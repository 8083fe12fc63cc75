"""One running container: a sandboxed process in its own cgroups.

Why cgroups per container: a container's children must die with it (``cgroup.kill``),
and its memory limit must be enforced by the kernel so that exceeding it ends in a
real OOM kill, reported as ``OOMKilled``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
from pathlib import Path

from localcluster import cgroups


class Process:
    def __init__(
        self,
        build_argv: list[str],
        env: dict[str, str],
        log_path: Path,
        unified: Path | None,
        memory: Path | None,
        memory_limit: int | None,
        info_fd_placeholder: str = "{INFO_FD}",
        keep_fds: tuple[int, ...] = (),
    ) -> None:
        self.unified = unified
        self.memory = memory
        groups: list[Path] = []
        if unified is not None:
            groups.append(cgroups.make(unified))
        if memory is not None and memory_limit:
            cgroups.make(memory)
            (memory / "memory.limit_in_bytes").write_text(str(memory_limit))
            with contextlib.suppress(OSError):
                (memory / "memory.memsw.limit_in_bytes").write_text(str(memory_limit))
            groups.append(memory)
        else:
            self.memory = None
        r, w = os.pipe()
        argv = [a.replace(info_fd_placeholder, str(w)) for a in build_argv]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            self.popen = subprocess.Popen(
                cgroups.wrap(groups, argv),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(w, *keep_fds),
                start_new_session=True,
            )
        os.close(w)
        self.child_pid: int | None = None
        self._info_read = threading.Event()
        threading.Thread(target=self._read_info, args=(r,), daemon=True).start()
        self._info_read.wait(10)

    def _read_info(self, fd: int) -> None:
        data = b""
        try:
            with os.fdopen(fd, "rb") as f:
                while b"}" not in data:
                    chunk = f.read1(4096)
                    if not chunk:
                        break
                    data += chunk
            self.child_pid = int(json.loads(data.decode())["child-pid"])
        except (OSError, ValueError, KeyError):
            pass
        finally:
            self._info_read.set()

    def poll(self) -> int | None:
        rc = self.popen.poll()
        if rc is None:
            return None
        return 128 - rc if rc < 0 else rc

    def oom_killed(self) -> bool:
        if self.memory is None:
            return False
        with contextlib.suppress(OSError, ValueError):
            for line in (self.memory / "memory.oom_control").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and int(value) > 0:
                    return True
        return False

    def signal(self, sig: int) -> None:
        """Signal the container's process group (not bwrap's monitor)."""
        target = self.child_pid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if target:
                os.killpg(target, sig)
            else:
                os.killpg(self.popen.pid, sig)

    def kill(self) -> None:
        if self.unified is not None:
            cgroups.kill(self.unified)
        self.signal(signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self.popen.kill()

    def cleanup(self) -> None:
        """After exit: kill stragglers and remove the cgroups."""
        for group in (self.unified, self.memory):
            if group is not None:
                cgroups.kill(group)
