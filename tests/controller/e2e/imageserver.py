"""nginx as an in-cluster image server: a pod of the node's generic test image plus a Service.

Why in the cluster: importer pods live in their own network namespaces, so a server on the
host's 127.0.0.1 is out of their reach; a pod behind a Service is what a real cluster's
importer talks to. The docroot is a hostPath the test fills; TLS uses a private CA the
test hands to the DataVolume through a ConfigMap. Locations:
- `/<file>` plain; `/private/<file>` needs basic auth AND the header `X-Cdi-Test: let-me-in`;
- `/slow/<file>` rate-limited (for imports that must still be running when a test acts).
"""

from __future__ import annotations

import base64
import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from controller import certs
from tests.cluster.helpers import TESTUTIL, wait_for

NEEDED_HEADER = ("X-Cdi-Test", "let-me-in")
USER, PASSWORD = "cdi", "pa55-w0rd"


@dataclass(frozen=True)
class ImageServer:
    namespace: str
    docroot: Path
    http: str
    https: str
    ca_pem: bytes

    def publish(self, path: Path, name: str) -> str:
        target = self.docroot / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        shutil.copyfile(path, target)
        target.chmod(0o644)
        return name


def _conf(slow_rate: str) -> str:
    header_var = "$http_" + NEEDED_HEADER[0].lower().replace("-", "_")
    locations = f"""
        root /srv/images;
        location /private/ {{
            auth_basic "cdi-test";
            auth_basic_user_file /config/htpasswd;
            if ({header_var} != "{NEEDED_HEADER[1]}") {{ return 403; }}
            alias /srv/images/;
        }}
        location /slow/ {{
            limit_rate {slow_rate};
            alias /srv/images/;
        }}
"""
    return f"""
user root;
daemon off;
worker_processes 1;
pid /tmp/nginx.pid;
error_log stderr info;
events {{ worker_connections 256; }}
http {{
    access_log /dev/stdout;
    client_body_temp_path /tmp/client_body;
    proxy_temp_path /tmp/proxy;
    fastcgi_temp_path /tmp/fastcgi;
    uwsgi_temp_path /tmp/uwsgi;
    scgi_temp_path /tmp/scgi;
    default_type application/octet-stream;
    types {{ }}
    sendfile on;
    server {{
        listen 8080;
{locations}
    }}
    server {{
        listen 8443 ssl;
        ssl_certificate /config/tls.crt;
        ssl_certificate_key /config/tls.key;
{locations}
    }}
}}
"""


def start(api: Any, namespace: str, docroot: Path, *, slow_rate: str = "2m") -> ImageServer:
    docroot.mkdir(parents=True, exist_ok=True)
    docroot.chmod(0o755)
    serving = certs.generate("images", namespace)
    digest = base64.b64encode(hashlib.sha1(PASSWORD.encode()).digest()).decode()
    api.create(f"/api/v1/namespaces/{namespace}/configmaps", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "images-nginx"},
        "data": {"nginx.conf": _conf(slow_rate), "tls.crt": serving.cert_pem.decode(),
                 "tls.key": serving.key_pem.decode(), "htpasswd": f"{USER}:{{SHA}}{digest}\n"},
    })
    api.create(f"/api/v1/namespaces/{namespace}/pods", {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "images", "labels": {"app": "images"}},
        "spec": {
            "terminationGracePeriodSeconds": 2,
            "containers": [{
                "name": "nginx", "image": TESTUTIL,
                "command": ["/usr/sbin/nginx", "-c", "/config/nginx.conf", "-p", "/tmp",
                            "-e", "stderr"],
                "volumeMounts": [{"name": "config", "mountPath": "/config"},
                                 {"name": "docroot", "mountPath": "/srv/images"}],
            }],
            "volumes": [{"name": "config", "configMap": {"name": "images-nginx"}},
                        {"name": "docroot", "hostPath": {"path": str(docroot),
                                                         "type": "Directory"}}],
        },
    })
    svc = api.create(f"/api/v1/namespaces/{namespace}/services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "images"},
        "spec": {"selector": {"app": "images"},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080},
                           {"name": "https", "port": 443, "targetPort": 8443}]},
    })

    # Ready when nginx answers through the Service (the host reaches ClusterIPs as pods do).
    url = f"http://{svc['spec']['clusterIP']}/"
    wait_for("image server answering",
             lambda: requests.get(url, timeout=2).status_code in (200, 403, 404), timeout=60)
    return ImageServer(namespace, docroot, f"http://images.{namespace}.svc",
                       f"https://images.{namespace}.svc", serving.ca_pem)
