"""Real S3 peers for tests: moto in server mode on 127.0.0.1, plus a connection-cutting proxy.

Three session-scoped servers, started only when a test asks for them:
- `s3_server`: plain HTTP, no authentication enforced (anonymous and public reads work);
- `s3_auth_server`: HTTP with IAM authentication enforced (moto's
  INITIAL_NO_AUTH_ACTION_COUNT), an admin key and a key with no permissions;
- `s3_tls_server`: HTTPS with a certificate from a test CA (`ca_bundle`).
Moto answers anonymous reads with 500 once authentication is enforced, hence the split.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.peers.ports import free_port, stop, wait_for_port
from tests.peers.tlsca import TestCA, make_test_ca


@dataclass
class S3Server:
    endpoint: str
    access_key: str = "testing"
    secret_key: str = "testing"
    ca_bundle: str | None = None
    extra_keys: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return int(self.endpoint.rsplit(":", 1)[1])

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            verify=self.ca_bundle if self.ca_bundle else True,
            config=Config(s3={"addressing_style": "path"}),
        )

    def ensure_bucket(self, bucket: str) -> None:
        c = self.client()
        with contextlib.suppress(c.exceptions.BucketAlreadyOwnedByYou):
            c.create_bucket(Bucket=bucket)

    def put(self, bucket: str, key: str, data: bytes | Path, public: bool = False) -> str:
        """Upload bytes or a file; returns the endpoint URL of the object."""
        self.ensure_bucket(bucket)
        c = self.client()
        extra = {"ACL": "public-read"} if public else {}
        if isinstance(data, Path):
            c.upload_file(str(data), bucket, key, ExtraArgs=extra or None)
        else:
            c.put_object(Bucket=bucket, Key=key, Body=data, **extra)
        return self.url(bucket, key)

    def url(self, bucket: str, key: str) -> str:
        return f"{self.endpoint}/{bucket}/{key}"


@contextlib.contextmanager
def _moto(
    tmp: Path, *, tls: TestCA | None = None, auth_actions: int | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    args = ["moto_server", "-H", "127.0.0.1", "-p", str(port)]
    if tls:
        args += ["-c", str(tls.cert_file), "-k", str(tls.key_file)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    if auth_actions is not None:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(auth_actions)
    log = (tmp / f"moto-{port}.log").open("wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for_port(port, proc)
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}", proc
    finally:
        stop(proc)
        log.close()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with _moto(tmp_path_factory.mktemp("moto")) as (endpoint, _):
        yield S3Server(endpoint=endpoint)


@pytest.fixture(scope="session")
def s3_tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    tmp = tmp_path_factory.mktemp("moto-tls")
    ca = make_test_ca(tmp / "ca")
    with _moto(tmp, tls=ca) as (endpoint, _):
        yield S3Server(endpoint=endpoint, ca_bundle=str(ca.ca_file))


_ALLOW_ALL = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)


@pytest.fixture(scope="session")
def s3_auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """Authentication enforced after the 3 IAM calls that create the admin key."""
    with _moto(tmp_path_factory.mktemp("moto-auth"), auth_actions=3) as (endpoint, _):
        iam = boto3.client(
            "iam",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="bootstrap",
            aws_secret_access_key="bootstrap",
        )
        iam.create_user(UserName="admin")
        iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=_ALLOW_ALL)
        key = iam.create_access_key(UserName="admin")["AccessKey"]
        admin = (key["AccessKeyId"], key["SecretAccessKey"])
        iam = boto3.client(
            "iam",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=admin[0],
            aws_secret_access_key=admin[1],
        )
        iam.create_user(UserName="nobody")
        nk = iam.create_access_key(UserName="nobody")["AccessKey"]
        yield S3Server(
            endpoint=endpoint,
            access_key=admin[0],
            secret_key=admin[1],
            extra_keys={"nobody": (nk["AccessKeyId"], nk["SecretAccessKey"])},
        )


class CuttingProxy:
    """A TCP proxy on 127.0.0.1 that cuts the first connection after `cut_after` response bytes.

    Later connections pass through untouched, so a client that resumes succeeds.
    """

    def __init__(self, target_port: int, cut_after: int) -> None:
        self.target_port = target_port
        self.cut_after = cut_after
        self.cuts = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = int(self._sock.getsockname()[1])
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _should_cut(self, total: int) -> bool:
        """Cut once, in whichever connection first carries `cut_after` response bytes."""
        with self._lock:
            if self.cuts == 0 and total >= self.cut_after:
                self.cuts += 1
                return True
            return False

    def _pump(self, src: socket.socket, dst: socket.socket, responses: bool) -> None:
        sent = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if responses and self._should_cut(sent + len(data)):
                    dst.sendall(data[: max(0, self.cut_after - sent)])
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()

    def close(self) -> None:
        self._stop = True
        with contextlib.suppress(OSError):
            self._sock.close()
        self._thread.join(5)


@pytest.fixture
def cutting_proxy() -> Iterator[Any]:
    """Factory: `cutting_proxy(target_port, cut_after)` -> CuttingProxy, closed after the test."""
    proxies: list[CuttingProxy] = []

    def make(target_port: int, cut_after: int) -> CuttingProxy:
        p = CuttingProxy(target_port, cut_after)
        proxies.append(p)
        return p

    yield make
    for p in proxies:
        p.close()
