"""Run one child process under limits and a watchdog that notices when it stops moving.

qemu's own curl driver was seen hanging without progress against nginx, and an NBD
export over a dead HTTP server can block a reader forever. So every helper the importer
runs is watched: it is alive while its progress value moves *or* the bytes it reads and
writes (from /proc/<pid>/io) move. If neither moves for `stall_timeout` seconds, the
whole process group is killed and the caller decides whether to retry.

Pipes are drained by threads so a chatty child never blocks on a full pipe, and only a
bounded tail of stderr is kept (memory stays flat whatever the child prints).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO

from importer.limits import Limits, preexec

_PROGRESS = re.compile(r"\((\d+(?:\.\d+)?)/100%\)")
_POLL_SECONDS = 0.2
_STDERR_LINES = 40
_LINE_MAX = 2000
STDOUT_MAX = 4 << 20


def parse_progress(text: str) -> list[float]:
    """Percent values in qemu-img `-p` output such as '    (12.34/100%)\\r', in order."""
    return [min(100.0, float(m.group(1))) for m in _PROGRESS.finditer(text)]


def io_counter(pid: int) -> int | None:
    """Bytes the process moved through read/write syscalls so far (rchar + wchar).

    Only used to tell "moving" from "stuck": any change counts. None when the process is
    gone or /proc/<pid>/io is not readable.
    """
    try:
        with open(f"/proc/{pid}/io", encoding="ascii") as f:
            fields = dict(line.split(": ", 1) for line in f.read().splitlines() if ": " in line)
        return int(fields.get("rchar", "0")) + int(fields.get("wchar", "0"))
    except (OSError, ValueError):
        return None


def exited(proc: subprocess.Popen[bytes]) -> bool:
    """Whether the child has exited, *without* reaping it.

    While the leader is an unreaped zombie its pid (the process group id) cannot be
    reused, so signalling the group stays safe and never hits an unrelated process.
    """
    if proc.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _wait_exited(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not exited(proc):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def kill_group(proc: subprocess.Popen[bytes], grace: float = 2.0) -> None:
    """Stop the child's whole process group (SIGTERM, then SIGKILL after `grace` s), then reap.

    Helpers the child spawned share its group and die with it.
    """
    if proc.returncode is not None:
        return
    if not exited(proc):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        _wait_exited(proc, grace)
    # The leader is alive or an unreaped zombie: its group id is still ours to signal.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@dataclass(frozen=True)
class Outcome:
    """How a watched child ended."""

    returncode: int
    """Exit status; negative for a signal, as in subprocess."""
    stdout: bytes
    """Captured stdout when requested (bounded), else b''."""
    stderr_tail: tuple[str, ...]
    """The last lines of stderr, each cut to a sane length."""
    stalled: bool = False
    timed_out: bool = False
    cancelled: bool = False
    last_progress: float | None = None


class PipeDrain(threading.Thread):
    """Reads one pipe to EOF: keeps stderr's tail, captures or parses stdout."""

    def __init__(
        self,
        pipe: IO[bytes],
        *,
        capture: bool = False,
        lines: bool = False,
        on_progress: Callable[[float], None] | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self._pipe = pipe
        self._capture = capture
        self._lines = lines
        self._on_progress = on_progress
        self.captured = bytearray()
        self.tail: deque[str] = deque(maxlen=_STDERR_LINES)
        self.progress: float | None = None
        self.progress_changes = 0
        self._partial = ""

    def run(self) -> None:
        fd = self._pipe.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            if self._capture:
                room = STDOUT_MAX - len(self.captured)
                if room > 0:
                    self.captured += chunk[:room]
            if self._lines or self._on_progress is not None:
                self._feed(chunk.decode(errors="replace"))
        if self._partial:
            self._line(self._partial)
        self._pipe.close()

    def _feed(self, text: str) -> None:
        pieces = re.split(r"[\r\n]", self._partial + text)
        self._partial = pieces.pop()[-_LINE_MAX:]
        for piece in pieces:
            self._line(piece)

    def _line(self, line: str) -> None:
        line = line.strip()
        if not line:
            return
        values = parse_progress(line) if self._on_progress is not None or not self._lines else []
        if values:
            for value in values:
                if self.progress is None or value > self.progress:
                    self.progress = value
                    self.progress_changes += 1
                    if self._on_progress is not None:
                        self._on_progress(value)
        elif self._lines:
            self.tail.append(line[:_LINE_MAX])


def run_watched(
    argv: Sequence[str],
    *,
    limits: Limits,
    stall_timeout: float | None = None,
    on_progress: Callable[[float], None] | None = None,
    capture_stdout: bool = False,
    cancel: threading.Event | None = None,
    env: dict[str, str] | None = None,
    confine: Callable[[], None] | None = None,
) -> Outcome:
    """Run `argv` to completion under `limits`, killing its group on stall, wall limit or cancel.

    `stall_timeout`: seconds without a change of progress or of the child's I/O counters
    before it is declared stalled (None: never). Progress is parsed from stdout unless
    `capture_stdout` is set, in which case stdout is returned (bounded) instead.
    `confine` runs in the child after the limits, just before exec (see `limits.preexec`).
    """
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=preexec(limits, confine),  # noqa: PLW1509 - setrlimit/prctl need it
        close_fds=True,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    if capture_stdout:
        out = PipeDrain(proc.stdout, capture=True)
    else:
        # Progress is parsed even without a callback: the watchdog feeds on it.
        out = PipeDrain(proc.stdout, on_progress=on_progress or _ignore)
    err = PipeDrain(proc.stderr, lines=True)
    out.start()
    err.start()

    started = time.monotonic()
    last_move = started
    last_seen: tuple[int, int | None] = (0, io_counter(proc.pid))
    stalled = timed_out = cancelled = False
    try:
        while not _wait_exited(proc, _POLL_SECONDS):
            now = time.monotonic()
            seen = (out.progress_changes, io_counter(proc.pid))
            if seen != last_seen:
                last_seen, last_move = seen, now
            if cancel is not None and cancel.is_set():
                cancelled = True
            elif limits.wall_seconds is not None and now - started > limits.wall_seconds:
                timed_out = True
            elif stall_timeout is not None and now - last_move > stall_timeout:
                stalled = True
            if cancelled or timed_out or stalled:
                break
    finally:
        # Also reaps anything the child left in its group, and covers exceptions
        # (KeyboardInterrupt) raised while waiting.
        kill_group(proc, grace=0.5 if (cancelled or timed_out or stalled) else 2.0)
        out.join(10.0)
        err.join(10.0)
    return Outcome(
        returncode=proc.returncode,
        stdout=bytes(out.captured),
        stderr_tail=tuple(err.tail),
        stalled=stalled,
        timed_out=timed_out,
        cancelled=cancelled,
        last_progress=out.progress,
    )


def _ignore(_: float) -> None:
    return None
