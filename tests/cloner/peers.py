"""The two real programs of a host-assisted clone on localhost, and a network that breaks.

`CloneServer` is `cdi-uploadserver` in clone mode (a subprocess, real mutual TLS, env as
the controller sets it); `run_cloner` runs the real `cdi-cloner` against it; `Cutter` is a
TCP forwarder that drops its first connection after N bytes (a real broken connection,
TLS and all, between the two).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import requests
import urllib3

from cdicontract import clone
from cdicontract import upload as contract
from tests.uploadproxy.server.pki import Pki

TARGET_UID = "0b5ee2c4-7d52-4c8e-9d1b-4a7a0c1e9f11"
CLIENT_NAME = clone.client_name(TARGET_UID)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cloner_tls_dir(tmp_path: Path, pki: Pki, cert: tuple[str, str] | None = None) -> Path:
    """tls.crt/tls.key (the cloner's client certificate), ca.crt (the servers' CA)."""
    d = tmp_path / f"cloner-tls-{len(list(tmp_path.glob('cloner-tls-*')))}"
    d.mkdir()
    crt, key = cert or pki.client
    shutil.copy(crt, d / "tls.crt")
    shutil.copy(key, d / "tls.key")
    shutil.copy(pki.server_ca, d / "ca.crt")
    return d


class CloneServer:
    def __init__(self, tmp_path: Path, pki: Pki, dest: Path, **env: str) -> None:
        self.pki = pki
        self.port = free_port()
        self.metrics_port = free_port()
        self.report = tmp_path / "server-termination-log"
        self.log = tmp_path / "server.log"
        self.dest = dest
        environ = {
            **os.environ,
            clone.ENV_SERVER_MODE: clone.SERVER_MODE_CLONE,
            contract.ENV_CLIENT_NAME: CLIENT_NAME,
            contract.ENV_TLS_DIR: str(pki.tls_dir),
            contract.ENV_DEST: str(dest),
            contract.ENV_TERMINATION_LOG: str(self.report),
            contract.ENV_OWNER_UID: "dv-uid-1",
            **env,
        }
        exe = Path(sys.executable).with_name("cdi-uploadserver")
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    str(exe),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--metrics-port",
                    str(self.metrics_port),
                ],
                env=environ,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.wait_ready()

    def url(self, path: str = clone.CLONE_PATH, port: int | None = None) -> str:
        return f"https://127.0.0.1:{port or self.port}{path}"

    def client(self, cert: tuple[str, str] | None = None) -> requests.Session:
        s = requests.Session()
        s.trust_env = False
        s.verify = self.pki.server_ca
        s.cert = cert or self.pki.client
        return s

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output()
            try:
                with self.client() as c:
                    if c.get(self.url("/healthz"), timeout=10).status_code == 200:
                        return
            except (requests.ConnectionError, requests.Timeout):  # slow on a loaded host
                time.sleep(0.1)
        raise AssertionError("the clone server never became ready")

    def progress(self) -> float:
        with warnings.catch_warnings(), requests.Session() as s:
            warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
            s.trust_env = False
            text = s.get(
                f"https://127.0.0.1:{self.metrics_port}/metrics", verify=False, timeout=5
            ).text
        for line in text.splitlines():
            if line.startswith(clone.PROGRESS_METRIC + '{ownerUID="dv-uid-1"}'):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"no clone progress metric in {text!r}")

    def wait_exit(self, timeout: float = 120) -> int:
        return self.proc.wait(timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def read_report(self) -> dict[str, object]:
        return json.loads(self.report.read_text())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@dataclass(frozen=True)
class ClonerRun:
    code: int
    report: dict[str, object]
    output: str


def run_cloner(
    tmp_path: Path,
    url: str,
    tls_dir: Path,
    source: Path,
    *,
    content: str = "kubevirt",
    volume_mode: str = "Filesystem",
    timeout: float = 300,
    **env: str,
) -> ClonerRun:
    report = tmp_path / f"cloner-termination-log-{time.monotonic_ns()}"
    environ = {
        **os.environ,
        clone.ENV_UPLOAD_URL: url,
        clone.ENV_CONTENT_TYPE: content,
        clone.ENV_VOLUME_MODE: volume_mode,
        clone.ENV_TLS_DIR: str(tls_dir),
        clone.ENV_OWNER_UID: "dv-uid-1",
        clone.ENV_TERMINATION_LOG: str(report),
        "CLONER_RETRY_SECONDS": "20",
        **env,
    }
    exe = Path(sys.executable).with_name("cdi-cloner")
    done = subprocess.run(
        [str(exe), "--source", str(source)],
        check=False,
        env=environ,
        capture_output=True,
        timeout=timeout,
    )
    doc = json.loads(report.read_text()) if report.exists() else {}
    return ClonerRun(done.returncode, doc, (done.stdout + done.stderr).decode(errors="replace"))


class Cutter:
    """127.0.0.1:<port> -> the server; the first connection is cut after `cut_after` bytes
    from the client (both directions closed, as a dropped network would)."""

    def __init__(self, upstream_port: int, cut_after: int) -> None:
        self.cut_after = cut_after
        self.connections = 0
        self._upstream = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            limit = self.cut_after if self.connections == 1 else None
            upstream = socket.create_connection(("127.0.0.1", self._upstream))
            threading.Thread(target=self._pipe, args=(client, upstream, limit), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, None), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket, limit: int | None) -> None:
        moved = 0
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                if limit is not None and moved + len(data) >= limit:
                    break
                dst.sendall(data)
                moved += len(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self._stop = True
        self._listener.close()
