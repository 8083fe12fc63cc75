"""Debian's squid (squid-openssl) as an HTTPS forward proxy for tests: clients speak TLS to
the proxy itself, with a certificate from a test CA of its own, so only a client that
trusts that CA (CDIConfig importProxy.trustedCAProxy) gets through.

It only allows clients on localhost and keeps no cache. Squid drops root privileges to its
`proxy` user, so its directory is world-readable (test keys only).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.peers.ports import free_port, stop, wait_for_port
from tests.peers.tlsca import make_test_ca


@dataclass(frozen=True)
class Squid:
    url: str
    """https://127.0.0.1:PORT"""
    ca_file: Path
    """The CA of the proxy's own certificate."""
    access_log: Path


def _conf(root: Path, port: int) -> str:
    return f"""
https_port 127.0.0.1:{port} tls-cert={root}/ca/server.crt tls-key={root}/ca/server.key
http_access allow localhost
http_access deny all
cache deny all
pid_filename {root}/squid.pid
access_log stdio:{root}/access.log
cache_log {root}/cache.log
coredump_dir {root}
shutdown_lifetime 0 seconds
"""


@contextmanager
def https_proxy() -> Iterator[Squid]:
    squid = shutil.which("squid")
    if squid is None:
        raise RuntimeError("squid is not installed (hack/install-deps.sh installs squid-openssl)")
    root = Path(tempfile.mkdtemp(prefix="cdi-py-squid-"))
    try:
        ca = make_test_ca(root / "ca")
        for p in (root, root / "ca", *(root / "ca").iterdir()):
            p.chmod(0o777 if p.is_dir() else 0o644)
        port = free_port()
        conf = root / "squid.conf"
        conf.write_text(_conf(root, port))
        proc = subprocess.Popen([squid, "-N", "-f", str(conf)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            wait_for_port(port, proc, 20)
            yield Squid(f"https://127.0.0.1:{port}", ca.ca_file, root / "access.log")
        finally:
            stop(proc)
    finally:
        shutil.rmtree(root, ignore_errors=True)
