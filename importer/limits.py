"""Resource limits for the child processes the importer runs (qemu-img, nbdkit).

qemu-img parses untrusted image headers; a crafted image can make it allocate huge
tables or spin (CVE-2015-5239-style bugs), so it runs with an address-space cap, a CPU
cap and, for short jobs, a wall-clock cap. CDI applied 1 GiB / 30 s to `qemu-img info`
and then lost its limits in 1.66; we keep them for `info` and add generous ones for
`convert`.

The wall limit cannot be set with setrlimit: the runner that waits for the child enforces
it. Everything else happens in the child between fork and exec (`preexec`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
import signal
from collections.abc import Callable
from dataclasses import dataclass

GiB = 1 << 30
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Limits:
    """Caps for one child process; None means unlimited."""

    address_space: int | None
    """RLIMIT_AS in bytes (virtual memory, so it must cover thread stacks and malloc arenas)."""
    cpu_seconds: int | None
    """RLIMIT_CPU: the kernel sends SIGXCPU at this many seconds of CPU, SIGKILL one later."""
    wall_seconds: float | None
    """Enforced by the runner: the child's process group is killed after this long."""


INFO_LIMITS = Limits(address_space=1 * GiB, cpu_seconds=30, wall_seconds=60.0)
"""What CDI used for `qemu-img info` (1 GiB, 30 s CPU), plus a wall limit so a source that
never answers (an NBD export over a dead HTTP server) cannot hold the import forever."""

CONVERT_LIMITS = Limits(address_space=2 * GiB, cpu_seconds=None, wall_seconds=None)
"""Measured on Debian's qemu 7.2 with `convert -p -t none -W -m 16`: with MALLOC_ARENA_MAX=2
(which importer.qemu always sets) it runs at 384 MiB of address space and fails at 256 MiB
(its 16 coroutine buffers of 2 MiB plus thread stacks); *without* that variable it fails
even at 1 GiB, because every thread of qemu's I/O pool reserves a 64 MiB malloc arena.
2 GiB is 5x the need, yet still stops a crafted image from allocating without bound.
No CPU or wall cap: a 500 GiB image legitimately converts for hours; the stall watchdog
covers "no progress"."""


def _load_prctl() -> Callable[..., int] | None:
    # CDLL(None) is the running process, which has libc loaded: no `ldconfig -p` subprocess
    # (find_library runs one, costing a process start on every importer run).
    try:
        fn: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return fn


_PRCTL = _load_prctl()


def preexec(
    limits: Limits, confine: Callable[[], None] | None = None
) -> Callable[[], None]:
    """A `preexec_fn` for subprocess.Popen that applies `limits` in the child.

    The child gets its own session (so the runner can kill the whole process group,
    including anything it spawns, e.g. nbdkit's `--run` or curl helpers) and dies with
    SIGKILL when the thread that started it goes away (PR_SET_PDEATHSIG), so a crashed
    importer never leaves a qemu-img writing into a volume. Note: the death signal
    follows the *thread* that called Popen; start children from a long-lived thread.

    `confine` (e.g. `importer.sandbox.Confinement.restrict`) runs last, once everything
    that needs the unconfined process is done; it obeys the same rules as this function.
    """
    parent = os.getpid()
    prctl = _PRCTL

    def _apply() -> None:
        # Runs between fork and exec: no locks, no logging, no allocation-heavy work.
        os.setsid()
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:
            # The parent died before prctl took effect: nobody will ever reap us.
            os._exit(125)
        if limits.address_space is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limits.address_space, limits.address_space))
        if limits.cpu_seconds is not None:
            resource.setrlimit(
                resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1)
            )
        # No core dumps of a process that may hold credentials or image data.
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if confine is not None:
            confine()

    return _apply
