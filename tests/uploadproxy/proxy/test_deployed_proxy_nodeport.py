"""deploy/uploadproxy.yaml on the local cluster: the proxy pod runs under its own service
account (RBAC as written), and a process on this host reaches it at the node's InternalIP
and nodePort, as `virtctl image-upload --uploadproxy-url` does from outside a cluster;
an upload goes through it, the Service's DNS name and mutual TLS, to an upload server pod.

The session's cluster is shared: the whole product may be installed in `cdi` already (the
controller's and the token API's tests install it), and may be installed after this test.
So the credentials the proxy reads are never this test's own: the token key and the
upload CAs are those the token API server and the controller keep in `cdi`, adopted when
they exist and created by those components' own code when not (so a later install adopts
them in turn), and the proxy is removed afterwards only when this test installed it. An
installed controller is scaled to zero meanwhile (conftest `no_cdi_controller`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apiserver import kubeapi, signingkey
from cdicontract import annotations as ann
from cdicontract import images, upload, uploadtoken
from controller import certs
from controller.runtime import kube
from controller.transfers.upload import authority
from tests.uploadproxy.proxy import pki
from tests.uploadproxy.proxy.harness import READY, World

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[3]
NODE_PORT = 31001
CDI = "cdi"
DEPLOYMENT = f"/apis/apps/v1/namespaces/{CDI}/deployments/cdi-uploadproxy"


def node_ip(cluster: Any) -> str:
    node = cluster.api().get(f"/api/v1/nodes/{cluster.node_name}")
    return next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")


def cdi_credentials(cluster: Any) -> tuple[signingkey.SigningKey, authority.Authority]:
    """The token signing key and the upload CAs in `cdi`, through the token API server's
    and the controller's own code: what is there is used, what is missing is made as
    they make it, and the public key ConfigMap and CA bundle are made to match."""
    kubeconfig = str(cluster.kubeconfig)

    async def go() -> tuple[signingkey.SigningKey, authority.Authority]:
        async with kubeapi.Kube(kubeapi.load_config(kubeconfig)) as tokens:
            key = await signingkey.ensure(tokens, CDI)
            await signingkey.publish(tokens, CDI, key)
        async with kube.Kube(kube.load_config(kubeconfig)) as controller:
            return key, await authority.ensure(controller, CDI)

    return asyncio.run(go())


@pytest.fixture
def deployed(cluster: Any) -> Iterator[None]:
    installed = cluster.api().get_or_none(DEPLOYMENT) is not None
    cluster.kubectl("apply", "-f", str(ROOT / "deploy/namespace.yaml"))
    if not installed:
        cluster.kubectl("apply", "-f", str(ROOT / "deploy/uploadproxy.yaml"))
    yield
    if not installed:
        cluster.kubectl("delete", "-f", str(ROOT / "deploy/uploadproxy.yaml"),
                        "--wait=false", check=False)


def test_the_deployed_proxy_is_reachable_at_the_node_port_and_forwards(
        cluster: Any, namespace: str, tmp_path: Path, deployed: Any,
        no_cdi_controller: None) -> None:
    # Without the controller: this test plays the upload server of PVC `disk` and writes
    # its readiness annotation, which an installed controller would take over.
    api = cluster.api()
    key, cas = cdi_credentials(cluster)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731

    # An upload server stand-in in a pod behind the Service the proxy dials.
    service = upload.upload_service_name("disk")
    serving = certs.issue(cas.server_ca, "upload server",
                          dns=[pki.server_name(namespace, "disk")])
    api.create(f"/api/v1/namespaces/{namespace}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "upstream-tls"},
        "data": {"tls.crt": b64(serving.cert_pem), "tls.key": b64(serving.key_pem),
                 "ca.crt": b64(cas.client_ca.cert_pem)}})
    api.create(f"/api/v1/namespaces/{namespace}/pods", {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": service, "labels": {"app": "upstream"}},
        "spec": {"containers": [{
            # The stand-in is an aiohttp program: the upload server's image has aiohttp;
            # its source comes from the checkout through a hostPath (containers run on
            # their image's root and see nothing of the host).
            "name": "upstream", "image": images.default_image("uploadserver"),
            "command": ["/opt/cdi-py/bin/python3", "/stand-in/upstream.py",
                        "--host", "0.0.0.0", "--port", "8443",
                        "--cert", "/tls/tls.crt", "--key", "/tls/tls.key",
                        "--client-ca", "/tls/ca.crt", "--record-dir", "/records",
                        "--behaviour-file", "/records/behaviour.json",
                        "--port-file", "/records/port"],
            "readinessProbe": {"tcpSocket": {"port": 8443}, "periodSeconds": 1},
            "volumeMounts": [{"name": "tls", "mountPath": "/tls"},
                             {"name": "records", "mountPath": "/records"},
                             {"name": "stand-in", "mountPath": "/stand-in",
                              "readOnly": True}]}],
            "volumes": [{"name": "tls", "secret": {"secretName": "upstream-tls"}},
                        {"name": "records", "emptyDir": {}},
                        {"name": "stand-in", "hostPath": {
                            "path": str(ROOT / "tests/uploadproxy/proxy"),
                            "type": "Directory"}}]}})
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
    token = uploadtoken.sign(key.loaded, namespace=namespace, pvc="disk")
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
