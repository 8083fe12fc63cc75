"""nbdkit as a local, read-only NBD export of a source, so qemu-img converts without scratch.

A source that supports random reads describes an nbdkit command line (`RandomAccess`);
`NbdServer` runs it on a private Unix socket in its own process group and hands back an
NBD URI that qemu-img opens with an explicit `-f <format>` (the NBD driver is only the
protocol layer underneath). This is what CDI did before it fell back to scratch space,
and it avoids qemu's own curl driver, which hung against nginx on our machines.

nbdkit's stderr is kept (a bounded tail) for error messages, scrubbed of anything secret
that the command line carries (passwords, header values, URL credentials and query).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

from cdicontract.reasons import Reason
from importer.drivertree import nbd_unix_uri
from importer.errors import ImportFailure
from importer.limits import Limits, preexec
from importer.redact import hide
from importer.sources.base import RandomAccess
from importer.watchdog import PipeDrain, exited, kill_group

NBDKIT = "nbdkit"
START_TIMEOUT = 30.0
NBDKIT_LIMITS = Limits(address_space=None, cpu_seconds=None, wall_seconds=None)
"""nbdkit runs trusted code on bytes it never interprets; it only gets its own session
and the parent-death signal (the limits that matter are on qemu-img, which parses)."""

_SECRET_KEYS = frozenset({"password", "proxy-password", "cookie", "header", "proxy-user", "user"})
_SOCKET_PATH_MAX = 107  # sun_path is 108 bytes including the NUL


_PROXY_VARIABLES = frozenset(
    {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy"}
)


def _env() -> dict[str, str]:
    """nbdkit's environment: ours without proxies (it only ever reads a local socket)."""
    return {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARIABLES}


def secrets_of(access: RandomAccess) -> tuple[str, ...]:
    """Strings from the nbdkit command line that must never appear in a message or log."""
    found: list[str] = []
    for param in (*access.params, *access.filter_params):
        key, sep, value = param.partition("=")
        if not sep or not value:
            continue
        if key in _SECRET_KEYS and not value.startswith(("+", "-")):
            if key == "header":
                # "Name: value": the name is harmless and useful, the value is the secret.
                _, colon, hval = value.partition(":")
                value = hval.strip() if colon else value
            if value:
                found.append(value)
        elif key == "url":
            parts = urlsplit(value)
            if parts.password:
                found.append(parts.password)
            if parts.query:
                # Pre-signed URLs (S3, GCS) carry their signature in the query.
                found.append(parts.query)
    return tuple(sorted(set(found), key=len, reverse=True))


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """`text` with every secret replaced by '***' (see `importer.redact.hide`)."""
    return hide(text, secrets)


def public_url(url: str) -> str:
    """A URL as it may appear in messages: no credentials, no query string."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def command(access: RandomAccess, sock: str, *, readonly: bool = True) -> list[str]:
    """The nbdkit argv serving `access` on Unix socket `sock` (a pure function of its inputs).

    `--foreground` keeps nbdkit our direct child so its process group is ours to kill;
    `--exit-with-parent` is belt and braces with PR_SET_PDEATHSIG.
    """
    argv = [NBDKIT, "--foreground", "--exit-with-parent", "--unix", sock]
    if readonly:
        argv.append("--readonly")
    argv += [f"--filter={f}" for f in access.filters]
    argv.append(access.plugin)
    argv += access.params
    argv += access.filter_params
    return argv


class NbdServer:
    """A running nbdkit serving one source read-only on a private Unix socket.

    Use as a context manager; `uri` is valid inside it. The server is not restarted on
    failure: the caller makes a new one (see `nbd_source`), which is what
    `importer.qemu.convert` does between attempts when given a factory.
    """

    def __init__(self, access: RandomAccess, *, workdir: str, readonly: bool = True) -> None:
        self._access = access
        self._workdir = workdir
        self._readonly = readonly
        self._secrets = secrets_of(access)
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: PipeDrain | None = None
        self._dir: str | None = None
        self.uri = ""
        self.socket_path = ""

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def stderr_tail(self) -> list[str]:
        """nbdkit's last stderr lines, scrubbed of secrets (for error messages)."""
        if self._stderr is None:
            return []
        return [scrub(line, self._secrets) for line in list(self._stderr.tail)]

    def alive(self) -> bool:
        return self._proc is not None and not exited(self._proc)

    def __enter__(self) -> NbdServer:
        self._dir = tempfile.mkdtemp(prefix="nbd-", dir=self._workdir)
        self.socket_path = os.path.join(self._dir, "sock")
        if len(self.socket_path.encode()) > _SOCKET_PATH_MAX:
            self._cleanup()
            raise ImportFailure(
                Reason.INTERNAL, f"NBD socket path too long for a Unix socket: {self.socket_path}"
            )
        argv = command(self._access, self.socket_path, readonly=self._readonly)
        try:
            self._proc = subprocess.Popen(
                argv,
                env=_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                preexec_fn=preexec(NBDKIT_LIMITS),  # noqa: PLW1509 - new session + pdeathsig
                close_fds=True,
            )
        except OSError as e:
            self._cleanup()
            raise ImportFailure(Reason.INTERNAL, f"cannot start nbdkit: {e.strerror}") from e
        assert self._proc.stderr is not None
        self._stderr = PipeDrain(self._proc.stderr, lines=True)
        self._stderr.start()
        try:
            self._wait_ready(START_TIMEOUT)
        except BaseException:
            self._cleanup()
            raise
        self.uri = nbd_unix_uri(self.socket_path)
        return self

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while True:
            if exited(self._proc):
                self._fail(f"nbdkit exited with status {self._proc.wait()}")
            if os.path.exists(self.socket_path):
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(1.0)
                    try:
                        s.connect(self.socket_path)
                        return
                    except OSError:
                        pass
            if time.monotonic() > deadline:
                self._fail(f"nbdkit did not listen within {timeout:.0f}s")
            time.sleep(0.01)

    def _fail(self, what: str) -> None:
        if self._stderr is not None and self._proc is not None and exited(self._proc):
            self._stderr.join(2.0)
        tail = self.stderr_tail()
        # nbdkit ends with a generic "Use 'nbdkit --help'..." hint: the error line is earlier.
        errors = [line for line in tail if "error" in line.lower()]
        detail = f": {(errors or tail)[-1]}" if tail else ""
        raise ImportFailure(Reason.NETWORK_ERROR, f"{what}{detail}")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._cleanup()

    def _cleanup(self) -> None:
        if self._proc is not None:
            kill_group(self._proc)
        if self._stderr is not None:
            self._stderr.join(5.0)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def nbd_source(
    access: RandomAccess, *, workdir: str, running: NbdServer | None = None
) -> Callable[[], AbstractContextManager[str]]:
    """A factory for `importer.qemu.convert`: yields an NBD URI per conversion attempt.

    The first attempt reuses `running` (the server the image was inspected through) when
    it is still alive; every later one starts a fresh nbdkit, so a retry after a stall
    never talks to a dead or hung server.
    """
    unused = [running] if running is not None else []

    @contextlib.contextmanager
    def _serve() -> Iterator[str]:
        first = unused.pop() if unused else None
        if first is not None and first.alive():
            yield first.uri
            return
        with NbdServer(access, workdir=workdir) as server:
            yield server.uri

    return _serve


__all__ = ["NbdServer", "command", "nbd_source", "public_url", "scrub", "secrets_of"]
