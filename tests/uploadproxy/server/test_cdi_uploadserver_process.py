"""The `cdi-uploadserver` program as the pod runs it: env in, progress metrics out, the
termination report written and the exit code set when the upload ends."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import urllib3

from cdicontract import upload as contract
from tests.uploadproxy.server.images import body, reference, same_disk
from tests.uploadproxy.server.pki import Pki
from tests.uploadproxy.server.rawclient import RawUpload

MiB = 1 << 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Process:
    def __init__(self, tmp_path: Path, pki: Pki, **env: str) -> None:
        self.pki = pki
        self.port = _free_port()
        self.metrics_port = _free_port()
        self.report = tmp_path / "termination-log"
        self.dest = tmp_path / "vol" / "disk.img"
        self.dest.parent.mkdir(exist_ok=True)
        self.env = {
            **os.environ,
            contract.ENV_TLS_DIR: str(pki.tls_dir),
            contract.ENV_DEST: str(self.dest),
            contract.ENV_TERMINATION_LOG: str(self.report),
            contract.ENV_OWNER_UID: "dv-uid-1",
            **env,
        }
        exe = Path(sys.executable).with_name("cdi-uploadserver")
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
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def client(self) -> requests.Session:
        s = requests.Session()
        s.trust_env = False
        s.verify = self.pki.server_ca
        s.cert = self.pki.client
        return s

    def wait_ready(self, timeout: float = 60) -> None:
        """Until /healthz answers 200 over mutual TLS, the process exits (fails at once,
        with its output) or `timeout` passes. Under load the port may accept before the
        server answers: a try that times out is retried like a refused one, each bounded
        by what is left of the deadline, so only the deadline decides."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while (left := deadline - time.monotonic()) > 0:
            assert self.proc.poll() is None, self.output()
            try:
                with self.client() as c:
                    status = c.get(self.url("/healthz"), timeout=min(10.0, left)).status_code
                if status == 200:
                    return
                last = f"HTTP {status}"
            except (requests.ConnectionError, requests.Timeout) as exc:
                last = type(exc).__name__
            time.sleep(0.2)
        raise AssertionError(f"the upload server never became ready in {timeout:.0f} s "
                             f"(last: {last})")

    def progress(self) -> float:
        # The metrics endpoint's certificate is self-signed by design (as CDI's importer).
        with warnings.catch_warnings(), requests.Session() as s:
            warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
            s.trust_env = False
            text = s.get(
                f"https://127.0.0.1:{self.metrics_port}/metrics", verify=False, timeout=5
            ).text
        for line in text.splitlines():
            if line.startswith(contract.UPLOAD_PROGRESS_METRIC + '{ownerUID="dv-uid-1"}'):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"no progress metric in {text!r}")

    def tls_socket(self):
        import ssl

        ctx = ssl.create_default_context(cafile=self.pki.server_ca)
        ctx.load_cert_chain(*self.pki.client)
        return ctx.wrap_socket(
            socket.create_connection(("127.0.0.1", self.port)), server_hostname="localhost"
        )

    def wait_exit(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout)

    def output(self) -> str:
        if self.proc.poll() is None:
            return ""
        assert self.proc.stdout is not None
        return self.proc.stdout.read().decode(errors="replace")

    def read_report(self) -> dict[str, object]:
        return json.loads(self.report.read_text())

    def peak_rss(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM")


@pytest.fixture
def process(tmp_path: Path, pki: Pki) -> Iterator:
    started: list[Process] = []

    def start(**env: str) -> Process:
        p = Process(tmp_path, pki, **env)
        started.append(p)
        p.wait_ready()
        return p

    yield start
    for p in started:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait(10)


def test_success_reports_progress_then_exits_0(process, tmp_path: Path) -> None:
    data = os.urandom(8 * MiB)
    p = process()
    assert p.progress() == 0.0
    upload = RawUpload(p.tls_socket(), "/v1beta1/upload", len(data))
    upload.send(data[: 4 * MiB])
    deadline = time.monotonic() + 30
    while p.progress() < 49.0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert 49.0 <= p.progress() <= 50.0
    upload.send(data[4 * MiB :])
    answer = upload.answer()
    assert answer.status == 200, answer.body
    assert p.wait_exit() == 0, p.output()
    report = p.read_report()
    assert report["reason"] == "Completed"
    assert report["message"] == "Upload Complete"
    assert report["bytes_transferred"] == len(data)
    assert p.dest.read_bytes() == data


def test_permanent_failure_is_reported_and_exits_1(process, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    data = body(reference(src), "qcow2").read_bytes()
    p = process()
    bad = "sha256:" + hashlib.sha256(b"another file").hexdigest()
    with p.client() as c:
        r = c.post(
            p.url("/v1beta1/upload"), data=data, headers={contract.UPLOAD_CHECKSUM_HEADER: bad}
        )
    assert r.status_code == 400
    assert "ChecksumMismatch" in r.text
    assert not p.dest.exists()
    assert [x.name for x in p.dest.parent.iterdir()] == []
    # The server stays up for another try; with the right bytes it completes.
    good = "sha256:" + hashlib.sha256(data).hexdigest()
    with p.client() as c:
        r = c.post(
            p.url("/v1beta1/upload"), data=data, headers={contract.UPLOAD_CHECKSUM_HEADER: good}
        )
    assert r.status_code == 200, r.text
    assert p.wait_exit() == 0, p.output()
    assert p.read_report()["reason"] == "Completed"


def test_async_upload_of_qcow2_exits_0_when_written(process, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    ref = reference(src)
    p = process()
    with p.client() as c:
        r = c.post(p.url("/v1beta1/upload-async"), data=body(ref, "qcow2").read_bytes())
    assert r.status_code == 200
    assert p.wait_exit() == 0, p.output()
    assert same_disk(ref, p.dest)


def test_sigterm_mid_upload_cancels_and_leaves_nothing(process) -> None:
    p = process()
    upload = RawUpload(p.tls_socket(), "/v1beta1/upload", 8 * MiB)
    upload.send(os.urandom(2 * MiB))
    time.sleep(0.5)
    p.proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert p.wait_exit() == 1, p.output()
    assert time.monotonic() - started < 15  # not the 60 s read timeout, nor lingering
    assert p.read_report()["reason"] == "Cancelled"
    assert [x.name for x in p.dest.parent.iterdir()] == []


def test_bad_configuration_exits_2_with_a_precise_report(tmp_path: Path, pki: Pki) -> None:
    p = Process(tmp_path, pki, **{contract.ENV_IMAGE_SIZE: "ten gigs"})
    assert p.wait_exit(30) == 2
    report = p.read_report()
    assert report["reason"] == "InvalidConfig"
    assert "ten gigs" in report["message"]


def test_memory_stays_flat_for_a_large_upload(process) -> None:
    """256 MiB through the server; its peak RSS stays far below that."""
    p = process()
    piece = os.urandom(MiB)
    total = 256 * MiB
    upload = RawUpload(p.tls_socket(), "/v1beta1/upload", total)
    for _ in range(total // MiB):
        upload.send(piece)
    answer = upload.answer(120)
    assert answer.status == 200, answer.body
    peak = p.peak_rss()
    assert p.wait_exit() == 0
    print(f"peak RSS {peak // MiB} MiB")
    assert peak < 128 * MiB, f"peak RSS {peak // MiB} MiB"


def test_missing_certificates_exit_2_with_a_report(tmp_path: Path, pki: Pki) -> None:
    empty = tmp_path / "empty-tls"
    empty.mkdir()
    p = Process(tmp_path, pki, **{contract.ENV_TLS_DIR: str(empty)})
    assert p.wait_exit(30) == 2
    report = p.read_report()
    assert report["reason"] == "InvalidConfig"
    assert "cannot serve" in report["message"]
