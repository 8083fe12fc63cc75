"""deploy/uploadproxy.yaml on the local cluster: the proxy pod runs under its own service
account (RBAC as written), and a process on this host reaches it at the node's InternalIP
and nodePort, as `virtctl image-upload --uploadproxy-url` does from outside a cluster;
an upload goes through it, the Service's DNS name and mutual TLS, to an upload server pod.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cdicontract import annotations as ann
from cdicontract import upload, uploadtoken
from tests.uploadproxy.proxy import pki
from tests.uploadproxy.proxy.harness import READY, World

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[3]
NODE_PORT = 31001
CDI = "cdi"


def upsert(api: Any, path: str, obj: dict[str, Any]) -> None:
    name = obj["metadata"]["name"]
    if api.get_or_none(f"{path}/{name}") is not None:
        api.delete(f"{path}/{name}")
        while api.get_or_none(f"{path}/{name}") is not None:
            time.sleep(0.1)
    api.create(path, obj)


def node_ip(cluster: Any) -> str:
    node = cluster.api().get(f"/api/v1/nodes/{cluster.node_name}")
    return next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")


@pytest.fixture
def deployed(cluster: Any) -> Any:
    cluster.kubectl("apply", "-f", str(ROOT / "deploy/namespace.yaml"),
                    "-f", str(ROOT / "deploy/uploadproxy.yaml"))
    yield
    cluster.kubectl("delete", "-f", str(ROOT / "deploy/uploadproxy.yaml"), "--wait=false",
                    check=False)


def test_the_deployed_proxy_is_reachable_at_the_node_port_and_forwards(
        cluster: Any, namespace: str, tmp_path: Path, deployed: Any) -> None:
    api = cluster.api()
    private, public = pki.rsa_pair()
    server_ca, client_ca = pki.CA("upload servers"), pki.CA("proxy clients")
    client = client_ca.issue(upload.CLIENT_COMMON_NAME, client=True)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    cms = f"/api/v1/namespaces/{CDI}/configmaps"
    upsert(api, cms, {"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": upload.PUBLIC_KEY_CONFIGMAP},
                      "data": {"id_rsa.pub": public.decode()}})
    upsert(api, cms, {"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": upload.SERVER_CA_BUNDLE_CONFIGMAP},
                      "data": {"ca-bundle.crt": server_ca.pem.decode()}})
    upsert(api, f"/api/v1/namespaces/{CDI}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": upload.PROXY_CLIENT_CERT_SECRET},
        "data": {"tls.crt": b64(client.cert), "tls.key": b64(client.key)}})

    # An upload server stand-in in a pod behind the Service the proxy dials.
    service = upload.upload_service_name("disk")
    serving = server_ca.issue("upload server", dns=[pki.server_name(namespace, "disk")])
    api.create(f"/api/v1/namespaces/{namespace}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "upstream-tls"},
        "data": {"tls.crt": b64(serving.cert), "tls.key": b64(serving.key),
                 "ca.crt": b64(client_ca.pem)}})
    api.create(f"/api/v1/namespaces/{namespace}/pods", {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": service, "labels": {"app": "upstream"}},
        "spec": {"containers": [{
            "name": "upstream", "image": "cdi-py/testutil",
            "command": ["python3", "-m", "tests.uploadproxy.proxy.upstream",
                        "--host", "0.0.0.0", "--port", "8443",
                        "--cert", "/tls/tls.crt", "--key", "/tls/tls.key",
                        "--client-ca", "/tls/ca.crt", "--record-dir", "/records",
                        "--behaviour-file", "/records/behaviour.json",
                        "--port-file", "/records/port"],
            "workingDir": str(ROOT), "env": [{"name": "PYTHONPATH", "value": str(ROOT)}],
            "readinessProbe": {"tcpSocket": {"port": 8443}, "periodSeconds": 1},
            "volumeMounts": [{"name": "tls", "mountPath": "/tls"},
                             {"name": "records", "mountPath": "/records"}]}],
            "volumes": [{"name": "tls", "secret": {"secretName": "upstream-tls"}},
                        {"name": "records", "emptyDir": {}}]}})
    api.create(f"/api/v1/namespaces/{namespace}/services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": service},
        "spec": {"selector": {"app": "upstream"},
                 "ports": [{"port": 443, "targetPort": 8443}]}})
    world = World(cluster, namespace, tmp_path)
    # Not ready yet: the proxy has to watch the PVC, with its service account's rights.
    world.pvc("disk", {ann.UPLOAD_TARGET: ""})

    cluster.kubectl("-n", CDI, "rollout", "status", "deployment/cdi-uploadproxy",
                    "--timeout=120s", timeout=150)
    cluster.kubectl("-n", namespace, "wait", "--for=condition=Ready", f"pod/{service}",
                    "--timeout=120s", timeout=150)

    # The host reaches the proxy at the node's InternalIP and the nodePort.
    world.host, world.port = node_ip(cluster), NODE_PORT
    deadline = time.monotonic() + 30
    while True:
        try:
            health = world.request("GET", "/healthz", timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    assert (health.status, health.body) == (200, b"OK")
    assert world.request("HEAD", "/v1alpha1/upload-async").status == 200
    assert world.request("POST", "/v1beta1/upload", body=b"x").status == 400

    body = os.urandom(2 << 20)
    token = uploadtoken.sign(private, namespace=namespace, pvc="disk")
    timer = threading.Timer(2.0, world.annotate, args=("disk", READY))
    timer.start()
    deadline = time.monotonic() + 60
    while True:
        # The pod's ready is read by the EndpointSlice controller a moment later.
        resp = world.request("POST", "/v1beta1/upload-async", token=token, body=body,
                             headers={"Content-Type": "application/octet-stream"})
        if resp.status != 503 or time.monotonic() > deadline:
            break
        time.sleep(1)
    timer.join()
    assert (resp.status, resp.body) == (200, b"ok\n"), resp
    out = cluster.exec(namespace, service, "sh", "-c", "cat /records/*.json").stdout
    got = json.loads(out)
    assert got["size"] == len(body)
    assert got["sha256"] == hashlib.sha256(body).hexdigest()
    assert got["client_cn"] == [upload.CLIENT_COMMON_NAME]
    assert got["host"] == pki.server_name(namespace, "disk")
    assert "Authorization" not in got["headers"]
    logs = cluster.logs(CDI, _proxy_pod(api))
    assert "upload answered" in logs
    assert "watch interrupted" not in logs  # RBAC lets it watch the PVC
    assert token not in logs and "eyJ" not in logs


def _proxy_pod(api: Any) -> str:
    pods = api.get(f"/api/v1/namespaces/{CDI}/pods",
                   labelSelector="cdi.kubevirt.io=cdi-uploadproxy")["items"]
    return str(next(p["metadata"]["name"] for p in pods
                    if p["status"].get("phase") == "Running"))
