"""Debian's nginx as the real HTTP/HTTPS peer, started per test session on free loopback ports.

Serves `docroot` over HTTP and HTTPS (certificate from the test CA), with:
- `/auth/<name>`: the same files behind basic auth (htpasswd with a `{SHA}` hash, so no
  apache2-utils is needed);
- `/needs-header/<name>`: the same files, 403 unless `X-Cdi-Test: let-me-in` is sent
  (proves extra headers reach the server);
- `/redirect/<name>`: a 302 to `/<name>`; `/redirect-loop/a` and `/b` redirect to each other;
- `/to-http/<name>`: a 302 to the plain-HTTP server's `/<name>` (a downgrade when asked
  over HTTPS);
- `/status/404`, `/status/403`, `/status/500`: fixed statuses.
Everything nginx writes (pid, logs, temp dirs) stays in the session's tmp dir.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.peers import tlsca
from tests.peers.ports import free_port, stop, wait_for_port
from tests.peers.tlsca import TestCA

# Re-exported so that loading this plugin also provides the `test_ca` fixture.
test_ca = tlsca.test_ca

NGINX = "/usr/sbin/nginx"
NEEDED_HEADER = ("X-Cdi-Test", "let-me-in")


@dataclass
class Nginx:
    docroot: Path
    http_url: str
    https_url: str
    ca_file: Path
    auth_user: str
    auth_password: str
    access_log: Path
    error_log: Path

    def publish(self, path: Path, name: str) -> str:
        """Make `path` servable as `name` (hard link when possible); returns the relative name."""
        target = self.docroot / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target.unlink()
        try:
            os.link(path, target)
        except OSError:
            shutil.copyfile(path, target)
        return name


def _conf(root: Path, docroot: Path, http_port: int, https_port: int, ca: TestCA) -> str:
    user = "user root;" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {kind}_temp_path {root / 'tmp' / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    header_var = "$http_" + NEEDED_HEADER[0].lower().replace("-", "_")
    locations = f"""
        root {docroot};
        absolute_redirect off;
        location /auth/ {{
            auth_basic "cdi-test";
            auth_basic_user_file {root / "htpasswd"};
            alias {docroot}/;
        }}
        location /needs-header/ {{
            if ({header_var} != "{NEEDED_HEADER[1]}") {{ return 403; }}
            alias {docroot}/;
        }}
        location /redirect/ {{ rewrite ^/redirect/(.*)$ /$1 redirect; }}
        location /to-http/ {{
            rewrite ^/to-http/(.*)$ http://127.0.0.1:{http_port}/$1 redirect;
        }}
        location = /redirect-loop/a {{ return 302 /redirect-loop/b; }}
        location = /redirect-loop/b {{ return 302 /redirect-loop/a; }}
        location = /status/404 {{ return 404; }}
        location = /status/403 {{ return 403; }}
        location = /status/500 {{ return 500; }}
"""
    return f"""
{user}
daemon off;
master_process on;
worker_processes 1;
pid {root / "nginx.pid"};
error_log {root / "error.log"} info;
events {{ worker_connections 256; }}
http {{
    access_log {root / "access.log"};
{temp}
    default_type application/octet-stream;
    types {{ }}
    sendfile on;
    keepalive_timeout 30;
    server {{
        listen 127.0.0.1:{http_port};
{locations}
    }}
    server {{
        listen 127.0.0.1:{https_port} ssl;
        ssl_certificate {ca.cert_file};
        ssl_certificate_key {ca.key_file};
{locations}
    }}
}}
"""


@pytest.fixture(scope="session")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    ca = tlsca.make_test_ca(tmp_path_factory.mktemp("nginx-ca"))
    root = tmp_path_factory.mktemp("nginx")
    docroot = root / "docroot"
    docroot.mkdir()
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (root / "tmp" / kind).mkdir(parents=True)
    user, password = "cdi", "pa55-w0rd"
    digest = base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
    (root / "htpasswd").write_text(f"{user}:{{SHA}}{digest}\n")

    for _attempt in range(3):  # a free port may be taken between probe and bind
        http_port, https_port = free_port(), free_port()
        conf = root / "nginx.conf"
        conf.write_text(_conf(root, docroot, http_port, https_port, ca))
        proc = subprocess.Popen(
            [NGINX, "-c", str(conf), "-p", str(root), "-e", str(root / "error.log")],
            stdin=subprocess.DEVNULL,
        )
        try:
            wait_for_port(http_port, proc, 10)
            wait_for_port(https_port, proc, 10)
            break
        except RuntimeError:  # a port was taken meanwhile: try other ports
            proc.kill()
            proc.wait()
    else:
        raise RuntimeError("nginx did not start:\n" + (root / "error.log").read_text())

    try:
        yield Nginx(
            docroot=docroot,
            http_url=f"http://127.0.0.1:{http_port}",
            https_url=f"https://127.0.0.1:{https_port}",
            ca_file=ca.ca_file,
            auth_user=user,
            auth_password=password,
            access_log=root / "access.log",
            error_log=root / "error.log",
        )
    finally:
        stop(proc)
