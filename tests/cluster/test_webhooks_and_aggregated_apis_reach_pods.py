"""The API server calls admission webhooks and aggregated API servers that run in pods.

The controller's admission checks and the upload API (``upload.cdi.kubevirt.io``) both
need this: the API server must reach a Service's pods, and forward the caller's
identity to an aggregated server through the front proxy.
"""

from __future__ import annotations

import base64
import datetime
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from localcluster.api import ApiError

from tests.cluster.helpers import pod, wait_for

pytestmark = pytest.mark.cluster

GROUP = "probe.localcluster.cdi-py.io"

SERVER = r"""
import http.server, json, ssl
GROUP = "@GROUP@"
class H(http.server.BaseHTTPRequestHandler):
    def reply(self, obj):
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        if self.path.startswith(f"/apis/{GROUP}/v1/whoami"):
            self.reply({"user": self.headers.get("X-Remote-User"),
                        "groups": self.headers.get_all("X-Remote-Group")})
        elif self.path.startswith(f"/apis/{GROUP}/v1"):
            self.reply({"kind": "APIResourceList", "apiVersion": "v1",
                        "groupVersion": f"{GROUP}/v1", "resources": []})
        else:
            self.send_response(404); self.end_headers()
    def do_POST(self):
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        req = review["request"]
        allowed = req["name"] != "forbidden"
        self.reply({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                    "response": {"uid": req["uid"], "allowed": allowed,
                                 "status": {"code": 403, "message": "no forbidden names here"}}})
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("/tls/tls.crt", "/tls/tls.key")
srv = http.server.ThreadingHTTPServer(("0.0.0.0", 8443), H)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
""".replace("@GROUP@", GROUP)


def _serving_cert(names: list[str]) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


@pytest.fixture
def hook_service(cluster, namespace):
    """A pod serving webhooks and an API group over TLS, behind Service ``hook``."""
    api = cluster.api()
    crt, key = _serving_cert([f"hook.{namespace}.svc", f"hook.{namespace}.svc.cluster.local"])
    api.create(
        f"/api/v1/namespaces/{namespace}/secrets",
        {
            "metadata": {"name": "tls"},
            "stringData": {"tls.crt": crt.decode(), "tls.key": key.decode()},
        },
    )
    manifest = pod(
        "hook",
        'python3 -c "$SERVER"',
        restart="Always",
        labels={"app": "hook"},
        volumes=[{"name": "tls", "secret": {"secretName": "tls"}}],
        container={
            "env": [{"name": "SERVER", "value": SERVER}],
            "volumeMounts": [{"name": "tls", "mountPath": "/tls"}],
            # An HTTPS probe: the kubelet does not verify the certificate.
            "readinessProbe": {
                "httpGet": {"scheme": "HTTPS", "path": f"/apis/{GROUP}/v1", "port": 8443},
                "periodSeconds": 1,
            },
        },
    )
    api.create(f"/api/v1/namespaces/{namespace}/pods", manifest)
    api.create(
        f"/api/v1/namespaces/{namespace}/services",
        {
            "metadata": {"name": "hook"},
            "spec": {"selector": {"app": "hook"}, "ports": [{"port": 443, "targetPort": 8443}]},
        },
    )

    def ready():
        p = api.get(f"/api/v1/namespaces/{namespace}/pods/hook")
        return any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in p["status"].get("conditions", [])
        )

    wait_for("hook ready", ready, 60)
    return base64.b64encode(crt).decode()


def test_validating_webhook_served_by_a_pod(cluster, namespace, hook_service):
    api = cluster.api()
    name = f"deny-forbidden-{namespace}"
    api.create(
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
        {
            "metadata": {"name": name},
            "webhooks": [
                {
                    "name": "deny.localcluster.cdi-py.io",
                    "clientConfig": {
                        "service": {"namespace": namespace, "name": "hook", "path": "/validate"},
                        "caBundle": hook_service,
                    },
                    "rules": [
                        {
                            "operations": ["CREATE"],
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "resources": ["configmaps"],
                        }
                    ],
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": namespace}
                    },
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "failurePolicy": "Fail",
                }
            ],
        },
    )
    try:
        cms = f"/api/v1/namespaces/{namespace}/configmaps"
        # The webhook configuration takes effect within a moment.
        wait_for("webhook active", lambda: _denied(api, cms), 30)
        api.create(cms, {"metadata": {"name": "fine"}})
    finally:
        api.delete(f"/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/{name}")


def _denied(api, cms):
    try:
        api.create(cms, {"metadata": {"name": "forbidden"}})
    except ApiError as e:
        return e.status == 403 and "no forbidden names here" in e.body
    api.delete(f"{cms}/forbidden")
    return False


def test_aggregated_api_server_in_a_pod_sees_the_caller(cluster, namespace, hook_service):
    api = cluster.api()
    name = f"v1.{GROUP}"
    api.create(
        "/apis/apiregistration.k8s.io/v1/apiservices",
        {
            "metadata": {"name": name},
            "spec": {
                "group": GROUP,
                "version": "v1",
                "service": {"namespace": namespace, "name": "hook", "port": 443},
                "caBundle": hook_service,
                "groupPriorityMinimum": 1000,
                "versionPriority": 15,
            },
        },
    )
    try:

        def available():
            s = api.get(f"/apis/apiregistration.k8s.io/v1/apiservices/{name}")
            return any(
                c["type"] == "Available" and c["status"] == "True"
                for c in s["status"].get("conditions", [])
            )

        wait_for("APIService available", available, 60)
        out = json.loads(cluster.kubectl("get", "--raw", f"/apis/{GROUP}/v1/whoami").stdout)
        assert out["user"] == "cdi-py-admin"
        assert "system:masters" in out["groups"]
    finally:
        api.delete(f"/apis/apiregistration.k8s.io/v1/apiservices/{name}")
